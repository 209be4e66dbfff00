//! Knowing the warehouse is fresh and hearing when it is not: `status` (text, JSON, exit codes) and the
//! `sync_status` view over a real SQLite ledger, run as the real binary; the first-run and `check` notes.

use chrono::{DateTime, Utc};
use serde_json::Value;
use zoho_deals_sync::warehouse::bigquery::BigQueryWarehouse;
use zoho_deals_sync::warehouse::sqlite::SqliteWarehouse;
use zoho_deals_sync::warehouse::{QuarantinedRecord, RunKind, RunReport, RunStart, Warehouse};

use crate::helpers::{run_binary, TestApp};

/// The environment of a monitoring probe: the warehouse and nothing else (no Zoho credentials at all).
fn probe_env(app: &TestApp) -> Vec<(String, String)> {
    vec![
        ("SQLITE_PATH".into(), app.db.display().to_string()),
        ("LOG_FORMAT".into(), "json".into()),
        ("RUST_LOG".into(), "info".into()),
    ]
}

async fn status(app: &TestApp, args: &[&str]) -> crate::helpers::RunOutput {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    run_binary(&all, &probe_env(app)).await
}

fn json_of(out: &crate::helpers::RunOutput) -> Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("status --json prints JSON ({e}): {}", out.all()))
}

fn hours_ago(h: i64) -> DateTime<Utc> {
    let now = Utc::now();
    now - chrono::Duration::hours(h) - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()))
}

/// Records a run in the ledger through the warehouse's own API, as a sync would: started at its window's end,
/// then succeeded (with `quarantined` records) or failed with `error`.
async fn record_run<W: Warehouse>(w: &W, id: &str, window: (i64, i64), error: Option<&str>, quarantined: usize) {
    let run = RunStart {
        run_id: id.into(),
        kind: RunKind::Scheduled,
        started_at: hours_ago(window.1),
        window_start: hours_ago(window.0),
        window_end: hours_ago(window.1),
        lease_ttl: chrono::Duration::minutes(10),
    };
    w.prepare().await.expect("prepare");
    w.begin_run(&run).await.expect("begin_run");
    let quarantined: Vec<QuarantinedRecord> = (0..quarantined)
        .map(|i| QuarantinedRecord::new(format!("9{i}"), "Amount".into(), "not a number".into(), "{}".into()))
        .collect();
    let report = RunReport {
        zoho_won_count: Some(0),
        deals_quarantined: quarantined.len() as u64,
        quarantined,
        ..RunReport::default()
    };
    match error {
        None => {
            w.commit(&run, &report).await.expect("commit");
        }
        Some(e) => w.fail_run(&run, &report, e).await.expect("fail_run"),
    }
}

#[tokio::test]
async fn status_on_an_empty_warehouse_says_no_run_succeeded_and_exits_10_only_with_max_age() {
    let app = TestApp::with_deals(0).await;
    let out = status(&app, &[]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("last success: none yet"), "{}", out.stdout);
    assert!(!app.db.exists(), "a probe does not create a warehouse file where none is");

    let out = status(&app, &["--max-age", "26h"]).await;
    assert_eq!(out.code, 10, "{}", out.all());
    assert!(out.stdout.contains("STALE") && out.stdout.contains("no run has succeeded yet"), "{}", out.stdout);

    let out = status(&app, &["--max-age", "26h", "--json"]).await;
    assert_eq!(out.code, 10, "{}", out.all());
    let j = json_of(&out);
    assert_eq!(
        (j["last_success"].clone(), j["stale"].clone(), j["exit_code"].clone()),
        (Value::Null, true.into(), 10.into())
    );
}

