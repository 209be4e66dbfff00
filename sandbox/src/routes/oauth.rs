//! Zoho Accounts: `POST /oauth/v2/token` and `POST /oauth/v2/token/revoke`.
//!
//! Vendor quirks reproduced on purpose (fact sheet §1.5): credential and grant errors come back with
//! **HTTP 200** and an `{"error":...}` body, so a client must look for `access_token` rather than
//! trust the status; the mint throttle answers HTTP 400 with an "Access Denied" body.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::{AuthState, MintLimits, TokenError};
use crate::state::{lock, AppState};

/// Parameters from the query string and the form body, merged (the body wins): Zoho's docs ask for
/// a form body, but several clients (Airbyte, Singer) send query parameters, and Zoho accepts both.
fn params(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(q) = query {
        if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(q) {
            out.extend(pairs);
        }
    }
    if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        out.extend(pairs);
    }
    out
}

fn error_200(error: &str) -> Response {
    (StatusCode::OK, Json(json!({ "error": error }))).into_response()
}

/// The URL clients should use for API calls: the Host they reached us on, else our bound address.
fn api_domain(st: &AppState, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| format!("http://{h}"))
        .unwrap_or_else(|| st.base_url.clone())
}

/// `POST /oauth/v2/token` with `grant_type=refresh_token` or `authorization_code`.
pub async fn token(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    st.stats(|s| s.call("token"));
    let p = params(query.as_deref(), &body);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let faults = st.faults();
    let limits = MintLimits {
        ttl: Duration::from_secs(faults.token_ttl_secs),
        mint_limit: faults.mint_limit,
        window: Duration::from_secs(faults.mint_window_secs),
        max_active: faults.max_active_tokens,
    };

    let result = match get("grant_type") {
        "" => Err(Some("invalid_request")),
        "refresh_token" | "authorization_code" if !AuthState::client_ok(get("client_id"), get("client_secret")) => {
            Err(Some("invalid_client"))
        }
        "refresh_token" if get("refresh_token").is_empty() => Err(Some("invalid_request")),
        "authorization_code" if get("code").is_empty() => Err(Some("invalid_request")),
        "refresh_token" => {
            lock(&st.auth).refresh(get("refresh_token"), Instant::now(), limits).map(|m| (m, false)).map_err(map_err)
        }
        "authorization_code" => {
            lock(&st.auth).exchange_code(get("code"), Instant::now(), limits).map(|m| (m, true)).map_err(map_err)
        }
        _ => Err(Some("unsupported_grant_type")),
    };
    match result {
        Ok((minted, with_refresh)) => {
            st.stats(|s| s.token_mints += 1);
            let mut body = json!({
                "access_token": minted.access_token,
                "api_domain": api_domain(&st, &headers),
                "token_type": "Bearer",
                "expires_in": minted.expires_in,
            });
            // Only the grant-code exchange returns a refresh token (fact sheet §1.4).
            if with_refresh {
                if let Value::Object(m) = &mut body {
                    m.insert("refresh_token".into(), json!(minted.refresh_token));
                }
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(Some(e)) => {
            st.stats(|s| s.token_errors += 1);
            // HTTP status for these is 200 in captured logs for invalid_client and UNCONFIRMED
            // for the rest; the sandbox answers them all alike.
            error_200(e)
        }
        Err(None) => {
            st.stats(|s| {
                s.token_errors += 1;
                s.token_throttled += 1;
            });
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error_description": "You have made too many requests continuously. Please try again after some time.",
                    "error": "Access Denied",
                    "status": "failure",
                })),
            )
                .into_response()
        }
    }
}

/// `Some(error code)` for the HTTP-200 errors, `None` for the throttle.
fn map_err(e: TokenError) -> Option<&'static str> {
    match e {
        TokenError::InvalidClient => Some("invalid_client"),
        TokenError::InvalidCode => Some("invalid_code"),
        TokenError::Throttled => None,
    }
}

/// `POST /oauth/v2/token/revoke?token=<refresh token>`: `{"status":"success"}`, or 400 when unknown.
/// Revoking a refresh token revokes every access token minted from it.
pub async fn revoke(State(st): State<Arc<AppState>>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    st.stats(|s| s.call("revoke"));
    let p = params(query.as_deref(), &body);
    let token = p.get("token").map(String::as_str).unwrap_or("");
    if !token.is_empty() && lock(&st.auth).revoke(token) {
        return (StatusCode::OK, Json(json!({"status": "success"}))).into_response();
    }
    // Zoho documents only "400 Bad Request" here; the body is UNCONFIRMED.
    (StatusCode::BAD_REQUEST, Json(json!({"status": "failure", "error": "invalid_token"}))).into_response()
}
