//! The pipeline: pick the window, learn the won stages, fetch (won deals, deals that left "won", deletions)
//! while loading into the warehouse's staging through a bounded channel, merge, reconcile, report.
//!
//! This module only orchestrates: Zoho specifics live in `zoho/`, storage in `warehouse/`.

pub mod budget;
pub mod progress;
pub mod reconcile;
pub mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::config::Settings;
use crate::deal::{format_utc, DealChange};
use crate::error::Error;
use crate::warehouse::{
    MergeCounts, QuarantinedRecord, RunKind, RunReport, RunStart, Warehouse, WarehouseError, MAX_QUARANTINED_KEPT,
};
use crate::zoho::client::ZohoClient;
use crate::zoho::deals::{self, DealQuery, StageFilter, Window, PAGE_SIZE};
use crate::zoho::model;
use crate::zoho::users::OwnerNames;
use budget::BudgetStop;
use progress::Progress;

/// Batches in flight between the fetchers and the loader. Small: memory stays flat however big the window,
/// and a slow warehouse slows the fetchers down instead of filling memory.
const CHANNEL_BATCHES: usize = 4;

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

/// The records a run could not map: all counted, the first [`MAX_QUARANTINED_KEPT`] kept for the warehouse.
#[derive(Debug, Default)]
struct Quarantine {
    count: u64,
    kept: Vec<QuarantinedRecord>,
}

impl Quarantine {
    fn add(&mut self, other: Quarantine) {
        self.count += other.count;
        let room = MAX_QUARANTINED_KEPT.saturating_sub(self.kept.len());
        self.kept.extend(other.kept.into_iter().take(room));
    }
}

/// One message from a fetcher to the loader.
struct Batch {
    changes: Vec<DealChange>,
}

