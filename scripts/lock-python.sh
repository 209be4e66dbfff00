#!/usr/bin/env bash
# lock-python.sh — (re)writes the hash-pinned lock files of the Python tool chains the scripts install:
#
#   scripts/lint-deploy/tools.txt      <- scripts/lint-deploy/tools.in     (lint-deploy.sh's linters)
#   scripts/lint-deploy/checkov.txt    <- scripts/lint-deploy/checkov.in   (lint-deploy.sh's checkov)
#   scripts/bq-emulator/requirements.txt <- scripts/bq-emulator/local-bigquery.in + duckdb.in (bq-emulator.sh)
#
# Usage: scripts/lock-python.sh            # all of them (needs PyPI; nothing is installed)
#        scripts/lock-python.sh lint|emulator
#
# To update a tool: change its version in the .in file, run this, review the diff of the .txt, commit both.
# fidelity/requirements.txt is hashed by hand (see its header); it is not generated here.
#
# How: the .in files name the tools by exact version. Each .in file is resolved on its own by pip itself
# (`pip install --dry-run --ignore-installed --only-binary=:all: --report`, in a throwaway venv of the
# interpreter the installer uses), which names every package of the dependency tree and the sha256 of the
# wheel pip would install. A later .in file's packages replace an earlier one's of the same name: that is how
# the emulator gets duckdb 1.5.5 although local-bigquery declares another range (see bq-emulator.sh).
# The lock files are therefore for one interpreter (major.minor) and one platform, both recorded in their
# header and checked by the installers, which run `pip install --require-hashes --no-deps --only-binary=:all:`
# so that nothing outside the lock can be installed. Wheels only: an sdist would run a build backend that
# pip installs without hash checking.
#
# Sourced (by lint-deploy.sh and bq-emulator.sh), it only defines the helper functions below.

# lock_header FILE KEY: the value of a `# KEY: value` line in a lock file's header.
lock_header() {
    sed -n "s/^# $2: //p" "$1" | head -n1
}

# python_tag PYTHON: "3.13 linux-x86_64" for that interpreter.
python_tag() {
    "$1" -c 'import sys, sysconfig; print(f"{sys.version_info[0]}.{sys.version_info[1]} {sysconfig.get_platform()}")'
}

# find_python_minor X.Y [OVERRIDE]: prints an interpreter of version X.Y (OVERRIDE if given and of that
# version). pyenv's shims fail for a version that is not selected, so its real interpreters under
# $(pyenv root)/versions are tried first, then pythonX.Y and python3 on PATH; each candidate is run.
find_python_minor() {
    local want=$1 override=${2:-} check candidates=() root name c
    check="import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)"
    if [[ -n "$override" ]]; then
        "$override" -c "$check" >/dev/null 2>&1 && { echo "$override"; return 0; }
        return 1
    fi
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root 2>/dev/null || true)"
        if [[ -n "$root" ]]; then
            while IFS= read -r c; do candidates+=("$c"); done < <(
                find "$root/versions" -maxdepth 3 -path "$root/versions/$want.*/bin/python3" 2>/dev/null | sort -rV)
        fi
    fi
    for name in "python$want" python3; do
        if command -v "$name" >/dev/null 2>&1; then candidates+=("$(command -v "$name")"); fi
    done
    for c in "${candidates[@]}"; do
        "$c" -c "$check" >/dev/null 2>&1 && { echo "$c"; return 0; }
    done
    return 1
}

# install_lock VENV_PYTHON LOCKFILE: installs exactly the lock file's wheels, each checked against its hash.
install_lock() {
    local py=$1 lock=$2 want have
    want="$(lock_header "$lock" python) $(lock_header "$lock" platform)"
    have="$(python_tag "$py")"
    if [[ "$want" != "$have" ]]; then
        echo "${lock##*/}: locked for Python $want, this venv is $have; regenerate with scripts/lock-python.sh" >&2
        return 1
    fi
    "$py" -m pip install --quiet --disable-pip-version-check --no-input \
        --require-hashes --no-deps --only-binary=:all: -r "$lock"
}

