#!/usr/bin/env bash
# Builds the release binary and runs the load benchmark against it.
# BENCH_SECONDS (default 10) and BENCH_CONCURRENCY (default 8) tune the run.
# Results: bench/results/latest.md and bench/results/latest.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
cargo bench --bench load --locked
