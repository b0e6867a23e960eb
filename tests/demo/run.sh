#!/usr/bin/env bash
# `make demo`: the collection end to end on ONE SIMULATED GPU host, on a machine without a GPU.
#
#   1. set-up (tests/harness/setup.sh): .venv, Docker engine, base images, fake NVML, the CPU
#      Xinference image and the all-MiniLM-L6-v2 model directory; each step only when missing;
#   2. the host: a Debian 13 systemd container `inferops-demo` (label inferops.simulated=true),
#      Docker inside it, created once and reused;
#   3. tests/demo/prepare.yml: fake NVML topology pcie-4-acs (4 GPUs, ACS redirect above GPUs 2
#      and 3), a SIMULATED motd, the host's Docker engine, the model directory;
#   4. the Xinference image into the host's engine, only when it differs: docker save | docker load,
#      faster than a pull from the test registry (the xinference and cluster scenarios pull);
#   5. ansible-playbook playbooks/site.yml -i inventory/demo (driver and CUDA toolkit off: no GPU
#      is real; container_runtime, nccl_tuning, the gpu_health gate and xinference on);
#   6. what it shows: the health summary (NCCL_P2P_DISABLE=1 and why), the Xinference endpoint,
#      and an embedding answered by the served model, with the API key the role created.
#
# Usage: tests/demo/run.sh          build or reuse, converge, show
#        tests/demo/run.sh clean    remove the demo host (its Docker volume and state too)
# Environment: INFEROPS_DEMO_PORT (default 9997), the port published on 127.0.0.1.
# Logs: .cache/logs/demo-*.log. Never prints the API key or the admin password.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

HOST=inferops-demo
BASE_IMAGE=inferops/debian:13
XI_IMAGE=inferops/xinference-cpu:4.1.0
MODEL_UID=minilm
PORT="${INFEROPS_DEMO_PORT:-9997}"
STATE="$ROOT/.cache/demo"
LOGS="$ROOT/.cache/logs"
APT_CACHE="$ROOT/.cache/apt-archives/demo"
PY="$ROOT/.venv/bin/python"
START=$SECONDS

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}
elapsed() { printf '%dm%02ds' "$(($1 / 60))" "$(($1 % 60))"; }
STEP_START=
step() {  # step "title": closes the previous step with its duration, opens the next
  [ -z "$STEP_START" ] || note "step took $(elapsed $((SECONDS - STEP_START)))"
  STEP_START=$SECONDS
  say "$*"
}

clean() {
  say "removing the demo host $HOST"
  if docker container inspect "$HOST" >/dev/null 2>&1; then
    # -v: its anonymous /var/lib/docker volume (the host's engine and the loaded image) goes too.
    docker rm -f -v "$HOST" >/dev/null
    note "removed (with its Docker volume)"
  else
    note "not there"
  fi
  rm -rf "$STATE"
}

# --- 2. the simulated host --------------------------------------------------------------------
# Capabilities of molecule/container_runtime's platform: everything but SYS_RESOURCE, which this
# sandbox lacks (--privileged fails here).
CAPS=(CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE
  NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO
  SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE
  AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ)

host_args() {  # the docker run arguments of the host; their hash decides reuse
  local cap
  printf '%s\n' --hostname "$HOST" \
    --label inferops.simulated=true \
    --label "inferops.demo=SIMULATED GPU host of inferops.gpu make demo: fake NVML topology pcie-4-acs, no real GPU" \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
    --tmpfs /run --tmpfs /run/lock \
    -v /var/lib/docker \
    -v "$APT_CACHE:/var/cache/apt/archives:rw" \
    -p "127.0.0.1:$PORT:9997"
  for cap in "${CAPS[@]}"; do printf '%s\n' --cap-add "$cap"; done
}

