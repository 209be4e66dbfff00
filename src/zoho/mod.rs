//! The Zoho side: tokens, HTTP with error classification, field metadata and won-stage discovery, windowed
//! keyset paging, owners' full names, and the mapping from Zoho's JSON to [`crate::deal::Deal`]. Nothing here knows a warehouse exists.

pub mod auth;
pub mod client;
pub mod currencies;
pub mod deals;
pub mod http;
pub mod model;
pub mod oauth;
pub mod stage_history;
pub mod token_cache;
pub mod users;

use std::time::Duration;

use crate::error_chain::{BoxError, Transport};
use crate::retry::Retryable;

/// The scopes this job asks for (README, Setup). `users.READ` (owners' full names) and the layouts/pipeline
/// settings (won stages of several pipelines) and the currencies (home-currency amounts) are optional: without
/// them the run degrades with a warning.
pub const SCOPES: &str = "ZohoCRM.modules.deals.READ,ZohoCRM.coql.READ,ZohoCRM.settings.fields.READ,\
ZohoCRM.settings.layouts.READ,ZohoCRM.settings.pipeline.READ,ZohoCRM.users.READ,\
ZohoCRM.settings.currencies.READ";

/// Every Zoho failure, classified once at the boundary. `main` maps these kinds to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The accounts server or the CRM refused our credentials: a human must act. A message saying which
    /// credential and what to do, built from Zoho's answer (no underlying error).
    #[error("Zoho rejected the credentials: {0}")]
    InvalidCredentials(String),
    /// The token lacks a scope this job needs.
    #[error("Zoho refused {endpoint}: the refresh token lacks a scope ({detail}). Generate a new grant token with the scopes {scopes} and run exchange-grant", scopes = SCOPES)]
    ScopeMismatch { endpoint: String, detail: String },
    /// The accounts server throttles token mints (10 per refresh token per 10 minutes). Holds Zoho's
    /// description of the throttle (an answer, not an error).
    #[error("Zoho's accounts server is throttling token requests for this refresh token ({0}). Do not retry for 10 minutes; check that nothing else mints tokens with the same refresh token")]
    TokenThrottled(String),
    /// 429 Too Many Requests (concurrency or daily credits).
    #[error("Zoho rate-limited {endpoint} (HTTP 429 {detail}) beyond the retry budget; retry later, or lower ZOHO_CONCURRENCY")]
    RateLimited { endpoint: String, detail: String, retry_after: Option<Duration> },
    /// 5xx (`detail`: the status), or no answer at all (`source`: the timeout, refused or dropped connection).
    #[error("Zoho unavailable at {endpoint} ({detail}; retries exhausted, retry later)")]
    Transient {
        endpoint: String,
        detail: String,
        #[source]
        source: Option<Transport>,
    },
    /// 401 INVALID_TOKEN / AUTHENTICATION_FAILURE: the access token expired or was revoked. The client re-mints
    /// once.
    #[error("Zoho answered 401 INVALID_TOKEN at {endpoint}")]
    InvalidToken { endpoint: String },
    /// `NO_PERMISSION` / `AUTHORIZATION_FAILED` (or a bare 403): the API user's profile may not read this
    /// resource. A human must change the profile; retrying cannot help.
    #[error("Zoho refused {endpoint} ({code}: {message}): {missing}")]
    PermissionDenied {
        endpoint: String,
        code: String,
        message: String,
        /// What the profile lacks and how to give it (see [`missing_permission`]).
        missing: String,
    },
    /// A 429 whose message names the 24-hour credit allowance: the org's API credits for a rolling 24 hours are
    /// spent. Retrying within the run cannot help (unlike a concurrency 429), so this is not retried.
    #[error("Zoho refused {endpoint}: the org's API credits for the rolling 24 hours are used up ({message}). Zoho counts credits over a rolling 24-hour window: the credits spent at a given moment become available again 24 hours later, so the allowance recovers gradually and is fully back 24 hours after the last call; run again later, lower other integrations' usage, or buy more credits")]
    CreditsExhausted { endpoint: String, message: String },
    /// Any other refusal (a 4xx we did not expect): a bug or an org setting, not worth retrying.
    #[error("Zoho refused {endpoint}: HTTP {status} {code}: {message}")]
    Rejected { endpoint: String, status: u16, code: String, message: String },
    /// A response we cannot read: `detail` says what is wrong with it, `source` the parser's error when one
    /// said so (never the body: on the token endpoint it holds a token).
    #[error("unreadable response from Zoho at {endpoint}: {detail}")]
    Malformed {
        endpoint: String,
        detail: String,
        #[source]
        source: Option<BoxError>,
    },
    /// An answer we refuse to act on: a redirect (Zoho calls follow none: a redirect would re-send the client
    /// secret or the access token to another host), or a token response naming an `api_domain` that is not
    /// https or not one of Zoho's API hosts. A human must look; retrying cannot help.
    #[error("refusing Zoho's answer at {endpoint}: {detail}")]
    Untrusted { endpoint: String, detail: String },
    /// A response body larger than [`client::MAX_RESPONSE_BYTES`]: reading stopped there.
    #[error("Zoho's answer at {endpoint} is larger than {} MiB, the cap on any response; stopped reading it (a 2,000-row COQL page is a few MiB, so this is not a normal answer)", .limit / (1024 * 1024))]
    TooLarge { endpoint: String, limit: usize },
    /// The run would spend more API credits than allowed.
    #[error("credit budget reached: {spent} of {limit} Zoho API credits spent, the next call needs {next}")]
    CreditBudget { spent: u64, limit: u64, next: u64 },
}

