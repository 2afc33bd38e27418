#!/usr/bin/env bash
# Federation: composes ats-gateway's subgraph SDL with the jobs subgraph (Apollo composition; no
# errors, no hints about keys), then runs the end-to-end test through Hive Gateway serving the
# composed supergraph (e2e.mjs). Nothing but `npm ci` reaches the network.
#
# Uses the release build, like the other npm steps (GATEWAY_BIN=path/to/ats-gateway to use
# another build, such as target/debug/ats-gateway).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

echo "== federation: npm ci"
(cd "$here" && npm ci --no-audit --no-fund)

if [ -z "${GATEWAY_BIN:-}" ]; then
  echo "== federation: build"
  (cd "$root" && cargo build --release --locked --bin ats-gateway)
  export GATEWAY_BIN="$root/target/release/ats-gateway"
fi

# No registry, usage reporting or telemetry for the router: none of these may be set.
unset APOLLO_KEY APOLLO_GRAPH_REF APOLLO_SCHEMA_CONFIG_DELIVERY_ENDPOINT HIVE_CDN_ENDPOINT HIVE_CDN_KEY \
  HIVE_ACCESS_TOKEN HIVE_USAGE_ACCESS_TOKEN HIVE_TRACE_ACCESS_TOKEN HIVE_REGISTRY_TOKEN HIVE_TARGET \
  HIVE_USAGE_TARGET OPENTELEMETRY

echo "== federation: compose the checked-in subgraph SDL"
node "$here/compose.mjs"

echo "== federation: end to end through the router"
node "$here/e2e.mjs"
