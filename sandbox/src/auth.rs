//! The accounts server's state: the demo client, refresh tokens, single-use grant codes and the
//! access tokens minted from them, with Zoho's limits (fact sheet §1.6): a mint throttle per refresh
//! token, at most N active access tokens per refresh token (the next one evicts the oldest), a TTL,
//! and revocation that takes a refresh token's access tokens with it.
//!
//! Grant codes come from three places: the demo code, `POST /__sandbox/grant-code` (both Self Client
//! style: no redirect URI, no expiry) and the authorization endpoint `GET /oauth/v2/auth` (bound to the
//! redirect URI it was issued for, valid 3 minutes as Zoho's grant tokens are, docs/zoho-api.md §1.2).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::{DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_GRANT_CODE, DEMO_REFRESH_TOKEN};

/// Why the token endpoint refused (each maps to Zoho's exact body in the route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// `{"error":"invalid_client"}` (HTTP 200).
    InvalidClient,
    /// `{"error":"invalid_code"}` (HTTP 200): bad/used grant code, unknown/revoked refresh token.
    InvalidCode,
    /// Too many mints per refresh token in the window: the 400 "Access Denied" body.
    Throttled,
}

/// A freshly minted access token.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The access token.
    pub access_token: String,
    /// The refresh token it was minted from.
    pub refresh_token: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Limits in force for one mint (read from the live fault knobs).
#[derive(Debug, Clone, Copy)]
pub struct MintLimits {
    /// Lifetime of the new token.
    pub ttl: Duration,
    /// Mints allowed per refresh token per window.
    pub mint_limit: usize,
    /// The throttle window.
    pub window: Duration,
    /// Active access tokens per refresh token.
    pub max_active: usize,
}

#[derive(Debug, Default)]
struct RefreshState {
    mints: VecDeque<Instant>,
    active: VecDeque<String>,
}

/// What a grant code was issued with.
#[derive(Debug, Clone, Default)]
struct GrantCode {
    /// The redirect URI of the authorization request; the exchange must name the same one.
    redirect_uri: Option<String>,
    /// When the code stops working (`None`: never, for the Self Client style codes).
    expires: Option<Instant>,
    /// `access_type=offline`: the exchange returns a refresh token. Self Client codes always do.
    offline: bool,
}

/// How long a code from the authorization endpoint lives (Zoho: 3 minutes by default, docs/zoho-api.md §1.2).
pub const AUTH_CODE_TTL: Duration = Duration::from_secs(180);

#[derive(Debug)]
struct AccessState {
    refresh: String,
    expires: Instant,
}

/// All OAuth state of one sandbox.
#[derive(Debug)]
pub struct AuthState {
    refresh: HashMap<String, RefreshState>,
    access: HashMap<String, AccessState>,
    codes: HashMap<String, GrantCode>,
    rng: Rng,
}

impl AuthState {
    /// The demo refresh token and grant code are valid; `entropy` seeds token generation.
    pub fn new(entropy: u64) -> Self {
        let mut refresh = HashMap::new();
        refresh.insert(DEMO_REFRESH_TOKEN.to_string(), RefreshState::default());
        AuthState {
            refresh,
            access: HashMap::new(),
            codes: HashMap::from([(DEMO_GRANT_CODE.to_string(), GrantCode { offline: true, ..GrantCode::default() })]),
            rng: Rng::new(entropy),
        }
    }

    fn token(&mut self) -> String {
        format!("1000.{}.{}", self.rng.hex(16), self.rng.hex(16))
    }

    /// Client credentials check (the sandbox has one client).
    pub fn client_ok(client_id: &str, client_secret: &str) -> bool {
        client_id == DEMO_CLIENT_ID && client_secret == DEMO_CLIENT_SECRET
    }

    /// Whether `client_id` names a registered client (the authorization endpoint has no secret to check).
    pub fn client_known(client_id: &str) -> bool {
        client_id == DEMO_CLIENT_ID
    }

    /// A fresh single-use grant code (`POST /__sandbox/grant-code`).
    pub fn new_grant_code(&mut self) -> String {
        let code = self.token();
        self.codes.insert(code.clone(), GrantCode { offline: true, ..GrantCode::default() });
        code
    }

