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
# - Every package (local-bigquery, duckdb, the extension wheels and all their dependencies) is pinned by
#   sha256 in scripts/bq-emulator/requirements.txt and installed with pip --require-hashes --no-deps, so
#   nothing else can be installed. To change a version: edit scripts/bq-emulator/*.in, run
#   scripts/lock-python.sh emulator, commit both.
# - That lock file is for one Python version (named in its header; local-bigquery needs >= 3.13). On these
#   machines it comes through pyenv, whose `python3.13` shim fails unless that version is selected, so the
#   real interpreter under $(pyenv root)/versions is used; BQ_EMULATOR_PYTHON overrides.
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

LOCK="$REPO/scripts/bq-emulator/requirements.txt"
DUCKDB_VERSION="$(sed -n 's/^duckdb==\([^ ]*\).*/\1/p' "$LOCK")"
# shellcheck source=scripts/lock-python.sh
source "$REPO/scripts/lock-python.sh"
# The lock file's hash is part of the stamp, so a new lock is installed again; bump the recipe when the way
# of installing changes.
RECIPE="$(sha256sum "$LOCK" | cut -d' ' -f1) icu ducklake spatial v2 hash-locked"

log() { echo "bq-emulator: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_python() {
    local version
    version="$(lock_header "$LOCK" python)"
    if [[ -n "${BQ_EMULATOR_PYTHON:-}" ]]; then
        find_python_minor "$version" "$BQ_EMULATOR_PYTHON" \
            || die "BQ_EMULATOR_PYTHON=$BQ_EMULATOR_PYTHON is not Python $version, which scripts/bq-emulator/requirements.txt is locked for"
        return 0
    fi
    find_python_minor "$version" \
        || die "local-bigquery is locked for Python $version (scripts/bq-emulator/requirements.txt) and none was found (looked in \$(pyenv root)/versions/$version.*, python$version, python3). Install one (e.g. 'pyenv install $version'), set BQ_EMULATOR_PYTHON=/path/to/python$version, or relock with scripts/lock-python.sh emulator."
}

installed() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE" && -x "$VENV/bin/local-bigquery" ]]; }

cmd_install() {
    if installed; then log "already installed in $CACHE"; return 0; fi
    local py
    py="$(find_python)"
    log "using $py ($("$py" --version 2>&1))"
    rm -rf "$VENV" "$EMU_HOME" "$STAMP"
    mkdir -p "$CACHE" "$EMU_HOME"
    "$py" -m venv "$VENV"
    # --no-deps: the lock holds the whole tree, including duckdb 1.5.5 although local-bigquery declares
    # another range (see scripts/bq-emulator/duckdb.in); pip therefore has nothing to resolve or warn about.
    install_lock "$VENV/bin/python" "$LOCK" || die "could not install scripts/bq-emulator/requirements.txt"
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
