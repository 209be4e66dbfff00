//! The HTTP plumbing: the router (accounts routes, CRM routes behind the auth/limits/fault guard,
//! `/__sandbox/` test routes) and a per-connection hyper loop.
//!
//! Connections are served with hyper directly rather than `axum::serve` so the `rate_drop` fault can
//! close a connection without writing a single response byte: each connection gets a [`ConnKill`]
//! in its requests' extensions, and the connection task drops the connection when it fires.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::auth::Access;
use crate::latency::{self, CallKind, CallRecord, LatencyModel};
use crate::reply::{zoho_error, Credits};
use crate::routes::{control, crm, oauth, related};
use crate::state::{lock, AppState};

/// Fired by a handler to close its connection without a response.
#[derive(Clone, Debug)]
pub struct ConnKill(pub Arc<Notify>);

/// Scopes each CRM endpoint needs.
const SCOPE_COQL: &[&str] = &["ZohoCRM.coql.READ", "ZohoCRM.modules.deals.READ"];
const SCOPE_RECORDS: &[&str] = &["ZohoCRM.modules.deals.READ"];
const SCOPE_FIELDS: &[&str] = &["ZohoCRM.settings.fields.READ"];
const SCOPE_PIPELINE: &[&str] = &["ZohoCRM.settings.pipeline.READ"];
const SCOPE_LAYOUTS: &[&str] = &["ZohoCRM.settings.layouts.READ"];
const SCOPE_USERS: &[&str] = &["ZohoCRM.users.READ"];
const SCOPE_ORG: &[&str] = &["ZohoCRM.org.READ"];
const SCOPE_MODULES: &[&str] = &["ZohoCRM.settings.modules.READ"];
const SCOPE_CURRENCIES: &[&str] = &["ZohoCRM.settings.currencies.READ"];

#[derive(Clone)]
struct Guard {
    st: Arc<AppState>,
    key: &'static str,
    scopes: &'static [&'static str],
}

struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn enter(counter: &AtomicUsize) -> (Slot<'_>, usize) {
    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
    (Slot(counter), n)
}

fn too_many(message: &str) -> Response {
    // Zoho sends no Retry-After (docs/zoho-api.md §4); the body shape is UNCONFIRMED, the standard envelope.
    zoho_error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", message, json!({}))
}

