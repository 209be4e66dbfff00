//! The alert webhook: when a run exits non-zero (or after every run, with `ALERT_ON=all`) the job posts one
//! message — exit code, what it means, what to do, run id, window, command, host — to `ALERT_WEBHOOK_URL`.
//!
//! The webhook is a side channel: it never changes the exit code, never holds the run up for long (a short
//! timeout and at most one retry, only when the request could not be delivered), and never carries a secret.
//! The URL itself is a secret (a Slack incoming-webhook URL is a write credential): it is never logged and
//! `Debug` redacts it. Not here: deciding the exit code (`error.rs`, `main.rs`).

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::config::ConfigError;
use crate::error::ExitCode;

/// One attempt may take this long: enough for a slow webhook service, short enough that a dead one adds
/// seconds, not minutes, to a run that has already finished.
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause before the one retry of an undelivered alert.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// At most this many characters of the error line go into a message (chat messages should stay short).
const MAX_ERROR_CHARS: usize = 500;

/// The body shape the webhook expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertFormat {
    /// `{"text": "…"}`: Slack incoming webhooks (and the many services that accept the same body:
    /// Mattermost, Rocket.Chat, Google Chat).
    Slack,
    /// A JSON object with `exit_code`, `meaning`, `what_to_do`, `run_id`, `window_start`, `window_end`,
    /// `command`, `host`, `error` (for PagerDuty-style relays, Cloud Functions, anything scripted).
    Json,
}

/// Which runs alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOn {
    /// Runs that exit non-zero (the default).
    Failure,
    /// Every run.
    All,
}

/// The alert settings (`ALERT_WEBHOOK_URL`, `ALERT_FORMAT`, `ALERT_ON`). Read on their own, apart from the
/// rest of the configuration, so that a run that fails on its configuration still alerts.
#[derive(Clone)]
pub struct AlertSettings {
    url: SecretString,
    pub format: AlertFormat,
    pub on: AlertOn,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("url", &"[REDACTED]")
            .field("format", &self.format)
            .field("on", &self.on)
            .finish()
    }
}

impl AlertSettings {
    /// From the process environment; `None` when `ALERT_WEBHOOK_URL` is unset or empty.
    pub fn from_env() -> Result<Option<AlertSettings>, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// From the given variables (tests pass their own).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Option<AlertSettings>, ConfigError> {
        let (mut url, mut format, mut on) = (None, None, None);
        for (k, v) in vars {
            let v = v.trim().to_owned();
            if v.is_empty() {
                continue;
            }
            match k.as_str() {
                "ALERT_WEBHOOK_URL" => url = Some(v),
                "ALERT_FORMAT" => format = Some(v),
                "ALERT_ON" => on = Some(v),
                _ => {}
            }
        }
        let format = match format.as_deref() {
            None => AlertFormat::Slack,
            Some(f) if f.eq_ignore_ascii_case("slack") => AlertFormat::Slack,
            Some(f) if f.eq_ignore_ascii_case("json") => AlertFormat::Json,
            Some(f) => {
                return Err(ConfigError::Invalid {
                    var: "ALERT_FORMAT",
                    value: f.to_owned(),
                    reason: "use `slack` ({\"text\": …}, the default) or `json` (a plain JSON object)".into(),
                })
            }
        };
        let on = match on.as_deref() {
            None => AlertOn::Failure,
            Some(o) if o.eq_ignore_ascii_case("failure") => AlertOn::Failure,
            Some(o) if o.eq_ignore_ascii_case("all") => AlertOn::All,
            Some(o) => {
                return Err(ConfigError::Invalid {
                    var: "ALERT_ON",
                    value: o.to_owned(),
                    reason: "use `failure` (runs that exit non-zero, the default) or `all` (every run)".into(),
                })
            }
        };
        let Some(url) = url else { return Ok(None) };
        // The value is never echoed: it is a credential.
        let invalid = |reason: &str| ConfigError::Invalid {
            var: "ALERT_WEBHOOK_URL",
            value: "[REDACTED]".into(),
            reason: reason.into(),
        };
        let parsed = url::Url::parse(&url).map_err(|_| invalid("not a URL; paste the webhook's full https:// URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("use an http(s) URL"));
        }
        Ok(Some(AlertSettings { url: SecretString::from(url), format, on }))
    }

