//! The run's staging table: created by `begin_run` (before anything is staged, never mid-run), filled with
//! DML `INSERT … SELECT … FROM UNNEST(@rows)`, verified before the merge, dropped by `commit`/`fail_run`.
//!
//! Why DML and not `tabledata.insertAll` (docs/bigquery.md, "Streaming inserts"): streamed rows into a table
//! seconds old can be refused (404) or acknowledged and not yet visible, and streaming is refused on projects
//! without billing. A DML INSERT is visible to the next statement, works on every project, and costs at least
//! 10 MB per statement (≈ $0.00006), which at 500 rows per statement is nothing next to the MERGE.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use serde_json::Value;

use super::codec::StagedRow;
use super::jobs::{cell, cell_u64};
use super::sql::{SQL_STAGED_COUNTS, SQL_STAGE_INSERT, SQL_STAGING_TABLE};
use super::BigQueryWarehouse;
use crate::deal::CellType;
use crate::error_chain;
use crate::warehouse::columns::{all_columns, bigquery_type, column_names, CustomColumn};
use crate::warehouse::{QuarantinedRecord, RunStart, WarehouseError};

/// Rows per INSERT statement: keeps the query parameters of one statement well under BigQuery's request
/// size limit (10 MB) …
pub(super) const INSERT_MAX_ROWS: usize = 500;
/// … and at most this many bytes of parameter values; `raw` can be large.
pub(super) const INSERT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// What one run staged through this process: the distinct change keys per kind (to verify the staging table
/// before the merge) and the rows BigQuery refused (quarantined at commit).
#[derive(Debug, Default)]
pub(super) struct RunState {
    pub(super) staged: HashMap<&'static str, HashSet<String>>,
    pub(super) rejected: Vec<QuarantinedRecord>,
}

impl BigQueryWarehouse {
    pub(super) fn staging_table(run: &RunStart) -> String {
        let mut name: String =
            run.run_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        name.truncate(200);
        format!("_staging_{name}")
    }

    /// Creates the run's staging table (idempotent). Called by `begin_run` only: a staging table is never
    /// created or recreated while the run stages.
    pub(super) async fn create_staging(&self, table: &str) -> Result<(), WarehouseError> {
        let custom = self.active_custom();
        let columns = all_columns(&custom)
            .map(|(name, t)| format!("{name} {}", bigquery_type(t)))
            .collect::<Vec<_>>()
            .join(",\n  ");
        let sql = self.render(SQL_STAGING_TABLE, &[("staging", table), ("columns", &columns)]);
        self.query("creating the staging table", sql, vec![]).await?;
        Ok(())
    }

    /// Whether `table` exists in the dataset.
    pub(super) async fn table_exists(&self, table: &str) -> Result<bool, WarehouseError> {
        Ok(self.table_schema(table).await?.is_some())
    }

