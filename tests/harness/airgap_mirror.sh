#!/usr/bin/env bash
# The local apt mirror of the air-gapped tests: NVIDIA's CUDA repositories (debian12, debian13),
# Docker's (bookworm, trixie) and NVIDIA's container-toolkit repository, laid out as the vendors'
# and holding stand-in packages (tests/harness/airgap_mirror/build_repo.sh), signed with a test key,
# served over HTTPS as mirror.inferops.test by the container inferops-airgap-mirror on Docker's
# default bridge (certificate from tests/harness/test_ca.sh).
# Idempotent; each piece is redone only when its recipe changes:
#   image inferops/airgap-mirror:1 (nginx, reprepro, apt-utils, gnupg)  label inferops.recipe
#   repositories .cache/airgap/mirror/ (www/, fingerprint)             .cache/airgap/mirror/.recipe
#   (the signing key .cache/airgap/mirror-key/gnupg is made once and kept: hosts keep trusting it)
#   the container (image, repositories, nginx.conf, CA)                label inferops.recipe
# Usage: tests/harness/airgap_mirror.sh            prints the signing key's fingerprint
#        tests/harness/airgap_mirror.sh driver V   publishes one more stand-in driver release V
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/tests/harness/airgap_mirror"
OUT="$ROOT/.cache/airgap/mirror"
KEY="$ROOT/.cache/airgap/mirror-key"
LOGS="$ROOT/.cache/logs"
IMAGE=inferops/airgap-mirror:1
NAME=inferops-airgap-mirror
mkdir -p "$OUT" "$KEY" "$LOGS"

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
label() { docker inspect -f '{{ index .Config.Labels "inferops.recipe" }}' "$1" 2>/dev/null || true; }

if [ "${1:-}" = driver ]; then
  [ -n "${2:-}" ] || die "usage: $0 driver VERSION"
  docker exec "$NAME" /recipe/build_repo.sh driver "$2" >>"$LOGS/airgap-mirror.log" 2>&1 ||
    die "publishing driver $2 failed; see .cache/logs/airgap-mirror.log"
  exit 0
fi

CA="$("$ROOT/tests/harness/test_ca.sh")"

image_recipe="$(sha256sum "$HERE/Dockerfile" | cut -c1-16)"
if [ "$(docker image inspect -f '{{ index .Config.Labels "inferops.recipe" }}' "$IMAGE" 2>/dev/null || true)" != "$image_recipe" ]; then
  docker build --label "inferops.recipe=$image_recipe" -t "$IMAGE" "$HERE" >"$LOGS/airgap-mirror-image.log" 2>&1 ||
    die "building $IMAGE failed; see .cache/logs/airgap-mirror-image.log"
fi

repo_recipe="$( { echo "$image_recipe"; cat "$HERE/build_repo.sh"; } | sha256sum | cut -c1-16)"
if [ "$(cat "$OUT/.recipe" 2>/dev/null || true)" != "$repo_recipe" ] || [ ! -s "$OUT/fingerprint" ]; then
  # The running server serves the old tree; it is replaced below (its recipe changes with this one).
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker run --rm -v "$HERE:/recipe:ro" -v "$OUT:/out" -v "$KEY:/key" "$IMAGE" /recipe/build_repo.sh >"$LOGS/airgap-mirror.log" 2>&1 ||
    die "building the repositories failed; see .cache/logs/airgap-mirror.log"
  echo "$repo_recipe" >"$OUT/.recipe"
fi

# The container mounts this checkout's files: the state names the mounted tree (resolved, so
# worktrees linking one .cache/airgap share it) and hashes the certificate and signing key it
# serves, so a container left by another clone is replaced.
server_recipe="$( { echo "$repo_recipe"; realpath "$OUT"; cat "$HERE/nginx.conf" "$CA/server.crt" "$OUT/fingerprint"; } | sha256sum | cut -c1-16)"
if [ "$(label "$NAME")" != "$server_recipe" ] || [ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]; then
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  # The recipe directory and the tree are mounted so that a scenario can publish a newer
  # stand-in into the running mirror (`airgap_mirror.sh driver V`).
  docker run -d --name "$NAME" --restart unless-stopped --label "inferops.recipe=$server_recipe" \
    -v "$HERE:/recipe:ro" -v "$OUT:/out" -v "$KEY:/key" -v "$OUT/www:/srv/mirror:ro" \
    -v "$HERE/nginx.conf:/etc/nginx/conf.d/mirror.conf:ro" \
    -v "$CA/server.crt:/etc/nginx/tls/server.crt:ro" -v "$CA/server.key:/etc/nginx/tls/server.key:ro" \
    "$IMAGE" >/dev/null
fi

ip="$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$NAME")"
for _ in $(seq 1 30); do
  if curl -fsS --cacert "$CA/ca.crt" --resolve "mirror.inferops.test:443:$ip" \
       -o /dev/null https://mirror.inferops.test/compute/cuda/repos/debian12/x86_64/InRelease 2>/dev/null; then
    cat "$OUT/fingerprint"
    exit 0
  fi
  sleep 1
done
docker logs --tail 20 "$NAME" >&2 || true
die "$NAME does not answer on https://mirror.inferops.test ($ip)"
