//! Fetching a run's changes and staging them: fetchers page Zoho and send batches through a small bounded
//! channel to one loader task, which stages them in the warehouse while the next pages download.
//!
//! Not here: which window or passes a run makes (`plan`), nor merging and reporting (`finish`).

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::budget;
use super::progress::Progress;
use super::scheduler;
use crate::deal::{DealChange, Window};
use crate::error::Error;
use crate::warehouse::{QuarantinedRecord, RunStart, Warehouse, MAX_QUARANTINED_KEPT};
use crate::zoho::client::ZohoClient;
use crate::zoho::deals::{self, StageFilter, PAGE_SIZE};
use crate::zoho::model;
use crate::zoho::users::OwnerNames;

/// Batches in flight between the fetchers and the loader. Small: memory stays flat however big the window,
/// and a slow warehouse slows the fetchers down instead of filling memory. One: the pages that came back and
/// wait, already mapped, in the scheduler (up to `ZOHO_CONCURRENCY` of them) are the buffer; each batch more
/// here measured ~4 MiB of peak RSS at 1M deals (`make bench`).
const CHANNEL_BATCHES: usize = 1;

/// Staged rows from which the loader begins to merge ahead once paging nears its end
/// ([`Warehouse::merge_ahead`]). Below it the commit's merge takes a few milliseconds and holding the write lock
/// earlier buys nothing.
const MERGE_AHEAD_MIN_ROWS: usize = 4_000;

/// Staged rows one step of the merge ahead takes at most: a page that comes back while it runs waits for it
/// (SQLite merges and writes the history of ~60,000 rows a second here, so ~0.25 s), while the scheduler still
/// asks for the next pages (it holds up to `ZOHO_CONCURRENCY + 1` pages). Side by side at c=10 (70,000 won
/// deals, `make bench`'s realistic latency), 16,000-row steps from 3 rounds before the end beat 8,000-row steps
/// from 4 rounds before it (whose fixed costs added 0.6 s of CPU) and one merge of everything staged once every
/// page was asked for.
const MERGE_STEP_ROWS: usize = 16_000;

/// Rows newly staged before the loader takes another step (each step has a fixed cost: its checks, the ranking
/// of what is staged and its history's lookups).
const MERGE_STEP_MIN_ROWS: usize = 4_000;

/// The records a run could not map: all counted, the first [`MAX_QUARANTINED_KEPT`] kept for the warehouse.
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    pub(crate) count: u64,
    pub(crate) kept: Vec<QuarantinedRecord>,
}

impl Quarantine {
    fn add(&mut self, other: Quarantine) {
        self.count += other.count;
        let room = MAX_QUARANTINED_KEPT.saturating_sub(self.kept.len());
        self.kept.extend(other.kept.into_iter().take(room));
    }
}

/// What fetching hands to the finish.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// The records it could not map.
    pub(crate) quarantine: Quarantine,
    /// Zoho's count of the window's won deals for reconciliation, taken while the last pages downloaded
    /// (`None`: not taken, the finish takes it).
    pub(crate) zoho_won: Option<Result<u64, crate::zoho::Error>>,
}

/// One message from a fetcher to the loader.
struct Batch {
    changes: Vec<DealChange>,
}

/// What to fetch.
#[derive(Debug)]
pub(crate) struct FetchPlan<'a> {
    pub(crate) window: Window,
    pub(crate) won_stages: &'a [String],
    /// The columns of the won-deal query.
    pub(crate) columns: &'a [String],
    pub(crate) concurrency: usize,
    pub(crate) flag_unwon: bool,
    pub(crate) deleted: Deletions,
    pub(crate) counts: Option<budget::Counts>,
    pub(crate) owners: Arc<OwnerNames>,
    /// Home-currency amounts and won dates, applied to each page's changes.
    pub(crate) enrich: Arc<super::enrich::Enrichment>,
    /// The custom fields mapped to typed columns.
    pub(crate) custom: Arc<Vec<model::CustomField>>,
}

/// How a run learns which deals were deleted in Zoho.
#[derive(Debug)]
pub(crate) enum Deletions {
    /// Read while planning (a credit budget plans their cost first).
    Read(Vec<deals::DeletedDeal>),
    /// Read during the run, alongside the passes.
    ReadDuringRun,
    /// Nothing is stored that a deletion could flag or resolve (no deal, no quarantined record: the first run,
    /// a backfill into an empty table), so the list is not read: at 200,000 deals it is a dozen pages. One
    /// one-row page is still asked for, so that a profile that cannot read deleted deals fails the first run
    /// as it would fail every later one. A deal deleted while this run reads it has a deletion time after the
    /// window's end (Zoho's "now" when the run was planned), so the next window, which starts an overlap
    /// before that end, reads it.
    CheckAccessOnly,
}

