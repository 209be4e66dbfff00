//! `reconcile`: repairs what nightly windows cannot see. `/Deals/deleted` reaches back only 60 days (120 for
//! permanent deletions), and a deal un-won while no run covered its change can stay "won" in the warehouse
//! forever. This compares the ids of Zoho's won deals with the warehouse's won rows (both restricted to
//! `Modified_Time >= --since` when given) and, for every row Zoho no longer has as won, asks Zoho by id:
//! - still there, in a stage that is not won → the row is flagged `is_closed_won = false` (an un-won change with
//!   Zoho's current `Modified_Time`, so the usual version guard applies);
//! - not there at all → the row is flagged `is_deleted` with a NULL `deleted_time` (Zoho no longer says when).
//!
//! Everything is staged and committed as one run of kind `reconcile` in `sync_runs`, under the same lease as a
//! sync; its window never moves the watermark. Won deals Zoho has and the warehouse lacks are counted and
//! reported (a backfill adds them), not fetched. Cost: 3 credits per 2000 won deals, plus 1 per 100 suspects.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::Settings;
use crate::deal::Window;
use crate::deal::{format_utc, DealChange};
use crate::error::Error;
use crate::error_chain::{self, Chain};
use crate::warehouse::{MergeCounts, RunKind, RunReport, RunStart, Warehouse};
use crate::zoho::client::ZohoClient;
use crate::zoho::deals;

/// What a reconcile run did.
#[derive(Debug, Clone)]
pub struct ReconcileSummary {
    pub run_id: String,
    pub window: Window,
    /// Won deals Zoho has in the window.
    pub zoho_won: u64,
    /// Won rows the warehouse had in the window before the repair.
    pub warehouse_won: u64,
    /// The merge's counts (`unwon` and `deleted` are the repairs).
    pub counts: MergeCounts,
    /// Won deals Zoho has that the warehouse lacks (a backfill adds them).
    pub missing_in_warehouse: u64,
    pub api_calls: u64,
    pub api_credits: u64,
    pub duration: Duration,
}

impl ReconcileSummary {
    /// The one-line summary printed on stdout.
    pub fn line(&self) -> String {
        format!(
            "reconcile {} succeeded: window [{}, {}) zoho_won={} warehouse_won={} unwon={} deleted={} missing_in_warehouse={} api_calls={} credits={} in {:.1}s",
            self.run_id,
            format_utc(&self.window.start),
            format_utc(&self.window.end),
            self.zoho_won,
            self.warehouse_won,
            self.counts.unwon,
            self.counts.deleted,
            self.missing_in_warehouse,
            self.api_calls,
            self.api_credits,
            self.duration.as_secs_f64()
        )
    }
}

/// The changes that repair the warehouse: for each stored won id Zoho does not list as won, what Zoho says now.
pub fn repairs(suspects: &[String], current: &[deals::CurrentStage], won_stages: &[String]) -> Vec<DealChange> {
    suspects
        .iter()
        .filter_map(|id| match current.iter().find(|c| &c.id == id) {
            None => Some(DealChange::Vanished { deal_id: id.clone() }),
            Some(c) if c.stage.as_ref().is_some_and(|s| won_stages.contains(s)) => None,
            Some(c) => Some(DealChange::Unwon {
                deal_id: c.id.clone(),
                stage: c.stage.clone(),
                modified_time: c.modified_time,
            }),
        })
        .collect()
}

