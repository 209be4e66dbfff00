//! Finishing a run: Zoho's count for reconciliation, then the commit (merge and ledger) or the failure record,
//! the reconciliation warning, and the run's [`Summary`].
//!
//! Not here: planning (`plan`) and fetching (`fetch`).

use super::fetch::Fetched;
use super::plan::RunPlan;
use super::{Outcome, RunContext, Summary};
use crate::deal::{format_utc, Window};
use crate::error::Error;
use crate::warehouse::{MergeCounts, RunKind, RunReport, RunStart, Warehouse};
use crate::zoho::client::ZohoClient;
use crate::zoho::deals::{self, DealQuery, StageFilter, PAGE_SIZE};
use crate::zoho::model;

/// Commits what was fetched (or records the failure), warns when the warehouse holds fewer won deals for the
/// window than Zoho counts, and summarises the run.
pub(crate) async fn finish<W: Warehouse + 'static>(
    ctx: &RunContext<'_, W>,
    run: &RunStart,
    plan: RunPlan,
    result: Result<Fetched, Error>,
) -> Result<Outcome, Error> {
    let RunContext { zoho, started, .. } = ctx;
    let RunPlan { kind, window, won_stages, budget_stop, .. } = plan;
    let usage = zoho.usage();
    let (result, Fetched { quarantine, zoho_won }) = match result {
        Ok(fetched) => (Ok(()), fetched),
        Err(e) => (Err(e), Fetched::default()),
    };
    let mut report = RunReport {
        api_calls: usage.calls(),
        api_credits: usage.credits(),
        deals_quarantined: quarantine.count,
        quarantined: quarantine.kept,
        ..RunReport::default()
    };

    let counts = commit_or_fail(ctx, run, &won_stages, window, (result, zoho_won), &mut report).await?;

    warn_if_short(ctx, &report, counts, &won_stages, window).await;
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

/// Commits the staged changes after taking Zoho's count for reconciliation (a credit-budget stop commits what
/// was fetched and still fails the run); any other failure is recorded with `fail_run`, which releases the
/// lease. Fills `report` with the final call and credit figures.
async fn commit_or_fail<W: Warehouse + 'static>(
    ctx: &RunContext<'_, W>,
    run: &RunStart,
    won_stages: &[String],
    window: Window,
    (result, zoho_won): (Result<(), Error>, Option<Result<u64, crate::zoho::Error>>),
    report: &mut RunReport,
) -> Result<MergeCounts, Error> {
    let RunContext { zoho, warehouse, .. } = ctx;
    let usage = zoho.usage();
    match result {
        Ok(_) => {
            // Reconciliation: Zoho's own count of won deals in the window (taken while the last pages
            // downloaded, or now), compared after the merge.
            let zoho_won = match zoho_won {
                Some(counted) => counted,
                None => deals::count_deals(zoho, won_stages, window).await,
            };
            match zoho_won {
                Ok(n) => report.zoho_won_count = Some(n),
                Err(e) => tracing::warn!(error = %e, "could not count won deals in Zoho for reconciliation"),
            }
            report.api_calls = usage.calls();
            report.api_credits = usage.credits();
            tracing::debug!("merging the staged changes and recording the run");
            match warehouse.commit(run, report).await {
                Ok(counts) => Ok(counts),
                Err(e) => {
                    // Release the lease now rather than after its TTL; the staged rows go with it and the
                    // watermark stays, so the next run redoes this window.
                    if let Err(fe) = warehouse.fail_run(run, report, &e.to_string()).await {
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
            match warehouse.commit(run, report).await {
                Ok(counts) => {
                    tracing::warn!(upserted = counts.upserted, "credit budget reached; merged what was fetched");
                    Err(Error::CreditBudget(why))
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => {
            if let Err(fe) = warehouse.fail_run(run, report, &e.to_string()).await {
                tracing::warn!(error = %fe, "could not record the failed run in sync_runs");
            }
            Err(e)
        }
    }
}

/// Warns when the warehouse holds fewer won deals for the window than Zoho counts, saying whether quarantined
/// records explain the gap; at debug level names the missing ids.
async fn warn_if_short<W: Warehouse + 'static>(
    ctx: &RunContext<'_, W>,
    report: &RunReport,
    counts: MergeCounts,
    won_stages: &[String],
    window: Window,
) {
    let RunContext { zoho, warehouse, .. } = ctx;
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
                log_missing_ids(zoho, warehouse.as_ref(), won_stages, window).await;
            }
        }
    }
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
