//! Environment → typed, validated settings. Read once at start; every problem is reported at once, by name.
//!
//! Secrets (client secret, refresh token) are held as [`SecretString`]: they print as `[REDACTED]` in `Debug`
//! and are exposed only where a request is built. Not here: CLI flags (see `cli.rs`).

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// Every environment variable the binary reads. Deployment manifests are checked against this list.
pub const ENV_VARS: &[&str] = &[
    "ZOHO_CLIENT_ID",
    "ZOHO_CLIENT_SECRET",
    "ZOHO_REFRESH_TOKEN",
    "ZOHO_DC",
    "ZOHO_ACCOUNTS_URL",
    "ZOHO_API_DOMAIN",
    "ZOHO_WON_STAGES",
    "ZOHO_CONCURRENCY",
    "ZOHO_RETRY_BUDGET",
    "ZOHO_TOKEN_CACHE",
    "WAREHOUSE",
    "SQLITE_PATH",
    "BQ_PROJECT",
    "BQ_DATASET",
    "BQ_LOCATION",
    "BIGQUERY_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "SYNC_LOOKBACK",
    "SYNC_OVERLAP",
    "SYNC_MAX_CREDITS",
    "SYNC_LEASE_TTL",
    "LOG_FORMAT",
    "RUST_LOG",
    "ALERT_WEBHOOK_URL",
    "ALERT_FORMAT",
    "ALERT_ON",
];

/// A configuration problem, naming the variable and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One or more required variables are unset or empty.
    #[error("missing required environment variable(s): {}. Set them (see README, Configuration) and run again", .0.join(", "))]
    Missing(Vec<&'static str>),
    /// A variable has a value we cannot use.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid { var: &'static str, value: String, reason: String },
}

/// Zoho data centres: each has its own accounts server (where tokens are minted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataCentre {
    Us,
    Eu,
    In,
    Au,
    Jp,
    Cn,
    Ca,
    Sa,
}

impl DataCentre {
    /// All data centres, in the order README lists them.
    pub const ALL: [DataCentre; 8] = [
        DataCentre::Us,
        DataCentre::Eu,
        DataCentre::In,
        DataCentre::Au,
        DataCentre::Jp,
        DataCentre::Cn,
        DataCentre::Ca,
        DataCentre::Sa,
    ];

    /// The `ZOHO_DC` spelling.
    pub fn code(self) -> &'static str {
        match self {
            DataCentre::Us => "us",
            DataCentre::Eu => "eu",
            DataCentre::In => "in",
            DataCentre::Au => "au",
            DataCentre::Jp => "jp",
            DataCentre::Cn => "cn",
            DataCentre::Ca => "ca",
            DataCentre::Sa => "sa",
        }
    }

    /// The accounts server of this data centre (from Zoho's SDK data-centre table).
    pub fn accounts_url(self) -> &'static str {
        match self {
            DataCentre::Us => "https://accounts.zoho.com",
            DataCentre::Eu => "https://accounts.zoho.eu",
            DataCentre::In => "https://accounts.zoho.in",
            DataCentre::Au => "https://accounts.zoho.com.au",
            DataCentre::Jp => "https://accounts.zoho.jp",
            DataCentre::Cn => "https://accounts.zoho.com.cn",
            // Canada's accounts server is on zohocloud.ca, not zoho.ca.
            DataCentre::Ca => "https://accounts.zohocloud.ca",
            DataCentre::Sa => "https://accounts.zoho.sa",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|dc| dc.code().eq_ignore_ascii_case(s.trim()))
    }
}

/// Which warehouse to write to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseSettings {
    /// A local SQLite file.
    Sqlite { path: std::path::PathBuf },
    /// Google BigQuery (or its emulator when `emulator_host` is set).
    BigQuery { project: String, dataset: String, location: String, emulator_host: Option<String> },
}

/// Zoho credentials. `Debug` never shows the secrets.
#[derive(Debug, Clone)]
pub struct ZohoCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