start_host() {
  say "simulated GPU host $HOST (Debian 13 systemd container, Docker inside; NOT a real GPU server)"
  local args=() recipe have state base_id
  mapfile -t args < <(host_args)
  base_id="$(docker image inspect --format '{{.Id}}' "$BASE_IMAGE")"
  recipe="$(printf '%s\n' "${args[@]}" "$base_id" | sha256sum | cut -c1-16)"
  if docker container inspect "$HOST" >/dev/null 2>&1; then
    have="$(docker container inspect --format '{{index .Config.Labels "inferops.demo.recipe"}}' "$HOST")"
    if [ "$have" != "$recipe" ]; then
      note "exists, but from another recipe (base image or arguments changed): recreating"
      docker rm -f -v "$HOST" >/dev/null
    fi
  fi
  if docker container inspect "$HOST" >/dev/null 2>&1; then
    state="$(docker container inspect --format '{{.State.Status}}' "$HOST")"
    if [ "$state" = running ]; then
      note "reused (running)"
    else
      note "reused ($state): starting it"
      docker start "$HOST" >/dev/null
    fi
  else
    mkdir -p "$APT_CACHE/partial"
    if ! docker run -d --name "$HOST" --label "inferops.demo.recipe=$recipe" "${args[@]}" \
      "$BASE_IMAGE" /lib/systemd/systemd >/dev/null; then
      docker rm -f -v "$HOST" >/dev/null 2>&1 || true
      die "could not start $HOST (is 127.0.0.1:$PORT taken? set INFEROPS_DEMO_PORT)"
    fi
    note "created from $BASE_IMAGE: label inferops.simulated=true, anonymous volume on /var/lib/docker,"
    note "capabilities listed (no --privileged), port 9997 published on 127.0.0.1:$PORT"
  fi
}

# --- 4. the Xinference image in the host's engine ---------------------------------------------
load_image() {
  say "Xinference image $XI_IMAGE in the host's engine (docker save | docker load: faster than a registry pull)"
  local want have size
  want="$(docker image inspect --format '{{.Id}}' "$XI_IMAGE")"
  have="$(docker exec "$HOST" docker image inspect --format '{{.Id}}' "$XI_IMAGE" 2>/dev/null || true)"
  if [ "$want" = "$have" ]; then
    note "already loaded"
    return
  fi
  size="$(docker image inspect --format '{{.Size}}' "$XI_IMAGE")"
  note "loading $((size / 1000000)) MB (about a minute; log: .cache/logs/demo-image-load.log)"
  local t0=$SECONDS
  if ! { docker save "$XI_IMAGE" | docker exec -i "$HOST" docker load; } >"$LOGS/demo-image-load.log" 2>&1; then
    tail -n 20 "$LOGS/demo-image-load.log" >&2
    die "loading $XI_IMAGE into $HOST failed"
  fi
  note "loaded in $((SECONDS - t0))s"
}

# --- ansible ----------------------------------------------------------------------------------
playbook() {  # playbook NAME ARGS...: runs ansible-playbook, output shown and logged
  local name="$1"
  shift
  set +e
  "$ROOT/.venv/bin/ansible-playbook" -i inventory/demo "$@" 2>&1 | tee "$LOGS/demo-$name.log"
  local rc="${PIPESTATUS[0]}"
  set -e
  [ "$rc" -eq 0 ] || die "ansible-playbook $* failed (rc $rc); log: .cache/logs/demo-$name.log (make demo again goes on from the state reached)"
}

# prepare.yml copies directories file by file (slow over the Docker connection): it runs again
# only when what it installs changed; site.yml converges the roles on every run regardless.
PREPARED=/etc/inferops-demo/prepared
prepare_inputs() {
  {
    find tests/demo/prepare.yml tests/fake_nvml/topologies tests/fake_nvml/install.yml \
      tests/fake_nvml/mkroot.py tests/fake_nvml/fake_nvml.c ".cache/models/all-MiniLM-L6-v2.source" -type f -print0 |
      sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
}

prepare() {
  local want have
  want="$(prepare_inputs)"
  have="$(docker exec "$HOST" cat "$PREPARED" 2>/dev/null || true)"
  if [ "$want" = "$have" ]; then
    note "unchanged since the last run (inputs $want): skipped"
    return
  fi
  playbook prepare tests/demo/prepare.yml
  docker exec "$HOST" sh -c "mkdir -p ${PREPARED%/*} && echo $want > $PREPARED"
}

admin_password() {  # generated once, kept 0600 beside the demo state, never printed
  mkdir -p "$STATE"
  chmod 0700 "$STATE"
  if [ ! -s "$STATE/xinference-admin-password" ]; then
    (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))' >"$STATE/xinference-admin-password")
  fi
  INFEROPS_DEMO_ADMIN_PASSWORD="$(cat "$STATE/xinference-admin-password")"
  export INFEROPS_DEMO_ADMIN_PASSWORD
}

