//! The accounts server's state: the demo client, refresh tokens, single-use grant codes and the
//! access tokens minted from them, with Zoho's limits (fact sheet §1.6): a mint throttle per refresh
//! token, at most N active access tokens per refresh token (the next one evicts the oldest), a TTL,
//! and revocation that takes a refresh token's access tokens with it.

use std::collections::{HashMap, HashSet, VecDeque};
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
    codes: HashSet<String>,
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
            codes: HashSet::from([DEMO_GRANT_CODE.to_string()]),
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

    /// A fresh single-use grant code (`POST /__sandbox/grant-code`).
    pub fn new_grant_code(&mut self) -> String {
        let code = self.token();
        self.codes.insert(code.clone());
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
    pub fn exchange_code(&mut self, code: &str, now: Instant, limits: MintLimits) -> Result<Minted, TokenError> {
        if !self.codes.remove(code) {
            return Err(TokenError::InvalidCode);
        }
        let rt = self.token();
        self.refresh.insert(rt.clone(), RefreshState::default());
        self.mint(&rt, now, limits)
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
        let m = a.exchange_code(DEMO_GRANT_CODE, t0, limits()).expect("first use");
        assert!(a.access_ok(&m.access_token, t0));
        assert!(a.refresh(&m.refresh_token, t0, limits()).is_ok());
        assert_eq!(a.exchange_code(DEMO_GRANT_CODE, t0, limits()).expect_err("reuse"), TokenError::InvalidCode);
        let fresh = a.new_grant_code();
        assert!(a.exchange_code(&fresh, t0, limits()).is_ok());
    }
}
