//! One test per exit code, each running the real binary against the sandbox: the code a scheduler acts on,
//! and a message that says what to do.

use serde_json::json;
use zoho_deals_sync::warehouse::{RunKind, RunStart, Warehouse};

use crate::helpers::TestApp;

fn with(app: &TestApp, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = app.env();
    for (k, v) in pairs {
        env.retain(|(ek, _)| ek != k);
        env.push(((*k).to_owned(), (*v).to_owned()));
    }
    env
}

#[tokio::test]
async fn exit_1_when_zoho_answers_something_nobody_planned_for() {
    let app = TestApp::with_deals(20).await;
    // An API domain that answers 404 to every CRM path: not a credential or availability problem.
    let domain = format!("{}/not-the-crm", app.sandbox.base_url());
    let out = app.run_with_env(&["sync"], &with(&app, &[("ZOHO_API_DOMAIN", &domain)])).await;
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("404"), "{}", out.stderr);
}

#[tokio::test]
async fn exit_2_for_a_bad_flag_or_value_naming_it() {
    let app = TestApp::with_deals(20).await;
    let out = app.run(&["sync", "--since", "last tuesday"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("--since"), "{}", out.stderr);
    let out = app.run_with_env(&["sync"], &with(&app, &[("ZOHO_DC", "mars")])).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("ZOHO_DC"), "{}", out.stderr);
    let out = app.run(&["sync", "--no-such-flag"]).await;
    assert_eq!(out.code, 2, "{}", out.all());
}

#[tokio::test]
async fn exit_2_for_a_malformed_bigquery_setting_naming_the_variable() {
    let app = TestApp::with_deals(20).await;
    for (var, value) in [("BQ_PROJECT", "My Analytics Project"), ("BQ_LOCATION", "us central 1")] {
        let mut env = with(&app, &[("WAREHOUSE", "bigquery"), ("BQ_PROJECT", "acme-analytics")]);
        env.retain(|(k, _)| k != var);
        env.push((var.to_owned(), value.to_owned()));
        for command in ["sync", "check"] {
            let out = app.run_with_env(&[command], &env).await;
            assert_eq!(out.code, 2, "{command} with {var}={value}: {}", out.all());
            assert!(out.stderr.contains(var), "{command}: the message names {var}: {}", out.stderr);
        }
    }
}

#[tokio::test]
async fn exit_3_when_the_token_lacks_a_scope_naming_it() {
    let app = TestApp::with_deals(20).await;
    app.control("/__sandbox/control", json!({"missing_scope": "ZohoCRM.coql.READ"})).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("ZohoCRM.coql.READ"), "{}", out.stderr);
}

#[tokio::test]
async fn exit_5_when_zoho_keeps_rate_limiting_beyond_the_retry_budget() {
    let app = TestApp::with_deals(20).await;
    app.control("/__sandbox/control", json!({"rate_429": 1.0})).await;
    let out = app.run_with_env(&["sync"], &with(&app, &[("ZOHO_RETRY_BUDGET", "3s")])).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("429") && out.stderr.contains("retry later"), "{}", out.stderr);
    let ledger = app.warehouse().ledger().await.unwrap_or_default();
    assert!(ledger.iter().all(|r| r.status != "succeeded"), "the watermark did not move");
}

#[tokio::test]
async fn exit_6_when_the_credit_budget_cannot_pay_for_any_progress_naming_the_flag() {
    // (A budget that pays for part of the window also exits 6, after committing that part: see budget.rs.)
    let app = TestApp::with_deals(20_000).await;
    let out = app.run(&["sync", "--since", "200d", "--max-credits", "5"]).await;
    assert_eq!(out.code, 6, "{}", out.all());
    assert!(out.stderr.contains("--max-credits") && out.stderr.contains("SYNC_MAX_CREDITS"), "{}", out.stderr);
    let stats = app.stats().await;
    assert!(stats["credits_total"].as_u64().expect("credits") <= 5, "never exceeds the budget: {stats}");
    assert!(app.warehouse().ledger().await.expect("ledger").iter().all(|r| r.status != "succeeded"));
    assert!(app.stored().await.is_empty());
}

#[tokio::test]
async fn exit_7_when_the_warehouse_cannot_be_opened() {
    let app = TestApp::with_deals(20).await;
    let out = app.run_with_env(&["sync"], &with(&app, &[("SQLITE_PATH", "/nonexistent-dir/deals.sqlite3")])).await;
    assert_eq!(out.code, 7, "{}", out.all());
    assert!(out.stderr.contains("/nonexistent-dir/deals.sqlite3"), "{}", out.stderr);
}

