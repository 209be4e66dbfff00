//! The CRM HTTP client: auth header, bounded concurrency, retries, credit accounting, and the one place where
//! Zoho's responses are classified into [`Error`] kinds.
//!
//! Network rules (README, Security): no redirect is followed (a 3xx is an error naming the host, so a secret
//! is never re-sent to a host we did not choose), and no body is read past [`MAX_RESPONSE_BYTES`].
//!
//! Zoho quirks handled here: 204 (and 304) mean "nothing", with an empty body; errors come in an envelope
//! `{"code","details","message","status":"error"}`; 429 carries no `Retry-After`; 401 `INVALID_TOKEN` means
//! "mint a new token and try once more".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::auth::{join, AccessToken, TokenProvider};
use super::Error;
use crate::retry::{retry, RetryPolicy};

/// A TCP connect that takes longer than this is a network problem, not a slow server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A COQL page of 2000 deals takes Zoho a few seconds; a minute means something is stuck.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// No Zoho response body is read past this. A 2,000-row COQL page with every custom field filled in is a
/// few MiB; 64 MiB leaves room for orgs with very large records while keeping a hostile or broken answer
/// (an endless body) from taking the job's memory (the Kubernetes recipe allows 128 MiB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Builds the HTTP client every Zoho call uses. It follows no redirect: reqwest would re-send the form body
/// (client secret, refresh token) or the `Authorization` header to whatever host a 307/308 names.
pub fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("zoho-deals-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Malformed { endpoint: "client".into(), detail: e.to_string() })
}

/// Calls and credits spent, as Zoho counts them.
#[derive(Debug, Default)]
pub struct Usage {
    calls: AtomicU64,
    credits: AtomicU64,
}

impl Usage {
    /// Requests sent to the CRM (retries included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
    /// API credits spent.
    pub fn credits(&self) -> u64 {
        self.credits.load(Ordering::Relaxed)
    }
}

/// Credits a COQL call with this LIMIT costs: 1–200 → 1, 201–1000 → 2, 1001–2000 → 3.
pub fn coql_credits(limit: u32) -> u64 {
    match limit {
        0..=200 => 1,
        201..=1000 => 2,
        _ => 3,
    }
}

/// A Zoho CRM client. Cheap to share behind an `Arc`.
pub struct ZohoClient {
    /// Zoho's clock minus ours, in milliseconds, from the last response's `Date` header (`i64::MIN`: none yet).
    clock_skew_ms: std::sync::atomic::AtomicI64,
    http: reqwest::Client,
    auth: TokenProvider,
    permits: Semaphore,
    usage: Arc<Usage>,
    max_credits: Option<u64>,
    retry: RetryPolicy,
}

/// What a successful call returned: JSON, or nothing (204 No Content / 304 Not Modified).
pub type Body = Option<Value>;

impl ZohoClient {
    /// `concurrency` bounds in-flight CRM calls (Zoho: 10 concurrent COQL calls per org).
    pub fn new(
        http: reqwest::Client,
        auth: TokenProvider,
        concurrency: usize,
        max_credits: Option<u64>,
        retry: RetryPolicy,
    ) -> Self {
        ZohoClient {
            clock_skew_ms: std::sync::atomic::AtomicI64::new(i64::MIN),
            http,
            auth,
            permits: Semaphore::new(concurrency.max(1)),
            usage: Arc::new(Usage::default()),
            max_credits,
            retry,
        }
    }

    /// Zoho's "now", from the `Date` header of its last response (to the second), or `None` before the first
    /// response. A window's end is taken from Zoho's clock: `Modified_Time` is stamped by that clock, so this
    /// machine's skew cannot move a deal across the window's end.
    pub fn server_now(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let skew = self.clock_skew_ms.load(Ordering::Relaxed);
        (skew != i64::MIN).then(|| chrono::Utc::now() + chrono::Duration::milliseconds(skew))
    }

    /// The credit budget (`--max-credits`), if any.
    pub fn max_credits(&self) -> Option<u64> {
        self.max_credits
    }

    /// Calls and credits so far.
    pub fn usage(&self) -> Arc<Usage> {
        Arc::clone(&self.usage)
    }

