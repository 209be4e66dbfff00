//! The production warehouse: Google BigQuery (or the local emulator in tests).
//!
//! Write path, one run: [`Warehouse::begin_run`] inserts the run's `running` row in `sync_runs` (the lease);
//! [`Warehouse::stage`] streams changes with `tabledata.insertAll` into a run-scoped staging table
//! `_staging_<run id>` that expires by itself after a day; [`Warehouse::commit`] runs one `MERGE` into
//! `closed_won_deals`, one `UPDATE` flagging deletions, the ledger update, and drops the staging table. Each
//! step is idempotent and none relies on a transaction (the emulator fails `MERGE` inside `BEGIN … COMMIT`),
//! so a crash between any two steps followed by a rerun converges to the same table.
//!
//! The SQL lives in `sql/` (included at compile time; `sql/README.md` explains the schema, costs and the
//! emulator's quirks). Column lists that must follow [`DEAL_COLUMNS`] are generated here, so a column added
//! there is created, staged, merged and read back without editing SQL.
//!
//! Not here: anything about Zoho, and the schedule of heartbeats (the sync pipeline calls them).

mod client;
mod codec;
mod errors;
mod jobs;
mod ledger;
mod sql;
mod staging;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;
use gcp_bigquery_client::model::table_data_insert_all_request_rows::TableDataInsertAllRequestRows;
use gcp_bigquery_client::model::table_row::TableRow;
use gcp_bigquery_client::Client;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Map, Value};

use super::{
    change_kind, CoveredWindow, LedgerRow, MergeCounts, QuarantinedRecord, QuarantinedRow, RunKind, RunReport,
    RunStart, StoredDeal, Warehouse, WarehouseError, DEAL_COLUMNS,
};
use crate::deal::{Deal, DealChange};
use crate::retry::{retry, RetryPolicy, Retryable};

use codec::*;
use errors::*;
use jobs::*;
use sql::*;
use staging::*;

/// `BQ_DATASET` when unset.
pub const DEFAULT_DATASET: &str = "zoho_crm";
/// `BQ_LOCATION` when unset.
pub const DEFAULT_LOCATION: &str = "US";

/// The table the analysts query.
const DEALS_TABLE: &str = "closed_won_deals";

/// Where the BigQuery warehouse lives.
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

    fn validate(&self) -> Result<(), WarehouseError> {
        let bad = |what: &str, value: &str, rule: &str| {
            Err(WarehouseError::Other(format!("invalid BigQuery {what} {value:?}: {rule}")))
        };
        // Project ids are lowercase letters, digits and hyphens; legacy domain-scoped ids add `.` and `:`.
        let project_ok = !self.project.is_empty()
            && self.project.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
        if !project_ok {
            return bad("project", &self.project, "use the project id (lowercase letters, digits, hyphens)");
        }
        if !is_identifier(&self.dataset) {
            return bad("dataset", &self.dataset, "letters, digits and underscores, at most 1024");
        }
        if self.location.is_empty() || !self.location.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return bad("location", &self.location, "a location such as US, EU or europe-west1");
        }
        Ok(())
    }
}

