//! The pipeline: pick the window, learn the won stages, fetch (won deals, deals that left "won", deletions)
//! while loading into the warehouse's staging through a bounded channel, merge, reconcile, report.
//!
//! A run reads like its runbook: [`sync`] plans it (`plan.rs`), takes the lease and fetches while staging
//! (`fetch.rs`), then commits or records the failure and reports (`finish.rs`); one `RunContext` carries what
//! every step needs. This module only orchestrates: Zoho specifics live in `zoho/`, storage in `warehouse/`.

pub mod budget;
pub mod enrich;
mod fetch;
mod finish;
mod plan;
pub mod progress;
pub mod reconcile;
pub mod scheduler;
pub mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::config::Settings;
use crate::deal::{format_utc, Window};
use crate::error::Error;
use crate::error_chain::{self, Chain};
use crate::warehouse::{MergeCounts, RunKind, RunReport, RunStart, Warehouse, WarehouseError};
use crate::zoho::client::ZohoClient;
use budget::BudgetStop;
use plan::{Planned, RunPlan};
use progress::Progress;

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub dry_run: bool,
    /// Draw a progress bar on stderr (a person at a terminal, text logs).
    pub progress: bool,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub run_id: String,
    pub kind: RunKind,
    pub window: Window,
    pub won_stages: Vec<String>,
    pub counts: MergeCounts,
    pub report: RunReport,
    pub duration: Duration,
    /// Set when `--max-credits` cut the window short: the run covered `window`, not all it was asked to.
    pub budget_stop: Option<BudgetStop>,
}

impl Summary {
    /// The one-line summary printed on stdout.
    pub fn line(&self) -> String {
        let reconcile = match self.report.zoho_won_count {
            Some(z) => format!(" zoho_won={z} warehouse_won={}", self.counts.won_in_window),
            None => String::new(),
        };
        let cut = match &self.budget_stop {
            Some(b) => {
                format!(" (credit budget {}: the requested window ended at {})", b.limit, format_utc(&b.requested_end))
            }
            None => String::new(),
        };
        // A run with quarantined records committed everything else but exits 8: it does not say "succeeded".
        let outcome = match self.report.deals_quarantined {
            0 => "succeeded".to_owned(),
            n => format!("committed with {n} quarantined"),
        };
        format!(
            "run {} {outcome}: window [{}, {}){cut} upserted={} unwon={} deleted={} quarantined={}{} api_calls={} credits={} in {:.1}s",
            self.run_id,
            format_utc(&self.window.start),
            format_utc(&self.window.end),
            self.counts.upserted,
            self.counts.unwon,
            self.counts.deleted,
            self.report.deals_quarantined,
            reconcile,
            self.report.api_calls,
            self.report.api_credits,
            self.duration.as_secs_f64()
        )
    }
}

/// What `--dry-run` reports.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: RunKind,
    pub window: Window,
    pub won_stages: Vec<String>,
    pub won_deals: u64,
    /// Deals in the window that are not won, when the run would read them to flag rows that left "won".
    pub not_won_deals: Option<u64>,
    /// Credits the whole run would take at most (the first page of deletions included; each further page of
    /// deletions costs one more).
    pub estimated_credits: u64,
    /// The credit budget, if one is set.
    pub max_credits: Option<u64>,
    pub tables: Vec<&'static str>,
}

impl Plan {
    /// Human-readable plan.
    pub fn render(&self) -> String {
        let not_won = match self.not_won_deals {
            Some(n) => format!("{n} (read as ids and stages, to flag stored rows that left won)"),
            None => "not read (no stored won deals to flag)".to_owned(),
        };
        let budget = match self.max_credits {
            Some(limit) if self.estimated_credits > limit => format!(
                "\ncredit budget: {limit}, less than the estimate: the run would cover the longest prefix of the \
                 window it can pay for, and the next run would continue from there"
            ),
            Some(limit) => format!("\ncredit budget: {limit}, enough for the whole window"),
            None => String::new(),
        };
        format!(
            "plan ({}): window [{}, {})\nwon stages: {}\nwon deals in window: {}\nnot-won deals in window: {}\nestimated Zoho API credits: at most {} (+1 per extra page of deletions){budget}\ntables: {}",
            self.kind.as_str(),
            format_utc(&self.window.start),
            format_utc(&self.window.end),
            self.won_stages.join(", "),
            self.won_deals,
            not_won,
            self.estimated_credits,
            self.tables.join(", ")
        )
    }
}

