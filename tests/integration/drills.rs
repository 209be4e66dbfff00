//! Failure drills: the job is killed with SIGKILL at points spread over its run (fetching, staging, merging,
//! writing the ledger), the CRM changes between runs, and every rerun must leave the warehouse equal to the
//! sandbox's ground truth — no won deal lost, none duplicated. On SQLite and on the BigQuery emulator.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use zoho_sandbox::{Faults, SandboxConfig};

use crate::helpers::{assert_equals_ground_truth, next_second, TestApp, RUN_TIMEOUT};

/// Where a killed run dies: right after (or `delay_ms` after) the `nth` log line containing `after`. The job logs
/// its phases at debug level, so these points are the same on every machine, however fast or loaded it is —
/// unlike kill points placed by wall time.
struct KillPoint {
    after: &'static str,
    nth: usize,
    delay_ms: u64,
}

const fn at(after: &'static str, nth: usize, delay_ms: u64) -> KillPoint {
    KillPoint { after, nth, delay_ms }
}

/// Kill points common to both warehouses: token, metadata, planning, fetching and staging, reconciliation.
const FETCH_POINTS: [KillPoint; 9] = [
    at("minted a Zoho access token", 1, 0),
    at("\"won stages\"", 1, 0),
    at("paging plan", 1, 0),
    at("paging plan", 1, 20),
    at("COQL page", 1, 0),
    at("staged a batch", 1, 0),
    at("COQL page", 2, 0),
    at("staged a batch", 2, 0),
    at("all changes staged", 1, 0),
];

/// SQLite commits merge and ledger in one transaction: kill just before it and inside it.
const SQLITE_COMMIT_POINTS: [KillPoint; 3] = [
    at("merging the staged changes", 1, 0),
    at("merging the staged changes", 1, 2),
    at("merging the staged changes", 1, 8),
];

/// BigQuery's commit is a chain of idempotent statements with no transaction: kill between each pair.
const BIGQUERY_COMMIT_POINTS: [KillPoint; 5] = [
    at("merging the staged changes", 1, 0),
    at("merging into closed_won_deals", 1, 0),
    at("flagging deleted deals", 1, 0),
    at("counting merged rows", 1, 0),
    at("recording the run's outcome", 1, 0),
];

/// The log level that makes the phase lines visible, without the HTTP stack's chatter.
const DRILL_LOG: &str = "info,zoho_deals_sync=debug";

/// What became of a run in the drill.
#[derive(Debug, PartialEq)]
enum Fate {
    Killed,
    /// The kill point's line appeared, but the run ended before the kill (possible only near the end).
    EndedFirst,
    /// The run ended without logging the kill point's line.
    NotLogged,
}