/// Every `/crm/v8/...` call goes through here: count, authenticate, check scope, enforce the daily
/// credit allowance and concurrency, add latency (latency.rs) and log the call, roll the fault dice, run, charge
/// credits.
async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let st = &g.st;
    let nth = st.stats(|s| {
        s.call(g.key);
        s.calls.get(g.key).copied().unwrap_or(0)
    });
    let faults = st.faults();

    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Zoho-oauthtoken "))
        .map(str::trim);
    // Only the `Zoho-oauthtoken` scheme is accepted: whether CRM takes `Bearer` is UNCONFIRMED.
    let access = token.map_or(Access::NotLive, |t| lock(&st.auth).check(t, g.scopes, Instant::now()));
    if g.key == "coql" {
        fire_coql_triggers(st, nth);
    }
    if access == Access::NotLive {
        st.stats(|s| s.unauthorized += 1);
        // Zoho's docs show INVALID_TOKEN; AUTHENTICATION_FAILURE is seen in the wild for the same cases
        // (docs/zoho-api.md §2, §3f; its exact spelling and pairing are UNCONFIRMED). The knob picks one.
        return if faults.token_error_code == "AUTHENTICATION_FAILURE" {
            zoho_error(StatusCode::UNAUTHORIZED, "AUTHENTICATION_FAILURE", "Authentication failed", json!({}))
        } else {
            zoho_error(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", "invalid oauth token", json!({}))
        };
    }
    // A token from the authorization flow carries the scopes the user consented to.
    if let Access::MissingScope(missing) = access {
        st.stats(|s| s.unauthorized += 1);
        return zoho_error(
            StatusCode::UNAUTHORIZED,
            "OAUTH_SCOPE_MISMATCH",
            "Unauthorized",
            json!({"required_scope": missing}),
        );
    }
    // Scopes are checked per request (not frozen at mint time) so a test can flip the knob
    // and see the effect on the token it already holds.
    if let Some(missing) = &faults.missing_scope {
        if g.scopes.iter().any(|s| s.eq_ignore_ascii_case(missing)) {
            st.stats(|s| s.unauthorized += 1);
            return zoho_error(
                StatusCode::UNAUTHORIZED,
                "OAUTH_SCOPE_MISMATCH",
                "Unauthorized",
                json!({"required_scope": missing}),
            );
        }
    }
    let used = st.stats(|s| s.credits_total);
    if used >= faults.credits_per_day {
        st.stats(|s| s.rejected_limits += 1);
        // Zoho's status-code text names both causes of a 429 (docs/zoho-api.md §4); this one names the
        // 24-hour credit limit, so a client can tell it from the concurrency 429 below and not retry it.
        return zoho_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            "Number of API requests for the 24 hour period is exceeded",
            json!({"limit": faults.credits_per_day, "limit_type": "api_credits_24h"}),
        );
    }

    let (_slot, n) = enter(&st.inflight);
    st.stats(|s| s.max_concurrency = s.max_concurrency.max(n));
    if n > faults.max_concurrency {
        st.stats(|s| s.rejected_limits += 1);
        return too_many("The concurrency limit of the user for the app is exceeded");
    }
    let _coql_slot = if g.key == "coql" {
        let (slot, n) = enter(&st.coql_inflight);
        st.stats(|s| s.max_coql_concurrency = s.max_coql_concurrency.max(n));
        if n > faults.coql_concurrency {
            st.stats(|s| s.rejected_limits += 1);
            return too_many("The sub-concurrency limit for COQL is exceeded");
        }
        Some(slot)
    } else {
        None
    };

    // The latency model (latency.rs): the call's response time, the sandbox's own work inside it (a real
    // server's response time includes its work), while this call holds its in-flight slot. The base part is
    // drawn now, the per-record part once the response is known. Every call from here on is logged.
    let started = Instant::now();
    let model = LatencyModel::of(&faults);
    let (req, kind) = match classify(g.key, req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let base = model.base_delay(&mut lock(&st.latency_dice));
    // Until `started + latency`; nothing when the work took longer (the call is then as slow as the work).
    let answer_at = |latency: Duration| async move {
        if !latency.is_zero() {
            tokio::time::sleep_until((started + latency).into()).await;
        }
    };
    let log = |status: u16, records: Option<u64>, latency: Duration| {
        let record = CallRecord {
            endpoint: g.key,
            kind,
            status,
            records,
            latency_ms: latency.as_secs_f64() * 1000.0,
            start_ms: latency::ms_since_epoch(started),
            end_ms: latency::ms_since_epoch(Instant::now()),
        };
        st.stats(|s| s.call_log.push(record));
    };

    let roll = lock(&st.dice).unit();
    if roll < faults.rate_drop + faults.rate_500 + faults.rate_429 {
        // A fault answers (or drops the connection) after the base latency, without running the handler.
        answer_at(base).await;
    }
    if roll < faults.rate_drop {
        st.stats(|s| s.fault("drop"));
        log(0, None, base);
        if let Some(kill) = req.extensions().get::<ConnKill>() {
            kill.0.notify_one();
            // The connection task drops this future together with the connection.
            return std::future::pending::<Response>().await;
        }
        // Only reachable when the router is served by something other than `serve`.
        return StatusCode::BAD_GATEWAY.into_response();
    }
    if roll < faults.rate_drop + faults.rate_500 {
        st.stats(|s| s.fault("500"));
        log(500, None, base);
        return zoho_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "Internal Server Error", json!({}));
    }
    if roll < faults.rate_drop + faults.rate_500 + faults.rate_429 {
        st.stats(|s| s.fault("429"));
        log(429, None, base);
        return too_many("Too many requests");
    }

    let resp = next.run(req).await;
    // Records are counted (the body scanned) only when the per-record part is on.
    let (mut resp, records, latency) = if model.counts_records() {
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        let records = latency::records_in(&bytes);
        let latency = base + model.records_delay(records);
        answer_at(latency).await;
        (Response::from_parts(parts, Body::from(bytes)), Some(records), latency)
    } else {
        answer_at(base).await;
        (resp, None, base)
    };
    let status = resp.status();
    log(status.as_u16(), records, latency);
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        let n = resp.extensions().get::<Credits>().map_or(1, |c| c.0);
        let total = st.stats(|s| {
            s.charge(g.key, n);
            s.credits_total
        });
        // Zoho adds this header once half the daily allowance is used (docs/zoho-api.md §4).
        if total.saturating_mul(2) >= faults.credits_per_day {
            let remaining = faults.credits_per_day.saturating_sub(total);
            if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
                resp.headers_mut().insert("X-API-CREDITS-REMAINING", v);
            }
        }
    }
    resp
}

