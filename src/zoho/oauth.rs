//! The authorization-code flow for a Connected App (`zoho-deals-sync authorize`), as `gcloud auth login` does
//! it: print Zoho's consent URL, wait on a loopback port for the browser's redirect, check its `state`,
//! exchange the code for a refresh token. The Self Client flow (`exchange-grant`) needs none of this.
//!
//! Not here: storing the token (the caller prints it on stdout, for a secret store) or minting access tokens
//! (`auth.rs`).

use std::time::Duration;

use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::auth::TokenProvider;
use super::http::join;

/// The scopes the job needs, the same list `exchange-grant`'s instructions name ([`super::SCOPES`]): a token
/// from `authorize` reads everything a run reads (layouts, pipelines, users, currencies included).
pub const SCOPES: &str = super::SCOPES;

/// The redirect path on the loopback listener.
pub const CALLBACK_PATH: &str = "/callback";

/// A browser's request head is a few hundred bytes; anything past this is not a browser.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How a flow failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The loopback port is taken or not ours.
    #[error("could not listen on {addr} for Zoho's redirect: {source}. Pick a free port with --port (and register http://127.0.0.1:<port>/callback as the Connected App's redirect URI)")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Nobody completed the consent in time.
    #[error("no redirect from Zoho within {}s: open the printed URL in a browser, sign in and accept, then run `zoho-deals-sync authorize` again (or give it longer with --timeout)", .0.as_secs())]
    TimedOut(Duration),
    /// The redirect carried another `state` than the one we sent: not the answer to our request (a forged or
    /// stale redirect). Nothing was exchanged.
    #[error("the redirect's state does not match the one this run sent (a forged or stale redirect); nothing was exchanged. Run `zoho-deals-sync authorize` again")]
    StateMismatch,
    /// Zoho redirected with an error (the user pressed Deny, a bad scope, ...), or without a code.
    #[error("Zoho's consent step answered error={0:?}; nothing was exchanged. Run `zoho-deals-sync authorize` again and accept the scopes")]
    Refused(String),
    /// The code exchange failed.
    #[error(transparent)]
    Zoho(#[from] super::Error),
}

/// What the loopback listener got from the browser.
struct Redirect {
    code: SecretString,
    /// Zoho's multi-DC hint: the accounts server of the user's data centre.
    accounts_server: Option<String>,
}

/// A prepared flow: the listener is bound, the URL is known.
pub struct Flow {
    listener: TcpListener,
    redirect_uri: String,
    state: String,
    url: Url,
}

impl Flow {
    /// Binds `127.0.0.1:port` (0: any free port) and builds the consent URL for `client_id`.
    pub async fn start(accounts_url: &Url, client_id: &str, port: u16) -> Result<Flow, AuthorizeError> {
        let addr = format!("127.0.0.1:{port}");
        let listener =
            TcpListener::bind(&addr).await.map_err(|source| AuthorizeError::Listen { addr: addr.clone(), source })?;
        let port = listener.local_addr().map_err(|source| AuthorizeError::Listen { addr, source })?.port();
        // Zoho checks the redirect URI against the Connected App's registered ones; whether it accepts an
        // http loopback URI for a server-based client is UNCONFIRMED (RFC 8252 §7.3 says it should), so the
        // port is fixed by default (--port) and the README says what to register.
        let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
        // 122 random bits, unguessable: a redirect with any other state is not the answer to this request.
        let state = uuid::Uuid::new_v4().simple().to_string();
        let mut url = join(accounts_url, "oauth/v2/auth")?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("scope", SCOPES)
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("state", &state);
        Ok(Flow { listener, redirect_uri, state, url })
    }

    /// The URL to open in a browser. It holds no secret (client id and a one-time state).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Waits up to `timeout` for the redirect, then exchanges its code for a refresh token.
    pub async fn finish(self, provider: &TokenProvider, timeout: Duration) -> Result<SecretString, AuthorizeError> {
        let redirect =
            tokio::time::timeout(timeout, self.wait()).await.map_err(|_| AuthorizeError::TimedOut(timeout))??;
        if let Some(server) = &redirect.accounts_server {
            // Only a hint: the code is exchanged where ZOHO_DC / ZOHO_ACCOUNTS_URL say, never at a host the
            // redirect names. A mismatch explains an `invalid_code` answer.
            tracing::info!(accounts_server = %server, "Zoho's redirect names the user's accounts server; ZOHO_DC must match it");
        }
        Ok(provider.exchange_grant(&redirect.code, Some(&self.redirect_uri)).await?)
    }

    /// Serves the listener until a request to the callback path arrives; other paths (a browser's favicon
    /// request) get 404 and the wait goes on.
    async fn wait(&self) -> Result<Redirect, AuthorizeError> {
        loop {
            let Ok((mut stream, _)) = self.listener.accept().await else { continue };
            let Some(target) = read_request_target(&mut stream).await else { continue };
            let Ok(url) = Url::parse(&format!("http://127.0.0.1{target}")) else {
                respond(&mut stream, 400, "Not a request this program understands.").await;
                continue;
            };
            if url.path() != CALLBACK_PATH {
                respond(&mut stream, 404, "Not found.").await;
                continue;
            }
            let get = |k: &str| url.query_pairs().find(|(name, _)| name == k).map(|(_, v)| v.into_owned());
            if get("state").as_deref() != Some(self.state.as_str()) {
                respond(
                    &mut stream,
                    400,
                    "The state does not match this authorization request. Nothing was done; run authorize again.",
                )
                .await;
                return Err(AuthorizeError::StateMismatch);
            }
            if let Some(error) = get("error") {
                respond(&mut stream, 400, "Zoho answered with an error; see the terminal.").await;
                return Err(AuthorizeError::Refused(error));
            }
            let Some(code) = get("code").filter(|c| !c.is_empty()) else {
                respond(&mut stream, 400, "The redirect has no code; see the terminal.").await;
                return Err(AuthorizeError::Refused("no code in the redirect".into()));
            };
            respond(
                &mut stream,
                200,
                "zoho-deals-sync is authorized. You can close this tab and return to the terminal.",
            )
            .await;
            return Ok(Redirect { code: SecretString::from(code), accounts_server: get("accounts-server") });
        }
    }
}

/// The request target of an HTTP/1 request (`/callback?code=...`), or `None` for anything unreadable.
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        // A client that connects and says nothing must not stall the flow.
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 || buf.len() + n > MAX_REQUEST_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut words = head.lines().next()?.split_whitespace();
    (words.next()? == "GET").then_some(())?;
    words.next().map(str::to_owned)
}

async fn respond(stream: &mut TcpStream, status: u16, text: &str) {
    let body =
        format!("<!DOCTYPE html><html><head><title>zoho-deals-sync</title></head><body><p>{text}</p></body></html>");
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        if status == 200 { "OK" } else { "Error" },
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
