//! The CRM v8 API: COQL, field/pipeline/layout metadata, users, Get Records and deleted records.
//!
//! Authentication, limits and faults are handled before these run (see `server::guard`); handlers
//! only answer the request. Bodies and codes follow docs/zoho-api.md; choices it leaves open are
//! marked UNCONFIRMED where they are made.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::DateTime;
use serde_json::{json, Map, Value};

use crate::clock::{fmt_datetime, parse_datetime};
use crate::coql::exec::{credits_for, run_with};
use crate::coql::Options;
use crate::data::Store;
use crate::meta::{self, FieldType, LAYOUT_ID};
use crate::reply::{zoho_error, Credits};
use crate::state::{lock, read, AppState, PageCursor};

/// Records one Get Records page may hold (default and maximum).
const MAX_PER_PAGE: u64 = 200;
/// Records reachable with `page` before a `page_token` is required.
const DISCRETE_LIMIT: u64 = 2000;
/// Records reachable through a chain of page tokens.
const TOKEN_LIMIT: u64 = 100_000;
/// How long a page token lives (Zoho: 24 h).
const PAGE_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// Most fields one Get Records call may name.
const MAX_FIELDS: usize = 50;

fn bad_request(code: &str, message: &str, details: Value) -> Response {
    zoho_error(StatusCode::BAD_REQUEST, code, message, details)
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default()
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    query_pairs(q).into_iter().collect()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /crm/v8/coql` with `{"select_query": "..."}`.
pub async fn coql(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let Ok(v) = parsed else {
        return bad_request("INVALID_DATA", "the request body is not valid JSON", json!({}));
    };
    let Some(q) = v.get("select_query").and_then(Value::as_str) else {
        return bad_request(
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param_name": "select_query"}),
        );
    };
    let options = Options { refuse_count_id: st.faults().refuse_count_id };
    let outcome = {
        let store = read(&st.store);
        run_with(q, &store, options)
    };
    match outcome {
        Ok(o) => {
            let mut resp = match o.body {
                Some(b) => (StatusCode::OK, Json(b)).into_response(),
                // Nothing matched: 204 with an empty body (SDK samples; Zoho docs silent: UNCONFIRMED).
                None => no_content(),
            };
            resp.extensions_mut().insert(Credits(credits_for(o.limit)));
            resp
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(e.body())).into_response(),
    }
}

/// `GET /crm/v8/settings/fields?module=Deals`: the org's fields the API user may see.
pub async fn fields(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let p = query_map(q.as_deref());
    let Some(module) = p.get("module").filter(|m| !m.is_empty()) else {
        return bad_request(
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param_name": "module"}),
        );
    };
    let body = read(&st.store).org.fields_json(module);
    match body {
        Some(body) => (StatusCode::OK, Json(body)).into_response(),
        None => invalid_module(module),
    }
}

fn invalid_module(module: &str) -> Response {
    bad_request("INVALID_MODULE", "the module name given seems to be invalid", json!({"module": module}))
}

/// `GET /crm/v8/settings/modules` (see [`meta::modules_json`]). The list never changes while the sandbox
/// runs, so any valid `If-Modified-Since` (the SDK sends one when it re-checks its cache) gets 304.
pub async fn modules(headers: HeaderMap) -> Response {
    match if_modified_since(&headers) {
        Ok(Some(_)) => StatusCode::NOT_MODIFIED.into_response(),
        Ok(None) => (StatusCode::OK, Json(meta::modules_json())).into_response(),
        Err(r) => *r,
    }
}

/// `GET /crm/v8/settings/pipeline?layout_id=...`: every pipeline of the layout with its stage maps.
///
/// In an org without the pipeline feature (the `free` profile) the answer is 400 `FEATURE_NOT_ENABLED`:
/// Zoho documents no answer for that case (UNCONFIRMED); this code is Zoho's for a feature an org lacks, and
/// the Singer tap handles it as such (docs/zoho-api.md §6). A client must not need this endpoint to work.
pub async fn pipeline(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let p = query_map(q.as_deref());
    let body = read(&st.store).org.pipeline_json();
    let Some(body) = body else {
        return bad_request(
            "FEATURE_NOT_ENABLED",
            "the pipeline feature is not enabled for this organization",
            json!({"feature": "pipeline"}),
        );
    };
    match p.get("layout_id").map(String::as_str) {
        None | Some("") => bad_request(
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param_name": "layout_id"}),
        ),
        Some(id) if id == LAYOUT_ID.to_string() => (StatusCode::OK, Json(body)).into_response(),
        Some(_) => bad_request("INVALID_DATA", "invalid data", json!({"param_name": "layout_id"})),
    }
}

/// `GET /crm/v8/settings/layouts?module=Deals`.
pub async fn layouts(RawQuery(q): RawQuery) -> Response {
    let p = query_map(q.as_deref());
    match p.get("module") {
        Some(m) if m.eq_ignore_ascii_case("Deals") => (StatusCode::OK, Json(meta::layouts_json())).into_response(),
        Some(m) => invalid_module(m),
        None => bad_request(
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param_name": "module"}),
        ),
    }
}

/// `GET /crm/v8/users?type=CurrentUser` (the API user) or `AllUsers`/`ActiveUsers`/`AdminUsers`, with
/// `page`/`per_page` (≤200). Each user carries `full_name`, `first_name`, `last_name`, `email` and `id`: the
/// way to a deal owner's full name, since COQL's owner lookup gives only the last name (docs/zoho-api.md §3f).
pub async fn users(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    let p = query_map(q.as_deref());
    let per_page = match parse_count(&p, "per_page", MAX_PER_PAGE) {
        Ok(n) if n <= MAX_PER_PAGE => n,
        Ok(_) => return bad_request("INVALID_DATA", "per_page may be at most 200", json!({"param_name": "per_page"})),
        Err(r) => return *r,
    };
    let page = match parse_count(&p, "page", 1) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let store = read(&st.store);
    let kind = p.get("type").map(String::as_str).unwrap_or("AllUsers");
    let users: Vec<Value> = match kind {
        "CurrentUser" => store.users.iter().take(1).map(|u| u.user_json(store.tz)).collect(),
        "AllUsers" | "ActiveUsers" | "AdminUsers" => {
            let take = if kind == "AdminUsers" { 1 } else { store.users.len() };
            store.users.iter().take(take).map(|u| u.user_json(store.tz)).collect()
        }
        other => return bad_request("INVALID_DATA", "invalid data", json!({"param_name": "type", "value": other})),
    };
    let start = ((page - 1).saturating_mul(per_page) as usize).min(users.len());
    let end = (start + per_page as usize).min(users.len());
    if start >= end {
        return no_content();
    }
    let more = end < users.len();
    let users = &users[start..end];
    let n = users.len();
    (
        StatusCode::OK,
        Json(json!({"users": users, "info": {"per_page": per_page, "count": n, "page": page, "more_records": more}})),
    )
        .into_response()
}

/// `GET /crm/v8/org`: the organization (see [`Store::org_json`]).
pub async fn org(State(st): State<Arc<AppState>>) -> Response {
    let body = read(&st.store).org_json();
    (StatusCode::OK, Json(body)).into_response()
}

/// An error response, boxed to keep `Result`s small.
type Reject = Box<Response>;

fn parse_count(p: &HashMap<String, String>, name: &str, default: u64) -> Result<u64, Reject> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Box::new(bad_request("INVALID_DATA", "invalid data", json!({"param_name": name})))),
    }
}

fn if_modified_since(headers: &HeaderMap) -> Result<Option<DateTime<chrono::Utc>>, Reject> {
    match headers.get("If-Modified-Since") {
        None => Ok(None),
        // Zoho documents ISO 8601 (`2019-07-25T15:26:49+05:30`); an HTTP-date is accepted too.
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| {
                parse_datetime(s)
                    .or_else(|| DateTime::parse_from_rfc2822(s).ok().map(|t| t.with_timezone(&chrono::Utc)))
            })
            .map(Some)
            .ok_or_else(|| {
                Box::new(bad_request(
                    "INVALID_DATA",
                    "If-Modified-Since must be an ISO 8601 datetime with offset",
                    json!({"header_name": "If-Modified-Since"}),
                ))
            }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Id,
    Created,
    Modified,
}

fn sort_key(m: &Map<String, Value>, by: SortBy) -> (i64, u64) {
    let id = m.get("id").and_then(Value::as_str).and_then(|s| s.parse().ok()).unwrap_or(0);
    let t = |k: &str| m.get(k).and_then(Value::as_str).and_then(parse_datetime).map_or(0, |t| t.timestamp());
    match by {
        SortBy::Id => (0, id),
        SortBy::Created => (t("Created_Time"), id),
        SortBy::Modified => (t("Modified_Time"), id),
    }
}

/// A record and its sort key.
type Row<'a> = (&'a Map<String, Value>, (i64, u64));

/// A Get Records request, read and checked.
struct RecordsQuery {
    /// The fields asked for, in order, without repeats.
    fields: Vec<String>,
    per_page: u64,
    sort_by: SortBy,
    asc: bool,
    /// `If-Modified-Since`: only records modified after it.
    ims: Option<DateTime<chrono::Utc>>,
    /// `page_token`, when one was given.
    token: Option<String>,
    /// What a page token is bound to: every parameter except the paging ones, plus the header.
    bound: String,
}

impl RecordsQuery {
    /// The order of the rows: ascending or descending sort key.
    fn order(&self, a: &(i64, u64), b: &(i64, u64)) -> Ordering {
        if self.asc {
            a.cmp(b)
        } else {
            b.cmp(a)
        }
    }
}

/// `GET /crm/v8/{module}`: Get Records (docs/zoho-api.md §3a).
pub async fn get_records(
    State(st): State<Arc<AppState>>,
    Path(module): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !module.eq_ignore_ascii_case("Deals") {
        return invalid_module(&module);
    }
    let pairs = query_pairs(q.as_deref());
    let query = match records_query(&st, &pairs, &headers) {
        Ok(query) => query,
        Err(r) => return *r,
    };
    let now = Instant::now();
    let (cursor, page) = match page_position(&st, &pairs, &query, now) {
        Ok(position) => position,
        Err(r) => return *r,
    };

    let store = read(&st.store);
    let rows = sorted_rows(&store, &query);
    if rows.is_empty() && query.ims.is_some() {
        // Nothing modified since the header's time: 304 with no body (D-GR7, D-STAT8).
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let (start, served_before) = match &cursor {
        Some(c) => (rows.partition_point(|r| query.order(&r.1, &c.after) != Ordering::Greater), c.served),
        None => {
            let s = ((page - 1) * query.per_page) as usize;
            (s.min(rows.len()), s as u64)
        }
    };
    let end = (start + query.per_page as usize).min(rows.len());
    if start >= end {
        return no_content();
    }
    let more = end < rows.len();
    let data: Vec<Value> = rows[start..end].iter().map(|(m, _)| project(&store, m, &query.fields)).collect();
    let count = data.len();
    let (next_token, expiry) = if more {
        let after = rows[end - 1].1;
        let (t, expiry_text) = issue_page_token(&st, &store, &query, served_before + count as u64, after, now);
        (json!(t), json!(expiry_text))
    } else {
        (Value::Null, Value::Null)
    };
    let sort_by_name = match query.sort_by {
        SortBy::Id => "id",
        SortBy::Created => "Created_Time",
        SortBy::Modified => "Modified_Time",
    };
    (
        StatusCode::OK,
        Json(json!({
            "data": data,
            "info": {
                "call": false,
                "per_page": query.per_page,
                "next_page_token": next_token,
                "count": count,
                "sort_by": sort_by_name,
                "page": page,
                "previous_page_token": query.token,
                "page_token_expiry": expiry,
                "sort_order": if query.asc { "asc" } else { "desc" },
                "email": false,
                "more_records": more,
            }
        })),
    )
        .into_response()
}

/// Reads and checks Get Records' parameters and header, refusing the first bad one as Zoho does.
fn records_query(st: &AppState, pairs: &[(String, String)], headers: &HeaderMap) -> Result<RecordsQuery, Reject> {
    let reject = |code: &str, message: &str, details: Value| Box::new(bad_request(code, message, details));
    // Repeated `fields` parameters are comma-joined, as the SDK does.
    let fields_param: Vec<&str> = pairs.iter().filter(|(k, _)| k == "fields").map(|(_, v)| v.as_str()).collect();
    let p: HashMap<String, String> = pairs.iter().cloned().collect();
    let mut fields: Vec<String> = Vec::new();
    for f in fields_param.iter().flat_map(|v| v.split(',')) {
        let f = f.trim();
        if !f.is_empty() && !fields.iter().any(|x| x == f) {
            fields.push(f.to_string());
        }
    }
    if fields.is_empty() {
        return Err(reject(
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param_name": "fields"}),
        ));
    }
    if fields.len() > MAX_FIELDS {
        return Err(reject(
            "LIMIT_EXCEEDED",
            "the number of fields exceeds the limit",
            json!({"param_name": "fields", "limit": MAX_FIELDS}),
        ));
    }
    // Unknown field names are refused (Zoho may silently drop them: UNCONFIRMED; refusing
    // catches misspelt API names early). Fields this org lacks or hides from the user are unknown.
    let unknown = {
        let store = read(&st.store);
        fields.iter().find(|f| *f != "id" && store.org.field(f).is_none()).cloned()
    };
    if let Some(bad) = unknown {
        return Err(reject(
            "INVALID_DATA",
            "invalid field api name given",
            json!({"param_name": "fields", "api_name": bad}),
        ));
    }
    let per_page = match parse_count(&p, "per_page", MAX_PER_PAGE)? {
        n if n <= MAX_PER_PAGE => n,
        _ => {
            return Err(reject(
                "INVALID_DATA",
                "per_page may be at most 200",
                json!({"param_name": "per_page", "maximum": MAX_PER_PAGE}),
            ))
        }
    };
    let sort_by = match p.get("sort_by").map(String::as_str) {
        None | Some("id") => SortBy::Id,
        Some("Created_Time") => SortBy::Created,
        Some("Modified_Time") => SortBy::Modified,
        Some(_) => {
            return Err(reject(
                "INVALID_DATA",
                "sort_by must be id, Created_Time or Modified_Time",
                json!({"param_name": "sort_by"}),
            ))
        }
    };
    let asc = match p.get("sort_order").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(reject("INVALID_DATA", "sort_order must be asc or desc", json!({"param_name": "sort_order"})))
        }
    };
    let ims = if_modified_since(headers)?;
    let token = p.get("page_token").filter(|t| !t.is_empty()).cloned();
    if token.is_some() && p.contains_key("page") {
        return Err(reject(
            "AMBIGUITY_DURING_PROCESSING",
            "page and page_token cannot be given together",
            json!({"param_names": ["page", "page_token"]}),
        ));
    }
    let mut bound_parts: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k != "page" && k != "page_token" && k != "fields")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    bound_parts.push(format!("fields={}", fields.join(",")));
    bound_parts.push(format!("ims={:?}", ims.map(|t| t.timestamp())));
    bound_parts.sort();
    Ok(RecordsQuery { fields, per_page, sort_by, asc, ims, token, bound: bound_parts.join("&") })
}

/// Where the page starts: the cursor of a live page token issued for the same request, or the `page` number
/// (within the first [`DISCRETE_LIMIT`] records); with the page number either way.
fn page_position(
    st: &AppState,
    pairs: &[(String, String)],
    query: &RecordsQuery,
    now: Instant,
) -> Result<(Option<PageCursor>, u64), Reject> {
    let reject = |code: &str, message: &str, details: Value| Box::new(bad_request(code, message, details));
    match &query.token {
        Some(t) => {
            let cur = lock(&st.page_tokens).get(t).cloned();
            let Some(cur) = cur else {
                return Err(reject("INVALID_DATA", "invalid page token", json!({"param_name": "page_token"})));
            };
            if now >= cur.expires {
                return Err(reject("EXPIRED_VALUE", "the page token has expired", json!({"param_name": "page_token"})));
            }
            if cur.bound != query.bound {
                return Err(reject(
                    "TOKEN_BOUND_DATA_MISMATCH",
                    "the parameters do not match those the page token was issued for",
                    json!({"param_name": "page_token"}),
                ));
            }
            if cur.served >= TOKEN_LIMIT {
                return Err(reject(
                    "PAGINATION_LIMIT_EXCEEDED",
                    "at most 100000 records can be fetched through page tokens",
                    json!({"limit": TOKEN_LIMIT}),
                ));
            }
            let page = cur.served / query.per_page + 1;
            Ok((Some(cur), page))
        }
        None => {
            let p: HashMap<String, String> = pairs.iter().cloned().collect();
            let page = parse_count(&p, "page", 1)?;
            if page.saturating_mul(query.per_page) > DISCRETE_LIMIT {
                return Err(reject(
                    "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                    "use page_token to fetch records beyond the first 2000",
                    json!({"limit": DISCRETE_LIMIT}),
                ));
            }
            Ok((None, page))
        }
    }
}

/// The records the request selects (modified after `If-Modified-Since`, if given), in its order.
fn sorted_rows<'a>(store: &'a Store, query: &RecordsQuery) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = store
        .deals()
        .values()
        .filter(|m| match query.ims {
            Some(t) => Store::modified_time(m).is_some_and(|mt| mt > t),
            None => true,
        })
        .map(|m| (m, sort_key(m, query.sort_by)))
        .collect();
    rows.sort_by(|a, b| query.order(&a.1, &b.1));
    rows
}

/// A record with the `id` and the fields asked for (absent ones as null).
fn project(store: &Store, m: &Map<String, Value>, fields: &[String]) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), m.get("id").cloned().unwrap_or(Value::Null));
    for f in fields {
        // Subforms and multi-select lookups come only with a single record (D-GR7, docs/zoho-api.md §3a).
        let single_record_only =
            store.org.field(f).is_some_and(|d| matches!(d.ftype, FieldType::Subform | FieldType::MultiSelectLookup));
        if !single_record_only {
            out.insert(f.clone(), m.get(f).cloned().unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

/// Issues a page token for the page after this one (bound to the request, valid [`PAGE_TOKEN_TTL`]); returns
/// the token and its expiry as Zoho writes it.
fn issue_page_token(
    st: &AppState,
    store: &Store,
    query: &RecordsQuery,
    served: u64,
    after: (i64, u64),
    now: Instant,
) -> (String, String) {
    let t = lock(&st.token_rng).hex(16);
    let expiry_text = fmt_datetime(
        st.now() + chrono::Duration::seconds(i64::try_from(PAGE_TOKEN_TTL.as_secs()).unwrap_or(i64::MAX)),
        store.tz,
    );
    lock(&st.page_tokens).insert(
        t.clone(),
        PageCursor {
            bound: query.bound.clone(),
            served,
            after,
            expires: now + PAGE_TOKEN_TTL,
            expiry_text: expiry_text.clone(),
        },
    );
    (t, expiry_text)
}

/// `GET /crm/v8/{module}/deleted?type=all|recycle|permanent&page&per_page` (docs/zoho-api.md §3e),
/// newest deletion first.
pub async fn deleted(
    State(st): State<Arc<AppState>>,
    Path(module): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !module.eq_ignore_ascii_case("Deals") {
        return invalid_module(&module);
    }
    let faults = st.faults();
    if faults.deleted_forbidden {
        // The API user's profile lacks the permission to see deleted records. Zoho lists NO_PERMISSION as 403
        // "permission denied" (docs/zoho-api.md §2); AUTHORIZATION_FAILED is the other code seen for a profile
        // without a permission (§3f, UNCONFIRMED for this endpoint). The documented one is used.
        return zoho_error(
            StatusCode::FORBIDDEN,
            "NO_PERMISSION",
            "permission denied",
            json!({"permissions": ["Crm_Implied_View_Deleted_Records"]}),
        );
    }
    let p = query_map(q.as_deref());
    let kind = p.get("type").map(String::as_str).unwrap_or("all");
    if !matches!(kind, "all" | "recycle" | "permanent") {
        return bad_request("INVALID_DATA", "type must be all, recycle or permanent", json!({"param_name": "type"}));
    }
    let per_page = match parse_count(&p, "per_page", MAX_PER_PAGE) {
        Ok(n) if n <= MAX_PER_PAGE => n,
        Ok(_) => return bad_request("INVALID_DATA", "per_page may be at most 200", json!({"param_name": "per_page"})),
        Err(r) => return *r,
    };
    let page = match parse_count(&p, "page", 1) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let ims = match if_modified_since(&headers) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let store = read(&st.store);
    // Zoho keeps recycle-bin deletions 60 days and permanent ones 120 (docs/zoho-api.md §3e); older ones are
    // gone from this list (the truth endpoint keeps them all).
    let now = st.now();
    let visible = |d: &&crate::data::Deleted| {
        let days = if d.kind == "permanent" { 120 } else { 60 };
        !faults.deleted_retention || d.deleted_time >= now - chrono::Duration::days(days)
    };
    let mut rows: Vec<_> = store
        .deleted
        .iter()
        .filter(visible)
        .filter(|d| kind == "all" || d.kind == kind)
        .filter(|d| ims.is_none_or(|t| d.deleted_time > t))
        .collect();
    rows.sort_by_key(|d| std::cmp::Reverse((d.deleted_time, d.id)));
    let start = ((page - 1).saturating_mul(per_page) as usize).min(rows.len());
    let end = (start + per_page as usize).min(rows.len());
    if start >= end {
        // Zoho lists 204 for "no deleted records"; with If-Modified-Since it is also 204 here
        // (only Get Records documents 304).
        return no_content();
    }
    let data: Vec<Value> = rows[start..end].iter().map(|d| store.deleted_json(d)).collect();
    (
        StatusCode::OK,
        Json(json!({
            "data": data,
            "info": {"per_page": per_page, "count": end - start, "page": page, "more_records": end < rows.len()},
        })),
    )
        .into_response()
}
