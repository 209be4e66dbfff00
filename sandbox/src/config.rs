//! What a sandbox is started with: data-set size and seed, the user's timezone, and the fault knobs.
//!
//! The fault knobs ([`Faults`]) can also be changed while the sandbox runs, through
//! `POST /__sandbox/control` with a JSON object using the same field names.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::org::Profile;

/// Everything a [`crate::Sandbox`] is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// How many live deals to generate.
    pub deals: usize,
    /// Seed of the data generator (and of fault dice): the same seed gives the same deals.
    pub seed: u64,
    /// The API user's timezone in minutes east of UTC (330 = `+05:30`); every datetime is rendered in it.
    pub tz_offset_minutes: i32,
    /// How many deals start out already deleted (in the recycle bin / purged); `None` = 1% of `deals`.
    pub initially_deleted: Option<usize>,
    /// Fault and limit knobs.
    pub faults: Faults,
    /// The org's shape (`default`, `free`, `pipelines`, `exotic`): see [`crate::org`].
    pub profile: Profile,
    /// How the deals' `Created_Time` / `Modified_Time` are spread over the past: see [`History`].
    pub history: History,
}

/// How the generated deals are spread over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum History {
    /// Created evenly over the last 120 days; 38% modified in the last day, the rest any time after creation;
    /// mass updates sharing one second (the default: what the job's tests are written against).
    #[default]
    Uniform,
    /// Like a real org's: five years of history growing toward now (most deals in the last months), a data
    /// migration that created a fifth of the deals in one afternoon three years ago, and about 1% modified in
    /// the last day. Equal-length time slices of such an org hold very unequal numbers of deals.
    Skewed,
}

impl History {
    /// `uniform` or `skewed`.
    pub fn parse(s: &str) -> Option<History> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" => Some(History::Uniform),
            "skewed" => Some(History::Skewed),
            _ => None,
        }
    }
}

impl SandboxConfig {
    /// The knobs in force at start: `faults`, except that a profile whose edition has its own limits (Free:
    /// 5,000 credits a day, 5 concurrent calls) applies them where `faults` still has the generic default.
    /// An explicitly different value wins; one equal to the generic default reads as "not set".
    pub fn effective_faults(&self) -> Faults {
        let mut f = self.faults.clone();
        let generic = Faults::default();
        if let Some((credits, concurrency)) = self.profile.edition_limits() {
            if f.credits_per_day == generic.credits_per_day {
                f.credits_per_day = credits;
            }
            if f.max_concurrency == generic.max_concurrency {
                f.max_concurrency = concurrency;
            }
        }
        f
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            deals: 5000,
            seed: 1,
            tz_offset_minutes: 330,
            initially_deleted: None,
            faults: Faults::default(),
            profile: Profile::Default,
            history: History::Uniform,
        }
    }
}

/// Fault injection and Zoho's limits. Field names double as the keys of `POST /__sandbox/control`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction (0..=1) of CRM calls answered 429 `TOO_MANY_REQUESTS`, without `Retry-After` (as Zoho does).
    pub rate_429: f64,
    /// Fraction of CRM calls answered 500 `INTERNAL_ERROR`.
    pub rate_500: f64,
    /// Fraction of CRM calls whose connection is closed without any response bytes.
    pub rate_drop: f64,
    /// Base latency added to every CRM call, in milliseconds (while it counts as in flight; see
    /// [`crate::latency`]). `/__sandbox/` calls are never delayed.
    pub latency_ms: u64,
    /// Latency added per record a CRM response carries, in milliseconds (a 2,000-row page is slower than a
    /// 200-row one): e.g. 0.1 adds 200 ms to a full COQL page.
    pub latency_per_record_ms: f64,
    /// Each CRM call's base latency varies uniformly within ± this many milliseconds (never below zero), drawn
    /// from dice seeded by the sandbox's seed.
    pub latency_jitter_ms: u64,
    /// Latency of the accounts server (`/oauth/v2/*`), in milliseconds.
    pub accounts_latency_ms: u64,
    /// Concurrent CRM calls allowed; the next one gets 429 (Zoho: 5/10/15/20/25 by edition).
    pub max_concurrency: usize,
    /// Concurrent COQL calls allowed ("sub-concurrency" of complex APIs: 10 in every edition).
    pub coql_concurrency: usize,
    /// Lifetime of a minted access token, in seconds (`expires_in`).
    pub token_ttl_secs: u64,
    /// Access-token mints allowed per refresh token per `mint_window_secs`; more gets the "Access Denied" 400.
    pub mint_limit: usize,
    /// Length of the rolling mint-throttle window, in seconds (Zoho: 10 minutes).
    pub mint_window_secs: u64,
    /// Active access tokens per refresh token; minting one more invalidates the oldest (Zoho: 15).
    pub max_active_tokens: usize,
    /// A scope every token lacks (e.g. `ZohoCRM.coql.READ`): routes needing it answer 401 `OAUTH_SCOPE_MISMATCH`.
    pub missing_scope: Option<String>,
    /// Daily API-credit allowance; `X-API-CREDITS-REMAINING` is sent once half of it is used.
    pub credits_per_day: u64,
    /// The user presses "Deny" on the consent screen: `GET /oauth/v2/auth` redirects with `error=access_denied`.
    pub oauth_deny: bool,
    /// COQL refuses `COUNT(id)` with `INVALID_QUERY` (whether Zoho accepts it is UNCONFIRMED, docs/zoho-api.md §3c).
    pub refuse_count_id: bool,
    /// The API user's profile may not read deleted records: `GET /Deals/deleted` answers 403 `NO_PERMISSION`.
    pub deleted_forbidden: bool,
    /// The code of the 401 for a missing, garbage, expired or revoked access token: `INVALID_TOKEN` (what
    /// Zoho's docs show) or `AUTHENTICATION_FAILURE` (seen in the wild, docs/zoho-api.md §2, §3f).
    pub token_error_code: String,
    /// `GET /Deals/deleted` lists recycle-bin deletions of the last 60 days and permanent ones of the last 120
    /// (sandbox clock), as Zoho does (docs/zoho-api.md §3e); off, it lists every deletion.
    pub deleted_retention: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_429: 0.0,
            rate_500: 0.0,
            rate_drop: 0.0,
            latency_ms: 0,
            latency_per_record_ms: 0.0,
            latency_jitter_ms: 0,
            accounts_latency_ms: 0,
            max_concurrency: 25,
            coql_concurrency: 10,
            token_ttl_secs: 3600,
            mint_limit: 10,
            mint_window_secs: 600,
            max_active_tokens: 15,
            missing_scope: None,
            credits_per_day: 100_000,
            oauth_deny: false,
            refuse_count_id: false,
            deleted_forbidden: false,
            token_error_code: "INVALID_TOKEN".to_string(),
            deleted_retention: false,
        }
    }
}

