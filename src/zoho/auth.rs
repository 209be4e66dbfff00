//! Access tokens: minted at the accounts server of the org's data centre, cached until a margin before expiry,
//! single-flight (one mint however many tasks ask at once), and invalidated on 401 `INVALID_TOKEN`.
//!
//! Zoho allows 10 mints per refresh token per 10 minutes, so a run mints once and reuses the token. The token
//! endpoint answers HTTP 200 with `{"error":"invalid_client"}` on bad credentials: any response without
//! `access_token` is a failure. Secrets never leave this file except as a request header or form field.
//!
//! The token response's `api_domain` decides where the access token is sent, so it is checked: https, and
//! one of Zoho's API hosts ([`is_zoho_api_host`]), unless `ZOHO_API_DOMAIN` overrides it. A loopback
//! `api_domain` is accepted only from a loopback accounts server (a local sandbox). Without an `api_domain`
//! the data centre's API host is used.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::http::{join, read_capped, refuse_redirect};
use super::Error;
use crate::config::{is_loopback, ZohoCredentials};
use crate::error_chain::Chain;
use crate::retry::{retry, RetryPolicy};

/// A token is refreshed this long before Zoho says it expires: a page request that starts with a token
/// about to expire would otherwise fail half-way.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A usable access token and the API domain it belongs to. `Debug` never shows the token.
#[derive(Clone, Debug)]
pub struct AccessToken {
    secret: SecretString,
    /// `api_domain` from the token response (or `ZOHO_API_DOMAIN`).
    pub api_domain: Url,
    expires_at: Instant,
    serial: u64,
}

impl AccessToken {
    /// The `Authorization` header value.
    pub fn header_value(&self) -> String {
        format!("Zoho-oauthtoken {}", self.secret.expose_secret())
    }
}

/// The token endpoint's answer, success and error fields together (Zoho uses HTTP 200 for both).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
    api_domain: Option<String>,
    expires_in: Option<u64>,
    /// Older responses carry seconds here and milliseconds in `expires_in`; prefer this when present.
    expires_in_sec: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Mints and caches access tokens.
pub struct TokenProvider {
    http: reqwest::Client,
    token_url: Url,
    credentials: ZohoCredentials,
    api_domain_override: Option<Url>,
    /// Used when a token response has no `api_domain`: the data centre's API host.
    api_domain_fallback: Option<Url>,
    /// Whether the accounts server is on this machine (a local sandbox): then a loopback `api_domain` is fine.
    local_accounts: bool,
    cache: Mutex<Option<AccessToken>>,
    mints: AtomicU64,
    retry: RetryPolicy,
    /// The opt-in token file shared by runs (`ZOHO_TOKEN_CACHE`), read before minting and written after.
    disk: Option<super::token_cache::TokenCache>,
}

impl TokenProvider {
    /// `accounts_url` is the accounts server, e.g. `https://accounts.zoho.eu`.
    pub fn new(
        http: reqwest::Client,
        accounts_url: &Url,
        credentials: ZohoCredentials,
        api_domain_override: Option<Url>,
        retry: RetryPolicy,
    ) -> Result<Self, Error> {
        let token_url = join(accounts_url, "oauth/v2/token")?;
        Ok(TokenProvider {
            http,
            token_url,
            credentials,
            api_domain_override,
            api_domain_fallback: None,
            local_accounts: is_loopback(accounts_url),
            cache: Mutex::new(None),
            mints: AtomicU64::new(0),
            retry,
            disk: None,
        })
    }

    /// The API host used when a token response names none (the data centre's, e.g. `https://www.zohoapis.eu`).
    pub fn with_api_domain_fallback(mut self, fallback: Url) -> Self {
        self.api_domain_fallback = Some(fallback);
        self
    }

    /// Shares tokens between runs through `cache` (see `token_cache.rs` for the trade-off).
    pub fn with_disk_cache(mut self, cache: super::token_cache::TokenCache) -> Self {
        self.disk = Some(cache);
        self
    }

