#!/usr/bin/env bash
# bq-emulator.sh — install, start and stop a local BigQuery emulator (local-bigquery, DuckDB-backed) for the
# BigQuery half of the warehouse conformance suite. Not for production: it only serves tests and demos.
#
#   scripts/bq-emulator.sh install   # idempotent; venv cached in $REPO/.cache/bq-emulator (git-ignored)
#   scripts/bq-emulator.sh start     # a new server; last stdout line: BIGQUERY_EMULATOR_HOST=127.0.0.1:PORT
#   scripts/bq-emulator.sh stop      # the server in $BIGQUERY_EMULATOR_HOST if ours, else all of ours; kills
#                                    # each with its children and removes its temp dir
#   scripts/bq-emulator.sh status    # lists ours; exit 0 when one answers SELECT 1
#
# Typical use:  eval "export $(scripts/bq-emulator.sh start | tail -n1)" && cargo test ... ; scripts/bq-emulator.sh stop
#
# Why each step (see sql/README.md for the emulator's SQL quirks):
# - local-bigquery needs Python >= 3.13. On these machines it comes through pyenv, whose `python3.13` shim
#   fails unless that version is selected, so the real interpreter under $(pyenv root)/versions is used.
# - DuckDB would download its icu/ducklake/spatial extensions at run time, which fails offline; the PyPI wheels
#   ship them, and they are INSTALLed from those files into a private HOME (~/.duckdb) used again when serving.
#   Without spatial the server starts but every request fails.
# - Readiness is a real `SELECT 1` through the REST API: a wedged server stays up but fails queries.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
CACHE="${BQ_EMULATOR_CACHE:-$REPO/.cache/bq-emulator}"
VENV="$CACHE/venv"
EMU_HOME="$CACHE/home"            # private HOME: DuckDB's extension directory lives in $HOME/.duckdb
STAMP="$CACHE/installed.stamp"
RUNS="$CACHE/run"                 # one directory per started server (see instance_dirs)
PROJECT="test-project"
READY_TIMEOUT_SECS="${BQ_EMULATOR_READY_TIMEOUT:-90}"

LOCAL_BIGQUERY_VERSION="0.4.0"
DUCKDB_VERSION="1.5.5"
# Bump this when the recipe changes so `install` redoes it.
RECIPE="local-bigquery==$LOCAL_BIGQUERY_VERSION duckdb==$DUCKDB_VERSION icu ducklake spatial v1"

log() { echo "bq-emulator: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_python() {
    if [[ -n "${BQ_EMULATOR_PYTHON:-}" ]]; then
        if "$BQ_EMULATOR_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)' >/dev/null 2>&1; then
            echo "$BQ_EMULATOR_PYTHON"; return 0
        fi
        die "BQ_EMULATOR_PYTHON=$BQ_EMULATOR_PYTHON is not a Python >= 3.13"
    fi
    local candidates=()
    if command -v pyenv >/dev/null 2>&1; then
        local root
        root="$(pyenv root 2>/dev/null || true)"
        if [[ -n "$root" ]]; then
            # Newest 3.13.x (or later 3.1x) first.
            while IFS= read -r p; do candidates+=("$p"); done < <(
                find "$root/versions" -maxdepth 3 -path "$root/versions/3.1[3-9]*/bin/python3" 2>/dev/null | sort -rV)
        fi
    fi
    local name
    for name in python3.13 python3.14 python3; do
        if command -v "$name" >/dev/null 2>&1; then candidates+=("$(command -v "$name")"); fi
    done
    local c
    for c in "${candidates[@]}"; do
        # A pyenv shim for an unselected version fails here, which is why each candidate is actually run.
        if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 13) else 1)' >/dev/null 2>&1; then
            echo "$c"; return 0
        fi
    done
    return 1
}

installed() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE" && -x "$VENV/bin/local-bigquery" ]]; }

cmd_install() {
    if installed; then log "already installed in $CACHE"; return 0; fi
    local py
    py="$(find_python)" || die "local-bigquery needs Python >= 3.13 and none was found (looked in \$(pyenv root)/versions/3.13*, python3.13, python3). Install one (e.g. 'pyenv install 3.13') or set BQ_EMULATOR_PYTHON=/path/to/python3.13."
    log "using $py ($("$py" --version 2>&1))"
    rm -rf "$VENV" "$EMU_HOME" "$STAMP"
    mkdir -p "$CACHE" "$EMU_HOME"
    "$py" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
    "${pip[@]}" "local-bigquery==$LOCAL_BIGQUERY_VERSION"
    # local-bigquery declares another duckdb range; 1.5.5 is the version whose extension wheels exist on PyPI.
    # pip prints a dependency-conflict warning here: expected.
    "${pip[@]}" "duckdb==$DUCKDB_VERSION" \
        "duckdb-extension-icu==$DUCKDB_VERSION" \
        "duckdb-extension-ducklake==$DUCKDB_VERSION" \
        "duckdb-extension-spatial==$DUCKDB_VERSION" 2>&1 | grep -v '^$' >&2 || true
    "$VENV/bin/python" -c "import duckdb; assert duckdb.__version__ == '$DUCKDB_VERSION', duckdb.__version__" \
        || die "duckdb $DUCKDB_VERSION did not install"
    HOME="$EMU_HOME" "$VENV/bin/python" - <<'PY' || die "could not install the DuckDB extensions from their wheels"
import pathlib, sys, sysconfig
import duckdb
site = pathlib.Path(sysconfig.get_paths()["purelib"])
con = duckdb.connect()
for name in ("icu", "ducklake", "spatial"):
    files = sorted(site.rglob(f"{name}.duckdb_extension"))
    if not files:
        sys.exit(f"no {name}.duckdb_extension under {site}")
    con.execute(f"INSTALL '{files[0]}'")
    con.execute(f"LOAD {name}")
    print(f"bq-emulator: installed DuckDB extension {name} from {files[0]}", file=sys.stderr)
PY
    echo "$RECIPE" >"$STAMP"
    log "installed in $CACHE"
}

