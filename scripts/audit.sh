#!/usr/bin/env bash
# make audit: cargo deny (advisories, bans, licenses, sources) with the policy in deny.toml.
#
# Which advisory database:
#   - an offline RustSec snapshot when one is present: `deny-offline` beside an `advisory-db` snapshot in
#     ../shared/tools (next to this checkout, or next to the main checkout when this is a git worktree), or the
#     directory named by AUDIT_OFFLINE_TOOLS. CI provides one, so CI needs no network for the audit;
#   - otherwise cargo-deny's usual one, fetched from GitHub (RustSec's advisory-db) into ~/.cargo: this is what a
#     plain clone uses, and it needs the network.
# AUDIT_ONLINE=1 skips the snapshot even when it is present.
#
# Installs cargo-deny on first use (`cargo install cargo-deny --locked`, a few minutes).
# Exit status: 0 clean; 1 cargo deny found a problem (its report says which); 2 the audit could not run (no
# cargo-deny, the crates or the advisory database could not be fetched).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null; then
  echo "audit: installing cargo-deny (cargo install cargo-deny --locked; a few minutes, once)"
  cargo install cargo-deny --locked || {
    echo "audit: could not install cargo-deny; install it yourself (cargo install cargo-deny --locked) and rerun" >&2
    exit 2
  }
fi
cargo fetch --locked || {
  echo "audit: could not fetch the crates in Cargo.lock (no network to crates.io?); cargo deny needs them" >&2
  exit 2
}

# The offline snapshot, if this machine has one.
offline_tool() {
  local dir candidates=()
  [[ -n "${AUDIT_OFFLINE_TOOLS:-}" ]] && candidates+=("$AUDIT_OFFLINE_TOOLS")
  candidates+=("../shared/tools")
  # In a git worktree, ../shared is beside the main checkout, not beside this one.
  local common
  if common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
    candidates+=("$(dirname "$(dirname "$common")")/shared/tools")
  fi
  for dir in "${candidates[@]}"; do
    if [[ -x "$dir/deny-offline" && -d "$dir/../advisory-db/crates" ]]; then
      printf '%s\n' "$dir/deny-offline"
      return 0
    fi
  done
  return 1
}

checks=(advisories bans licenses sources)
if [[ "${AUDIT_ONLINE:-}" != 1 ]] && tool=$(offline_tool); then
  echo "audit: offline, against the advisory snapshot beside $tool"
  exec bash "$tool" "${checks[@]}"
fi

echo "audit: no offline advisory snapshot here; using cargo-deny's advisory database (fetched from GitHub)"
if ! cargo deny fetch db; then
  cat >&2 <<'MSG'
audit: could not fetch the RustSec advisory database (https://github.com/rustsec/advisory-db), so nothing was
checked. Check the network (or a proxy: cargo deny uses git), then rerun. Offline, put a snapshot beside
this checkout as ../shared/tools/deny-offline with ../shared/advisory-db, or point AUDIT_OFFLINE_TOOLS at
the directory holding deny-offline.
MSG
  exit 2
fi
# Fetched just now: the check itself stays offline (crates are fetched too, above).
cargo deny --offline check "${checks[@]}"
