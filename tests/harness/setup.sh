#!/usr/bin/env bash
# Prepares everything the test run needs, and does nothing that is already done:
#   1. the controller virtualenv .venv (recreated only when requirements-dev.txt changes),
#   2. .collections/ansible_collections/inferops/gpu -> the checkout,
#   3. Debian's docker.io and mmdebstrap (apt-get, only when missing),
#   4. a Docker engine (dockerd started in the background only when `docker info` fails),
#   5. the Debian 12 and 13 systemd base images (rebuilt only when their recipe changes),
#   6. the fake NVML library (make -C tests/fake_nvml, when that directory exists),
#   7. the CPU Xinference image inferops/xinference-cpu:4.1.0 and the all-MiniLM-L6-v2 model
#      directory the xinference scenarios load (rebuilt only when their recipe changes),
#   8. the air-gapped registry and package index, container inferops-airgap-registry (test CA,
#      generated login, the Xinference image pushed once per image id; tests/harness/airgap_registry.sh).
#   9. the air-gapped apt mirror inferops-airgap-mirror (mirror.inferops.test over HTTPS: NVIDIA's
#      and Docker's repository layouts with stand-in packages; tests/harness/airgap_mirror.sh,
#      rebuilt only when its recipe changes).
# Logs of every step go to .cache/logs/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

LOGS="$ROOT/.cache/logs"
VENV="$ROOT/.venv"
REQS="$ROOT/requirements-dev.txt"
STAMP="$VENV/.requirements-dev.sha256"
DOCKERD_LOG="$LOGS/dockerd.log"
DOCKERD_TIMEOUT="${DOCKERD_TIMEOUT:-90}"
mkdir -p "$LOGS" "$ROOT/.cache/pip" "$ROOT/.cache/apt-archives"

SETUP_START=$SECONDS
phase_start=0
step() {  # step "name": prints a progress header and remembers the start time
  phase_start=$SECONDS
  printf '==> %s\n' "$*"
}
done_step() {
  printf '    done in %ss\n' "$((SECONDS - phase_start))"
}
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}
sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- 1. virtualenv --------------------------------------------------------------------------
setup_venv() {
  step "virtualenv .venv (requirements-dev.txt)"
  local want have=""
  want="$(sha256sum "$REQS" | cut -d' ' -f1)"
  [ -f "$STAMP" ] && have="$(cat "$STAMP")"
  if [ "$want" = "$have" ] && [ -x "$VENV/bin/python" ]; then
    echo "    up to date"
    return
  fi
  local py="${PYTHON:-}"
  if [ -z "$py" ]; then
    if command -v python3.11 >/dev/null 2>&1; then py=python3.11; else py=python3; fi
  fi
  echo "    creating with $($py --version 2>&1) (log: .cache/logs/venv.log)"
  rm -rf "$VENV"
  # pip's own configuration (find-links, extra index, certificates) is used as it is.
  if ! { "$py" -m venv "$VENV" &&
         "$VENV/bin/python" -m pip install --progress-bar off -r "$REQS" &&
         "$VENV/bin/python" -m pip check; } >"$LOGS/venv.log" 2>&1; then
    tail -n 30 "$LOGS/venv.log" >&2
    die "creating .venv failed; full log: .cache/logs/venv.log"
  fi
  echo "$want" >"$STAMP"
  done_step
}

# --- 2. collection path ---------------------------------------------------------------------
setup_collection_link() {
  local link="$ROOT/.collections/ansible_collections/inferops/gpu"
  if [ "$(readlink "$link" 2>/dev/null || true)" != "../../.." ]; then
    mkdir -p "$(dirname "$link")"
    rm -rf "$link"
    ln -s ../../.. "$link"
  fi
}

