//! End to end: the real binary against the sandbox over HTTP, into a real SQLite file.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use zoho_deals_sync::warehouse::{StoredDeal, Warehouse};

use crate::helpers::{after_coql_calls, assert_equals_ground_truth, modified, next_second, TestApp};

/// The window of the newest run in the ledger.
async fn last_window(app: &TestApp) -> (DateTime<Utc>, DateTime<Utc>) {
    let ledger = app.warehouse().ledger().await.expect("ledger");
    let run = ledger.first().expect("a run was recorded");
    (run.window_start, run.window_end)
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

fn utc(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().map(|s| DateTime::parse_from_rfc3339(s).expect("datetime").with_timezone(&Utc))
}

/// Compares a stored row with the sandbox's record, field by field.
fn assert_row_matches(row: &StoredDeal, truth: &Value) {
    let d = &row.deal;
    let id = &d.deal_id;
    assert_eq!(Some(id.clone()), text(&truth["id"]));
    assert_eq!(d.deal_name, text(&truth["Deal_Name"]), "{id} name");
    assert_eq!(d.stage, text(&truth["Stage"]), "{id} stage");
    // Exact money: the decimal text equals the JSON number's text.
    let amount = truth["Amount"].as_number().map(std::string::ToString::to_string);
    assert_eq!(d.amount.map(|a| a.to_string()), amount.map(|a| normalise(&a)), "{id} amount");
    assert_eq!(d.currency, text(&truth["Currency"]), "{id} currency");
    assert_eq!(d.probability, truth["Probability"].as_i64(), "{id} probability");
    assert_eq!(d.closing_date.map(|x| x.to_string()), text(&truth["Closing_Date"]), "{id} closing date");
    assert_eq!(d.account_id, text(&truth["Account_Name"]["id"]), "{id} account");
    assert_eq!(d.account_name, text(&truth["Account_Name"]["name"]), "{id} account name");
    assert_eq!(d.contact_id, text(&truth["Contact_Name"]["id"]), "{id} contact");
    assert_eq!(d.owner_id, text(&truth["Owner"]["id"]), "{id} owner");
    assert_eq!(d.owner_email, text(&truth["Owner"]["email"]), "{id} owner email");
    assert_eq!(d.lead_source, text(&truth["Lead_Source"]), "{id} lead source");
    assert_eq!(d.deal_type, text(&truth["Type"]), "{id} type");
    assert_eq!(Some(d.modified_time), utc(&truth["Modified_Time"]), "{id} modified (UTC)");
    assert_eq!(d.created_time, utc(&truth["Created_Time"]), "{id} created (UTC)");
    assert!(row.is_closed_won && !row.is_deleted, "{id} flags");
    // Custom fields survive in raw.
    let raw: Value = serde_json::from_str(&d.raw).expect("raw is JSON");
    let custom: Vec<&String> = truth.as_object().expect("object").keys().filter(|k| k.ends_with("__c")).collect();
    assert!(!custom.is_empty(), "the sandbox has custom fields");
    for k in custom {
        assert_eq!(raw[k.as_str()], truth[k.as_str()], "{id} custom field {k} in raw");
    }
}

/// `12500.10` and `12500.1` are the same amount; the decimal prints the shortest form.
fn normalise(s: &str) -> String {
    s.parse::<rust_decimal::Decimal>().map(|d| d.normalize().to_string()).unwrap_or_else(|_| s.to_owned())
}

#[tokio::test]
async fn a_sync_stores_exactly_the_won_deals_modified_in_the_window() {
    let app = TestApp::with_deals(5000).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("succeeded"), "{}", out.stdout);

    let (start, end) = last_window(&app).await;
    let truth = app.truth().await;
    let expected = truth.won_in(start, end);
    let stored = app.stored().await;
    assert!(expected.len() > 100, "the sandbox puts many won deals in the last 24h: {}", expected.len());
    assert_eq!(stored.len(), expected.len(), "exactly the won deals in the window");

    let by_id: HashMap<&str, &StoredDeal> = stored.iter().map(|r| (r.deal.deal_id.as_str(), r)).collect();
    for t in &expected {
        let row = by_id.get(t["id"].as_str().expect("id")).expect("every expected deal is stored");
        assert_row_matches(row, t);
    }
    // Both won stage names are present, and same-second ties were paged through.
    let stages: std::collections::HashSet<_> = stored.iter().filter_map(|r| r.deal.stage.clone()).collect();
    assert!(stages.len() >= 2, "both won stages: {stages:?}");
    let mut per_second: HashMap<DateTime<Utc>, usize> = HashMap::new();
    for t in &expected {
        *per_second.entry(modified(t)).or_default() += 1;
    }
    assert!(per_second.values().any(|n| *n > 1), "the window has same-second ties");
    // Unicode and quotes intact.
    assert!(stored.iter().any(|r| r.deal.deal_name.as_deref().is_some_and(|n| !n.is_ascii())));
}

