//! Failures classified once: what to report, whether to retry, and the retry schedule.

use std::time::Duration;

use gcp_bigquery_client::error::BQError;

use crate::error_chain::{BoxError, Transport};
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
    /// Not retried, not a missing table.
    fn new(error: WarehouseError) -> Self {
        Failure { error, retryable: false, not_found: false, new_request_id: false }
    }

    pub(super) fn other(message: impl Into<String>) -> Self {
        Failure::new(WarehouseError::other(message))
    }

    /// No answer (a timeout, a dropped connection): retryable, with the same `requestId`.
    pub(super) fn transport(message: impl Into<String>) -> Self {
        Failure { retryable: true, ..Failure::new(WarehouseError::unavailable(message)) }
    }
}

/// Prefixes what we were doing, keeping the kind and the cause.
pub(super) fn with_context(e: WarehouseError, context: &str) -> WarehouseError {
    let prefixed = |what: String| format!("{context}: {what}");
    match e {
        WarehouseError::Unavailable { what, source } => WarehouseError::Unavailable { what: prefixed(what), source },
        WarehouseError::PermissionDenied { what, source } => {
            WarehouseError::PermissionDenied { what: prefixed(what), source }
        }
        WarehouseError::Other { what, source } => WarehouseError::Other { what: prefixed(what), source },
        other => other,
    }
}

/// BigQuery's answer to a call it refused, as a cause: its message, HTTP status and error reasons.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {code}, {})", reasons.join(", "))]
pub struct Refusal {
    pub message: String,
    pub code: i64,
    pub reasons: Vec<String>,
}

/// What the BigQuery client crate said, as a cause. Its messages already print their own cause ("Invalid
/// service account key (error: …)"), so the chain stops here. Never a transport error: those name their URL
/// and are kept as a [`Transport`] instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(BQError);

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
/// `PermissionDenied`; 404 is `Other` marked not-found; the rest is `Other`. `what` (what we were doing) heads
/// the message; the crate's error is kept as the cause.
pub(super) fn classify(e: BQError, what: &str) -> Failure {
    let what = if what.is_empty() { "calling BigQuery" } else { what };
    let context = |m: &str| if m.is_empty() { what.to_owned() } else { format!("{what}: {m}") };
    let denied =
        |m: String, source: BoxError| Failure::new(WarehouseError::PermissionDenied { what: m, source: Some(source) });
    match e {
        BQError::RequestError(r) => Failure {
            retryable: true,
            ..Failure::new(WarehouseError::Unavailable { what: context(""), source: Some(Transport::new(r).into()) })
        },
        BQError::ResponseError { error } => {
            let nested = error.error;
            let reasons: Vec<String> = nested.errors.iter().filter_map(|m| m.get("reason").cloned()).collect();
            let has = |r: &str| reasons.iter().any(|x| x == r);
            let lower = nested.message.to_ascii_lowercase();
            let code = nested.code;
            if has("bytesBilledLimitExceeded") {
                // Our own cost guard stopped the statement: a setting to look at, not an outage.
                return Failure::new(WarehouseError::Config(format!(
                    "{what}: {} (HTTP {code}, {}); a statement would bill more than BQ_MAX_BYTES_BILLED allows: \
                     raise it (or set it to `off`) if the table really grew that large",
                    nested.message,
                    reasons.join(", ")
                )));
            }
            let retry = RETRYABLE_REASONS.iter().any(|r| has(r))
                // Two DML statements on the same table collided; BigQuery asks for a retry.
                || lower.contains("concurrent update")
                || lower.contains("could not serialize access")
                || matches!(code, 408 | 429 | 500..=599);
            let refusal: BoxError = Box::new(Refusal { message: nested.message, code, reasons });
            let what = context("");
            if retry {
                // BigQuery answered: whatever we retry needs a new requestId (see `Failure::new_request_id`).
                return Failure {
                    retryable: true,
                    new_request_id: true,
                    ..Failure::new(WarehouseError::Unavailable { what, source: Some(refusal) })
                };
            }
            match code {
                401 | 403 => denied(what, refusal),
                404 => {
                    Failure { not_found: true, ..Failure::new(WarehouseError::Other { what, source: Some(refusal) }) }
                }
                _ => Failure::new(WarehouseError::Other { what, source: Some(refusal) }),
            }
        }
        BQError::YupAuthError(
            y @ (gcp_bigquery_client::yup_oauth2::Error::HttpError(_)
            | gcp_bigquery_client::yup_oauth2::Error::HttpClientError(_)
            | gcp_bigquery_client::yup_oauth2::Error::LowLevelError(_)),
        ) => {
            // Not retried: without a key file or gcloud login, ADC falls back to the metadata server, which only
            // exists on Google Cloud; a laptop would otherwise wait out the whole retry budget.
            Failure::new(WarehouseError::Unavailable {
                what: context(
                    "could not reach Google's token endpoint (outside Google Cloud, set \
                     GOOGLE_APPLICATION_CREDENTIALS to a service-account key or run `gcloud auth \
                     application-default login`)",
                ),
                source: Some(Box::new(y)),
            })
        }
        BQError::YupAuthError(y) => denied(context("could not obtain Google credentials"), Box::new(y)),
        e @ (BQError::AuthError(_)
        | BQError::NoToken
        | BQError::InvalidServiceAccountKey(_)
        | BQError::InvalidServiceAccountAuthenticator(_)
        | BQError::InvalidApplicationDefaultCredentialsAuthenticator(_)
        | BQError::InvalidAuthorizedUserAuthenticator(_)
        | BQError::InvalidInstalledFlowAuthenticator(_)) => denied(
            context(
                "could not obtain Google credentials (set GOOGLE_APPLICATION_CREDENTIALS to a service-account key, \
                 run `gcloud auth application-default login`, or run where a metadata server provides them)",
            ),
            Box::new(ClientError(e)),
        ),
        other => Failure::new(WarehouseError::Other { what: context(""), source: Some(Box::new(ClientError(other))) }),
    }
}