#[tokio::test]
async fn exit_9_while_another_run_holds_the_lease_and_0_once_it_is_released() {
    let app = TestApp::with_deals(20).await;
    let wh = app.warehouse();
    wh.prepare().await.expect("tables");
    let now = chrono::Utc::now();
    let other = RunStart {
        run_id: "other-run".into(),
        kind: RunKind::Scheduled,
        started_at: now,
        window_start: now - chrono::Duration::hours(1),
        window_end: now,
        lease_ttl: chrono::Duration::minutes(10),
    };
    wh.begin_run(&other).await.expect("lease taken");
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 9, "{}", out.all());
    assert!(out.stderr.contains("other-run"), "{}", out.stderr);
    wh.fail_run(&other, &Default::default(), "test over").await.expect("released");
    assert_eq!(app.run(&["sync"]).await.code, 0);
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let app = TestApp::with_deals(3000).await;
    let out = app.run(&["sync", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("won deals in window") && out.stdout.contains("Closed Won"), "{}", out.stdout);
    assert!(out.stdout.contains("estimated Zoho API credits"), "{}", out.stdout);
    assert!(app.warehouse().ledger().await.is_err() || app.stored().await.is_empty(), "nothing written");
}

#[tokio::test]
async fn check_reports_each_step_and_exchange_grant_prints_only_a_refresh_token() {
    let app = TestApp::with_deals(20).await;
    let out = app.run(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.lines().filter(|l| l.starts_with("ok")).count() >= 4, "{}", out.stdout);

    let out = app.run(&["exchange-grant", zoho_sandbox::DEMO_GRANT_CODE]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let printed = out.stdout.trim();
    assert!(!printed.is_empty() && !printed.contains(' ') && printed.lines().count() == 1, "{}", out.stdout);
    // Single use: the same grant again is refused, with advice.
    let out = app.run(&["exchange-grant", zoho_sandbox::DEMO_GRANT_CODE]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("grant"), "{}", out.stderr);

    app.control("/__sandbox/control", json!({"missing_scope": "ZohoCRM.coql.READ"})).await;
    let out = app.run(&["check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stdout.contains("FAIL") && out.stdout.contains("ZohoCRM.coql.READ"), "{}", out.stdout);
}

#[tokio::test]
async fn exit_8_when_records_are_quarantined_naming_each_and_the_rest_are_stored() {
    let app = TestApp::with_deals(2000).await;
    assert_eq!(app.run(&["sync"]).await.code, 0);
    let corrupted = app.control("/__sandbox/mutate", json!({"corrupt": 3, "edit": 5, "create_won": 4})).await;
    crate::helpers::next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 8, "{}", out.all());
    // The summary says what happened: committed, with quarantines; not "succeeded".
    assert!(out.stdout.contains("committed with 3 quarantined"), "{}", out.stdout);
    assert!(!out.stdout.contains("succeeded"), "{}", out.stdout);
    // The three corrupted deals are won and modified in this window: Zoho counts them, the warehouse does not
    // hold them in it, and the reconciliation warning names the quarantine, not "deals edited during the run".
    let gap = out.stderr.lines().find(|l| l.contains("reconciliation:")).expect("a reconciliation warning");
    assert!(gap.contains("quarantined") && !gap.contains("edited during the run"), "{gap}");
    for id in corrupted["corrupt"].as_array().expect("ids") {
        assert!(gap.contains(id.as_str().expect("id")), "the warning names {id}: {gap}");
    }
    for id in corrupted["corrupt"].as_array().expect("ids") {
        let id = id.as_str().expect("id");
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(id) && l.contains("quarantined"))
            .unwrap_or_else(|| panic!("no quarantine line for {id}: {}", out.stderr));
        let log: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(log["field"].as_str().is_some_and(|f| ["Amount", "Closing_Date", "Probability"].contains(&f)), "{log}");
        assert!(log["reason"].as_str().is_some_and(|r| !r.is_empty()), "{log}");
    }
    // Everything else of the run was committed.
    let stored = app.stored().await;
    for id in corrupted["create_won"].as_array().expect("ids") {
        assert!(stored.iter().any(|r| r.deal.deal_id == id.as_str().expect("id")), "{id} stored");
    }
    let ledger = app.warehouse().ledger().await.expect("ledger");
    assert_eq!(ledger[0].status, "succeeded");
    // And each is kept in quarantined_deals, as received, for a person to look at.
    let kept = app.warehouse().quarantined().await.expect("quarantined");
    let ids: Vec<&str> = corrupted["corrupt"].as_array().expect("ids").iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(kept.iter().map(|q| q.deal_id.as_str()).collect::<Vec<_>>().len(), ids.len(), "{kept:?}");
    for q in &kept {
        assert!(ids.contains(&q.deal_id.as_str()), "{q:?}");
        assert_eq!(q.run_id, ledger[0].run_id);
        let record: serde_json::Value = serde_json::from_str(&q.record).expect("the record as JSON");
        assert_eq!(record["id"].as_str(), Some(q.deal_id.as_str()));
        assert!(record[q.field.as_str()].is_string(), "the bad value is kept: {}", q.record);
    }
}

#[tokio::test]
async fn every_subcommand_has_help_with_examples_and_version_names_the_commit() {
    for args in [
        vec!["--help"],
        vec!["sync", "--help"],
        vec!["check", "--help"],
        vec!["exchange-grant", "--help"],
        vec!["authorize", "--help"],
        vec!["revoke", "--help"],
    ] {
        let out = crate::helpers::run_binary(&args, &[]).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
        assert!(out.stdout.contains("Examples:"), "{args:?}: {}", out.stdout);
    }
    let out = crate::helpers::run_binary(&["--version"], &[]).await;
    assert!(out.stdout.contains("commit "), "{}", out.stdout);
}
