//! Failures classified once: what to report, whether to retry, and the retry schedule.

use std::time::Duration;

use gcp_bigquery_client::error::BQError;

use crate::retry::{RetryPolicy, Retryable};
use crate::warehouse::WarehouseError;

/// A classified failure: what to report, and whether trying again could help.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) error: WarehouseError,
    pub(super) retryable: bool,
    pub(super) not_found: bool,
    /// BigQuery answered (the job itself failed, or the API refused the call): a retry must carry a new
    /// `requestId`, since the old one would return the same failed job. False for transport failures (no
    /// answer), whose retry keeps the id so that a job the first attempt started is not run twice.
    pub(super) new_request_id: bool,
}

impl Retryable for Failure {
    fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl Failure {
    pub(super) fn other(message: impl Into<String>) -> Self {
        Failure {
            error: WarehouseError::Other(message.into()),
            retryable: false,
            not_found: false,
            new_request_id: false,
        }
    }

    /// No answer (a timeout, a dropped connection): retryable, with the same `requestId`.
    pub(super) fn transport(message: impl Into<String>) -> Self {
        Failure {
            error: WarehouseError::Unavailable(message.into()),
            retryable: true,
            not_found: false,
            new_request_id: false,
        }
    }
}

/// Prefixes what we were doing, keeping the kind.
pub(super) fn with_context(e: WarehouseError, what: &str) -> WarehouseError {
    match e {
        WarehouseError::Unavailable(m) => WarehouseError::Unavailable(format!("{what}: {m}")),
        WarehouseError::PermissionDenied(m) => WarehouseError::PermissionDenied(format!("{what}: {m}")),
        WarehouseError::Other(m) => WarehouseError::Other(format!("{what}: {m}")),
        other => other,
    }
}

/// The retry schedule for BigQuery calls: 1 s doubling to 20 s, at most 6 retries within 2 minutes: enough to
/// ride out a rate limit, a concurrent-DML conflict or a failed job,
/// without stalling a nightly job on an outage.
pub(super) fn policy() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(20),
        max_retries: 6,
        budget: Duration::from_secs(120),
    }
}

/// Job error reasons worth another attempt (with a new `requestId`): docs/bigquery.md, "Jobs" (python-bigquery
/// retries `jobBackendError` and `jobInternalError` since 3.36.0). Not here: `invalidQuery`, `accessDenied`,
/// `notFound`, and `quotaExceeded` (daily quotas do not come back within a run).
pub(super) const RETRYABLE_REASONS: &[&str] = &[
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "jobRateLimitExceeded",
    "jobBackendError",
    "jobInternalError",
];

/// Classifies the crate's errors once: connection failures, timeouts, 5xx, 429 and rate limits are
/// `Unavailable` and retryable; a DML conflict with a concurrent statement is retryable; 401/403 are
/// `PermissionDenied`; 404 is `Other` marked not-found; the rest is `Other`.
pub(super) fn classify(e: &BQError, what: &str) -> Failure {
    let prefix = if what.is_empty() { String::new() } else { format!("{what}: ") };
    let unavailable = |m: String| Failure::transport(m);
    let denied = |m: String| Failure {
        error: WarehouseError::PermissionDenied(m),
        retryable: false,
        not_found: false,
        new_request_id: false,
    };
    match e {
        BQError::RequestError(r) => {
            let kind = if r.is_timeout() {
                "timed out"
            } else if r.is_connect() {
                "could not connect"
            } else if r.is_decode() {
                // The crate reads error bodies as JSON; a gateway's HTML 502/503 page ends up here.
                "unreadable response"
            } else {
                "request failed"
            };
            unavailable(format!("{prefix}{kind}: {r}"))
        }
        BQError::ResponseError { error } => {
            let nested = &error.error;
            let reasons: Vec<&str> = nested.errors.iter().filter_map(|m| m.get("reason").map(String::as_str)).collect();
            let message = format!("{prefix}{} (HTTP {}, {})", nested.message, nested.code, reasons.join(", "));
            let has = |r: &str| reasons.contains(&r);
            let lower = nested.message.to_ascii_lowercase();
            // BigQuery answered: whatever we retry needs a new requestId (see `Failure::new_request_id`).
            let answered = |m: String| Failure { new_request_id: true, ..Failure::transport(m) };
            if has("bytesBilledLimitExceeded") {
                // Our own cost guard stopped the statement: a setting to look at, not an outage.
                Failure {
                    error: WarehouseError::Config(format!(
                        "{message}; a statement would bill more than BQ_MAX_BYTES_BILLED allows: raise it (or set \
                         it to `off`) if the table really grew that large"
                    )),
                    ..Failure::other("")
                }
            } else if RETRYABLE_REASONS.iter().any(|r| has(r)) {
                answered(message)
            } else if lower.contains("concurrent update") || lower.contains("could not serialize access") {
                // Two DML statements on the same table collided; BigQuery asks for a retry.
                answered(message)
            } else {
                match nested.code {
                    401 | 403 => denied(message),
                    404 => Failure {
                        error: WarehouseError::Other(message),
                        retryable: false,
                        not_found: true,
                        new_request_id: false,
                    },
                    408 | 429 | 500..=599 => answered(message),
                    _ => Failure::other(message),
                }
            }
        }
        BQError::YupAuthError(y) => match y {
            gcp_bigquery_client::yup_oauth2::Error::HttpError(_)
            | gcp_bigquery_client::yup_oauth2::Error::HttpClientError(_)
            | gcp_bigquery_client::yup_oauth2::Error::LowLevelError(_) => Failure {
                // Not retried: without a key file or gcloud login, ADC falls back to the metadata server,
                // which only exists on Google Cloud; a laptop would otherwise wait out the whole retry budget.
                error: WarehouseError::Unavailable(format!(
                    "{prefix}could not reach Google's token endpoint ({y}); outside Google Cloud, set \
                     GOOGLE_APPLICATION_CREDENTIALS to a service-account key or run `gcloud auth application-default login`"
                )),
                retryable: false,
                not_found: false,
                new_request_id: false,
            },
            _ => denied(format!("{prefix}could not obtain Google credentials: {y}")),
        },
        BQError::AuthError(_)
        | BQError::NoToken
        | BQError::InvalidServiceAccountKey(_)
        | BQError::InvalidServiceAccountAuthenticator(_)
        | BQError::InvalidApplicationDefaultCredentialsAuthenticator(_)
        | BQError::InvalidAuthorizedUserAuthenticator(_)
        | BQError::InvalidInstalledFlowAuthenticator(_) => denied(format!(
            "{prefix}could not obtain Google credentials ({e}); set GOOGLE_APPLICATION_CREDENTIALS to a service-account key, run `gcloud auth application-default login`, or run where a metadata server provides them"
        )),
        other => Failure::other(format!("{prefix}{other}")),
    }
}