/// Dataset and table names we splice into SQL: letters, digits, underscores (BigQuery allows more, we don't).
fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The BigQuery warehouse. Cheap to share by reference; one per run.
pub struct BigQueryWarehouse {
    client: Client,
    config: BigQueryConfig,
    /// Staging tables this process created, so `stage` issues the DDL once per run, not once per batch.
    staging_created: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for BigQueryWarehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQueryWarehouse").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Warehouse for BigQueryWarehouse {
    async fn prepare(&self) -> Result<(), WarehouseError> {
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        let exists = retry(
            policy(),
            || async {
                self.client.dataset().get(project, dataset).await.map_err(|e| classify(&e, "looking up the dataset"))
            },
            |f: &Failure, wait| tracing::warn!(error = %f.error, ?wait, "BigQuery call failed; retrying"),
        )
        .await;
        match exists {
            Ok(_) => {}
            Err(f) if f.not_found => {
                let sql = self.render(SQL_CREATE_DATASET, &[("location", &self.config.location)]);
                self.query("creating the dataset", sql, vec![]).await?;
                tracing::info!(dataset = %self.dataset_ref(), location = %self.config.location, "created the dataset");
            }
            Err(f) => return Err(f.error),
        }
        self.query("creating closed_won_deals", self.render(SQL_DEALS_TABLE, &[]), vec![]).await?;
        self.add_missing_columns().await?;
        self.query("creating sync_runs", self.render(SQL_RUNS_TABLE, &[]), vec![]).await?;
        self.query("creating quarantined_deals", self.render(SQL_QUARANTINE_TABLE, &[]), vec![]).await?;
        for (name, sql) in SQL_VIEWS {
            self.query(&format!("creating the view {name}"), self.render(sql, &[]), vec![]).await?;
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
        self.query("marking abandoned runs", self.render(SQL_RUNS_ABANDONED, &[]), vec![]).await?;
        let params = vec![
            p_str("run_id", &run.run_id),
            p_str("kind", run.kind.as_str()),
            p_ts("started_at", &run.started_at),
            p_ts("window_start", &run.window_start),
            p_ts("window_end", &run.window_end),
            p_i64("lease_ttl_ms", run.lease_ttl.num_milliseconds()),
        ];
        self.query("recording the run", self.render(SQL_RUN_BEGIN, &[]), params).await?;
        // Without transactions two runs can insert at once; both then see both rows, and both pick the same
        // winner: the earliest (started_at, run_id).
        let holders = self.query("checking the lease", self.render(SQL_LEASE_HOLDERS, &[]), vec![]).await?.rows;
        let me = (run.started_at.timestamp_micros(), run.run_id.as_str());
        for row in &holders {
            let (Some(other), Some(started), Some(expires)) = (cell(row, 0), cell_i64(row, 1), cell_ts(row, 2)?) else {
                continue;
            };
            if other == run.run_id || (started, other.as_str()) > me {
                continue;
            }
            let message = format!("lease held by {other} until {}", crate::deal::format_utc(&expires));
            let params = vec![
                p_str("run_id", &run.run_id),
                p_str("error", &message),
                p_i64("deals_quarantined", 0),
                p_i64("api_calls", 0),
                p_i64("api_credits", 0),
            ];
            self.query("giving up the lease", self.render(SQL_RUN_FAILED, &[]), params).await?;
            return Err(WarehouseError::Busy { run_id: other, expires_at: expires });
        }
        Ok(())
    }

    async fn heartbeat(&self, run: &RunStart) -> Result<(), WarehouseError> {
        let params = vec![p_str("run_id", &run.run_id), p_i64("lease_ttl_ms", run.lease_ttl.num_milliseconds())];
        self.query("extending the lease", self.render(SQL_HEARTBEAT, &[]), params).await.map(|_| ())
    }

    async fn stage(&self, run: &RunStart, changes: &[DealChange]) -> Result<(), WarehouseError> {
        if changes.is_empty() {
            return Ok(());
        }
        let table = Self::staging_table(run);
        self.ensure_staging(&table).await?;
        let rows: Vec<StagedRow> = changes.iter().map(|c| staged_row(&run.run_id, c)).collect();
        for batch in batches(&rows) {
            match self.insert_batch(&table, batch).await {
                // Our staging table vanished (dropped by a commit of the same run id, or expired): recreate once.
                Err(f) if f.not_found => {
                    self.forget_staging(&table);
                    self.ensure_staging(&table).await?;
                    self.insert_batch(&table, batch).await.map_err(|f| f.error)?;
                }
                other => other.map_err(|f| f.error)?,
            }
        }
        Ok(())
    }

    async fn commit(&self, run: &RunStart, report: &RunReport) -> Result<MergeCounts, WarehouseError> {
        let table = Self::staging_table(run);
        // A commit repeated after the run succeeded (a retry, or a crash after the ledger) answers with what it
        // recorded, whether or not dropping its staging worked: redoing the steps would touch rows later runs
        // wrote.
        if let Some(recorded) = self.recorded_counts(run).await? {
            if let Err(e) = self.drop_staging(&table).await {
                tracing::warn!(table, error = %e, "could not drop the staging table; it expires within a day");
            }
            return Ok(recorded);
        }
        let source = self.render(SQL_MERGE_SOURCE, &[("staging", &table)]);
        let mut counts = MergeCounts::default();
        if self.table_exists(&table).await? {
            // (1) the MERGE of won and un-won changes.
            let (update_won, insert_columns, insert_values) = merge_column_lists();
            let merge = self.render(
                SQL_MERGE,
                &[
                    ("source", &source),
                    ("update_won", &update_won),
                    ("insert_columns", &insert_columns),
                    ("insert_values", &insert_values),
                ],
            );
            let run_param = || vec![p_str("run_id", &run.run_id)];
            self.query("merging into closed_won_deals", merge, run_param()).await?;
            // (2) deletions.
            let deleted = self
                .query("flagging deleted deals", self.render(SQL_MARK_DELETED, &[("staging", &table)]), run_param())
                .await?;
            let vanished = self
                .query("flagging vanished deals", self.render(SQL_MARK_VANISHED, &[("staging", &table)]), run_param())
                .await?;
            counts.deleted = deleted.affected.unwrap_or(0) + vanished.affected.unwrap_or(0);
            let merged = self
                .query("counting merged rows", self.render(SQL_MERGE_COUNTS, &[("source", &source)]), run_param())
                .await?
                .rows;
            if let Some(row) = merged.first() {
                counts.upserted = cell_u64(row, 0);
                counts.unwon = cell_u64(row, 1);
            }
            // (3) the quarantine of deals this run read a version of is over.
            let resolve = self.render(SQL_QUARANTINE_RESOLVE, &[("staging", &table)]);
            self.query("clearing resolved quarantines", resolve, vec![]).await?;
        }
        // (4) this run's quarantined records (idempotent: a MERGE by deal id).
        self.quarantine(run, &report.quarantined).await?;
        counts.won_in_window = self.count_won_in_window(run.window_start, run.window_end).await?;
        // (5) the ledger.
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
            p_u64("deals_quarantined", report.deals_quarantined),
            p_u64("api_calls", report.api_calls),
            p_u64("api_credits", report.api_credits),
            p_opt_u64("zoho_won_count", report.zoho_won_count),
            p_u64("warehouse_won_count", counts.won_in_window),
        ];
        let updated = self.query("recording the run's outcome", self.render(SQL_RUN_SUCCEEDED, &[]), params).await?;
        if updated.affected == Some(0) {
            return Err(WarehouseError::Other(format!(
                "run {} has no row in sync_runs (begin_run was not called for it); its changes are merged",
                run.run_id
            )));
        }
        // (6) the staging table. It expires by itself within a day, so failing to drop it is only logged.
        if let Err(e) = self.drop_staging(&table).await {
            tracing::warn!(table, error = %e, "could not drop the staging table; it expires within a day");
        }
        Ok(counts)
    }

