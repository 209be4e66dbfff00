#!/usr/bin/env bash
# make demo: start the Zoho sandbox on a free port, sync its won deals into demo.sqlite3, print the run's
# summary and one analyst query (won revenue by owner, sql/queries/sqlite_won_revenue_by_owner.sql, printed by
# examples/sqlite_query.rs), stop the sandbox. Exits non-zero if any step fails. `make demo` builds the binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
db=${DEMO_DB:-demo.sqlite3}
out=$(mktemp)
"$bin/zoho-sandbox" --port 0 --deals 5000 --seed 1 --tz +05:30 >"$out" 2>/dev/null &
sandbox=$!
trap 'kill $sandbox 2>/dev/null || true; wait $sandbox 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 1 100); do
  url=$(sed -n 's/^listening on //p' "$out" | head -n1)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "${url:-}" ] || { echo "demo: the sandbox did not start" >&2; exit 1; }
echo "sandbox: $url (5000 deals)"
rm -f "$db" "$db-wal" "$db-shm"
# The sandbox's fixed demo credentials (sandbox/src/lib.rs); never real ones.
export ZOHO_CLIENT_ID=1000.SANDBOXDEMOCLIENT ZOHO_CLIENT_SECRET=sandbox-demo-client-secret \
  ZOHO_REFRESH_TOKEN=1000.sandbox-demo-refresh-token ZOHO_ACCOUNTS_URL="$url" SQLITE_PATH="$db" \
  WAREHOUSE=sqlite LOG_FORMAT=${LOG_FORMAT:-text}
"$bin/zoho-deals-sync" sync
echo
query=sql/queries/sqlite_won_revenue_by_owner.sql
echo "analyst query — won revenue by owner (current won deals, exact decimals; $query):"
"$bin/examples/sqlite_query" "$db" "$query"