/// A backfill big enough to merge ahead (thousands of rows staged when its last pages are asked for) stores
/// exactly the won deals of its window; so does a second backfill of the same window, whose merge ahead first
/// copies the stored rows it replaces.
#[tokio::test]
async fn a_backfill_that_merges_ahead_stores_exactly_the_won_deals_and_a_rerun_changes_nothing() {
    let app = TestApp::with_deals(30_000).await;
    // The loader merges ahead only while no batch waits to be staged. At zero latency, on a loaded CI machine,
    // pages can arrive faster than they are staged, and the run (correctly) stages to the end and merges at the
    // commit. Zoho takes hundreds of ms a call: with that latency here, the loader is idle between pages.
    app.control("/__sandbox/control", serde_json::json!({"latency_ms": 400})).await;
    let mut env = app.env();
    env.retain(|(k, _)| k != "RUST_LOG" && k != "ZOHO_CONCURRENCY");
    env.push(("RUST_LOG".into(), "zoho_deals_sync=debug".into()));
    // One stream: every page but the last is staged when the last is asked for.
    env.push(("ZOHO_CONCURRENCY".into(), "1".into()));
    let out = app.run_with_env(&["sync", "--since", "3650d"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("ahead of the commit"), "the run merged ahead: {}", out.stderr);
    let (start, end) = last_window(&app).await;
    let truth = app.truth().await;
    let expected = truth.won_in(start, end);
    assert!(expected.len() > 4_000, "enough won deals to merge ahead: {}", expected.len());
    let first = app.stored().await;
    assert_eq!(first.len(), expected.len(), "exactly the won deals in the window");
    let by_id: HashMap<&str, &StoredDeal> = first.iter().map(|r| (r.deal.deal_id.as_str(), r)).collect();
    for t in &expected {
        assert_row_matches(by_id.get(t["id"].as_str().expect("id")).expect("every expected deal is stored"), t);
    }

    let out = app.run_with_env(&["sync", "--since", "3650d"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("ahead of the commit"), "the rerun merged ahead: {}", out.stderr);
    let second = app.stored().await;
    assert_eq!(second.len(), first.len(), "a rerun adds nothing");
    let strip = |rows: Vec<StoredDeal>| -> Vec<_> {
        rows.into_iter()
            .map(|r| (r.deal.deal_id.clone(), r.deal.modified_time, r.is_closed_won, r.deal.won.at))
            .collect()
    };
    let (mut a, mut b) = (strip(first), strip(second));
    a.sort();
    b.sort();
    assert_eq!(a, b, "every deal's version and won date unchanged");
}

#[tokio::test]
async fn rerunning_writes_no_duplicates_and_an_earlier_since_adds_older_deals() {
    let app = TestApp::with_deals(3000).await;
    assert_eq!(app.run(&["sync"]).await.code, 0);
    let first = app.stored().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let second = app.stored().await;
    assert_eq!(first.len(), second.len(), "a rerun adds nothing");
    let ids: std::collections::HashSet<_> = second.iter().map(|r| &r.deal.deal_id).collect();
    assert_eq!(ids.len(), second.len(), "no duplicate deal ids");

    let out = app.run(&["sync", "--since", "30d"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let (start, end) = last_window(&app).await;
    let truth = app.truth().await;
    let stored = app.stored().await;
    assert!(stored.len() > second.len(), "older won deals were added");
    assert_eq!(stored.len(), truth.won_in(start, end).len(), "all won deals of the last 30 days");
    let ledger = app.warehouse().ledger().await.expect("ledger");
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().all(|r| r.status == "succeeded"));
    assert_eq!(ledger[0].kind, "backfill");
}

#[tokio::test]
async fn a_missing_required_variable_exits_2_and_names_it() {
    let app = TestApp::with_deals(10).await;
    let env: Vec<_> = app.env().into_iter().filter(|(k, _)| k != "ZOHO_REFRESH_TOKEN").collect();
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 2, "{}", out.all());
    assert!(out.stderr.contains("ZOHO_REFRESH_TOKEN"), "{}", out.stderr);
}

#[tokio::test]
async fn a_wrong_refresh_token_exits_3_says_what_to_do_and_never_prints_the_token() {
    let app = TestApp::with_deals(10).await;
    let bogus = "1000.this-is-a-wrong-refresh-token-4711";
    let env: Vec<_> = app
        .env()
        .into_iter()
        .map(|(k, v)| if k == "ZOHO_REFRESH_TOKEN" { (k, bogus.to_owned()) } else { (k, v) })
        .chain([("RUST_LOG".to_owned(), "trace".to_owned())])
        .collect();
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("exchange-grant"), "says what to do: {}", out.stderr);
    assert!(!out.all().contains(bogus), "the token leaked: {}", out.all());
    assert!(!out.all().contains(zoho_sandbox::DEMO_CLIENT_SECRET), "the client secret leaked");
}

#[tokio::test]
async fn a_wrong_client_secret_exits_3_and_names_the_variables_to_check() {
    let app = TestApp::with_deals(10).await;
    let env: Vec<_> = app
        .env()
        .into_iter()
        .map(|(k, v)| if k == "ZOHO_CLIENT_SECRET" { (k, "not-the-secret-0815".to_owned()) } else { (k, v) })
        .collect();
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 3, "{}", out.all());
    assert!(out.stderr.contains("ZOHO_CLIENT_SECRET"), "{}", out.stderr);
    assert!(!out.all().contains("not-the-secret-0815"));
}