    /// A code from the authorization endpoint: bound to `redirect_uri`, valid [`AUTH_CODE_TTL`].
    pub fn new_authorization_code(&mut self, redirect_uri: &str, offline: bool, now: Instant) -> String {
        let code = self.token();
        let grant =
            GrantCode { redirect_uri: Some(redirect_uri.to_string()), expires: Some(now + AUTH_CODE_TTL), offline };
        self.codes.insert(code.clone(), grant);
        code
    }

    /// `grant_type=refresh_token`.
    pub fn refresh(&mut self, refresh_token: &str, now: Instant, limits: MintLimits) -> Result<Minted, TokenError> {
        if !self.refresh.contains_key(refresh_token) {
            return Err(TokenError::InvalidCode);
        }
        self.mint(refresh_token, now, limits)
    }

    /// `grant_type=authorization_code`: consumes the code, creates a new refresh token and mints.
    /// `minted.refresh_token` is `None` when the code was asked for with `access_type=online`.
    ///
    /// A code issued for a redirect URI must be exchanged with the same `redirect_uri` (RFC 6749 §4.1.3);
    /// otherwise the answer is `invalid_code`, Zoho's documented error for a grant it will not honour
    /// (docs/zoho-api.md §1.5; whether Zoho has a dedicated redirect-mismatch error is UNCONFIRMED, and a
    /// client that treats any `error` body as failure is right either way). Such a refused exchange does
    /// not consume the code, as a typo in a request is not a replay. Self Client codes are not bound and
    /// accept any or no `redirect_uri` (the SDK sends one only if configured).
    pub fn exchange_code(
        &mut self,
        code: &str,
        redirect_uri: Option<&str>,
        now: Instant,
        limits: MintLimits,
    ) -> Result<(Minted, bool), TokenError> {
        let Some(grant) = self.codes.get(code) else {
            return Err(TokenError::InvalidCode);
        };
        if grant.expires.is_some_and(|e| now >= e) {
            self.codes.remove(code);
            return Err(TokenError::InvalidCode);
        }
        if let Some(bound) = &grant.redirect_uri {
            if redirect_uri != Some(bound.as_str()) {
                return Err(TokenError::InvalidCode);
            }
        }
        let offline = grant.offline;
        self.codes.remove(code);
        let rt = self.token();
        self.refresh.insert(rt.clone(), RefreshState::default());
        let minted = self.mint(&rt, now, limits)?;
        if !offline {
            // Online access: no refresh token is handed out, so it must not keep working either.
            self.refresh.remove(&rt);
        }
        Ok((minted, offline))
    }

    fn mint(&mut self, rt: &str, now: Instant, limits: MintLimits) -> Result<Minted, TokenError> {
        let token = self.token();
        let Some(state) = self.refresh.get_mut(rt) else {
            return Err(TokenError::InvalidCode);
        };
        while state.mints.front().is_some_and(|t| now.duration_since(*t) >= limits.window) {
            state.mints.pop_front();
        }
        if state.mints.len() >= limits.mint_limit {
            return Err(TokenError::Throttled);
        }
        state.mints.push_back(now);
        state.active.push_back(token.clone());
        let mut evicted = Vec::new();
        while state.active.len() > limits.max_active.max(1) {
            if let Some(old) = state.active.pop_front() {
                evicted.push(old);
            }
        }
        for old in evicted {
            self.access.remove(&old);
        }
        self.access.insert(token.clone(), AccessState { refresh: rt.to_string(), expires: now + limits.ttl });
        Ok(Minted { access_token: token, refresh_token: rt.to_string(), expires_in: limits.ttl.as_secs() })
    }

    /// Whether an access token is known, unexpired and unrevoked.
    pub fn access_ok(&self, token: &str, now: Instant) -> bool {
        self.access.get(token).is_some_and(|a| now < a.expires)
    }

