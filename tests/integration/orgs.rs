//! Real orgs come in shapes (issue 9): the job against sandbox orgs of each shape, as a user would run it — the
//! sync + mutation scenario ends equal to the sandbox's ground truth, `check` names what is missing, and
//! `reconcile` repairs what nightly windows cannot see.

use serde_json::{json, Value};
use zoho_sandbox::{Profile, SandboxConfig};

use crate::helpers::{assert_equals_ground_truth, next_second, TestApp};

/// A sandbox org of `profile` with `deals` deals.
async fn org(profile: Profile, deals: usize) -> TestApp {
    TestApp::spawn(SandboxConfig { deals, profile, ..SandboxConfig::default() }).await
}

/// One compact night-by-night scenario: a first sync, a night with every kind of change (win, un-win, delete,
/// edit, a new won deal), then a skipped night (two rounds of changes, one run). After each run the warehouse
/// equals the sandbox's ground truth.
async fn sync_scenario_ends_equal_to_ground_truth(app: &TestApp) {
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "first sync: {}", out.all());
    let since = app.ledger().await.last().expect("a run").window_start;
    assert_equals_ground_truth(app, since).await;

    app.control("/__sandbox/mutate", json!({"win": 10, "unwin": 6, "delete": 5, "edit": 10, "create_won": 4})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "second sync: {}", out.all());
    assert_equals_ground_truth(app, since).await;

    // A skipped night.
    app.control("/__sandbox/mutate", json!({"win": 5, "unwin": 4, "delete": 3, "edit": 5})).await;
    app.control("/__sandbox/mutate", json!({"unwin": 3, "edit": 5, "create_won": 3})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "third sync: {}", out.all());
    assert_equals_ground_truth(app, since).await;
    let stored = app.stored().await;
    assert!(stored.iter().any(|r| !r.is_closed_won), "some rows left won");
}

#[tokio::test]
async fn the_sync_scenario_ends_equal_to_ground_truth_on_the_default_org() {
    sync_scenario_ends_equal_to_ground_truth(&org(Profile::Default, 2000).await).await;
}

#[tokio::test]
async fn the_sync_scenario_ends_equal_to_ground_truth_on_a_free_org_without_pipeline_or_currency_fields() {
    let app = org(Profile::Free, 2000).await;
    sync_scenario_ends_equal_to_ground_truth(&app).await;
    let stored = app.stored().await;
    assert!(stored.iter().all(|r| r.deal.pipeline.is_none() && r.deal.currency.is_none()), "the org has neither");
}

#[tokio::test]
async fn the_sync_scenario_ends_equal_to_ground_truth_on_an_org_with_two_pipelines() {
    let app = org(Profile::Pipelines, 2000).await;
    sync_scenario_ends_equal_to_ground_truth(&app).await;
    // The won stages only the second pipeline maps (one with an apostrophe) were found and queried.
    let stages: std::collections::HashSet<String> =
        app.stored().await.into_iter().filter_map(|r| r.deal.stage).collect();
    assert!(stages.iter().any(|s| s.contains('\'')), "a won stage with an apostrophe: {stages:?}");
    assert!(stages.contains("Partner Won"), "{stages:?}");
}

