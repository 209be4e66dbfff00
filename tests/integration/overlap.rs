//! Two job processes started at the same instant on one warehouse: one does the work, the other exits 9
//! (another run holds the lease) or, if it started after the first finished, finishes harmlessly; no deal is
//! ever stored twice. On a SQLite file and on a BigQuery (emulator) dataset.

use std::collections::HashSet;

use zoho_deals_sync::warehouse::bigquery::BigQueryWarehouse;
use zoho_deals_sync::warehouse::{RunKind, RunStart, Warehouse};

use crate::helpers::{assert_equals_ground_truth, TestApp};

async fn two_runs_at_once(app: &TestApp) {
    let (a, b) = tokio::join!(app.run(&["sync"]), app.run(&["sync"]));
    eprintln!("overlap: exit codes {} and {}", a.code, b.code);
    let mut codes = vec![a.code, b.code];
    codes.sort_unstable();
    assert!(
        codes == [0, 9] || codes == [0, 0],
        "one run works, the other exits 9 or finishes harmlessly; got {codes:?}\n--- a ---\n{}\n--- b ---\n{}",
        a.all(),
        b.all()
    );
    let busy = if a.code == 9 {
        Some(&a)
    } else if b.code == 9 {
        Some(&b)
    } else {
        None
    };
    if let Some(busy) = busy {
        assert!(!busy.stderr.contains("database is locked"), "{}", busy.stderr);
    }
    let stored = app.stored().await;
    let ids: HashSet<&str> = stored.iter().map(|r| r.deal.deal_id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "no deal stored twice");
    let since = app.ledger().await.last().expect("a run").window_start;
    assert_equals_ground_truth(app, since).await;
}

#[tokio::test]
async fn two_processes_started_together_on_one_sqlite_file_store_each_deal_once() {
    let mut app = TestApp::with_deals(400).await;
    app.extra_env = vec![("SYNC_LOOKBACK".into(), "200d".into())];
    two_runs_at_once(&app).await;
}

#[tokio::test]
async fn two_processes_started_together_on_one_bigquery_dataset_store_each_deal_once() {
    let Some(mut app) = TestApp::with_deals(400).await.on_bigquery("overlap") else { return };
    app.extra_env = vec![("SYNC_LOOKBACK".into(), "200d".into())];
    two_runs_at_once(&app).await;
    let config = app.bigquery.clone().expect("BigQuery");
    BigQueryWarehouse::connect(config).await.expect("connect").drop_dataset().await.expect("drop the dataset");
}

#[tokio::test]
async fn a_run_whose_lease_is_taken_over_stops_at_its_next_heartbeat_and_merges_nothing() {
    // Slow Zoho calls keep the run busy for seconds; a 2 s lease is renewed every ~0.7 s.
    let faults = zoho_sandbox::Faults { latency_ms: 1500, ..zoho_sandbox::Faults::default() };
    let mut app = TestApp::spawn(zoho_sandbox::SandboxConfig { deals: 200, faults, ..Default::default() }).await;
    app.extra_env = vec![
        ("SYNC_LOOKBACK".into(), "200d".into()),
        ("SYNC_LEASE_TTL".into(), "2s".into()),
        ("ZOHO_CONCURRENCY".into(), "1".into()),
    ];
    let run = {
        let env = app.env();
        tokio::spawn(async move { crate::helpers::run_binary(&["sync"], &env).await })
    };
    // Once the run holds the lease, another run "finds it expired and takes over": it marks the run abandoned,
    // as begin_run does.
    let db = app.db.clone();
    let deadline = tokio::time::Instant::now() + crate::helpers::RUN_TIMEOUT;
    loop {
        let taken = rusqlite::Connection::open(&db).ok().and_then(|c| {
            c.busy_timeout(std::time::Duration::from_secs(5)).ok()?;
            c.execute(
                "UPDATE sync_runs SET status = 'failed', error = 'abandoned: taken over by the test' WHERE status = 'running'",
                [],
            )
            .ok()
        });
        if taken.unwrap_or(0) > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the run never took the lease");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = run.await.expect("the run's task");
    assert_eq!(out.code, 9, "{}", out.all());
    assert!(out.stderr.contains("lost its lease"), "{}", out.stderr);
    assert!(app.stored().await.is_empty(), "a run that lost its lease merges nothing");
    assert!(app.ledger().await.iter().all(|r| r.status != "succeeded"));
}

#[tokio::test]
async fn a_run_that_cannot_get_the_lease_exits_9_without_minting_a_token_or_calling_zoho() {
    let app = TestApp::with_deals(20).await;
    let wh = app.warehouse();
    wh.prepare().await.expect("tables");
    let now = chrono::Utc::now();
    let holder = RunStart {
        run_id: "the-holder".into(),
        kind: RunKind::Scheduled,
        started_at: now,
        window_start: now - chrono::Duration::hours(1),
        window_end: now,
        lease_ttl: chrono::Duration::minutes(10),
    };
    wh.begin_run(&holder).await.expect("lease taken");

    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 9, "{}", out.all());
    assert!(out.stderr.contains("the-holder"), "it names the run holding the lease: {}", out.stderr);
    let stats = app.stats().await;
    assert_eq!(stats["token_mints"].as_u64(), Some(0), "no token minted: {stats}");
    let calls = stats["calls"].as_object().expect("calls");
    assert!(calls.values().all(|n| n.as_u64() == Some(0)), "no call reached Zoho: {stats}");
    assert_eq!(stats["credits_total"].as_u64(), Some(0), "{stats}");

    wh.fail_run(&holder, &Default::default(), "test over").await.expect("released");
    assert_eq!(app.run(&["sync"]).await.code, 0, "once the lease is free the run goes ahead");
    assert!(app.stats().await["token_mints"].as_u64() > Some(0), "and then it does call Zoho");
}
