//! What a run adds to each won deal besides Zoho's record (issue #11): its amounts in the home currency, and the
//! candidate won date the merge uses when the deal becomes won in this run.
//!
//! **The won date.** A deal *becomes won in this run* when the warehouse does not hold it as won at the run's
//! start (a new row, or a row un-won since). For those, in scheduled runs after the first, the job reads Zoho's
//! stage history (`zoho::stage_history`, one credit per deal) — at most `SYNC_STAGE_HISTORY_MAX` (default 200)
//! per run and, with `--max-credits`, only from the credits the run's plan leaves over — and the won date is
//! when the deal last entered a won stage (`stage_history`). Past the cap, or when the history has no answer or
//! cannot be read, the won date is the `Modified_Time` of this version (`observed`: the first version the job
//! saw in a won stage). The first run and backfills read no history: their new deals are mostly old wins (a
//! backfill of 70,000 won deals would cost 70,000 credits), so their won date is `unknown`.
//!
//! Every won change carries a candidate; the merge keeps the stored won date of a row that is already won (an
//! edit never moves it) and takes the candidate for a new row or a re-won one (a re-win after an un-win gets
//! the new entry time). So a rerun of a window, or an overlap, never changes a won date.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::deal::{DealChange, WonAt, WonAtSource};
use crate::warehouse::{RunKind, Warehouse};
use crate::zoho::client::ZohoClient;
use crate::zoho::currencies::OrgCurrencies;
use crate::zoho::{stage_history, Error as ZohoError};

/// Credits kept back from stage-history reads under a credit budget: the reconciliation count after the fetch.
const BUDGET_RESERVE: u64 = 1;

/// The run's enrichment of won deals. Shared by the fetchers.
#[derive(Debug)]
pub struct Enrichment {
    currencies: OrgCurrencies,
    won_stages: Vec<String>,
    /// Ids stored as won (and not deleted) when the run started.
    stored_won: HashSet<String>,
    /// The won-date source of a deal that becomes won without a stage-history answer.
    fallback: WonAtSource,
    /// Stage-history reads left to this run.
    reads_left: AtomicU64,
}