    /// How many tokens this provider minted.
    pub fn mints(&self) -> u64 {
        self.mints.load(Ordering::Relaxed)
    }

    /// A valid token: the cached one, or a new one. Concurrent callers wait for one mint.
    pub async fn get(&self) -> Result<AccessToken, Error> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = cache.as_ref() {
            if Instant::now() + REFRESH_MARGIN < token.expires_at {
                return Ok(token.clone());
            }
        }
        if let Some(token) = self.cached_on_disk() {
            *cache = Some(token.clone());
            return Ok(token);
        }
        let token = self.mint().await?;
        if let Some(disk) = &self.disk {
            let left = token.expires_at.saturating_duration_since(Instant::now());
            let expires_at = chrono::Utc::now() + chrono::Duration::from_std(left).unwrap_or_default();
            disk.store(&token.secret, &token.api_domain, expires_at);
        }
        *cache = Some(token.clone());
        Ok(token)
    }

    /// A token from the token file, valid beyond the refresh margin, as an [`AccessToken`] (serial 0: never
    /// a minted one's, so `invalidate` tells them apart).
    fn cached_on_disk(&self) -> Option<AccessToken> {
        let cached = self.disk.as_ref()?.load(chrono::Utc::now(), REFRESH_MARGIN)?;
        let left = (cached.expires_at - chrono::Utc::now()).to_std().ok()?;
        Some(AccessToken {
            secret: cached.access_token,
            api_domain: self.api_domain_override.clone().unwrap_or(cached.api_domain),
            expires_at: Instant::now() + left,
            serial: 0,
        })
    }

    /// Forgets `used` if it is still the cached token (a 401 told us it is dead). A token minted meanwhile by
    /// another task is kept.
    pub async fn invalidate(&self, used: &AccessToken) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|t| t.serial == used.serial) {
            *cache = None;
            if let Some(disk) = &self.disk {
                disk.clear();
            }
        }
    }

    async fn mint(&self) -> Result<AccessToken, Error> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.client_secret.expose_secret()),
            ("refresh_token", self.credentials.refresh_token.expose_secret()),
        ];
        let body = self.post_token_form(&form).await?;
        let serial = self.mints.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(access) = body.access_token else {
            return Err(classify_token_error(&body, "ZOHO_REFRESH_TOKEN"));
        };
        let api_domain = match (&self.api_domain_override, body.api_domain.as_deref()) {
            (Some(url), _) => url.clone(),
            (None, Some(d)) => self.checked_api_domain(d)?,
            (None, None) => match &self.api_domain_fallback {
                Some(url) => url.clone(),
                None => {
                    return Err(Error::malformed("token", "the token response has no api_domain; set ZOHO_API_DOMAIN"))
                }
            },
        };
        let secs = body.expires_in_sec.or(body.expires_in).unwrap_or(3600);
        tracing::debug!(expires_in_secs = secs, api_domain = %api_domain, "minted a Zoho access token");
        Ok(AccessToken {
            secret: SecretString::from(access),
            api_domain,
            expires_at: Instant::now() + Duration::from_secs(secs),
            serial,
        })
    }

    /// The token response's `api_domain`, if it may receive our access token: https and one of Zoho's API
    /// hosts, or any loopback host when the accounts server itself is on loopback (a local sandbox).
    fn checked_api_domain(&self, d: &str) -> Result<Url, Error> {
        let url = Url::parse(d).map_err(|e| {
            Error::malformed_from("token", format!("api_domain {d:?} is not a URL (set ZOHO_API_DOMAIN)"), e)
        })?;
        if self.local_accounts && is_loopback(&url) {
            return Ok(url);
        }
        let untrusted = |why: &str| Error::Untrusted {
            endpoint: "token".into(),
            detail: format!("the token response names api_domain {d:?}, {why}; {UNTRUSTED_ADVICE}"),
        };
        if url.scheme() != "https" {
            return Err(untrusted("which is not https"));
        }
        if !url.host_str().is_some_and(is_zoho_api_host) {
            return Err(untrusted("which is not one of Zoho's API hosts (www., sandbox. or developer. zohoapis.com/.eu/.in/.com.au/.jp/.com.cn/.ca/.sa/.uk)"));
        }
        Ok(url)
    }

    /// Exchanges a grant token (Self Client, or the code of an authorization redirect) for a refresh token.
    /// `redirect_uri` is the one the authorization request named (Connected App); a Self Client sends none.
    pub async fn exchange_grant(
        &self,
        grant: &SecretString,
        redirect_uri: Option<&str>,
    ) -> Result<SecretString, Error> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.client_secret.expose_secret()),
            ("code", grant.expose_secret()),
        ];
        if let Some(uri) = redirect_uri {
            form.push(("redirect_uri", uri));
        }
        let body = self.post_token_form(&form).await?;
        match body.refresh_token {
            Some(t) => Ok(SecretString::from(t)),
            None => Err(classify_token_error(&body, "the grant token")),
        }
    }

    /// POSTs the form (a body, never the query string: the URL may end up in logs) with retries on transient
    /// failures. Throttling is not retried here: hammering a throttled endpoint extends the throttle.
    async fn post_token_form(&self, form: &[(&str, &str)]) -> Result<TokenResponse, Error> {
        retry(
            self.retry,
            || async {
                let resp = self
                    .http
                    .post(self.token_url.clone())
                    .form(form)
                    .send()
                    .await
                    .map_err(|e| Error::no_answer("token", e))?;
                let status = resp.status();
                refuse_redirect("token", &resp)?;
                let text = read_capped("token", resp).await?;
                if status.is_server_error() || status.as_u16() == 429 && !is_throttle_body(&text) {
                    return Err(Error::transient("token", format!("HTTP {status}")));
                }
                match serde_json::from_str::<TokenResponse>(&text) {
                    Ok(body) => Ok(body),
                    // Never echo the body: on success it holds a token.
                    Err(_) => Err(Error::malformed(
                        "token",
                        format!("HTTP {status} with a body that is not Zoho's token JSON"),
                    )),
                }
            },
            |e, wait| tracing::warn!(error = %Chain(e), wait_ms = wait.as_millis() as u64, "retrying the token request"),
        )
        .await
    }
}

