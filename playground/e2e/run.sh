#!/usr/bin/env bash
# The playground's end-to-end test, for .ci/run: checks that the committed bundle is what
# playground/src builds, installs Debian's chromium and playwright-core, builds and starts the
# release gateway over the embedded emulator, drives the page in headless Chromium
# (playground.test.mjs) and stops the gateway. Exits with the test's status.
#
# Works on a fresh machine as root (CI) or as a user with the packages already there. Ports:
# PLAYGROUND_PORT (18181) for the gateway and PLAYGROUND_EMULATOR_PORT (17171) for its emulator.
# The screenshot lands in playground/e2e/artifacts/playground.png.
set -euo pipefail
e2e="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$e2e/../.." && pwd)"
port="${PLAYGROUND_PORT:-18181}"
emulator_port="${PLAYGROUND_EMULATOR_PORT:-17171}"
gateway_url="http://127.0.0.1:${port}"

echo "== playground e2e: chromium"
if [ ! -x /usr/bin/chromium ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium </dev/null
fi
/usr/bin/chromium --version

echo "== playground e2e: the committed bundle is what playground/src builds"
(
  cd "$repo/playground"
  sums="$(sha256sum dist/*)"
  ./build.sh >/dev/null
  if ! echo "$sums" | sha256sum --check --quiet; then
    echo "playground/dist/ is stale: run playground/build.sh and commit dist/" >&2
    exit 1
  fi
)

echo "== playground e2e: playwright-core"
(cd "$e2e" && npm ci --no-audit --no-fund)

echo "== playground e2e: the release gateway"
(cd "$repo" && cargo build --release --locked --bin ats-gateway)

log="$(mktemp -t ats-playground-gateway.XXXXXX.log)"
"$repo/target/release/ats-gateway" serve \
  --listen "127.0.0.1:${port}" \
  --emulator-listen "127.0.0.1:${emulator_port}" \
  --state-db :memory: \
  --watch-interval 5s >"$log" 2>&1 </dev/null &
gateway_pid=$!
stop_gateway() {
  if kill -0 "$gateway_pid" 2>/dev/null; then
    kill "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
  fi
}
trap stop_gateway EXIT

# Up means this process said so (not some other server on the port) and answers /healthz.
up() { grep -q 'ats-gateway is up' "$log" && curl -fsS "${gateway_url}/healthz" >/dev/null 2>&1; }
for _ in $(seq 1 120); do
  if up; then break; fi
  if ! kill -0 "$gateway_pid" 2>/dev/null; then
    echo "the gateway exited before it was up:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.5
done
if ! up; then
  echo "the gateway is not up after 60 s:" >&2
  cat "$log" >&2
  exit 1
fi

echo "== playground e2e: the page in headless Chromium (${gateway_url})"
status=0
(cd "$e2e" && GATEWAY_URL="$gateway_url" node --test --test-reporter=spec playground.test.mjs) || status=$?
if [ "$status" -ne 0 ]; then
  echo "-- gateway log" >&2
  tail -n 50 "$log" >&2
fi
rm -f "$log"
exit "$status"
