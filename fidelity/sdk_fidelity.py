#!/usr/bin/env python3
"""Fidelity check: Zoho's official Python SDK (zohocrmsdk8-0) against the zoho-sandbox.

The SDK is a client nobody in this project wrote. If it can mint a token, page COQL, read Get Records
past 2000 with page_token, read deleted records and the Stage metadata, and parse every record into
its own typed objects, and what it reads equals the sandbox's ground truth (GET /__sandbox/truth),
then the sandbox answers the way the SDK expects Zoho to answer.

Usage: sdk_fidelity.py --base-url http://127.0.0.1:PORT [--workdir DIR]

Prints one PASS/FAIL line per check and exits 1 if any check failed (2 on a setup error).
Only the SDK talks to the CRM API; plain urllib is used for the sandbox's /__sandbox/ test routes.
"""

import argparse
import datetime as dt
import json
import logging
import os
import sys
import tempfile
import time
import traceback
import urllib.request

from zohocrmsdk.src.com.zoho.api.authenticator.oauth_token import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store.file_store import FileStore
from zohocrmsdk.src.com.zoho.api.logger import Logger
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, ParameterMap
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.exception import SDKException
from zohocrmsdk.src.com.zoho.crm.api.initializer import Initializer
from zohocrmsdk.src.com.zoho.crm.api.sdk_config import SDKConfig
from zohocrmsdk.src.com.zoho.crm.api.util import Choice, Constants
from zohocrmsdk.src.com.zoho.crm.api.record import Record
import zohocrmsdk.src.com.zoho.crm.api.coql as coql
import zohocrmsdk.src.com.zoho.crm.api.fields as fields_api
import zohocrmsdk.src.com.zoho.crm.api.layouts as layouts_api
import zohocrmsdk.src.com.zoho.crm.api.pipeline as pipeline_api
import zohocrmsdk.src.com.zoho.crm.api.record as record_api
import zohocrmsdk.src.com.zoho.crm.api.users as users_api
from zohocrmsdk.src.com.zoho.crm.api.users.minified_user import MinifiedUser
from zohocrmsdk.src.com.zoho.crm.api.tags.tag import Tag

# The sandbox's demo credentials (sandbox/src/lib.rs): never real ones.
CLIENT_ID = "1000.SANDBOXDEMOCLIENT"
CLIENT_SECRET = "sandbox-demo-client-secret"
REFRESH_TOKEN = "1000.sandbox-demo-refresh-token"
GRANT_CODE = "1000.sandbox-demo-grant-code"  # single use, per sandbox process

SDK_LOGGER = logging.getLogger("SDKLogger")


# --------------------------------------------------------------------------------------------------
# Reporting


class Report:
    def __init__(self):
        self.results = []  # (name, ok, detail)

    def check(self, name, ok, detail=""):
        self.results.append((name, bool(ok), detail))
        mark = "PASS" if ok else "FAIL"
        print(f"{mark}  {name}" + (f" — {detail}" if detail else ""), flush=True)
        return bool(ok)

    def failed(self):
        return [r for r in self.results if not r[1]]


REPORT = Report()


class SdkLogTap(logging.Handler):
    """Collects what the SDK logs: the URLs it requests and the exceptions it swallows.

    The SDK's CommonAPIHandler.api_call catches an SDKException raised while parsing a response,
    logs it at INFO ("Exception in current API call execution : ...") and returns None, so a parse
    failure would otherwise go unnoticed. Every such line is a failure here.
    """

    SWALLOWED = (
        Constants.API_CALL_EXCEPTION,
        Constants.SET_API_URL_EXCEPTION,
        Constants.AUTHENTICATION_EXCEPTION,
        Constants.FORM_REQUEST_EXCEPTION,
        Constants.SAVE_TOKEN_ERROR,
        Constants.API_EXCEPTION,
    )

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.urls = []
        self.problems = []

    def emit(self, record):
        try:
            msg = record.getMessage()
        except Exception:  # a malformed log call inside the SDK is itself worth reporting
            msg = f"{record.msg!r} {record.args!r}"
        if " - url = " in msg.lower():
            # "GET - URL = http://... , HEADERS = {...} , PARAMS = {...}."
            head = msg.split(" , ")[0]
            method, _, url = head.partition(" - URL = ")
            params = ""
            if " , PARAMS = " in msg:
                params = msg.rsplit(" , PARAMS = ", 1)[1].rstrip(".")
            self.urls.append((method.strip(), url.strip(), params))
        if record.levelno >= logging.WARNING or any(msg.startswith(s) for s in self.SWALLOWED):
            self.problems.append(f"{record.levelname}: {msg[:400]}")

    def take_problems(self):
        out, self.problems = self.problems, []
        return out


# --------------------------------------------------------------------------------------------------
# The sandbox's test routes (not part of Zoho's API, so plain HTTP)


def http_json(method, url, body=None, timeout=60):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


# --------------------------------------------------------------------------------------------------
# Normalising SDK objects and truth JSON to one comparable shape


def parse_instant(s):
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        raise ValueError(f"datetime without offset: {s}")
    return t.astimezone(dt.timezone.utc)


