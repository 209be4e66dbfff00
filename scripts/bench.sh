#!/usr/bin/env bash
# make bench: the benchmark harness (not part of make test). Builds the two bench examples (the download floor
# and the in-process overlap run) next to the release binaries `make build` made, then runs bench/run.py, which
# prints its tables and writes bench/RESULTS.md and bench/results.json: the job at realistic latency (the
# sandbox's latency model, 300 ms + 0.1 ms per record, on a skewed 200k-deal org: backfill at concurrency 4 and 10
# against its latency floor and the sequential Python reference, then nightly runs) and at zero latency (CPU,
# memory, credits at 10k/100k/1M deals). About 12 minutes on an idle 2-core machine. BENCH_QUICK=1: a smoke run
# (10k deals, a 20k realistic org, one run each); BENCH_SIZES= BENCH_OVERLAP=0: the realistic part only; see
# bench/run.py for the other knobs. A signal stops whichever step is running; the harness stops every process
# it started.
set -euo pipefail
cd "$(dirname "$0")/.."
child=""
stop() {
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 130
}
trap stop INT TERM
# Each step runs in the background and is waited for, so a signal is handled at once rather than after it ends.
step() {
  "$@" &
  child=$!
  wait "$child"
  child=""
}
# Examples build separately from `make build`: their dev-dependency features must not leak into the job binary.
step cargo build --release --locked --example bench_floor --example bench_overlap
step python3 bench/run.py "$@"
