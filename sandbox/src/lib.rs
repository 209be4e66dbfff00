//! zoho-sandbox: a local HTTP stand-in for Zoho's accounts server and the CRM v8 API on one base
//! URL, for the job's black-box tests and for `make demo`.
//!
//! It aims to be faithful where clients usually go wrong: token errors with HTTP 200, 401
//! `INVALID_TOKEN`, the mint throttle, COQL's 2000-row limit and 204-on-empty, Get Records' page
//! tokens, 429s without `Retry-After`, dropped connections, and customised stage names. Its org comes in
//! shapes ([`Profile`]: default, free, pipelines, exotic) and COQL follows Zoho's rules (doubled quotes,
//! quoted reserved words, unsupported field types, the formula cap). It is not a general CRM: one org,
//! one module (Deals) with read access, data generated from a seed.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sandbox = zoho_sandbox::Sandbox::start(zoho_sandbox::SandboxConfig::default()).await?;
//! let base = sandbox.base_url(); // token URL: {base}/oauth/v2/token, API: {base}/crm/v8/...
//! # let _ = base;
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod clock;
pub mod config;
pub mod coql;
pub mod data;
pub mod latency;
pub mod meta;
pub mod org;
pub mod reply;
pub mod rng;
pub mod routes;
pub mod server;
pub mod state;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Faults, History, SandboxConfig};
pub use org::Profile;

use crate::auth::AuthState;
use crate::data::Store;
use crate::rng::Rng;
use crate::state::AppState;

/// The demo OAuth client id (the sandbox's only client).
pub const DEMO_CLIENT_ID: &str = "1000.SANDBOXDEMOCLIENT";
/// The demo client's secret.
pub const DEMO_CLIENT_SECRET: &str = "sandbox-demo-client-secret";
/// A refresh token valid from start-up until revoked.
pub const DEMO_REFRESH_TOKEN: &str = "1000.sandbox-demo-refresh-token";
/// A grant code valid once per process (`POST /__sandbox/grant-code` hands out more).
pub const DEMO_GRANT_CODE: &str = "1000.sandbox-demo-grant-code";

/// A running sandbox. Dropping it stops the server too.
#[derive(Debug)]
pub struct Sandbox {
    base_url: String,
    shutdown: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Generates the data and serves it on `127.0.0.1` with an OS-chosen port, in a tokio task.
    pub async fn start(config: SandboxConfig) -> io::Result<Sandbox> {
        Self::start_on(config, "127.0.0.1", 0).await
    }

    /// Like [`Sandbox::start`] on a chosen host and port (port 0 = any free port).
    pub async fn start_on(config: SandboxConfig, host: &str, port: u16) -> io::Result<Sandbox> {
        let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        let tz = clock::offset(config.tz_offset_minutes)
            .ok_or_else(|| invalid(format!("tz offset {} minutes is out of range", config.tz_offset_minutes)))?;
        config.faults.validate().map_err(invalid)?;
        let faults = config.effective_faults();
        let listener = TcpListener::bind((host, port)).await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");

        let started = clock::now();
        let store = Store::generate_history(
            config.profile,
            config.history,
            config.deals,
            config.initially_deleted,
            config.seed,
            tz,
            started,
        );
        // Tokens must differ between runs (a job caching one must not reuse it on a new sandbox).
        let entropy =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(addr.port());
        let state = Arc::new(AppState {
            base_url: base_url.clone(),
            tz,
            store: RwLock::new(store),
            auth: Mutex::new(AuthState::new(entropy)),
            faults: Mutex::new(faults),
            stats: Mutex::new(state::Stats::default()),
            inflight: AtomicUsize::new(0),
            coql_inflight: AtomicUsize::new(0),
            dice: Mutex::new(Rng::new(config.seed ^ 0xFA01_7D1C_E000_0001)),
            latency_dice: Mutex::new(Rng::new(config.seed ^ 0x1A7E_4C1D_1CE0_0002)),
            token_rng: Mutex::new(Rng::new(entropy.rotate_left(17))),
            page_tokens: Mutex::new(HashMap::new()),
            clock_offset_secs: std::sync::atomic::AtomicI64::new(0),
            coql_triggers: Mutex::new(Vec::new()),
        });
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, server::router(state), rx));
        Ok(Sandbox { base_url, shutdown: Some(tx), task: Some(task) })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: both the accounts URL and the API domain.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Stops accepting and closes every open connection.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
    }
}
