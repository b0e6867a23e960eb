#!/usr/bin/env bash
# Proves inferops/xinference-cpu:4.1.0 outside Molecule, on this machine's engine, loopback only:
# build (or find) the image and the model directory, start `xinference-local` with the model
# mounted read-only, bootstrap the admin with the setup token (auth is on by default in 4.x),
# register all-MiniLM-L6-v2 from /models, launch it on CPU and ask for one embedding.
# Prints: image build time, image size, container start -> API ready, launch time, dimension.
# Every API call (method, path, status, body) goes to .cache/logs/xinference-smoke.log.
# The container is removed at the end, also on failure.
#
# Usage: tests/images/xinference/smoke.sh      (env: SMOKE_PORT, default 19997)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
IMAGE="${INFEROPS_XINFERENCE_IMAGE:-inferops/xinference-cpu:4.1.0}"
NAME="xinf-proof"
PORT="${SMOKE_PORT:-19997}"
BASE="http://127.0.0.1:$PORT"
MODEL_DIR="$ROOT/.cache/models/all-MiniLM-L6-v2"
UID_="minilm"
LOG="$ROOT/.cache/logs/xinference-smoke.log"
ADMIN_PASSWORD="smoke-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
READY_TIMEOUT=180
mkdir -p "$(dirname "$LOG")"
: >"$LOG"

die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}
cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# api METHOD PATH [JSON] [TOKEN]: sets STATUS and BODY, logs the exchange.
api() {
  local method="$1" path="$2" data="${3:-}" token="${4:-}" out
  local args=(-sS -o - -w '\n%{http_code}' -X "$method" "$BASE$path")
  [ -n "$data" ] && args+=(-H 'Content-Type: application/json' --data "$data")
  [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
  out="$(curl "${args[@]}" 2>>"$LOG")" || out=$'\n000'
  STATUS="${out##*$'\n'}"
  BODY="${out%$'\n'*}"
  printf '%s %s%s -> %s %s\n' "$method" "$path" "${token:+ (bearer)}" "$STATUS" "$BODY" | cut -c1-2000 \
    | sed -E 's/"(access_token|refresh_token|key)":"[^"]*"/"\1":"<redacted>"/g' >>"$LOG"
}
expect() {  # expect STATUS...: the last call's status must be one of them
  local s
  for s in "$@"; do [ "$STATUS" = "$s" ] && return; done
  die "$LAST_CALL: HTTP $STATUS $BODY"
}
json() {  # json EXPR: evaluates a Python expression on the last body (as `j`)
  python3 -c 'import json, sys; j = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" <<<"$BODY"
}

echo "==> image and model (tests/images/xinference/build.sh)"
start=$SECONDS
"$HERE/build.sh"
build_s=$((SECONDS - start))
size="$(docker image inspect -f '{{ .Size }}' "$IMAGE")"

echo "==> docker run $NAME (127.0.0.1:$PORT -> 9997)"
cleanup
start_ns="$(date +%s%N)"
docker run -d --name "$NAME" -p "127.0.0.1:$PORT:9997" \
  -v "$MODEL_DIR:/models/all-MiniLM-L6-v2:ro" \
  "$IMAGE" xinference-local -H 0.0.0.0 -p 9997 >/dev/null
LAST_CALL="GET /status"
until api GET /status && [ "$STATUS" = 200 ]; do
  [ "$(docker inspect -f '{{ .State.Running }}' "$NAME")" = true ] || { docker logs "$NAME" | tail -n 30; die "container exited"; }
  [ $(( ($(date +%s%N) - start_ns) / 1000000000 )) -lt "$READY_TIMEOUT" ] || die "API not ready in ${READY_TIMEOUT}s"
  sleep 0.5
done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))

echo "==> auth bootstrap"
LAST_CALL="GET /v1/cluster/auth"; api GET /v1/cluster/auth; expect 200
LAST_CALL="GET /v1/admin/setup/status"; api GET /v1/admin/setup/status; expect 200
# The one-time setup token: kept in the auth database (also printed once in the log).
token_db="$(docker exec "$NAME" python3 -c '
import os, sqlite3
db = os.path.join(os.environ["XINFERENCE_HOME"], "auth", "auth.db")
row = sqlite3.connect(db).execute("SELECT value FROM system_config WHERE key = ?", ("setup_token",)).fetchone()
print(row[0] if row else "")')"
token_log="$(docker logs "$NAME" 2>&1 | sed -n 's/.*Setup token: *\([^ ]*\).*/\1/p' | tail -n 1)"
[ -n "$token_db" ] || die "no setup token in auth.db"
echo "    setup token from auth.db; the log line agrees: $([ "$token_db" = "$token_log" ] && echo yes || echo "no (log: '${token_log}')")"
LAST_CALL="POST /v1/admin/setup"
api POST /v1/admin/setup "{\"username\":\"admin\",\"password\":\"$ADMIN_PASSWORD\",\"setup_token\":\"$token_db\"}"
expect 200 201
LAST_CALL="POST /token"
api POST /token "{\"username\":\"admin\",\"password\":\"$ADMIN_PASSWORD\"}"
expect 200
jwt="$(json 'j["access_token"]')"