#[tokio::test]
async fn the_sync_scenario_ends_equal_to_ground_truth_on_an_org_with_custom_fields_of_every_type() {
    let app = org(Profile::Exotic, 1500).await;
    let out = app.run(&["sync", "--dry-run"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let unsupported: Vec<&str> = out.stderr.lines().filter(|l| l.contains("COQL cannot select")).collect();
    assert_eq!(unsupported.len(), 1, "one info line lists the unsupported fields: {}", out.stderr);
    let formulas: Vec<&str> = out.stderr.lines().filter(|l| l.contains("at most 5 formula fields")).collect();
    assert_eq!(formulas.len(), 1, "the formula fields past the fifth are named once: {}", out.stderr);
    sync_scenario_ends_equal_to_ground_truth(&app).await;
    let truth = app.truth().await;
    let stored = app.stored().await;
    let row = stored.iter().find(|r| r.is_closed_won && !r.is_deleted).expect("a won row");
    let raw: Value = serde_json::from_str(&row.deal.raw).expect("raw is JSON");
    let t = truth.deals.iter().find(|d| d["id"] == json!(row.deal.deal_id)).expect("in truth");
    for reserved in ["External", "Order"] {
        assert_eq!(raw[reserved], t[reserved], "{reserved} (a reserved word) is selected, quoted");
    }
}

#[tokio::test]
async fn owners_are_stored_with_their_full_names_not_only_the_last_name_coql_gives() {
    let app = TestApp::spawn(SandboxConfig { deals: 500, ..SandboxConfig::default() }).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let users: Value = app
        .http
        .get(format!("{}/__sandbox/truth", app.sandbox.base_url()))
        .send()
        .await
        .expect("truth")
        .json()
        .await
        .expect("json");
    let stored = app.stored().await;
    assert!(!stored.is_empty());
    for row in &stored {
        let id = &row.deal.deal_id;
        let truth = users["deals"].as_array().expect("deals").iter().find(|d| d["id"] == json!(id)).expect("in truth");
        let full = truth["Owner"]["name"].as_str().expect("owner name");
        assert!(full.contains(' '), "the sandbox's owners have a first and a last name: {full}");
        assert_eq!(row.deal.owner_name.as_deref(), Some(full), "{id}: the owner's full name");
    }
}

#[tokio::test]
async fn without_the_users_scope_owners_keep_the_last_name_and_the_run_succeeds_with_a_warning() {
    let app = TestApp::spawn(SandboxConfig { deals: 300, ..SandboxConfig::default() }).await;
    app.control("/__sandbox/control", json!({"missing_scope": "ZohoCRM.users.READ"})).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("ZohoCRM.users.READ") && out.stderr.contains("last name"), "{}", out.stderr);
    assert!(app.stored().await.iter().all(|r| r.deal.owner_name.as_deref().is_some_and(|n| !n.contains(' '))));
}

#[tokio::test]
async fn check_fails_with_a_precise_message_when_the_coql_scope_is_missing() {
    let app = TestApp::spawn(SandboxConfig { deals: 50, ..SandboxConfig::default() }).await;
    app.control("/__sandbox/control", json!({"missing_scope": "ZohoCRM.coql.READ"})).await;
    let out = app.run(&["check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let line =
        out.stdout.lines().find(|l| l.starts_with("FAIL  won-deal query")).unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains("ZohoCRM.coql.READ") && line.contains("exchange-grant"), "{line}");
    assert!(
        out.stdout.lines().any(|l| l.starts_with("ok    deleted Deals")),
        "the other probes still run: {}",
        out.stdout
    );
}

#[tokio::test]
async fn check_fails_naming_the_permission_when_the_profile_cannot_read_deleted_deals() {
    let app = org(Profile::Default, 50).await;
    app.control("/__sandbox/control", json!({"deleted_forbidden": true})).await;
    let out = app.run(&["check"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    let line =
        out.stdout.lines().find(|l| l.starts_with("FAIL  deleted Deals")).unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(line.contains("cannot read deleted Deals") && line.contains("Profiles"), "{line}");
    assert!(out.stdout.lines().any(|l| l.starts_with("ok    won-deal query")), "{}", out.stdout);
    // The nightly run fails the same way, exit 3, before writing anything.
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("cannot read deleted Deals"), "{}", out.stderr);
}

#[tokio::test]
async fn an_authentication_failure_mid_run_mints_a_new_token_once_and_the_run_succeeds() {
    let app = org(Profile::Default, 3000).await;
    // The first COQL call (the count) revokes the tokens as it arrives, inside the sandbox, after it was
    // authenticated: the pages, which wait for its answer, meet the revoked token. (Revoking at a later call can
    // come too late: the job asks for its last page and its reconciliation count together, so no COQL call may
    // be left to meet the revocation.)
    app.control("/__sandbox/control", json!({"token_error_code": "AUTHENTICATION_FAILURE"})).await;
    app.control("/__sandbox/on-coql-call", json!({"call": 1, "revoke_access_tokens": true})).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(app.stats().await["unauthorized"].as_u64().unwrap_or(0) > 0, "a call met the revoked token");
    assert!(app.stats().await["token_mints"].as_u64().expect("mints") >= 2, "a second token was minted");
    let since = app.ledger().await.last().expect("a run").window_start;
    assert_equals_ground_truth(&app, since).await;
}

#[tokio::test]
async fn a_spent_24_hour_credit_allowance_is_not_retried_and_exits_5_saying_when_it_comes_back() {
    let app = org(Profile::Default, 50).await;
    app.control("/__sandbox/control", json!({"credits_per_day": 2})).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 5, "{}", out.all());
    assert!(out.stderr.contains("rolling 24") && out.stderr.contains("24 hours after"), "{}", out.stderr);
    let refused = app.stats().await["calls"]["coql"].as_u64().unwrap_or(0)
        + app.stats().await["calls"]["fields"].as_u64().unwrap_or(0);
    assert!(refused <= 3, "the refusal was not retried: {}", app.stats().await);
}

#[tokio::test]
async fn check_runs_the_real_won_deal_query_and_probes_deleted_deals_on_a_healthy_org() {
    let app = TestApp::spawn(SandboxConfig { deals: 200, ..SandboxConfig::default() }).await;
    app.control("/__sandbox/reset-stats", json!({})).await;
    let out = app.run(&["check"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    for probe in ["won-deal query", "deleted Deals", "users"] {
        assert!(out.stdout.lines().any(|l| l.starts_with("ok") && l.contains(probe)), "{probe}: {}", out.stdout);
    }
    let stats = app.stats().await;
    assert!(stats["calls"]["deleted"].as_u64().unwrap_or(0) >= 1, "Deals/deleted was probed: {stats}");
}

#[tokio::test]
async fn reconcile_flags_deals_deleted_or_unwon_beyond_what_nightly_windows_see() {
    let app = TestApp::spawn(SandboxConfig { deals: 1500, ..SandboxConfig::default() }).await;
    reconcile_repairs(&app).await;
}

#[tokio::test]
async fn reconcile_repairs_a_bigquery_warehouse_too() {
    let app = TestApp::spawn(SandboxConfig { deals: 600, ..SandboxConfig::default() }).await;
    let Some(app) = app.on_bigquery("reconcile") else { return };
    reconcile_repairs(&app).await;
}

/// Stores every won deal, makes changes no sync will see, reconciles, and checks the repair.
async fn reconcile_repairs(app: &TestApp) {
    // Every won deal of the last ten years is stored.
    let out = app.run(&["sync", "--since", "3650d"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let before = app.stored().await;
    // Changes no sync will see: deletions older than Zoho's retention (the sandbox's clock moves 130 days on),
    // and un-wins of deals stored as won.
    app.control("/__sandbox/control", json!({"deleted_retention": true})).await;
    let touched = app.control("/__sandbox/mutate", json!({"unwin": 6, "delete": 6})).await;
    app.control("/__sandbox/clock", json!({"advance_secs": 130 * 86_400})).await;
    let ids = |kind: &str| -> Vec<String> {
        touched[kind].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_owned()).collect()
    };
    let (unwon, deleted) = (ids("unwin"), ids("delete"));
    let stored_won = |id: &String| before.iter().any(|r| &r.deal.deal_id == id && r.is_closed_won && !r.is_deleted);
    assert!(unwon.iter().all(stored_won), "the un-won deals were stored as won");
    let deleted_stored: Vec<&String> = deleted.iter().filter(|id| stored_won(id)).collect();

    let out = app.run(&["reconcile"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains(&format!("unwon={}", unwon.len())), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("deleted={}", deleted_stored.len())), "{}", out.stdout);

    let after = app.stored().await;
    let row = |id: &String| after.iter().find(|r| &r.deal.deal_id == id).expect("still stored");
    for id in &unwon {
        assert!(!row(id).is_closed_won, "{id} un-won in Zoho is flagged");
    }
    for id in deleted_stored {
        let r = row(id);
        assert!(r.is_deleted && r.deleted_time.is_none(), "{id} deleted long ago: flagged, deletion time unknown");
    }
    let untouched = after.iter().filter(|r| r.is_closed_won && !r.is_deleted).count();
    assert_eq!(untouched, before.len() - unwon.len() - deleted.iter().filter(|id| stored_won(id)).count());
    let ledger = app.ledger().await;
    assert_eq!((ledger[0].kind.as_str(), ledger[0].status.as_str()), ("reconcile", "succeeded"));

    // A second reconcile finds nothing left to repair, and the next sync still starts at the sync's watermark.
    let out = app.run(&["reconcile"]).await;
    assert!(out.stdout.contains("unwon=0 deleted=0"), "{}", out.stdout);
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let ledger = app.ledger().await;
    assert_eq!(ledger[0].kind, "scheduled");
    assert!(ledger[0].window_start < ledger[3].window_end, "the reconcile runs did not move the watermark");
}

#[tokio::test]
async fn an_org_that_refuses_count_id_is_counted_another_way_and_the_run_succeeds() {
    let app = TestApp::spawn(SandboxConfig { deals: 1500, ..SandboxConfig::default() }).await;
    app.control("/__sandbox/control", json!({"refuse_count_id": true})).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("counting another way"), "the fallback is said once: {}", out.stderr);
    assert_eq!(out.stderr.matches("counting another way").count(), 1, "and remembered for the rest of the run");
    // The reconciliation count still compares Zoho's number with the warehouse's.
    let (zoho_won, warehouse_won) = (field(&out.stdout, "zoho_won="), field(&out.stdout, "warehouse_won="));
    assert_eq!(zoho_won, warehouse_won, "{}", out.stdout);
    assert!(zoho_won > 0, "{}", out.stdout);
    let since = app.ledger().await.last().expect("a run").window_start;
    assert_equals_ground_truth(&app, since).await;
}

/// The number after `key` in a summary line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[tokio::test]
async fn the_pipelines_api_gives_the_won_stages_of_every_pipeline() {
    use zoho_deals_sync::config::ZohoCredentials;
    use zoho_deals_sync::retry::RetryPolicy;
    use zoho_deals_sync::zoho::{auth::TokenProvider, client::http_client, client::ZohoClient, deals};

    let app = org(Profile::Pipelines, 100).await;
    let http = http_client().expect("client");
    let creds = ZohoCredentials {
        client_id: zoho_sandbox::DEMO_CLIENT_ID.into(),
        client_secret: zoho_sandbox::DEMO_CLIENT_SECRET.to_owned().into(),
        refresh_token: zoho_sandbox::DEMO_REFRESH_TOKEN.to_owned().into(),
    };
    let base = url::Url::parse(&app.sandbox.base_url()).expect("url");
    let auth = TokenProvider::new(http.clone(), &base, creds, None, RetryPolicy::default()).expect("auth");
    let client = ZohoClient::new(http, auth, 2, None, RetryPolicy::default());

    // Read through layouts and settings/pipeline alone (not the field metadata's maps), the union still has the
    // stages only the second pipeline uses.
    let pipelines = deals::pipelines(&client).await.expect("pipelines");
    assert!(pipelines.len() >= 2, "two pipelines: {pipelines:?}");
    let won = deals::won_stages(&[], &pipelines);
    let truth = app.truth().await;
    for stage in &truth.won_stages {
        assert!(won.contains(stage), "{stage} missing from {won:?}");
    }
}

#[tokio::test]
async fn a_window_starting_more_than_55_days_back_warns_that_older_deletions_need_reconcile() {
    let app = org(Profile::Default, 300).await;
    let out = app.run(&["sync", "--since", "56d"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("more than 55 days back") && out.stderr.contains("reconcile"), "{}", out.stderr);
    let out = app.run(&["sync"]).await;
    assert!(!out.stderr.contains("more than 55 days back"), "a nightly window does not warn: {}", out.stderr);
}