/// Fetches everything the window needs and stages it; returns the records it could not map and Zoho's
/// reconciliation count.
///
/// Two fetchers, deletions and the scheduler (which pages the won and not-won passes over at most `concurrency`
/// streams), send batches through a bounded channel to one loader task, so pages are staged while the next
/// ones download. If the loader fails, the channel closes
/// and the fetchers stop at their next page; if a fetcher fails, the others are aborted.
pub(crate) async fn fetch_and_stage<W: Warehouse + 'static>(
    zoho: &Arc<ZohoClient>,
    warehouse: &Arc<W>,
    run: &RunStart,
    plan: FetchPlan<'_>,
    progress: &Arc<Progress>,
) -> Result<Fetched, Error> {
    let FetchPlan { window, won_stages, columns, concurrency, flag_unwon, deleted, counts, owners, enrich, custom } =
        plan;
    let (tx, mut rx) = mpsc::channel::<Batch>(CHANNEL_BATCHES);
    // Sent when paging nears its end (see `scheduler::Milestones`): from then on, the loader merges what is staged
    // ahead of the commit, a step at a time, whenever no batch waits to be staged.
    let (near_end_tx, mut near_end) = tokio::sync::oneshot::channel::<()>();
    let loader = {
        let (warehouse, run) = (Arc::clone(warehouse), run.clone());
        tokio::spawn(
            async move {
                // `unmerged`: rows staged since the merge ahead last took all it could.
                let (mut staged, mut unmerged, mut merging, mut told) = (0usize, 0usize, false, false);
                loop {
                    // Staging comes first (a batch that waits holds a page the fetchers could replace with the
                    // next one), and a step takes at most MERGE_STEP_ROWS rows, so a page waits at most one step.
                    // Once every batch is in (the channel closed), the commit merges the rest in one go.
                    let waiting = !rx.is_empty() || rx.is_closed();
                    if merging && !waiting && unmerged >= MERGE_STEP_MIN_ROWS && staged >= MERGE_AHEAD_MIN_ROWS {
                        let took = warehouse.merge_ahead(&run, MERGE_STEP_ROWS).await?;
                        unmerged = if took == 0 { 0 } else { unmerged.saturating_sub(took) };
                        continue;
                    }
                    tokio::select! {
                        biased;
                        near = &mut near_end, if !told => {
                            told = true;
                            merging = near.is_ok();
                            tracing::debug!(staged, merging, "paging is near its end");
                        }
                        batch = rx.recv() => {
                            let Some(batch) = batch else { break };
                            if batch.changes.is_empty() {
                                continue;
                            }
                            warehouse.stage(&run, &batch.changes).await?;
                            staged += batch.changes.len();
                            unmerged += batch.changes.len();
                            tracing::debug!(rows = batch.changes.len(), staged, "staged a batch");
                        }
                    }
                }
                Ok::<usize, Error>(staged)
            }
            .in_current_span(),
        )
    };

    let mut fetchers: JoinSet<Result<Quarantine, Error>> = JoinSet::new();
    let mut fetch_error: Option<Error> = None;
    // Deletions first, so that they are read while the passes are counted and paged. The order in which changes
    // reach staging does not matter: `commit` merges the whole staging at once (won and un-won versions by
    // `modified_time`, then the deletion flags), so a deal both edited and deleted in the window ends deleted
    // whichever was fetched first.
    {
        let (zoho, tx) = (Arc::clone(zoho), tx.clone());
        fetchers.spawn(
            async move {
                let deleted = match deleted {
                    Deletions::Read(read) => read,
                    Deletions::ReadDuringRun => {
                        deals::deleted_since(&zoho, window.start, (concurrency / 2).max(1)).await?
                    }
                    Deletions::CheckAccessOnly => {
                        deals::probe_deleted(&zoho).await?;
                        tracing::debug!("nothing stored to flag: the deleted deals were not read");
                        Vec::new()
                    }
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
    if !flag_unwon {
        tracing::debug!("no stored won deals to flag: skipping the not-won pass");
    }
    // One COUNT per pass (1 credit, or none when the credit budget's plan made them), both at once: the count
    // sizes the pages and bounds what the scheduler may spend on splitting.
    let count = |filter: StageFilter, known: Option<u64>| async move {
        match known {
            Some(n) => Ok(n),
            None => deals::count_matching(zoho, filter, won_stages, window).await,
        }
    };
    // Zoho's count for reconciliation is taken as soon as the last pages are asked for, while they download
    // (a COUNT round trip less after the fetch). The scheduler tells when; if it fails, nothing is counted.
    let (all_asked, asked) = tokio::sync::oneshot::channel::<()>();
    let reconcile = {
        let (zoho, stages) = (Arc::clone(zoho), won_stages.to_vec());
        tokio::spawn(
            async move {
                asked.await.ok()?;
                Some(deals::count_deals(&zoho, &stages, window).await)
            }
            .in_current_span(),
        )
    };
    let won = count(StageFilter::Won, counts.map(|c| c.won));
    let not_won = async {
        match flag_unwon {
            true => count(StageFilter::NotWon, counts.and_then(|c| c.not_won)).await.map(Some),
            false => Ok(None),
        }
    };
    match tokio::try_join!(won, not_won) {
        Ok((won, not_won)) => {
            let mut passes = vec![scheduler::Pass { filter: StageFilter::Won, expected: won }];
            passes.extend(not_won.map(|n| scheduler::Pass { filter: StageFilter::NotWon, expected: n }));
            progress.add_expected(won + not_won.unwrap_or(0));
            tracing::debug!(?passes, concurrency, "paging plan");
            let source = Arc::new(scheduler::ZohoSource {
                client: Arc::clone(zoho),
                won_stages: won_stages.to_vec(),
                columns: columns.to_vec(),
            });
            let (tx, progress, owners, zoho) =
                (tx.clone(), Arc::clone(progress), Arc::clone(&owners), Arc::clone(zoho));
            let stages: Arc<[String]> = won_stages.into();
            let custom = Arc::clone(&custom);
            fetchers.spawn(
                async move {
                    let mut quarantined = Quarantine::default();
                    // Mapped on the blocking pool as it comes back (see `scheduler::run`).
                    // Each record becomes a JSON tree only while it is mapped; its text is freed as it is.
                    let map = move |filter, records: Vec<deals::RawRecord>| {
                        let n = records.len();
                        let records = records.into_iter().map(|r| serde_json::from_str(r.get()).unwrap_or(Value::Null));
                        let (changes, bad) = to_changes(filter, &stages, records, &owners, &custom);
                        (n, changes, bad)
                    };
                    let stats = scheduler::run(
                        source,
                        window,
                        &passes,
                        concurrency,
                        scheduler::Milestones { near_end: Some(near_end_tx), all_asked: Some(all_asked) },
                        map,
                        |_, (n, mut changes, bad)| {
                            progress.page(n);
                            quarantined.add(bad);
                            let (tx, zoho, enrich) = (tx.clone(), Arc::clone(&zoho), Arc::clone(&enrich));
                            async move {
                                enrich.apply(&zoho, &mut changes).await;
                                tx.send(Batch { changes }).await.is_ok()
                            }
                        },
                    )
                    .await?;
                    tracing::debug!(?stats, "passes paged");
                    Ok(quarantined)
                }
                .in_current_span(),
            );
        }
        Err(e) => fetch_error = Some(e.into()),
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
                fetch_error.get_or_insert(Error::internal_from("a fetch task failed", join));
            }
        }
    }
    // All senders are gone now, so the loader drains the channel and ends.
    let loaded = loader.await.map_err(|e| Error::internal_from("the loader task failed", e))?;
    match (loaded, fetch_error) {
        // A warehouse failure explains a fetcher's "channel closed", so it comes first.
        (Err(e), _) | (Ok(_), Some(e)) => {
            reconcile.abort();
            Err(e)
        }
        (Ok(staged), None) => {
            tracing::debug!(staged, "all changes staged");
            let zoho_won = reconcile.await.ok().flatten();
            Ok(Fetched { quarantine: quarantined, zoho_won })
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
    records: impl IntoIterator<Item = Value>,
    owners: &OwnerNames,
    custom: &[model::CustomField],
) -> (Vec<DealChange>, Quarantine) {
    let records = records.into_iter();
    let mut out = Vec::with_capacity(records.size_hint().0);
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