#[tokio::test]
async fn no_secret_appears_in_any_log_line_even_at_trace_level() {
    let app = TestApp::with_deals(500).await;
    let env: Vec<_> = app
        .env()
        .into_iter()
        .filter(|(k, _)| k != "RUST_LOG")
        .chain([("RUST_LOG".to_owned(), "trace".to_owned())])
        .collect();
    let out = app.run_with_env(&["sync"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    // Third-party crates are capped at warn (telemetry::CAPPED_TARGETS); the job's own debug lines show that
    // RUST_LOG=trace took effect.
    assert!(out.stderr.contains(r#""severity":"DEBUG""#), "trace logging is on: {}", out.stderr);
    let all = out.all();
    for secret in
        [zoho_sandbox::DEMO_REFRESH_TOKEN, zoho_sandbox::DEMO_CLIENT_SECRET, "Zoho-oauthtoken", "access_token"]
    {
        assert!(!all.contains(secret), "{secret} appears in the output");
    }
    // Every access token the sandbox minted starts with "1000." followed by hex; none may appear.
    assert!(!all.contains("1000.") || !regex_like_token(&all), "an access token appears in the output");
}

/// True when the text holds something shaped like a sandbox access token (`1000.<hex>.<hex>`).
fn regex_like_token(text: &str) -> bool {
    text.match_indices("1000.").any(|(i, _)| {
        let rest = &text[i + 5..];
        let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
        hex.len() >= 16 && rest[hex.len()..].starts_with('.')
    })
}

#[tokio::test]
async fn json_log_lines_parse_and_carry_cloud_logging_fields_and_the_run_id() {
    let app = TestApp::with_deals(3000).await;
    let env: Vec<_> = app
        .env()
        .into_iter()
        .filter(|(k, _)| k != "RUST_LOG")
        .chain([("RUST_LOG".to_owned(), "debug".to_owned())])
        .collect();
    let out = app.run_with_env(&["sync", "--since", "60d"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!out.stderr.contains('\r'), "no progress bar off a terminal");
    let lines: Vec<Value> =
        out.stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    for l in &lines {
        for field in ["severity", "message", "timestamp"] {
            assert!(l[field].is_string(), "{field} missing: {l}");
        }
        assert!(["DEBUG", "INFO", "WARNING", "ERROR"].contains(&l["severity"].as_str().expect("severity")));
    }
    let summary = lines.iter().find(|l| l["message"] == "run succeeded").expect("a summary line");
    let run_id = summary["run_id"].as_str().expect("run_id on the summary");
    for field in ["window_start", "window_end", "upserted", "unwon", "deleted", "credits", "api_calls", "duration_ms"] {
        assert!(!summary[field].is_null(), "{field} missing from the summary: {summary}");
    }
    assert!(out.stdout.contains(run_id), "the stdout summary names the run");
    // Debug lines from the fetch and load tasks carry the run id too: one grep finds a whole run.
    let staged: Vec<_> = lines.iter().filter(|l| l["message"] == "staged a batch").collect();
    assert!(!staged.is_empty(), "one line per batch at debug");
    assert!(staged.iter().all(|l| l["run_id"] == run_id), "batch lines carry run_id");
    let pages: Vec<_> = lines.iter().filter(|l| l["message"] == "COQL page").collect();
    assert!(!pages.is_empty() && pages.iter().all(|l| l["run_id"] == run_id), "page lines carry run_id");
}

#[tokio::test]
async fn a_first_run_only_checks_access_to_deleted_deals_and_the_next_run_flags_a_deal_deleted_while_it_ran() {
    let app = TestApp::with_deals(2000).await;
    // Deals deleted before the first run: nothing is stored that their deletion could flag.
    app.control("/__sandbox/mutate", serde_json::json!({"delete": 5})).await;
    let now = Utc::now();
    let truth = app.truth().await;
    let doomed = truth.won_in(now - chrono::Duration::hours(20), now)[0]["id"].as_str().expect("an id").to_owned();
    app.control("/__sandbox/reset-stats", serde_json::json!({})).await;
    // Every call takes 300 ms, and `doomed` is deleted once the run's last COQL call (the reconciliation count,
    // asked with the page) has been answered, as the run nears its end: both answers were computed with it, so
    // the first run stores it as won.
    app.control("/__sandbox/control", serde_json::json!({"latency_ms": 300})).await;
    let deleter =
        after_coql_calls(&app, 3, "/__sandbox/mutate", serde_json::json!({"delete": 1, "only": [doomed.clone()]}));
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(deleter.await.expect("deleter").is_some_and(|s| s.is_success()), "the deal was deleted mid-run");
    let stats = app.stats().await;
    assert_eq!(stats["calls"]["deleted"].as_u64(), Some(1), "one one-row page checked the access: {stats}");
    assert!(out.stdout.contains("deleted=0"), "{}", out.stdout);
    let first = app.stored().await;
    let row = first.iter().find(|r| r.deal.deal_id == doomed).expect("the first run read the deal before it went");
    assert!(row.is_closed_won && !row.is_deleted);

    // The next run holds deals, reads the deletions since its window's start, and flags the deal.
    app.control("/__sandbox/control", serde_json::json!({"latency_ms": 0})).await;
    app.control("/__sandbox/reset-stats", serde_json::json!({})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(app.stats().await["calls"]["deleted"].as_u64().unwrap_or(0) >= 1);
    let row = app.stored().await.into_iter().find(|r| r.deal.deal_id == doomed).expect("still stored");
    assert!(row.is_deleted, "the deletion during the first run was read by the second: {row:?}");
    let since = app.ledger().await.last().expect("a run").window_start;
    assert_equals_ground_truth(&app, since).await;
}
