//! The transport every Zoho call shares (the accounts server's token endpoints and the CRM): the HTTP client,
//! its timeouts and the rules for reading an answer: no redirect is followed, no body is read past
//! [`MAX_RESPONSE_BYTES`], and a transport error is kept without its URL ([`Transport`]).
//!
//! Not here: what an answer means (`client::classify` and `auth.rs` classify the bodies).

use std::time::Duration;

use url::Url;

use super::Error;
use crate::error_chain::Transport;

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
        .map_err(|e| Error::malformed_from("client", "could not build the HTTP client", Transport::new(e)))
}

/// A 3xx (other than 304 Not Modified, which Get Records uses) is an error naming the host that answered and
/// the host it pointed to; nothing is sent there.
pub(super) fn refuse_redirect(endpoint: &str, resp: &reqwest::Response) -> Result<(), Error> {
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
pub(super) async fn read_capped(endpoint: &str, mut resp: reqwest::Response) -> Result<String, Error> {
    let too_large = || Error::TooLarge { endpoint: endpoint.to_owned(), limit: MAX_RESPONSE_BYTES };
    if resp.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    // Sized from `Content-Length` when there is one: growing by doubling would hold up to twice a 2 MB page.
    let declared = resp.content_length().map_or(0, |n| n as usize);
    let mut body = Vec::with_capacity(declared);
    while let Some(chunk) = resp.chunk().await.map_err(|e| Error::no_answer(endpoint, e))? {
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

/// Joins a path onto a base URL that may or may not end in `/`.
pub(super) fn join(base: &Url, path: &str) -> Result<Url, Error> {
    let mut s = base.as_str().trim_end_matches('/').to_owned();
    s.push('/');
    s.push_str(path.trim_start_matches('/'));
    Url::parse(&s).map_err(|e| Error::malformed_from(path, format!("{s:?} is not a URL"), e))
}
