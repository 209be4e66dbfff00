//! The production warehouse: Google BigQuery (or the local emulator in tests).
//!
//! Write path, one run: [`Warehouse::begin_run`] takes the one-row lease by compare-and-set (BigQuery
//! serialises UPDATEs of a table, so two runs cannot both take it), records the run in `sync_runs` and creates
//! the run-scoped staging table `_staging_<run id>` (it expires by itself after a day);
//! [`Warehouse::stage`] inserts changes with DML (`INSERT … FROM UNNEST(@rows)`: visible at once, no streaming);
//! [`Warehouse::commit`] renews the lease, verifies the staging holds every change staged, runs one `MERGE` into
//! `closed_won_deals`, one `UPDATE` flagging deletions (each only when there is something to do), the ledger
//! update (only while the lease is held), releases the lease and drops the staging table. Each step is
//! idempotent and none relies on a transaction (the emulator fails `MERGE` inside `BEGIN … COMMIT`), so a crash
//! between any two steps followed by a rerun converges to the same table.
//!
//! Files: `client` (HTTP client, credentials, schema), `jobs` (queries, retries by reason, parameters),
//! `staging` (the staging table and its verification), `ledger` (lease, recorded counts, quarantine), `codec`
//! (rows in and out), `sql` (templates), `errors` (classification once, retry policy).
//!
//! The SQL lives in `sql/` (included at compile time; `sql/README.md` explains the schema, costs and the
//! emulator's quirks). Column lists that must follow [`DEAL_COLUMNS`](crate::warehouse::DEAL_COLUMNS) are generated here, so a column added
//! there is created, staged, merged and read back without editing SQL.
//!
//! Not here: anything about Zoho, and the schedule of heartbeats (the sync pipeline calls them).

mod client;
mod codec;
mod errors;
mod history;
mod jobs;
mod ledger;
mod sql;
mod staging;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gcp_bigquery_client::Client;
use serde_json::Value;

use super::columns::{
    all_columns, bigquery_type, history_custom, plan_fields, readable_custom, CustomColumn, KnownField,
};
use super::{
    change_kind, CoveredWindow, LedgerRow, MergeCounts, QuarantinedRecord, QuarantinedRow, RunKind, RunReport,
    RunStart, StoredDeal, Warehouse, WarehouseError,
};
use crate::deal::{DealChange, FieldColumn};
use crate::error_chain::Chain;
use crate::retry::retry;

use codec::{select_expr, staged_row, stored_deal, StagedRow};
use errors::{classify, policy, Failure};
use jobs::{cell, cell_i64, cell_ts, cell_u64, missing, p_i64, p_opt_u64, p_str, p_ts, p_u64, param};
use ledger::label_value;
use sql::{
    deal_columns_ddl, merge_column_lists, string_literal, SQL_COUNT_WON, SQL_CREATE_DATASET, SQL_DEALS_TABLE,
    SQL_DEAL_FIELDS_TABLE, SQL_DEAL_FIELDS_UPSERT, SQL_FLAG_QUARANTINED, SQL_HOLDS_DEALS, SQL_LEASE_HOLDER,
    SQL_LEASE_SEED, SQL_LEASE_TABLE, SQL_LEASE_TAKE, SQL_LEDGER, SQL_MARK_DELETED, SQL_MARK_VANISHED, SQL_MERGE,
    SQL_MERGE_COUNTS, SQL_MERGE_SOURCE, SQL_QUARANTINE_RESOLVE, SQL_QUARANTINE_TABLE, SQL_RUNS_ABANDONED,
    SQL_RUNS_TABLE, SQL_RUN_BEGIN, SQL_RUN_FAILED, SQL_RUN_SUCCEEDED, SQL_RUN_WINDOW, SQL_SUCCEEDED_WINDOWS, SQL_VIEWS,
    SQL_WON_IDS,
};
use staging::{batches, struct_array_param, RunState};

/// How many times `prepare` runs its DDL before giving up (see `prepare`).
const PREPARE_ATTEMPTS: u32 = 3;