/// Starts the binary, reads its log and SIGKILLs it at `point`.
async fn run_and_kill(app: &TestApp, args: &[&str], point: &KillPoint) -> Fate {
    use tokio::io::AsyncBufReadExt;

    let mut env = app.env();
    env.retain(|(k, _)| k != "RUST_LOG");
    env.push(("RUST_LOG".into(), DRILL_LOG.into()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_zoho-deals-sync"))
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    // A reader task drains stderr to the end (so the job never blocks on a full pipe) and reports the moment the
    // kill point's line appears.
    let stderr = child.stderr.take().expect("piped stderr");
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let needle = point.after;
    let nth = point.nth;
    let reader = tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut seen = 0;
        let mut tx = Some(seen_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                seen += 1;
                if seen == nth {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        }
    });
    let fate = tokio::time::timeout(RUN_TIMEOUT, async {
        tokio::select! {
            status = child.wait() => { status.expect("exit status"); Fate::NotLogged }
            Ok(()) = seen_rx => {
                tokio::time::sleep(Duration::from_millis(point.delay_ms)).await;
                match child.try_wait().expect("status") {
                    Some(_) => Fate::EndedFirst,
                    None => {
                        child.start_kill().expect("SIGKILL");
                        child.wait().await.expect("reaped");
                        Fate::Killed
                    }
                }
            }
        }
    })
    .await
    .expect("a drill run ends or is killed within RUN_TIMEOUT");
    let _ = reader.await;
    fate
}

async fn drill(mut app: TestApp, commit_points: &[KillPoint]) {
    // A short lease so a killed run's lease expires quickly.
    app.extra_env = vec![("SYNC_LEASE_TTL".into(), "2s".into())];
    // The killed runs re-read the whole history (a backfill), so that every kill point lands inside a run with
    // stored won deals to flag; the reruns are ordinary scheduled runs from the watermark.
    let backfill = ["sync", "--since", "200d"];
    let out = app.run(&backfill).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let since = app.ledger().await.last().expect("first run").window_start;
    assert_equals_ground_truth(&app, since).await;

    let points: Vec<&KillPoint> = FETCH_POINTS.iter().chain(commit_points).collect();
    let mut fates = Vec::new();
    for (i, point) in points.iter().enumerate() {
        app.control("/__sandbox/mutate", json!({"win": 8, "unwin": 4, "delete": 3, "edit": 8, "create_won": 4})).await;
        next_second().await;
        fates.push(run_and_kill(&app, &backfill, point).await);
        // The killed run's lease expires after SYNC_LEASE_TTL; a rerun before that exits 9 and changes nothing.
        // A renewal the killed run had sent may still be executed after the kill (the BigQuery emulator is slow
        // under load), extending the lease by up to a TTL: the rerun is retried, within a bound, while it is 9.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let lease_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut out = app.run(&["sync"]).await;
        while out.code == 9 && tokio::time::Instant::now() < lease_deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            out = app.run(&["sync"]).await;
        }
        assert_eq!(
            out.code,
            0,
            "rerun after kill {i} ({} #{} +{}ms): {}",
            point.after,
            point.nth,
            point.delay_ms,
            out.all()
        );
        assert_equals_ground_truth(&app, since).await;
    }
    eprintln!("drill: {fates:?}");
    // Every fetch point before the last is followed by at least one more Zoho call (40 ms each), so the run is
    // still alive when it is killed there. After "all changes staged" only the warehouse's commit is left (the
    // reconciliation count is asked with the last pages), so that point and the commit points can race the
    // run's end; at least one commit point must be hit. Every point must be reached.
    let late = FETCH_POINTS.len() - 1;
    for (i, (point, fate)) in points.iter().zip(&fates).enumerate() {
        let what = format!("kill point {i} ({} #{} +{}ms)", point.after, point.nth, point.delay_ms);
        assert_ne!(*fate, Fate::NotLogged, "{what}: the run never logged it");
        if i < late {
            assert_eq!(*fate, Fate::Killed, "{what}: the run was still alive there");
        }
    }
    assert!(fates[FETCH_POINTS.len()..].contains(&Fate::Killed), "no commit point was hit: {fates:?}");
    let ledger = app.ledger().await;
    assert!(ledger.iter().any(|r| r.status == "failed"), "killed runs are recorded failed once their lease expires");
}

fn drill_sandbox(deals: usize) -> SandboxConfig {
    // Latency keeps every Zoho call (the reconciliation count too) slow enough that a kill right after a phase's
    // log line lands before the next phase.
    SandboxConfig {
        deals,
        faults: Faults { latency_ms: 40, mint_limit: 1000, ..Faults::default() },
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn sigkill_at_random_points_then_rerun_converges_on_sqlite() {
    drill(TestApp::spawn(drill_sandbox(8000)).await, &SQLITE_COMMIT_POINTS).await;
}

#[tokio::test]
async fn sigkill_at_random_points_then_rerun_converges_on_bigquery() {
    let Some(app) = TestApp::spawn(drill_sandbox(3000)).await.on_bigquery("sigkill") else { return };
    drill(app, &BIGQUERY_COMMIT_POINTS).await;
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
