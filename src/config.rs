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
    "ZOHO_GRANT_TOKEN",
    "ZOHO_WON_STAGES",
    "ZOHO_CONCURRENCY",
    "ZOHO_RETRY_BUDGET",
    "ZOHO_TOKEN_CACHE",
    "WAREHOUSE",
    "SQLITE_PATH",
    "BQ_PROJECT",
    "BQ_DATASET",
    "BQ_LOCATION",
    "BQ_MAX_BYTES_BILLED",
    "BIGQUERY_EMULATOR_HOST",
    "BIGQUERY_EMULATOR_ALLOW_REMOTE",
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
    Uk,
}

impl DataCentre {
    /// All data centres, in the order README lists them.
    pub const ALL: [DataCentre; 9] = [
        DataCentre::Us,
        DataCentre::Eu,
        DataCentre::In,
        DataCentre::Au,
        DataCentre::Jp,
        DataCentre::Cn,
        DataCentre::Ca,
        DataCentre::Sa,
        DataCentre::Uk,
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
            DataCentre::Uk => "uk",
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
            // UNCONFIRMED: Zoho Accounts lists a UK data centre (accounts.zoho.uk, API www.zohoapis.uk), but
            // Zoho's SDK has no UK entry yet and the accounts page's URL is cut off (docs/zoho-api.md §1.1). If the
            // host is wrong, minting fails with a clear "could not connect"; ZOHO_ACCOUNTS_URL overrides it.
            DataCentre::Uk => "https://accounts.zoho.uk",
        }
    }

    /// The CRM API host of this data centre, used when a token response names no `api_domain`
    /// (docs/zoho-api.md §1.1).
    pub fn api_domain(self) -> &'static str {
        match self {
            DataCentre::Us => "https://www.zohoapis.com",
            DataCentre::Eu => "https://www.zohoapis.eu",
            DataCentre::In => "https://www.zohoapis.in",
            DataCentre::Au => "https://www.zohoapis.com.au",
            DataCentre::Jp => "https://www.zohoapis.jp",
            DataCentre::Cn => "https://www.zohoapis.com.cn",
            DataCentre::Ca => "https://www.zohoapis.ca",
            DataCentre::Sa => "https://www.zohoapis.sa",
            // UNCONFIRMED like its accounts server above; ZOHO_API_DOMAIN overrides it.
            DataCentre::Uk => "https://www.zohoapis.uk",
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
    BigQuery {
        project: String,
        dataset: String,
        location: String,
        emulator_host: Option<String>,
        /// `maximumBytesBilled` on every query (`BQ_MAX_BYTES_BILLED`); `None` when set to `off`.
        max_bytes_billed: Option<u64>,
    },
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
    bq_max_bytes_billed: Option<String>,
    bigquery_emulator_host: Option<String>,
    bigquery_emulator_allow_remote: Option<String>,
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
                reason: "use one of us, eu, in, au, jp, cn, ca, sa, uk (the data centre your Zoho org lives in)".into(),
            })?,
        };
        let accounts_url = match self.zoho_accounts_url.as_deref() {
            None => Url::parse(dc.accounts_url()).map_err(|e| ConfigError::Invalid {
                var: "ZOHO_DC",
                value: dc.code().into(),
                reason: e.to_string(),
            })?,
            Some(s) => parse_secure_url("ZOHO_ACCOUNTS_URL", s)?,
        };
        let api_domain = self.zoho_api_domain.as_deref().map(|s| parse_secure_url("ZOHO_API_DOMAIN", s)).transpose()?;
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
            let project = project.trim().to_owned();
            if !is_bq_project(&project) {
                return Err(ConfigError::Invalid {
                    var: "BQ_PROJECT",
                    value: project,
                    reason: "use the project id, not its name or number (lowercase letters, digits and hyphens, as \
                             `gcloud projects list` shows it)"
                        .into(),
                });
            }
            let location = self.bq_location.map(|l| l.trim().to_owned()).unwrap_or_else(|| "US".into());
            if location.is_empty() || !location.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ConfigError::Invalid {
                    var: "BQ_LOCATION",
                    value: location,
                    reason: "a BigQuery location such as US, EU or europe-west1 (the dataset's location)".into(),
                });
            }
            let dataset = self.bq_dataset.unwrap_or_else(|| "zoho_crm".into());
            if !crate::warehouse::bigquery::is_identifier(&dataset) {
                return Err(ConfigError::Invalid {
                    var: "BQ_DATASET",
                    value: dataset,
                    reason: "a dataset name has only letters, digits and underscores (at most 1024)".into(),
                });
            }
            let allow_remote = match self.bigquery_emulator_allow_remote.as_deref().map(str::trim) {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "BIGQUERY_EMULATOR_ALLOW_REMOTE",
                        value: other.to_owned(),
                        reason: "use 1 to allow a non-loopback emulator host, or leave it unset".into(),
                    })
                }
            };
            let emulator_host = self
                .bigquery_emulator_host
                .map(|h| check_emulator_host(h.trim(), allow_remote).map(|()| h.trim().to_owned()))
                .transpose()?;
            WarehouseSettings::BigQuery {
                project,
                dataset,
                location,
                emulator_host,
                max_bytes_billed: max_bytes_billed(self.bq_max_bytes_billed)?,
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

/// `BQ_MAX_BYTES_BILLED`: bytes one statement may bill, at least BigQuery's 10 MB minimum per statement (a
/// lower cap would fail every statement); `off` leaves it to the project's own limits.
fn max_bytes_billed(value: Option<String>) -> Result<Option<u64>, ConfigError> {
    const MIN: u64 = 10 * 1024 * 1024;
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(Some(crate::warehouse::bigquery::DEFAULT_MAX_BYTES_BILLED)),
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
        Some(v) => match v.replace('_', "").parse::<u64>() {
            Ok(n) if n >= MIN => Ok(Some(n)),
            _ => Err(ConfigError::Invalid {
                var: "BQ_MAX_BYTES_BILLED",
                value: v.to_owned(),
                reason: format!("a whole number of bytes, at least {MIN} (10 MiB), or `off`"),
            }),
        },
    }
}