echo "==> register and launch $UID_ (sentence_transformers, CPU)"
spec='{"version": 2, "model_name": "'"$UID_"'", "dimensions": 384, "max_tokens": 256, "language": ["en"],
  "model_specs": [{"model_format": "pytorch", "model_hub": "huggingface", "model_id": null,
  "model_uri": "/models/all-MiniLM-L6-v2", "model_revision": null, "quantization": "none"}]}'
LAST_CALL="POST /v1/model_registrations/embedding"
api POST /v1/model_registrations/embedding \
  "$(python3 -c 'import json, sys; print(json.dumps({"model": sys.argv[1], "persist": True}))' "$spec")" "$jwt"
expect 200
LAST_CALL="POST /v1/models"
launch_start=$SECONDS
api POST /v1/models "{\"model_uid\":\"$UID_\",\"model_name\":\"$UID_\",\"model_type\":\"embedding\",\"model_engine\":\"sentence_transformers\"}" "$jwt"
expect 200
launch_s=$((SECONDS - launch_start))

LAST_CALL="POST /v1/embeddings"
api POST /v1/embeddings "{\"model\":\"$UID_\",\"input\":[\"inferops smoke test\"]}" "$jwt"
expect 200
dim="$(json 'len(j["data"][0]["embedding"])')"

# Calls the role relies on, logged for tests/images/xinference/API-NOTES.md.
for p in /v1/models "/v1/models/$UID_" "/v1/models/instances?model_uid=$UID_" "/v1/models/$UID_/replicas" \
         /v1/workers /v1/cluster/info /v1/cluster/version /v1/cluster/devices /v1/supervisor /v1/address; do
  api GET "$p" "" "$jwt"
done
api GET /v1/cluster/version
api GET /metrics
# Repeats and errors the role has to recognise.
api POST /v1/admin/setup "{\"username\":\"admin\",\"password\":\"$ADMIN_PASSWORD\",\"setup_token\":\"$token_db\"}"
api POST /v1/model_registrations/embedding \
  "$(python3 -c 'import json, sys; print(json.dumps({"model": sys.argv[1], "persist": True}))' "$spec")" "$jwt"
api GET "/v1/model_registrations/embedding/$UID_" "" "$jwt"
api POST /v1/models "{\"model_uid\":\"$UID_\",\"model_name\":\"$UID_\",\"model_type\":\"embedding\",\"model_engine\":\"sentence_transformers\"}" "$jwt"
api GET /v1/models/nosuchmodel "" "$jwt"
api GET "/v1/models/instances?model_uid=nosuchmodel" "" "$jwt"
# An API key: enough for listing and inference, refused for admin and management routes.
api POST /v1/admin/keys '{"name":"smoke"}' "$jwt"
key="$(json 'j["key"]')"
api GET /v1/models "" "$key"
api GET /v1/cluster/version "" "$key"
api GET /v1/workers "" "$key"
api POST /v1/embeddings "{\"model\":\"$UID_\",\"input\":[\"key\"]}" "$key"
# Terminate, then launch without waiting and poll the instance status.
api DELETE "/v1/models/$UID_" "" "$jwt"
api DELETE "/v1/models/$UID_" "" "$jwt"
api GET "/v1/models/instances?model_uid=$UID_" "" "$jwt"
relaunch_start=$SECONDS
api POST "/v1/models?wait_ready=false" "{\"model_uid\":\"$UID_\",\"model_name\":\"$UID_\",\"model_type\":\"embedding\",\"model_engine\":\"sentence_transformers\"}" "$jwt"
seen=""
while [ $((SECONDS - relaunch_start)) -lt 300 ]; do
  api GET "/v1/models/instances?model_uid=$UID_" "" "$jwt"
  st="$(json 'j[0]["status"] if j else "absent"')"
  [ "${seen##* }" = "$st" ] || seen="$seen $st"
  [ "$st" = READY ] || [ "$st" = ERROR ] && break
  sleep 2
done
api GET "/v1/models/$UID_" "" "$jwt"
{
  echo "--- wait_ready=false: statuses seen:$seen after $((SECONDS - relaunch_start))s"
  echo "--- docker logs, setup token lines:"
  docker logs "$NAME" 2>&1 | grep -i -B3 -A3 'setup token' | sed "s/$token_db/<TOKEN>/g"
  echo "--- XINFERENCE_HOME:"
  docker exec "$NAME" find /root/.xinference -maxdepth 3 -not -path '*/logs/*'
} >>"$LOG"

printf '\n'
printf 'image build (build.sh) : %ss\n' "$build_s"
printf 'image size             : %s (%s bytes)\n' "$(numfmt --to=iec "$size")" "$size"
printf 'start -> API ready     : %s.%03ss\n' "$((ready_ms / 1000))" "$((ready_ms % 1000))"
printf 'launch (POST /v1/models): %ss\n' "$launch_s"
printf 'embedding dimension    : %s\n' "$dim"
[ "$dim" = 384 ] || die "expected a 384-dimension embedding, got $dim"
echo "OK (API transcript: .cache/logs/xinference-smoke.log)"
