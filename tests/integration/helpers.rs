//! Test fixtures: a Zoho sandbox on a free port, a temporary SQLite file, and the real binary run against
//! them with a bounded duration. Every process started here is killed when its handle drops.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use zoho_deals_sync::warehouse::bigquery::{BigQueryConfig, BigQueryWarehouse};
use zoho_deals_sync::warehouse::sqlite::SqliteWarehouse;
use zoho_deals_sync::warehouse::{LedgerRow, StoredDeal, Warehouse};
use zoho_sandbox::{Sandbox, SandboxConfig, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN};

/// No single run of the binary in these tests may take longer than this: a bound against a hung run, with room
/// for the biggest runs (150k rows on one stream, the BigQuery emulator) on a loaded CI machine.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// A sandbox plus a scratch directory holding the SQLite warehouse.
pub struct TestApp {
    pub sandbox: Sandbox,
    /// Kept so the scratch directory lives as long as the app.
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub http: reqwest::Client,
    /// Extra environment for every run (overrides the defaults).
    pub extra_env: Vec<(String, String)>,
    /// When set, runs write to this BigQuery (emulator) dataset instead of the SQLite file.
    pub bigquery: Option<BigQueryConfig>,
}

/// The BigQuery emulator's `host:port`, or `None` (the caller skips) — except in CI, where the emulator is
/// required and its absence fails the test.
pub fn emulator_host() -> Option<String> {
    match std::env::var("BIGQUERY_EMULATOR_HOST") {
        Ok(h) if !h.trim().is_empty() => Some(h),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but BIGQUERY_EMULATOR_HOST is not set: .ci/run must start the emulator")
        }
        _ => {
            eprintln!("\n*** SKIPPED: BigQuery emulator not running (run scripts/bq-emulator.sh start) ***\n");
            None
        }
    }
}

/// What a run of the binary printed and returned.
#[derive(Debug)]
pub struct RunOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// Both streams, for asserting that something never appears.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// The sandbox's ground truth.
#[derive(Debug)]
pub struct Truth {
    pub won_stages: Vec<String>,
    pub deals: Vec<Value>,
    /// `{"id","deleted_time"}` of every deleted deal.
    pub deleted: Vec<Value>,
}

impl Truth {
    /// Won deals whose `Modified_Time` lies in `[start, end)`.
    pub fn won_in(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<&Value> {
        self.deals
            .iter()
            .filter(|d| d["Stage"].as_str().is_some_and(|s| self.won_stages.iter().any(|w| w == s)))
            .filter(|d| {
                let t = modified(d);
                t >= start && t < end
            })
            .collect()
    }
}

/// A deal's `Modified_Time` in UTC.
pub fn modified(d: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(d["Modified_Time"].as_str().expect("Modified_Time is text"))
        .expect("Modified_Time parses")
        .with_timezone(&Utc)
}

impl TestApp {
    /// Starts a sandbox with `config` and prepares a scratch directory.
    pub async fn spawn(config: SandboxConfig) -> TestApp {
        let sandbox = Sandbox::start(config).await.expect("the sandbox starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("warehouse.sqlite3");
        TestApp { sandbox, dir, db, http: reqwest::Client::new(), extra_env: Vec::new(), bigquery: None }
    }

    /// Points the runs at a fresh dataset in the BigQuery emulator; `None` when there is no emulator.
    pub fn on_bigquery(mut self, test: &str) -> Option<TestApp> {
        let host = emulator_host()?;
        let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(8).collect();
        let dataset = format!("drill_{test}_{suffix}");
        self.bigquery = Some(BigQueryConfig {
            project: "test-project".into(),
            dataset,
            location: "US".into(),
            emulator_host: Some(host),
        });
        Some(self)
    }

    /// A sandbox of `deals` deals with default settings.
    pub async fn with_deals(deals: usize) -> TestApp {
        Self::spawn(SandboxConfig { deals, ..SandboxConfig::default() }).await
    }

    /// The environment a user would set, pointed at the sandbox and the scratch warehouse.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("ZOHO_CLIENT_ID", DEMO_CLIENT_ID.to_owned()),
            ("ZOHO_CLIENT_SECRET", DEMO_CLIENT_SECRET.to_owned()),
            ("ZOHO_REFRESH_TOKEN", DEMO_REFRESH_TOKEN.to_owned()),
            ("ZOHO_ACCOUNTS_URL", self.sandbox.base_url()),
            ("SQLITE_PATH", self.db.display().to_string()),
            ("LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if let Some(bq) = &self.bigquery {
            env.extend([
                ("WAREHOUSE".to_owned(), "bigquery".to_owned()),
                ("BQ_PROJECT".to_owned(), bq.project.clone()),
                ("BQ_DATASET".to_owned(), bq.dataset.clone()),
                ("BIGQUERY_EMULATOR_HOST".to_owned(), bq.emulator_host.clone().unwrap_or_default()),
            ]);
        }
        for (k, v) in &self.extra_env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }

