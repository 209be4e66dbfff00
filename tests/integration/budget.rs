//! `--max-credits`: a run that cannot afford its window commits the longest prefix it can pay for and exits 6;
//! the next run goes on from there, and nothing is lost or duplicated on the way. Retries that use up the budget
//! mid-run stop the run before the call that would pass it.

use chrono::{DateTime, Utc};
use serde_json::json;
use zoho_sandbox::SandboxConfig;

use crate::helpers::{assert_equals_ground_truth, next_second, TestApp};

/// `credits=N` from the run's summary line: the job's own count, retries included.
fn credits_spent(stdout: &str) -> u64 {
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("credits=").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no credits= in the summary: {stdout}"))
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("an RFC 3339 time").with_timezone(&Utc)
}

#[tokio::test]
async fn a_backlog_larger_than_the_budget_catches_up_over_several_runs_losing_nothing() {
    let mut app = TestApp::with_deals(20_000).await;
    app.extra_env = vec![("SYNC_LOOKBACK".into(), "200d".into()), ("SYNC_MAX_CREDITS".into(), "16".into())];
    let mut since = None;
    let mut cut_runs = 0;
    let mut previous_end = None;
    for run in 0..12 {
        app.control("/__sandbox/reset-stats", json!({})).await;
        let out = app.run(&["sync"]).await;
        assert!(out.code == 0 || out.code == 6, "run {run}: {}", out.all());
        assert!(credits_spent(&out.stdout) <= 16, "run {run} stayed within the budget: {}", out.stdout);
        let stats = app.stats().await;
        assert!(stats["credits_total"].as_u64().expect("credits") <= 16, "Zoho's count too: {stats}");

        let ledger = app.ledger().await;
        let newest = &ledger[0];
        assert_eq!(newest.status, "succeeded", "a budgeted run commits what it covered: {newest:?}");
        since.get_or_insert(ledger.last().expect("first run").window_start);
        if let Some(end) = previous_end {
            assert!(newest.window_start < end && newest.window_end > end, "each run goes on where the last stopped");
        }
        previous_end = Some(newest.window_end);
        // Everything up to where this run stopped is in the warehouse, and nothing twice.
        assert_equals_ground_truth(&app, since.expect("set")).await;
        if out.code == 6 {
            cut_runs += 1;
            assert!(out.stderr.contains("credit budget") && out.stderr.contains("next scheduled run continues"));
            continue;
        }
        assert!(cut_runs >= 2, "the budget made the backlog take several runs ({cut_runs} cut short)");
        return;
    }
    panic!("the backlog never caught up within 12 runs of 16 credits");
}

#[tokio::test]
async fn a_budgeted_backfill_commits_a_prefix_and_names_the_command_that_finishes_it() {
    let app = TestApp::with_deals(20_000).await;
    let out = app.run(&["sync", "--since", "200d", "--max-credits", "12"]).await;
    assert_eq!(out.code, 6, "{}", out.all());
    assert!(credits_spent(&out.stdout) <= 12, "{}", out.stdout);
    let ledger = app.ledger().await;
    assert_eq!((ledger[0].kind.as_str(), ledger[0].status.as_str()), ("backfill", "succeeded"));
    let since = ledger[0].window_start;
    assert_equals_ground_truth(&app, since).await;

    // The warning carries the exact command; running it finishes the backfill.
    let command = out
        .stderr
        .split("run: zoho-deals-sync ")
        .nth(1)
        .and_then(|rest| rest.split(['"', '\n']).next())
        .unwrap_or_else(|| panic!("no command to finish the backfill: {}", out.stderr));
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(args[..2], ["sync", "--since"], "{command}");
    assert_eq!(utc(args[2]), ledger[0].window_end, "it starts where the run stopped");
    let out = app.run(&args).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let finished = &app.ledger().await[0];
    assert_eq!(finished.window_start, ledger[0].window_end);
    // Both backfills together cover the first one's requested window, and the warehouse holds all of it.
    let won = app.stored().await.iter().filter(|r| r.is_closed_won && !r.is_deleted).count();
    assert_eq!(won, app.truth().await.won_in(since, finished.window_end).len());
}

#[tokio::test]
async fn retries_that_use_up_the_budget_mid_run_stop_before_it_merge_what_was_fetched_and_record_the_run_failed() {
    // One slice, pages one after another, so that the faults switch on between two pages.
    let mut app = TestApp::spawn(SandboxConfig { deals: 12_000, ..SandboxConfig::default() }).await;
    app.extra_env = vec![("ZOHO_CONCURRENCY".into(), "1".into())];
    // A fixed window, so the dry run and the run count the same deals.
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let window = ["--since", "200d", "--until", now.as_str()];
    let dry = app.run(&[&["sync", "--dry-run"][..], &window[..]].concat()).await;
    assert_eq!(dry.code, 0, "{}", dry.all());
    let estimate: u64 = dry
        .stdout
        .split("at most ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no estimate in the plan: {}", dry.stdout));
    let won: usize = dry
        .stdout
        .split("won deals in window: ")
        .nth(1)
        .and_then(|r| r.lines().next())
        .and_then(|n| n.trim().parse().ok())
        .expect("won deals in the plan");
    assert!(won > 2000, "at least two pages, so that one is read before the faults: {won}");
    app.control("/__sandbox/reset-stats", json!({})).await;

    // The budget pays for the whole plan and one retry of a page, not for a storm of them.
    let budget = (estimate + 3).to_string();
    // The first page (the COQL call after the plan's count) switches the faults on as it arrives, inside the
    // sandbox: it is answered, and every call after it fails, however fast or loaded the machine.
    app.control("/__sandbox/on-coql-call", json!({"call": 2, "control": {"rate_500": 1.0}})).await;
    let out = app.run(&[&["sync", "--max-credits", budget.as_str()][..], &window[..]].concat()).await;
    assert_eq!(app.stats().await["faults"]["500"].as_u64().map(|n| n > 0), Some(true), "the faults came mid-run");
    assert_eq!(out.code, 6, "{}", out.all());
    assert!(out.stderr.contains("retries count too"), "{}", out.stderr);
    assert!(app.stats().await["credits_total"].as_u64().expect("credits") <= estimate + 3);
    let ledger = app.ledger().await;
    assert_eq!(ledger[0].status, "failed", "the window was not finished: {:?}", ledger[0]);
    assert!(ledger[0].error.as_deref().is_some_and(|e| e.contains("credit budget")), "{:?}", ledger[0]);
    let merged = app.stored().await.len();
    assert!(merged >= 2000, "the page read before the faults was merged ({merged})");

    // Zoho recovers; the next run covers the window again and completes it.
    app.control("/__sandbox/control", json!({"rate_500": 0.0})).await;
    next_second().await;
    let out = app.run(&[&["sync"][..], &window[..]].concat()).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_equals_ground_truth(&app, app.ledger().await[0].window_start).await;
}