/// Runs one sync.
pub async fn sync<W: Warehouse + 'static>(
    settings: &Settings,
    options: &SyncOptions,
    zoho: Arc<ZohoClient>,
    warehouse: Arc<W>,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    if !options.dry_run {
        warehouse.prepare().await?;
    }
    let watermark = if options.dry_run {
        // Nothing is written in a dry run, not even the tables: a warehouse without them has no watermark.
        warehouse.watermark().await.ok().flatten()
    } else {
        warehouse.watermark().await?
    };
    let meta = deals::metadata(&zoho).await?;
    // The window ends at Zoho's "now" (its Date header), the clock that stamps Modified_Time.
    let now = window::floor_to_second(zoho.server_now().unwrap_or_else(Utc::now));
    let (kind, window) = window::choose(options, watermark, now, settings.lookback, settings.overlap)?;
    tracing::info!(
        kind = kind.as_str(),
        window_start = %format_utc(&window.start),
        window_end = %format_utc(&window.end),
        watermark = watermark.map(|w| format_utc(&w)).unwrap_or_default(),
        "window chosen"
    );

    let won_stages = meta.won_stages_or(settings.zoho.won_stages.as_deref())?;
    tracing::info!(won_stages = ?won_stages, "won stages");
    warn_beyond_deletion_retention(window, now);

    // The not-won pass only flags rows that are stored as won and older than the window's end. When there are
    // none (the first run, a backfill into an empty table) it would read every open and lost deal of the window
    // for nothing: it is skipped. (A dry run may find no tables yet: nothing stored, then.)
    let flaggable = match options.dry_run {
        true => warehouse.count_won_in_window(DateTime::<Utc>::UNIX_EPOCH, window.end).await.unwrap_or(0),
        false => warehouse.count_won_in_window(DateTime::<Utc>::UNIX_EPOCH, window.end).await?,
    };
    let flag_unwon = flaggable > 0;
    let concurrency = settings.zoho.concurrency;

    if options.dry_run {
        let counts = budget::Counts::of(&zoho, &won_stages, window, flag_unwon).await?;
        // What this dry run spent (metadata and the counts a run makes too), the first page of deletions, and the
        // pages.
        let estimated_credits = zoho.usage().credits() + 1 + budget::run_credits(counts, concurrency);
        return Ok(Outcome::DryRun(Plan {
            kind,
            window,
            won_stages,
            won_deals: counts.won,
            not_won_deals: counts.not_won,
            estimated_credits,
            max_credits: zoho.max_credits(),
            tables: vec!["closed_won_deals", "sync_runs", "quarantined_deals", "staging (dropped after the run)"],
        }));
    }

    // With a credit budget, deletions are read first (their cost is then known) and the window is cut to the
    // longest prefix the rest of the budget pays for.
    let (window, deleted, counts, budget_stop) = match zoho.max_credits() {
        Some(limit) => {
            let too_small = |e: crate::zoho::Error| match e {
                crate::zoho::Error::CreditBudget { spent, limit, next } => Error::CreditBudget(format!(
                    "--max-credits {limit} is too small to plan this run: {spent} credits went on metadata, \
                     deletions and counting and the next call needs {next}; raise --max-credits (SYNC_MAX_CREDITS)"
                )),
                other => other.into(),
            };
            let deleted = deals::deleted_since(&zoho, window.start).await.map_err(too_small)?;
            // A scheduled run makes progress only past the watermark (its window starts an overlap before it).
            let progress_after = match kind {
                RunKind::Scheduled => watermark,
                RunKind::Backfill | RunKind::Reconcile => None,
            };
            let fitted = budget::fit(&zoho, &won_stages, window, flag_unwon, concurrency, limit, progress_after)
                .await
                .map_err(|e| match e {
                    Error::Zoho(z) => too_small(z),
                    other => other,
                })?;
            tracing::debug!(
                estimated = fitted.estimated,
                spent = zoho.usage().credits(),
                limit,
                window_end = %format_utc(&fitted.window.end),
                "credit budget plan"
            );
            let stop = fitted.cut_from.map(|requested_end| BudgetStop { limit, requested_end });
            (fitted.window, Some(deleted), Some(fitted.counts), stop)
        }
        None => (window, None, None, None),
    };
    // Owners' full names (COQL gives last names only): one users call, counted in the credit budget's plan and
    // skipped when the plan knows there is no won deal to store.
    let owners = match counts {
        Some(c) if c.won == 0 => OwnerNames::default(),
        _ => OwnerNames::load(&zoho).await?,
    };
    let owners = Arc::new(owners);

    let run = RunStart {
        run_id: uuid::Uuid::new_v4().to_string(),
        kind,
        started_at: now,
        window_start: window.start,
        window_end: window.end,
        lease_ttl: chrono::Duration::from_std(settings.lease_ttl).unwrap_or(chrono::Duration::minutes(10)),
    };
    let span = tracing::info_span!("run", run_id = %run.run_id);
    crate::alert::record_run(crate::alert::RunContext {
        run_id: run.run_id.clone(),
        window_start: run.window_start,
        window_end: run.window_end,
    });
    let plan = RunPlan { kind, window, won_stages, flag_unwon, deleted, counts, budget_stop, owners };
    execute(settings, options, zoho, warehouse, run, plan, meta, started).instrument(span).await
}

/// What a run was planned to do, before it takes the lease.
struct RunPlan {
    kind: RunKind,
    window: Window,
    won_stages: Vec<String>,
    /// Make the not-won pass (there are stored won rows to flag).
    flag_unwon: bool,
    /// Deletions already read (with a credit budget), else read during the run.
    deleted: Option<Vec<deals::DeletedDeal>>,
    /// Zoho's counts for the window, when the credit budget's plan already made them.
    counts: Option<budget::Counts>,
    budget_stop: Option<BudgetStop>,
    /// Owners' full names by user id (empty when the users API could not be read).
    owners: Arc<OwnerNames>,
}

