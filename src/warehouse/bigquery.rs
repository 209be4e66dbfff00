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

/// `BQ_DATASET` when unset.
pub const DEFAULT_DATASET: &str = "zoho_crm";
/// `BQ_LOCATION` when unset.
pub const DEFAULT_LOCATION: &str = "US";

/// A TCP connect to Google (or the emulator) that takes longer than this is not going to work.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One HTTP exchange. Queries ask BigQuery to answer within [`QUERY_WAIT`] and are polled after that, so a
/// response never legitimately takes much longer than that wait.
const HTTP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long BigQuery holds a `jobs.query`/`getQueryResults` call open waiting for the job (it answers
/// `jobComplete: false` after that and we poll again).
const QUERY_WAIT: Duration = Duration::from_secs(60);
/// A single statement (our MERGE included) that runs longer than this is abandoned with an error.
const QUERY_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// insertAll takes at most 500 rows per request (Google's recommendation; the hard limit is 50,000) …
const INSERT_MAX_ROWS: usize = 500;
/// … and at most 10 MB per request; `raw` can be large, so batches are also cut by size, with headroom.
const INSERT_MAX_BYTES: usize = 8 * 1024 * 1024;
/// insertAll's `insertId` is at most 128 characters.
const INSERT_ID_MAX: usize = 128;
/// BigQuery NUMERIC keeps 9 decimal places.
const NUMERIC_SCALE: u32 = 9;
/// The table the analysts query.
const DEALS_TABLE: &str = "closed_won_deals";

const SQL_CREATE_DATASET: &str = include_str!("../../sql/create_dataset.sql");
const SQL_DEALS_TABLE: &str = include_str!("../../sql/closed_won_deals.sql");
const SQL_RUNS_TABLE: &str = include_str!("../../sql/sync_runs.sql");
const SQL_QUARANTINE_TABLE: &str = include_str!("../../sql/quarantined_deals.sql");
const SQL_QUARANTINE_RESOLVE: &str = include_str!("../../sql/quarantine_resolve.sql");
const SQL_QUARANTINE_UPSERT: &str = include_str!("../../sql/quarantine_upsert.sql");
const SQL_STAGING_TABLE: &str = include_str!("../../sql/staging.sql");
const SQL_MERGE_SOURCE: &str = include_str!("../../sql/merge_source.sql");
const SQL_MERGE: &str = include_str!("../../sql/merge.sql");
const SQL_MERGE_COUNTS: &str = include_str!("../../sql/merge_counts.sql");
const SQL_MARK_DELETED: &str = include_str!("../../sql/mark_deleted.sql");
const SQL_COUNT_WON: &str = include_str!("../../sql/count_won.sql");
const SQL_WON_IDS: &str = include_str!("../../sql/won_ids.sql");
const SQL_RUN_BEGIN: &str = include_str!("../../sql/run_begin.sql");
const SQL_RUNS_ABANDONED: &str = include_str!("../../sql/runs_abandoned.sql");
const SQL_LEASE_HOLDERS: &str = include_str!("../../sql/lease_holders.sql");
const SQL_HEARTBEAT: &str = include_str!("../../sql/heartbeat.sql");
const SQL_RUN_SUCCEEDED: &str = include_str!("../../sql/run_succeeded.sql");
const SQL_RUN_FAILED: &str = include_str!("../../sql/run_failed.sql");
const SQL_RUN_COUNTS: &str = include_str!("../../sql/run_counts.sql");
const SQL_SUCCEEDED_WINDOWS: &str = include_str!("../../sql/succeeded_windows.sql");
const SQL_LEDGER: &str = include_str!("../../sql/ledger.sql");
/// Analyst views, created (or replaced) by `prepare`, in dependency order.
const SQL_VIEWS: &[(&str, &str)] = &[
    ("current_won_deals", include_str!("../../sql/views/current_won_deals.sql")),
    ("won_revenue_by_month_owner", include_str!("../../sql/views/won_revenue_by_month_owner.sql")),
    ("time_to_close", include_str!("../../sql/views/time_to_close.sql")),
    ("sync_status", include_str!("../../sql/views/sync_status.sql")),
];

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

/// The emulator takes any token; the crate insists on an authenticator, so this one hands out a dummy.
#[derive(Clone)]
struct EmulatorAuthenticator;

// `Authenticator` is declared with `#[async_trait]`; this is that macro's expansion written out, which saves
// a dependency for one method.
impl Authenticator for EmulatorAuthenticator {
    fn access_token<'life0, 'async_trait>(
        &'life0 self,
    ) -> Pin<Box<dyn Future<Output = Result<String, BQError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async { Ok("emulator".to_owned()) })
    }
}

