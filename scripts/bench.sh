#!/usr/bin/env bash
# make bench: the benchmark harness (not part of make test). Builds the two bench examples (the download floor
# and the in-process overlap run) next to the release binaries `make build` made, then runs bench/run.py, which
# prints one table and writes bench/RESULTS.md. BENCH_QUICK=1: 10k deals, one run (a smoke run); see
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