/// The part of a run that holds the lease. Everything logged in it carries the run's `run_id`.
#[allow(clippy::too_many_arguments)]
async fn execute<W: Warehouse + 'static>(
    settings: &Settings,
    options: &SyncOptions,
    zoho: Arc<ZohoClient>,
    warehouse: Arc<W>,
    run: RunStart,
    plan: RunPlan,
    meta: deals::DealsMetadata,
    started: Instant,
) -> Result<Outcome, Error> {
    let RunPlan { kind, window, won_stages, flag_unwon, deleted, counts, budget_stop, owners } = plan;
    // Custom fields become typed columns (#11): the warehouse adds what is new and records `deal_fields`.
    let standard: Vec<&str> = crate::warehouse::DEAL_COLUMNS.iter().map(|c| c.name).collect();
    let (custom, fields) = model::field_columns(&meta.fields, &meta.select.columns, &standard);
    warehouse.declare_fields(&fields).await?;
    warehouse.begin_run(&run).await?;
    let heartbeat = spawn_heartbeat(Arc::clone(&warehouse), run.clone(), settings.lease_ttl);

    let columns = meta.select.columns.clone();
    let progress = Arc::new(Progress::default());
    let bar = options.progress.then(|| progress::spawn(Arc::clone(&progress), zoho.usage()));
    let fetch = fetch_and_stage(
        &zoho,
        &warehouse,
        &run,
        FetchPlan {
            window,
            won_stages: &won_stages,
            columns: &columns,
            concurrency: settings.zoho.concurrency,
            flag_unwon,
            deleted,
            counts,
            owners,
            custom: Arc::new(custom),
        },
        &progress,
    );
    // A heartbeat that finds the lease taken by another run ends the run at once: whatever it staged is
    // never merged (the run that took over covers the window).
    let mut heartbeat = heartbeat;
    let result = tokio::select! {
        r = fetch => r,
        lost = &mut heartbeat => Err(match lost {
            Ok(e) => Error::Warehouse(e),
            Err(e) => Error::Internal(format!("the heartbeat task failed: {e}")),
        }),
    };
    // Paused while the run commits: `commit` renews the lease for the whole commit, and only while this run
    // still holds it.
    heartbeat.abort();
    if let Some(bar) = bar {
        bar.abort();
        progress::clear();
    }
    let usage = zoho.usage();
    let (result, quarantine) = match result {
        Ok(q) => (Ok(()), q),
        Err(e) => (Err(e), Quarantine::default()),
    };
    let mut report = RunReport {
        api_calls: usage.calls(),
        api_credits: usage.credits(),
        deals_quarantined: quarantine.count,
        quarantined: quarantine.kept,
        ..RunReport::default()
    };

    let outcome = match result {
        Ok(_) => {
            // Reconciliation: Zoho's own count of won deals in the window, compared after the merge.
            match deals::count_deals(&zoho, &won_stages, window).await {
                Ok(n) => report.zoho_won_count = Some(n),
                Err(e) => tracing::warn!(error = %e, "could not count won deals in Zoho for reconciliation"),
            }
            report.api_calls = usage.calls();
            report.api_credits = usage.credits();
            tracing::debug!("merging the staged changes and recording the run");
            match warehouse.commit(&run, &report).await {
                Ok(counts) => Ok(counts),
                Err(e) => {
                    // Release the lease now rather than after its TTL; the staged rows go with it and the
                    // watermark stays, so the next run redoes this window.
                    if let Err(fe) = warehouse.fail_run(&run, &report, &e.to_string()).await {
                        tracing::warn!(error = %fe, "could not record the failed run in sync_runs");
                    }
                    Err(e.into())
                }
            }
        }
        Err(Error::Zoho(crate::zoho::Error::CreditBudget { spent, limit, next })) => {
            let why = format!(
                "{spent} of {limit} credits spent (retries count too, and deals that appeared after the count), \
                 the next call needed {next}; what was \
                 fetched is merged and the run is recorded failed, so the next run covers this window again"
            );
            report.incomplete = Some(format!("credit budget reached: {why}"));
            match warehouse.commit(&run, &report).await {
                Ok(counts) => {
                    tracing::warn!(upserted = counts.upserted, "credit budget reached; merged what was fetched");
                    Err(Error::CreditBudget(why))
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => {
            if let Err(fe) = warehouse.fail_run(&run, &report, &e.to_string()).await {
                tracing::warn!(error = %fe, "could not record the failed run in sync_runs");
            }
            Err(e)
        }
    };
    let counts = outcome?;

    if let Some(z) = report.zoho_won_count {
        if counts.won_in_window < z {
            let quarantined = report.deals_quarantined + counts.refused;
            if quarantined > 0 {
                // Zoho counts a quarantined won deal, the warehouse does not hold it (or holds an older version):
                // the gap is expected, and the quarantine names each deal.
                let ids: Vec<&str> = report.quarantined.iter().take(20).map(|q| q.deal_id.as_str()).collect();
                tracing::warn!(
                    zoho_won = z,
                    warehouse_won = counts.won_in_window,
                    missing = z - counts.won_in_window,
                    quarantined,
                    quarantined_ids = %ids.join(","),
                    "reconciliation: the warehouse holds fewer won deals for this window than Zoho counts, and {quarantined} \
                     records were quarantined in this run (see quarantined_deals): a quarantined won deal is counted by Zoho \
                     but not stored, so up to {quarantined} of the gap are those; fix them in Zoho and their next edit brings them in"
                );
            } else {
                tracing::warn!(
                    zoho_won = z,
                    warehouse_won = counts.won_in_window,
                    missing = z - counts.won_in_window,
                    "reconciliation: the warehouse holds fewer won deals for this window than Zoho counts; \
                     the next run's overlap normally closes this (deals edited during the run); if it persists, backfill the window"
                );
            }
            if tracing::enabled!(tracing::Level::DEBUG) {
                log_missing_ids(&zoho, warehouse.as_ref(), &won_stages, window).await;
            }
        }
    }
    let summary = Summary {
        run_id: run.run_id.clone(),
        kind,
        window,
        won_stages,
        counts,
        // Rows the warehouse refused were quarantined by the commit: they count like unmappable records (exit 8).
        report: RunReport {
            warehouse_won_count: Some(counts.won_in_window),
            deals_quarantined: report.deals_quarantined + counts.refused,
            ..report
        },
        duration: started.elapsed(),
        budget_stop,
    };
    tracing::info!(
        window_start = %format_utc(&window.start),
        window_end = %format_utc(&window.end),
        upserted = counts.upserted,
        unwon = counts.unwon,
        deleted = counts.deleted,
        quarantined = summary.report.deals_quarantined,
        zoho_won = summary.report.zoho_won_count,
        warehouse_won = counts.won_in_window,
        api_calls = summary.report.api_calls,
        credits = summary.report.api_credits,
        duration_ms = summary.duration.as_millis() as u64,
        "run succeeded"
    );
    if let Some(stop) = &summary.budget_stop {
        let next = match kind {
            RunKind::Scheduled => {
                format!("the next scheduled run continues from {} (less SYNC_OVERLAP)", format_utc(&window.end))
            }
            RunKind::Backfill | RunKind::Reconcile => format!(
                "to finish the backfill, run: zoho-deals-sync sync --since {} --until {}",
                format_utc(&window.end),
                format_utc(&stop.requested_end)
            ),
        };
        tracing::warn!(
            max_credits = stop.limit,
            window_end = %format_utc(&window.end),
            requested_end = %format_utc(&stop.requested_end),
            "credit budget: this run covered the window up to {} of the {} asked for, and committed it; {next}",
            format_utc(&window.end),
            format_utc(&stop.requested_end),
        );
    }
    Ok(Outcome::Synced(summary))
}

/// Zoho lists deletions for 60 days (recycle bin) and 120 days (permanent: docs/zoho-api.md §3e); this job
/// warns 5 days early.
const DELETION_RETENTION_WARN_DAYS: i64 = 55;

/// A window reaching further back than Zoho lists deletions cannot learn of the older ones: says so, and what
/// repairs it (`reconcile`).
fn warn_beyond_deletion_retention(window: Window, now: DateTime<Utc>) {
    let days = (now - window.start).num_days();
    if days > DELETION_RETENTION_WARN_DAYS {
        tracing::warn!(
            window_start = %format_utc(&window.start),
            days,
            "this window starts more than {DELETION_RETENTION_WARN_DAYS} days back: Zoho lists deleted deals for 60 days \
             (recycle bin) or 120 days (permanently deleted) only, so older deletions are not seen by a sync; run \
             `zoho-deals-sync reconcile` to flag them"
        );
    }
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
                    tracing::error!(error = %e, "the run lost its lease; stopping without merging");
                    return e;
                }
                Err(e) => tracing::warn!(error = %e, "could not renew the run's lease"),
            }
        }
    })
}