/// Where and how to reach Zoho.
#[derive(Debug, Clone)]
pub struct ZohoSettings {
    pub dc: DataCentre,
    /// `{accounts_url}/oauth/v2/token` mints tokens.
    pub accounts_url: Url,
    /// Overrides the `api_domain` of the token response when set.
    pub api_domain: Option<Url>,
    /// Overrides won-stage discovery when set.
    pub won_stages: Option<Vec<String>>,
    /// Concurrent CRM calls at most (Zoho allows 10 concurrent COQL calls per org).
    pub concurrency: usize,
    /// How long one call may keep retrying 429s, 5xx and dropped connections before the run gives up.
    pub retry_budget: Duration,
    /// `ZOHO_TOKEN_CACHE`: a file (0600) sharing the access token between runs; `None` (the default) mints
    /// one per run.
    pub token_cache: Option<std::path::PathBuf>,
}

/// Everything a sync needs from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    pub zoho: ZohoSettings,
    /// `None` when the credentials are not set (allowed for commands that do not call Zoho).
    pub credentials: Option<ZohoCredentials>,
    pub warehouse: WarehouseSettings,
    /// First-run window length.
    pub lookback: Duration,
    /// How far before the watermark the next window starts.
    pub overlap: Duration,
    /// Stop before spending more Zoho API credits than this in one run.
    pub max_credits: Option<u64>,
    /// How long a run's lease lives without a heartbeat.
    pub lease_ttl: Duration,
}

/// The raw environment. Deliberately not `Debug`: it holds secrets as plain strings for a moment.
#[derive(Deserialize)]
struct RawEnv {
    zoho_client_id: Option<String>,
    zoho_client_secret: Option<String>,
    zoho_refresh_token: Option<String>,
    zoho_dc: Option<String>,
    zoho_accounts_url: Option<String>,
    zoho_api_domain: Option<String>,
    zoho_won_stages: Option<String>,
    zoho_concurrency: Option<String>,
    zoho_retry_budget: Option<String>,
    zoho_token_cache: Option<String>,
    warehouse: Option<String>,
    sqlite_path: Option<String>,
    bq_project: Option<String>,
    bq_dataset: Option<String>,
    bq_location: Option<String>,
    bigquery_emulator_host: Option<String>,
    sync_lookback: Option<String>,
    sync_overlap: Option<String>,
    sync_max_credits: Option<String>,
    sync_lease_ttl: Option<String>,
}

/// Whether the Zoho credentials must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedCredentials {
    Yes,
    No,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env(need: NeedCredentials) -> Result<Settings, ConfigError> {
        Self::from_vars(std::env::vars(), need)
    }

    /// Reads the given variables (tests pass their own).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        need: NeedCredentials,
    ) -> Result<Settings, ConfigError> {
        // Empty values count as unset: `FOO=` in an env file is a common way of leaving something out.
        let vars = vars.into_iter().filter(|(_, v)| !v.trim().is_empty());
        let raw: RawEnv = envy::from_iter(vars).map_err(|e| ConfigError::Invalid {
            var: "environment",
            value: String::new(),
            reason: e.to_string(),
        })?;
        raw.validate(need)
    }
}

impl RawEnv {
    fn validate(self, need: NeedCredentials) -> Result<Settings, ConfigError> {
        let credentials = match (self.zoho_client_id, self.zoho_client_secret, self.zoho_refresh_token) {
            (Some(id), Some(secret), Some(token)) => Some(ZohoCredentials {
                client_id: id.trim().to_owned(),
                client_secret: SecretString::from(secret.trim().to_owned()),
                refresh_token: SecretString::from(token.trim().to_owned()),
            }),
            (id, secret, token) => {
                if need == NeedCredentials::Yes {
                    let missing: Vec<&'static str> = [
                        ("ZOHO_CLIENT_ID", id.is_none()),
                        ("ZOHO_CLIENT_SECRET", secret.is_none()),
                        ("ZOHO_REFRESH_TOKEN", token.is_none()),
                    ]
                    .into_iter()
                    .filter_map(|(name, missing)| missing.then_some(name))
                    .collect();
                    return Err(ConfigError::Missing(missing));
                }
                None
            }
        };