    /// The token provider (for `check` and tests).
    pub fn auth(&self) -> &TokenProvider {
        &self.auth
    }

    /// `GET {api_domain}/crm/v8/{path}` with query parameters and extra headers; one credit.
    pub async fn get(&self, path: &str, query: &[(&str, String)], headers: &[(&str, String)]) -> Result<Body, Error> {
        self.call(path, 1, |http, url| http.get(url).query(query), headers).await
    }

    /// `POST {api_domain}/crm/v8/coql`; credits by LIMIT (1–200: 1, 201–1000: 2, 1001–2000: 3).
    pub async fn coql(&self, select_query: &str, limit: u32) -> Result<Body, Error> {
        let credits = coql_credits(limit);
        let body = serde_json::json!({ "select_query": select_query });
        self.call("coql", credits, |http, url| http.post(url).json(&body), &[]).await
    }

    async fn call<F>(&self, path: &str, credits: u64, build: F, headers: &[(&str, String)]) -> Result<Body, Error>
    where
        F: Fn(&reqwest::Client, reqwest::Url) -> reqwest::RequestBuilder,
    {
        // A 401 INVALID_TOKEN (expired or revoked token) gets one fresh token and one more try.
        for attempt in 0..2 {
            let result = retry(
                self.retry,
                || async {
                    let token = self.auth.get().await.map_err(WithToken::from)?;
                    self.send_once(path, credits, &build, headers, &token)
                        .await
                        .map_err(|error| WithToken { error, token: Some(token) })
                },
                |e: &WithToken, wait| {
                    tracing::debug!(endpoint = path, error = %e.error, wait_ms = wait.as_millis() as u64, "retrying a Zoho call")
                },
            )
            .await;
            match result {
                Ok(body) => return Ok(body),
                Err(WithToken { error: Error::InvalidToken { endpoint }, token }) => {
                    if let Some(token) = token {
                        self.auth.invalidate(&token).await;
                    }
                    if attempt == 1 {
                        return Err(Error::InvalidCredentials(format!(
                            "{endpoint} answered 401 INVALID_TOKEN even with a freshly minted access token; check the refresh token's scopes and that the org is in ZOHO_DC"
                        )));
                    }
                    tracing::info!(endpoint = %endpoint, "access token rejected (expired or revoked); minting a new one");
                }
                Err(WithToken { error, .. }) => return Err(error),
            }
        }
        Err(Error::InvalidCredentials(format!("{path}: access token rejected twice")))
    }

    async fn send_once<F>(
        &self,
        path: &str,
        credits: u64,
        build: &F,
        headers: &[(&str, String)],
        token: &AccessToken,
    ) -> Result<Body, Error>
    where
        F: Fn(&reqwest::Client, reqwest::Url) -> reqwest::RequestBuilder,
    {
        // The credits are reserved before the call, atomically, so concurrent calls can never together pass the
        // budget. Every attempt is counted, retries included: whether Zoho charges a refused call is unconfirmed,
        // so the count errs on the side of the budget.
        let limit = self.max_credits.unwrap_or(u64::MAX);
        if let Err(spent) = self.usage.credits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spent| {
            spent.checked_add(credits).filter(|total| *total <= limit)
        }) {
            return Err(Error::CreditBudget { spent, limit, next: credits });
        }
        let url = join(&token.api_domain, &format!("crm/v8/{path}"))?;
        let endpoint = path.split('?').next().unwrap_or(path).to_owned();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Transient { endpoint: endpoint.clone(), detail: "client closed".into() })?;
        let mut req = build(&self.http, url).header(reqwest::header::AUTHORIZATION, token.header_value());
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        self.usage.calls.fetch_add(1, Ordering::Relaxed);
        let resp = req
            .send()
            .await
            .map_err(|e| Error::Transient { endpoint: endpoint.clone(), detail: describe_reqwest(&e) })?;
        let status = resp.status().as_u16();
        if let Some(server) = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        {
            let skew = server.with_timezone(&chrono::Utc) - chrono::Utc::now();
            self.clock_skew_ms.store(skew.num_milliseconds(), Ordering::Relaxed);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        refuse_redirect(&endpoint, &resp)?;
        let text = read_capped(&endpoint, resp).await?;
        classify(&endpoint, status, &text, retry_after)
    }
}