#[tokio::test]
async fn status_after_a_real_sync_is_fresh_and_makes_no_zoho_call() {
    let app = TestApp::with_deals(30).await;
    let sync = app.run(&["sync"]).await;
    assert_eq!(sync.code, 0, "{}", sync.all());
    let run_id = app.ledger().await[0].run_id.clone();
    let calls_before = app.stats().await;

    // With Zoho credentials in the environment, too: status still never mints or calls.
    let mut env = app.env();
    env.push(("ZOHO_API_DOMAIN".into(), app.sandbox.base_url()));
    let out = run_binary(&["status", "--max-age", "1h"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains(&format!("last success: run {run_id}")), "{}", out.stdout);
    assert!(out.stdout.contains("fresh:") && out.stdout.contains("consecutive failures: 0"), "{}", out.stdout);
    assert_eq!(app.stats().await, calls_before, "status made no call to Zoho");

    let out = status(&app, &["--max-age", "1h", "--json"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let j = json_of(&out);
    assert_eq!(j["last_success"]["run_id"], Value::from(run_id.as_str()));
    assert_eq!(j["stale"], Value::from(false));
    assert_eq!(j["watermark"], j["last_success"]["window_end"]);
    assert!(j["last_success"]["age_seconds"].as_i64().expect("age") < 3600, "{j}");
}

#[tokio::test]
async fn status_on_a_stale_ledger_exits_10_in_text_and_json() {
    let app = TestApp::with_deals(0).await;
    let w = SqliteWarehouse::open(&app.db).expect("open");
    record_run(&w, "old-night", (75, 51), None, 0).await;

    let out = status(&app, &["--max-age", "26h"]).await;
    assert_eq!(out.code, 10, "{}", out.all());
    assert!(out.stdout.contains("STALE: the newest window ended 2d 3h ago"), "{}", out.stdout);
    let out = status(&app, &["--max-age", "26h", "--json"]).await;
    assert_eq!(out.code, 10, "{}", out.all());
    let j = json_of(&out);
    assert_eq!((j["stale"].clone(), j["last_success"]["run_id"].clone()), (true.into(), "old-night".into()));
    // Without --max-age the same ledger is reported, not judged.
    assert_eq!(status(&app, &[]).await.code, 0);
}

#[tokio::test]
async fn status_on_a_failing_ledger_counts_failures_in_a_row_and_shows_the_last_error() {
    let app = TestApp::with_deals(0).await;
    let w = SqliteWarehouse::open(&app.db).expect("open");
    record_run(&w, "ok", (25, 2), None, 2).await;
    record_run(&w, "night-1", (3, 1), Some("Zoho unavailable: HTTP 503 after 5m of retries\ndetail"), 0).await;
    record_run(&w, "night-2", (3, 0), Some("warehouse unavailable: disk full"), 0).await;

    let out = status(&app, &["--max-age", "26h"]).await;
    assert_eq!(out.code, 0, "the data is still within --max-age: {}", out.all());
    assert!(
        out.stdout.contains("consecutive failures: 2; last error (run night-2): warehouse unavailable: disk full"),
        "{}",
        out.stdout
    );
    let j = json_of(&status(&app, &["--json"]).await);
    assert_eq!(j["consecutive_failures"], Value::from(2));
    assert_eq!(j["last_error"]["run_id"], Value::from("night-2"));
    assert_eq!(j["last_success"]["run_id"], Value::from("ok"));
    assert_eq!(j["open_quarantines"], Value::from(2));

    // Analysts get the same answer from the view.
    let conn = rusqlite::Connection::open(&app.db).expect("open");
    let (failures, last_ok, last_error, quarantines, age): (i64, String, String, i64, i64) = conn
        .query_row(
            "SELECT consecutive_failures, last_success_run_id, last_error, open_quarantines, age_seconds
             FROM sync_status",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .expect("the sync_status view answers one row");
    assert_eq!(
        (failures, last_ok.as_str(), last_error.as_str(), quarantines),
        (2, "ok", "warehouse unavailable: disk full", 2)
    );
    assert!((2 * 3600..3 * 3600).contains(&age), "the window ended 2h ago: {age}");
}

#[tokio::test]
async fn the_first_sync_says_what_it_covered_and_how_to_backfill_and_check_says_so_before() {
    let app = TestApp::with_deals(30).await;
    let check = app.run(&["check"]).await;
    assert_eq!(check.code, 0, "{}", check.all());
    assert!(
        check.stdout.contains("no successful run yet") && check.stdout.contains("sync --since"),
        "{}",
        check.stdout
    );

    let first = app.run(&["sync"]).await;
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(first.stdout.contains("first run: it covered only the last 24h (SYNC_LOOKBACK)"), "{}", first.stdout);
    assert!(first.stdout.contains("zoho-deals-sync sync --since"), "{}", first.stdout);

    let second = app.run(&["sync"]).await;
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(!second.stdout.contains("first run"), "only the first run says so: {}", second.stdout);
}

/// A local webhook: records each request body it receives, then answers `status` (or, with `answer: false`,
/// holds the connection open without answering). Stops when dropped.
struct Webhook {
    url: String,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhook {
    async fn start(status: u16, answer: bool) -> Webhook {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks/T0/B0/s3cr3t-hook-path", listener.local_addr().expect("addr"));
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = bodies.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then Content-Length bytes of body.
                let body = loop {
                    let Ok(n) = sock.read(&mut chunk).await else { break None };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    let Some(head_end) = text.find("\r\n\r\n") else { continue };
                    let len = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= head_end + 4 + len {
                        break Some(String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).into_owned());
                    }
                };
                if let Some(body) = body {
                    seen.lock().expect("lock").push(body);
                }
                if answer {
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                    let _ = sock.write_all(reply.as_bytes()).await;
                } else {
                    held.push(sock);
                }
            }
        });
        Webhook { url, bodies, task }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().expect("lock").clone()
    }
}

fn with_env(app: &TestApp, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = app.env();
    for (k, v) in pairs {
        env.retain(|(ek, _)| ek != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    env
}

fn assert_no_secret(text: &str) {
    for secret in [zoho_sandbox::DEMO_CLIENT_SECRET, zoho_sandbox::DEMO_REFRESH_TOKEN, "s3cr3t-hook-path"] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

#[tokio::test]
async fn a_failing_run_posts_exactly_one_slack_alert_with_its_code_and_no_secret() {
    let app = TestApp::with_deals(20).await;
    app.control("/__sandbox/control", serde_json::json!({"missing_scope": "ZohoCRM.coql.READ"})).await;
    let hook = Webhook::start(200, true).await;
    let out = app.run_with_env(&["sync"], &with_env(&app, &[("ALERT_WEBHOOK_URL", &hook.url)])).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "exactly one alert: {bodies:?}");
    let v: Value = serde_json::from_str(&bodies[0]).expect("JSON");
    let text = v["text"].as_str().expect("a Slack body has text");
    assert!(text.contains("`sync`") && text.contains("exit 3") && text.contains("ZohoCRM.coql.READ"), "{text}");
    assert_no_secret(&bodies[0]);
    assert_no_secret(&out.all());
    assert!(out.stderr.contains("sent the alert"), "{}", out.stderr);
}

#[tokio::test]
async fn a_configuration_error_alerts_too_in_the_plain_json_format() {
    let app = TestApp::with_deals(0).await;
    let hook = Webhook::start(200, true).await;
    let env = with_env(&app, &[("ALERT_WEBHOOK_URL", &hook.url), ("ALERT_FORMAT", "json"), ("ZOHO_DC", "mars")]);
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let v: Value = serde_json::from_str(&bodies[0]).expect("JSON");
    assert_eq!((v["exit_code"].clone(), v["command"].clone()), (2.into(), "sync".into()));
    assert!(v["error"].as_str().expect("error").contains("ZOHO_DC"), "{v}");
    assert!(v["meaning"].is_string() && v["what_to_do"].is_string() && v["host"].is_string(), "{v}");
}

#[tokio::test]
async fn alert_on_all_reports_a_success_with_its_run_id_and_window() {
    let app = TestApp::with_deals(20).await;
    let hook = Webhook::start(200, true).await;
    let env = with_env(&app, &[("ALERT_WEBHOOK_URL", &hook.url), ("ALERT_FORMAT", "json"), ("ALERT_ON", "all")]);
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let row = app.ledger().await[0].clone();
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let v: Value = serde_json::from_str(&bodies[0]).expect("JSON");
    assert_eq!(v["exit_code"], Value::from(0));
    assert_eq!(v["run_id"], Value::from(row.run_id.as_str()));
    assert_eq!(v["window_end"], Value::from(zoho_deals_sync::deal::format_utc(&row.window_end)));
    assert_no_secret(&bodies[0]);
    // Without ALERT_ON=all a success stays quiet.
    let quiet = Webhook::start(200, true).await;
    let out = app.run_with_env(&["sync"], &with_env(&app, &[("ALERT_WEBHOOK_URL", &quiet.url)])).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(quiet.bodies().is_empty());
}

#[tokio::test]
async fn a_dead_webhook_never_changes_the_exit_code_and_is_retried_at_most_once() {
    let app = TestApp::with_deals(20).await;
    app.control("/__sandbox/control", serde_json::json!({"missing_scope": "ZohoCRM.coql.READ"})).await;

    // Connection refused: a port nobody listens on any more.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hooks/s3cr3t-hook-path", l.local_addr().expect("addr"))
    };
    let out = app.run_with_env(&["sync"], &with_env(&app, &[("ALERT_WEBHOOK_URL", &refused)])).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("could not deliver the alert"), "{}", out.stderr);
    assert_no_secret(&out.all());

    // A webhook that never answers: one attempt, cut by the alert timeout (the run still ends within the
    // helper's RUN_TIMEOUT, which kills and fails it otherwise).
    let silent = Webhook::start(200, false).await;
    let out = app.run_with_env(&["sync"], &with_env(&app, &[("ALERT_WEBHOOK_URL", &silent.url)])).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert_eq!(silent.bodies().len(), 1, "no retry after a timeout");
    assert_no_secret(&out.all());

    // A webhook answering 503: one retry, no more.
    let failing = Webhook::start(503, true).await;
    let out = app.run_with_env(&["sync"], &with_env(&app, &[("ALERT_WEBHOOK_URL", &failing.url)])).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert_eq!(failing.bodies().len(), 2, "exactly one retry");
}

#[tokio::test]
async fn a_since_in_the_future_says_so_before_any_zoho_call() {
    let app = TestApp::with_deals(0).await;
    let out = app.run(&["sync", "--since", "2999-01-01"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--since") && out.stderr.contains("in the future"), "{}", out.stderr);
    assert!(!out.stderr.contains("--until"), "it does not blame --until: {}", out.stderr);
    let stats = app.stats().await;
    assert_eq!(stats["token_mints"].as_u64().expect("token_mints"), 0, "no token minted: {stats}");
}

#[tokio::test]
async fn the_dry_run_lists_every_table_a_run_writes_including_the_quarantine() {
    let app = TestApp::with_deals(10).await;
    let out = app.run(&["sync", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let tables = out.stdout.lines().find(|l| l.starts_with("tables:")).unwrap_or_else(|| panic!("{}", out.stdout));
    for table in ["closed_won_deals", "closed_won_deals_history", "deal_fields", "sync_runs", "quarantined_deals"] {
        assert!(tables.contains(table), "{tables}");
    }
}

#[tokio::test]
async fn with_a_token_cache_back_to_back_runs_mint_once_and_the_file_is_private() {
    let app = TestApp::with_deals(20).await;
    let cache = app.db.with_file_name("zoho-token.json");
    let env = with_env(&app, &[("ZOHO_TOKEN_CACHE", &cache.display().to_string())]);
    for _ in 0..2 {
        let out = app.run_with_env(&["sync"], &env).await;
        assert_eq!(out.code, 0, "{}", out.all());
    }
    let stats = app.stats().await;
    assert_eq!(stats["token_mints"].as_u64().expect("token_mints"), 1, "two runs, one mint: {stats}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache).expect("the cache file exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "owner-only");
    }
    let text = std::fs::read_to_string(&cache).expect("read");
    assert!(text.contains("access_token"), "{text}");
    assert_no_secret(&text);

    // Zoho revokes the token: the next run gets 401, drops the cached token, mints once and succeeds.
    app.control("/__sandbox/revoke-access-tokens", serde_json::json!({})).await;
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(app.stats().await["token_mints"].as_u64().expect("token_mints"), 2);
    let again = app.run_with_env(&["sync"], &env).await;
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(app.stats().await["token_mints"].as_u64().expect("token_mints"), 2, "the new token was cached");
}

#[tokio::test]
async fn without_a_token_cache_each_run_mints_its_own_token() {
    let app = TestApp::with_deals(20).await;
    for _ in 0..2 {
        let out = app.run(&["sync"]).await;
        assert_eq!(out.code, 0, "{}", out.all());
    }
    assert_eq!(app.stats().await["token_mints"].as_u64().expect("token_mints"), 2);
    assert!(std::fs::read_dir(app.db.parent().expect("dir"))
        .expect("ls")
        .all(|e| { !e.expect("entry").file_name().to_string_lossy().contains("token") }));
}

#[tokio::test]
async fn status_and_the_sync_status_view_read_a_bigquery_ledger_the_same_way() {
    let Some(app) = TestApp::with_deals(0).await.on_bigquery("status") else { return };
    let config = app.bigquery.clone().expect("a BigQuery dataset");
    let bq = BigQueryWarehouse::connect(config).await.expect("the emulator answers");
    record_run(&bq, "ok", (25, 2), None, 1).await;
    record_run(&bq, "night-1", (3, 0), Some("warehouse unavailable: quota"), 0).await;

    let out = run_binary(&["status", "--json", "--max-age", "26h"], &app.env()).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let j = json_of(&out);
    assert_eq!(j["last_success"]["run_id"], Value::from("ok"));
    assert!(j["last_success"]["finished_at"].is_string(), "{j}");
    assert_eq!(j["consecutive_failures"], Value::from(1));
    assert_eq!(j["last_error"]["error"], Value::from("warehouse unavailable: quota"));
    assert_eq!(j["open_quarantines"], Value::from(1));
    assert_eq!(j["reconciliation"]["gap"], Value::from(0));

    let rows = bq
        .query_text(
            "SELECT last_success_run_id, consecutive_failures, last_error, open_quarantines, age_seconds
             FROM `{{dataset}}.sync_status`",
        )
        .await
        .expect("the sync_status view answers");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row[0].as_deref(), Some("ok"));
    assert_eq!(row[1].as_deref(), Some("1"));
    assert_eq!(row[2].as_deref(), Some("warehouse unavailable: quota"));
    assert_eq!(row[3].as_deref(), Some("1"));
    let age: i64 = row[4].as_deref().and_then(|a| a.parse().ok()).expect("age_seconds");
    assert!((2 * 3600..3 * 3600).contains(&age), "the window ended 2h ago: {age}");
    bq.drop_dataset().await.expect("drop the test dataset");
}

#[tokio::test]
async fn a_bad_flag_or_a_bad_alert_setting_is_a_configuration_error_and_the_former_alerts() {
    let app = TestApp::with_deals(0).await;
    let hook = Webhook::start(200, true).await;
    let out = app.run_with_env(&["sync", "--no-such-flag"], &with_env(&app, &[("ALERT_WEBHOOK_URL", &hook.url)])).await;
    assert_eq!(out.code, 2, "{}", out.all());
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].contains("--no-such-flag") && bodies[0].contains("exit 2"), "{}", bodies[0]);

    let env = with_env(&app, &[("ALERT_WEBHOOK_URL", &hook.url), ("ALERT_ON", "sometimes")]);
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("ALERT_ON") && out.stderr.contains("failure"), "{}", out.stderr);
    assert_no_secret(&out.all());
}

#[tokio::test]
async fn status_only_reads_a_warehouse_whose_tables_exist() {
    let app = TestApp::with_deals(0).await;
    let w = SqliteWarehouse::open(&app.db).expect("open");
    record_run(&w, "ok", (25, 2), None, 0).await;
    drop(w);
    // SQLite bumps schema_version on every CREATE/DROP: `prepare` (which recreates the views) would move it.
    let schema_version = || -> i64 {
        let conn = rusqlite::Connection::open(&app.db).expect("open");
        conn.query_row("PRAGMA schema_version", [], |r| r.get(0)).expect("schema_version")
    };
    let before = schema_version();
    let out = status(&app, &["--max-age", "26h"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("last success: run ok"), "{}", out.stdout);
    assert_eq!(schema_version(), before, "status changed no table or view (a probe needs only read access)");
}
