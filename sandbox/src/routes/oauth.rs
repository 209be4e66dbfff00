//! Zoho Accounts: `GET /oauth/v2/auth` (the consent step of the authorization-code flow),
//! `POST /oauth/v2/token` and `POST /oauth/v2/token/revoke`.
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
            let redirect = p.get("redirect_uri").map(String::as_str);
            lock(&st.auth).exchange_code(get("code"), redirect, Instant::now(), limits).map_err(map_err)
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

/// Why the authorization endpoint refuses to redirect at all (RFC 6749 §4.1.2.1: with an unknown client or
/// an unacceptable redirect URI the server must not send the user agent there).
fn error_page(error: &str, description: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html><head><title>Zoho Accounts</title></head><body><h1>{error}</h1><p>{description}</p></body></html>"
    );
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Whether the sandbox's one client accepts `uri` as a redirect: any `http` loopback URI, whatever its port
/// (RFC 8252 §7.3, as a command-line client listening on an ephemeral port needs), or an `https` one.
/// Zoho checks the URI against the ones registered for the client in the API console; the sandbox has no
/// console, so it registers "every loopback URI" for the demo client.
fn redirect_allowed(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if !h.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    (scheme == "http" && loopback) || (scheme == "https" && !host.is_empty())
}

/// `redirect_uri` with `pairs` appended to its query string.
fn redirect_to(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{query}");
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `GET /oauth/v2/auth?response_type=code&client_id=…&scope=…&redirect_uri=…&access_type=offline&state=…`:
/// answers as Zoho's accounts server does once the user has signed in and consented — a 302 to
/// `redirect_uri?code=<grant>&state=<state>&location=us&accounts-server=<this server>` (Zoho's multi-DC
/// parameters, docs/zoho-api.md §1.1). The code is single use, bound to this `redirect_uri` and lives three
/// minutes; exchanged with `access_type=offline` it yields a refresh token.
///
/// Errors: an unknown `client_id` or a redirect URI not registered for the client gets an error page (no
/// redirect, RFC 6749 §4.1.2.1); a `response_type` other than `code` or an empty `scope` is redirected back
/// with `error=unsupported_response_type` / `error=invalid_scope`; the `oauth_deny` knob makes the user
/// press "Deny" (`error=access_denied`). `state` is echoed on every redirect. `prompt=consent` changes
/// nothing here (the sandbox's user always consents unless told not to).
pub async fn authorize(State(st): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    st.stats(|s| s.call("authorize"));
    let p = params(query.as_deref(), &[]);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if !AuthState::client_known(get("client_id")) {
        return error_page("invalid_client", "The client_id is not registered with this accounts server.");
    }
    let redirect_uri = get("redirect_uri");
    if !redirect_allowed(redirect_uri) {
        return error_page(
            "invalid_redirect_uri",
            "The redirect_uri is not registered for this client (the sandbox accepts http loopback and https URIs).",
        );
    }
    let state = p.get("state").map(String::as_str);
    let with_state = |mut pairs: Vec<(&'static str, String)>| {
        if let Some(s) = state {
            pairs.push(("state", s.to_string()));
        }
        pairs
    };
    let refuse = |error: &'static str| {
        let pairs = with_state(vec![("error", error.to_string())]);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        redirect_to(redirect_uri, &refs)
    };
    if get("response_type") != "code" {
        return refuse("unsupported_response_type");
    }
    if get("scope").trim().is_empty() {
        return refuse("invalid_scope");
    }
    if st.faults().oauth_deny {
        return refuse("access_denied");
    }
    // Zoho's default access type is `online` (an access token only); `offline` adds a refresh token.
    let offline = get("access_type").eq_ignore_ascii_case("offline");
    let code = lock(&st.auth).new_authorization_code(redirect_uri, offline, Instant::now());
    let mut pairs = vec![("code", code)];
    pairs = with_state(pairs);
    pairs.push(("location", "us".to_string()));
    pairs.push(("accounts-server", st.base_url.clone()));
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    redirect_to(redirect_uri, &refs)
}