/// A URL that will carry credentials: https, or any scheme on a loopback host (a local sandbox).
fn parse_secure_url(var: &'static str, s: &str) -> Result<Url, ConfigError> {
    let url = parse_url(var, s)?;
    if url.scheme() != "https" && !is_loopback(&url) {
        return Err(ConfigError::Invalid {
            var,
            value: s.to_owned(),
            reason: "credentials travel to this URL, so it must be https (plain http is allowed only on a loopback host: 127.0.0.0/8, ::1, localhost)".into(),
        });
    }
    Ok(url)
}

/// Whether the URL's host is this machine: 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => is_localhost(d),
        None => false,
    }
}

fn is_localhost(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
}

/// `BIGQUERY_EMULATOR_HOST` switches authentication off and speaks plain HTTP, so it must name this machine
/// unless `BIGQUERY_EMULATOR_ALLOW_REMOTE=1` says otherwise.
fn check_emulator_host(host: &str, allow_remote: bool) -> Result<(), ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        var: "BIGQUERY_EMULATOR_HOST",
        value: host.to_owned(),
        reason: reason.to_owned(),
    };
    let bare = host.trim_start_matches("http://").trim_end_matches('/');
    let url =
        Url::parse(&format!("http://{bare}")).map_err(|_| invalid("write it as host:port, e.g. 127.0.0.1:9050"))?;
    if !allow_remote && !is_loopback(&url) {
        return Err(invalid(
            "the emulator switch turns Google authentication off and sends data over plain HTTP, so it must be a loopback host (127.0.0.0/8, ::1, localhost); set BIGQUERY_EMULATOR_ALLOW_REMOTE=1 if you really mean a remote emulator, or unset it to use BigQuery",
        ));
    }
    Ok(())
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