impl BigQueryWarehouse {
    /// A client for `config`: Application Default Credentials against Google (a service-account key in
    /// `GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`, or the metadata server on
    /// Cloud Run / GKE), or no credentials and plain HTTP against `config.emulator_host`. Nothing is created
    /// until [`Warehouse::prepare`]; credentials are first used by the first request.
    pub async fn connect(config: BigQueryConfig) -> Result<Self, WarehouseError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| WarehouseError::Other(format!("could not build the HTTP client: {e}")))?;
        let mut builder = ClientBuilder::new();
        builder.with_client(http);
        let client = match &config.emulator_host {
            Some(host) => {
                let host = host.trim().trim_start_matches("http://").trim_end_matches('/');
                builder.with_v2_base_url(format!("http://{host}/bigquery/v2"));
                builder.build_from_authenticator(Arc::new(EmulatorAuthenticator)).await
            }
            None => builder.build_from_application_default_credentials().await,
        }
        .map_err(|e| classify(&e, "connecting to BigQuery").error)?;
        Ok(BigQueryWarehouse { client, config, staging_created: Mutex::new(HashSet::new()) })
    }

    /// The configuration this warehouse was built from.
    pub fn config(&self) -> &BigQueryConfig {
        &self.config
    }

    /// Runs one GoogleSQL statement in this warehouse's location and returns its rows as text cells (`None`
    /// for NULL). `{{dataset}}` in `sql` is replaced by `project.dataset` (write it inside backticks). For
    /// tests, operations and ad-hoc checks; the sync never calls it.
    pub async fn query_text(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        Ok(self.query("ad-hoc query", self.render(sql, &[]), Vec::new()).await?.rows)
    }

    /// The column names of `table` in this dataset, in order.
    pub async fn table_columns(&self, table: &str) -> Result<Vec<String>, WarehouseError> {
        self.table_schema(table)
            .await?
            .ok_or_else(|| WarehouseError::Other(format!("table {}.{table} does not exist", self.dataset_ref())))
    }

    /// The column names of `table`, or `None` when it does not exist.
    async fn table_schema(&self, table: &str) -> Result<Option<Vec<String>>, WarehouseError> {
        let what = format!("reading the schema of {table}");
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        let found = retry(
            policy(),
            || async { self.client.table().get(project, dataset, table, None).await.map_err(|e| classify(&e, &what)) },
            |f: &Failure, wait| tracing::warn!(error = %f.error, ?wait, "BigQuery call failed; retrying"),
        )
        .await;
        match found {
            Ok(t) => Ok(Some(t.schema.fields.unwrap_or_default().into_iter().map(|f| f.name).collect())),
            Err(f) if f.not_found => Ok(None),
            Err(f) => Err(f.error),
        }
    }

    /// Deletes the dataset and everything in it. For tests (each uses its own dataset) and teardown; never
    /// called by the sync.
    pub async fn drop_dataset(&self) -> Result<(), WarehouseError> {
        self.query("dropping the dataset", self.render("DROP SCHEMA IF EXISTS `{{dataset}}` CASCADE", &[]), vec![])
            .await
            .map(|_| ())
    }

    fn dataset_ref(&self) -> String {
        format!("{}.{}", self.config.project, self.config.dataset)
    }

    /// Fills `{{dataset}}` and the given placeholders.
    fn render(&self, sql: &str, vars: &[(&str, &str)]) -> String {
        let mut out = sql.replace("{{dataset}}", &self.dataset_ref());
        for (k, v) in vars {
            out = out.replace(&format!("{{{{{k}}}}}"), v);
        }
        out
    }

    /// Runs one statement to completion (polling and paging as needed), retrying what BigQuery says is
    /// transient. Every statement we send is idempotent, and the `requestId` lets BigQuery de-duplicate a
    /// retried `jobs.query` whose first attempt did reach it.
    async fn query(&self, what: &str, sql: String, params: Vec<QueryParameter>) -> Result<QueryResult, WarehouseError> {
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

    async fn query_once(&self, request: QueryRequest) -> Result<QueryResult, Failure> {
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

    fn staging_table(run: &RunStart) -> String {
        let mut name: String =
            run.run_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        name.truncate(200);
        format!("_staging_{name}")
    }

    async fn ensure_staging(&self, table: &str) -> Result<(), WarehouseError> {
        if self.staging_known(table) {
            return Ok(());
        }
        let columns =
            DEAL_COLUMNS.iter().map(|c| format!("{} {}", c.name, c.bigquery_type)).collect::<Vec<_>>().join(",\n  ");
        let sql = self.render(SQL_STAGING_TABLE, &[("staging", table), ("columns", &columns)]);
        self.query("creating the staging table", sql, vec![]).await?;
        if let Ok(mut known) = self.staging_created.lock() {
            known.insert(table.to_owned());
        }
        Ok(())
    }

    fn staging_known(&self, table: &str) -> bool {
        self.staging_created.lock().map(|known| known.contains(table)).unwrap_or(false)
    }

    fn forget_staging(&self, table: &str) {
        if let Ok(mut known) = self.staging_created.lock() {
            known.remove(table);
        }
    }

    /// Whether `table` exists in the dataset.
    async fn table_exists(&self, table: &str) -> Result<bool, WarehouseError> {
        Ok(self.table_schema(table).await?.is_some())
    }

    /// Streams one batch (≤ [`INSERT_MAX_ROWS`] rows, ≤ [`INSERT_MAX_BYTES`]) into `table`.
    async fn insert_batch(&self, table: &str, batch: &[StagedRow]) -> Result<(), Failure> {
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        let attempt = || async {
            let mut request = TableDataInsertAllRequest::new();
            request
                .add_rows(
                    batch
                        .iter()
                        .map(|r| TableDataInsertAllRequestRows {
                            insert_id: Some(r.insert_id.clone()),
                            json: r.json.clone(),
                        })
                        .collect(),
                )
                .map_err(|e| classify(&e, "building the insertAll request"))?;
            let response = self.client.tabledata().insert_all(project, dataset, table, request).await.map_err(|e| {
                let mut f = classify(&e, "streaming rows into staging");
                // A table created seconds ago may not be visible to the streaming backend yet.
                f.retryable |= f.not_found;
                f
            })?;
            row_errors(batch, response.insert_errors.unwrap_or_default())
        };
        retry(policy(), attempt, |f: &Failure, wait| {
            tracing::warn!(table, error = %f.error, ?wait, "insertAll failed; retrying the batch");
        })
        .await
    }

    /// The counts a run recorded when it succeeded, if it did.
    async fn recorded_counts(&self, run: &RunStart) -> Result<Option<MergeCounts>, WarehouseError> {
        let rows = self
            .query("reading the run's ledger row", self.render(SQL_RUN_COUNTS, &[]), vec![p_str("run_id", &run.run_id)])
            .await?
            .rows;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        if cell(&row, 0).as_deref() != Some("succeeded") {
            return Ok(None);
        }
        Ok(Some(MergeCounts {
            upserted: cell_u64(&row, 1),
            unwon: cell_u64(&row, 2),
            deleted: cell_u64(&row, 3),
            won_in_window: cell_u64(&row, 4),
        }))
    }

    async fn drop_staging(&self, table: &str) -> Result<(), WarehouseError> {
        let sql = self.render("DROP TABLE IF EXISTS `{{dataset}}.{{staging}}`", &[("staging", table)]);
        self.query("dropping the staging table", sql, vec![]).await?;
        self.forget_staging(table);
        Ok(())
    }

    async fn add_missing_columns(&self) -> Result<(), WarehouseError> {
        let existing: HashSet<String> = self.table_columns(DEALS_TABLE).await?.into_iter().collect();
        let missing: Vec<_> = DEAL_COLUMNS.iter().filter(|c| !existing.contains(c.name)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let adds = missing
            .iter()
            .map(|c| format!("ADD COLUMN IF NOT EXISTS {} {}", c.name, c.bigquery_type))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = self.render(&format!("ALTER TABLE `{{{{dataset}}}}.{DEALS_TABLE}` {adds}"), &[]);
        self.query("adding new columns to closed_won_deals", sql, vec![]).await?;
        let names: Vec<_> = missing.iter().map(|c| c.name).collect();
        tracing::info!(table = DEALS_TABLE, columns = ?names, "added columns introduced by this version");
        Ok(())
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
                    kind: if cell(r, 2).as_deref() == Some("backfill") {
                        RunKind::Backfill
                    } else {
                        RunKind::Scheduled
                    },
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
            counts.deleted = deleted.affected.unwrap_or(0);
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
                    started_at: cell_ts(r, 10)?,
                    finished_at: cell_ts(r, 11)?,
                    zoho_won_count: cell_i64(r, 12).and_then(|n| u64::try_from(n).ok()),
                    warehouse_won_count: cell_i64(r, 9).and_then(|n| u64::try_from(n).ok()),
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

impl BigQueryWarehouse {
    /// Upserts quarantined records by deal id, in statements of bounded size (each record is a few parameters).
    async fn quarantine(&self, run: &RunStart, records: &[QuarantinedRecord]) -> Result<(), WarehouseError> {
        // One row per deal: MERGE refuses a target row matched by two source rows. The last one wins.
        let mut newest: Vec<&QuarantinedRecord> = Vec::new();
        for q in records.iter().rev() {
            if !newest.iter().any(|n| n.deal_id == q.deal_id) {
                newest.push(q);
            }
        }
        for chunk in quarantine_chunks(&newest) {
            let mut params = vec![p_str("run_id", &run.run_id)];
            let rows: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    params.extend([
                        p_str(&format!("d{i}"), &q.deal_id),
                        p_str(&format!("f{i}"), &q.field),
                        p_str(&format!("r{i}"), &q.reason),
                        p_str(&format!("c{i}"), &q.record),
                    ]);
                    format!("SELECT @d{i} AS deal_id, @f{i} AS field, @r{i} AS reason, @c{i} AS record")
                })
                .collect();
            let sql = self.render(SQL_QUARANTINE_UPSERT, &[("source", &rows.join(" UNION ALL "))]);
            self.query("recording quarantined records", sql, params).await?;
        }
        Ok(())
    }
}

/// Splits quarantined records into statements of at most 100 records and about 4 MB of parameters (BigQuery
/// caps a request's size).
fn quarantine_chunks<'a>(records: &'a [&'a QuarantinedRecord]) -> Vec<&'a [&'a QuarantinedRecord]> {
    const MAX_ROWS: usize = 100;
    const MAX_BYTES: usize = 4 * 1024 * 1024;
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, q) in records.iter().enumerate() {
        let size = q.deal_id.len() + q.field.len() + q.reason.len() + q.record.len() + 200;
        if i > start && (i - start == MAX_ROWS || bytes + size > MAX_BYTES) {
            chunks.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        chunks.push(&records[start..]);
    }
    chunks
}

/// A finished statement: its rows as text cells, the DML row count when it was DML, and what it scanned
/// (logged: it is what BigQuery bills).
struct QueryResult {
    rows: Vec<Vec<Option<String>>>,
    affected: Option<u64>,
    bytes_processed: Option<u64>,
}

fn cells(rows: Vec<TableRow>) -> Vec<Vec<Option<String>>> {
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

fn cell(row: &[Option<String>], i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}

fn cell_i64(row: &[Option<String>], i: usize) -> Option<i64> {
    row.get(i)?.as_deref()?.parse().ok()
}

fn cell_u64(row: &[Option<String>], i: usize) -> u64 {
    cell_i64(row, i).and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

/// A TIMESTAMP selected as `UNIX_MICROS(..)`.
fn cell_ts(row: &[Option<String>], i: usize) -> Result<Option<DateTime<Utc>>, WarehouseError> {
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

fn missing(column: &str) -> WarehouseError {
    WarehouseError::Other(format!("BigQuery returned NULL for {column}, which is never written NULL"))
}

/// One row of `stored_deals`' SELECT (columns in [`DEAL_COLUMNS`] order) as a [`StoredDeal`].
fn stored_deal(row: &[Option<String>]) -> Result<StoredDeal, WarehouseError> {
    let by_name: HashMap<&str, Option<&str>> =
        DEAL_COLUMNS.iter().enumerate().map(|(i, c)| (c.name, row.get(i).and_then(|v| v.as_deref()))).collect();
    let get = |name: &str| by_name.get(name).copied().flatten();
    let text = |name: &str| get(name).map(str::to_owned);
    let unreadable =
        |name: &str, v: &str| WarehouseError::Other(format!("BigQuery returned an unreadable {name} {v:?}"));
    let dec = |name: &str| -> Result<Option<Decimal>, WarehouseError> {
        get(name)
            .map(|v| Decimal::from_str(v).or_else(|_| Decimal::from_scientific(v)).map_err(|_| unreadable(name, v)))
            .transpose()
    };
    let ts = |name: &str| -> Result<Option<DateTime<Utc>>, WarehouseError> {
        get(name)
            .map(|v| v.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(|| unreadable(name, v)))
            .transpose()
    };
    let flag = |name: &str| get(name) == Some("true");
    let deal = Deal {
        deal_id: text("deal_id").unwrap_or_default(),
        deal_name: text("deal_name"),
        stage: text("stage"),
        pipeline: text("pipeline"),
        amount: dec("amount")?,
        currency: text("currency"),
        exchange_rate: dec("exchange_rate")?,
        probability: get("probability").map(|v| v.parse().map_err(|_| unreadable("probability", v))).transpose()?,
        expected_revenue: dec("expected_revenue")?,
        closing_date: get("closing_date")
            .map(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| unreadable("closing_date", v)))
            .transpose()?,
        account_id: text("account_id"),
        account_name: text("account_name"),
        contact_id: text("contact_id"),
        contact_name: text("contact_name"),
        owner_id: text("owner_id"),
        owner_name: text("owner_name"),
        owner_email: text("owner_email"),
        lead_source: text("lead_source"),
        deal_type: text("deal_type"),
        created_time: ts("created_time")?,
        modified_time: ts("modified_time")?.unwrap_or_default(),
        raw: text("raw").unwrap_or_default(),
    };
    Ok(StoredDeal {
        deal,
        is_closed_won: flag("is_closed_won"),
        is_deleted: flag("is_deleted"),
        deleted_time: ts("deleted_time")?,
        run_id: text("run_id").unwrap_or_default(),
    })
}

/// The three column lists of `merge.sql` for the current [`DEAL_COLUMNS`]: the SET list of a won update,
/// and the INSERT's columns and values. Flags, `synced_at` and `run_id` are set by the merge itself.
fn merge_column_lists() -> (String, String, String) {
    const SET_BY_MERGE: &[&str] = &["deal_id", "is_closed_won", "is_deleted", "deleted_time", "synced_at", "run_id"];
    let update = DEAL_COLUMNS
        .iter()
        .filter(|c| !SET_BY_MERGE.contains(&c.name))
        .map(|c| format!("{0} = s.{0}", c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let columns = DEAL_COLUMNS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
    let values = DEAL_COLUMNS
        .iter()
        .map(|c| match c.name {
            "is_closed_won" => "TRUE".to_owned(),
            "is_deleted" => "FALSE".to_owned(),
            "deleted_time" => "NULL".to_owned(),
            "synced_at" => "CURRENT_TIMESTAMP()".to_owned(),
            "run_id" => "@run_id".to_owned(),
            name => format!("s.{name}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    (update, columns, values)
}

/// One change as an insertAll row.
#[derive(Debug, Clone, PartialEq)]
struct StagedRow {
    insert_id: String,
    deal_id: String,
    json: Value,
    /// Serialized size, for cutting batches under the request size limit.
    size: usize,
}

/// RFC 3339 with microseconds: the emulator rejects numeric epoch TIMESTAMPs in insertAll, and BigQuery keeps
/// microseconds.
fn rfc3339(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// NUMERIC as a decimal string (never through f64), rounded to NUMERIC's 9 places like BigQuery's own CAST.
fn numeric(d: &Decimal) -> Value {
    Value::String(
        d.round_dp_with_strategy(NUMERIC_SCALE, RoundingStrategy::MidpointAwayFromZero).normalize().to_string(),
    )
}

fn opt<T>(v: &Option<T>, f: impl Fn(&T) -> Value) -> Value {
    v.as_ref().map(f).unwrap_or(Value::Null)
}

fn staged_row(run_id: &str, change: &DealChange) -> StagedRow {
    let s = |v: &String| Value::String(v.clone());
    let mut m = Map::new();
    let (kind, version) = match change {
        DealChange::Won(d) => {
            m.insert("deal_id".into(), s(&d.deal_id));
            m.insert("deal_name".into(), opt(&d.deal_name, s));
            m.insert("stage".into(), opt(&d.stage, s));
            m.insert("pipeline".into(), opt(&d.pipeline, s));
            m.insert("amount".into(), opt(&d.amount, numeric));
            m.insert("currency".into(), opt(&d.currency, s));
            m.insert("exchange_rate".into(), opt(&d.exchange_rate, numeric));
            m.insert("probability".into(), opt(&d.probability, |p| Value::from(*p)));
            m.insert("expected_revenue".into(), opt(&d.expected_revenue, numeric));
            m.insert("closing_date".into(), opt(&d.closing_date, |x| Value::String(x.format("%Y-%m-%d").to_string())));
            m.insert("account_id".into(), opt(&d.account_id, s));
            m.insert("account_name".into(), opt(&d.account_name, s));
            m.insert("contact_id".into(), opt(&d.contact_id, s));
            m.insert("contact_name".into(), opt(&d.contact_name, s));
            m.insert("owner_id".into(), opt(&d.owner_id, s));
            m.insert("owner_name".into(), opt(&d.owner_name, s));
            m.insert("owner_email".into(), opt(&d.owner_email, s));
            m.insert("lead_source".into(), opt(&d.lead_source, s));
            m.insert("deal_type".into(), opt(&d.deal_type, s));
            m.insert("created_time".into(), opt(&d.created_time, rfc3339));
            m.insert("modified_time".into(), rfc3339(&d.modified_time));
            m.insert("is_closed_won".into(), Value::Bool(true));
            m.insert("is_deleted".into(), Value::Bool(false));
            // insertAll takes a JSON column as a string holding the JSON text.
            m.insert("raw".into(), Value::String(d.raw.clone()));
            (change_kind::WON, d.modified_time)
        }
        DealChange::Unwon { deal_id, stage, modified_time } => {
            m.insert("deal_id".into(), s(deal_id));
            m.insert("stage".into(), opt(stage, s));
            m.insert("modified_time".into(), rfc3339(modified_time));
            m.insert("is_closed_won".into(), Value::Bool(false));
            (change_kind::UNWON, *modified_time)
        }
        DealChange::Deleted { deal_id, deleted_time } => {
            m.insert("deal_id".into(), s(deal_id));
            m.insert("deleted_time".into(), rfc3339(deleted_time));
            m.insert("is_deleted".into(), Value::Bool(true));
            (change_kind::DELETED, *deleted_time)
        }
    };
    m.insert("run_id".into(), Value::String(run_id.to_owned()));
    m.insert("change_kind".into(), Value::String(kind.to_owned()));
    let json = Value::Object(m);
    let size = json.to_string().len();
    StagedRow {
        insert_id: insert_id(kind, change.deal_id(), &version),
        deal_id: change.deal_id().to_owned(),
        json,
        size,
    }
}

/// insertAll's best-effort de-duplication key: the same change of the same deal version maps to the same id,
/// so a batch redelivered within BigQuery's de-duplication window is stored once (the MERGE de-duplicates the
/// rest). Ids that would exceed 128 characters are hashed.
fn insert_id(kind: &str, deal_id: &str, version: &DateTime<Utc>) -> String {
    let id = format!("{kind}:{deal_id}:{}", version.timestamp_micros());
    if id.len() <= INSERT_ID_MAX {
        return id;
    }
    // FNV-1a: stable across Rust versions, unlike std's hasher.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{kind}:h{hash:016x}:{}", version.timestamp_micros())
}

/// Cuts rows into insertAll requests of at most [`INSERT_MAX_ROWS`] rows and about [`INSERT_MAX_BYTES`].
fn batches(rows: &[StagedRow]) -> Vec<&[StagedRow]> {
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

/// Per-row insertAll errors: a row BigQuery found invalid is rejected with its deal id (the rest of that
/// request is `stopped`, not stored); rows that only failed transiently make the whole request retryable
/// (their insertIds make the retry safe).
fn row_errors(
    batch: &[StagedRow],
    errors: Vec<gcp_bigquery_client::model::table_data_insert_all_response_insert_errors::TableDataInsertAllResponseInsertErrors>,
) -> Result<(), Failure> {
    if errors.is_empty() {
        return Ok(());
    }
    const COLLATERAL: &[&str] = &["stopped", "timeout", "backendError", "internalError"];
    let mut rejected = errors.iter().flat_map(|row| {
        row.errors
            .iter()
            .flatten()
            .filter(|e| !COLLATERAL.contains(&e.reason.as_deref().unwrap_or("")))
            .map(move |e| (row.index, e))
    });
    if let Some((index, e)) = rejected.next() {
        let deal_id = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| batch.get(i))
            .map(|r| r.deal_id.clone())
            .unwrap_or_else(|| "(unknown)".to_owned());
        let others = rejected.count();
        let mut reason = format!(
            "{} ({}{})",
            e.message.as_deref().unwrap_or("no message"),
            e.reason.as_deref().unwrap_or("no reason"),
            e.location.as_deref().filter(|l| !l.is_empty()).map(|l| format!(", field {l}")).unwrap_or_default()
        );
        if others > 0 {
            reason.push_str(&format!("; {others} more rejected in the same request, none of which was stored"));
        }
        return Err(Failure {
            error: WarehouseError::RowRejected { deal_id, reason },
            retryable: false,
            not_found: false,
        });
    }
    Err(Failure {
        error: WarehouseError::Unavailable(format!("insertAll failed transiently for {} rows", errors.len())),
        retryable: true,
        not_found: false,
    })
}

fn param(name: &str, ty: &str, value: Option<String>) -> QueryParameter {
    QueryParameter {
        name: Some(name.to_owned()),
        parameter_type: Some(QueryParameterType { r#type: ty.to_owned(), ..Default::default() }),
        parameter_value: Some(QueryParameterValue { value, ..Default::default() }),
    }
}

fn p_str(name: &str, v: &str) -> QueryParameter {
    param(name, "STRING", Some(v.to_owned()))
}

fn p_ts(name: &str, t: &DateTime<Utc>) -> QueryParameter {
    param(name, "TIMESTAMP", Some(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)))
}

fn p_i64(name: &str, v: i64) -> QueryParameter {
    param(name, "INT64", Some(v.to_string()))
}

fn p_u64(name: &str, v: u64) -> QueryParameter {
    p_opt_u64(name, Some(v))
}

fn p_opt_u64(name: &str, v: Option<u64>) -> QueryParameter {
    // INT64 holds any count this job produces; saturate rather than fail on the absurd.
    param(name, "INT64", v.map(|v| v.min(i64::MAX as u64).to_string()))
}

/// A classified failure: what to report, and whether trying again could help.
#[derive(Debug)]
struct Failure {
    error: WarehouseError,
    retryable: bool,
    not_found: bool,
}

impl Retryable for Failure {
    fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl Failure {
    fn other(message: impl Into<String>) -> Self {
        Failure { error: WarehouseError::Other(message.into()), retryable: false, not_found: false }
    }
}

/// Prefixes what we were doing, keeping the kind.
fn with_context(e: WarehouseError, what: &str) -> WarehouseError {
    match e {
        WarehouseError::Unavailable(m) => WarehouseError::Unavailable(format!("{what}: {m}")),
        WarehouseError::PermissionDenied(m) => WarehouseError::PermissionDenied(format!("{what}: {m}")),
        WarehouseError::Other(m) => WarehouseError::Other(format!("{what}: {m}")),
        other => other,
    }
}

/// The retry schedule for BigQuery calls: 1 s doubling to 20 s, at most 6 retries within 2 minutes: enough to
/// ride out a rate limit, a concurrent-DML conflict or a just-created table not yet visible to insertAll,
/// without stalling a nightly job on an outage.
fn policy() -> RetryPolicy {
    RetryPolicy {
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(20),
        max_retries: 6,
        budget: Duration::from_secs(120),
    }
}

/// Classifies the crate's errors once: connection failures, timeouts, 5xx, 429 and rate limits are
/// `Unavailable` and retryable; a DML conflict with a concurrent statement is retryable; 401/403 are
/// `PermissionDenied`; 404 is `Other` marked not-found; the rest is `Other`.
fn classify(e: &BQError, what: &str) -> Failure {
    let prefix = if what.is_empty() { String::new() } else { format!("{what}: ") };
    let unavailable = |m: String| Failure { error: WarehouseError::Unavailable(m), retryable: true, not_found: false };
    let denied = |m: String| Failure { error: WarehouseError::PermissionDenied(m), retryable: false, not_found: false };
    match e {
        BQError::RequestError(r) => {
            let kind = if r.is_timeout() {
                "timed out"
            } else if r.is_connect() {
                "could not connect"
            } else if r.is_decode() {
                // The crate reads error bodies as JSON; a gateway's HTML 502/503 page ends up here.
                "unreadable response"
            } else {
                "request failed"
            };
            unavailable(format!("{prefix}{kind}: {r}"))
        }
        BQError::ResponseError { error } => {
            let nested = &error.error;
            let reasons: Vec<&str> = nested.errors.iter().filter_map(|m| m.get("reason").map(String::as_str)).collect();
            let message = format!("{prefix}{} (HTTP {}, {})", nested.message, nested.code, reasons.join(", "));
            let has = |r: &str| reasons.contains(&r);
            let lower = nested.message.to_ascii_lowercase();
            if has("rateLimitExceeded") || has("backendError") || has("internalError") || has("jobRateLimitExceeded") {
                unavailable(message)
            } else if lower.contains("concurrent update") || lower.contains("could not serialize access") {
                // Two DML statements on the same table collided; BigQuery asks for a retry.
                unavailable(message)
            } else {
                match nested.code {
                    401 | 403 => denied(message),
                    404 => Failure {
                        error: WarehouseError::Other(message),
                        retryable: false,
                        not_found: true,
                    },
                    408 | 429 | 500..=599 => unavailable(message),
                    _ => Failure::other(message),
                }
            }
        }
        BQError::YupAuthError(y) => match y {
            gcp_bigquery_client::yup_oauth2::Error::HttpError(_)
            | gcp_bigquery_client::yup_oauth2::Error::HttpClientError(_)
            | gcp_bigquery_client::yup_oauth2::Error::LowLevelError(_) => Failure {
                // Not retried: without a key file or gcloud login, ADC falls back to the metadata server,
                // which only exists on Google Cloud; a laptop would otherwise wait out the whole retry budget.
                error: WarehouseError::Unavailable(format!(
                    "{prefix}could not reach Google's token endpoint ({y}); outside Google Cloud, set \
                     GOOGLE_APPLICATION_CREDENTIALS to a service-account key or run `gcloud auth application-default login`"
                )),
                retryable: false,
                not_found: false,
            },
            _ => denied(format!("{prefix}could not obtain Google credentials: {y}")),
        },
        BQError::AuthError(_)
        | BQError::NoToken
        | BQError::InvalidServiceAccountKey(_)
        | BQError::InvalidServiceAccountAuthenticator(_)
        | BQError::InvalidApplicationDefaultCredentialsAuthenticator(_)
        | BQError::InvalidAuthorizedUserAuthenticator(_)
        | BQError::InvalidInstalledFlowAuthenticator(_) => denied(format!(
            "{prefix}could not obtain Google credentials ({e}); set GOOGLE_APPLICATION_CREDENTIALS to a service-account key, run `gcloud auth application-default login`, or run where a metadata server provides them"
        )),
        other => Failure::other(format!("{prefix}{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use gcp_bigquery_client::error::{NestedResponseError, ResponseError};
    use gcp_bigquery_client::model::error_proto::ErrorProto;
    use gcp_bigquery_client::model::table_data_insert_all_response_insert_errors::TableDataInsertAllResponseInsertErrors;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid") + chrono::Duration::seconds(s)
    }

    fn deal(id: &str) -> Deal {
        Deal {
            deal_id: id.into(),
            deal_name: Some("Acme".into()),
            stage: Some("Closed Won".into()),
            pipeline: None,
            amount: Some(Decimal::from_str("12500.10").expect("decimal")),
            currency: Some("EUR".into()),
            exchange_rate: Some(Decimal::from_str("1.1234567894").expect("decimal")),
            probability: Some(100),
            expected_revenue: None,
            closing_date: NaiveDate::from_ymd_opt(2026, 10, 31),
            account_id: None,
            account_name: None,
            contact_id: None,
            contact_name: None,
            owner_id: Some("o1".into()),
            owner_name: None,
            owner_email: None,
            lead_source: None,
            deal_type: None,
            created_time: Some(t(-86400)),
            modified_time: t(0),
            raw: r#"{"id":"1"}"#.into(),
        }
    }

    fn response_error(code: i64, reason: &str, message: &str) -> BQError {
        let mut m = HashMap::new();
        m.insert("reason".to_owned(), reason.to_owned());
        BQError::ResponseError {
            error: ResponseError {
                error: NestedResponseError { code, errors: vec![m], message: message.into(), status: String::new() },
            },
        }
    }

    /// The column names of the CREATE TABLE in `sql/closed_won_deals.sql`, in order.
    fn ddl_columns(sql: &str) -> Vec<(String, String)> {
        let body = sql.split_once("closed_won_deals` (").map(|(_, b)| b).unwrap_or("");
        let body = body.split("\n)\n").next().unwrap_or("");
        body.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("--"))
            .map(|l| {
                let mut words = l.split_whitespace();
                let name = words.next().unwrap_or("").to_owned();
                let ty = words.next().unwrap_or("").trim_end_matches(',').to_owned();
                (name, ty)
            })
            .collect()
    }

    #[test]
    fn the_ddl_file_has_exactly_the_deal_columns_in_order() {
        let expected: Vec<(String, String)> =
            DEAL_COLUMNS.iter().map(|c| (c.name.to_owned(), c.bigquery_type.to_owned())).collect();
        assert_eq!(ddl_columns(SQL_DEALS_TABLE), expected);
    }

    #[test]
    fn every_template_renders_without_leftover_placeholders() {
        let (update_won, insert_columns, insert_values) = merge_column_lists();
        let vars = [
            ("staging", "_staging_x"),
            ("columns", "deal_id STRING"),
            ("location", "US"),
            ("source", "SELECT 1"),
            ("update_won", update_won.as_str()),
            ("insert_columns", insert_columns.as_str()),
            ("insert_values", insert_values.as_str()),
        ];
        let all = [
            SQL_CREATE_DATASET,
            SQL_DEALS_TABLE,
            SQL_RUNS_TABLE,
            SQL_QUARANTINE_TABLE,
            SQL_QUARANTINE_RESOLVE,
            SQL_QUARANTINE_UPSERT,
            SQL_STAGING_TABLE,
            SQL_MERGE_SOURCE,
            SQL_MERGE,
            SQL_MERGE_COUNTS,
            SQL_MARK_DELETED,
            SQL_COUNT_WON,
            SQL_WON_IDS,
            SQL_RUN_BEGIN,
            SQL_RUNS_ABANDONED,
            SQL_LEASE_HOLDERS,
            SQL_HEARTBEAT,
            SQL_RUN_SUCCEEDED,
            SQL_RUN_FAILED,
            SQL_RUN_COUNTS,
            SQL_SUCCEEDED_WINDOWS,
            SQL_LEDGER,
        ];
        for sql in all.iter().chain(SQL_VIEWS.iter().map(|(_, s)| s)) {
            // A multi-line value spliced into a comment would turn its later lines into SQL.
            for line in sql.lines().filter(|l| l.trim_start().starts_with("--")) {
                assert!(!line.contains("{{"), "placeholder in a comment: {line}");
            }
            let mut out = sql.replace("{{dataset}}", "p.d");
            for (k, v) in vars {
                out = out.replace(&format!("{{{{{k}}}}}"), v);
            }
            assert!(!out.contains("{{"), "leftover placeholder in:\n{out}");
        }
    }

    #[test]
    fn the_merge_updates_every_data_column_and_inserts_every_column() {
        let (update_won, insert_columns, insert_values) = merge_column_lists();
        assert!(update_won.contains("amount = s.amount") && update_won.contains("raw = s.raw"));
        assert!(!update_won.contains("deal_id =") && !update_won.contains("run_id ="));
        assert_eq!(insert_columns.split(", ").count(), DEAL_COLUMNS.len());
        assert_eq!(insert_values.split(", ").count(), DEAL_COLUMNS.len());
        assert!(insert_values.contains("@run_id") && insert_values.contains("s.modified_time"));
    }

    #[test]
    fn a_won_change_stages_every_column_with_exact_money_and_rfc3339_times() {
        let row = staged_row("run-1", &DealChange::Won(deal("42")));
        let j = &row.json;
        assert_eq!(j["amount"], "12500.1");
        // NUMERIC keeps 9 places.
        assert_eq!(j["exchange_rate"], "1.123456789");
        assert_eq!(j["modified_time"], "2026-11-01T00:00:00.000000Z");
        assert_eq!(j["closing_date"], "2026-10-31");
        assert_eq!(j["probability"], 100);
        assert_eq!(j["raw"], r#"{"id":"1"}"#);
        assert_eq!(j["is_closed_won"], true);
        assert_eq!(j["is_deleted"], false);
        assert_eq!(j["change_kind"], "won");
        assert_eq!(j["run_id"], "run-1");
        for c in DEAL_COLUMNS.iter().filter(|c| !["deleted_time", "synced_at"].contains(&c.name)) {
            assert!(j.get(c.name).is_some(), "column {} not staged", c.name);
        }
        assert_eq!(row.insert_id, format!("won:42:{}", t(0).timestamp_micros()));
    }

    #[test]
    fn unwon_and_deleted_changes_stage_only_what_they_know() {
        let unwon = staged_row(
            "r",
            &DealChange::Unwon { deal_id: "7".into(), stage: Some("Lost".into()), modified_time: t(5) },
        );
        assert_eq!(unwon.json["is_closed_won"], false);
        assert_eq!(unwon.json["change_kind"], "unwon");
        assert!(unwon.json.get("amount").is_none());
        let deleted = staged_row("r", &DealChange::Deleted { deal_id: "7".into(), deleted_time: t(9) });
        assert_eq!(deleted.json["is_deleted"], true);
        assert_eq!(deleted.json["deleted_time"], "2026-11-01T00:00:09.000000Z");
        assert!(deleted.json.get("modified_time").is_none());
        assert_ne!(unwon.insert_id, deleted.insert_id);
    }

    #[test]
    fn insert_ids_are_stable_and_bounded() {
        assert_eq!(insert_id("won", "1", &t(0)), insert_id("won", "1", &t(0)));
        assert_ne!(insert_id("won", "1", &t(0)), insert_id("won", "1", &t(1)));
        let long = "9".repeat(300);
        let id = insert_id("won", &long, &t(0));
        assert!(id.len() <= INSERT_ID_MAX, "{id}");
        assert_ne!(id, insert_id("won", &"8".repeat(300), &t(0)));
    }

    #[test]
    fn batches_respect_the_row_and_byte_limits() {
        let row = staged_row("r", &DealChange::Won(deal("1")));
        let rows = vec![row.clone(); 1201];
        let sizes: Vec<usize> = batches(&rows).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        let big = StagedRow { size: INSERT_MAX_BYTES / 2 + 1, ..row };
        let sizes: Vec<usize> = batches(&[big.clone(), big.clone(), big]).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn an_invalid_row_is_rejected_with_its_deal_id() {
        let batch: Vec<StagedRow> =
            ["a", "b", "c"].iter().map(|id| staged_row("r", &DealChange::Won(deal(id)))).collect();
        let err = |index, reason: &str| TableDataInsertAllResponseInsertErrors {
            index: Some(index),
            errors: Some(vec![ErrorProto {
                reason: Some(reason.into()),
                message: Some(format!("{reason} row")),
                location: Some("amount".into()),
                debug_info: None,
            }]),
        };
        let f =
            row_errors(&batch, vec![err(0, "stopped"), err(1, "invalid"), err(2, "stopped")]).expect_err("rejected");
        assert!(!f.retryable);
        match f.error {
            WarehouseError::RowRejected { deal_id, reason } => {
                assert_eq!(deal_id, "b");
                assert!(reason.contains("amount"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let f = row_errors(&batch, vec![err(0, "timeout")]).expect_err("transient");
        assert!(f.retryable);
        assert!(row_errors(&batch, vec![]).is_ok());
    }

    #[test]
    fn errors_are_classified_once() {
        let f = classify(&response_error(403, "accessDenied", "Access Denied: Table x"), "merging");
        assert!(matches!(f.error, WarehouseError::PermissionDenied(_)) && !f.retryable);
        let f = classify(&response_error(403, "rateLimitExceeded", "Exceeded rate limits"), "merging");
        assert!(matches!(f.error, WarehouseError::Unavailable(_)) && f.retryable);
        let f = classify(&response_error(503, "backendError", "Backend error"), "merging");
        assert!(matches!(f.error, WarehouseError::Unavailable(_)) && f.retryable);
        let f = classify(
            &response_error(400, "invalidQuery", "Could not serialize access to table t due to concurrent update"),
            "merging",
        );
        assert!(f.retryable);
        let f = classify(&response_error(404, "notFound", "Not found: Table p:d.t"), "reading");
        assert!(f.not_found && !f.retryable);
        assert!(matches!(&f.error, WarehouseError::Other(_)));
        let f = classify(&response_error(400, "invalidQuery", "Syntax error"), "merging");
        assert!(matches!(f.error, WarehouseError::Other(_)) && !f.retryable);
        let f = classify(&BQError::NoToken, "connecting");
        assert!(matches!(f.error, WarehouseError::PermissionDenied(_)));
    }

    #[test]
    fn config_names_are_validated_before_they_reach_sql() {
        assert!(BigQueryConfig::new("acme-analytics").validate().is_ok());
        let bad_dataset = BigQueryConfig { dataset: "zoho`; DROP".into(), ..BigQueryConfig::new("p") };
        assert!(bad_dataset.validate().is_err());
        assert!(BigQueryConfig::new("Bad Project").validate().is_err());
        let bad_location = BigQueryConfig { location: "us'".into(), ..BigQueryConfig::new("p") };
        assert!(bad_location.validate().is_err());
    }

    #[test]
    fn staging_table_names_are_identifiers() {
        let run = RunStart {
            run_id: "3f2a-9c.x".into(),
            kind: RunKind::Scheduled,
            started_at: t(0),
            window_start: t(0),
            window_end: t(1),
            lease_ttl: chrono::Duration::minutes(10),
        };
        let name = BigQueryWarehouse::staging_table(&run);
        assert_eq!(name, "_staging_3f2a_9c_x");
        assert!(is_identifier(&name));
    }
}
