//! The warehouse boundary: where deals are stored, and the contract every implementation keeps.
//!
//! Two real implementations: [`sqlite::SqliteWarehouse`] (the embedded default) and
//! [`bigquery::BigQueryWarehouse`] (production). One conformance suite (`tests/integration/conformance.rs`)
//! runs the same behavioural tests against both. Nothing here knows about Zoho: it stores [`DealChange`]s.
//!
//! # The contract
//! - **At-least-once delivery.** A batch handed to [`Warehouse::stage`] may be handed again (a retry, a rerun
//!   of the same window after a crash). Staging is append-only and the merge de-duplicates by `deal_id`, so
//!   redelivery is harmless.
//! - **Upsert by `deal_id`, guarded by `modified_time`.** The merge never lets an older `modified_time`
//!   overwrite a newer row; an equal one is applied again (idempotent).
//! - **Un-won and deleted deals are flags, not deletes.** [`DealChange::Unwon`] sets `is_closed_won = false`
//!   on an existing row (never creates one); [`DealChange::Deleted`] sets `is_deleted` and `deleted_time`;
//!   [`DealChange::Vanished`] sets `is_deleted` with a NULL `deleted_time` on a row not yet flagged deleted.
//! - **The watermark is never ahead of merged data.** A run is recorded as `succeeded` only after its changes
//!   are merged ([`Warehouse::commit`]); the watermark is derived from succeeded runs only, so a crash at any
//!   point followed by a rerun yields the same final table.
//! - **One run at a time.** [`Warehouse::begin_run`] takes a lease (with a TTL, renewed by
//!   [`Warehouse::heartbeat`]); a second run while the lease is live gets [`WarehouseError::Busy`] and writes
//!   nothing. The lease is one the warehouse itself serialises (BigQuery: a compare-and-set `UPDATE` of a
//!   one-row table; SQLite: `BEGIN IMMEDIATE`), because two merges that both *insert* the same new deal would
//!   store it twice on BigQuery. A run whose lease expired and was taken over gets
//!   [`WarehouseError::LeaseLost`] from its heartbeat and from its commit, which then merges nothing and does not
//!   record success. A run that dies leaves a lease that expires after the lease TTL.
//! - **Nothing staged is lost silently.** `commit` merges only after checking that the warehouse holds every
//!   change the run staged; otherwise it fails and the watermark stays.
//! - **Nothing unreadable is dropped silently.** A record the job could not map is kept in `quarantined_deals`
//!   (deal id, field, reason, the record as received), one row per deal, the latest quarantine wins; the row
//!   goes once a run stages a readable version of that deal (won, un-won or deleted). Written by [`Warehouse::commit`] from [`RunReport::quarantined`].

pub mod any;
pub mod bigquery;
pub mod columns;
pub mod sqlite;

use crate::deal::CellType;
pub use columns::{Column, DEAL_COLUMNS};

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::deal::DealChange;
use crate::error_chain::BoxError;

/// Columns the merge does not copy from a staged won version when the stored row is already won: the won date
/// is set when a row is inserted or an un-won row is won again, and never moved by an edit.
pub const WON_AT_COLUMNS: &[&str] = &["won_at", "won_at_source"];

/// `closed_won_deals_history` (issue #11, part B): one row per version of a deal the job stored, written in the
/// same commit as `closed_won_deals`. Its columns: [`HISTORY_META_COLUMNS`], then every column of
/// [`DEAL_COLUMNS`] but `raw` (the typed columns; `run_id` is the run that stored the version).
///
/// A version is the state `(modified_time, is_closed_won, is_deleted, deleted_time)` of a row. After the merge,
/// the commit (1) closes the current version of every deal this run wrote whose state changed (`valid_to` = the
/// new version's `valid_from`, `is_current = false`), then (2) inserts the new state as the current version
/// unless a current version with that state exists. Both steps are idempotent and converge after a crash
/// between them (a rerun's merge stamps the same rows again); a rerun or an overlapping window re-applies equal
/// versions, which change no state, so no version is written twice. `valid_from` is Zoho's time of the
/// version: `modified_time`, or `deleted_time` for a deletion (the commit time when Zoho no longer says).
/// `change`: `won` (first stored, or won again after an un-win or deletion), `edited`, `unwon`, `deleted`.
pub const HISTORY_TABLE: &str = "closed_won_deals_history";