    /// Whether a run that ended with `code` alerts.
    pub fn wants(&self, code: ExitCode) -> bool {
        code != ExitCode::Success || self.on == AlertOn::All
    }
}

/// The run a message is about, when the command got as far as starting one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContext {
    pub run_id: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
}

/// The run this process started, recorded by the pipeline when it starts one so that the final alert can name
/// it whatever way the run ends.
static CURRENT_RUN: Mutex<Option<RunContext>> = Mutex::new(None);

/// Records the run this process is executing (the pipeline calls this once it has an id and a window).
pub fn record_run(run: RunContext) {
    if let Ok(mut slot) = CURRENT_RUN.lock() {
        *slot = Some(run);
    }
}

/// The run recorded by [`record_run`], if any.
pub fn current_run() -> Option<RunContext> {
    CURRENT_RUN.lock().ok().and_then(|slot| slot.clone())
}

/// Everything a message says.
#[derive(Debug, Clone)]
pub struct Alert {
    pub code: ExitCode,
    /// `sync`, `check`, `status`, …
    pub command: String,
    pub run: Option<RunContext>,
    /// The first line of the error that ended the run, if it failed with one.
    pub error: Option<String>,
    pub host: String,
}

impl Alert {
    /// An alert for a run that ended with `code`, naming this host and the run recorded by [`record_run`].
    pub fn new(code: ExitCode, command: &str, error: Option<&str>) -> Alert {
        let error = error.map(|e| {
            let line = e.lines().next().unwrap_or("");
            match line.char_indices().nth(MAX_ERROR_CHARS) {
                Some((cut, _)) => format!("{}…", &line[..cut]),
                None => line.to_owned(),
            }
        });
        Alert { code, command: command.to_owned(), run: current_run(), error, host: host_name() }
    }

    /// The body to post.
    pub fn body(&self, format: AlertFormat) -> Value {
        let (meaning, what_to_do) = explain(self.code);
        let ts = |t: &DateTime<Utc>| crate::deal::format_utc(t);
        match format {
            AlertFormat::Json => json!({
                "source": "zoho-deals-sync",
                "exit_code": self.code.code(),
                "meaning": meaning,
                "what_to_do": what_to_do,
                "run_id": self.run.as_ref().map(|r| r.run_id.clone()),
                "window_start": self.run.as_ref().map(|r| ts(&r.window_start)),
                "window_end": self.run.as_ref().map(|r| ts(&r.window_end)),
                "command": self.command,
                "host": self.host,
                "error": self.error,
            }),
            AlertFormat::Slack => {
                let outcome = match self.code {
                    ExitCode::Success => "succeeded".to_owned(),
                    code => format!("failed with exit {}", code.code()),
                };
                let mut text = format!(
                    "zoho-deals-sync `{}` on {} {outcome}: {meaning}.\nWhat to do: {what_to_do}.",
                    self.command, self.host
                );
                if let Some(r) = &self.run {
                    text.push_str(&format!(
                        "\nRun {} window [{}, {})",
                        r.run_id,
                        ts(&r.window_start),
                        ts(&r.window_end)
                    ));
                }
                if let Some(e) = &self.error {
                    text.push_str(&format!("\nError: {e}"));
                }
                json!({ "text": text })
            }
        }
    }
}