    /// Inserts one batch. A batch BigQuery refuses as invalid is split in halves until the refused rows are
    /// found: they come back as [`Rejected`], the others are staged.
    pub(super) async fn insert_batch(
        &self,
        table: &str,
        batch: &[StagedRow],
        custom: &[CustomColumn],
    ) -> Result<Vec<Rejected>, WarehouseError> {
        let mut rejected = Vec::new();
        let mut pending: Vec<&[StagedRow]> = vec![batch];
        while let Some(rows) = pending.pop() {
            let sql = self.render(
                SQL_STAGE_INSERT,
                &[
                    ("staging", table),
                    ("staging_columns", &staging_columns(custom)),
                    ("staging_values", &staging_values(custom)),
                ],
            );
            match self.query("staging changes", sql, vec![rows_param(rows, custom)]).await {
                Ok(_) => {}
                Err(e @ WarehouseError::Other { .. }) if is_invalid_value(&error_chain::format(&e)) => {
                    if rows.len() == 1 {
                        rejected.push(Rejected { row: rows[0].clone(), reason: error_chain::format(&e) });
                    } else {
                        let (a, b) = rows.split_at(rows.len() / 2);
                        pending.push(b);
                        pending.push(a);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(rejected)
    }

    pub(super) async fn drop_staging(&self, table: &str) -> Result<(), WarehouseError> {
        let sql = self.render("DROP TABLE IF EXISTS `{{dataset}}.{{staging}}`", &[("staging", table)]);
        self.query("dropping the staging table", sql, vec![]).await?;
        Ok(())
    }

    /// Fails unless the staging table holds every distinct change this process staged for `run`, waiting a
    /// little (bounded, with backoff) in case BigQuery shows them late. DML inserts are visible at once, so on a
    /// healthy service the first count matches; the check is what makes the run fail, not lose data, if not.
    pub(super) async fn verify_staged(&self, run: &RunStart, table: &str) -> Result<(), WarehouseError> {
        let expected: Vec<(&'static str, usize)> = self
            .runs
            .lock()
            .map(|runs| {
                runs.get(&run.run_id).map(|s| s.staged.iter().map(|(k, v)| (*k, v.len())).collect()).unwrap_or_default()
            })
            .unwrap_or_default();
        let mut delay = Duration::from_millis(500);
        let started = tokio::time::Instant::now();
        loop {
            let rows = self
                .query("verifying the staged changes", self.render(SQL_STAGED_COUNTS, &[("staging", table)]), vec![])
                .await?
                .rows;
            let found: HashMap<String, u64> = rows.iter().filter_map(|r| Some((cell(r, 0)?, cell_u64(r, 1)))).collect();
            let short: Vec<String> = expected
                .iter()
                .filter(|(kind, n)| found.get(*kind).copied().unwrap_or(0) < *n as u64)
                .map(|(kind, n)| format!("{kind}: {} of {n}", found.get(*kind).copied().unwrap_or(0)))
                .collect();
            if short.is_empty() {
                return Ok(());
            }
            if started.elapsed() + delay > VERIFY_WAIT {
                return Err(WarehouseError::unavailable(format!(
                    "the staging table {table} holds fewer changes than this run staged ({}) after waiting {} s; \
                     nothing was merged and the watermark stays, so the next run redoes this window",
                    short.join(", "),
                    VERIFY_WAIT.as_secs()
                )));
            }
            tracing::warn!(table, short = ?short, ?delay, "staged changes not all visible yet; waiting");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(8));
        }
    }

    /// Records what was staged (or rejected) for `run`.
    pub(super) fn remember(&self, run: &RunStart, staged: &[StagedRow], rejected: Vec<QuarantinedRecord>) {
        if let Ok(mut runs) = self.runs.lock() {
            let state = runs.entry(run.run_id.clone()).or_default();
            for row in staged {
                state.staged.entry(row.kind).or_default().insert(row.insert_id.clone());
            }
            state.rejected.extend(rejected);
        }
    }

    /// Forgets `run` (after its commit or failure), returning the rows BigQuery refused.
    pub(super) fn forget(&self, run: &RunStart) -> RunState {
        self.runs.lock().ok().and_then(|mut runs| runs.remove(&run.run_id)).unwrap_or_default()
    }
}

/// How long `verify_staged` waits for staged changes to show before it fails the run.
pub(super) const VERIFY_WAIT: Duration = Duration::from_secs(30);

/// A row BigQuery refused, with its reason.
#[derive(Debug)]
pub(super) struct Rejected {
    pub(super) row: StagedRow,
    pub(super) reason: String,
}

/// Whether a statement failed because of a value in it (a bad JSON text, a number out of range) rather than
/// because of the statement or the service: those are the failures worth splitting a batch for.
pub(super) fn is_invalid_value(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["invalidquery", "invalid", "malformed", "out of range", "overflow", "bad double", "cannot parse", "could not cast"]
        .iter()
        .any(|k| m.contains(k))
        && !m.contains("not found")
        && !m.contains("syntax error")
        && !m.contains("unrecognized name")
}

/// The staging table's columns in INSERT order.
pub(super) fn staging_columns(custom: &[CustomColumn]) -> String {
    staged_names(custom).join(", ")
}

/// The staged fields: every standard column, the custom ones, then `change_kind`.
pub(super) fn staged_names(custom: &[CustomColumn]) -> Vec<&str> {
    column_names(custom).chain(["change_kind"]).collect()
}

/// Each column read from the STRING field of the same name, cast to its type.
pub(super) fn staging_values(custom: &[CustomColumn]) -> String {
    all_columns(custom)
        .map(|(name, t)| cast_staged(name, t))
        .chain(["r.change_kind".to_owned()])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The STRING field `name` of a staged row as a value of type `t`.
pub(super) fn cast_staged(name: &str, t: CellType) -> String {
    match t {
        CellType::Text => format!("r.{name}"),
        CellType::Json => format!("PARSE_JSON(r.{name})"),
        CellType::TextList => format!("JSON_VALUE_ARRAY(r.{name})"),
        t => format!("CAST(r.{name} AS {})", bigquery_type(t)),
    }
}

/// `@rows`: the batch as an ARRAY<STRUCT<col STRING, …>> query parameter.
pub(super) fn rows_param(rows: &[StagedRow], custom: &[CustomColumn]) -> QueryParameter {
    let names = staged_names(custom);
    let values = rows
        .iter()
        .map(|row| {
            names
                .iter()
                .map(|n| match row.json.get(*n) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                })
                .collect()
        })
        .collect();
    struct_array_param("rows", &names, values)
}

/// An ARRAY<STRUCT<name STRING, …>> query parameter `param` with one struct per row (`None` = NULL).
pub(super) fn struct_array_param(param: &str, names: &[&str], rows: Vec<Vec<Option<String>>>) -> QueryParameter {
    use gcp_bigquery_client::model::query_parameter_type_struct_types::QueryParameterTypeStructTypes;
    let string = || QueryParameterType { r#type: "STRING".to_owned(), ..Default::default() };
    let struct_type = QueryParameterType {
        r#type: "STRUCT".to_owned(),
        struct_types: Some(
            names
                .iter()
                .map(|n| QueryParameterTypeStructTypes {
                    name: Some((*n).to_owned()),
                    r#type: Some(string()),
                    description: None,
                })
                .collect(),
        ),
        ..Default::default()
    };
    let values = rows
        .into_iter()
        .map(|row| {
            let fields = names
                .iter()
                .zip(row)
                .map(|(n, value)| ((*n).to_owned(), QueryParameterValue { value, ..Default::default() }))
                .collect();
            QueryParameterValue { struct_values: Some(fields), ..Default::default() }
        })
        .collect();
    QueryParameter {
        name: Some(param.to_owned()),
        parameter_type: Some(QueryParameterType {
            r#type: "ARRAY".to_owned(),
            array_type: Some(Box::new(struct_type)),
            ..Default::default()
        }),
        parameter_value: Some(QueryParameterValue { array_values: Some(values), ..Default::default() }),
    }
}

/// Cuts rows into statements of at most [`INSERT_MAX_ROWS`] rows and about [`INSERT_MAX_BYTES`].
pub(super) fn batches(rows: &[StagedRow]) -> Vec<&[StagedRow]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        if i > start && (i - start == INSERT_MAX_ROWS || bytes + row.size > INSERT_MAX_BYTES) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += row.size;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}