/// An error and the token that was used when it happened (so a 401 invalidates the right one).
struct WithToken {
    error: Error,
    token: Option<AccessToken>,
}

impl From<Error> for WithToken {
    fn from(error: Error) -> Self {
        WithToken { error, token: None }
    }
}

impl crate::retry::Retryable for WithToken {
    fn is_retryable(&self) -> bool {
        self.error.is_retryable()
    }
    fn retry_after(&self) -> Option<Duration> {
        self.error.retry_after()
    }
}

/// Zoho's error envelope.
#[derive(serde::Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Value,
}

/// Turns a status and body into a result. The one place Zoho's answers are classified.
pub fn classify(endpoint: &str, status: u16, text: &str, retry_after: Option<Duration>) -> Result<Body, Error> {
    let endpoint = endpoint.to_owned();
    match status {
        204 | 304 => Ok(None),
        200..=299 => {
            if text.trim().is_empty() {
                return Ok(None);
            }
            serde_json::from_str(text)
                .map(Some)
                .map_err(|e| Error::Malformed { endpoint, detail: format!("HTTP {status}: {e}") })
        }
        _ => {
            let env: Envelope = serde_json::from_str(text).unwrap_or_default();
            let code = env.code.clone();
            match (status, code.as_str()) {
                (401, "INVALID_TOKEN") | (401, "INVALID_OAUTHTOKEN") => Err(Error::InvalidToken { endpoint }),
                (401, "OAUTH_SCOPE_MISMATCH") => {
                    Err(Error::ScopeMismatch { endpoint, detail: format!("{} {}", env.message, env.details) })
                }
                (401, _) | (403, _) | (_, "NO_PERMISSION") => Err(Error::InvalidCredentials(format!(
                    "{endpoint} answered HTTP {status} {code} {}: the Zoho user behind the refresh token lacks permission",
                    env.message
                ))),
                (429, _) => Err(Error::RateLimited { endpoint, detail: code, retry_after }),
                (500..=599, _) => Err(Error::Transient { endpoint, detail: format!("HTTP {status} {code}") }),
                _ => Err(Error::Rejected { endpoint, status, code, message: env.message }),
            }
        }
    }
}

/// A 3xx (other than 304 Not Modified, which Get Records uses) is an error naming the host that answered and
/// the host it pointed to; nothing is sent there.
pub(crate) fn refuse_redirect(endpoint: &str, resp: &reqwest::Response) -> Result<(), Error> {
    let status = resp.status();
    if !status.is_redirection() || status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    let from = resp.url().host_str().unwrap_or("?").to_owned();
    let from = match resp.url().port() {
        Some(port) => format!("{from}:{port}"),
        None => from,
    };
    let to = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|l| resp.url().join(l).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "an unreadable location".into());
    Err(Error::Untrusted {
        endpoint: endpoint.to_owned(),
        detail: format!(
            "{from} answered HTTP {} (a redirect to {to}); Zoho calls follow no redirect, so nothing was sent there. Check ZOHO_DC, ZOHO_ACCOUNTS_URL and ZOHO_API_DOMAIN",
            status.as_u16()
        ),
    })
}

/// Reads a body as text, at most [`MAX_RESPONSE_BYTES`]: a declared `Content-Length` over the cap is refused
/// before reading, and a body without one is streamed and dropped at the cap.
pub(crate) async fn read_capped(endpoint: &str, mut resp: reqwest::Response) -> Result<String, Error> {
    let too_large = || Error::TooLarge { endpoint: endpoint.to_owned(), limit: MAX_RESPONSE_BYTES };
    if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::Transient { endpoint: endpoint.to_owned(), detail: describe_reqwest(&e) })?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    // Zoho answers UTF-8 JSON; a stray invalid byte is replaced rather than failing the page here (the JSON
    // parser then judges the text).
    Ok(match String::from_utf8(body) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Describes a transport error without its URL's query (which never holds secrets here, but stay safe).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the connection dropped while reading the response"
    } else if e.is_request() {
        "the request failed (connection dropped?)"
    } else {
        "transport error"
    };
    let mut chain = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    format!("{kind}{chain}")
}