/// Fires (and disarms) the triggers armed for the `nth` COQL call (see [`crate::state::CoqlTrigger`]). A control
/// patch was checked when it was armed; should it fail now, the knobs stay as they were.
fn fire_coql_triggers(st: &AppState, nth: u64) {
    let due: Vec<_> = {
        let mut armed = lock(&st.coql_triggers);
        if armed.is_empty() {
            return;
        }
        let (due, rest) = std::mem::take(&mut *armed).into_iter().partition(|t| t.call == nth);
        *armed = rest;
        due
    };
    for t in due {
        if t.revoke_access_tokens {
            lock(&st.auth).revoke_all_access();
        }
        if let Some(patch) = &t.control {
            let mut faults = lock(&st.faults);
            if let Ok(new) = faults.patched(patch) {
                *faults = new;
            }
        }
    }
}

/// The kind of a CRM call for the call log: a COQL body is read (and put back) to tell a `COUNT` from a page.
async fn classify(key: &'static str, req: Request) -> Result<(Request, CallKind), Response> {
    if key != "coql" {
        return Ok((req, CallKind::of_endpoint(key)));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, COQL_BODY_LIMIT).await.map_err(|_| {
        zoho_error(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_DATA", "the request body is too large", json!({}))
    })?;
    let kind = latency::coql_kind(&bytes);
    Ok((Request::from_parts(parts, Body::from(bytes)), kind))
}

/// Largest COQL request body read (axum's default body limit, which the COQL handler's extractor applies too).
const COQL_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The accounts server's latency (`accounts_latency_ms`) and call log for `/oauth/v2/*`.
async fn accounts_latency(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let delay = Duration::from_millis(st.faults().accounts_latency_ms);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let endpoint = match req.uri().path() {
        "/oauth/v2/token" => "token",
        "/oauth/v2/token/revoke" => "revoke",
        _ => "authorize",
    };
    let resp = next.run(req).await;
    let record = CallRecord {
        endpoint,
        kind: CallKind::Accounts,
        status: resp.status().as_u16(),
        records: None,
        latency_ms: delay.as_secs_f64() * 1000.0,
        start_ms: latency::ms_since_epoch(started),
        end_ms: latency::ms_since_epoch(Instant::now()),
    };
    st.stats(|s| s.call_log.push(record));
    resp
}

fn crm_route(
    st: &Arc<AppState>,
    key: &'static str,
    scopes: &'static [&'static str],
    route: axum::routing::MethodRouter<Arc<AppState>>,
) -> axum::routing::MethodRouter<Arc<AppState>> {
    route.layer(middleware::from_fn_with_state(Guard { st: st.clone(), key, scopes }, guard))
}

fn accounts_route(
    st: &Arc<AppState>,
    route: axum::routing::MethodRouter<Arc<AppState>>,
) -> axum::routing::MethodRouter<Arc<AppState>> {
    route.layer(middleware::from_fn_with_state(st.clone(), accounts_latency))
}

