#!/usr/bin/env bash
# Builds the release binary and runs the load benchmark against it.
# BENCH_SECONDS (default 10) and BENCH_CONCURRENCY (default 8) tune the operations table;
# BENCH_SECONDS is also the seconds per path of the unloaded canonical query (one client);
# CHURN_SECONDS (60), CHURN_CONNECTIONS (64) and CHURN_LATENCY_MS (15) the churn run (clients that
# hang up). BENCH_ONLY picks parts (comma-separated: ops, unloaded, churn; all by default) and
# rewrites only those parts. BENCH_ONLY=dashboard (only when named) runs the dashboard of issue
# #17: 100 users for 60 s against three gateways, into bench/results/dashboard.md and .json;
# BENCH_ONLY=replicas (only when named) the several-replicas run of issue #13 (needs redis-server),
# into bench/results/replicas.md and .json; BENCH_ONLY=subscribers (only when named) the subscribers
# of issue #14 (SUBSCRIBERS 10000 over SUBSCRIBER_FILTERS 100 on SUBSCRIBER_CONNECTIONS 100
# WebSockets, one gateway at 1 s intervals), into bench/results/subscribers.md and .json.
# BENCH_ONLY=tracing (only when named) OpenTelemetry export on against off (issue #15), into
# bench/results/tracing.md and .json.
# Results: bench/results/latest.md and bench/results/latest.json, or in BENCH_RESULTS_DIR (for a
# trial run that must not replace the committed results).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
cargo bench --bench load --locked
