//! The Zoho side: tokens, HTTP with error classification, won-stage discovery, windowed keyset paging, and
//! the mapping from Zoho's JSON to [`crate::deal::Deal`]. Nothing here knows a warehouse exists.

pub mod auth;
pub mod client;
pub mod deals;
pub mod model;
pub mod token_cache;

use std::time::Duration;

use crate::retry::Retryable;

/// Every Zoho failure, classified once at the boundary. `main` maps these kinds to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The accounts server or the CRM refused our credentials: a human must act.
    #[error("Zoho rejected the credentials: {0}")]
    InvalidCredentials(String),
    /// The token lacks a scope this job needs.
    #[error("Zoho refused {endpoint}: the refresh token lacks a scope ({detail}). Generate a new grant token with the scopes ZohoCRM.modules.deals.READ,ZohoCRM.coql.READ,ZohoCRM.settings.fields.READ and run exchange-grant")]
    ScopeMismatch { endpoint: String, detail: String },
    /// The accounts server throttles token mints (10 per refresh token per 10 minutes).
    #[error("Zoho's accounts server is throttling token requests for this refresh token ({0}). Do not retry for 10 minutes; check that nothing else mints tokens with the same refresh token")]
    TokenThrottled(String),
    /// 429 Too Many Requests (concurrency or daily credits).
    #[error("Zoho rate-limited {endpoint} (HTTP 429 {detail}) beyond the retry budget; retry later, or lower ZOHO_CONCURRENCY")]
    RateLimited { endpoint: String, detail: String, retry_after: Option<Duration> },
    /// 5xx, timeouts, refused or dropped connections.
    #[error("Zoho unavailable at {endpoint}: {detail} (retries exhausted); retry later")]
    Transient { endpoint: String, detail: String },
    /// 401 INVALID_TOKEN: the access token expired or was revoked. The client re-mints once.
    #[error("Zoho answered 401 INVALID_TOKEN at {endpoint}")]
    InvalidToken { endpoint: String },
    /// Any other refusal (a 4xx we did not expect): a bug or an org setting, not worth retrying.
    #[error("Zoho refused {endpoint}: HTTP {status} {code}: {message}")]
    Rejected { endpoint: String, status: u16, code: String, message: String },
    /// A response we cannot read.
    #[error("unreadable response from Zoho at {endpoint}: {detail}")]
    Malformed { endpoint: String, detail: String },
    /// The run would spend more API credits than allowed.
    #[error("credit budget reached: {spent} of {limit} Zoho API credits spent, the next call needs {next}")]
    CreditBudget { spent: u64, limit: u64, next: u64 },
}

impl Retryable for Error {
    fn is_retryable(&self) -> bool {
        matches!(self, Error::RateLimited { .. } | Error::Transient { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