# --- 6. what the demo shows -------------------------------------------------------------------
show_health() {
  say "(1) GPU health of $HOST (SIMULATED GPUs, measured over the fake NVML) and what was derived from it"
  docker exec "$HOST" cat /var/lib/inferops/gpu_health/report.json | "$PY" -c '
import json, sys
report = json.load(sys.stdin)
summary, rec = report["summary"], report["recommendation"]
counts = ", ".join("%d %s" % (summary["counts"][v], v) for v in ("pass", "warn", "fail", "skip", "error")
                   if summary["counts"].get(v))
names = sorted({gpu["name"] for gpu in report["gpus"]})
print("    gpu_health: %d GPUs (%s), checks %s, verdict %s" % (report["gpu_count"], ", ".join(names), counts,
      summary["verdict"]))
for check in report["checks"]:
    if check["verdict"] in ("fail", "warn", "error"):
        print("      %-4s %-5s %s" % (check["verdict"], check["id"], check["reason"]))
for var, value in sorted(rec["nccl_env"].items()):
    print("    derived %s=%s" % (var, value))
    print("      why: %s" % rec["reasons"].get(var, "?"))
if rec.get("vllm_disable_custom_all_reduce"):
    print("    derived: 2-GPU vLLM launches need disable_custom_all_reduce=true")
    print("      why: %s" % rec["vllm_reason"])
'
  note "nccl_tuning wrote it on the host: /etc/nccl.conf (NCCL reads it) and /etc/inferops/nccl.env (containers):"
  docker exec "$HOST" grep -hv '^#' /etc/nccl.conf | sed 's|^|      /etc/nccl.conf: |'
  note "site.yml's health gate and summary (from .cache/logs/demo-site.log):"
  # The gate counts an ACS finding as mitigated once NCCL_P2P_DISABLE=1 is in force.
  grep -o "\"$HOST: [^\"]*\"" "$LOGS/demo-site.log" | tail -n 1 | tr -d '"' | sed 's/^/      /'
}

show_endpoint() {
  local ip
  ip="$(docker container inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$HOST")"
  ENDPOINT="http://127.0.0.1:$PORT"
  say "(2) Xinference endpoint"
  note "$ENDPOINT   (published on this machine's loopback only)"
  note "http://$ip:9997   (the host container's address, as the role reports it inside)"
  note "auth on: admin and an API key for clients were created by the role; the key is 0600 in"
  note "$HOST:/etc/inferops/xinference-api-key (not printed)"
}

show_embedding() {
  say "(3) an embedding request answered by the served model ($MODEL_UID = all-MiniLM-L6-v2)"
  # The key goes through a pipe, never on a command line or into the output.
  docker exec "$HOST" cat /etc/inferops/xinference-api-key | "$PY" -c '
import json, sys, time, urllib.request
endpoint, model = sys.argv[1], sys.argv[2]
key = sys.stdin.read().strip()
text = "NCCL_P2P_DISABLE=1 keeps GPU peer traffic off the ACS-redirecting switch ports"
request = urllib.request.Request(endpoint + "/v1/embeddings", method="POST",
    data=json.dumps({"model": model, "input": text}).encode(),
    headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
t0 = time.monotonic()
with urllib.request.urlopen(request, timeout=120) as answer:
    body = json.load(answer)
vector = body["data"][0]["embedding"]
print("    POST %s/v1/embeddings  model=%s  (Bearer <API key>)" % (endpoint, model))
print("    input: %r" % text)
print("    answered in %.2fs: dimension %d, first values %s" % (time.monotonic() - t0, len(vector),
      ", ".join("%.4f" % v for v in vector[:5])))
if len(vector) != 384:
    sys.exit("expected 384 dimensions")
' "$ENDPOINT" "$MODEL_UID"
}

main() {
  mkdir -p "$LOGS" "$STATE"
  printf '\033[1minferops.gpu demo: site.yml on ONE SIMULATED GPU host (fake NVML; no GPU here is real)\033[0m\n'

  step "[1/5] set-up (tests/harness/setup.sh; each step only when missing)"
  "$ROOT/tests/harness/setup.sh"

  step "[2/5] the host"
  start_host

  step "[3/5] prepare the simulated host (tests/demo/prepare.yml)"
  admin_password
  prepare

  step "[4/5] the image"
  load_image

  step "[5/5] ansible-playbook playbooks/site.yml -i inventory/demo"
  note "nvidia_driver and cuda_toolkit are OFF for this host (inventory/demo/host_vars): its GPUs are"
  note "simulated, no driver or CUDA would be real. ON: container_runtime, nccl_tuning, gpu_health gate,"
  note "xinference with the embedding model."
  playbook site playbooks/site.yml

  step "what the demo shows"
  show_health
  show_endpoint
  show_embedding

  say "demo done in $(elapsed $((SECONDS - START))) (a second run reuses the images, the host and its state)"
  note "the host stays up: docker exec -it $HOST bash   |   remove it: make demo-clean"
}

case "${1:-}" in
  "") main ;;
  clean) clean ;;
  *) die "usage: $0 [clean]" ;;
esac
