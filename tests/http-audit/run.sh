#!/usr/bin/env bash
# The GraphQL over HTTP audit (graphql-http's server audits) against a release build of the
# gateway over its embedded emulator. Exits with the audit's status: non-zero when a MUST fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
listen=127.0.0.1:18282
emulator=127.0.0.1:17272

echo "== http-audit: npm ci"
(cd "$here" && npm ci --no-audit --no-fund)

echo "== http-audit: build"
(cd "$root" && cargo build --release --locked)

log="$(mktemp)"
"$root/target/release/ats-gateway" serve --listen "$listen" --emulator-listen "$emulator" --state-db :memory: \
  >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT

echo "== http-audit: waiting for the gateway"
for _ in $(seq 1 600); do
  if curl -fsS "http://$listen/healthz" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "the gateway exited:"; cat "$log"; exit 1
  fi
  sleep 0.2
done
curl -fsS "http://$listen/healthz" >/dev/null || { echo "the gateway did not come up:"; cat "$log"; exit 1; }

echo "== http-audit: audit"
GATEWAY_URL="http://$listen/graphql" node "$here/audit.mjs"
