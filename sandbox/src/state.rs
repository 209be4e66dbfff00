//! Shared server state: the data store, OAuth state, live fault knobs, counters and the fault dice.
//!
//! Locks are `std::sync` ones, taken in short synchronous sections and never held across an
//! `.await` (the workspace denies `clippy::await_holding_lock`, which checks exactly that).
//! A poisoned lock is recovered: the sandbox prefers serving slightly odd data to wedging a test run.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use chrono::FixedOffset;
use serde::Serialize;

use crate::auth::AuthState;
use crate::config::Faults;
use crate::data::Store;
use crate::rng::Rng;

/// Per-endpoint counters (`GET /__sandbox/stats`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Requests per endpoint key (`token`, `coql`, `fields`, `get_records`, ...), whatever their outcome.
    pub calls: BTreeMap<String, u64>,
    /// API credits charged per endpoint (only calls that reached the handler and succeeded).
    pub credits: BTreeMap<String, u64>,
    /// Sum of `credits`.
    pub credits_total: u64,
    /// Access tokens minted.
    pub token_mints: u64,
    /// Token endpoint refusals (invalid_client, invalid_code, throttle, ...).
    pub token_errors: u64,
    /// Mints refused by the throttle.
    pub token_throttled: u64,
    /// Highest number of CRM calls in flight at once (including calls then refused for it).
    pub max_concurrency: usize,
    /// Highest number of COQL calls in flight at once.
    pub max_coql_concurrency: usize,
    /// Faults injected by the `rate_*` knobs.
    pub faults_injected: u64,
    /// The same, per kind (`429`, `500`, `drop`).
    pub faults: BTreeMap<String, u64>,
    /// Calls refused with 429 for concurrency or the daily credit allowance.
    pub rejected_limits: u64,
    /// CRM calls refused with 401 (`INVALID_TOKEN` or `OAUTH_SCOPE_MISMATCH`).
    pub unauthorized: u64,
    /// Every accounts call and every CRM call that got past authentication, with the latency applied.
    pub call_log: crate::latency::CallLog,
}

impl Stats {
    /// Counts one request to `key`.
    pub fn call(&mut self, key: &str) {
        *self.calls.entry(key.to_string()).or_default() += 1;
    }

    /// Charges `n` credits to `key`.
    pub fn charge(&mut self, key: &str, n: u64) {
        *self.credits.entry(key.to_string()).or_default() += n;
        self.credits_total += n;
    }

    /// Counts one injected fault of `kind`.
    pub fn fault(&mut self, kind: &str) {
        self.faults_injected += 1;
        *self.faults.entry(kind.to_string()).or_default() += 1;
    }
}

/// Where a Get Records `page_token` continues from.
#[derive(Debug, Clone)]
pub struct PageCursor {
    /// The request parameters the token is bound to.
    pub bound: String,
    /// Records already served through this chain.
    pub served: u64,
    /// Position to continue after: (sort key, id), compared in the request's sort order.
    pub after: (i64, u64),
    /// When the token stops working.
    pub expires: Instant,
    /// `page_token_expiry` as rendered.
    pub expiry_text: String,
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The API user's offset.
    pub tz: FixedOffset,
    /// CRM data.
    pub store: RwLock<Store>,
    /// OAuth state.
    pub auth: Mutex<AuthState>,
    /// Live fault knobs.
    pub faults: Mutex<Faults>,
    /// Counters.
    pub stats: Mutex<Stats>,
    /// CRM calls in flight.
    pub inflight: AtomicUsize,
    /// COQL calls in flight.
    pub coql_inflight: AtomicUsize,
    /// Fault dice (seeded from the config seed).
    pub dice: Mutex<Rng>,
    /// Latency jitter dice (seeded from the config seed; apart from the fault dice so faults stay reproducible).
    pub latency_dice: Mutex<Rng>,
    /// Randomness for page tokens (kept apart from the fault dice so faults stay reproducible).
    pub token_rng: Mutex<Rng>,
    /// Live Get Records page tokens.
    pub page_tokens: Mutex<HashMap<String, PageCursor>>,
    /// How far the sandbox's clock runs ahead of the wall clock (`POST /__sandbox/clock`), in seconds.
    pub clock_offset_secs: std::sync::atomic::AtomicI64,
    /// Actions armed by `POST /__sandbox/on-coql-call`, each fired once by the COQL call it waits for.
    pub coql_triggers: Mutex<Vec<CoqlTrigger>>,
}

/// What the `call`-th COQL call (as `stats.calls.coql` counts it) does on arrival, after its own authentication
/// and fault knobs were taken: it revokes every access token and/or patches the fault knobs, so every CRM call
/// arriving after it meets the change and the call itself does not. Fired inside the sandbox, so a test's
/// "mid-run" event lands between two calls however slow or loaded the machine is (a test polling the stats and
/// then posting `/__sandbox/control` can come too late).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoqlTrigger {
    /// The COQL call that fires it (1 = the first counted since the last `reset-stats`).
    pub call: u64,
    /// Revoke every live access token, as `POST /__sandbox/revoke-access-tokens` does.
    #[serde(default)]
    pub revoke_access_tokens: bool,
    /// A partial fault-knob object, as `POST /__sandbox/control` takes.
    #[serde(default)]
    pub control: Option<serde_json::Value>,
}

impl AppState {
    /// The sandbox's "now": the wall clock (to the second) plus the advance. Mutations are stamped with it and
    /// every response's `Date` header tells it, as Zoho's servers tell theirs.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        crate::clock::now()
            + chrono::Duration::seconds(self.clock_offset_secs.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Locks a mutex, recovering from poisoning.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Read-locks, recovering from poisoning.
pub fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write-locks, recovering from poisoning.
pub fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AppState {
    /// A copy of the live fault knobs.
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// Runs `f` on the counters.
    pub fn stats<R>(&self, f: impl FnOnce(&mut Stats) -> R) -> R {
        f(&mut lock(&self.stats))
    }
}