def norm_sdk(v):
    """An SDK-parsed value → plain JSON-ish value (instants in UTC, lookups as dicts)."""
    if v is None:
        return None
    if isinstance(v, Choice):
        return v.get_value()
    if isinstance(v, dt.datetime):
        return ("instant", v.astimezone(dt.timezone.utc))
    if isinstance(v, dt.date):
        return ("date", v.isoformat())
    if isinstance(v, MinifiedUser):
        return {"id": str(v.get_id()), "name": v.get_name(), "email": v.get_email()}
    if isinstance(v, Tag):
        return {"id": str(v.get_id()), "name": v.get_name()}
    if isinstance(v, Record):
        out = {k: norm_sdk(x) for k, x in (v.get_key_values() or {}).items()}
        if v.get_id() is not None:
            out["id"] = str(v.get_id())  # the SDK types record ids as Long (int)
        return out
    if isinstance(v, dict):
        return {k: norm_sdk(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm_sdk(x) for x in v]
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return ("num", float(v))
    return v


def norm_truth(field_type, v):
    """A truth JSON value for a field of Zoho data_type `field_type` → the same shape as norm_sdk."""
    if v is None:
        return None
    if field_type == "datetime":
        return ("instant", parse_instant(v))
    if field_type == "date":
        return ("date", v)
    if field_type in ("currency", "double", "integer", "bigint", "percent"):
        return ("num", float(v))
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return ("num", float(v))
    if isinstance(v, dict):
        return {k: norm_truth(None, x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm_truth(None, x) for x in v]
    return v  # strings (ids inside lookups stay strings)


def compare_record(sdk_rec, truth_rec, field_types, names, coql_shape=False):
    """Differences between an SDK Record and the truth record over `names` (list of strings).

    coql_shape: COQL answers carry no module metadata for the SDK (its CoqlOperations sets no module),
    so dates stay strings and lookups stay plain dicts; and COQL gives user lookups as
    {"name": last_name, "id"} (docs/zoho-api.md §3c), so those are compared on id only.
    """
    diffs = []
    kv = sdk_rec.get_key_values() or {}
    if str(sdk_rec.get_id()) != truth_rec["id"]:
        diffs.append(f"id {sdk_rec.get_id()!r} != {truth_rec['id']!r}")
    for name in names:
        if name == "id":
            continue
        ftype = field_types.get(name)
        got = norm_sdk(kv.get(name))
        want = norm_truth(ftype, truth_rec.get(name))
        if coql_shape and isinstance(want, tuple) and want[0] == "date" and isinstance(got, str):
            want = want[1]
        if isinstance(want, dict) and isinstance(got, dict):
            keys = ["id"] if coql_shape and ftype in ("ownerlookup", "userlookup") else list(want)
            want = {k: want.get(k) for k in keys}
            got = {k: got.get(k) for k in keys}
        if got != want:
            diffs.append(f"{name}: sdk={got!r} truth={want!r}")
    return diffs


# What the SDK must have turned each Zoho data_type into (its DataTypeConverter and json_details).
SDK_TYPES = {
    "datetime": (dt.datetime,),
    "date": (dt.date,),
    "currency": (float,),
    "double": (float,),
    "integer": (int,),
    "boolean": (bool,),
    "picklist": (Choice,),
    "lookup": (Record,),
    "ownerlookup": (MinifiedUser,),
    "text": (str,),
    "textarea": (str,),
}


def type_errors(sdk_rec, field_types, names):
    """Fields whose SDK value is not of the Python type the SDK maps their data_type to."""
    out = []
    kv = sdk_rec.get_key_values() or {}
    for name in names:
        v = kv.get(name)
        if v is None:
            continue
        if name == "Tag":  # Record's own json_details: List of tags.Tag
            ok = isinstance(v, list) and all(isinstance(t, Tag) for t in v)
        else:
            want = SDK_TYPES.get(field_types.get(name))
            ok = want is None or (isinstance(v, want) and not (want == (int,) and isinstance(v, bool)))
        if not ok:
            out.append(f"{name}: {type(v).__name__} for data_type {field_types.get(name)}")
    return out


def status_of(resp):
    return None if resp is None else resp.get_status_code()


def api_error(obj):
    """(code, message) of an SDK APIException-like object, else None."""
    if obj is None or not hasattr(obj, "get_code") or not hasattr(obj, "get_status"):
        return None
    code = obj.get_code()
    msg = obj.get_message()
    return (code.get_value() if isinstance(code, Choice) else code, msg.get_value() if isinstance(msg, Choice) else msg)


# --------------------------------------------------------------------------------------------------
# The checks


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True, help="the sandbox, e.g. http://127.0.0.1:PORT")
    ap.add_argument("--workdir", help="token store, SDK field caches and log (default: a new temp dir)")
    ap.add_argument("--coql-page", type=int, default=200, help="COQL LIMIT per page (several pages wanted)")
    args = ap.parse_args()
    base = args.base_url.rstrip("/")
    workdir = args.workdir or tempfile.mkdtemp(prefix="zoho-sdk-fidelity-")
    os.makedirs(workdir, exist_ok=True)

    rep = REPORT
    tap = SdkLogTap()
    SDK_LOGGER.addHandler(tap)
    started = time.monotonic()

    truth = http_json("GET", f"{base}/__sandbox/truth")
    truth_deals = {d["id"]: d for d in truth["deals"]}
    truth_deleted = {d["id"]: d for d in truth["deleted"]}
    truth_now = parse_instant(truth["now"])
    print(
        f"truth: {len(truth_deals)} live deals, {len(truth_deleted)} deleted, won stages {truth['won_stages']}",
        flush=True,
    )
    http_json("POST", f"{base}/__sandbox/reset-stats")

    # The sandbox serves the accounts server and the API on one base URL. The SDK's accounts_url is
    # the full token URL (its DCs use "https://accounts.zoho.com/oauth/v2/token"); revoke appends "/revoke".
    # DataCenter.get(api_domain) returns None for an unknown host, so the SDK keeps this environment.
    environment = DataCenter.Environment(base, f"{base}/oauth/v2/token", base)
    config = SDKConfig(auto_refresh_fields=False, connect_timeout=5.0, read_timeout=60.0)
    logger = Logger.get_instance(Logger.Levels.INFO, os.path.join(workdir, "sdk.log"))

    # ---- 1. accounts server: HTTP-200 error body is an error to the SDK --------------------------------
    try:
        bad = OAuthToken(client_id=CLIENT_ID, client_secret="wrong-secret", refresh_token=REFRESH_TOKEN, find_user=False)
        Initializer.initialize(
            environment=environment,
            token=bad,
            store=FileStore(os.path.join(workdir, "bad_tokens.txt")),
            sdk_config=config,
            resource_path=workdir,
            logger=logger,
        )
        rep.check("token: wrong client secret is refused", False, "the SDK accepted a token response for a bad secret")
    except SDKException as e:
        rep.check(
            "token: wrong client secret is refused",
            e.code == Constants.INVALID_TOKEN_ERROR and "invalid_client" in str(e),
            f"SDKException code={e.code!r} message={e.error_message!r}",
        )
    tap.take_problems()

    # ---- 1b. grant-code exchange (Self Client), single use, and revoking the refresh token it gave -------
    grant_store = os.path.join(workdir, "grant_tokens.txt")
    try:
        grant = OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_token=GRANT_CODE, find_user=False)
        Initializer.initialize(
            environment=environment, token=grant, store=FileStore(grant_store), sdk_config=config,
            resource_path=workdir, logger=logger,
        )
        new_refresh = grant.get_refresh_token()
        rep.check(
            "token: authorization_code grant through the SDK yields access + refresh token",
            bool(grant.get_access_token()) and bool(new_refresh) and new_refresh != REFRESH_TOKEN,
            f"refresh token {'issued' if new_refresh else 'missing'}",
        )
        revoke_url = environment.accounts_url + Constants.REVOKE_URL
        first = OAuthToken.revoke_refresh_token(new_refresh, revoke_url)
        again = OAuthToken.revoke_refresh_token(new_refresh, revoke_url)
        rep.check(
            "token: the SDK's revoke ({accounts_url}/revoke) succeeds once, then not",
            first is True and again is False,
            f"first {first}, second {again}",
        )
    except SDKException as e:
        rep.check("token: authorization_code grant through the SDK yields access + refresh token", False, f"SDKException {e}")
    try:
        reuse = OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, grant_token=GRANT_CODE, find_user=False)
        Initializer.initialize(
            environment=environment, token=reuse, store=FileStore(os.path.join(workdir, "reuse_tokens.txt")),
            sdk_config=config, resource_path=workdir, logger=logger,
        )
        rep.check("token: a used grant code is refused", False, "the SDK got a token for a used grant code")
    except SDKException as e:
        rep.check(
            "token: a used grant code is refused",
            e.code == Constants.INVALID_TOKEN_ERROR and "invalid_code" in str(e),
            f"SDKException code={e.code!r} message={e.error_message!r}",
        )
    tap.take_problems()

    # ---- 2. token refresh, CurrentUser and org lookups the SDK makes on its own ------------------------
    token = OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN, find_user=True)
    store_path = os.path.join(workdir, "sdk_tokens.txt")
    t0 = time.time()
    try:
        Initializer.initialize(
            environment=environment,
            token=token,
            store=FileStore(store_path),
            sdk_config=config,
            resource_path=workdir,
            logger=logger,
        )
    except SDKException as e:
        rep.check("token: refresh_token grant through the SDK", False, f"SDKException {e}")
        return finish(rep, tap, started, workdir, base)
    problems = tap.take_problems()
    access = token.get_access_token()
    expiry_ms = int(token.get_expires_in() or 0)
    ttl_s = expiry_ms / 1000 - t0
    rep.check(
        "token: refresh_token grant through the SDK",
        bool(access) and access.startswith("1000.") and 3500 <= ttl_s <= 3700 and not problems,
        f"access token minted, SDK expiry in {ttl_s:.0f}s (expires_in read as seconds)" + (f"; {problems}" if problems else ""),
    )
    rep.check(
        "token: api_domain from the token response",
        token.get_api_domain() == base,
        f"api_domain={token.get_api_domain()!r}",
    )
    sig = token.get_user_signature()
    user_name = sig.get_name() if sig is not None else None
    current = http_json("GET", f"{base}/__sandbox/stats")
    rep.check(
        "users?type=CurrentUser and /org: SDK tags its token with email:zgid",
        user_name is not None and ":" in user_name and "@" in user_name.split(":")[0],
        f"user signature {user_name!r}; calls so far {current.get('calls')}",
    )
    try:
        with open(store_path, encoding="utf-8") as fh:
            stored = fh.read()
        rep.check("token: persisted by the SDK's FileStore", access in stored, store_path)
    except OSError as e:
        rep.check("token: persisted by the SDK's FileStore", False, str(e))

    # ---- 3. Deals field metadata: Stage pick list with forecast types ---------------------------------
    pm = ParameterMap()
    pm.add(fields_api.GetFieldsParam.module, "Deals")
    resp = fields_api.FieldsOperations().get_fields(pm)
    obj = resp.get_object() if resp is not None else None
    field_types = {}
    won_from_meta = set()
    if isinstance(obj, fields_api.ResponseWrapper):
        deal_fields = obj.get_fields()
        field_types = {f.get_api_name(): f.get_data_type() for f in deal_fields}
        stage = next((f for f in deal_fields if f.get_api_name() == "Stage"), None)
        plv = stage.get_pick_list_values() if stage is not None else []
        won = [p for p in plv if p.get_forecast_type() == "Closed Won"]
        lost = [p for p in plv if p.get_forecast_type() == "Closed Lost"]
        for p in won:
            won_from_meta.update({p.get_actual_value(), p.get_display_value()})
        fc = {p.get_forecast_category().get_name() for p in won if p.get_forecast_category() is not None}
        rep.check(
            "metadata: Stage pick list has two 'Closed Won' values",
            len(won) == 2 and {p.get_actual_value() for p in won} == set(truth["won_stages"]) and fc == {"Closed"},
            f"won actual values {[p.get_actual_value() for p in won]} (display {[p.get_display_value() for p in won]}), "
            f"{len(lost)} Closed Lost, {len(plv)} values in all; forecast categories {sorted(fc)}",
        )
        lookups = {
            f.get_api_name(): f.get_lookup().get_module().get_api_name()
            for f in deal_fields
            if f.get_lookup() is not None and f.get_lookup().get_module() is not None
        }
        rep.check(
            "metadata: Deals fields parsed",
            len(deal_fields) >= 30 and lookups.get("Account_Name") == "Accounts" and lookups.get("Owner") == "users",
            f"{len(deal_fields)} fields; lookups {lookups}",
        )
    else:
        rep.check("metadata: Stage pick list has two 'Closed Won' values", False, f"status {status_of(resp)}, {api_error(obj)}")
    problems = tap.take_problems()
    rep.check("metadata: no SDK exception while reading fields", not problems, "; ".join(problems))

    # Layouts → pipeline maps: the other place forecast types live (docs/zoho-api.md §5.3).
    pm = ParameterMap()
    pm.add(layouts_api.GetLayoutsParam.module, "Deals")
    resp = layouts_api.LayoutsOperations().get_layouts(pm)
    obj = resp.get_object() if resp is not None else None
    layout_id = None
    if isinstance(obj, layouts_api.ResponseWrapper) and obj.get_layouts():
        layout_id = int(obj.get_layouts()[0].get_id())
    pipe_won = set()
    if layout_id is not None:
        resp = pipeline_api.PipelineOperations(layout_id).get_pipelines()
        pobj = resp.get_object() if resp is not None else None
        if isinstance(pobj, pipeline_api.ResponseWrapper):
            for p in pobj.get_pipeline() or []:
                for m in p.get_maps() or []:
                    if m.get_forecast_type() == "Closed Won":
                        pipe_won.add(m.get_actual_value())
        else:
            pobj = api_error(pobj) or status_of(resp)
    problems = tap.take_problems()
    rep.check(
        "metadata: layouts → pipeline maps agree on the won stages",
        layout_id is not None and pipe_won == set(truth["won_stages"]) and not problems,
        f"layout {layout_id}, pipeline won stages {sorted(pipe_won)}" + (f"; {problems}" if problems else ""),
    )

    # ---- 4. COQL keyset paging over a window -------------------------------------------------------
    won_values = sorted(won_from_meta) or truth["won_stages"]
    lo = truth_now - dt.timedelta(days=1)
    hi = truth_now
    fmt = lambda t: t.astimezone(dt.timezone(dt.timedelta(hours=-7))).isoformat(timespec="seconds")  # any offset works
    stage_list = ",".join("'" + v.replace("'", "\\'") + "'" for v in won_values)
    cols = ["id", "Deal_Name", "Stage", "Amount", "Closing_Date", "Modified_Time", "Owner", "Account_Name", "Currency"]
    expected_ids = {
        i
        for i, d in truth_deals.items()
        if d.get("Stage") in truth["won_stages"] and lo <= parse_instant(d["Modified_Time"]) <= hi
    }
    seen = []
    pages = 0
    last = 0
    coql_ok = True
    coql_detail = []
    coql_diffs = []
    while pages < 1000:
        q = (
            f"select {', '.join(cols)} from Deals where ((Stage in ({stage_list}) and "
            f"Modified_Time between '{fmt(lo)}' and '{fmt(hi)}') and id > {last}) order by id asc limit {args.coql_page}"
        )
        bw = coql.BodyWrapper()
        bw.set_select_query(q)
        resp = coql.CoqlOperations().get_records(bw)
        st = status_of(resp)
        if st == 204:
            break
        obj = resp.get_object() if resp is not None else None
        if not isinstance(obj, coql.ResponseWrapper):
            coql_ok = False
            coql_detail.append(f"page {pages + 1}: status {st}, {api_error(obj)}")
            break
        pages += 1
        data = obj.get_data() or []
        info = obj.get_info()
        ids = [str(r.get_id()) for r in data]
        if len(data) > args.coql_page or info is None or info.get_count() != len(data):
            coql_ok = False
            coql_detail.append(f"page {pages}: {len(data)} rows, info.count={info and info.get_count()}")
        if ids != sorted(ids, key=int):
            coql_ok = False
            coql_detail.append(f"page {pages}: not in id order")
        for r in data:
            t = truth_deals.get(str(r.get_id()))
            if t is None:
                coql_diffs.append(f"{r.get_id()}: not in truth")
                continue
            coql_diffs.extend(f"{r.get_id()} {d}" for d in compare_record(r, t, field_types, cols, coql_shape=True))
        seen.extend(ids)
        if not info.get_more_records():
            break
        last = int(ids[-1])
    problems = tap.take_problems()
    dupes = len(seen) - len(set(seen))
    rep.check(
        "COQL: keyset paging reads the won deals of a 24 h window",
        coql_ok and pages >= 3 and set(seen) == expected_ids and dupes == 0 and not problems,
        f"{pages} pages of ≤{args.coql_page}, {len(seen)} rows, truth {len(expected_ids)}, "
        f"missing {len(expected_ids - set(seen))}, extra {len(set(seen) - expected_ids)}, duplicates {dupes}"
        + (f"; {coql_detail}" if coql_detail else "")
        + (f"; {problems[:3]}" if problems else ""),
    )
    rep.check(
        "COQL: every row parsed and equal to truth (lookups, amounts, datetimes)",
        not coql_diffs and len(seen) > 0,
        f"{len(seen)} rows compared on {len(cols)} columns" + (f"; first diffs {coql_diffs[:5]}" if coql_diffs else ""),
    )

    # COQL errors arrive as the SDK's APIException
    bw = coql.BodyWrapper()
    bw.set_select_query("select id from Deals order by id")  # no WHERE: Zoho lists it as a SYNTAX_ERROR
    resp = coql.CoqlOperations().get_records(bw)
    err = api_error(resp.get_object() if resp is not None else None)
    tap.take_problems()
    rep.check(
        "COQL: a query without WHERE → SYNTAX_ERROR parsed as APIException",
        status_of(resp) == 400 and err is not None and err[0] == "SYNTAX_ERROR",
        f"status {status_of(resp)}, {err}",
    )

    # ---- 5. Get Records past 2000: page 1..10, then page_token ----------------------------------------
    all_fields = [n for n in field_types if n != "id"] or ["Deal_Name", "Stage"]
    got = []
    rec_diffs = []
    type_diffs = []
    gr_detail = []
    pages = 0
    used_token = 0
    page_token = None
    page = 1
    while pages < 2000:
        pm = ParameterMap()
        pm.add(record_api.GetRecordsParam.fields, ",".join(all_fields))
        pm.add(record_api.GetRecordsParam.per_page, 200)
        pm.add(record_api.GetRecordsParam.sort_by, "id")
        pm.add(record_api.GetRecordsParam.sort_order, "asc")
        if page_token is not None:
            pm.add(record_api.GetRecordsParam.page_token, page_token)
            used_token += 1
        else:
            pm.add(record_api.GetRecordsParam.page, page)
        resp = record_api.RecordOperations("Deals").get_records(pm, HeaderMap())
        st = status_of(resp)
        if st == 204:
            break
        obj = resp.get_object() if resp is not None else None
        if not isinstance(obj, record_api.ResponseWrapper):
            gr_detail.append(f"page {pages + 1}: status {st}, {api_error(obj)}")
            break
        pages += 1
        data = obj.get_data() or []
        info = obj.get_info()
        for r in data:
            t = truth_deals.get(str(r.get_id()))
            if t is None:
                rec_diffs.append(f"{r.get_id()}: not in truth")
                continue
            rec_diffs.extend(f"{r.get_id()} {d}" for d in compare_record(r, t, field_types, all_fields))
            type_diffs.extend(f"{r.get_id()} {d}" for d in type_errors(r, field_types, all_fields))
        got.extend(str(r.get_id()) for r in data)
        if not info.get_more_records():
            break
        if page * 200 < 2000 and page_token is None:
            page += 1
        else:
            page_token = info.get_next_page_token()
            if not page_token:
                gr_detail.append(f"page {pages}: more_records but no next_page_token")
                break
    problems = tap.take_problems()
    dupes = len(got) - len(set(got))
    rep.check(
        "Get Records: pages 1–10, then page_token past 2000, every record exactly once",
        not gr_detail and len(got) > 2000 and used_token > 0 and set(got) == set(truth_deals) and dupes == 0
        and not problems,
        f"{pages} pages ({used_token} by page_token), {len(got)} records, truth {len(truth_deals)}, "
        f"missing {len(set(truth_deals) - set(got))}, duplicates {dupes}"
        + (f"; {gr_detail}" if gr_detail else "")
        + (f"; {problems[:3]}" if problems else ""),
    )
    rep.check(
        "Get Records: every record parsed by the SDK and equal to truth on every field",
        not rec_diffs and len(got) > 0,
        f"{len(got)} records × {len(all_fields)} fields" + (f"; first diffs {rec_diffs[:5]}" if rec_diffs else ""),
    )

    rep.check(
        "Get Records: the SDK typed every value by its field metadata (datetime, date, float, Choice, Record, …)",
        not type_diffs and len(got) > 0,
        "amounts float, datetimes with offset → datetime, lookups → Record, owners → MinifiedUser, Tag → [Tag]"
        + (f"; first {type_diffs[:5]}" if type_diffs else ""),
    )

    # page 11 by number is refused with Zoho's code; the SDK parses the error envelope
    pm = ParameterMap()
    pm.add(record_api.GetRecordsParam.fields, "Deal_Name")
    pm.add(record_api.GetRecordsParam.page, 11)
    pm.add(record_api.GetRecordsParam.per_page, 200)
    resp = record_api.RecordOperations("Deals").get_records(pm, HeaderMap())
    err = api_error(resp.get_object() if resp is not None else None)
    tap.take_problems()
    rep.check(
        "Get Records: page 11 without page_token → DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        status_of(resp) == 400 and err is not None and err[0] == "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        f"status {status_of(resp)}, {err}",
    )

    # If-Modified-Since at "now" → 304
    hm = HeaderMap()
    hm.add(record_api.GetRecordsHeader.if_modified_since, truth_now + dt.timedelta(seconds=1))
    pm = ParameterMap()
    pm.add(record_api.GetRecordsParam.fields, "Deal_Name")
    resp = record_api.RecordOperations("Deals").get_records(pm, hm)
    problems = tap.take_problems()
    rep.check(
        "Get Records: If-Modified-Since after the last change → 304",
        status_of(resp) == 304 and not problems,
        f"status {status_of(resp)}" + (f"; {problems}" if problems else ""),
    )

    # ---- 6. deleted records ------------------------------------------------------------------------
    del_seen = {}
    del_detail = []
    page = 1
    while page < 1000:
        pm = ParameterMap()
        pm.add(record_api.GetDeletedRecordsParam.type, "all")
        pm.add(record_api.GetDeletedRecordsParam.per_page, 20)
        pm.add(record_api.GetDeletedRecordsParam.page, page)
        resp = record_api.RecordOperations("Deals").get_deleted_records(pm, HeaderMap())
        st = status_of(resp)
        if st == 204:
            break
        obj = resp.get_object() if resp is not None else None
        if not isinstance(obj, record_api.DeletedRecordsWrapper):
            del_detail.append(f"page {page}: status {st}, {api_error(obj)}")
            break
        for d in obj.get_data() or []:
            key = str(d.get_id())
            if key in del_seen:
                del_detail.append(f"{key} twice")
            del_seen[key] = d
        if not obj.get_info().get_more_records():
            break
        page += 1
    mismatch = []
    for key, d in del_seen.items():
        t = truth_deleted.get(key)
        if t is None:
            continue
        if d.get_type() != t["type"] or d.get_deleted_time().astimezone(dt.timezone.utc) != parse_instant(t["deleted_time"]):
            mismatch.append(f"{key}: sdk ({d.get_type()}, {d.get_deleted_time()}) truth ({t['type']}, {t['deleted_time']})")
        if t["type"] == "recycle" and (d.get_deleted_by() is None or d.get_display_name() is None):
            mismatch.append(f"{key}: recycle entry without deleted_by/display_name")
    problems = tap.take_problems()
    rep.check(
        "deleted records: ids, types and deleted_time equal truth",
        not del_detail and set(del_seen) == set(truth_deleted) and not mismatch and page > 1 and not problems,
        f"{len(del_seen)} deleted over {page} pages of 20, truth {len(truth_deleted)}"
        + (f"; {del_detail}" if del_detail else "")
        + (f"; {mismatch[:3]}" if mismatch else "")
        + (f"; {problems[:3]}" if problems else ""),
    )

    # ---- 7. users as the SDK reads them -----------------------------------------------------------
    pm = ParameterMap()
    pm.add(users_api.GetUsersParam.type, "AllUsers")
    resp = users_api.UsersOperations().get_users(pm, HeaderMap())
    obj = resp.get_object() if resp is not None else None
    problems = tap.take_problems()
    n_users = len(obj.get_users()) if isinstance(obj, users_api.ResponseWrapper) else None
    owners = {d["Owner"]["id"] for d in truth_deals.values() if d.get("Owner")}
    user_ids = {str(u.get_id()) for u in obj.get_users()} if n_users else set()
    rep.check(
        "users: AllUsers parsed, every deal owner among them",
        bool(n_users) and owners <= user_ids and not problems,
        f"{n_users} users" + (f"; {problems[:3]}" if problems else ""),
    )

    # ---- 8. an invalidated access token comes back as INVALID_TOKEN (the SDK does not retry) ---------
    http_json("POST", f"{base}/__sandbox/revoke-access-tokens")
    pm = ParameterMap()
    pm.add(record_api.GetRecordsParam.fields, "Deal_Name")
    pm.add(record_api.GetRecordsParam.per_page, 1)
    resp = record_api.RecordOperations("Deals").get_records(pm, HeaderMap())
    err = api_error(resp.get_object() if resp is not None else None)
    tap.take_problems()
    rep.check(
        "auth: a revoked access token → 401 INVALID_TOKEN parsed as APIException",
        status_of(resp) == 401 and err == ("INVALID_TOKEN", "invalid oauth token"),
        f"status {status_of(resp)}, {err}",
    )

    # ---- 9. a moving world: mutations, then incremental reads through the SDK ------------------------
    # A fresh token: the revoked one must be replaced. Initializing again re-reads the SDK's store,
    # so drop the stored (revoked) token first; this is the run's second and last mint.
    os.remove(store_path)
    token = OAuthToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN, find_user=True)
    Initializer.initialize(
        environment=environment, token=token, store=FileStore(store_path), sdk_config=config,
        resource_path=workdir, logger=logger,
    )
    time.sleep(1.1)  # the mutation's Modified_Time must be a later second than any seeded one
    mutated = http_json("POST", f"{base}/__sandbox/mutate", {"win": 7, "unwin": 5, "delete": 4, "edit": 6, "create_won": 3})
    since = parse_instant(mutated["modified_time"]) - dt.timedelta(seconds=1)
    truth2 = http_json("GET", f"{base}/__sandbox/truth")
    deals2 = {d["id"]: d for d in truth2["deals"]}
    changed = {i for i, d in deals2.items() if parse_instant(d["Modified_Time"]) > since}
    touched_live = set(mutated["win"] + mutated["unwin"] + mutated["edit"] + mutated["create_won"])

    got2 = []
    diffs2 = []
    page_token = None
    page = 1
    status2 = []
    for _ in range(200):
        hm = HeaderMap()
        hm.add(record_api.GetRecordsHeader.if_modified_since, since)
        pm = ParameterMap()
        pm.add(record_api.GetRecordsParam.fields, ",".join(all_fields))
        pm.add(record_api.GetRecordsParam.sort_by, "Modified_Time")
        pm.add(record_api.GetRecordsParam.sort_order, "asc")
        pm.add(record_api.GetRecordsParam.per_page, 10)
        if page_token:
            pm.add(record_api.GetRecordsParam.page_token, page_token)
        else:
            pm.add(record_api.GetRecordsParam.page, page)
        resp = record_api.RecordOperations("Deals").get_records(pm, hm)
        status2.append(status_of(resp))
        obj = resp.get_object() if resp is not None else None
        if not isinstance(obj, record_api.ResponseWrapper):
            break
        for r in obj.get_data() or []:
            got2.append(str(r.get_id()))
            t = deals2.get(str(r.get_id()))
            diffs2.extend(compare_record(r, t, field_types, all_fields) if t else [f"{r.get_id()} not in truth"])
            diffs2.extend(type_errors(r, field_types, all_fields))
        if not obj.get_info().get_more_records():
            break
        page += 1
    problems = tap.take_problems()
    rep.check(
        "moving world: Get Records + If-Modified-Since returns exactly the mutated deals, parsed",
        set(got2) == changed == touched_live and len(got2) == len(set(got2)) and not diffs2 and not problems,
        f"{len(got2)} records over {len(status2)} pages of 10 (statuses {sorted(set(status2))}), "
        f"truth changed {len(changed)}, mutation touched {len(touched_live)} live"
        + (f"; {diffs2[:3]}" if diffs2 else "")
        + (f"; {problems[:3]}" if problems else ""),
    )

    hm = HeaderMap()
    hm.add(record_api.GetDeletedRecordsHeader.if_modified_since, since)
    pm = ParameterMap()
    pm.add(record_api.GetDeletedRecordsParam.type, "recycle")
    resp = record_api.RecordOperations("Deals").get_deleted_records(pm, hm)
    obj = resp.get_object() if resp is not None else None
    new_deleted = (
        {str(d.get_id()) for d in obj.get_data() or []} if isinstance(obj, record_api.DeletedRecordsWrapper) else None
    )
    want_deleted = {d["id"] for d in truth2["deleted"] if parse_instant(d["deleted_time"]) > since}
    problems = tap.take_problems()
    rep.check(
        "moving world: deleted records since the mutation equal the deleted ids",
        new_deleted == want_deleted == set(mutated["delete"]) and not problems,
        f"status {status_of(resp)}, sdk {sorted(new_deleted or [])}, truth {sorted(want_deleted)}",
    )

    won2 = {
        i for i, d in deals2.items()
        if d.get("Stage") in truth2["won_stages"] and parse_instant(d["Modified_Time"]) > since
    }
    q = (
        f"select id, Stage, Modified_Time from Deals where (Stage in ({stage_list}) and "
        f"Modified_Time > '{since.isoformat()}') order by id asc limit 2000"
    )
    bw = coql.BodyWrapper()
    bw.set_select_query(q)
    resp = coql.CoqlOperations().get_records(bw)
    obj = resp.get_object() if resp is not None else None
    coql_won = {str(r.get_id()) for r in obj.get_data()} if isinstance(obj, coql.ResponseWrapper) else None
    problems = tap.take_problems()
    rep.check(
        "moving world: COQL sees won/created-won deals and not un-won or deleted ones",
        coql_won == won2 == set(mutated["win"] + mutated["edit"] + mutated["create_won"]) and not problems,
        f"status {status_of(resp)}, sdk {len(coql_won or [])} ids, truth {len(won2)}",
    )

    auto_refresh_pass(rep, tap, environment, token, store_path, logger, workdir, field_types, all_fields, deals2)

    return finish(rep, tap, started, workdir, base)