/// Runs one reconcile over `[since, Zoho's now)` (all of history without `since`).
pub async fn reconcile<W: Warehouse + 'static>(
    settings: &Settings,
    since: Option<DateTime<Utc>>,
    zoho: Arc<ZohoClient>,
    warehouse: Arc<W>,
) -> Result<ReconcileSummary, Error> {
    let started = Instant::now();
    warehouse.prepare().await?;
    let meta = deals::metadata(&zoho).await?;
    let won_stages = meta.won_stages_or(settings.zoho.won_stages.as_deref())?;
    let now = super::window::floor_to_second(zoho.server_now().unwrap_or_else(Utc::now));
    let window = Window { start: since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH).min(now), end: now };
    let run = RunStart {
        run_id: uuid::Uuid::new_v4().to_string(),
        kind: RunKind::Reconcile,
        // This machine's clock, as for sync runs (which take the lease before they know Zoho's): the ledger
        // orders runs by it.
        started_at: super::window::floor_to_second(Utc::now()),
        window_start: window.start,
        window_end: window.end,
        lease_ttl: chrono::Duration::from_std(settings.lease_ttl).unwrap_or(chrono::Duration::minutes(10)),
    };
    warehouse.begin_run(&run).await?;
    let heartbeat = super::spawn_heartbeat(Arc::clone(&warehouse), run.clone(), settings.lease_ttl);
    // The field metadata is declared as a sync declares it: a field added in Zoho since the last sync gets its
    // column, and the history versions this run writes copy every custom column the stored rows hold.
    let standard: Vec<&str> = crate::warehouse::DEAL_COLUMNS.iter().map(|c| c.name).collect();
    let (_, fields) = crate::zoho::model::field_columns(&meta.fields, &meta.select.columns, &standard);
    let outcome = match warehouse.declare_fields(&fields).await {
        Ok(()) => compare_and_stage(&zoho, warehouse.as_ref(), &run, &won_stages, window).await,
        Err(e) => Err(e.into()),
    };
    let usage = zoho.usage();
    let mut report = RunReport { api_calls: usage.calls(), api_credits: usage.credits(), ..RunReport::default() };
    let result = match outcome {
        Ok(found) => {
            report.zoho_won_count = Some(found.zoho_won);
            match warehouse.commit(&run, &report).await {
                Ok(counts) => Ok((found, counts)),
                Err(e) => {
                    let _ = warehouse.fail_run(&run, &report, &error_chain::format(&e)).await;
                    Err(e.into())
                }
            }
        }
        Err(e) => {
            if let Err(fe) = warehouse.fail_run(&run, &report, &error_chain::format(&e)).await {
                tracing::warn!(error = %Chain(&fe), "could not record the failed reconcile in sync_runs");
            }
            Err(e)
        }
    };
    heartbeat.abort();
    let (found, counts) = result?;
    if found.missing_in_warehouse > 0 {
        tracing::warn!(
            missing = found.missing_in_warehouse,
            "won deals Zoho has that the warehouse lacks; add them with: zoho-deals-sync sync --since {}",
            format_utc(&window.start)
        );
    }
    let summary = ReconcileSummary {
        run_id: run.run_id,
        window,
        zoho_won: found.zoho_won,
        warehouse_won: found.warehouse_won,
        counts,
        missing_in_warehouse: found.missing_in_warehouse,
        api_calls: usage.calls(),
        api_credits: usage.credits(),
        duration: started.elapsed(),
    };
    tracing::info!(
        zoho_won = summary.zoho_won,
        warehouse_won = summary.warehouse_won,
        unwon = counts.unwon,
        deleted = counts.deleted,
        missing_in_warehouse = summary.missing_in_warehouse,
        credits = summary.api_credits,
        "reconcile succeeded"
    );
    Ok(summary)
}

struct Found {
    zoho_won: u64,
    warehouse_won: u64,
    missing_in_warehouse: u64,
}

async fn compare_and_stage<W: Warehouse>(
    zoho: &ZohoClient,
    warehouse: &W,
    run: &RunStart,
    won_stages: &[String],
    window: Window,
) -> Result<Found, Error> {
    let zoho_ids: HashSet<String> = deals::won_ids(zoho, won_stages, window).await?.into_iter().collect();
    let stored: HashSet<String> = warehouse.won_ids_in_window(window.start, window.end).await?.into_iter().collect();
    let mut suspects: Vec<String> = stored.difference(&zoho_ids).cloned().collect();
    suspects.sort_by(|a, b| deals::cmp_ids(a, b));
    tracing::info!(
        zoho_won = zoho_ids.len(),
        warehouse_won = stored.len(),
        suspects = suspects.len(),
        "compared won ids; asking Zoho about the stored won deals it does not list as won"
    );
    let current = deals::current_stages(zoho, &suspects).await?;
    let changes = repairs(&suspects, &current, won_stages);
    if !changes.is_empty() {
        warehouse.stage(run, &changes).await?;
    }
    Ok(Found {
        zoho_won: zoho_ids.len() as u64,
        warehouse_won: stored.len() as u64,
        missing_in_warehouse: zoho_ids.difference(&stored).count() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_suspect_zoho_still_has_unwon_is_unwon_one_it_lacks_vanished_and_one_won_again_is_left() {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid");
        let won = vec!["Closed Won".to_owned()];
        let current = vec![
            deals::CurrentStage { id: "1".into(), stage: Some("Closed Lost".into()), modified_time: t },
            deals::CurrentStage { id: "3".into(), stage: Some("Closed Won".into()), modified_time: t },
        ];
        let changes = repairs(&["1".into(), "2".into(), "3".into()], &current, &won);
        assert_eq!(
            changes,
            vec![
                DealChange::Unwon { deal_id: "1".into(), stage: Some("Closed Lost".into()), modified_time: t },
                DealChange::Vanished { deal_id: "2".into() },
            ]
        );
    }
}