    /// Runs the binary with `args` and the default environment.
    pub async fn run(&self, args: &[&str]) -> RunOutput {
        run_binary(args, &self.env()).await
    }

    /// Runs the binary with `args` and exactly `env`.
    pub async fn run_with_env(&self, args: &[&str], env: &[(String, String)]) -> RunOutput {
        run_binary(args, env).await
    }

    /// The sandbox's ground truth.
    pub async fn truth(&self) -> Truth {
        let v: Value = self.get_json("/__sandbox/truth").await;
        Truth {
            won_stages: v["won_stages"]
                .as_array()
                .expect("won_stages")
                .iter()
                .map(|s| s.as_str().expect("stage").to_owned())
                .collect(),
            deals: v["deals"].as_array().expect("deals").clone(),
            deleted: v["deleted"].as_array().cloned().unwrap_or_default(),
        }
    }

    /// The sandbox's call statistics.
    pub async fn stats(&self) -> Value {
        self.get_json("/__sandbox/stats").await
    }

    /// POSTs JSON to a sandbox control endpoint.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.sandbox.base_url()))
            .json(&body)
            .send()
            .await
            .expect("sandbox answers");
        assert!(resp.status().is_success(), "{path}: HTTP {}", resp.status());
        resp.json().await.unwrap_or(Value::Null)
    }

    async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.sandbox.base_url()))
            .send()
            .await
            .expect("sandbox answers")
            .json()
            .await
            .expect("JSON")
    }

    /// The SQLite warehouse the runs wrote.
    pub fn warehouse(&self) -> SqliteWarehouse {
        SqliteWarehouse::open(&self.db).expect("open the warehouse")
    }

    /// Every stored row (of whichever warehouse the runs write).
    pub async fn stored(&self) -> Vec<StoredDeal> {
        match &self.bigquery {
            Some(bq) => self.bq(bq).await.stored_deals().await.expect("read rows"),
            None => self.warehouse().stored_deals().await.expect("read rows"),
        }
    }

    /// The ledger, newest first (of whichever warehouse the runs write).
    pub async fn ledger(&self) -> Vec<LedgerRow> {
        match &self.bigquery {
            Some(bq) => self.bq(bq).await.ledger().await.expect("ledger"),
            None => self.warehouse().ledger().await.expect("ledger"),
        }
    }

    async fn bq(&self, config: &BigQueryConfig) -> BigQueryWarehouse {
        BigQueryWarehouse::connect(config.clone()).await.expect("emulator reachable")
    }
}

/// Runs the real binary with exactly `env` (nothing inherited), killing it after [`RUN_TIMEOUT`].
pub async fn run_binary(args: &[&str], env: &[(String, String)]) -> RunOutput {
    run_binary_with_stdin(args, env, None).await
}

/// [`run_binary`], with `stdin` written to the binary's standard input (closed afterwards) when given.
pub async fn run_binary_with_stdin(args: &[&str], env: &[(String, String)], stdin: Option<&str>) -> RunOutput {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoho-deals-sync"));
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the binary starts");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).await.expect("write stdin");
        drop(input);
    }
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("the run finishes within RUN_TIMEOUT")
        .expect("the run's output");
    RunOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Posts `body` to the sandbox's control `path` once the sandbox has answered `calls` COQL calls (its call