/// Posts `alert` once (one retry when it could not be delivered: refused, reset, or a 5xx/429 answer; none
/// after a timeout, so a webhook that never answers costs one [`ALERT_TIMEOUT`]). Returns whether the webhook
/// accepted it; failures are logged without the URL. Never panics, never fails the run.
pub async fn send(settings: &AlertSettings, alert: &Alert) -> bool {
    let http = match reqwest::Client::builder().connect_timeout(ALERT_TIMEOUT).timeout(ALERT_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "could not build the alert webhook client; no alert sent");
            return false;
        }
    };
    let body = alert.body(settings.format);
    for attempt in 1..=2 {
        let result = http.post(settings.url.expose_secret()).json(&body).send().await;
        let retryable = match result {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(exit_code = alert.code.code(), "sent the alert to the webhook");
                return true;
            }
            Ok(resp) => {
                let status = resp.status();
                tracing::warn!(status = status.as_u16(), attempt, "the alert webhook refused the alert");
                status.is_server_error() || status.as_u16() == 429
            }
            Err(e) => {
                let timed_out = e.is_timeout();
                // `without_url`: the URL is the webhook's credential.
                tracing::warn!(error = %e.without_url(), attempt, "could not deliver the alert to the webhook");
                !timed_out
            }
        };
        if !retryable {
            break;
        }
        if attempt == 1 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
    false
}

/// Sends the alert for a run that ended with `code`, if alerting is configured and wants it.
pub async fn after_run(settings: Option<&AlertSettings>, command: &str, code: ExitCode, error: Option<&str>) {
    if let Some(s) = settings.filter(|s| s.wants(code)) {
        send(s, &Alert::new(code, command, error)).await;
    }
}

/// What an exit code means and what to do about it (README's runbook, in short).
pub fn explain(code: ExitCode) -> (&'static str, &'static str) {
    match code {
        ExitCode::Success => ("the run succeeded", "nothing"),
        ExitCode::Unexpected => ("an unexpected error (a bug, or an answer nobody planned for)", "read the error line; a rerun is safe; report it"),
        ExitCode::Config => ("a configuration or usage error", "the error names the variable or flag and the fix"),
        ExitCode::ZohoCredentials => ("Zoho rejected the credentials or a scope", "a human must act: check ZOHO_CLIENT_ID/SECRET and ZOHO_DC, regenerate the refresh token with exchange-grant; do not retry automatically"),
        ExitCode::ZohoTokenThrottled => ("Zoho's accounts server throttles token requests", "wait at least 10 minutes; make sure nothing else mints tokens with the same refresh token"),
        ExitCode::ZohoUnavailable => ("Zoho rate-limited or was unavailable beyond the retry budget", "retry later; the next scheduled run is fine, nothing is lost"),
        ExitCode::CreditBudget => ("the credit budget cut the run short", "usually nothing: the next run continues; if the budget cannot pay for any progress, raise it"),
        ExitCode::Warehouse => ("the warehouse is unreachable or refused the job", "check connectivity and roles (BigQuery Data Editor, Job User) or the SQLite path"),
        ExitCode::Partial => ("the run committed, but some records were quarantined", "see the quarantined_deals table for ids, fields and reasons; fix the records in Zoho"),
        ExitCode::Overlap => ("another run holds the lease on this warehouse", "nothing: the other run is doing the work; a dead run's lease expires after SYNC_LEASE_TTL"),
        ExitCode::Stale => ("the warehouse is stale: the newest succeeded window is older than --max-age", "run `zoho-deals-sync status` and look at the failed runs it lists"),
    }
}