/// `BQ_DATASET` when unset.
pub const DEFAULT_DATASET: &str = "zoho_crm";
/// `BQ_LOCATION` when unset.
pub const DEFAULT_LOCATION: &str = "US";

/// The table the analysts query.
const DEALS_TABLE: &str = "closed_won_deals";

/// Where the BigQuery warehouse lives. The values are taken as valid: `config.rs` is the one place that checks
/// them (exit 2 naming the variable), and the dataset and location are spliced into SQL, so build one by hand
/// only from trusted values (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryConfig {
    /// The Google Cloud project that owns the dataset and runs the jobs (`BQ_PROJECT`).
    pub project: String,
    /// The dataset holding `closed_won_deals`, `sync_runs` and the views (`BQ_DATASET`, default `zoho_crm`).
    pub dataset: String,
    /// Where the dataset is created and jobs run (`BQ_LOCATION`, default `US`).
    pub location: String,
    /// `host:port` of a local emulator (`BIGQUERY_EMULATOR_HOST`): plain HTTP and no credentials.
    pub emulator_host: Option<String>,
}

/// `BQ_MAX_BYTES_BILLED` when unset: 10 GiB per statement. A run's biggest statement, the MERGE, scans the
/// referenced columns of the deals table once (≈ 0.5 GB for 100,000 deals, see sql/README.md); a statement
/// asking for 20 times that is a bug or a runaway table, and fails instead of billing (≈ $0.06 at on-demand
/// prices).
pub const DEFAULT_MAX_BYTES_BILLED: u64 = 10 * 1024 * 1024 * 1024;

impl BigQueryConfig {
    /// The defaults for `project`: dataset `zoho_crm`, location `US`, the real BigQuery.
    pub fn new(project: impl Into<String>) -> Self {
        BigQueryConfig {
            project: project.into(),
            dataset: DEFAULT_DATASET.to_owned(),
            location: DEFAULT_LOCATION.to_owned(),
            emulator_host: None,
        }
    }
}

/// Dataset and table names we splice into SQL: letters, digits, underscores (BigQuery allows more, we don't).
/// `config.rs` checks `BQ_DATASET` with it; staging table names are built to pass it.
pub fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The BigQuery warehouse. Cheap to share by reference; one per run.
pub struct BigQueryWarehouse {
    client: Client,
    config: BigQueryConfig,
    /// What each run staged through this process (verified before its merge) and the rows BigQuery refused.
    runs: Mutex<HashMap<String, RunState>>,
    /// `maximumBytesBilled` on every query (`BQ_MAX_BYTES_BILLED`); `None` = BigQuery's project default.
    max_bytes_billed: Option<u64>,
    /// `run_id` label of the run this process began, added to every job's `app=zoho-deals-sync` label.
    run_label: Mutex<Option<String>>,
    /// The custom columns this run fills (set by `declare_fields`).
    custom: Mutex<Vec<CustomColumn>>,
    /// The staging table of the run this process began (set by `begin_run`).
    staging: Mutex<Option<String>>,
    /// The custom columns a history version copies (set by `declare_fields`, see [`columns::history_custom`]).
    history_custom: Mutex<Vec<CustomColumn>>,
}

