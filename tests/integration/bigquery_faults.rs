//! The sync against BigQuery as it really behaves: the real binary, the Zoho sandbox, and the emulator behind the
//! fault-injecting proxy of `bq_proxy.rs`. With each fault on, the run ends equal to Zoho's ground truth, or
//! fails without moving the watermark and the next run repairs it. Skipped without an emulator (except in CI).

use std::time::Duration;

use zoho_deals_sync::warehouse::bigquery::BigQueryWarehouse;

use crate::bq_proxy::{BqProxy, Faults};
use crate::helpers::{assert_equals_ground_truth, TestApp};

/// A small sandbox whose runs write to a fresh emulator dataset through a proxy with `faults`.
async fn behind_proxy(test: &str, faults: Faults) -> Option<(TestApp, BqProxy)> {
    let mut app = TestApp::with_deals(300).await.on_bigquery(test)?;
    let upstream = app.bigquery.as_ref().and_then(|b| b.emulator_host.clone()).expect("emulator host");
    let proxy = BqProxy::start(&upstream, faults).await;
    // The job talks to the proxy; the test reads the emulator directly.
    app.extra_env = vec![("SYNC_LOOKBACK".into(), "200d".into()), ("BIGQUERY_EMULATOR_HOST".into(), proxy.host())];
    Some((app, proxy))
}

async fn drop_dataset(app: &TestApp) {
    let config = app.bigquery.clone().expect("a BigQuery app");
    BigQueryWarehouse::connect(config).await.expect("connect").drop_dataset().await.expect("drop the dataset");
}

#[tokio::test]
async fn failed_jobs_and_dml_conflicts_are_retried_under_new_request_ids_and_the_run_equals_ground_truth() {
    let faults = Faults {
        job_backend_errors: 3,
        concurrent_update_errors: 3,
        insert_all_404_for: Some(Duration::from_secs(60)),
        ..Faults::default()
    };
    let Some((app, proxy)) = behind_proxy("job_faults", faults).await else { return };
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let since = app.ledger().await.last().expect("the run").window_start;
    assert_equals_ground_truth(&app, since).await;

    let seen = proxy.seen();
    let faulted: Vec<_> = seen.queries.iter().filter(|(_, what)| *what != "forwarded").collect();
    assert_eq!(faulted.len(), 6, "every injected fault fired: {faulted:?}");
    // Reusing the requestId of a failed job would only return the same failure: each retry carries a new one.
    for (id, what) in &faulted {
        let id = id.as_ref().expect("every query carries a requestId");
        assert!(
            !seen.queries.iter().any(|(other, w)| *w == "forwarded" && other.as_ref() == Some(id)),
            "the {what} job was retried under the same requestId"
        );
    }
    assert_eq!(seen.insert_all_calls, 0, "staging never streams, so a just-created table's 404s cannot bite");
    drop_dataset(&app).await;
}

#[tokio::test]
async fn staged_rows_that_become_visible_late_are_waited_for_and_the_run_equals_ground_truth() {
    let faults = Faults { staging_visible_after: Some(Duration::from_secs(3)), ..Faults::default() };
    let Some((app, proxy)) = behind_proxy("late_rows", faults).await else { return };
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(proxy.seen().queries.iter().any(|(_, w)| *w == "staging delayed"), "the fault fired");
    let since = app.ledger().await.last().expect("the run").window_start;
    assert_equals_ground_truth(&app, since).await;
    drop_dataset(&app).await;
}

#[tokio::test]
async fn staged_rows_that_never_arrive_fail_the_run_without_moving_the_watermark_and_the_next_run_repairs() {
    let faults = Faults { staging_lost: true, ..Faults::default() };
    let Some((app, proxy)) = behind_proxy("lost_rows", faults).await else { return };
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 7, "{}", out.all());
    assert!(out.stderr.contains("fewer changes than this run staged"), "{}", out.stderr);
    let ledger = app.ledger().await;
    assert!(ledger.iter().all(|r| r.status != "succeeded"), "no run claims the window: {ledger:?}");
    assert!(app.stored().await.is_empty(), "nothing was merged");

    proxy.set_faults(Faults::default());
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let since = app.ledger().await.last().expect("the first run").window_start;
    assert_equals_ground_truth(&app, since).await;
    drop_dataset(&app).await;
}