        let dc = match self.zoho_dc.as_deref() {
            None => DataCentre::Us,
            Some(s) => DataCentre::parse(s).ok_or_else(|| ConfigError::Invalid {
                var: "ZOHO_DC",
                value: s.to_owned(),
                reason: "use one of us, eu, in, au, jp, cn, ca, sa (the data centre your Zoho org lives in)".into(),
            })?,
        };
        let accounts_url = match self.zoho_accounts_url.as_deref() {
            None => Url::parse(dc.accounts_url()).map_err(|e| ConfigError::Invalid {
                var: "ZOHO_DC",
                value: dc.code().into(),
                reason: e.to_string(),
            })?,
            Some(s) => parse_url("ZOHO_ACCOUNTS_URL", s)?,
        };
        let api_domain = self.zoho_api_domain.as_deref().map(|s| parse_url("ZOHO_API_DOMAIN", s)).transpose()?;
        let won_stages = self
            .zoho_won_stages
            .map(|s| s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect::<Vec<_>>());
        if won_stages.as_ref().is_some_and(|w| w.is_empty()) {
            return Err(ConfigError::Invalid {
                var: "ZOHO_WON_STAGES",
                value: String::new(),
                reason: "give a comma-separated list of stage names, or unset it to discover them".into(),
            });
        }
        let concurrency = match self.zoho_concurrency.as_deref() {
            None => 4,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n @ 1..=10) => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        var: "ZOHO_CONCURRENCY",
                        value: s.to_owned(),
                        reason: "use a whole number from 1 to 10 (Zoho allows 10 concurrent COQL calls per org)".into(),
                    })
                }
            },
        };

        let warehouse_kind = match self.warehouse.as_deref().map(str::trim) {
            None if self.bq_project.is_some() => "bigquery",
            None => "sqlite",
            Some(w) if w.eq_ignore_ascii_case("bigquery") => "bigquery",
            Some(w) if w.eq_ignore_ascii_case("sqlite") => "sqlite",
            Some(w) => {
                return Err(ConfigError::Invalid {
                    var: "WAREHOUSE",
                    value: w.to_owned(),
                    reason: "use `bigquery` or `sqlite`".into(),
                })
            }
        };
        let warehouse = if warehouse_kind == "bigquery" {
            let project = self.bq_project.ok_or(ConfigError::Missing(vec!["BQ_PROJECT"]))?;
            let dataset = self.bq_dataset.unwrap_or_else(|| "zoho_crm".into());
            if !is_bq_identifier(&dataset) {
                return Err(ConfigError::Invalid {
                    var: "BQ_DATASET",
                    value: dataset,
                    reason: "a dataset name has only letters, digits and underscores (at most 1024)".into(),
                });
            }
            WarehouseSettings::BigQuery {
                project: project.trim().to_owned(),
                dataset,
                location: self.bq_location.unwrap_or_else(|| "US".into()),
                emulator_host: self.bigquery_emulator_host,
            }
        } else {
            WarehouseSettings::Sqlite { path: self.sqlite_path.unwrap_or_else(|| "zoho_deals.sqlite3".into()).into() }
        };

        let retry_budget = duration_var("ZOHO_RETRY_BUDGET", self.zoho_retry_budget.as_deref(), "5m")?;
        let lookback = duration_var("SYNC_LOOKBACK", self.sync_lookback.as_deref(), "24h")?;
        let overlap = duration_var("SYNC_OVERLAP", self.sync_overlap.as_deref(), "15m")?;
        let lease_ttl = duration_var("SYNC_LEASE_TTL", self.sync_lease_ttl.as_deref(), "10m")?;
        if lease_ttl < Duration::from_secs(2) {
            return Err(ConfigError::Invalid {
                var: "SYNC_LEASE_TTL",
                value: self.sync_lease_ttl.unwrap_or_default(),
                reason: "use at least 2s".into(),
            });
        }
        let max_credits = self
            .sync_max_credits
            .as_deref()
            .map(|s| {
                s.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                    var: "SYNC_MAX_CREDITS",
                    value: s.to_owned(),
                    reason: "use a whole number of Zoho API credits".into(),
                })
            })
            .transpose()?;

        Ok(Settings {
            zoho: ZohoSettings {
                dc,
                accounts_url,
                api_domain,
                won_stages,
                concurrency,
                retry_budget,
                token_cache: self.zoho_token_cache.map(|p| p.trim().into()),
            },
            credentials,
            warehouse,
            lookback,
            overlap,
            max_credits,
            lease_ttl,
        })
    }
}

