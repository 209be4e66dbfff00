//! What a sandbox is started with: data-set size and seed, the user's timezone, and the fault knobs.
//!
//! The fault knobs ([`Faults`]) can also be changed while the sandbox runs, through
//! `POST /__sandbox/control` with a JSON object using the same field names.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            deals: 5000,
            seed: 1,
            tz_offset_minutes: 330,
            initially_deleted: None,
            faults: Faults::default(),
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
    /// Extra latency added to every CRM call, in milliseconds (while it counts as in flight).
    pub latency_ms: u64,
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
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_429: 0.0,
            rate_500: 0.0,
            rate_drop: 0.0,
            latency_ms: 0,
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

    /// Checks the rates are fractions.
    pub fn validate(&self) -> Result<(), String> {
        for (name, r) in [("rate_429", self.rate_429), ("rate_500", self.rate_500), ("rate_drop", self.rate_drop)] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be within 0..=1, got {r}"));
            }
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
}