impl std::fmt::Debug for BigQueryWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryWarehouse").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Warehouse for BigQueryWarehouse {
    async fn prepare(&self) -> Result<(), WarehouseError> {
        // Every step is idempotent DDL, but two runs starting together run it at the same time, and concurrent
        // DDL on one dataset can fail one of them ("already exists", a commit conflict on the emulator): the
        // loser runs the whole sequence again, and then finds everything in place. The lease decides which run
        // works; prepare must not fail either of them.
        let mut attempt = 1;
        loop {
            match self.prepare_once().await {
                Err(e @ WarehouseError::Other { .. }) if attempt < PREPARE_ATTEMPTS => {
                    tracing::warn!(attempt, error = %Chain(&e), "preparing the dataset failed; trying again");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn declare_fields(&self, fields: &[FieldColumn]) -> Result<(), WarehouseError> {
        let existing = self.table_columns(DEALS_TABLE).await?;
        let known = self.known_fields_with_labels().await?;
        let plan = plan_fields(fields, &known.iter().map(|k| k.field.clone()).collect::<Vec<_>>(), &existing);
        let description = |f: &FieldColumn| format!("{} (Zoho field {}, {})", f.label, f.api_name, f.data_type);
        if !plan.add.is_empty() {
            // ADD COLUMN changes only the schema: existing rows read NULL, nothing is rewritten
            // (docs/bigquery.md). The label is the new column's description.
            let adds = plan
                .add
                .iter()
                .map(|c| {
                    let label = fields.iter().find(|f| f.column.as_deref() == Some(c.name.as_str())).map(description);
                    let options =
                        label.map(|l| format!(" OPTIONS (description = {})", string_literal(&l))).unwrap_or_default();
                    format!("ADD COLUMN IF NOT EXISTS {} {}{options}", c.name, bigquery_type(c.cell_type))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let sql = self.render(&format!("ALTER TABLE `{{{{dataset}}}}.{DEALS_TABLE}` {adds}"), &[]);
            self.query("adding columns for new custom fields", sql, vec![]).await?;
        }
        // The history copies the custom columns too: every one it lacks is added the same way.
        let history =
            history_custom(&plan.active, &known.iter().map(|k| k.field.clone()).collect::<Vec<_>>(), &existing);
        self.add_history_columns(&history).await?;
        plan.log();
        // A label changed in Zoho: the column's description follows. A failure is only a warning (the emulator,
        // or a missing permission, must not fail the nightly run).
        let labels = known_labels(&known);
        for f in fields.iter().filter(|f| f.custom) {
            let Some(column) = f.column.as_deref() else { continue };
            let relabelled = labels.get(column).is_some_and(|l| l.as_deref() != Some(f.label.as_str()));
            if !relabelled || !plan.active.iter().any(|c| c.name == column) {
                continue;
            }
            let sql = self.render(
                &format!(
                    "ALTER TABLE `{{{{dataset}}}}.{DEALS_TABLE}` ALTER COLUMN {column} SET OPTIONS (description = {})",
                    string_literal(&description(f))
                ),
                &[],
            );
            if let Err(e) = self.query("setting a column description", sql, vec![]).await {
                tracing::warn!(column, error = %Chain(&e), "could not set the column's description (the column is fine)");
            }
        }
        let names = ["api_name", "label", "data_type", "column_name", "column_type", "is_custom"];
        let rows = fields
            .iter()
            .map(|f| {
                vec![
                    Some(f.api_name.clone()),
                    Some(f.label.clone()),
                    Some(f.data_type.clone()),
                    f.column.clone(),
                    f.cell_type.map(|t| t.as_str().to_owned()),
                    Some(f.custom.to_string()),
                ]
            })
            .collect::<Vec<_>>();
        if !rows.is_empty() {
            let param = struct_array_param("fields", &names, rows);
            self.query("recording deal_fields", self.render(SQL_DEAL_FIELDS_UPSERT, &[]), vec![param]).await?;
        }
        // The run takes its lease, and creates its staging table, before it reads Zoho's field metadata (no Zoho
        // call before the lease): the custom columns are added to that staging table here, before anything is
        // staged. A table created later (a retried begin_run) has them from the start.
        // (A table of an earlier run of this process that has since committed is gone: nothing to add to.)
        let staging = self.staging.lock().ok().and_then(|s| s.clone());
        let live = match (&staging, plan.active.is_empty()) {
            (Some(table), false) => self.table_exists(table).await?,
            _ => false,
        };
        if let (Some(table), true) = (staging, live) {
            let adds = plan
                .active
                .iter()
                .map(|c| format!("ADD COLUMN IF NOT EXISTS {} {}", c.name, bigquery_type(c.cell_type)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = self.render(&format!("ALTER TABLE `{{{{dataset}}}}.{table}` {adds}"), &[]);
            self.query("adding the custom columns to the staging table", sql, vec![]).await?;
        }
        if let Ok(mut custom) = self.custom.lock() {
            *custom = plan.active;
        }
        if let Ok(mut custom) = self.history_custom.lock() {
            *custom = history;
        }
        Ok(())
    }

    async fn succeeded_windows(&self) -> Result<Vec<CoveredWindow>, WarehouseError> {
        let rows = self.query("reading succeeded runs", self.render(SQL_SUCCEEDED_WINDOWS, &[]), vec![]).await?.rows;
        rows.iter()
            .map(|r| {
                Ok(CoveredWindow {
                    start: cell_ts(r, 0)?.ok_or_else(|| missing("window_start"))?,
                    end: cell_ts(r, 1)?.ok_or_else(|| missing("window_end"))?,
                    kind: RunKind::parse(cell(r, 2).as_deref().unwrap_or_default()),
                })
            })
            .collect()
    }

    async fn begin_run(&self, run: &RunStart) -> Result<(), WarehouseError> {
        // (1) compare-and-set: BigQuery serialises UPDATEs of one table, so at most one run sees the row free.
        let params = vec![p_str("run_id", &run.run_id), p_i64("lease_ttl_ms", run.lease_ttl.num_milliseconds())];
        let taken = self.query("taking the lease", self.render(SQL_LEASE_TAKE, &[]), params).await?;
        // Any row counts (see lease_seed.sql: duplicate lease rows are all updated by the one statement).
        if taken.affected.unwrap_or(0) == 0 {
            let rows = self.query("reading the lease", self.render(SQL_LEASE_HOLDER, &[]), vec![]).await?.rows;
            let row = rows.first();
            let holder = row.and_then(|r| cell(r, 0)).unwrap_or_else(|| "(unknown)".to_owned());
            let expires_at = match row {
                Some(r) => cell_ts(r, 1)?.unwrap_or_else(Utc::now),
                None => Utc::now(),
            };
            return Err(WarehouseError::Busy { run_id: holder, expires_at });
        }
        // (2) runs still marked running lost the lease without saying so.
        let params = vec![p_str("run_id", &run.run_id)];
        self.query("marking abandoned runs", self.render(SQL_RUNS_ABANDONED, &[]), params).await?;
        // (3) the ledger row, then the staging table: created here, before anything is staged, never mid-run.
        let params = vec![
            p_str("run_id", &run.run_id),
            p_str("kind", run.kind.as_str()),
            p_ts("started_at", &run.started_at),
            p_ts("window_start", &run.window_start),
            p_ts("window_end", &run.window_end),
            p_i64("lease_ttl_ms", run.lease_ttl.num_milliseconds()),
        ];
        self.query("recording the run", self.render(SQL_RUN_BEGIN, &[]), params).await?;
        self.create_staging(&Self::staging_table(run)).await?;
        if let Ok(mut staging) = self.staging.lock() {
            *staging = Some(Self::staging_table(run));
        }
        if let Ok(mut label) = self.run_label.lock() {
            *label = Some(label_value(&run.run_id));
        }
        Ok(())
    }

    async fn record_window(&self, run: &RunStart) -> Result<(), WarehouseError> {
        // Only while this run holds the lease: renewing it proves that (and costs nothing extra).
        self.renew_lease(run, run.lease_ttl).await?;
        let params = vec![
            p_str("run_id", &run.run_id),
            p_ts("window_start", &run.window_start),
            p_ts("window_end", &run.window_end),
        ];
        self.query("recording the run's window", self.render(SQL_RUN_WINDOW, &[]), params).await.map(|_| ())
    }

    async fn heartbeat(&self, run: &RunStart) -> Result<(), WarehouseError> {
        self.renew_lease(run, run.lease_ttl).await
    }

    async fn stage(&self, run: &RunStart, changes: &[DealChange]) -> Result<(), WarehouseError> {
        if changes.is_empty() {
            return Ok(());
        }
        let table = Self::staging_table(run);
        let custom = self.active_custom();
        let rows: Vec<StagedRow> = changes.iter().map(|c| staged_row(&run.run_id, c, &custom)).collect();
        let mut rejected = Vec::new();
        for batch in batches(&rows) {
            rejected.extend(self.insert_batch(&table, batch, &custom).await?);
        }
        // Every row refused one by one: the statement, not the data, is wrong; quarantining would hide it.
        if rows.len() > 1 && rejected.len() == rows.len() {
            let reason = rejected.into_iter().next().map(|r| r.reason).unwrap_or_default();
            return Err(WarehouseError::other(format!("BigQuery refused every staged row: {reason}")));
        }
        let refused: HashSet<&str> = rejected.iter().map(|r| r.row.insert_id.as_str()).collect();
        let staged: Vec<StagedRow> = rows.iter().filter(|r| !refused.contains(r.insert_id.as_str())).cloned().collect();
        let quarantined = rejected
            .into_iter()
            .map(|r| {
                tracing::warn!(deal_id = %r.row.deal_id, reason = %r.reason, "BigQuery refused a deal; quarantined");
                let record = r.row.json.get("raw").and_then(Value::as_str).unwrap_or_default().to_owned();
                QuarantinedRecord::new(
                    r.row.deal_id.clone(),
                    "(row)".to_owned(),
                    format!("BigQuery refused the row: {}", r.reason),
                    record,
                )
            })
            .collect();
        self.remember(run, &staged, quarantined);
        Ok(())
    }

    async fn commit(&self, run: &RunStart, report: &RunReport) -> Result<MergeCounts, WarehouseError> {
        let table = Self::staging_table(run);
        // A commit repeated after the run succeeded (a retry, or a crash after the ledger) answers with what it
        // recorded, whether or not dropping its staging worked: redoing the steps would touch rows later runs
        // wrote.
        if let Some(recorded) = self.recorded_counts(run).await? {
            if let Err(e) = self.drop_staging(&table).await {
                tracing::warn!(table, error = %Chain(&e), "could not drop the staging table; it expires within a day");
            }
            return Ok(recorded);
        }
        // (0) still ours? The heartbeat is paused during the commit; instead, the commit renews the lease (a
        // compare-and-set) before each step that writes, so a run that lost the lease merges nothing more: the run
        // that took it over covers its window. SYNC_LEASE_TTL must outlast the longest single statement.
        self.renew_lease(run, run.lease_ttl).await?;
        // The staging table is created by begin_run; without it this run's changes are gone (expired, dropped):
        // fail rather than record success over data that never arrived.
        if !self.table_exists(&table).await? {
            return Err(WarehouseError::other(format!(
                "the staging table {table} of run {} is missing (expired or dropped); nothing was merged and the \
                 watermark stays, so the next run redoes this window",
                run.run_id
            )));
        }
        self.verify_staged(run, &table).await?;
        let state = self.forget(run);
        let staged = |kind: &str| state.staged.get(kind).map(HashSet::len).unwrap_or(0);
        let source = self.render(SQL_MERGE_SOURCE, &[("staging", &table)]);
        let mut counts = MergeCounts::default();
        let run_param = || vec![p_str("run_id", &run.run_id)];
        // (1) the MERGE of won and un-won changes (skipped when there are none: every statement bills 10 MB).
        if staged(change_kind::WON) + staged(change_kind::UNWON) > 0 {
            let (update_won, insert_columns, insert_values) = merge_column_lists(&self.active_custom());
            let merge = self.render(
                SQL_MERGE,
                &[
                    ("source", &source),
                    ("update_won", &update_won),
                    ("insert_columns", &insert_columns),
                    ("insert_values", &insert_values),
                ],
            );
            self.query("merging into closed_won_deals", merge, run_param()).await?;
            self.renew_lease(run, run.lease_ttl).await?;
            let merged = self
                .query("counting merged rows", self.render(SQL_MERGE_COUNTS, &[("source", &source)]), run_param())
                .await?
                .rows;
            if let Some(row) = merged.first() {
                counts.upserted = cell_u64(row, 0);
                counts.unwon = cell_u64(row, 1);
            }
        }
        // (2) deletions, only when the run saw any.
        if staged(change_kind::DELETED) > 0 {
            let deleted = self
                .query("flagging deleted deals", self.render(SQL_MARK_DELETED, &[("staging", &table)]), run_param())
                .await?;
            counts.deleted = deleted.affected.unwrap_or(0);
            self.renew_lease(run, run.lease_ttl).await?;
        }
        // (2b) deals `reconcile` found gone from Zoho past its deletion retention (deleted time unknown).
        if staged(change_kind::VANISHED) > 0 {
            let vanished = self
                .query("flagging vanished deals", self.render(SQL_MARK_VANISHED, &[("staging", &table)]), run_param())
                .await?;
            counts.deleted += vanished.affected.unwrap_or(0);
            self.renew_lease(run, run.lease_ttl).await?;
        }
        // (2c) the history of what (1)–(2b) changed (issue #11): idempotent, see `history`.
        if !state.staged.values().all(HashSet::is_empty) {
            self.record_history(run).await?;
        }
        // (3) the quarantine of deals this run read a version of is over.
        if !state.staged.values().all(HashSet::is_empty) {
            let resolve = self.render(SQL_QUARANTINE_RESOLVE, &[("staging", &table)]);
            self.query("clearing resolved quarantines", resolve, vec![]).await?;
        }
        // (4) this run's quarantined records, and the rows BigQuery refused (idempotent: a MERGE by deal id).
        let mut quarantined = report.quarantined.clone();
        quarantined.extend(state.rejected.iter().cloned());
        counts.refused = state.rejected.len() as u64;
        self.quarantine(run, &quarantined).await?;
        // (4b) flag the stored rows of quarantined deals, clear the flag of resolved ones.
        if !quarantined.is_empty() || !state.staged.values().all(HashSet::is_empty) {
            self.query("flagging quarantined rows", self.render(SQL_FLAG_QUARANTINED, &[]), vec![]).await?;
        }
        counts.won_in_window = self.count_won_in_window(run.window_start, run.window_end).await?;
        // (5) the ledger, only while this run holds the lease.
        // A run that stopped early (the credit budget) merged what it fetched but is recorded failed.
        let (status, error) = match &report.incomplete {
            Some(why) => ("failed", Some(why.chars().take(10_000).collect::<String>())),
            None => ("succeeded", None),
        };
        let params = vec![
            p_str("run_id", &run.run_id),
            p_str("status", status),
            param("error", "STRING", error),
            p_u64("deals_upserted", counts.upserted),
            p_u64("deals_unwon", counts.unwon),
            p_u64("deals_deleted", counts.deleted),
            p_u64("deals_quarantined", report.deals_quarantined + counts.refused),
            p_u64("api_calls", report.api_calls),
            p_u64("api_credits", report.api_credits),
            p_opt_u64("zoho_won_count", report.zoho_won_count),
            p_u64("warehouse_won_count", counts.won_in_window),
        ];
        let updated = self.query("recording the run's outcome", self.render(SQL_RUN_SUCCEEDED, &[]), params).await?;
        if updated.affected == Some(0) {
            return Err(WarehouseError::LeaseLost { run_id: run.run_id.clone() });
        }
        // (6) the lease and the staging table. The lease expires and the table within a day by themselves, so
        // failing to release or drop them is only logged.
        if let Err(e) = self.release_lease(run).await {
            tracing::warn!(error = %Chain(&e), "could not release the lease; it expires by itself");
        }
        if let Err(e) = self.drop_staging(&table).await {
            tracing::warn!(table, error = %Chain(&e), "could not drop the staging table; it expires within a day");
        }
        Ok(counts)
    }

    async fn fail_run(&self, run: &RunStart, report: &RunReport, error: &str) -> Result<(), WarehouseError> {
        self.forget(run);
        // The ledger keeps the start of long errors; the log has the rest.
        let error: String = error.chars().take(10_000).collect();
        let params = vec![
            p_str("run_id", &run.run_id),
            p_str("error", &error),
            p_u64("deals_quarantined", report.deals_quarantined),
            p_u64("api_calls", report.api_calls),
            p_u64("api_credits", report.api_credits),
        ];
        let recorded = self.query("recording the run as failed", self.render(SQL_RUN_FAILED, &[]), params).await;
        let released = self.release_lease(run).await;
        let dropped = self.drop_staging(&Self::staging_table(run)).await;
        recorded.and(released).and(dropped)
    }

    async fn count_won_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<u64, WarehouseError> {
        let params = vec![p_ts("start", &start), p_ts("end", &end)];
        let rows = self.query("counting won deals", self.render(SQL_COUNT_WON, &[]), params).await?.rows;
        Ok(rows.first().map(|r| cell_u64(r, 0)).unwrap_or(0))
    }

    async fn holds_deals(&self) -> Result<bool, WarehouseError> {
        let rows = self.query("checking for stored deals", self.render(SQL_HOLDS_DEALS, &[]), vec![]).await?.rows;
        // Only an explicit `false` says the tables are empty: an answer read otherwise keeps the deletions read.
        Ok(!rows.first().and_then(|r| cell(r, 0)).is_some_and(|v| v.eq_ignore_ascii_case("false")))
    }

    async fn won_ids_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Vec<String>, WarehouseError> {
        let params = vec![p_ts("start", &start), p_ts("end", &end)];
        let rows = self.query("listing won deals", self.render(SQL_WON_IDS, &[]), params).await?.rows;
        Ok(rows.into_iter().filter_map(|r| cell(&r, 0)).collect())
    }

    async fn ledger(&self) -> Result<Vec<LedgerRow>, WarehouseError> {
        let rows = self.query("reading the ledger", self.render(SQL_LEDGER, &[]), vec![]).await?.rows;
        rows.iter()
            .map(|r| {
                Ok(LedgerRow {
                    run_id: cell(r, 0).unwrap_or_default(),
                    kind: cell(r, 1).unwrap_or_default(),
                    status: cell(r, 2).unwrap_or_default(),
                    window_start: cell_ts(r, 3)?.ok_or_else(|| missing("window_start"))?,
                    window_end: cell_ts(r, 4)?.ok_or_else(|| missing("window_end"))?,
                    deals_upserted: cell_u64(r, 5),
                    error: cell(r, 6),
                    started_at: cell_ts(r, 10)?,
                    finished_at: cell_ts(r, 11)?,
                    zoho_won_count: cell_i64(r, 12).and_then(|n| u64::try_from(n).ok()),
                    warehouse_won_count: cell_i64(r, 9).and_then(|n| u64::try_from(n).ok()),
                })
            })
            .collect()
    }

    async fn stored_deals(&self) -> Result<Vec<StoredDeal>, WarehouseError> {
        let custom = readable_custom(&self.known_fields().await?, &self.table_columns(DEALS_TABLE).await?);
        let select = all_columns(&custom).map(|(name, t)| select_expr(name, t)).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {select} FROM `{{{{dataset}}}}.{DEALS_TABLE}` ORDER BY LENGTH(deal_id), deal_id");
        let rows = self.query("reading closed_won_deals", self.render(&sql, &[]), vec![]).await?.rows;
        rows.iter().map(|r| stored_deal(r, &custom)).collect()
    }

    async fn quarantined(&self) -> Result<Vec<QuarantinedRow>, WarehouseError> {
        let sql = "SELECT deal_id, field, reason, record, run_id FROM `{{dataset}}.quarantined_deals`
                   ORDER BY LENGTH(deal_id), deal_id";
        let rows = self.query("reading quarantined_deals", self.render(sql, &[]), vec![]).await?.rows;
        Ok(rows
            .iter()
            .map(|r| QuarantinedRow {
                deal_id: cell(r, 0).unwrap_or_default(),
                field: cell(r, 1).unwrap_or_default(),
                reason: cell(r, 2).unwrap_or_default(),
                record: cell(r, 3).unwrap_or_default(),
                run_id: cell(r, 4).unwrap_or_default(),
            })
            .collect())
    }
}

/// The label each known custom column was last recorded with.
fn known_labels(known: &[KnownFieldWithLabel]) -> HashMap<String, Option<String>> {
    known.iter().filter_map(|k| Some((k.field.column_name.clone()?, k.label.clone()))).collect()
}

/// A `deal_fields` row with its label.
#[derive(Debug, Clone)]
pub(super) struct KnownFieldWithLabel {
    pub(super) field: KnownField,
    pub(super) label: Option<String>,
}

impl BigQueryWarehouse {
    /// The custom columns this run fills.
    pub(super) fn active_custom(&self) -> Vec<CustomColumn> {
        self.custom.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Every `deal_fields` row (empty when the table does not exist yet).
    pub(super) async fn known_fields_with_labels(&self) -> Result<Vec<KnownFieldWithLabel>, WarehouseError> {
        if !self.table_exists("deal_fields").await? {
            return Ok(Vec::new());
        }
        let sql = "SELECT api_name, column_name, column_type, is_custom, label FROM `{{dataset}}.deal_fields`";
        let rows = self.query("reading deal_fields", self.render(sql, &[]), vec![]).await?.rows;
        Ok(rows
            .iter()
            .map(|r| KnownFieldWithLabel {
                field: KnownField {
                    api_name: cell(r, 0).unwrap_or_default(),
                    column_name: cell(r, 1),
                    column_type: cell(r, 2),
                    is_custom: cell(r, 3).as_deref() == Some("true"),
                },
                label: cell(r, 4),
            })
            .collect())
    }

    pub(super) async fn known_fields(&self) -> Result<Vec<KnownField>, WarehouseError> {
        Ok(self.known_fields_with_labels().await?.into_iter().map(|k| k.field).collect())
    }

    /// The dataset (in `BQ_LOCATION`), tables, lease row and views, created where missing.
    async fn prepare_once(&self) -> Result<(), WarehouseError> {
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        let exists = retry(
            policy(),
            || async {
                self.client.dataset().get(project, dataset).await.map_err(|e| classify(e, "looking up the dataset"))
            },
            |f: &Failure, wait| tracing::warn!(error = %Chain(&f.error), ?wait, "BigQuery call failed; retrying"),
        )
        .await;
        match exists {
            Ok(found) => {
                // Jobs run in BQ_LOCATION; a dataset elsewhere fails every job with "not found in location".
                if let Some(actual) = found.location.as_deref() {
                    if !actual.eq_ignore_ascii_case(&self.config.location) {
                        return Err(WarehouseError::Config(format!(
                            "the dataset {} is in location {actual}, but BQ_LOCATION is {}: set BQ_LOCATION={actual} \
                             (jobs must run where the dataset is)",
                            self.dataset_ref(),
                            self.config.location
                        )));
                    }
                }
            }
            Err(f) if f.not_found => {
                let sql = self.render(SQL_CREATE_DATASET, &[("location", &self.config.location)]);
                self.query("creating the dataset", sql, vec![]).await?;
                tracing::info!(dataset = %self.dataset_ref(), location = %self.config.location, "created the dataset");
            }
            Err(f) => return Err(f.error),
        }
        self.query(
            "creating closed_won_deals",
            self.render(SQL_DEALS_TABLE, &[("columns", &deal_columns_ddl())]),
            vec![],
        )
        .await?;
        self.add_missing_columns().await?;
        self.query("creating sync_runs", self.render(SQL_RUNS_TABLE, &[]), vec![]).await?;
        self.query("creating quarantined_deals", self.render(SQL_QUARANTINE_TABLE, &[]), vec![]).await?;
        self.prepare_history().await?;
        self.query("creating deal_fields", self.render(SQL_DEAL_FIELDS_TABLE, &[]), vec![]).await?;
        self.query("creating sync_lease", self.render(SQL_LEASE_TABLE, &[]), vec![]).await?;
        self.query("creating the lease row", self.render(SQL_LEASE_SEED, &[]), vec![]).await?;
        for (name, sql) in SQL_VIEWS {
            self.query(&format!("creating the view {name}"), self.render(sql, &[]), vec![]).await?;
        }
        Ok(())
    }
}
