//! Two job processes started at the same instant on one warehouse: one does the work, the other exits 9
//! (another run holds the lease) or, if it started after the first finished, finishes harmlessly; no deal is
//! ever stored twice. On a SQLite file and on a BigQuery (emulator) dataset.

use std::collections::HashSet;

use zoho_deals_sync::warehouse::bigquery::BigQueryWarehouse;

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