/// The history table's own columns, before the deal columns.
pub const HISTORY_META_COLUMNS: &[Column] = &[
    Column::merge("deal_id", CellType::Text, "Zoho record id (19 digits, as text)"),
    Column::merge(
        "valid_from",
        CellType::Timestamp,
        "Zoho's time of this version: modified_time, or deleted_time for a deletion",
    ),
    Column::merge("valid_to", CellType::Timestamp, "When the next version replaced this one (NULL while current)"),
    Column::merge("is_current", CellType::Bool, "True for the deal's newest version"),
    Column::merge("change", CellType::Text, "won | edited | unwon | deleted: what this version changed"),
];

/// The deal columns the history copies (every one but the key, already in [`HISTORY_META_COLUMNS`], and `raw`).
pub fn history_deal_columns() -> impl Iterator<Item = &'static Column> {
    DEAL_COLUMNS.iter().filter(|c| c.name != "deal_id" && c.name != "raw")
}

/// The names of the deal columns a history version copies: [`history_deal_columns`], then `custom` (see
/// [`columns::history_custom`]).
pub fn history_column_names<'a>(custom: &'a [columns::CustomColumn]) -> impl Iterator<Item = &'a str> + 'a {
    history_deal_columns().map(|c| c.name).chain(custom.iter().map(|c| c.name.as_str()))
}

/// How a staged change row is tagged (`change_kind` column of the staging tables).
pub mod change_kind {
    pub const WON: &str = "won";
    pub const UNWON: &str = "unwon";
    pub const DELETED: &str = "deleted";
    /// Deleted at an unknown time (`DealChange::Vanished`).
    pub const VANISHED: &str = "vanished";
}

/// Whether a run followed the watermark or was asked for an explicit range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// Window from the watermark (or `SYNC_LOOKBACK` on the first run) to the run's start.
    Scheduled,
    /// Window from `--since`/`--until`.
    Backfill,
    /// `reconcile`: compares won ids with Zoho's and flags what Zoho no longer has as won. It reads no won
    /// changes, so its window never counts towards the watermark.
    Reconcile,
}

impl RunKind {
    /// The ledger's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            RunKind::Scheduled => "scheduled",
            RunKind::Backfill => "backfill",
            RunKind::Reconcile => "reconcile",
        }
    }

    /// Reads the ledger's spelling (an unknown one is read as scheduled, as before this kind existed).
    pub fn parse(s: &str) -> RunKind {
        match s {
            "backfill" => RunKind::Backfill,
            "reconcile" => RunKind::Reconcile,
            _ => RunKind::Scheduled,
        }
    }
}

/// What the ledger needs to know when a run starts.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_id: String,
    pub kind: RunKind,
    pub started_at: DateTime<Utc>,
    /// Inclusive lower bound on `Modified_Time`.
    pub window_start: DateTime<Utc>,
    /// Exclusive upper bound on `Modified_Time`.
    pub window_end: DateTime<Utc>,
    /// How long the lease lives without a heartbeat.
    pub lease_ttl: chrono::Duration,
}

