//! The org's currencies and the Deals `Stage_History` related list (issue #11): what the job reads for
//! home-currency amounts and won dates (docs/zoho-api.md §5.5, §5.6).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::reply::zoho_error;
use crate::state::{read, AppState};

/// Rows per page of a related list (Zoho's maximum).
const MAX_PER_PAGE: usize = 200;

/// `GET /crm/v8/org/currencies`. An org without multi-currency gets Zoho's 403 `CURRENCIES_NOT_ENABLED`; the
/// Free edition, which cannot have it, gets `FEATURE_NOT_SUPPORTED` (the sandbox's Free profile).
pub async fn currencies(State(st): State<Arc<AppState>>) -> Response {
    match read(&st.store).currencies_json() {
        Some(body) => (StatusCode::OK, Json(body)).into_response(),
        None => zoho_error(
            StatusCode::FORBIDDEN,
            "FEATURE_NOT_SUPPORTED",
            "The multi-currency feature is not available except the Enterprise and higher editions.",
            json!({}),
        ),
    }
}

/// `GET /crm/v8/Deals/{id}/Stage_History?page=&per_page=`: 204 when the deal has no row, 400
/// `INVALID_DATA` for a record id that does not exist, as Zoho answers.
pub async fn stage_history(
    State(st): State<Arc<AppState>>,
    Path((module, id)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    if module != "Deals" {
        return zoho_error(
            StatusCode::BAD_REQUEST,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
            json!({"module": module}),
        );
    }
    let p: HashMap<String, String> = q.as_deref().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
    let number = |k: &str, default: usize| p.get(k).map_or(Some(default), |v| v.parse().ok());
    let (Some(page), Some(per_page)) = (number("page", 1), number("per_page", MAX_PER_PAGE)) else {
        return zoho_error(StatusCode::BAD_REQUEST, "INVALID_DATA", "invalid page or per_page", json!({}));
    };
    if page == 0 || per_page == 0 || per_page > MAX_PER_PAGE {
        return zoho_error(StatusCode::BAD_REQUEST, "INVALID_DATA", "per_page may be 1 to 200", json!({}));
    }
    let body = id.parse::<u64>().ok().and_then(|id| read(&st.store).stage_history_json(id, page, per_page));
    match body {
        None => zoho_error(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "the related id given seems to be invalid",
            json!({"id": id}),
        ),
        Some(serde_json::Value::Null) => StatusCode::NO_CONTENT.into_response(),
        Some(body) => (StatusCode::OK, Json(body)).into_response(),
    }
}