def auto_refresh_pass(rep, tap, environment, token, store_path, logger, workdir, field_types, all_fields, deals2):
    name = "auto_refresh_fields=True: modules listed, their fields cached, a Get Records page parsed"
    try:
        _auto_refresh_pass(rep, tap, environment, token, store_path, logger, workdir, field_types, all_fields, deals2)
    except SDKException as e:
        rep.check(name, False, f"SDKException {str(e)[:300]}; {tap.take_problems()[:2]}")


def _auto_refresh_pass(rep, tap, environment, token, store_path, logger, workdir, field_types, all_fields, deals2):
    # ---- 10. SDKConfig(auto_refresh_fields=True): an SDK option users turn on (default False) -------------
    # Then the SDK lists the org's modules (GET /settings/modules) and caches the fields of every
    # API-supported module before the first record call.
    auto_dir = os.path.join(workdir, "auto-refresh")
    os.makedirs(auto_dir, exist_ok=True)
    auto_config = SDKConfig(auto_refresh_fields=True, connect_timeout=5.0, read_timeout=60.0)
    Initializer.initialize(
        environment=environment, token=token, store=FileStore(store_path), sdk_config=auto_config,
        resource_path=auto_dir, logger=logger,
    )
    pm = ParameterMap()
    pm.add(record_api.GetRecordsParam.fields, ",".join(all_fields))
    pm.add(record_api.GetRecordsParam.per_page, 200)
    resp = record_api.RecordOperations("Deals").get_records(pm, HeaderMap())
    obj = resp.get_object() if resp is not None else None
    auto_diffs = []
    n_auto = 0
    if isinstance(obj, record_api.ResponseWrapper):
        for r in obj.get_data() or []:
            n_auto += 1
            t = deals2.get(str(r.get_id()))
            auto_diffs.extend(compare_record(r, t, field_types, all_fields) if t else [f"{r.get_id()} not in truth"])
            auto_diffs.extend(type_errors(r, field_types, all_fields))
    cached = []
    fields_dir = os.path.join(auto_dir, Constants.FIELD_DETAILS_DIRECTORY)
    for name in os.listdir(fields_dir) if os.path.isdir(fields_dir) else []:
        with open(os.path.join(fields_dir, name), encoding="utf-8") as fh:
            cached = sorted(k for k, v in json.load(fh).items() if isinstance(v, dict) and v and k != "SDK-MODULE-METADATA")
    problems = tap.take_problems()
    rep.check(
        "auto_refresh_fields=True: modules listed, their fields cached, a Get Records page parsed",
        n_auto == 200 and not auto_diffs and not problems and {"deals", "accounts", "contacts"} <= set(cached),
        f"status {status_of(resp)}, {n_auto} records, cached field metadata for {cached}"
        + (f"; {auto_diffs[:3]}" if auto_diffs else "")
        + (f"; {problems[:3]}" if problems else ""),
    )



