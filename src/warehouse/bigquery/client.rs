//! The HTTP client and its credentials, the statement templates' renderer, and schema lookups.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use serde_json::Value;

use super::errors::{classify, policy, Failure};
use super::jobs::CALL_TIMEOUT;
use super::sql::SQL_DEDUPE;
use super::{BigQueryConfig, BigQueryWarehouse, DEALS_TABLE, DEFAULT_MAX_BYTES_BILLED};
use crate::error_chain::Chain;
use crate::error_chain::Transport;
use crate::retry::retry;
use crate::warehouse::{WarehouseError, DEAL_COLUMNS};

/// A TCP connect to Google (or the emulator) that takes longer than this is not going to work.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One HTTP exchange. Queries ask BigQuery to answer within [`QUERY_WAIT`] and are polled after that, so a
/// response never legitimately takes much longer than that wait.
const HTTP_TIMEOUT: Duration = Duration::from_secs(90);

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

/// Credential file types the BigQuery client (through yup-oauth2's default path) cannot use.
const UNSUPPORTED_CREDENTIALS: &[(&str, &str)] = &[
    ("external_account", "Workload Identity Federation (GitHub Actions, AWS, Azure)"),
    ("impersonated_service_account", "service-account impersonation"),
];

/// Fails with a configuration error naming `GOOGLE_APPLICATION_CREDENTIALS` when it points at a file that is
/// missing, unreadable, not JSON, or of a type this job cannot use, instead of an opaque credentials error at the
/// first request. Reads only the file's `type`; nothing of it is logged.
pub(super) fn check_credentials_file(path: Option<&std::ffi::OsStr>) -> Result<(), WarehouseError> {
    let Some(path) = path.filter(|p| !p.is_empty()) else { return Ok(()) };
    let shown = std::path::Path::new(path).display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        WarehouseError::Config(format!(
            "GOOGLE_APPLICATION_CREDENTIALS={shown} cannot be read ({e}): point it at a service-account key file"
        ))
    })?;
    let kind = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| {
            WarehouseError::Config(format!(
                "GOOGLE_APPLICATION_CREDENTIALS={shown} is not a Google credentials JSON file (no \"type\")"
            ))
        })?;
    if let Some((_, what)) = UNSUPPORTED_CREDENTIALS.iter().find(|(t, _)| *t == kind) {
        return Err(WarehouseError::Config(format!(
            "GOOGLE_APPLICATION_CREDENTIALS={shown} holds \"{kind}\" credentials ({what}), which this version \
             cannot use: use a service-account key file, `gcloud auth application-default login`, or run on \
             Google Cloud with an attached service account (metadata server); see README, BigQuery"
        )));
    }
    Ok(())
}

impl BigQueryWarehouse {
    /// A client for `config`: Application Default Credentials against Google (a service-account key in
    /// `GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`, or the metadata server on
    /// Cloud Run / GKE), or no credentials and plain HTTP against `config.emulator_host`. Nothing is created
    /// until [`Warehouse::prepare`](crate::warehouse::Warehouse::prepare); credentials are first used by the first request.
    pub async fn connect(config: BigQueryConfig) -> Result<Self, WarehouseError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| WarehouseError::other_from("could not build the HTTP client", Transport::new(e)))?;
        let mut builder = ClientBuilder::new();
        builder.with_client(http);
        let client = match &config.emulator_host {
            Some(host) => {
                let host = host.trim().trim_start_matches("http://").trim_end_matches('/');
                builder.with_v2_base_url(format!("http://{host}/bigquery/v2"));
                builder.build_from_authenticator(Arc::new(EmulatorAuthenticator)).await
            }
            None => {
                check_credentials_file(std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").as_deref())?;
                // Finding the credentials may ask the metadata server, which can hang: bounded like every call.
                match tokio::time::timeout(CALL_TIMEOUT, builder.build_from_application_default_credentials()).await {
                    Ok(built) => built,
                    Err(_) => {
                        return Err(WarehouseError::unavailable(format!(
                            "looking up Google credentials took longer than {} s (a hung metadata server?)",
                            CALL_TIMEOUT.as_secs()
                        )))
                    }
                }
            }
        }
        .map_err(|e| classify(e, "connecting to BigQuery").error)?;
        Ok(BigQueryWarehouse {
            client,
            config,
            runs: Mutex::new(HashMap::new()),
            max_bytes_billed: Some(DEFAULT_MAX_BYTES_BILLED),
            run_label: Mutex::new(None),
            custom: Mutex::new(Vec::new()),
            staging: Mutex::new(None),
            history_custom: Mutex::new(Vec::new()),
        })
    }

    /// Caps what one statement may bill (`maximumBytesBilled`); `None` leaves it to the project's default.
    pub fn with_max_bytes_billed(mut self, bytes: Option<u64>) -> Self {
        self.max_bytes_billed = bytes;
        self
    }

    /// Deletes every row of `closed_won_deals` but the newest per `deal_id` (`sql/dedupe_deals.sql`) and
    /// returns how many it deleted. A repair for a table that ever got a deal twice; never called by the sync.
    pub async fn dedupe_deals(&self) -> Result<u64, WarehouseError> {
        let result = self.query("removing duplicate deals", self.render(SQL_DEDUPE, &[]), vec![]).await?;
        Ok(result.affected.unwrap_or(0))
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
            .ok_or_else(|| WarehouseError::other(format!("table {}.{table} does not exist", self.dataset_ref())))
    }

    /// The column names of `table`, or `None` when it does not exist.
    pub(super) async fn table_schema(&self, table: &str) -> Result<Option<Vec<String>>, WarehouseError> {
        let what = format!("reading the schema of {table}");
        let (project, dataset) = (&self.config.project, &self.config.dataset);
        let found = retry(
            policy(),
            || async { self.client.table().get(project, dataset, table, None).await.map_err(|e| classify(e, &what)) },
            |f: &Failure, wait| tracing::warn!(error = %Chain(&f.error), ?wait, "BigQuery call failed; retrying"),
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

    pub(super) fn dataset_ref(&self) -> String {
        format!("{}.{}", self.config.project, self.config.dataset)
    }

    /// Fills `{{dataset}}` and the given placeholders.
    pub(super) fn render(&self, sql: &str, vars: &[(&str, &str)]) -> String {
        let mut out = sql.replace("{{dataset}}", &self.dataset_ref());
        for (k, v) in vars {
            out = out.replace(&format!("{{{{{k}}}}}"), v);
        }
        out
    }

    pub(super) async fn add_missing_columns(&self) -> Result<(), WarehouseError> {
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