/// Final figures of a run, written to its `sync_runs` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    pub deals_upserted: u64,
    pub deals_unwon: u64,
    pub deals_deleted: u64,
    pub deals_quarantined: u64,
    pub api_calls: u64,
    pub api_credits: u64,
    /// Won deals modified in the window according to Zoho (COQL count), when it was asked.
    pub zoho_won_count: Option<u64>,
    /// Won deals modified in the window according to the warehouse after the merge.
    pub warehouse_won_count: Option<u64>,
    /// The records the run could not map (at most [`MAX_QUARANTINED_KEPT`]; `deals_quarantined` counts all).
    pub quarantined: Vec<QuarantinedRecord>,
    /// Set when the run stopped early but what it fetched is still worth merging (the credit budget): `commit`
    /// then merges and records the run `failed` with this text instead of `succeeded`, so the watermark
    /// does not move past data that was never read.
    pub incomplete: Option<String>,
}

/// How many rows a merge touched, and the reconciliation count it took after merging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounts {
    /// Won, not deleted rows whose `modified_time` lies in the run's window, counted after the merge (and
    /// written to the ledger as `warehouse_won_count`).
    pub won_in_window: u64,
    /// Won rows inserted or updated.
    pub upserted: u64,
    /// Existing rows flagged `is_closed_won = false`.
    pub unwon: u64,
    /// Existing rows flagged `is_deleted`.
    pub deleted: u64,
    /// Changes the warehouse refused (a value it cannot store), kept in `quarantined_deals` instead; counted
    /// in the ledger's `deals_quarantined` with the records the job could not map.
    pub refused: u64,
}

/// One `sync_runs` row as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub run_id: String,
    pub kind: String,
    pub status: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub deals_upserted: u64,
    pub error: Option<String>,
    /// When the run started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the run finished (`None` while it runs, or if it died).
    pub finished_at: Option<DateTime<Utc>>,
    /// Won deals modified in the window according to Zoho, when the run counted them.
    pub zoho_won_count: Option<u64>,
    /// Won deals modified in the window according to the warehouse after the merge.
    pub warehouse_won_count: Option<u64>,
}

