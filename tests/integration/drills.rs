//! Failure drills: the job is killed with SIGKILL at points spread over its run (fetching, staging, merging,
//! writing the ledger), the CRM changes between runs, and every rerun must leave the warehouse equal to the
//! sandbox's ground truth — no won deal lost, none duplicated. On SQLite and on the BigQuery emulator.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use zoho_sandbox::{Faults, SandboxConfig};

use crate::helpers::{assert_equals_ground_truth, next_second, TestApp, RUN_TIMEOUT};

/// Kill points, as a fraction of a full run's wall time: early (metadata, first pages), middle (fetching and
/// staging), late (merge and ledger), and beyond the end (a run that finished anyway).
const KILL_AT: [f64; 12] = [0.02, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97, 1.02];

/// Starts the binary and SIGKILLs it after `after` (if still running); returns whether it was killed.
async fn run_and_kill(app: &TestApp, args: &[&str], after: Duration) -> bool {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoho-deals-sync"))
        .args(args)
        .env_clear()
        .envs(app.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    tokio::select! {
        status = child.wait() => { status.expect("exit status"); false }
        _ = tokio::time::sleep(after) => {
            child.start_kill().expect("SIGKILL");
            child.wait().await.expect("reaped");
            true
        }
    }
}

async fn drill(mut app: TestApp) {
    // A short lease so a killed run's lease expires quickly.
    app.extra_env = vec![("SYNC_LEASE_TTL".into(), "2s".into())];
    // The killed runs re-read the whole history (a backfill), so that every kill point lands inside a run long
    // enough to be fetching, staging or merging; the reruns are ordinary scheduled runs from the watermark.
    let backfill = ["sync", "--since", "200d"];
    let out = app.run(&backfill).await;
    assert_eq!(out.code, 0, "{}", out.all());
    // Time a warm backfill (the first run also creates tables) to place the kill points.
    let started = std::time::Instant::now();
    let out = app.run(&backfill).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let full = started.elapsed();
    let since = app.ledger().await.last().expect("first run").window_start;
    assert_equals_ground_truth(&app, since).await;

    let mut killed = 0;
    for (i, frac) in KILL_AT.iter().enumerate() {
        app.control("/__sandbox/mutate", json!({"win": 8, "unwin": 4, "delete": 3, "edit": 8, "create_won": 4})).await;
        next_second().await;
        if run_and_kill(&app, &backfill, full.mul_f64(*frac)).await {
            killed += 1;
        }
        // The killed run's lease expires after SYNC_LEASE_TTL; a rerun before that exits 9 and changes nothing.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let out = app.run(&["sync"]).await;
        assert_eq!(out.code, 0, "rerun after kill {i} at {frac}: {}", out.all());
        assert_equals_ground_truth(&app, since).await;
    }
    assert!(killed >= 10, "at least 10 runs were killed mid-way ({killed})");
    let ledger = app.ledger().await;
    assert!(ledger.iter().any(|r| r.status == "failed"), "killed runs are recorded failed once their lease expires");
    assert!(full < RUN_TIMEOUT);
}

fn drill_sandbox(deals: usize) -> SandboxConfig {
    // Latency stretches a run over a second or two so the kill points land inside it.
    SandboxConfig {
        deals,
        faults: Faults { latency_ms: 40, mint_limit: 1000, ..Faults::default() },
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn sigkill_at_random_points_then_rerun_converges_on_sqlite() {
    drill(TestApp::spawn(drill_sandbox(8000)).await).await;
}

#[tokio::test]
async fn sigkill_at_random_points_then_rerun_converges_on_bigquery() {
    let Some(app) = TestApp::spawn(drill_sandbox(3000)).await.on_bigquery("sigkill") else { return };
    drill(app).await;
}

#[tokio::test]
async fn twenty_percent_faults_over_a_multi_run_scenario_lose_and_duplicate_nothing() {
    let faults = Faults { rate_429: 0.08, rate_500: 0.06, rate_drop: 0.06, ..Faults::default() };
    let mut app = TestApp::spawn(SandboxConfig { deals: 6000, faults, ..SandboxConfig::default() }).await;
    app.extra_env = vec![("SYNC_LOOKBACK".into(), "200d".into())];
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let since = app.ledger().await.last().expect("first run").window_start;
    assert_equals_ground_truth(&app, since).await;
    for night in 0..4 {
        app.control("/__sandbox/mutate", json!({"win": 15, "unwin": 8, "delete": 6, "edit": 15, "create_won": 6}))
            .await;
        if night == 2 {
            // a skipped night: the changes pile up for the next run
            continue;
        }
        next_second().await;
        let out = app.run(&["sync"]).await;
        assert_eq!(out.code, 0, "night {night}: {}", out.all());
        assert_equals_ground_truth(&app, since).await;
    }
}