impl TokenProvider {
    /// Revokes a refresh token (and every access token minted from it): `POST {accounts}/oauth/v2/token/revoke`
    /// with the token in a form body (Zoho's docs show a query parameter, Zoho's SDK a form body; the body
    /// keeps it out of URLs that may be logged). Not retried: a revoke that may have happened is not repeated
    /// blindly, and the caller can run it again.
    pub async fn revoke(&self, refresh_token: &SecretString) -> Result<(), Error> {
        let url = join(&self.token_url, "revoke")?;
        let resp = self
            .http
            .post(url)
            .form(&[("token", refresh_token.expose_secret())])
            .send()
            .await
            .map_err(|e| Error::no_answer("revoke", e))?;
        let status = resp.status();
        refuse_redirect("revoke", &resp)?;
        let text = read_capped("revoke", resp).await?;
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if status.is_success() && body["status"] == "success" {
            return Ok(());
        }
        if status.is_server_error() {
            return Err(Error::transient("revoke", format!("HTTP {status}")));
        }
        Err(Error::InvalidCredentials(format!(
            "the accounts server refused to revoke the token (HTTP {}): it is not a valid refresh token of this data centre, or it was already revoked",
            status.as_u16()
        )))
    }
}

const UNTRUSTED_ADVICE: &str =
    "the access token is not sent there. If your org really uses that host, set ZOHO_API_DOMAIN to it explicitly";