/// What to fetch.
#[derive(Debug)]
struct FetchPlan<'a> {
    window: Window,
    won_stages: &'a [String],
    /// The columns of the won-deal query.
    columns: &'a [String],
    concurrency: usize,
    flag_unwon: bool,
    deleted: Option<Vec<deals::DeletedDeal>>,
    counts: Option<budget::Counts>,
    owners: Arc<OwnerNames>,
    /// The custom fields mapped to typed columns.
    custom: Arc<Vec<model::CustomField>>,
}

/// Fetches everything the window needs and stages it; returns the records it could not map.
///
/// Fetchers (one per time slice and stage filter, plus deletions) send batches through a bounded channel to
/// one loader task, so pages are staged while the next ones download. If the loader fails, the channel closes
/// and the fetchers stop at their next page; if a fetcher fails, the others are aborted.
async fn fetch_and_stage<W: Warehouse + 'static>(
    zoho: &Arc<ZohoClient>,
    warehouse: &Arc<W>,
    run: &RunStart,
    plan: FetchPlan<'_>,
    progress: &Arc<Progress>,
) -> Result<Quarantine, Error> {
    let FetchPlan { window, won_stages, columns, concurrency, flag_unwon, deleted, counts, owners, custom } = plan;
    let (tx, mut rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let loader = {
        let (warehouse, run) = (Arc::clone(warehouse), run.clone());
        tokio::spawn(
            async move {
                let mut staged = 0usize;
                while let Some(batch) = rx.recv().await {
                    if batch.changes.is_empty() {
                        continue;
                    }
                    warehouse.stage(&run, &batch.changes).await?;
                    staged += batch.changes.len();
                    tracing::debug!(rows = batch.changes.len(), staged, "staged a batch");
                }
                Ok::<usize, Error>(staged)
            }
            .in_current_span(),
        )
    };

    let mut fetchers: JoinSet<Result<Quarantine, Error>> = JoinSet::new();
    let mut fetch_error: Option<Error> = None;
    let filters: &[StageFilter] =
        if flag_unwon { &[StageFilter::Won, StageFilter::NotWon] } else { &[StageFilter::Won] };
    if !flag_unwon {
        tracing::debug!("no stored won deals to flag: skipping the not-won pass");
    }
    for &filter in filters {
        // Keyset paging is sequential within a window, so concurrency comes from slicing the window by time;
        // one COUNT (1 credit, or none when the credit budget's plan made it) sizes the pages and slices.
        let known = counts.and_then(|c| match filter {
            StageFilter::Won => Some(c.won),
            StageFilter::NotWon => c.not_won,
        });
        let expected = match known {
            Some(n) => n,
            None => match deals::count_matching(zoho, filter, won_stages, window).await {
                Ok(n) => n,
                Err(e) => {
                    fetch_error = Some(e.into());
                    break;
                }
            },
        };
        progress.add_expected(expected);
        let (slices, page_size) = deals::plan_pages(expected, concurrency);
        tracing::debug!(?filter, expected, slices, page_size, "paging plan");
        for slice in window.slices(slices) {
            let (zoho, tx, stages, progress, owners) =
                (Arc::clone(zoho), tx.clone(), won_stages.to_vec(), Arc::clone(progress), Arc::clone(&owners));
            let custom = Arc::clone(&custom);
            let cols: Vec<String> = match filter {
                StageFilter::Won => columns.to_vec(),
                StageFilter::NotWon => vec!["id".into(), "Stage".into(), "Modified_Time".into()],
            };
            fetchers.spawn(
                async move {
                    let mut quarantined = Quarantine::default();
                    let q = DealQuery { columns: &cols, filter, stages: &stages, window: slice, page_size };
                    deals::page_deals(&zoho, &q, |records| {
                        progress.page(records.len());
                        let (changes, bad) = to_changes(filter, &stages, records, &owners, &custom);
                        quarantined.add(bad);
                        let tx = tx.clone();
                        async move { tx.send(Batch { changes }).await.is_ok() }
                    })
                    .await?;
                    Ok(quarantined)
                }
                .in_current_span(),
            );
        }
    }
    {
        let (zoho, tx) = (Arc::clone(zoho), tx.clone());
        fetchers.spawn(
            async move {
                let deleted = match deleted {
                    Some(read) => read,
                    None => deals::deleted_since(&zoho, window.start).await?,
                };
                let changes: Vec<DealChange> = deleted
                    .into_iter()
                    .map(|d| DealChange::Deleted { deal_id: d.id, deleted_time: d.deleted_time })
                    .collect();
                for chunk in changes.chunks(PAGE_SIZE as usize) {
                    if tx.send(Batch { changes: chunk.to_vec() }).await.is_err() {
                        break;
                    }
                }
                Ok(Quarantine::default())
            }
            .in_current_span(),
        );
    }
    drop(tx);

    let mut quarantined = Quarantine::default();
    if fetch_error.is_some() {
        fetchers.abort_all();
    }
    while let Some(joined) = fetchers.join_next().await {
        match joined {
            Ok(Ok(q)) => quarantined.add(q),
            Ok(Err(e)) => {
                if fetch_error.is_none() {
                    fetch_error = Some(e);
                    fetchers.abort_all();
                }
            }
            Err(join) if join.is_cancelled() => {}
            Err(join) => {
                fetch_error.get_or_insert(Error::Internal(format!("a fetch task failed: {join}")));
            }
        }
    }
    // All senders are gone now, so the loader drains the channel and ends.
    let loaded = loader.await.map_err(|e| Error::Internal(format!("the loader task failed: {e}")))?;
    match (loaded, fetch_error) {
        // A warehouse failure explains a fetcher's "channel closed", so it comes first.
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(e),
        (Ok(staged), None) => {
            tracing::debug!(staged, "all changes staged");
            Ok(quarantined)
        }
    }
}

/// Maps a page to changes (owners get their full names); returns them and the records it could not map.
/// Defence in depth: a record from the won query is stored as won only if its Stage is in `won_stages` (the
/// query asked for those, but an answer is not trusted to have obeyed); anything else is quarantined with the
/// reason instead of becoming a won row.
fn to_changes(
    filter: StageFilter,
    won_stages: &[String],
    records: Vec<Value>,
    owners: &OwnerNames,
    custom: &[model::CustomField],
) -> (Vec<DealChange>, Quarantine) {
    let mut out = Vec::with_capacity(records.len());
    let mut bad = Quarantine::default();
    for record in records {
        let mapped = match filter {
            StageFilter::Won => model::to_deal_with(&record, custom).and_then(|d| {
                // Compared ignoring case and surrounding spaces: whether COQL's `Stage in (...)` matches
                // case-insensitively is UNCONFIRMED, and a ZOHO_WON_STAGES typed in another case must not
                // quarantine every won deal.
                let stage = d.stage.as_deref().unwrap_or("").trim();
                if won_stages.iter().any(|w| w.trim().eq_ignore_ascii_case(stage) && !stage.is_empty()) {
                    let mut d = d;
                    owners.apply(&mut d);
                    model::apply_user_names(&mut d, custom, |id| owners.get(id).map(str::to_owned));
                    Ok(DealChange::Won(d))
                } else {
                    Err(model::Quarantined {
                        reason: format!(
                            "came back from the won-deals query with Stage {:?}, which is not one of the won stages {won_stages:?}; not stored as won",
                            d.stage.as_deref().unwrap_or("")
                        ),
                        deal_id: d.deal_id,
                        field: "Stage".into(),
                    })
                }
            }),
            StageFilter::NotWon => model::to_deal(&record).map(|d| DealChange::Unwon {
                deal_id: d.deal_id,
                stage: d.stage,
                modified_time: d.modified_time,
            }),
        };
        match mapped {
            Ok(change) => out.push(change),
            Err(q) => {
                tracing::warn!(deal_id = %q.deal_id, field = %q.field, reason = %q.reason, "quarantined a record");
                bad.count += 1;
                // A record without a readable id cannot be keyed (nor fixed by its next edit): logged and counted.
                if q.deal_id != model::UNKNOWN_ID && bad.kept.len() < MAX_QUARANTINED_KEPT {
                    bad.kept.push(QuarantinedRecord::new(q.deal_id, q.field, q.reason, record.to_string()));
                }
            }
        }
    }
    (out, bad)
}

/// At debug level, names the won deals Zoho has in the window that the warehouse lacks.
async fn log_missing_ids<W: Warehouse>(zoho: &ZohoClient, warehouse: &W, stages: &[String], window: Window) {
    let mut zoho_ids = Vec::new();
    let cols = vec!["id".to_owned()];
    let q = DealQuery { columns: &cols, filter: StageFilter::Won, stages, window, page_size: PAGE_SIZE };
    let res = deals::page_deals(zoho, &q, |records| {
        zoho_ids.extend(records.iter().filter_map(model::record_id));
        async { true }
    })
    .await;
    if let Err(e) = res {
        tracing::debug!(error = %e, "could not list Zoho ids for reconciliation");
        return;
    }
    match warehouse.won_ids_in_window(window.start, window.end).await {
        Ok(have) => {
            let have: std::collections::HashSet<String> = have.into_iter().collect();
            let missing: Vec<&String> = zoho_ids.iter().filter(|id| !have.contains(*id)).take(1000).collect();
            tracing::debug!(missing = ?missing, "won deal ids in Zoho but not in the warehouse for this window");
        }
        Err(e) => tracing::debug!(error = %e, "could not list warehouse ids for reconciliation"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, stage: &str) -> Value {
        serde_json::json!({"id": id, "Deal_Name": "d", "Stage": stage, "Modified_Time": "2026-11-01T10:00:00+00:00"})
    }

    #[test]
    fn a_record_from_the_won_query_outside_the_won_set_is_quarantined_not_stored_as_won() {
        let won = vec!["Closed Won".to_owned()];
        let records =
            vec![record("1", "Closed Won"), record("2", "Negotiation"), record("3", ""), record("4", "closed won")];
        let (changes, bad) = to_changes(StageFilter::Won, &won, records, &OwnerNames::default(), &[]);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(&changes[0], DealChange::Won(d) if d.deal_id == "1"));
        assert!(matches!(&changes[1], DealChange::Won(d) if d.deal_id == "4"), "case does not matter");
        assert_eq!(bad.count, 2);
        let q = bad.kept.iter().find(|q| q.deal_id == "2").expect("2 is kept");
        assert_eq!(q.field, "Stage");
        assert!(q.reason.contains("Negotiation") && q.reason.contains("Closed Won"), "{}", q.reason);
    }
}
