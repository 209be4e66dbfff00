#!/usr/bin/env bash
# The test command (make test-only; make test adds fmt and clippy). Starts the BigQuery emulator for the
# BigQuery half of the conformance suite unless BIGQUERY_EMULATOR_HOST already points at one, and stops it
# afterwards. With CI=true an emulator that cannot start fails the run; elsewhere the BigQuery tests are
# skipped with a loud message.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${BIGQUERY_EMULATOR_HOST:-}" ]; then
  started=""
  if bash scripts/bq-emulator.sh install && line=$(bash scripts/bq-emulator.sh start | tail -n1) \
     && [[ "$line" == BIGQUERY_EMULATOR_HOST=* ]]; then
    export BIGQUERY_EMULATOR_HOST="${line#BIGQUERY_EMULATOR_HOST=}"
    started=yes
    trap 'bash scripts/bq-emulator.sh stop || true' EXIT
    echo "test: BigQuery emulator at $BIGQUERY_EMULATOR_HOST" >&2
  elif [ "${CI:-}" = "true" ]; then
    echo "test: the BigQuery emulator could not be started, and CI requires the BigQuery tests" >&2
    exit 1
  else
    echo "test: WARNING — BigQuery emulator unavailable: the BigQuery conformance tests will be SKIPPED" >&2
  fi
fi

cargo test --locked --workspace -- --test-threads="${TEST_THREADS:-4}"
