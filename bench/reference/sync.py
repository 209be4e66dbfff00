#!/usr/bin/env python3
"""The reference: a straightforward Python script doing the job's core work, for the benchmark's throughput ratio.

What a competent engineer would write in an afternoon with `requests` and `sqlite3`: mint an access token, read
the won stages from the Deals field metadata, page the won deals modified in the window with COQL keyset paging
(`id > last … order by id asc limit 2000`, one query at a time), and upsert each page into SQLite (exact decimals
as text, times converted to UTC, the raw record as JSON, a `modified_time` guard), committing per page.

What it leaves out (so the ratio favours it): the not-won pass, deletions, reconciliation, the run ledger,
retries, concurrency. It is a benchmark yardstick, not a second implementation to maintain.

Configuration is the job's environment: ZOHO_ACCOUNTS_URL, ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET,
ZOHO_REFRESH_TOKEN, SQLITE_PATH. Prints one JSON line: {"wall_s", "won_deals", "pages"}.
"""

import argparse
import datetime as dt
import decimal
import json
import os
import sqlite3
import sys
import time

import requests

STANDARD_FIELDS = [
    "id", "Deal_Name", "Stage", "Pipeline", "Amount", "Currency", "Exchange_Rate", "Probability",
    "Expected_Revenue", "Closing_Date", "Account_Name", "Contact_Name", "Owner", "Owner.email", "Lead_Source",
    "Type", "Created_Time", "Modified_Time",
]
PAGE_SIZE = 2000
MAX_COLUMNS = 50

DDL = """CREATE TABLE IF NOT EXISTS closed_won_deals (
  deal_id TEXT PRIMARY KEY, deal_name TEXT, stage TEXT, pipeline TEXT, amount TEXT, currency TEXT,
  exchange_rate TEXT, probability INTEGER, expected_revenue TEXT, closing_date TEXT, account_id TEXT,
  account_name TEXT, contact_id TEXT, contact_name TEXT, owner_id TEXT, owner_name TEXT, owner_email TEXT,
  lead_source TEXT, deal_type TEXT, created_time TEXT, modified_time TEXT, raw TEXT, synced_at TEXT)"""

COLUMNS = [
    "deal_id", "deal_name", "stage", "pipeline", "amount", "currency", "exchange_rate", "probability",
    "expected_revenue", "closing_date", "account_id", "account_name", "contact_id", "contact_name", "owner_id",
    "owner_name", "owner_email", "lead_source", "deal_type", "created_time", "modified_time", "raw", "synced_at",
]
UPSERT = (
    f"INSERT INTO closed_won_deals ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    "ON CONFLICT (deal_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "deal_id")
    + " WHERE excluded.modified_time >= closed_won_deals.modified_time"
)


def utc(s):
    """Zoho datetime with offset -> RFC 3339 UTC text ending in Z."""
    if not s:
        return None
    return dt.datetime.fromisoformat(s).astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def dec(v):
    return None if v is None else str(v)


def lookup(v):
    return (v.get("id"), v.get("name")) if isinstance(v, dict) else (None, None)


def quote(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--since-days", type=int, default=400)
    args = ap.parse_args()
    started = time.monotonic()

    s = requests.Session()
    tok = s.post(
        os.environ["ZOHO_ACCOUNTS_URL"].rstrip("/") + "/oauth/v2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": os.environ["ZOHO_CLIENT_ID"],
            "client_secret": os.environ["ZOHO_CLIENT_SECRET"],
            "refresh_token": os.environ["ZOHO_REFRESH_TOKEN"],
        },
        timeout=60,
    ).json()
    if "access_token" not in tok:
        sys.exit(f"token: {tok}")
    api = tok["api_domain"].rstrip("/") + "/crm/v8"
    s.headers["Authorization"] = "Zoho-oauthtoken " + tok["access_token"]

    fields = s.get(api + "/settings/fields", params={"module": "Deals"}, timeout=60).json()["fields"]
    won, custom = [], []
    for f in fields:
        if f.get("custom_field") and f.get("api_name"):
            custom.append(f["api_name"])
        if f.get("api_name") == "Stage":
            for v in f.get("pick_list_values", []):
                if "closed won" in (str(v.get("forecast_type")).lower(), str(v.get("deal_category")).lower()):
                    for k in ("actual_value", "display_value"):
                        if v.get(k) and v[k] not in won:
                            won.append(v[k])
    columns = STANDARD_FIELDS + [c for c in custom if c not in STANDARD_FIELDS][: MAX_COLUMNS - len(STANDARD_FIELDS)]

    end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start = end - dt.timedelta(days=args.since_days)
    fmt = "%Y-%m-%dT%H:%M:%S+00:00"
    stages = ", ".join(quote(w) for w in won)

    db = sqlite3.connect(os.environ["SQLITE_PATH"])
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(DDL)
    synced_at = end.strftime("%Y-%m-%dT%H:%M:%SZ")
    after, total, pages = "0", 0, 0
    while True:
        q = (
            f"select {', '.join(columns)} from Deals where ((Stage in ({stages}) and Modified_Time >= "
            f"'{start.strftime(fmt)}') and (Modified_Time < '{end.strftime(fmt)}' and id > {after})) "
            f"order by id asc limit {PAGE_SIZE}"
        )
        r = s.post(api + "/coql", json={"select_query": q}, timeout=60)
        r.raise_for_status()
        pages += 1
        if r.status_code == 204 or not r.content:
            break
        body = json.loads(r.text, parse_float=decimal.Decimal)
        rows = []
        for d in body["data"]:
            acc_id, acc_name = lookup(d.get("Account_Name"))
            con_id, con_name = lookup(d.get("Contact_Name"))
            own_id, own_name = lookup(d.get("Owner"))
            pipeline = d.get("Pipeline")
            rows.append((
                str(d["id"]), d.get("Deal_Name"), d.get("Stage"),
                pipeline.get("name") if isinstance(pipeline, dict) else pipeline,
                dec(d.get("Amount")), d.get("Currency"), dec(d.get("Exchange_Rate")), d.get("Probability"),
                dec(d.get("Expected_Revenue")), d.get("Closing_Date"), acc_id, acc_name, con_id, con_name,
                own_id, own_name, d.get("Owner.email"), d.get("Lead_Source"), d.get("Type"),
                utc(d.get("Created_Time")), utc(d.get("Modified_Time")), json.dumps(d, default=str), synced_at,
            ))
        db.executemany(UPSERT, rows)
        db.commit()
        total += len(rows)
        info = body.get("info", {})
        if not info.get("more_records") and len(rows) < PAGE_SIZE:
            break
        after = max((str(d["id"]) for d in body["data"]), key=lambda i: (len(i), i))
    db.close()
    print(json.dumps({"wall_s": time.monotonic() - started, "won_deals": total, "pages": pages}))


if __name__ == "__main__":
    main()