# lock PYTHON OUT IN...: resolves the IN files with PYTHON's pip and writes OUT (see the header above).
lock() {
    local tmp status=0
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/lock-python.XXXXXX")"
    resolve_into "$tmp" "$@" || status=$?
    rm -rf "$tmp"
    return "$status"
}

resolve_into() {
    local tmp=$1 py=$2 out=$3 in n=0
    shift 3
    "$py" -m venv "$tmp/venv" || return 1
    for in in "$@"; do
        n=$((n + 1))
        echo "lock-python: resolving ${in#"$ROOT"/} with $("$py" -V 2>&1)" >&2
        "$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            --dry-run --ignore-installed --only-binary=:all: --report "$tmp/report-$n.json" -r "$in" || return 1
    done
    local inputs=() f
    for f in "$@"; do inputs+=("${f#"$ROOT"/}"); done
    "$tmp/venv/bin/python" - "$out" "${inputs[*]}" "$tmp"/report-*.json <<'PY' || return 1
import json, sys, sysconfig

out, inputs, reports = sys.argv[1], sys.argv[2], sys.argv[3:]

def canonical(name):
    return name.lower().replace("_", "-").replace(".", "-")

pins = {}  # canonical name -> (name, version, sha256, file); later reports replace earlier ones
for path in sorted(reports, key=lambda p: int(p.rsplit("-", 1)[1].split(".")[0])):
    for item in json.load(open(path))["install"]:
        meta, info = item["metadata"], item["download_info"]
        sha = info.get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha:
            sys.exit(f"lock-python: pip reported no sha256 for {meta['name']} ({info.get('url')})")
        pins[canonical(meta["name"])] = (meta["name"], meta["version"], sha, info["url"].rsplit("/", 1)[1])

v = sys.version_info
with open(out, "w") as f:
    f.write(
        "# GENERATED by scripts/lock-python.sh from " + inputs + ": do not edit, rerun it.\n"
        "# Every package of the tree, one wheel each, pinned by sha256; installed with\n"
        "# pip install --require-hashes --no-deps --only-binary=:all: -r this-file.\n"
        f"# python: {v[0]}.{v[1]}\n"
        f"# platform: {sysconfig.get_platform()}\n"
    )
    for key in sorted(pins):
        name, version, sha, wheel = pins[key]
        f.write(f"{name}=={version} \\\n    --hash=sha256:{sha}\n    # {wheel}\n")
print(f"lock-python: wrote {len(pins)} packages", file=sys.stderr)
PY
}

lock_lint() {
    local py
    # lint-deploy.sh uses the interpreter of its lock files' header; this is where that version is chosen.
    py="$(find_python_minor "${LINT_LOCK_PYTHON_VERSION:-3.11}")" || {
        echo "lock-python: no Python ${LINT_LOCK_PYTHON_VERSION:-3.11} found" >&2
        return 1
    }
    lock "$py" "$ROOT/scripts/lint-deploy/tools.txt" "$ROOT/scripts/lint-deploy/tools.in" \
        && lock "$py" "$ROOT/scripts/lint-deploy/checkov.txt" "$ROOT/scripts/lint-deploy/checkov.in"
}

lock_emulator() {
    local py
    # local-bigquery needs Python >= 3.13.
    py="$(find_python_minor "${EMULATOR_LOCK_PYTHON_VERSION:-3.13}")" || {
        echo "lock-python: no Python ${EMULATOR_LOCK_PYTHON_VERSION:-3.13} found" >&2
        return 1
    }
    lock "$py" "$ROOT/scripts/bq-emulator/requirements.txt" \
        "$ROOT/scripts/bq-emulator/local-bigquery.in" "$ROOT/scripts/bq-emulator/duckdb.in"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    case "${1:-all}" in
        all) lock_lint && lock_emulator ;;
        lint) lock_lint ;;
        emulator) lock_emulator ;;
        *) echo "usage: $0 [all|lint|emulator]" >&2; exit 2 ;;
    esac
fi