def finish(rep, tap, started, workdir, base):
    stats = http_json("GET", f"{base}/__sandbox/stats")
    rep.check(
        "token: three mints in the run (grant exchange, then one per refresh-token Initializer); the SDK reuses its stored token in between",
        stats.get("token_mints") == 3,
        f"token_mints={stats.get('token_mints')}, token_errors={stats.get('token_errors')}",
    )
    # What the SDK called on its own, from its own request log (method, path, params).
    seen = {}
    for method, url, params in tap.urls:
        path = url.split("://", 1)[-1].split("/", 1)[-1]
        key = f"{method} /{path}"
        if "settings/fields" in path or "users" in path:
            try:
                p = json.loads(params) if params else {}
            except ValueError:
                p = {}
            key += "?" + "&".join(f"{k}={v}" for k, v in sorted(p.items()) if k in ("module", "type"))
        seen[key] = seen.get(key, 0) + 1
    print("SDK requests (from its log):", flush=True)
    for k in sorted(seen):
        print(f"  {seen[k]:>4} × {k}", flush=True)
    wanted = [
        "GET /crm/v8/users?type=CurrentUser",
        "GET /crm/v8/org",
        "GET /crm/v8/settings/fields?module=Deals",
        "GET /crm/v8/settings/fields?module=Accounts",
        "GET /crm/v8/settings/fields?module=Contacts",
        "GET /crm/v8/settings/fields?module=Campaigns",
    ]
    # (SDK 7.0.0 fetches field metadata only for `lookup` fields' modules; owner lookups parse as
    # MinifiedUser without asking for the users module's fields, so that call is not expected.)
    missing = [w for w in wanted if w not in seen]
    rep.check(
        "SDK's own calls (CurrentUser, org, lookup modules' fields) were made and answered",
        not missing and stats.get("calls", {}).get("fields", 0) >= 4,
        f"missing {missing}" if missing else f"sandbox call counts {stats.get('calls')}",
    )
    rep.check("no SDK exception swallowed anywhere in the run", not tap.problems, "; ".join(tap.problems[:5]))
    failed = rep.failed()
    print(f"\nSDK run took {time.monotonic() - started:.1f}s", flush=True)
    print(f"fidelity: {len(rep.results) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:
        traceback.print_exc()
        REPORT.check("the fidelity script ran to its end", False, "crashed: see the traceback above")
        failed = REPORT.failed()
        print(f"fidelity: {len(REPORT.results) - len(failed)} passed, {len(failed)} failed", flush=True)
        sys.exit(2)