free_port() {
    "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

select_one() { # $1 = host:port; succeeds when the server answers a real query
    local out
    out="$(curl -sS --max-time 10 -X POST -H 'Content-Type: application/json' \
        -d '{"query":"SELECT 1 AS ok","useLegacySql":false}' \
        "http://$1/bigquery/v2/projects/$PROJECT/queries" 2>/dev/null)" || return 1
    [[ "$out" == *'"jobComplete"'*'true'* && "$out" == *'"1"'* ]]
}

# One directory per started server under $RUNS (pid, host, tmpdir), named by its port: several checkouts'
# test runs (or a developer and a test run) can each have their own server without stopping each other's.
instance_dirs() {
    local d
    for d in "$RUNS"/*/; do [[ -f "$d/pid" ]] && echo "${d%/}"; done
    return 0
}

alive() { kill -0 "$(cat "$1/pid")" 2>/dev/null; }

stop_instance() { # $1 = instance dir
    local dir="$1" pid tmp
    pid="$(cat "$dir/pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        # The negative pid addresses the process group created by setsid at start: the server and its children.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        local _
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        log "stopped $(cat "$dir/host" 2>/dev/null) (pid $pid)"
    fi
    tmp="$(cat "$dir/tmpdir" 2>/dev/null || true)"
    case "$tmp" in */bq-emulator.*) rm -rf "$tmp" ;; esac
    rm -rf "$dir"
}

# Always a new server with a fresh, empty data directory (the emulator slows down as datasets accumulate, and
# tests should not see each other's leftovers).
cmd_start() {
    installed || cmd_install
    local tmp port grpc host dir
    port="$(free_port)"
    grpc="$(free_port)"
    while [[ "$grpc" == "$port" ]]; do grpc="$(free_port)"; done
    host="127.0.0.1:$port"
    dir="$RUNS/$port"
    mkdir -p "$dir"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/bq-emulator.XXXXXX")"
    mkdir -p "$tmp/data"
    echo "$tmp" >"$dir/tmpdir"
    echo "$host" >"$dir/host"
    # setsid: the server gets its own process group, so `stop` can end it and every child it spawned.
    HOME="$EMU_HOME" setsid "$VENV/bin/local-bigquery" serve --host 127.0.0.1 --port "$port" --grpc-port "$grpc" \
        --project "$PROJECT" --data-dir "$tmp/data" >"$tmp/server.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    local deadline=$((SECONDS + READY_TIMEOUT_SECS))
    until select_one "$host"; do
        if ! alive "$dir"; then
            log "the server exited during start-up; its log:"
            tail -n 40 "$tmp/server.log" >&2 || true
            stop_instance "$dir"
            die "emulator did not start"
        fi
        if ((SECONDS >= deadline)); then
            log "no answer to SELECT 1 on $host after ${READY_TIMEOUT_SECS}s; the server's log:"
            tail -n 40 "$tmp/server.log" >&2 || true
            stop_instance "$dir"
            die "emulator not ready within ${READY_TIMEOUT_SECS}s"
        fi
        sleep 0.5
    done
    log "ready on $host (pid $(cat "$dir/pid"), log $tmp/server.log)"
    echo "BIGQUERY_EMULATOR_HOST=$host"
}

# Stops the server named by $BIGQUERY_EMULATOR_HOST when it is one of ours (what a script that exported
# start's output wants), otherwise every server started from this cache.
cmd_stop() {
    local dir target=""
    if [[ -n "${BIGQUERY_EMULATOR_HOST:-}" ]]; then
        for dir in $(instance_dirs); do
            [[ "$(cat "$dir/host")" == "$BIGQUERY_EMULATOR_HOST" ]] && target="$dir"
        done
    fi
    if [[ -n "$target" ]]; then
        stop_instance "$target"
        return 0
    fi
    for dir in $(instance_dirs); do stop_instance "$dir"; done
}

# Lists the servers started from this cache; exit 0 when at least one answers SELECT 1 (its line is last).
cmd_status() {
    local dir host ok=1
    for dir in $(instance_dirs); do
        host="$(cat "$dir/host")"
        if alive "$dir" && select_one "$host"; then
            log "running: $host (pid $(cat "$dir/pid"))"
            ok=0
            echo "BIGQUERY_EMULATOR_HOST=$host"
        else
            log "not answering: $host (pid $(cat "$dir/pid"))"
        fi
    done
    [[ $ok == 0 ]] || log "no emulator running"
    return $ok
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
