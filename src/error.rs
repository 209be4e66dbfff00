//! The exit-code taxonomy and the top-level error type. `main` maps an [`Error`] to an [`ExitCode`]; a
//! scheduler acts on the code (README has the runbook: what each means and what to do).

use crate::config::ConfigError;
use crate::error_chain::BoxError;
use crate::warehouse::WarehouseError;
use crate::zoho;

/// Process exit codes. Stable: schedulers and alerting depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The run succeeded.
    Success = 0,
    /// Anything unexpected (a bug, or a response nobody planned for).
    Unexpected = 1,
    /// Configuration or usage error: fix the environment or the command line.
    Config = 2,
    /// Zoho rejected the credentials, scopes or the API user's permissions, or answered something this job
    /// will not act on (a redirect, an `api_domain` that is not Zoho's): a human must act; do not retry.
    ZohoCredentials = 3,
    /// Zoho's accounts server throttles token mints: retry after 10 minutes at the earliest.
    ZohoTokenThrottled = 4,
    /// Zoho rate-limited or unavailable beyond the retry budget, or the org's rolling 24-hour API credits are
    /// used up: retry later.
    ZohoUnavailable = 5,
    /// The credit budget (`--max-credits`) cut the run short: it committed a prefix of its window (the next run
    /// continues from there), or, when retries used up the budget mid-run, it merged what it fetched and was
    /// recorded failed (the next run covers the window again), or the budget cannot pay for any progress.
    CreditBudget = 6,
    /// The warehouse is unreachable or refused us (permissions).
    Warehouse = 7,
    /// The run committed, but some records were quarantined (see the log for ids and fields).
    Partial = 8,
    /// Another run holds the lease on this warehouse: this one did nothing.
    Overlap = 9,
    /// `status --max-age`: the newest succeeded window ended longer ago than the maximum age (or no run has
    /// succeeded yet). Look at the failed runs `status` lists.
    Stale = 10,
}

impl ExitCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Everything that can end a run early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad command-line value: a usage mistake, with no underlying error, so a message saying what to write
    /// instead.
    #[error("{0}")]
    Usage(String),
    /// What the command reads from stdin could not be read.
    #[error("could not read {what} from stdin")]
    Stdin {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Zoho(#[from] zoho::Error),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// `authorize` failed (port, timeout, state, consent, or the exchange).
    #[error(transparent)]
    Authorize(#[from] zoho::oauth::AuthorizeError),
    /// A bug: a task panicked or was lost (`source`: how), or the program contradicted itself (no cause).
    #[error("internal error: {what}")]
    Internal {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The credit budget stopped the run: a message saying what was kept and what to do, with no underlying
    /// error.
    #[error("stopped at the credit budget: {0}")]
    CreditBudget(String),
}

impl Error {
    /// [`Error::Internal`] with no underlying error: the program contradicted itself.
    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal { what: what.into(), source: None }
    }

    /// [`Error::Internal`] caused by `source` (a task that panicked or was cancelled).
    pub fn internal_from(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Internal { what: what.into(), source: Some(source.into()) }
    }

    /// The exit code a scheduler sees for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) | Error::Usage(_) | Error::Stdin { .. } => ExitCode::Config,
            Error::CreditBudget(_) => ExitCode::CreditBudget,
            Error::Internal { .. } => ExitCode::Unexpected,
            Error::Authorize(e) => match e {
                zoho::oauth::AuthorizeError::Listen { .. } => ExitCode::Config,
                zoho::oauth::AuthorizeError::Zoho(e) => zoho_exit_code(e),
                // Nobody consented in time, a forged redirect, or a refusal: a human must act.
                zoho::oauth::AuthorizeError::TimedOut(_)
                | zoho::oauth::AuthorizeError::StateMismatch
                | zoho::oauth::AuthorizeError::Refused(_) => ExitCode::ZohoCredentials,
            },
            Error::Zoho(e) => zoho_exit_code(e),
            Error::Warehouse(e) => match e {
                WarehouseError::Busy { .. } | WarehouseError::LeaseLost { .. } => ExitCode::Overlap,
                WarehouseError::Config(_) => ExitCode::Config,
                WarehouseError::Unavailable { .. } | WarehouseError::PermissionDenied { .. } => ExitCode::Warehouse,
                WarehouseError::Sqlite { .. } => ExitCode::Warehouse,
                WarehouseError::RowRejected { .. } | WarehouseError::Other { .. } => ExitCode::Unexpected,
            },
        }
    }
}

/// The exit code of a Zoho failure.
fn zoho_exit_code(e: &zoho::Error) -> ExitCode {
    match e {
        zoho::Error::InvalidCredentials(_) | zoho::Error::ScopeMismatch { .. } => ExitCode::ZohoCredentials,
        zoho::Error::InvalidToken { .. } | zoho::Error::PermissionDenied { .. } => ExitCode::ZohoCredentials,
        // A redirect or a foreign/plain-http api_domain: someone must check ZOHO_DC/ZOHO_ACCOUNTS_URL
        // (or who answers there); retrying would not change the answer.
        zoho::Error::Untrusted { .. } => ExitCode::ZohoCredentials,
        zoho::Error::TooLarge { .. } => ExitCode::Unexpected,
        zoho::Error::TokenThrottled(_) => ExitCode::ZohoTokenThrottled,
        zoho::Error::RateLimited { .. } | zoho::Error::Transient { .. } | zoho::Error::CreditsExhausted { .. } => {
            ExitCode::ZohoUnavailable
        }
        zoho::Error::CreditBudget { .. } => ExitCode::CreditBudget,
        zoho::Error::Rejected { .. } | zoho::Error::Malformed { .. } => ExitCode::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error_chain::testing::chain_without;

    #[test]
    fn what_could_not_be_read_from_stdin_is_named_then_why_with_exit_2() {
        let e = Error::Stdin {
            what: "the grant token",
            source: std::io::Error::other("stream did not contain valid UTF-8"),
        };
        assert_eq!(
            chain_without(&e, "s3cr3t"),
            "could not read the grant token from stdin: stream did not contain valid UTF-8"
        );
        assert_eq!(e.exit_code(), ExitCode::Config);
    }

    #[test]
    fn a_lost_task_is_an_internal_error_naming_the_task_then_how_it_ended() {
        let e = Error::internal_from("the loader task failed", std::io::Error::other("task 7 panicked"));
        assert_eq!(chain_without(&e, "s3cr3t"), "internal error: the loader task failed: task 7 panicked");
        assert_eq!(e.exit_code(), ExitCode::Unexpected);
    }
}
