//! Knowing the warehouse is fresh and hearing when it is not: `status` (text, JSON, exit codes) and the
//! `sync_status` view over a real SQLite ledger, run as the real binary; the first-run and `check` notes.

use chrono::{DateTime, Utc};
use serde_json::Value;
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
async fn record_run(w: &SqliteWarehouse, id: &str, window: (i64, i64), error: Option<&str>, quarantined: usize) {
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