/// The whole application.
pub fn router(st: Arc<AppState>) -> Router {
    Router::new()
        .route("/oauth/v2/auth", accounts_route(&st, get(oauth::authorize)))
        .route("/oauth/v2/token", accounts_route(&st, post(oauth::token)))
        .route("/oauth/v2/token/revoke", accounts_route(&st, post(oauth::revoke)))
        .route("/crm/v8/coql", crm_route(&st, "coql", SCOPE_COQL, post(crm::coql)))
        .route("/crm/v8/settings/fields", crm_route(&st, "fields", SCOPE_FIELDS, get(crm::fields)))
        .route("/crm/v8/settings/pipeline", crm_route(&st, "pipeline", SCOPE_PIPELINE, get(crm::pipeline)))
        .route("/crm/v8/settings/layouts", crm_route(&st, "layouts", SCOPE_LAYOUTS, get(crm::layouts)))
        .route("/crm/v8/settings/modules", crm_route(&st, "modules", SCOPE_MODULES, get(crm::modules)))
        .route("/crm/v8/users", crm_route(&st, "users", SCOPE_USERS, get(crm::users)))
        // Before `{module}`: the official SDK calls it after minting (see `Store::org_json`).
        .route("/crm/v8/org", crm_route(&st, "org", SCOPE_ORG, get(crm::org)))
        .route("/crm/v8/org/currencies", crm_route(&st, "currencies", SCOPE_CURRENCIES, get(related::currencies)))
        .route(
            "/crm/v8/{module}/{id}/Stage_History",
            crm_route(&st, "stage_history", SCOPE_RECORDS, get(related::stage_history)),
        )
        .route("/crm/v8/{module}", crm_route(&st, "get_records", SCOPE_RECORDS, get(crm::get_records)))
        .route("/crm/v8/{module}/deleted", crm_route(&st, "deleted", SCOPE_RECORDS, get(crm::deleted)))
        .route("/__sandbox/truth", get(control::truth))
        .route("/__sandbox/stats", get(control::stats))
        .route("/__sandbox/reset-stats", post(control::reset_stats))
        .route("/__sandbox/control", post(control::set_control).get(control::get_control))
        .route("/__sandbox/revoke-access-tokens", post(control::revoke_access_tokens))
        .route("/__sandbox/on-coql-call", post(control::on_coql_call))
        .route("/__sandbox/grant-code", post(control::grant_code))
        .route("/__sandbox/mutate", post(control::mutate))
        .route("/__sandbox/clock", post(control::advance_clock))
        .route("/__sandbox/add-field", post(control::add_field))
        .fallback(fallback)
        .layer(axum::middleware::map_response_with_state(Arc::clone(&st), date_header))
        .with_state(st)
}

/// Every response carries the sandbox's clock in `Date` (an HTTP-date), as every HTTP server's does; hyper only
/// adds its own when none is set. Clients that take the server's clock as "now" follow an advanced sandbox.
async fn date_header(State(st): State<Arc<AppState>>, mut resp: Response) -> Response {
    let date = st.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(v) = axum::http::HeaderValue::from_str(&date) {
        resp.headers_mut().insert(axum::http::header::DATE, v);
    }
    resp
}

async fn fallback() -> Response {
    zoho_error(
        StatusCode::NOT_FOUND,
        "INVALID_URL_PATTERN",
        "Please check if the URL trying to access is a correct one",
        json!({}),
    )
}

/// Accepts connections until `shutdown` changes (or its sender is dropped), serving each with hyper.
pub async fn serve(listener: TcpListener, app: Router, mut shutdown: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let Ok((stream, _)) = accepted else {
            // e.g. too many open files: back off briefly instead of spinning
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let kill = Arc::new(Notify::new());
        let conn_kill = ConnKill(kill.clone());
        let app = app.clone();
        let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(conn_kill.clone());
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = stop.changed() => {}
            }
        });
    }
}