impl Error {
    /// [`Error::Transient`] for a call that got no answer.
    pub fn no_answer(endpoint: impl Into<String>, e: reqwest::Error) -> Self {
        Error::Transient { endpoint: endpoint.into(), detail: "no answer".into(), source: Some(Transport::new(e)) }
    }

    /// [`Error::Transient`] for an answer that says "later" (a 5xx) or a client that cannot send any more.
    pub fn transient(endpoint: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Transient { endpoint: endpoint.into(), detail: detail.into(), source: None }
    }

    /// [`Error::Malformed`] with no underlying error (a body whose shape is wrong).
    pub fn malformed(endpoint: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Malformed { endpoint: endpoint.into(), detail: detail.into(), source: None }
    }

    /// [`Error::Malformed`] caused by `source` (the JSON or URL parser's error).
    pub fn malformed_from(endpoint: impl Into<String>, detail: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Malformed { endpoint: endpoint.into(), detail: detail.into(), source: Some(source.into()) }
    }
}

/// What an optional read (owners' full names, the org's currencies) does with its failure: a refusal for this
/// user or app (a missing scope or permission, a request Zoho rejects) or an answer we cannot read is
/// `fallback`, after one warning saying `what_is_lost`; any other failure (credentials, throttling, no answer,
/// the credit budget) stops the run anyway, so it is returned.
pub(crate) fn without_optional<T>(e: Error, what_is_lost: &str, fallback: T) -> Result<T, Error> {
    match e {
        Error::ScopeMismatch { .. }
        | Error::PermissionDenied { .. }
        | Error::Rejected { .. }
        | Error::Malformed { .. } => {
            tracing::warn!(error = %crate::error_chain::Chain(&e), "{what_is_lost}");
            Ok(fallback)
        }
        e => Err(e),
    }
}

/// What the API user's profile lacks when `endpoint` answers `NO_PERMISSION`, and how to give it.
pub fn missing_permission(endpoint: &str) -> String {
    let fix = "an administrator gives it in Zoho CRM under Setup → Users and Control → Security Control → Profiles";
    match endpoint {
        "Deals/deleted" => format!(
            "the API user's profile cannot read deleted Deals: {fix} (the Deals module's View permission and the \
             permission to see the Recycle Bin / deleted records)"
        ),
        "coql" | "Deals" => {
            format!("the API user's profile cannot read Deals: {fix} (the Deals module's View permission)")
        }
        "users" => format!("the API user's profile cannot list users: {fix} (Manage Users / view users)"),
        e if e.starts_with("settings/") => format!(
            "the API user's profile cannot read the Deals settings ({e}): {fix} (Module Customization, or an \
             administrator profile)"
        ),
        e => format!("the API user's profile may not use {e}: {fix}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_optional_read_refused_or_unreadable_falls_back_and_any_other_failure_stops_the_run() {
        let refused = [
            Error::ScopeMismatch { endpoint: "users".into(), detail: "users.READ".into() },
            Error::PermissionDenied {
                endpoint: "users".into(),
                code: "NO_PERMISSION".into(),
                message: String::new(),
                missing: String::new(),
            },
            Error::Rejected {
                endpoint: "users".into(),
                status: 400,
                code: "INVALID_DATA".into(),
                message: String::new(),
            },
            Error::malformed("users", "no `users` array"),
        ];
        for e in refused {
            let shown = e.to_string();
            assert_eq!(without_optional(e, "owners keep their last name", 7).ok(), Some(7), "{shown}");
        }
        let stopping = [
            Error::InvalidCredentials("invalid_client".into()),
            Error::TokenThrottled("too many requests".into()),
            Error::transient("users", "HTTP 503"),
            Error::CreditBudget { spent: 10, limit: 10, next: 1 },
        ];
        for e in stopping {
            let shown = e.to_string();
            assert_eq!(without_optional(e, "owners keep their last name", 7).map_err(|e| e.to_string()), Err(shown));
        }
    }
}
