//! What a handler answers with, shared by the handlers and the guard in front of them (`server`): Zoho's CRM
//! error envelope, and the API credits a response costs.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// API credits a handler's response costs (default 1), read by the guard.
#[derive(Clone, Copy, Debug)]
pub struct Credits(pub u64);

/// Zoho's CRM error envelope `{"code","details","message","status":"error"}`.
pub fn zoho_error(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    (status, Json(json!({"code": code, "details": details, "message": message, "status": "error"}))).into_response()
}