fn parse_url(var: &'static str, s: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(s.trim()).map_err(|e| ConfigError::Invalid {
        var,
        value: s.to_owned(),
        reason: format!("not a URL ({e}); write it like https://accounts.zoho.eu"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid { var, value: s.to_owned(), reason: "use an http(s) URL".into() });
    }
    Ok(url)
}

fn duration_var(var: &'static str, value: Option<&str>, default: &str) -> Result<Duration, ConfigError> {
    let s = value.unwrap_or(default);
    parse_duration(s).ok_or_else(|| ConfigError::Invalid {
        var,
        value: s.to_owned(),
        reason: "write a duration like 90s, 15m, 24h or 7d".into(),
    })
}

/// Parses `90s`, `15m`, `24h`, `7d` (one number, one unit).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

fn is_bq_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const CREDS: [(&str, &str); 3] = [
        ("ZOHO_CLIENT_ID", "1000.ID"),
        ("ZOHO_CLIENT_SECRET", "s3cr3t-value"),
        ("ZOHO_REFRESH_TOKEN", "1000.refresh-value"),
    ];

    #[test]
    fn every_missing_credential_is_named_in_one_message() {
        let err = Settings::from_vars(vars(&[("ZOHO_CLIENT_ID", "x")]), NeedCredentials::Yes).expect_err("must fail");
        let msg = err.to_string();
        assert!(msg.contains("ZOHO_CLIENT_SECRET") && msg.contains("ZOHO_REFRESH_TOKEN"), "{msg}");
        assert!(!msg.contains("ZOHO_CLIENT_ID,"), "{msg}");
    }

    #[test]
    fn defaults_are_us_sqlite_24h_and_15m() {
        let s = Settings::from_vars(vars(&CREDS), NeedCredentials::Yes).expect("valid");
        assert_eq!(s.zoho.dc, DataCentre::Us);
        assert_eq!(s.zoho.accounts_url.as_str(), "https://accounts.zoho.com/");
        assert_eq!(s.warehouse, WarehouseSettings::Sqlite { path: "zoho_deals.sqlite3".into() });
        assert_eq!(s.lookback, Duration::from_secs(86_400));
        assert_eq!(s.overlap, Duration::from_secs(900));
    }

    #[test]
    fn each_data_centre_picks_its_accounts_server() {
        for dc in DataCentre::ALL {
            let mut v = vars(&CREDS);
            v.push(("ZOHO_DC".into(), dc.code().to_uppercase()));
            let s = Settings::from_vars(v, NeedCredentials::Yes).expect("valid");
            assert_eq!(s.zoho.accounts_url.as_str().trim_end_matches('/'), dc.accounts_url());
        }
    }

    #[test]
    fn bq_project_selects_bigquery_with_defaults() {
        let mut v = vars(&CREDS);
        v.push(("BQ_PROJECT".into(), "acme-analytics".into()));
        let s = Settings::from_vars(v, NeedCredentials::Yes).expect("valid");
        assert_eq!(
            s.warehouse,
            WarehouseSettings::BigQuery {
                project: "acme-analytics".into(),
                dataset: "zoho_crm".into(),
                location: "US".into(),
                emulator_host: None
            }
        );
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_fix() {
        let mut v = vars(&CREDS);
        v.push(("SYNC_OVERLAP".into(), "fifteen".into()));
        let msg = Settings::from_vars(v, NeedCredentials::Yes).expect_err("invalid").to_string();
        assert!(msg.contains("SYNC_OVERLAP") && msg.contains("15m"), "{msg}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Settings::from_vars(vars(&CREDS), NeedCredentials::Yes).expect("valid");
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("s3cr3t-value") && !dbg.contains("refresh-value"), "{dbg}");
        let creds = s.credentials.expect("set");
        assert_eq!(creds.client_secret.expose_secret(), "s3cr3t-value");
    }

    #[test]
    fn durations_parse_in_four_units() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5w"), None);
    }
}