/// A project id: lowercase letters, digits and hyphens; legacy domain-scoped ids add `.` and `:`
/// (`example.com:analytics`).
fn is_bq_project(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c))
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
    fn bq_max_bytes_billed_takes_bytes_or_off_and_names_itself_when_wrong() {
        let with = |v: &str| {
            let mut vars = vars(&CREDS);
            vars.push(("BQ_PROJECT".into(), "p".into()));
            vars.push(("BQ_MAX_BYTES_BILLED".into(), v.into()));
            Settings::from_vars(vars, NeedCredentials::Yes)
        };
        let cap = |s: Settings| match s.warehouse {
            WarehouseSettings::BigQuery { max_bytes_billed, .. } => max_bytes_billed,
            other => panic!("not BigQuery: {other:?}"),
        };
        assert_eq!(cap(with("1073741824").expect("valid")), Some(1 << 30));
        assert_eq!(cap(with("off").expect("valid")), None);
        for bad in ["1GB", "-1", "1000"] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(e.contains("BQ_MAX_BYTES_BILLED"), "{e}");
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
                emulator_host: None,
                max_bytes_billed: Some(crate::warehouse::bigquery::DEFAULT_MAX_BYTES_BILLED),
            }
        );
    }

    #[test]
    fn a_malformed_bigquery_setting_names_its_variable() {
        // The only check of these names: the dataset and location are spliced into SQL.
        for (var, value) in [
            ("BQ_PROJECT", "My Project"),
            ("BQ_PROJECT", "Bad Project"),
            ("BQ_LOCATION", "us central"),
            ("BQ_LOCATION", "us'"),
            ("BQ_DATASET", "a-b"),
            ("BQ_DATASET", "zoho`; DROP"),
        ] {
            let mut v = vars(&[("BQ_PROJECT", "acme-analytics")]);
            v.retain(|(k, _)| k != var);
            v.push((var.into(), value.into()));
            match Settings::from_vars(v, NeedCredentials::No) {
                Err(ConfigError::Invalid { var: named, .. }) => assert_eq!(named, var),
                other => panic!("{var}={value}: expected Invalid naming {var}, got {other:?}"),
            }
        }
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

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut v = vars(&CREDS);
        v.extend(vars(pairs));
        Settings::from_vars(v, NeedCredentials::Yes)
    }

    #[test]
    fn zoho_urls_must_be_https_except_on_loopback() {
        for var in ["ZOHO_ACCOUNTS_URL", "ZOHO_API_DOMAIN"] {
            let msg = with(&[(var, "http://accounts.zoho.eu")]).expect_err("plain http").to_string();
            assert!(msg.contains(var) && msg.contains("https"), "{msg}");
            for ok in ["https://accounts.zoho.eu", "http://127.0.0.1:8080", "http://[::1]:9", "http://localhost:1"] {
                with(&[(var, ok)]).unwrap_or_else(|e| panic!("{var}={ok}: {e}"));
            }
        }
    }

    #[test]
    fn the_emulator_host_must_be_loopback_unless_remote_is_allowed() {
        let bq = [("BQ_PROJECT", "p")];
        for ok in ["127.0.0.1:9050", "localhost:9050", "[::1]:9050", "http://127.0.0.2:1/"] {
            let s = with(&[bq[0], ("BIGQUERY_EMULATOR_HOST", ok)]).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(matches!(s.warehouse, WarehouseSettings::BigQuery { emulator_host: Some(_), .. }));
        }
        let msg = with(&[bq[0], ("BIGQUERY_EMULATOR_HOST", "bq.example.com:9050")]).expect_err("remote").to_string();
        assert!(msg.contains("BIGQUERY_EMULATOR_HOST") && msg.contains("BIGQUERY_EMULATOR_ALLOW_REMOTE=1"), "{msg}");
        with(&[bq[0], ("BIGQUERY_EMULATOR_HOST", "bq.example.com:9050"), ("BIGQUERY_EMULATOR_ALLOW_REMOTE", "1")])
            .expect("opted in");
    }

    #[test]
    fn durations_parse_in_four_units() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5w"), None);
    }
}
