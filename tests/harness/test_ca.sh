#!/usr/bin/env bash
# The test certificate authority of the air-gapped servers (apt mirror, registry, package index):
# one CA and one server certificate whose names cover every server, made once per machine in
# .cache/airgap/ca/ and remade only when this recipe changes (its hash is kept in .recipe).
#   ca.crt                 the CA the Molecule hosts and the controller trust for these servers
#   server.crt server.key  the servers' certificate (EC P-256) and key (0600)
# Usage: tests/harness/test_ca.sh   (prints the directory)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${INFEROPS_TEST_CA_DIR:-$ROOT/.cache/airgap/ca}"
# Server names: the hosts resolve them to the server container (an /etc/hosts entry).
NAMES=(mirror.inferops.test registry.inferops.test pypi.inferops.test localhost)

recipe="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
if [ -f "$OUT/.recipe" ] && [ "$(cat "$OUT/.recipe")" = "$recipe" ] &&
   [ -s "$OUT/ca.crt" ] && [ -s "$OUT/server.crt" ] && [ -s "$OUT/server.key" ]; then
  echo "$OUT"
  exit 0
fi

rm -rf "$OUT"
mkdir -p "$OUT"
umask 077
san="$(printf 'DNS:%s,' "${NAMES[@]}")IP:127.0.0.1"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$OUT/ca.key" -out "$OUT/ca.crt" -days 3650 -subj "/CN=inferops test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$OUT/server.key" -out "$OUT/server.csr" -subj "/CN=${NAMES[0]}" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >"$OUT/ext.cnf"
openssl x509 -req -in "$OUT/server.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" -CAcreateserial \
  -out "$OUT/server.crt" -days 3650 -extfile "$OUT/ext.cnf" 2>/dev/null
rm -f "$OUT/server.csr" "$OUT/ext.cnf"
# Public parts readable (mounted read-only into containers); keys stay 0600.
chmod 0644 "$OUT/ca.crt" "$OUT/server.crt"
chmod 0755 "$OUT"
echo "$recipe" >"$OUT/.recipe"
echo "$OUT"
