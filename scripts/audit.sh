#!/usr/bin/env bash
# make audit: cargo deny (advisories, bans, licenses) against the RustSec snapshot in ../shared/advisory-db,
# offline. Installs cargo-deny on first use (~2 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked
cargo fetch --locked
tool=../shared/tools/deny-offline
[ -x "$tool" ] || tool=$(dirname "$PWD")/shared/tools/deny-offline
bash "$tool" advisories bans licenses sources
