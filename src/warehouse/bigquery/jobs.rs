//! Query jobs: `jobs.query`, polling `getQueryResults`, result cells and query parameters.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::get_query_results_parameters::GetQueryResultsParameters;
use gcp_bigquery_client::model::query_parameter::QueryParameter;
use gcp_bigquery_client::model::query_parameter_type::QueryParameterType;
use gcp_bigquery_client::model::query_parameter_value::QueryParameterValue;
use gcp_bigquery_client::model::query_request::QueryRequest;
use gcp_bigquery_client::model::table_row::TableRow;
use serde_json::Value;

use super::errors::{classify, policy, with_context, Failure};
use super::BigQueryWarehouse;
use crate::error_chain::Chain;
use crate::retry::retry;
use crate::warehouse::WarehouseError;

/// How long BigQuery holds a `jobs.query`/`getQueryResults` call open waiting for the job (it answers
/// `jobComplete: false` after that and we poll again).
pub(super) const QUERY_WAIT: Duration = Duration::from_secs(60);
/// A single statement (our MERGE included) that runs longer than this is abandoned with an error.
pub(super) const QUERY_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// One HTTP exchange with the jobs API may take at most this long (a hung connection or a hung token fetch
/// from the metadata server included: the whole call, credentials and all, is wrapped in it). BigQuery answers
/// within [`QUERY_WAIT`] by design, so this is that wait plus headroom.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(90);

impl BigQueryWarehouse {
    /// Runs one statement to completion (polling and paging as needed), retrying what BigQuery says is
    /// transient. Every statement we send is idempotent (or, for staging inserts, harmless to repeat: the
    /// merge and the verification count distinct changes).
    ///
    /// Retries by reason (docs/bigquery.md, "Jobs"): a *transport* failure (no answer) is retried with the same
    /// `requestId`, so that BigQuery returns the job the first attempt may have started instead of running it
    /// twice; a *job* that failed for a retryable reason (`backendError`, `jobBackendError`, a concurrent-update
    /// conflict, …) is retried with a new `requestId`, because the old one would only return the same failed job.
    pub(super) async fn query(
        &self,
        what: &str,
        sql: String,
        params: Vec<QueryParameter>,
    ) -> Result<QueryResult, WarehouseError> {
        debug_assert!(!sql.contains("{{"), "unrendered placeholder in {what}: {sql}");
        let mut request = QueryRequest::new(sql);
        request.location = Some(self.config.location.clone());
        request.timeout_ms = Some(QUERY_WAIT.as_millis() as i32);
        request.request_id = Some(uuid::Uuid::new_v4().to_string());
        request.maximum_bytes_billed = self.max_bytes_billed.map(|n| n.to_string());
        let mut labels = HashMap::from([("app".to_owned(), "zoho-deals-sync".to_owned())]);
        if let Some(run) = self.run_label.lock().ok().and_then(|l| l.clone()) {
            labels.insert("run_id".to_owned(), run);
        }
        request.labels = Some(labels);
        if !params.is_empty() {
            request.parameter_mode = Some("NAMED".to_owned());
            request.query_parameters = Some(params);
        }
        let request = Mutex::new(request);
        let current = || request.lock().map(|r| r.clone()).map_err(|_| Failure::other("request lock poisoned"));
        retry(
            policy(),
            || async { self.query_once(current()?).await },
            |f: &Failure, wait| {
                if f.new_request_id {
                    if let Ok(mut r) = request.lock() {
                        r.request_id = Some(uuid::Uuid::new_v4().to_string());
                    }
                }
                tracing::warn!(what, error = %Chain(&f.error), ?wait, new_request_id = f.new_request_id, "BigQuery statement failed; retrying");
            },
        )
        .await
        .inspect(|result| {
            tracing::debug!(
                what,
                bytes_processed = result.bytes_processed,
                affected = result.affected,
                "statement done"
            );
        })
        .map_err(|f| with_context(f.error, what))
    }

