#!/usr/bin/env bash
# Builds the release binary and runs the load benchmark against it.
# BENCH_SECONDS (default 10) and BENCH_CONCURRENCY (default 8) tune the operations table;
# CHURN_SECONDS (60), CHURN_CONNECTIONS (64) and CHURN_LATENCY_MS (15) the churn run (clients that
# hang up). BENCH_ONLY=ops or BENCH_ONLY=churn runs one part and rewrites only that part.
# Results: bench/results/latest.md and bench/results/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
cargo bench --bench load --locked
