#!/usr/bin/env bash
# Instructions per request of the gateway, counted by callgrind: deterministic on a machine
# whose times drift (2 shared cores), so that two builds compare to the percent.
#
#   bash bench/callgrind.sh [binary]        (default: target/release/ats-gateway)
#
# Starts the release emulator and the gateway under `valgrind --tool=callgrind`, sends 10
# warm-up requests, zeroes the counters, sends N (default 40) sequential requests of the query
# in Q (default: the canonical nested query of bench/load.rs), dumps, and prints the gateway's
# instructions per request. EXTRA adds gateway flags (e.g. EXTRA="--expand-pushdown off").
# The profile stays in $OUT.<pid>.1 (default /tmp/ats-callgrind/cg): `callgrind_annotate
# --inclusive=yes` on it shows where they go. Needs valgrind (Debian's package).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-target/release/ats-gateway}
N=${N:-40}
OUT=${OUT:-/tmp/ats-callgrind/cg}
EMU=127.0.0.1:27070
GW=127.0.0.1:28080
CANONICAL='{ recruitingRequests(first: 50) { nodes { id recruitingRequestId description status positions { positionId status description } skills { skillId ratingLevelId } educations { educationLevelId educationDisciplineId } location { description city } recruiter { name partyNumber } } } }'
BODY=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1]}))' "${Q:-$CANONICAL}")
mkdir -p "$(dirname "$OUT")"
rm -f "$OUT".[0-9]*
"$B" emulator --listen $EMU >/dev/null 2>&1 &
EPID=$!
trap 'kill $GPID $EPID 2>/dev/null; wait 2>/dev/null' EXIT
# shellcheck disable=SC2086
ATS_GATEWAY_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$OUT.%p" "$B" --listen $GW \
  --upstream "http://$EMU/api/data/v9.2/" --state-db :memory: ${EXTRA:-} >/dev/null 2>"$OUT.log" &
GPID=$!
for _ in $(seq 1 90); do curl -sf -o /dev/null "http://$GW/healthz" && break; sleep 1; done
post() { curl -s -o /dev/null "http://$GW/graphql" -H 'content-type: application/json' -d "$BODY"; }
for _ in $(seq 1 10); do post; done
callgrind_control -z $GPID >/dev/null 2>&1
for _ in $(seq 1 "$N"); do post; done
callgrind_control -d $GPID >/dev/null 2>&1
sleep 1
F=$(ls -t "$OUT".[0-9]*.1 | head -1)
python3 - "$F" "$N" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r'^summary:\s+(\d+)', text, re.M) or re.search(r'^totals:\s+(\d+)', text, re.M)
print('gateway: %.3f M instructions per request (%s requests; profile %s)' % (int(m.group(1)) / 1e6 / int(sys.argv[2]), sys.argv[2], sys.argv[1]))
PY
