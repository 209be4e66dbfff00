//! Benchmark helper: runs one `sync --since Nd` in-process, with the job's own pipeline, against a SQLite
//! warehouse wrapped in [`Delayed`], which sleeps a fixed time in every `stage()` call (a slow warehouse:
//! e.g. 300 ms per batch, as a BigQuery streaming insert can take). Used by `bench/run.py` to show that
//! fetching and writing overlap: the wall time is compared with the source time (the download floor at the
//! same sandbox latency) and the sink time (the time this wrapper spent inside warehouse calls).
//!
//! Not part of the job and not a test. Configuration is the job's own environment (`ZOHO_*`, `SQLITE_PATH`);
//! prints one JSON object on stdout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use serde_json::json;

use zoho_deals_sync::config::{NeedCredentials, Settings, WarehouseSettings};
use zoho_deals_sync::deal::DealChange;
use zoho_deals_sync::retry::RetryPolicy;
use zoho_deals_sync::sync::{self, Outcome, SyncOptions};
use zoho_deals_sync::warehouse::sqlite::SqliteWarehouse;
use zoho_deals_sync::warehouse::{
    CoveredWindow, LedgerRow, MergeCounts, QuarantinedRow, RunReport, RunStart, StoredDeal, Warehouse, WarehouseError,
};
use zoho_deals_sync::zoho::auth::TokenProvider;
use zoho_deals_sync::zoho::client::{http_client, ZohoClient};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// How far back the window starts, in days (`--since Nd`).
    #[arg(long, default_value_t = 400)]
    since_days: i64,
    /// Sleep this long in every `stage()` call.
    #[arg(long, default_value_t = 300)]
    stage_delay_ms: u64,
}

/// A warehouse that sleeps `delay` in every `stage()` and delegates everything; it also clocks the time spent
/// inside every call (the sink's busy time).
struct Delayed<W> {
    inner: W,
    delay: Duration,
    stage_calls: AtomicU64,
    staged_rows: AtomicU64,
    stage_busy_us: AtomicU64,
    other_busy_us: AtomicU64,
}

impl<W> Delayed<W> {
    fn new(inner: W, delay: Duration) -> Self {
        Delayed {
            inner,
            delay,
            stage_calls: AtomicU64::new(0),
            staged_rows: AtomicU64::new(0),
            stage_busy_us: AtomicU64::new(0),
            other_busy_us: AtomicU64::new(0),
        }
    }

    /// Runs `f`, adding its duration to the non-stage busy time.
    async fn timed<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let out = f.await;
        self.other_busy_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        out
    }
}

impl<W: Warehouse> Warehouse for Delayed<W> {
    async fn prepare(&self) -> Result<(), WarehouseError> {
        self.timed(self.inner.prepare()).await
    }

    async fn declare_fields(&self, fields: &[zoho_deals_sync::deal::FieldColumn]) -> Result<(), WarehouseError> {
        self.timed(self.inner.declare_fields(fields)).await
    }

