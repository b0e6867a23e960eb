#!/usr/bin/env bash
# The air-gapped registry and package index of the tests, one container `inferops-airgap-registry`
# on Docker's default bridge (recipe: tests/harness/airgap_registry/):
#   registry.inferops.test:5000  Debian's docker-registry, TLS from the test CA, htpasswd login,
#                                holding inferops/xinference-cpu:4.1.0 (pushed once per machine:
#                                skipped while the registry's manifest names the local image id)
#   pypi.inferops.test:443       a static PEP 503 index (nginx-light, same login) with the wheels
#                                of the Xinference engine virtualenv path (WHEELS below)
# Made once per machine and kept: the image (rebuilt when the recipe changes, label
# inferops.recipe), the login (.cache/airgap/registry/{username,password}, 0600), the registry's
# storage (volume inferops-airgap-registry-data), the index tree (.cache/airgap/pypi).
# Usage: tests/harness/airgap_registry.sh   (idempotent; prints what it did)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RECIPE_DIR="$ROOT/tests/harness/airgap_registry"
NAME=inferops-airgap-registry
IMAGE=inferops/airgap-registry:1
VOLUME=inferops-airgap-registry-data
AUTH="$ROOT/.cache/airgap/registry"
PYPI="$ROOT/.cache/airgap/pypi"
LOGS="$ROOT/.cache/logs"
# The controller reaches the registry through a loopback port (pushes only); hosts use the name.
PUSH_PORT="${INFEROPS_AIRGAP_REGISTRY_PORT:-15000}"
XINFERENCE_IMAGE="${INFEROPS_XINFERENCE_IMAGE:-inferops/xinference-cpu:4.1.0}"
# The engine virtualenv path of the xinference scenario installs these (pip download, pip's own
# configuration decides where from; once per machine).
WHEELS=(einops==0.8.1)
mkdir -p "$LOGS"

die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

CA="$("$ROOT/tests/harness/test_ca.sh")"

# --- the login: generated once, 0600 ---------------------------------------------------------
umask 077
mkdir -p "$AUTH"
[ -s "$AUTH/username" ] || printf 'inferops' >"$AUTH/username"
[ -s "$AUTH/password" ] || openssl rand -hex 16 | tr -d '\n' >"$AUTH/password"
chmod 0700 "$AUTH"
chmod 0600 "$AUTH/username" "$AUTH/password"
umask 022