/// Failures at the warehouse boundary, classified once so `main` can map them to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// Another run holds the lease.
    #[error("another run ({run_id}) is in progress against this warehouse; its lease expires at {expires_at}. Wait for it to finish, or if it died, wait until the lease expires")]
    Busy { run_id: String, expires_at: DateTime<Utc> },
    /// This run no longer holds the lease (it expired and another run took it over): it must stop without
    /// merging or recording success; the run that took over, or the next one, covers its window.
    #[error("run {run_id} lost its lease on the warehouse (it expired and another run took over); it stopped without merging, and the next run covers its window")]
    LeaseLost { run_id: String },
    /// The warehouse's configuration contradicts itself (e.g. the dataset lives in another location), or a
    /// setting stopped a statement. A message naming the setting and what to do, with no underlying error.
    #[error("warehouse configuration: {0}")]
    Config(String),
    /// The warehouse could not be reached, or refused us: `what` says what we were doing, `source` why.
    #[error("warehouse unavailable: {what}")]
    Unavailable {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// The credentials lack a permission.
    #[error("warehouse permission denied: {what} (grant BigQuery Data Editor on the dataset and BigQuery Job User on the project)")]
    PermissionDenied {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Rows were refused by the warehouse.
    #[error("the warehouse rejected deal {deal_id}: {reason}")]
    RowRejected { deal_id: String, reason: String },
    /// SQLite failed.
    #[error("SQLite error on {path}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// Anything else: what failed, and the error that made it fail when there is one.
    #[error("{what}")]
    Other {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
}

impl WarehouseError {
    /// [`WarehouseError::Unavailable`] with no underlying error (a wait that ran out, a check that failed).
    pub fn unavailable(what: impl Into<String>) -> Self {
        WarehouseError::Unavailable { what: what.into(), source: None }
    }

    /// [`WarehouseError::Other`] with no underlying error (an answer that breaks an invariant).
    pub fn other(what: impl Into<String>) -> Self {
        WarehouseError::Other { what: what.into(), source: None }
    }

    /// [`WarehouseError::Other`] caused by `source`.
    pub fn other_from(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        WarehouseError::Other { what: what.into(), source: Some(source.into()) }
    }
}

/// A place to store deals. See the module docs for the contract every implementation keeps.
pub trait Warehouse: Send + Sync {
    /// Creates what is missing (dataset, tables, columns added in a later version). Idempotent.
    fn prepare(&self) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Takes this run's field metadata: records every field in `deal_fields` (label, data type, column, first
    /// and last seen; idempotent), adds a column for each custom field that has none (`ADD COLUMN`, no rewrite),
    /// and from now on stages, merges and reads the custom columns whose type is unchanged. A field whose type
    /// changed keeps its old column, which is no longer filled (its values stay in `raw`), with a warning; so
    /// does a field that disappeared. Called after [`Warehouse::prepare`] and before [`Warehouse::begin_run`];
    /// without it, custom columns are neither staged nor merged (their stored values stay as they were).
    fn declare_fields(
        &self,
        fields: &[crate::deal::FieldColumn],
    ) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// The end of the contiguous interval covered by succeeded runs, or `None` before the first success.
    /// A backfill that does not touch that interval does not move it; nothing moves it backwards.
    fn watermark(&self) -> impl Future<Output = Result<Option<DateTime<Utc>>, WarehouseError>> + Send {
        async { Ok(covered_until(self.succeeded_windows().await?)) }
    }

    /// The windows of every succeeded run, in any order.
    fn succeeded_windows(&self) -> impl Future<Output = Result<Vec<CoveredWindow>, WarehouseError>> + Send;

    /// Takes the lease and records the run as `running`; [`WarehouseError::Busy`] (and nothing written) if
    /// another live run holds it. Of two runs beginning at the same instant exactly one gets the lease. Retrying
    /// it for the same run renews that run's lease.
    fn begin_run(&self, run: &RunStart) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Records the run's window (`run.window_start`, `run.window_end`) in its ledger row once it is known: the
    /// lease is taken before any call to the source (a run that cannot have it must not spend anything), and the
    /// window's end comes from the source's clock, so `begin_run` records a provisional window. Only while the
    /// run holds the lease ([`WarehouseError::LeaseLost`] otherwise, nothing written).
    fn record_window(&self, run: &RunStart) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Extends this run's lease (called periodically while it runs); [`WarehouseError::LeaseLost`] when another
    /// run took it over, after which the run must stop.
    fn heartbeat(&self, run: &RunStart) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Appends changes to this run's staging area. Redelivery is allowed. A change the warehouse refuses (a
    /// value it cannot store) is not an error: it is quarantined at commit with the warehouse's reason and
    /// counted in [`MergeCounts::refused`].
    fn stage(&self, run: &RunStart, changes: &[DealChange]) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Paging nears its end (what is still to be staged will have been asked for from the source within a few
    /// calls' latency): the warehouse may merge a step of what is staged so far, at most about `rows` more staged
    /// rows in the order they were staged, so that less of the merge is left for [`Warehouse::commit`]. Returns
    /// how many staged rows the step took (0: nothing more can be merged ahead now). Nothing of it is visible
    /// before `commit`, which merges the rest and gives the same result as without these calls;
    /// [`Warehouse::fail_run`] (or the process ending) undoes them. Changes may be staged between steps and after
    /// the last. The default does nothing (BigQuery: a merge job more would cost more than it saves); SQLite
    /// merges, and writes the history of what it merged, inside the write transaction that `commit` ends, so from
    /// its first step the run holds the file's write lock.
    fn merge_ahead(&self, run: &RunStart, rows: usize) -> impl Future<Output = Result<usize, WarehouseError>> + Send {
        let _ = (run, rows);
        async { Ok(0) }
    }

    /// Only while the run holds the lease ([`WarehouseError::LeaseLost`] otherwise, nothing merged). Verifies that
    /// the staging holds every change staged, then merges this run's staging into `closed_won_deals`, clears the quarantine of the deals it staged and
    /// quarantines `report.quarantined` (flagging their stored rows `is_quarantined`, and clearing the flag of
    /// the deals it staged), counts won rows in the window, then records the run
    /// `succeeded` with `report` (its deal counts replaced by the merge counts and `warehouse_won_count` by the
    /// count), then drops the staging. Safe to crash anywhere: a rerun converges. Committing a run that already
    /// succeeded changes nothing and returns the counts it recorded.
    fn commit(
        &self,
        run: &RunStart,
        report: &RunReport,
    ) -> impl Future<Output = Result<MergeCounts, WarehouseError>> + Send;

    /// Records the run `failed` with its error (best effort) and drops its staging.
    fn fail_run(
        &self,
        run: &RunStart,
        report: &RunReport,
        error: &str,
    ) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Won, not deleted rows whose `modified_time` lies in `[start, end)` (for reconciliation).
    fn count_won_in_window(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<u64, WarehouseError>> + Send;

    /// Whether any deal is stored (won, un-won or deleted) or quarantined: what a deletion read from Zoho could
    /// flag or resolve. When none is, a run has no use for the list of deleted deals.
    fn holds_deals(&self) -> impl Future<Output = Result<bool, WarehouseError>> + Send;

    /// Ids of won, not deleted rows whose `modified_time` lies in `[start, end)` (to name what is missing).
    fn won_ids_in_window(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<String>, WarehouseError>> + Send;

    /// The ledger, newest first.
    fn ledger(&self) -> impl Future<Output = Result<Vec<LedgerRow>, WarehouseError>> + Send;

    /// Every row of `closed_won_deals`, ordered by `deal_id` (for tests, reconciliation tools and exports;
    /// reads the whole table).
    fn stored_deals(&self) -> impl Future<Output = Result<Vec<StoredDeal>, WarehouseError>> + Send;

    /// Every row of `quarantined_deals`, in id order (shorter ids first, as numbers sort).
    fn quarantined(&self) -> impl Future<Output = Result<Vec<QuarantinedRow>, WarehouseError>> + Send;
}

/// At most this many quarantined records are kept per run (the rest are counted and logged): a feed that
/// breaks every record should not turn the quarantine into a second copy of the CRM.
pub const MAX_QUARANTINED_KEPT: usize = 1000;

/// At most this many bytes of a quarantined record are kept (the field and reason say what was wrong).
pub const MAX_QUARANTINED_RECORD_BYTES: usize = 64 * 1024;

/// A record the job could not map into a deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRecord {
    pub deal_id: String,
    /// The field that could not be read.
    pub field: String,
    pub reason: String,
    /// The record's JSON as received, cut at [`MAX_QUARANTINED_RECORD_BYTES`] (so not always valid JSON).
    pub record: String,
}

impl QuarantinedRecord {
    /// `record` cut to [`MAX_QUARANTINED_RECORD_BYTES`] on a character boundary.
    pub fn new(deal_id: String, field: String, reason: String, mut record: String) -> Self {
        if record.len() > MAX_QUARANTINED_RECORD_BYTES {
            let mut cut = MAX_QUARANTINED_RECORD_BYTES;
            while !record.is_char_boundary(cut) {
                cut -= 1;
            }
            record.truncate(cut);
        }
        QuarantinedRecord { deal_id, field, reason, record }
    }
}

/// A row of `quarantined_deals` as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    pub deal_id: String,
    pub field: String,
    pub reason: String,
    pub record: String,
    pub run_id: String,
}

/// A row of `closed_won_deals` as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeal {
    /// The deal's columns (`raw` as stored).
    pub deal: crate::deal::Deal,
    pub is_closed_won: bool,
    pub is_deleted: bool,
    pub deleted_time: Option<DateTime<Utc>>,
    pub run_id: String,
    /// Zoho's newest version could not be read (it is in `quarantined_deals`): this row is an older version.
    pub is_quarantined: bool,
}

/// A succeeded run's window, as the watermark needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoveredWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub kind: RunKind,
}

/// The end of the contiguous interval covered by succeeded runs, counted from the first scheduled run (or,
/// when only backfills ran, from the earliest backfill).
///
/// A gap stops the chain: a backfill of last week after a month of failed nights does not claim the month, so
/// the next scheduled run starts at the end of the chain (minus overlap) and closes the gap. A backfill of
/// old history, before the first scheduled run, neither moves the watermark nor resets it.
pub fn covered_until(mut windows: Vec<CoveredWindow>) -> Option<DateTime<Utc>> {
    windows.retain(|w| w.kind != RunKind::Reconcile);
    let anchor = windows
        .iter()
        .filter(|w| w.kind == RunKind::Scheduled)
        .map(|w| w.start)
        .min()
        .or_else(|| windows.iter().map(|w| w.start).min())?;
    windows.retain(|w| w.end > anchor);
    windows.sort_by_key(|w| (w.start, w.end));
    let mut end = anchor;
    for w in windows {
        if w.start > end {
            break;
        }
        end = end.max(w.end);
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid") + chrono::Duration::hours(h)
    }

    fn sched(s: i64, e: i64) -> CoveredWindow {
        CoveredWindow { start: t(s), end: t(e), kind: RunKind::Scheduled }
    }

    fn backfill(s: i64, e: i64) -> CoveredWindow {
        CoveredWindow { start: t(s), end: t(e), kind: RunKind::Backfill }
    }

    #[test]
    fn no_runs_means_no_watermark() {
        assert_eq!(covered_until(vec![]), None);
    }

    #[test]
    fn overlapping_runs_chain_to_the_latest_end() {
        assert_eq!(covered_until(vec![sched(0, 24), sched(23, 48), sched(47, 72)]), Some(t(72)));
    }

    #[test]
    fn a_backfill_inside_the_covered_interval_does_not_move_it_backwards() {
        assert_eq!(covered_until(vec![sched(0, 48), backfill(10, 20)]), Some(t(48)));
    }

    #[test]
    fn a_gap_stops_the_chain_so_a_later_backfill_cannot_skip_missed_nights() {
        assert_eq!(covered_until(vec![sched(0, 24), backfill(96, 120)]), Some(t(24)));
    }

    #[test]
    fn a_backfill_of_old_history_neither_moves_nor_resets_the_watermark() {
        assert_eq!(covered_until(vec![sched(1000, 1024), backfill(0, 24)]), Some(t(1024)));
    }

    #[test]
    fn a_backfill_reaching_past_the_watermark_extends_it() {
        assert_eq!(covered_until(vec![sched(100, 124), backfill(0, 200)]), Some(t(200)));
    }

    #[test]
    fn with_only_backfills_the_chain_starts_at_the_earliest() {
        assert_eq!(covered_until(vec![backfill(0, 24), backfill(30, 40)]), Some(t(24)));
    }

    #[test]
    fn a_sqlite_file_that_cannot_be_created_names_it_then_the_reason_once() {
        let e =
            sqlite::SqliteWarehouse::open(std::path::Path::new("/nonexistent-dir/deals.sqlite3")).expect_err("no dir");
        let shown = crate::error_chain::testing::chain_without(&e, "s3cr3t");
        assert!(
            shown.starts_with(
                "warehouse unavailable: could not create the SQLite file /nonexistent-dir/deals.sqlite3: "
            ),
            "{shown}"
        );
    }

    #[test]
    fn a_sqlite_failure_names_the_file_then_sqlites_reason_once() {
        let conn = rusqlite::Connection::open_in_memory().expect("in memory");
        let source = conn.execute("DELETE FROM missing", []).expect_err("no such table");
        let e = WarehouseError::Sqlite { path: "a.db".into(), source };
        let shown = crate::error_chain::testing::chain_without(&e, "s3cr3t");
        assert!(shown.starts_with("SQLite error on a.db: no such table: missing"), "{shown}");
    }
}