    async fn watermark(&self) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        self.timed(self.inner.watermark()).await
    }

    async fn succeeded_windows(&self) -> Result<Vec<CoveredWindow>, WarehouseError> {
        self.timed(self.inner.succeeded_windows()).await
    }

    async fn begin_run(&self, run: &RunStart) -> Result<(), WarehouseError> {
        self.timed(self.inner.begin_run(run)).await
    }

    async fn record_window(&self, run: &RunStart) -> Result<(), WarehouseError> {
        self.timed(self.inner.record_window(run)).await
    }

    async fn heartbeat(&self, run: &RunStart) -> Result<(), WarehouseError> {
        self.inner.heartbeat(run).await
    }

    async fn stage(&self, run: &RunStart, changes: &[DealChange]) -> Result<(), WarehouseError> {
        let t = Instant::now();
        tokio::time::sleep(self.delay).await;
        let out = self.inner.stage(run, changes).await;
        self.stage_busy_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.stage_calls.fetch_add(1, Ordering::Relaxed);
        self.staged_rows.fetch_add(changes.len() as u64, Ordering::Relaxed);
        out
    }

    async fn merge_ahead(&self, run: &RunStart, rows: usize) -> Result<usize, WarehouseError> {
        self.timed(self.inner.merge_ahead(run, rows)).await
    }

    async fn commit(&self, run: &RunStart, report: &RunReport) -> Result<MergeCounts, WarehouseError> {
        self.timed(self.inner.commit(run, report)).await
    }

    async fn fail_run(&self, run: &RunStart, report: &RunReport, error: &str) -> Result<(), WarehouseError> {
        self.inner.fail_run(run, report, error).await
    }

    async fn count_won_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<u64, WarehouseError> {
        self.timed(self.inner.count_won_in_window(start, end)).await
    }

    async fn holds_deals(&self) -> Result<bool, WarehouseError> {
        self.timed(self.inner.holds_deals()).await
    }

    async fn won_ids_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Vec<String>, WarehouseError> {
        self.timed(self.inner.won_ids_in_window(start, end)).await
    }

    async fn ledger(&self) -> Result<Vec<LedgerRow>, WarehouseError> {
        self.inner.ledger().await
    }

    async fn stored_deals(&self) -> Result<Vec<StoredDeal>, WarehouseError> {
        self.inner.stored_deals().await
    }

    async fn quarantined(&self) -> Result<Vec<QuarantinedRow>, WarehouseError> {
        self.inner.quarantined().await
    }
}

async fn run(args: Args) -> Result<serde_json::Value, BoxError> {
    let started = Instant::now();
    // Logs as the binary writes them (stderr), so the in-process run pays the same logging cost.
    zoho_deals_sync::telemetry::init(zoho_deals_sync::telemetry::LogFormat::from_env()?);
    let settings = Settings::from_env(NeedCredentials::Yes)?;
    let creds = settings.credentials.clone().ok_or("ZOHO_CLIENT_ID/SECRET/REFRESH_TOKEN are not set")?;
    let WarehouseSettings::Sqlite { path } = &settings.warehouse else {
        return Err("bench_overlap writes to SQLite only (set SQLITE_PATH, unset BQ_PROJECT)".into());
    };
    // Wired as src/app.rs wires the binary.
    let http = http_client()?;
    let retry = RetryPolicy { budget: settings.zoho.retry_budget, ..RetryPolicy::default() };
    let auth =
        TokenProvider::new(http.clone(), &settings.zoho.accounts_url, creds, settings.zoho.api_domain.clone(), retry)?;
    let zoho = Arc::new(ZohoClient::new(http, auth, settings.zoho.concurrency, None, retry));
    let warehouse = Arc::new(Delayed::new(SqliteWarehouse::open(path)?, Duration::from_millis(args.stage_delay_ms)));
    let options = SyncOptions {
        since: Some(Utc::now() - chrono::Duration::days(args.since_days)),
        until: None,
        dry_run: false,
        progress: false,
    };
    let outcome = sync::sync(&settings, &options, zoho, Arc::clone(&warehouse)).await?;
    let Outcome::Synced(summary) = outcome else {
        return Err("a dry run was not asked for".into());
    };
    let us = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64 / 1e6;
    Ok(json!({
        "wall_s": started.elapsed().as_secs_f64(),
        "stage_delay_ms": args.stage_delay_ms,
        "concurrency": settings.zoho.concurrency,
        "stage_calls": warehouse.stage_calls.load(Ordering::Relaxed),
        "staged_rows": warehouse.staged_rows.load(Ordering::Relaxed),
        "stage_busy_s": us(&warehouse.stage_busy_us),
        "other_busy_s": us(&warehouse.other_busy_us),
        "sink_s": us(&warehouse.stage_busy_us) + us(&warehouse.other_busy_us),
        "upserted": summary.counts.upserted,
        "api_calls": summary.report.api_calls,
        "credits": summary.report.api_credits,
    }))
}

fn main() -> std::process::ExitCode {
    // The job's own runtime (its blocking pool is capped), so that the pipeline runs here as it does in the job.
    let runtime = match zoho_deals_sync::app::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_overlap: could not start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Args::parse())) {
        Ok(v) => {
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_overlap: {}", zoho_deals_sync::app::error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