impl Enrichment {
    /// Plans the run's enrichment. Never fails: when the stored won ids cannot be read, no history is read and
    /// every new win is `observed` (the merge still keeps the won date of rows already won).
    ///
    /// `history_allowance`: how many stage-history reads the run may make (the cap, lowered by the credit
    /// budget's leftover: see [`history_allowance`]).
    pub async fn plan<W: Warehouse>(
        warehouse: &W,
        kind: RunKind,
        currencies: OrgCurrencies,
        won_stages: &[String],
        history_allowance: u64,
    ) -> Enrichment {
        let first_run = matches!(warehouse.watermark().await, Ok(None));
        let (fallback, reads) = match kind {
            RunKind::Scheduled if !first_run => (WonAtSource::Observed, history_allowance),
            _ => (WonAtSource::Unknown, 0),
        };
        let stored_won = match reads {
            0 => HashSet::new(),
            _ => match warehouse.won_ids_in_window(DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::MAX_UTC).await {
                Ok(ids) => ids.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not list the stored won deals: no stage history this run, new wins get won_at_source = observed");
                    return Enrichment::new(currencies, won_stages, HashSet::new(), fallback, 0);
                }
            },
        };
        Enrichment::new(currencies, won_stages, stored_won, fallback, reads)
    }

    fn new(
        currencies: OrgCurrencies,
        won_stages: &[String],
        stored_won: HashSet<String>,
        fallback: WonAtSource,
        reads: u64,
    ) -> Enrichment {
        tracing::debug!(fallback = fallback.as_str(), stage_history_reads = reads, "won-date plan");
        Enrichment {
            currencies,
            won_stages: won_stages.iter().map(|s| s.trim().to_lowercase()).collect(),
            stored_won,
            fallback,
            reads_left: AtomicU64::new(reads),
        }
    }

    /// Adds the home-currency amounts and the candidate won date to every won change of a page. The page's
    /// stage-history reads are made all at once (the client's `ZOHO_CONCURRENCY` limit bounds them), so a
    /// nightly run's reads take `reads / concurrency` round trips, not one each.
    pub async fn apply(self: &Arc<Self>, zoho: &Arc<ZohoClient>, changes: &mut [DealChange]) {
        let mut reads = JoinSet::new();
        for (i, change) in changes.iter_mut().enumerate() {
            let DealChange::Won(deal) = change else { continue };
            self.currencies.apply(deal);
            // The candidate until (and unless) the stage history answers.
            deal.won = match self.fallback {
                WonAtSource::Observed => WonAt { at: Some(deal.modified_time), source: WonAtSource::Observed },
                _ => WonAt { at: None, source: WonAtSource::Unknown },
            };
            // Already won in the warehouse: the merge keeps its won date whatever is staged.
            if self.stored_won.contains(&deal.deal_id) || self.reads_left.load(Ordering::SeqCst) == 0 {
                continue;
            }
            let (this, zoho, deal_id) = (Arc::clone(self), Arc::clone(zoho), deal.deal_id.clone());
            reads.spawn(async move { (i, this.won_at_from_history(&zoho, &deal_id).await) }.in_current_span());
        }
        while let Some(joined) = reads.join_next().await {
            match joined {
                Ok((i, Some(won))) => {
                    if let Some(DealChange::Won(deal)) = changes.get_mut(i) {
                        deal.won = won;
                    }
                }
                Ok((_, None)) => {}
                // A read that panicked leaves its deal `observed`, as a failed read does.
                Err(e) => tracing::warn!(error = %e, "a stage-history read failed: won_at_source = observed"),
            }
        }
    }

    /// The won date from the deal's stage history, if this run may still read one and it answers.
    async fn won_at_from_history(&self, zoho: &ZohoClient, deal_id: &str) -> Option<WonAt> {
        let took = self.reads_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if !took {
            return None;
        }
        match stage_history::read(zoho, deal_id).await {
            Ok(history) => {
                let at = stage_history::won_since(history, |s| self.won_stages.contains(&s.trim().to_lowercase()));
                if at.is_none() {
                    tracing::debug!(deal_id, "the stage history does not show the deal entering its won stage");
                }
                at.map(|at| WonAt { at: Some(at), source: WonAtSource::StageHistory })
            }
            Err(e) => {
                // The won date is an enrichment: no failure here fails the run. A failure that would fail every
                // further read too stops them.
                if matches!(
                    e,
                    ZohoError::CreditBudget { .. }
                        | ZohoError::CreditsExhausted { .. }
                        | ZohoError::InvalidCredentials(_)
                        | ZohoError::TokenThrottled(_)
                        | ZohoError::ScopeMismatch { .. }
                        | ZohoError::PermissionDenied { .. }
                        | ZohoError::RateLimited { .. }
                ) {
                    self.reads_left.store(0, Ordering::SeqCst);
                }
                tracing::warn!(deal_id, error = %e, "could not read the deal's stage history: won_at_source = observed");
                None
            }
        }
    }
}

/// The enrichment of one run (the hook `sync::execute` calls once the run holds the lease).
pub async fn for_run<W: Warehouse>(
    zoho: &ZohoClient,
    warehouse: &W,
    kind: RunKind,
    currencies: OrgCurrencies,
    won_stages: &[String],
    counts: Option<super::budget::Counts>,
    settings: &crate::config::Settings,
) -> Enrichment {
    let budget = zoho.max_credits().map(|limit| {
        let planned = counts.map_or(u64::MAX / 4, |c| super::budget::run_credits(c, settings.zoho.concurrency));
        (limit, zoho.usage().credits(), planned)
    });
    let allowance = history_allowance(settings.stage_history_max, budget);
    Enrichment::plan(warehouse, kind, currencies, won_stages, allowance).await
}

/// How many stage-history reads a run may make: `cap` (`SYNC_STAGE_HISTORY_MAX`), and under a credit budget only
/// what the plan leaves: `limit − spent − planned − reserve` (`planned`: the credits the rest of the fetch may
/// take, from the budget's plan; unknown without a budget, when no budget applies anyway).
pub fn history_allowance(cap: u64, budget: Option<(u64, u64, u64)>) -> u64 {
    match budget {
        None => cap,
        Some((limit, spent, planned)) => cap.min(limit.saturating_sub(spent + planned + BUDGET_RESERVE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_budget_the_cap_is_the_allowance_and_a_budget_only_lends_its_leftover() {
        assert_eq!(history_allowance(200, None), 200);
        assert_eq!(history_allowance(200, Some((100, 10, 50))), 39);
        assert_eq!(history_allowance(20, Some((100, 10, 50))), 20);
        assert_eq!(history_allowance(200, Some((60, 10, 50))), 0, "a budget the plan uses up lends nothing");
    }
}