    async fn fail_run(&self, run: &RunStart, report: &RunReport, error: &str) -> Result<(), WarehouseError> {
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
        let dropped = self.drop_staging(&Self::staging_table(run)).await;
        recorded.and(dropped)
    }

    async fn count_won_in_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<u64, WarehouseError> {
        let params = vec![p_ts("start", &start), p_ts("end", &end)];
        let rows = self.query("counting won deals", self.render(SQL_COUNT_WON, &[]), params).await?.rows;
        Ok(rows.first().map(|r| cell_u64(r, 0)).unwrap_or(0))
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
                })
            })
            .collect()
    }

    async fn stored_deals(&self) -> Result<Vec<StoredDeal>, WarehouseError> {
        let select = DEAL_COLUMNS
            .iter()
            .map(|c| match c.bigquery_type {
                // Integers of microseconds: the REST API's own TIMESTAMP text differs between BigQuery
                // ("1.7E9") and the emulator ("1700000000.0").
                "TIMESTAMP" => format!("UNIX_MICROS({0}) AS {0}", c.name),
                "JSON" => format!("TO_JSON_STRING({0}) AS {0}", c.name),
                _ => c.name.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT {select} FROM `{{{{dataset}}}}.{DEALS_TABLE}` ORDER BY LENGTH(deal_id), deal_id");
        let rows = self.query("reading closed_won_deals", self.render(&sql, &[]), vec![]).await?.rows;
        rows.iter().map(|r| stored_deal(r)).collect()
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
