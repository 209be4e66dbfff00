//! Planning a run: the window (from the watermark and Zoho's clock), the won stages, which passes to make, and
//! what the credit budget allows. A dry run ends here with its [`Plan`].
//!
//! Not here: fetching (`fetch`), merging and reporting (`finish`).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::budget::{self, BudgetStop};
use super::fetch::Deletions;
use super::{window, Plan, RunContext};
use crate::deal::{format_utc, Window};
use crate::error::Error;
use crate::warehouse::{RunKind, Warehouse};
use crate::zoho::deals;
use crate::zoho::users::OwnerNames;

/// What a run was planned to do, before it takes the lease.
pub(crate) struct RunPlan {
    pub(crate) kind: RunKind,
    pub(crate) window: Window,
    pub(crate) won_stages: Vec<String>,
    /// Make the not-won pass (there are stored won rows to flag).
    pub(crate) flag_unwon: bool,
    /// Deletions already read (with a credit budget), to read during the run, or not needed.
    pub(crate) deleted: Deletions,
    /// Zoho's counts for the window, when the credit budget's plan already made them.
    pub(crate) counts: Option<budget::Counts>,
    pub(crate) budget_stop: Option<BudgetStop>,
    /// Owners' full names by user id (empty when the users API could not be read).
    pub(crate) owners: Arc<OwnerNames>,
    /// The won-deal query's columns (from the field metadata).
    pub(crate) columns: Vec<String>,
    /// The org's currencies (home currency and rates), read with the metadata.
    pub(crate) currencies: crate::zoho::currencies::OrgCurrencies,
    /// The Deals field metadata (custom fields become typed columns).
    pub(crate) fields: Vec<crate::zoho::model::FieldMeta>,
}

/// What planning decided: a run to make, or the plan a dry run prints.
pub(crate) enum Planned {
    Run(RunPlan),
    DryRun(Plan),
}

/// Plans the run from the `watermark` (Zoho's metadata, counts, and with a credit budget the deletions and the fitted window).
pub(crate) async fn plan<W: Warehouse + 'static>(
    ctx: &RunContext<'_, W>,
    watermark: Option<DateTime<Utc>>,
) -> Result<Planned, Error> {
    let RunContext { settings, options, zoho, warehouse, .. } = ctx;
    let (settings, options) = (*settings, *options);
    // With a credit budget every call is planned in turn (the users call only once the counts say there are won
    // deals to store); without one, the calls that do not wait for each other are made together: the users
    // call alongside the field metadata, the currencies alongside the counts.
    let budgeted = options.dry_run || zoho.max_credits().is_some();
    let (meta, early_owners) = match budgeted {
        true => (deals::metadata(zoho).await?, None),
        false => {
            let (meta, owners) = tokio::join!(deals::stage_metadata(zoho), OwnerNames::load(zoho));
            (meta?, Some(owners?))
        }
    };
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
    // Deletions likewise flag stored rows (and end quarantines): with nothing stored, they are not read (see
    // `Deletions::CheckAccessOnly`). Both questions are asked together (on BigQuery each is a query job). The
    // run holds the lease here, so no other run can store anything before this one commits.
    let (flaggable, holds) =
        tokio::join!(warehouse.count_won_in_window(DateTime::<Utc>::UNIX_EPOCH, window.end), warehouse.holds_deals());
    let (flaggable, holds) = match options.dry_run {
        true => (flaggable.unwrap_or(0), holds.unwrap_or(false)),
        false => (flaggable?, holds?),
    };
    let flag_unwon = flaggable > 0;
    let concurrency = settings.zoho.concurrency;

    if options.dry_run {
        let counts = budget::Counts::of(zoho, &won_stages, window, flag_unwon).await?;
        // What this dry run spent (metadata and the counts a run makes too), the first page of deletions, and the
        // pages.
        let estimated_credits = zoho.usage().credits() + 1 + budget::run_credits(counts, concurrency);
        return Ok(Planned::DryRun(Plan {
            kind,
            window,
            won_stages,
            won_deals: counts.won,
            not_won_deals: counts.not_won,
            estimated_credits,
            max_credits: zoho.max_credits(),
            tables: vec![
                "closed_won_deals",
                "closed_won_deals_history",
                "deal_fields",
                "sync_runs",
                "quarantined_deals",
                "staging (dropped after the run)",
            ],
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
            // One page at a time: under a budget, no page is asked for past the end of the list. With nothing
            // stored, only the access is checked (`Deletions::CheckAccessOnly`), here, so that its credit is spent
            // before the window is fitted.
            let deleted = match holds {
                true => deals::deleted_since(zoho, window.start, 1).await.map_err(too_small)?,
                false => {
                    deals::probe_deleted(zoho).await.map_err(too_small)?;
                    Vec::new()
                }
            };
            let deleted = Deletions::Read(deleted);
            // A scheduled run makes progress only past the watermark (its window starts an overlap before it).
            let progress_after = match kind {
                RunKind::Scheduled => watermark,
                RunKind::Backfill | RunKind::Reconcile => None,
            };
            let fitted = budget::fit(zoho, &won_stages, window, flag_unwon, concurrency, limit, progress_after)
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
            (fitted.window, deleted, Some(fitted.counts), stop)
        }
        None => (window, if holds { Deletions::ReadDuringRun } else { Deletions::CheckAccessOnly }, None, None),
    };
    // Owners' full names (COQL gives last names only): one users call, counted in the credit budget's plan and
    // skipped when the plan knows there is no won deal to store.
    let owners = match (early_owners, counts) {
        (Some(owners), _) => owners,
        (None, Some(c)) if c.won == 0 => OwnerNames::default(),
        (None, _) => OwnerNames::load(zoho).await?,
    };
    let owners = Arc::new(owners);
    // Without a budget: the counts that size the passes, and the currencies, together.
    let (counts, currencies) = match counts {
        Some(counts) => (Some(counts), meta.currencies),
        None => {
            let currencies = async {
                match meta.needs_currencies() {
                    true => crate::zoho::currencies::OrgCurrencies::load(zoho).await,
                    false => Ok(meta.currencies.clone()),
                }
            };
            let (counts, currencies) =
                tokio::join!(budget::Counts::of(zoho, &won_stages, window, flag_unwon), currencies);
            (Some(counts?), currencies?)
        }
    };

    let columns = meta.select.columns;
    let fields = meta.fields;
    Ok(Planned::Run(RunPlan {
        kind,
        window,
        won_stages,
        flag_unwon,
        deleted,
        counts,
        budget_stop,
        owners,
        columns,
        currencies,
        fields,
    }))
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