# --- 3. system packages ---------------------------------------------------------------------
setup_packages() {
  step "system packages (docker.io, mmdebstrap, shellcheck, prometheus)"
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  # ansible-test sanity skips its shellcheck test without it.
  command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
  # Debian's prometheus: promtool checks the textfile and the alerting rules; the server evaluates
  # the rules end to end in the gpu_health scenario (molecule/gpu_health/tests/test_alerts.py).
  { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
  if [ "${#missing[@]}" -eq 0 ]; then
    echo "    present"
    return
  fi
  echo "    installing ${missing[*]} (log: .cache/logs/apt.log)"
  local apt=(sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Use-Pty=0)
  local ok=1
  {
    "${apt[@]}" update || ok=0
    # The engine without its recommends (git, needrestart, ...); mmdebstrap with them.
    if [ "$ok" = 1 ] && [[ " ${missing[*]} " == *" docker.io "* ]]; then
      "${apt[@]}" install --no-install-recommends docker.io || ok=0
    fi
    if [ "$ok" = 1 ] && [[ " ${missing[*]} " == *" mmdebstrap "* ]]; then
      "${apt[@]}" install mmdebstrap || ok=0
    fi
    if [ "$ok" = 1 ] && [[ " ${missing[*]} " == *" shellcheck "* ]]; then
      "${apt[@]}" install --no-install-recommends shellcheck || ok=0
    fi
    if [ "$ok" = 1 ] && [[ " ${missing[*]} " == *" prometheus "* ]]; then
      "${apt[@]}" install --no-install-recommends prometheus || ok=0
    fi
  } >"$LOGS/apt.log" 2>&1 </dev/null
  if [ "$ok" != 1 ]; then
    tail -n 30 "$LOGS/apt.log" >&2
    die "apt-get install ${missing[*]} failed; full log: .cache/logs/apt.log"
  fi
  done_step
}

# --- 4. docker engine -----------------------------------------------------------------------
setup_dockerd() {
  step "Docker engine"
  if docker info >/dev/null 2>&1; then
    echo "    already answering; left alone"
    return
  fi
  command -v dockerd >/dev/null 2>&1 || die "dockerd not found"
  echo "    starting dockerd in the background (log: .cache/logs/dockerd.log)"
  # setsid + nohup: the engine outlives this script and make.
  sudo_if_needed setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  local deadline=$((SECONDS + DOCKERD_TIMEOUT))
  until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 20 "$DOCKERD_LOG" >&2 || true
      die "the Docker engine did not answer within ${DOCKERD_TIMEOUT}s; see $DOCKERD_LOG"
    fi
    sleep 1
  done
  done_step
}

# --- 5. base images -------------------------------------------------------------------------
setup_images() {
  step "systemd base images inferops/debian:12 and :13"
  "$ROOT/tests/images/build.sh" 12 13
  done_step
}

# --- 6. fake NVML ---------------------------------------------------------------------------
setup_fake_nvml() {
  step "fake NVML library (tests/fake_nvml)"
  if [ ! -f "$ROOT/tests/fake_nvml/Makefile" ]; then
    echo "    tests/fake_nvml/Makefile not present; skipped"
    return
  fi
  if ! make -C "$ROOT/tests/fake_nvml" >"$LOGS/fake_nvml.log" 2>&1; then
    tail -n 30 "$LOGS/fake_nvml.log" >&2
    die "building the fake NVML library failed; full log: .cache/logs/fake_nvml.log"
  fi
  done_step
}

# --- 7. Xinference test image and model ----------------------------------------------------
setup_xinference_image() {
  step "Xinference CPU image inferops/xinference-cpu:4.1.0 and model .cache/models/all-MiniLM-L6-v2"
  "$ROOT/tests/images/xinference/build.sh" image model
  done_step
}

# --- 8. air-gapped registry and package index -----------------------------------------------
setup_airgap_registry() {
  step "air-gapped registry and package index (container inferops-airgap-registry)"
  "$ROOT/tests/harness/airgap_registry.sh"
  done_step
}

# --- 9. air-gapped apt mirror ---------------------------------------------------------------
setup_airgap_mirror() {
  step "apt mirror inferops-airgap-mirror (https://mirror.inferops.test, stand-in packages)"
  "$ROOT/tests/harness/airgap_mirror.sh" >/dev/null
  done_step
}

steps=("$@")
[ "${#steps[@]}" -eq 0 ] && steps=(venv packages dockerd images fake_nvml xinference_image airgap_registry airgap_mirror)
for s in "${steps[@]}"; do
  case "$s" in
    venv) setup_venv; setup_collection_link ;;
    packages) setup_packages ;;
    dockerd) setup_dockerd ;;
    images) setup_images ;;
    fake_nvml) setup_fake_nvml ;;
    xinference_image) setup_xinference_image ;;
    airgap_registry) setup_airgap_registry ;;
    airgap_mirror) setup_airgap_mirror ;;
    *) die "unknown setup step: $s" ;;
  esac
done
printf '==> set-up ready in %ss\n' "$((SECONDS - SETUP_START))"