/// Zoho's API hosts: `zohoapis.<dc>` with no prefix or a `www.`, `sandbox.` or `developer.` prefix, for each
/// data centre's domain (docs/zoho-api.md §1.1; the UK domain is UNCONFIRMED and allowed, as a host Zoho owns).
pub fn is_zoho_api_host(host: &str) -> bool {
    const DOMAINS: [&str; 9] = ["com", "eu", "in", "com.au", "jp", "com.cn", "ca", "sa", "uk"];
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let rest = ["www.", "sandbox.", "developer."].iter().find_map(|p| host.strip_prefix(p)).unwrap_or(&host);
    rest.strip_prefix("zohoapis.").is_some_and(|tld| DOMAINS.contains(&tld))
}

fn is_throttle_body(text: &str) -> bool {
    text.contains("Access Denied") || text.contains("too many requests")
}

fn classify_token_error(body: &TokenResponse, what: &str) -> Error {
    let error = body.error.as_deref().unwrap_or("no access_token in the response");
    let description = body.error_description.as_deref().unwrap_or("");
    if error.eq_ignore_ascii_case("Access Denied") || is_throttle_body(description) {
        return Error::TokenThrottled(description.to_owned());
    }
    let advice = match error {
        "invalid_client" => "ZOHO_CLIENT_ID or ZOHO_CLIENT_SECRET is wrong, or the client belongs to another data centre than ZOHO_DC".to_owned(),
        "invalid_code" => format!("{what} is invalid, revoked or already used, or belongs to another client or data centre; make a new grant token in the Zoho API console (Self Client) and run `zoho-deals-sync exchange-grant`"),
        other => format!("the accounts server answered {other:?}; check ZOHO_CLIENT_ID, ZOHO_CLIENT_SECRET, ZOHO_REFRESH_TOKEN and ZOHO_DC"),
    };
    Error::InvalidCredentials(format!("{error}: {advice}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every token-endpoint error body of docs/zoho-api.md §1.5 (all of them may come with HTTP 200), and what
    /// each becomes: the kind decides the exit code (3 credentials, 4 throttled).
    #[test]
    fn token_endpoint_errors_are_classified_by_body() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"error":"invalid_client"}"#, "credentials", "ZOHO_CLIENT_ID or ZOHO_CLIENT_SECRET"),
            (r#"{"error":"invalid_code"}"#, "credentials", "make a new grant token"),
            (
                r#"{"error_description":"You have made too many requests continuously. Please try again after some time.","error":"Access Denied","status":"failure"}"#,
                "throttled",
                "too many requests",
            ),
            (
                r#"{"error_description":"Token creation throttle limit reached. Please reuse the valid tokens you currently have.","error":"Access Denied"}"#,
                "throttled",
                "throttle limit",
            ),
            (r#"{"error":"invalid_request"}"#, "credentials", "\"invalid_request\""),
            (r#"{"token_type":"Bearer"}"#, "credentials", "no access_token in the response"),
        ];
        for (body, kind, says) in cases {
            let parsed: TokenResponse = serde_json::from_str(body).expect("a token response");
            let e = classify_token_error(&parsed, "the refresh token");
            let got = match &e {
                Error::InvalidCredentials(_) => "credentials",
                Error::TokenThrottled(_) => "throttled",
                _ => "other",
            };
            assert_eq!(got, *kind, "{body} → {e}");
            assert!(e.to_string().contains(says), "{body}: the message says {says:?}: {e}");
        }
    }

    #[test]
    fn only_zoho_api_hosts_may_receive_the_access_token() {
        for host in
            ["www.zohoapis.com", "zohoapis.eu", "sandbox.zohoapis.com.au", "developer.zohoapis.in", "WWW.ZOHOAPIS.JP"]
        {
            assert!(is_zoho_api_host(host), "{host}");
        }
        for host in ["zohoapis.com.attacker.example", "evil-zohoapis.com", "www.zohoapis.org", "attacker.example"] {
            assert!(!is_zoho_api_host(host), "{host}");
        }
    }
}