/// The result of `sync`.
#[derive(Debug)]
pub enum Outcome {
    Synced(Summary),
    DryRun(Plan),
}

/// What every step of a run needs: the settings, the command line, both ends of the pipeline, and when the run
/// started.
pub(crate) struct RunContext<'a, W> {
    pub(crate) settings: &'a Settings,
    pub(crate) options: &'a SyncOptions,
    pub(crate) zoho: Arc<ZohoClient>,
    pub(crate) warehouse: Arc<W>,
    pub(crate) started: Instant,
}

/// Runs one sync.
///
/// The lease comes first: a run that cannot have it exits (9) before any Zoho call, having minted no token
/// and spent no credit. The window is then chosen on Zoho's clock and recorded on the run's ledger row.
pub async fn sync<W: Warehouse + 'static>(
    settings: &Settings,
    options: &SyncOptions,
    zoho: Arc<ZohoClient>,
    warehouse: Arc<W>,
) -> Result<Outcome, Error> {
    let ctx = RunContext { settings, options, zoho, warehouse, started: Instant::now() };
    if options.dry_run {
        // Nothing is written in a dry run, not even the tables: a warehouse without them has no watermark.
        let watermark = ctx.warehouse.watermark().await.ok().flatten();
        return match plan::plan(&ctx, watermark).await? {
            Planned::DryRun(p) => Ok(Outcome::DryRun(p)),
            Planned::Run(_) => Err(Error::internal("a dry run planned a run")),
        };
    }
    ctx.warehouse.prepare().await?;
    let watermark = ctx.warehouse.watermark().await?;
    // A provisional window on this machine's clock (the command line was checked against it already); the
    // real one ends at Zoho's "now", known only after the first Zoho call.
    let local_now = window::floor_to_second(Utc::now());
    let (kind, provisional) = window::choose(options, watermark, local_now, settings.lookback, settings.overlap)
        .unwrap_or((window::kind(options), Window { start: local_now, end: local_now }));
    let mut run = RunStart {
        run_id: uuid::Uuid::new_v4().to_string(),
        kind,
        started_at: local_now,
        window_start: provisional.start,
        window_end: provisional.end,
        lease_ttl: chrono::Duration::from_std(settings.lease_ttl).unwrap_or(chrono::Duration::minutes(10)),
    };
    let span = tracing::info_span!("run", run_id = %run.run_id);
    async move {
        ctx.warehouse.begin_run(&run).await?;
        let mut heartbeat = spawn_heartbeat(Arc::clone(&ctx.warehouse), run.clone(), settings.lease_ttl);
        crate::alert::record_run(crate::alert::RunContext {
            run_id: run.run_id.clone(),
            window_start: run.window_start,
            window_end: run.window_end,
        });
        let planned = tokio::select! {
            p = plan::plan(&ctx, watermark) => p,
            lost = &mut heartbeat => Err(lease_lost(lost)),
        };
        let plan = match planned {
            Ok(Planned::Run(plan)) => Ok(plan),
            Ok(Planned::DryRun(_)) => Err(Error::internal("a run planned a dry run")),
            Err(e) => Err(e),
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => return Err(fail_before_fetch(&ctx, &run, heartbeat, e).await),
        };
        (run.kind, run.window_start, run.window_end) = (plan.kind, plan.window.start, plan.window.end);
        if let Err(e) = ctx.warehouse.record_window(&run).await {
            return Err(fail_before_fetch(&ctx, &run, heartbeat, e.into()).await);
        }
        crate::alert::record_run(crate::alert::RunContext {
            run_id: run.run_id.clone(),
            window_start: run.window_start,
            window_end: run.window_end,
        });
        execute(&ctx, run, plan, heartbeat).await
    }
    .instrument(span)
    .await
}

/// What a heartbeat that ended means: the lease was lost (or the task failed).
fn lease_lost(ended: Result<WarehouseError, tokio::task::JoinError>) -> Error {
    match ended {
        Ok(e) => Error::Warehouse(e),
        Err(e) => Error::internal_from("the heartbeat task failed", e),
    }
}