impl Faults {
    /// Applies a partial update (`{"rate_429":0.5}`); unknown keys or wrong types are an error and change nothing.
    pub fn patched(&self, patch: &Value) -> Result<Faults, String> {
        let Value::Object(patch) = patch else {
            return Err("control body must be a JSON object".to_string());
        };
        let mut merged = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let Value::Object(m) = &mut merged {
            for (k, v) in patch {
                if !m.contains_key(k) {
                    return Err(format!("unknown fault knob `{k}`"));
                }
                m.insert(k.clone(), v.clone());
            }
        }
        let faults: Faults = serde_json::from_value(merged).map_err(|e| e.to_string())?;
        faults.validate()?;
        Ok(faults)
    }

    /// Checks the rates are fractions, the per-record latency is a finite non-negative number of milliseconds
    /// and the token error code is one Zoho uses.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.token_error_code.as_str(), "INVALID_TOKEN" | "AUTHENTICATION_FAILURE") {
            return Err(format!(
                "token_error_code must be INVALID_TOKEN or AUTHENTICATION_FAILURE, got {}",
                self.token_error_code
            ));
        }
        for (name, r) in [("rate_429", self.rate_429), ("rate_500", self.rate_500), ("rate_drop", self.rate_drop)] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be within 0..=1, got {r}"));
            }
        }
        if !(self.latency_per_record_ms.is_finite() && (0.0..=1000.0).contains(&self.latency_per_record_ms)) {
            return Err(format!(
                "latency_per_record_ms must be within 0..=1000 (milliseconds per record), got {}",
                self.latency_per_record_ms
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_changes_only_named_knobs_and_rejects_unknown_ones() {
        let f = Faults::default();
        let p = f.patched(&json!({"rate_429": 0.5, "missing_scope": "ZohoCRM.coql.READ"})).expect("valid patch");
        assert_eq!(p.rate_429, 0.5);
        assert_eq!(p.missing_scope.as_deref(), Some("ZohoCRM.coql.READ"));
        assert_eq!(p.max_concurrency, 25);
        let cleared = p.patched(&json!({"missing_scope": null})).expect("valid");
        assert_eq!(cleared.missing_scope, None);
        assert!(f.patched(&json!({"rate_42": 1})).is_err());
        assert!(f.patched(&json!({"rate_429": 2.0})).is_err());
        assert!(f.patched(&json!({"latency_ms": "slow"})).is_err());
    }

    #[test]
    fn the_latency_model_is_set_through_the_control_patch_and_latency_ms_keeps_its_meaning() {
        let f = Faults::default();
        let p = f.patched(&json!({"latency_ms": 300})).expect("the old knob alone still works");
        assert_eq!((p.latency_ms, p.latency_per_record_ms, p.latency_jitter_ms), (300, 0.0, 0));
        let p = p
            .patched(&json!({"latency_per_record_ms": 0.1, "latency_jitter_ms": 30, "accounts_latency_ms": 80}))
            .expect("valid");
        assert_eq!(
            (p.latency_ms, p.latency_per_record_ms, p.latency_jitter_ms, p.accounts_latency_ms),
            (300, 0.1, 30, 80)
        );
        let err = p.patched(&json!({"latency_per_record_ms": -1.0})).expect_err("negative");
        assert!(err.contains("latency_per_record_ms"), "{err}");
        assert!(p.patched(&json!({"latency_jitter_ms": -5})).is_err());
    }

    #[test]
    fn history_names_parse_and_anything_else_is_refused() {
        assert_eq!(History::parse("skewed"), Some(History::Skewed));
        assert_eq!(History::parse(" Uniform "), Some(History::Uniform));
        assert_eq!(History::parse("recent"), None);
        assert_eq!(SandboxConfig::default().history, History::Uniform);
    }
}