/// This machine's name: `HOSTNAME`, else `/etc/hostname`, else `unknown`. (Cloud Run and Kubernetes set
/// `HOSTNAME` to the instance or pod.)
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const HOOK: &str = "https://hooks.slack.com/services/T000/B000/s3cr3tp4th";

    #[test]
    fn without_a_url_nothing_alerts_and_the_defaults_are_slack_on_failure() {
        assert!(AlertSettings::from_vars(vars(&[("ALERT_WEBHOOK_URL", " ")])).expect("valid").is_none());
        let s = AlertSettings::from_vars(vars(&[("ALERT_WEBHOOK_URL", HOOK)])).expect("valid").expect("set");
        assert_eq!((s.format, s.on), (AlertFormat::Slack, AlertOn::Failure));
        assert!(s.wants(ExitCode::Partial) && !s.wants(ExitCode::Success));
    }

    #[test]
    fn alert_on_all_alerts_after_a_success_too() {
        let s = AlertSettings::from_vars(vars(&[("ALERT_WEBHOOK_URL", HOOK), ("ALERT_ON", "ALL")]))
            .expect("valid")
            .expect("set");
        assert!(s.wants(ExitCode::Success));
    }

    #[test]
    fn a_bad_value_names_the_variable_and_never_echoes_the_url() {
        let e = AlertSettings::from_vars(vars(&[("ALERT_WEBHOOK_URL", HOOK), ("ALERT_FORMAT", "teams")]))
            .expect_err("invalid");
        assert!(e.to_string().contains("ALERT_FORMAT") && e.to_string().contains("slack"), "{e}");
        let e = AlertSettings::from_vars(vars(&[("ALERT_WEBHOOK_URL", "ftp://x/s3cr3tp4th")])).expect_err("invalid");
        assert!(e.to_string().contains("ALERT_WEBHOOK_URL") && !e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn the_url_never_shows_in_debug_output() {
        let s = AlertSettings::from_vars(vars(&[("ALERT_WEBHOOK_URL", HOOK)])).expect("valid").expect("set");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cr3t") && dbg.contains("REDACTED"), "{dbg}");
    }

    #[test]
    fn every_exit_code_has_a_meaning_and_something_to_do() {
        for code in 0..=10u8 {
            let code = match code {
                0 => ExitCode::Success,
                1 => ExitCode::Unexpected,
                2 => ExitCode::Config,
                3 => ExitCode::ZohoCredentials,
                4 => ExitCode::ZohoTokenThrottled,
                5 => ExitCode::ZohoUnavailable,
                6 => ExitCode::CreditBudget,
                7 => ExitCode::Warehouse,
                8 => ExitCode::Partial,
                9 => ExitCode::Overlap,
                _ => ExitCode::Stale,
            };
            let (meaning, what) = explain(code);
            assert!(!meaning.is_empty() && !what.is_empty());
        }
    }

    #[test]
    fn the_json_body_carries_the_fields_and_the_slack_body_one_text() {
        let alert = Alert {
            code: ExitCode::ZohoUnavailable,
            command: "sync".into(),
            run: Some(RunContext {
                run_id: "r-1".into(),
                window_start: DateTime::<Utc>::UNIX_EPOCH,
                window_end: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::hours(1),
            }),
            error: Some("HTTP 503".into()),
            host: "box".into(),
        };
        let j = alert.body(AlertFormat::Json);
        assert_eq!(j["exit_code"], json!(5));
        assert_eq!(j["run_id"], json!("r-1"));
        assert_eq!(j["window_end"], json!("1970-01-01T01:00:00Z"));
        assert_eq!(j["what_to_do"], json!(explain(ExitCode::ZohoUnavailable).1));
        let s = alert.body(AlertFormat::Slack);
        let text = s["text"].as_str().expect("text");
        assert_eq!(s.as_object().map(serde_json::Map::len), Some(1));
        assert!(text.contains("exit 5") && text.contains("r-1") && text.contains("HTTP 503"), "{text}");
    }

    #[test]
    fn a_long_error_is_cut_to_its_first_line_and_500_characters() {
        let long = format!("{}\nsecond line", "x".repeat(2000));
        let a = Alert::new(ExitCode::Unexpected, "sync", Some(&long));
        let e = a.error.expect("error");
        assert!(e.chars().count() == MAX_ERROR_CHARS + 1 && !e.contains("second"), "{}", e.len());
    }
}
