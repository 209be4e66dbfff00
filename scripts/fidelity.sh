#!/usr/bin/env bash
# make fidelity: Zoho's official Python SDK (zohocrmsdk8-0, pinned in fidelity/requirements.txt) against the
# sandbox. Creates or reuses a venv in .cache/fidelity-venv, builds and starts zoho-sandbox on a free port,
# runs fidelity/sdk_fidelity.py with a time limit, stops the sandbox on exit. Prints one PASS/FAIL line per
# check; exits non-zero if any check fails or anything on the way does.
#
# Knobs: FIDELITY_PYTHON (python3), FIDELITY_DEALS (5000, must be > 2000), FIDELITY_TZ (+05:30),
# FIDELITY_TIMEOUT seconds for the SDK run (240), FIDELITY_PROFILE (release | debug). On failure the SDK's
# log, token store and field caches are kept in a temp dir (its path is printed).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

python=${FIDELITY_PYTHON:-python3}
deals=${FIDELITY_DEALS:-5000}
tz=${FIDELITY_TZ:-+05:30}
limit=${FIDELITY_TIMEOUT:-240}
profile=${FIDELITY_PROFILE:-release}
venv=$root/.cache/fidelity-venv
req=$root/fidelity/requirements.txt

say() { echo "fidelity: $*" >&2; }
fail() { echo "FAIL  $*"; echo "fidelity: 0 passed, 1 failed"; exit 1; }
trap 'echo "FAIL  scripts/fidelity.sh stopped at line $LINENO (exit $?)"' ERR

[[ "$deals" =~ ^[0-9]+$ ]] && [ "$deals" -gt 2000 ] \
  || fail "setup: FIDELITY_DEALS must be more than 2000 (Get Records has to page past 2000), got $deals"

# --- the venv, reused while requirements.txt and the interpreter are unchanged -----------------------------
command -v "$python" >/dev/null 2>&1 || fail "setup: $python not found (set FIDELITY_PYTHON)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' \
  || fail "setup: $("$python" -V 2>&1) is too old (the script needs Python 3.9+)"
stamp="$(sha256sum "$req" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "creating $venv ($("$python" -V 2>&1)) and installing fidelity/requirements.txt"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv" || fail "setup: could not create the venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req" \
    || { rm -rf "$venv"; fail "setup: pip could not install fidelity/requirements.txt"; }
  echo "$stamp" >"$venv/.stamp"
else
  say "reusing $venv"
fi
sdk_version=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("zohocrmsdk8-0"))') \
  || fail "setup: zohocrmsdk8-0 is not importable from the venv"

# --- the sandbox ---------------------------------------------------------------------------------------------
say "building zoho-sandbox ($profile)"
if [ "$profile" = release ]; then
  cargo build --release --locked -p zoho-sandbox --quiet || fail "setup: cargo build of zoho-sandbox failed"
else
  cargo build --locked -p zoho-sandbox --quiet || fail "setup: cargo build of zoho-sandbox failed"
fi
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
  | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || target_dir=$root/target
bin=$target_dir/$profile/zoho-sandbox
[ -x "$bin" ] || fail "setup: $bin was not built"

work=$(mktemp -d "${TMPDIR:-/tmp}/zoho-fidelity.XXXXXX")
sandbox=""
cleanup() {
  if [ -n "$sandbox" ]; then
    kill "$sandbox" 2>/dev/null || true
    wait "$sandbox" 2>/dev/null || true
  fi
  if [ "${keep:-}" = yes ]; then
    say "kept the SDK's log, token store and field caches in $work/sdk"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin" --port 0 --deals "$deals" --seed 1 --tz "$tz" >"$work/sandbox.out" 2>"$work/sandbox.err" &
sandbox=$!
url=""
for _ in $(seq 1 300); do
  url=$(sed -n 's/^listening on //p' "$work/sandbox.out" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$sandbox" 2>/dev/null || break
  sleep 0.1
done
[ -n "$url" ] || { cat "$work/sandbox.err" >&2; fail "setup: the sandbox did not start"; }
say "sandbox $url ($deals deals, tz $tz); zohocrmsdk8-0 $sdk_version on $("$venv/bin/python" -V 2>&1)"

# --- the SDK run ---------------------------------------------------------------------------------------------
rc=0
export PYTHONDONTWRITEBYTECODE=1
timeout --kill-after=10 "$limit" "$venv/bin/python" "$root/fidelity/sdk_fidelity.py" \
  --base-url "$url" --workdir "$work/sdk" || rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  keep=yes
  fail "the SDK run did not finish within ${limit}s"
fi
if [ "$rc" -ne 0 ]; then
  keep=yes
  say "FAILED (exit $rc); the sandbox's stderr:"
  tail -n 20 "$work/sandbox.err" >&2 || true
fi
exit "$rc"
