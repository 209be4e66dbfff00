#!/usr/bin/env bash
# make demo: start the Zoho sandbox on a free port, sync its won deals into demo.sqlite3, print the run's
# summary and one analyst query (won revenue by owner), stop the sandbox. Exits non-zero if any step fails.
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
echo "analyst query — won revenue by owner (current won deals, exact decimals):"
python3 - "$db" <<'PY'
import sqlite3, sys
from decimal import Decimal
db = sqlite3.connect(sys.argv[1])
rows = db.execute("""
    SELECT owner_name, currency, amount FROM closed_won_deals
    WHERE is_closed_won = 1 AND is_deleted = 0 AND amount IS NOT NULL""").fetchall()
totals = {}
for owner, currency, amount in rows:
    key = (owner or "(no owner)", currency or "")
    totals[key] = totals.get(key, Decimal(0)) + Decimal(amount)
print(f"{'owner':<24} {'currency':<8} {'won revenue':>16}")
for (owner, currency), total in sorted(totals.items(), key=lambda kv: -kv[1]):
    print(f"{owner:<24} {currency:<8} {total:>16}")
PY
