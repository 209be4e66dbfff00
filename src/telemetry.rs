//! Logging: JSON lines with Cloud Logging's fields (`severity`, `message`, `timestamp`) when stderr is not a
//! terminal (or `LOG_FORMAT=json`), human text on a terminal. Level from `RUST_LOG` (default `info`).
//!
//! Span fields (the run's `run_id`) are copied onto every line, so one grep finds a whole run.
//!
//! Third-party crates that can log a credential are capped at `warn` whatever `RUST_LOG` says
//! ([`CAPPED_TARGETS`]): yup-oauth2 logs Google's token responses (access tokens, the signed JWT assertion,
//! gcloud refresh tokens) at `debug`, and the HTTP stack logs headers and bodies at `debug`/`trace`.

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{FmtSpan, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Log targets (crates) that can carry a credential below `warn`: their `debug`/`trace` lines are dropped
/// whatever `RUST_LOG` asks for. A target matches by prefix (`hyper` also covers `hyper::proto::h1`).
pub const CAPPED_TARGETS: &[&str] = &[
    // Google token responses, JWT assertions, gcloud refresh tokens and client secrets (`log::debug!`).
    "yup_oauth2",
    // Request and response heads and bodies: `Authorization` headers, form bodies holding client secrets.
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "reqwest",
    "h2",
    "rustls",
    "gcp_bigquery_client",
];

/// The level [`CAPPED_TARGETS`] are capped at.
pub const CAP: LevelFilter = LevelFilter::WARN;

/// The filter that enforces the cap; every other target passes (`RUST_LOG` then decides).
fn credential_cap() -> Targets {
    Targets::new().with_default(LevelFilter::TRACE).with_targets(CAPPED_TARGETS.iter().map(|t| (*t, CAP)))
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// `LOG_FORMAT` if set (`json`/`text`), else JSON unless stderr is a terminal.
    pub fn from_env() -> Result<LogFormat, crate::config::ConfigError> {
        match std::env::var("LOG_FORMAT").ok().as_deref().map(str::trim) {
            None | Some("") => Ok(if std::io::stderr().is_terminal() { LogFormat::Text } else { LogFormat::Json }),
            Some(s) if s.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some(s) if s.eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
            Some(s) => Err(crate::config::ConfigError::Invalid {
                var: "LOG_FORMAT",
                value: s.to_owned(),
                reason: "use `json` or `text`".into(),
            }),
        }
    }
}

/// Installs the global subscriber, writing to stderr. Call once.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // `try_init` also routes the `log` crate's records (yup-oauth2, reqwest) through these filters.
    let result = match format {
        LogFormat::Json => {
            builder.fmt_fields(JsonFields::new()).event_format(CloudJson).finish().with(credential_cap()).try_init()
        }
        LogFormat::Text => {
            builder.with_span_events(FmtSpan::NONE).with_target(false).finish().with(credential_cap()).try_init()
        }
    };
    // Already installed (tests): keep the first.
    let _ = result;
}

/// One JSON object per line, shaped for Google Cloud Logging's structured logs.
struct CloudJson;

impl<S, N> FormatEvent<S, N> for CloudJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut obj = Map::new();
        let meta = event.metadata();
        let severity = match *meta.level() {
            tracing::Level::ERROR => "ERROR",
            tracing::Level::WARN => "WARNING",
            tracing::Level::INFO => "INFO",
            tracing::Level::DEBUG | tracing::Level::TRACE => "DEBUG",
        };
        obj.insert("severity".into(), severity.into());
        obj.insert("timestamp".into(), chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true).into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(fields.as_str()) {
                        obj.extend(m);
                    }
                }
            }
        }
        let mut visitor = JsonVisitor(&mut obj);
        event.record(&mut visitor);
        obj.entry("message").or_insert_with(|| Value::String(String::new()));
        obj.insert("target".into(), meta.target().into());
        let line = serde_json::to_string(&Value::Object(obj)).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let chain = crate::error_chain::format(value);
        self.0.insert(field.name().into(), chain.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn crates_that_can_log_credentials_are_capped_at_warn_and_the_job_is_not() {
        let cap = credential_cap();
        for target in CAPPED_TARGETS.iter().chain(&["yup_oauth2::service_account", "hyper_util::client::legacy"]) {
            assert!(!cap.would_enable(target, &Level::DEBUG), "{target} debug");
            assert!(!cap.would_enable(target, &Level::TRACE), "{target} trace");
            assert!(cap.would_enable(target, &Level::WARN), "{target} warn");
        }
        assert!(cap.would_enable("zoho_deals_sync::zoho::client", &Level::TRACE));
    }
}