    /// One HTTP call under [`CALL_TIMEOUT`], token fetch included.
    async fn call<T>(&self, what: &str, fut: impl Future<Output = Result<T, BQError>>) -> Result<T, Failure> {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(r) => r.map_err(|e| classify(e, what)),
            Err(_) => Err(Failure::transport(format!(
                "{what}: no answer within {} s (BigQuery or the credential server hung)",
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    pub(super) async fn query_once(&self, request: QueryRequest) -> Result<QueryResult, Failure> {
        let project = self.config.project.as_str();
        let started = tokio::time::Instant::now();
        let first = self.call("query", self.client.job().query(project, request)).await?;
        let mut result = QueryResult {
            bytes_processed: first.total_bytes_processed.as_deref().and_then(|n| n.parse().ok()),
            affected: first.num_dml_affected_rows.as_deref().and_then(|n| n.parse().ok()),
            rows: cells(first.rows.unwrap_or_default()),
        };
        let mut complete = first.job_complete.unwrap_or(false);
        let mut page_token = first.page_token;
        if complete && page_token.is_none() {
            return Ok(result);
        }
        let job = first.job_reference.unwrap_or_default();
        let job_id = job.job_id.ok_or_else(|| Failure::other("BigQuery answered a query without a job id"))?;
        let location = job.location.or_else(|| Some(self.config.location.clone()));
        while !complete || page_token.is_some() {
            if started.elapsed() > QUERY_DEADLINE {
                // A job outlives its caller: cancel it, or it keeps running (and billing) after we gave up.
                let cancel = self.client.job().cancel_job(project, &job_id, location.as_deref());
                if let Err(e) = self.call("cancelling the job", cancel).await {
                    tracing::warn!(job_id, error = %Chain(&e.error), "could not cancel a job past its deadline");
                }
                return Err(Failure::other(format!(
                    "job {job_id} did not finish within {} minutes and was cancelled",
                    QUERY_DEADLINE.as_secs() / 60
                )));
            }
            let params = GetQueryResultsParameters {
                location: location.clone(),
                page_token: page_token.clone(),
                timeout_ms: Some(QUERY_WAIT.as_millis() as i32),
                ..Default::default()
            };
            let page = self
                .call("reading query results", self.client.job().get_query_results(project, &job_id, params))
                .await?;
            if !page.job_complete.unwrap_or(false) {
                continue;
            }
            if !complete {
                // The first complete answer repeats the DML count and starts the rows from the top.
                complete = true;
                result.affected = page.num_dml_affected_rows.as_deref().and_then(|n| n.parse().ok());
                result.bytes_processed = page.total_bytes_processed.as_deref().and_then(|n| n.parse().ok());
                result.rows.clear();
            }
            result.rows.extend(cells(page.rows.unwrap_or_default()));
            page_token = page.page_token;
        }
        Ok(result)
    }
}

/// A finished statement: its rows as text cells, the DML row count when it was DML, and what it scanned
/// (logged: it is what BigQuery bills).
pub(super) struct QueryResult {
    pub(super) rows: Vec<Vec<Option<String>>>,
    pub(super) affected: Option<u64>,
    pub(super) bytes_processed: Option<u64>,
}

pub(super) fn cells(rows: Vec<TableRow>) -> Vec<Vec<Option<String>>> {
    rows.into_iter()
        .map(|r| {
            r.columns
                .unwrap_or_default()
                .into_iter()
                .map(|c| match c.value {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(other) => Some(other.to_string()),
                })
                .collect()
        })
        .collect()
}

pub(super) fn cell(row: &[Option<String>], i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}

pub(super) fn cell_i64(row: &[Option<String>], i: usize) -> Option<i64> {
    row.get(i)?.as_deref()?.parse().ok()
}

pub(super) fn cell_u64(row: &[Option<String>], i: usize) -> u64 {
    cell_i64(row, i).and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// A TIMESTAMP selected as `UNIX_MICROS(..)`.
pub(super) fn cell_ts(row: &[Option<String>], i: usize) -> Result<Option<DateTime<Utc>>, WarehouseError> {
    match row.get(i).and_then(|c| c.as_deref()) {
        None => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .map(Some)
            .ok_or_else(|| WarehouseError::other(format!("BigQuery returned an unreadable timestamp {s:?}"))),
    }
}

pub(super) fn missing(column: &str) -> WarehouseError {
    WarehouseError::other(format!("BigQuery returned NULL for {column}, which is never written NULL"))
}

pub(super) fn param(name: &str, ty: &str, value: Option<String>) -> QueryParameter {
    QueryParameter {
        name: Some(name.to_owned()),
        parameter_type: Some(QueryParameterType { r#type: ty.to_owned(), ..Default::default() }),
        parameter_value: Some(QueryParameterValue { value, ..Default::default() }),
    }
}

pub(super) fn p_str(name: &str, v: &str) -> QueryParameter {
    param(name, "STRING", Some(v.to_owned()))
}

/// A TIMESTAMP parameter. BigQuery's TIMESTAMP ends at 9999-12-31 23:59:59.999999 UTC (and begins at year 1):
/// a time outside is clamped to the range (e.g. `DateTime::MAX_UTC` as an open upper bound), which BigQuery
/// would otherwise refuse as an invalid parameter.
pub(super) fn p_ts(name: &str, t: &DateTime<Utc>) -> QueryParameter {
    param(name, "TIMESTAMP", Some(timestamp_text(t)))
}

/// `t` as a TIMESTAMP parameter's text, clamped to BigQuery's range.
pub(super) fn timestamp_text(t: &DateTime<Utc>) -> String {
    let lowest = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").map(|t| t.with_timezone(&Utc));
    let highest = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999999Z").map(|t| t.with_timezone(&Utc));
    let t = match (lowest, highest) {
        (Ok(lo), Ok(hi)) => (*t).clamp(lo, hi),
        _ => *t,
    };
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(super) fn p_i64(name: &str, v: i64) -> QueryParameter {
    param(name, "INT64", Some(v.to_string()))
}

pub(super) fn p_u64(name: &str, v: u64) -> QueryParameter {
    p_opt_u64(name, Some(v))
}

pub(super) fn p_opt_u64(name: &str, v: Option<u64>) -> QueryParameter {
    // INT64 holds any count this job produces; saturate rather than fail on the absurd.
    param(name, "INT64", v.map(|v| v.min(i64::MAX as u64).to_string()))
}
