#!/usr/bin/env bash
# make bench: the benchmark harness (not part of make test). Builds the two bench examples (the download floor
# and the in-process overlap run) next to the release binaries `make build` made, then runs bench/run.py, which
# prints one table and writes bench/RESULTS.md. BENCH_QUICK=1: 10k deals, one run (a smoke run).
# Every process the harness starts is stopped on exit; a signal here is passed on to it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --example bench_floor --example bench_overlap
python3 bench/run.py "$@" &
harness=$!
trap 'kill -TERM $harness 2>/dev/null || true; wait $harness 2>/dev/null || true' INT TERM
wait $harness