/// log, written as a call is answered: their answers were computed before the post). For a change that must
/// hit the calls after the N-th one, arm it in the sandbox instead (`/__sandbox/on-coql-call`): a post from
/// here can come late on a loaded machine. Gives up (returning `None`) after [`RUN_TIMEOUT`], so a run that
/// ends early cannot hang the test.
pub fn after_coql_calls(
    app: &TestApp,
    calls: u64,
    path: &'static str,
    body: Value,
) -> tokio::task::JoinHandle<Option<reqwest::StatusCode>> {
    let (http, base) = (app.http.clone(), app.sandbox.base_url());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
        loop {
            let stats: Value = http.get(format!("{base}/__sandbox/stats")).send().await.ok()?.json().await.ok()?;
            let answered = stats["call_log"]["entries"]
                .as_array()
                .map_or(0, |e| e.iter().filter(|c| c["endpoint"] == "coql").count() as u64);
            if answered >= calls {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Some(http.post(format!("{base}{path}")).json(&body).send().await.ok()?.status())
    })
}

/// Runs `sql` (an analyst's query, `{{dataset}}.` dropped: SQLite has one schema) on the SQLite file at `path`;
/// every cell as text (`None` for NULL), as the BigQuery side's `query_text` gives them.
pub fn sqlite_rows(path: &std::path::Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let conn = rusqlite::Connection::open(path).expect("open the SQLite file");
    let sql = sql.replace("{{dataset}}.", "");
    let mut stmt = conn.prepare(&sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => None,
                        rusqlite::types::ValueRef::Integer(v) => Some(v.to_string()),
                        rusqlite::types::ValueRef::Real(v) => Some(v.to_string()),
                        rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                        rusqlite::types::ValueRef::Blob(_) => Some("<blob>".to_owned()),
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_else(|e| panic!("{e}\n{sql}"))
        .collect::<rusqlite::Result<Vec<_>>>()
        .expect("rows");
    rows
}

/// Waits until the wall clock has passed into a new second, so that a mutation stamped in this second is
/// inside the window of a run that starts now (windows end at a whole second, exclusive).
pub async fn next_second() {
    let ms = Utc::now().timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms) + 20)).await;
}

/// Checks the warehouse against the sandbox after a run, from the first run's window start on:
/// every won, undeleted row matches Zoho's current version; every won deal modified since then is there;
/// every deleted deal that was stored is flagged.
pub async fn assert_equals_ground_truth(app: &TestApp, since: DateTime<Utc>) {
    let truth = app.truth().await;
    let end = app.ledger().await.iter().find(|r| r.status == "succeeded").expect("a succeeded run").window_end;
    let stored = app.stored().await;
    let ids: HashSet<&str> = stored.iter().map(|r| r.deal.deal_id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "no duplicate deal ids");

    let current: HashMap<&str, &Value> = truth.deals.iter().map(|d| (d["id"].as_str().expect("id"), d)).collect();
    let is_won = |d: &Value| d["Stage"].as_str().is_some_and(|s| truth.won_stages.iter().any(|w| w == s));
    for row in stored.iter().filter(|r| r.is_closed_won && !r.is_deleted) {
        let id = row.deal.deal_id.as_str();
        let t = current.get(id).unwrap_or_else(|| panic!("{id} is stored as won but no longer exists in Zoho"));
        if modified(t) < end {
            assert!(is_won(t), "{id} is stored as won but Zoho has stage {}", t["Stage"]);
            assert_eq!(row.deal.modified_time, modified(t), "{id} is stale");
        }
    }
    let expected: HashSet<&str> = truth.won_in(since, end).iter().map(|d| d["id"].as_str().expect("id")).collect();
    let have: HashSet<&str> = stored
        .iter()
        .filter(|r| r.is_closed_won && !r.is_deleted && r.deal.modified_time >= since)
        .map(|r| r.deal.deal_id.as_str())
        .collect();
    let missing: Vec<_> = expected.difference(&have).collect();
    assert!(missing.is_empty(), "won deals missing from the warehouse: {missing:?}");
    for d in &truth.deleted {
        let id = d["id"].as_str().expect("id");
        if let Some(row) = stored.iter().find(|r| r.deal.deal_id == id) {
            assert!(row.is_deleted && row.deleted_time.is_some(), "{id} was deleted in Zoho but not flagged");
        }
    }
}