/// A run that failed while planning, lease held: recorded `failed` (which releases the lease), its error returned.
async fn fail_before_fetch<W: Warehouse + 'static>(
    ctx: &RunContext<'_, W>,
    run: &RunStart,
    heartbeat: tokio::task::JoinHandle<WarehouseError>,
    error: Error,
) -> Error {
    heartbeat.abort();
    let usage = ctx.zoho.usage();
    let report = RunReport { api_calls: usage.calls(), api_credits: usage.credits(), ..RunReport::default() };
    if let Err(fe) = ctx.warehouse.fail_run(run, &report, &error_chain::format(&error)).await {
        tracing::warn!(error = %Chain(&fe), "could not record the failed run in sync_runs");
    }
    error
}

/// The part of a run that fetches, holding the lease. Everything logged in it carries the run's `run_id`.
async fn execute<W: Warehouse + 'static>(
    ctx: &RunContext<'_, W>,
    run: RunStart,
    mut plan: RunPlan,
    mut heartbeat: tokio::task::JoinHandle<WarehouseError>,
) -> Result<Outcome, Error> {
    let RunContext { settings, options, zoho, warehouse, .. } = ctx;
    // Custom fields become typed columns (#11): the warehouse adds what is new and records `deal_fields`.
    let standard: Vec<&str> = crate::warehouse::DEAL_COLUMNS.iter().map(|c| c.name).collect();
    let (custom, fields) = crate::zoho::model::field_columns(&plan.fields, &plan.columns, &standard);
    if let Err(e) = warehouse.declare_fields(&fields).await {
        return Err(fail_before_fetch(ctx, &run, heartbeat, e.into()).await);
    }
    let progress = Arc::new(Progress::default());
    let bar = options.progress.then(|| progress::spawn(Arc::clone(&progress), zoho.usage()));
    // Home-currency amounts and won dates (issue #11): see `enrich`.
    let enrich = Arc::new(
        enrich::for_run(
            zoho,
            &**warehouse,
            plan.kind,
            plan.currencies.clone(),
            &plan.won_stages,
            plan.counts,
            settings,
        )
        .await,
    );
    let fetch = fetch::fetch_and_stage(
        zoho,
        warehouse,
        &run,
        fetch::FetchPlan {
            window: plan.window,
            won_stages: &plan.won_stages,
            columns: &plan.columns,
            concurrency: settings.zoho.concurrency,
            flag_unwon: plan.flag_unwon,
            deleted: std::mem::replace(&mut plan.deleted, fetch::Deletions::Read(Vec::new())),
            counts: plan.counts,
            owners: Arc::clone(&plan.owners),
            enrich,
            custom: Arc::new(custom),
        },
        &progress,
    );
    // A heartbeat that finds the lease taken by another run ends the run at once: whatever it staged is
    // never merged (the run that took over covers the window).
    let result = tokio::select! {
        r = fetch => r,
        lost = &mut heartbeat => Err(lease_lost(lost)),
    };
    // Paused while the run commits: `commit` renews the lease for the whole commit, and only while this run
    // still holds it.
    heartbeat.abort();
    if let Some(bar) = bar {
        bar.abort();
        progress::clear();
    }
    finish::finish(ctx, &run, plan, result).await
}

/// Renews the lease every third of its TTL until aborted; ends with [`WarehouseError::LeaseLost`] as soon as
/// a renewal finds another run holding it. Other failures are logged and retried at the next beat (the lease
/// outlives two missed beats).
pub(crate) fn spawn_heartbeat<W: Warehouse + 'static>(
    warehouse: Arc<W>,
    run: RunStart,
    ttl: Duration,
) -> tokio::task::JoinHandle<WarehouseError> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            match warehouse.heartbeat(&run).await {
                Ok(()) => {}
                Err(e @ WarehouseError::LeaseLost { .. }) => {
                    tracing::error!(error = %Chain(&e), "the run lost its lease; stopping without merging");
                    return e;
                }
                Err(e) => tracing::warn!(error = %Chain(&e), "could not renew the run's lease"),
            }
        }
    })
}