# --- the index tree: PEP 503, one page per project -------------------------------------------
mkdir -p "$PYPI/packages" "$PYPI/simple"
for w in "${WHEELS[@]}"; do
  file="$(find "$PYPI/packages" -maxdepth 1 -iname "${w%%==*}-${w#*==}-*.whl" -print -quit)"
  if [ -z "$file" ]; then
    "$ROOT/.venv/bin/python" -m pip download --no-deps --only-binary :all: --progress-bar off \
      -d "$PYPI/packages" "$w" >>"$LOGS/airgap-registry.log" 2>&1 || die "pip download $w failed (.cache/logs/airgap-registry.log)"
  fi
done
"$ROOT/.venv/bin/python" - "$PYPI" <<'PY'
import hashlib, html, pathlib, re, sys
root = pathlib.Path(sys.argv[1])
projects = {}
for wheel in sorted((root / "packages").glob("*.whl")):
    name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
    projects.setdefault(name, []).append(wheel)
def write(path, body):
    text = "<!DOCTYPE html>\n<html><body>\n%s</body></html>\n" % body
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
write(root / "simple" / "index.html",
      "".join('<a href="%s/">%s</a>\n' % (n, n) for n in sorted(projects)))
for name, wheels in projects.items():
    links = "".join('<a href="../../packages/%s#sha256=%s">%s</a>\n'
                    % (html.escape(w.name), hashlib.sha256(w.read_bytes()).hexdigest(), html.escape(w.name))
                    for w in wheels)
    write(root / "simple" / name / "index.html", links)
PY
chmod -R a+rX "$PYPI"

# --- the image: rebuilt when the recipe changes ----------------------------------------------
recipe="$(cat "$RECIPE_DIR"/* | sha256sum | cut -c1-16)"
have="$(docker image inspect -f '{{ index .Config.Labels "inferops.recipe" }}' "$IMAGE" 2>/dev/null || true)"
if [ "$have" != "$recipe" ]; then
  echo "    building $IMAGE (log: .cache/logs/airgap-registry.log)"
  docker build --label "inferops.recipe=$recipe" -t "$IMAGE" "$RECIPE_DIR" >>"$LOGS/airgap-registry.log" 2>&1 ||
    { tail -n 20 "$LOGS/airgap-registry.log" >&2; die "building $IMAGE failed"; }
fi

# --- the container: recreated when its image or anything it mounts changed ------------------
# The mounts are this checkout's files: a container left by another clone (or an older CA or
# login in this one) serves another certificate and login, so the state names the mounted tree
# (resolved: worktrees that link one .cache/airgap share the servers) and hashes the mounted
# certificate and login (a digest, never the password itself).
mounted="$( { realpath "$PYPI"; cat "$CA/server.crt" "$AUTH/username" "$AUTH/password"; } | sha256sum | cut -c1-16)"
want="$(docker image inspect -f '{{.Id}}' "$IMAGE") $mounted"
running="$(docker inspect -f '{{.State.Running}} {{ index .Config.Labels "inferops.state" }}' "$NAME" 2>/dev/null || true)"
if [ "$running" != "true $want" ]; then
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker run -d --name "$NAME" --restart unless-stopped --label "inferops.state=$want" \
    -p "127.0.0.1:$PUSH_PORT:5000" \
    -v "$VOLUME:/var/lib/docker-registry" \
    -v "$CA/server.crt:/etc/inferops/tls/server.crt:ro" \
    -v "$CA/server.key:/etc/inferops/tls/server.key:ro" \
    -v "$AUTH/username:/etc/inferops/auth/username:ro" \
    -v "$AUTH/password:/etc/inferops/auth/password:ro" \
    -v "$PYPI:/srv/pypi:ro" \
    "$IMAGE" >/dev/null
  echo "    started $NAME"
fi

# curl's login from stdin (-K -): never on a command line.
curl_login() { printf 'user = "%s:%s"\n' "$(cat "$AUTH/username")" "$(cat "$AUTH/password")" | curl -K - "$@"; }
deadline=$((SECONDS + 60))
until curl_login -fsS -o /dev/null --cacert "$CA/ca.crt" "https://localhost:$PUSH_PORT/v2/" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || { docker logs --tail 20 "$NAME" >&2; die "$NAME did not answer within 60 s"; }
  sleep 1
done

# --- the Xinference image in the registry: pushed when the registry lacks this image id ------
repo="${XINFERENCE_IMAGE%:*}" tag="${XINFERENCE_IMAGE##*:}"
local_id="$(docker image inspect -f '{{.Id}}' "$XINFERENCE_IMAGE" 2>/dev/null)" ||
  die "$XINFERENCE_IMAGE is not built (tests/images/xinference/build.sh image)"
remote_id="$(curl_login -fsS --cacert "$CA/ca.crt" \
  -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
  "https://localhost:$PUSH_PORT/v2/$repo/manifests/$tag" 2>/dev/null |
  "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])' 2>/dev/null || true)"
if [ "$remote_id" != "$local_id" ]; then
  echo "    pushing $XINFERENCE_IMAGE to $NAME (once per image id; log: .cache/logs/airgap-registry.log)"
  # The controller's login lives in a Docker config of its own (0700), not in ~/.docker.
  export DOCKER_CONFIG="$AUTH/docker-config"
  mkdir -p "$DOCKER_CONFIG"
  chmod 0700 "$DOCKER_CONFIG"
  {
    docker login -u "$(cat "$AUTH/username")" --password-stdin "localhost:$PUSH_PORT" <"$AUTH/password" &&
    docker tag "$XINFERENCE_IMAGE" "localhost:$PUSH_PORT/$XINFERENCE_IMAGE" &&
    docker push "localhost:$PUSH_PORT/$XINFERENCE_IMAGE"
  } >>"$LOGS/airgap-registry.log" 2>&1 || { tail -n 20 "$LOGS/airgap-registry.log" >&2; die "pushing $XINFERENCE_IMAGE failed"; }
  docker rmi "localhost:$PUSH_PORT/$XINFERENCE_IMAGE" >/dev/null
else
  echo "    $XINFERENCE_IMAGE already in the registry"
fi
