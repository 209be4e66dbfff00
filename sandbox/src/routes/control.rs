//! Test-only endpoints under `/__sandbox/` (no auth): ground truth, counters, fault knobs at run time,
//! access-token revocation, fresh grant codes and data mutations.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::clock;
use crate::data::MutationRequest;
use crate::state::{lock, read, write, AppState, CoqlTrigger, Stats};

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

/// `GET /__sandbox/truth`: every live deal as Get Records would send it, plus deletions.
pub async fn truth(State(st): State<Arc<AppState>>) -> Response {
    let body = read(&st.store).truth_bytes(st.now());
    match body {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

/// `GET /__sandbox/stats`.
pub async fn stats(State(st): State<Arc<AppState>>) -> Response {
    let s = st.stats(|s| s.clone());
    let mut v = serde_json::to_value(&s).unwrap_or_else(|_| json!({}));
    if let Some(m) = v.as_object_mut() {
        m.insert("in_flight".into(), json!(st.inflight.load(std::sync::atomic::Ordering::SeqCst)));
    }
    (StatusCode::OK, Json(v)).into_response()
}

/// `POST /__sandbox/reset-stats`: zeroes every counter.
pub async fn reset_stats(State(st): State<Arc<AppState>>) -> Response {
    st.stats(|s| *s = Stats::default());
    (StatusCode::OK, Json(json!({"status": "success"}))).into_response()
}

/// `GET /__sandbox/control`: the live fault knobs.
pub async fn get_control(State(st): State<Arc<AppState>>) -> Response {
    (StatusCode::OK, Json(json!(st.faults()))).into_response()
}

/// `POST /__sandbox/control` with a partial `Faults` object; answers the knobs now in force.
pub async fn set_control(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body is not JSON: {e}")),
    };
    let mut faults = lock(&st.faults);
    match faults.patched(&patch) {
        Ok(new) => {
            *faults = new.clone();
            (StatusCode::OK, Json(json!(new))).into_response()
        }
        Err(e) => bad(e),
    }
}

/// `POST /__sandbox/revoke-access-tokens`: every current access token stops working.
pub async fn revoke_access_tokens(State(st): State<Arc<AppState>>) -> Response {
    let n = lock(&st.auth).revoke_all_access();
    (StatusCode::OK, Json(json!({"revoked": n}))).into_response()
}

/// `POST /__sandbox/on-coql-call` `{"call": N, "revoke_access_tokens": true, "control": {...}}`: arms an action
/// the N-th COQL call fires on arrival (see [`crate::state::CoqlTrigger`]). A bad control patch is refused now.
pub async fn on_coql_call(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let trigger: CoqlTrigger = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => {
            return bad(format!(
                "bad on-coql-call request (want {{\"call\": N, \"revoke_access_tokens\"?, \"control\"?}}): {e}"
            ))
        }
    };
    if trigger.call == 0 {
        return bad("call counts from 1".to_string());
    }
    if let Some(patch) = &trigger.control {
        if let Err(e) = st.faults().patched(patch) {
            return bad(e);
        }
    }
    lock(&st.coql_triggers).push(trigger.clone());
    (StatusCode::OK, Json(json!({"armed": trigger.call}))).into_response()
}

/// `POST /__sandbox/grant-code`: a fresh single-use grant code.
pub async fn grant_code(State(st): State<Arc<AppState>>) -> Response {
    let code = lock(&st.auth).new_grant_code();
    (StatusCode::OK, Json(json!({"code": code}))).into_response()
}

/// `POST /__sandbox/mutate` with `{"win":N,"unwin":N,"delete":N,"edit":N,"create_won":N}`.
pub async fn mutate(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: MutationRequest = if body.is_empty() {
        MutationRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad(format!("bad mutation request: {e}")),
        }
    };
    let result = write(&st.store).mutate(&req, st.now());
    (StatusCode::OK, Json(json!(result))).into_response()
}

/// `POST /__sandbox/add-field` `{"api_name": "Margin_Band", "data_type": "text", "label": "Margin Band"}`: a new
/// custom Deals field, in `settings/fields` and selectable from now on; records get a value when next modified.
/// Answers the field's metadata. Types: text, textarea, email, phone, website, currency, double, percent,
/// integer, bigint, date, datetime, boolean.
pub async fn add_field(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct AddField {
        api_name: String,
        data_type: String,
        label: Option<String>,
    }
    let req: AddField = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("bad add-field request (want {{\"api_name\", \"data_type\"}}): {e}")),
    };
    let Some(ftype) = crate::meta::FieldType::from_data_type(&req.data_type) else {
        return bad(format!("data_type `{}` cannot be added at run time", req.data_type));
    };
    let label = req.label.unwrap_or_else(|| req.api_name.replace('_', " "));
    match write(&st.store).add_field(&req.api_name, &label, ftype) {
        Ok(field) => (StatusCode::OK, Json(json!({"field": field}))).into_response(),
        Err(e) => bad(e),
    }
}

/// `POST /__sandbox/clock` `{"advance_secs": N}`: moves the sandbox's clock N seconds forward (a night passes).
/// Later mutations are stamped in the new time, and the `Date` header of every response follows it.
pub async fn advance_clock(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Advance {
        advance_secs: i64,
    }
    let req: Advance = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("bad clock request (want {{\"advance_secs\": N}}): {e}")),
    };
    if req.advance_secs < 0 {
        return bad("the clock only moves forward".into());
    }
    st.clock_offset_secs.fetch_add(req.advance_secs, std::sync::atomic::Ordering::Relaxed);
    (StatusCode::OK, Json(json!({"now": clock::fmt_datetime(st.now(), st.tz)}))).into_response()
}