    /// Revokes a refresh token (and every access token minted from it) or a single access token.
    /// Returns false when the token is unknown.
    pub fn revoke(&mut self, token: &str) -> bool {
        if let Some(state) = self.refresh.remove(token) {
            for t in state.active {
                self.access.remove(&t);
            }
            return true;
        }
        if let Some(a) = self.access.remove(token) {
            if let Some(state) = self.refresh.get_mut(&a.refresh) {
                state.active.retain(|t| t != token);
            }
            return true;
        }
        false
    }

    /// Invalidates every access token (refresh tokens stay valid). Returns how many there were.
    pub fn revoke_all_access(&mut self) -> usize {
        let n = self.access.len();
        self.access.clear();
        for s in self.refresh.values_mut() {
            s.active.clear();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> MintLimits {
        MintLimits { ttl: Duration::from_secs(3600), mint_limit: 10, window: Duration::from_secs(600), max_active: 15 }
    }

    #[test]
    fn throttle_then_window_slides() {
        let mut a = AuthState::new(1);
        let t0 = Instant::now();
        for _ in 0..10 {
            a.refresh(DEMO_REFRESH_TOKEN, t0, limits()).expect("within limit");
        }
        assert_eq!(a.refresh(DEMO_REFRESH_TOKEN, t0, limits()).expect_err("11th"), TokenError::Throttled);
        let later = t0 + Duration::from_secs(601);
        assert!(a.refresh(DEMO_REFRESH_TOKEN, later, limits()).is_ok());
        assert_eq!(a.refresh("1000.nope", t0, limits()).expect_err("unknown"), TokenError::InvalidCode);
    }

    #[test]
    fn sixteenth_token_evicts_the_oldest_and_revoke_kills_all() {
        let mut a = AuthState::new(2);
        let t0 = Instant::now();
        let l = MintLimits { mint_limit: 100, ..limits() };
        let toks: Vec<String> =
            (0..16).map(|_| a.refresh(DEMO_REFRESH_TOKEN, t0, l).expect("mint").access_token).collect();
        assert!(!a.access_ok(&toks[0], t0));
        assert!(toks[1..].iter().all(|t| a.access_ok(t, t0)));
        assert!(!a.access_ok(&toks[1], t0 + Duration::from_secs(3600)));
        assert!(a.revoke(DEMO_REFRESH_TOKEN));
        assert!(toks.iter().all(|t| !a.access_ok(t, t0)));
        assert!(!a.revoke(DEMO_REFRESH_TOKEN));
    }

    #[test]
    fn grant_codes_are_single_use() {
        let mut a = AuthState::new(3);
        let t0 = Instant::now();
        let (m, offline) = a.exchange_code(DEMO_GRANT_CODE, None, t0, limits()).expect("first use");
        assert!(offline);
        assert!(a.access_ok(&m.access_token, t0));
        assert!(a.refresh(&m.refresh_token, t0, limits()).is_ok());
        assert_eq!(a.exchange_code(DEMO_GRANT_CODE, None, t0, limits()).expect_err("reuse"), TokenError::InvalidCode);
        let fresh = a.new_grant_code();
        assert!(a.exchange_code(&fresh, Some("http://127.0.0.1:9/cb"), t0, limits()).is_ok());
    }

    #[test]
    fn authorization_codes_are_bound_to_their_redirect_uri_and_expire() {
        let mut a = AuthState::new(4);
        let t0 = Instant::now();
        let code = a.new_authorization_code("http://127.0.0.1:5/cb", true, t0);
        let wrong = a.exchange_code(&code, Some("http://127.0.0.1:6/cb"), t0, limits());
        assert_eq!(wrong.expect_err("other redirect"), TokenError::InvalidCode);
        assert_eq!(a.exchange_code(&code, None, t0, limits()).expect_err("no redirect"), TokenError::InvalidCode);
        assert!(a.exchange_code(&code, Some("http://127.0.0.1:5/cb"), t0, limits()).is_ok());

        let late = a.new_authorization_code("http://127.0.0.1:5/cb", true, t0);
        let after = t0 + AUTH_CODE_TTL;
        let expired = a.exchange_code(&late, Some("http://127.0.0.1:5/cb"), after, limits());
        assert_eq!(expired.expect_err("expired"), TokenError::InvalidCode);
    }
}
