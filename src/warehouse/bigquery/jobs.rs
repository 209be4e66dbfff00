//! Query jobs: `jobs.query`, polling `getQueryResults`, result cells and query parameters.

use super::*;

/// How long BigQuery holds a `jobs.query`/`getQueryResults` call open waiting for the job (it answers
/// `jobComplete: false` after that and we poll again).
pub(super) const QUERY_WAIT: Duration = Duration::from_secs(60);
/// A single statement (our MERGE included) that runs longer than this is abandoned with an error.
pub(super) const QUERY_DEADLINE: Duration = Duration::from_secs(15 * 60);

impl BigQueryWarehouse {
    /// Runs one statement to completion (polling and paging as needed), retrying what BigQuery says is
    /// transient. Every statement we send is idempotent, and the `requestId` lets BigQuery de-duplicate a
    /// retried `jobs.query` whose first attempt did reach it.
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
        if !params.is_empty() {
            request.parameter_mode = Some("NAMED".to_owned());
            request.query_parameters = Some(params);
        }
        let request = &request;
        retry(
            policy(),
            || self.query_once(request.clone()),
            |f: &Failure, wait| tracing::warn!(what, error = %f.error, ?wait, "BigQuery statement failed; retrying"),
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

    pub(super) async fn query_once(&self, request: QueryRequest) -> Result<QueryResult, Failure> {
        let project = self.config.project.as_str();
        let started = tokio::time::Instant::now();
        let first = self.client.job().query(project, request).await.map_err(|e| classify(&e, "query"))?;
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
                return Err(Failure::other(format!(
                    "job {job_id} did not finish within {} minutes",
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
                .client
                .job()
                .get_query_results(project, &job_id, params)
                .await
                .map_err(|e| classify(&e, "reading query results"))?;
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
            .ok_or_else(|| WarehouseError::Other(format!("BigQuery returned an unreadable timestamp {s:?}"))),
    }
}

pub(super) fn missing(column: &str) -> WarehouseError {
    WarehouseError::Other(format!("BigQuery returned NULL for {column}, which is never written NULL"))
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

pub(super) fn p_ts(name: &str, t: &DateTime<Utc>) -> QueryParameter {
    param(name, "TIMESTAMP", Some(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
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
