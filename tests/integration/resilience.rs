//! The Zoho side in the real world: faults, revoked tokens, throttled mints, a moving CRM, keyset paging.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};
use zoho_deals_sync::config::ZohoCredentials;
use zoho_deals_sync::retry::RetryPolicy;
use zoho_deals_sync::warehouse::Warehouse;
use zoho_deals_sync::zoho::auth::TokenProvider;
use zoho_deals_sync::zoho::client::{http_client, ZohoClient};
use zoho_deals_sync::zoho::deals::{self, DealQuery, StageFilter, Window};
use zoho_sandbox::{Faults, SandboxConfig, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_REFRESH_TOKEN};

use crate::helpers::{assert_equals_ground_truth, modified, next_second, TestApp, Truth};

fn first_window_start(ledger: &[zoho_deals_sync::warehouse::LedgerRow]) -> DateTime<Utc> {
    ledger.last().expect("a run").window_start
}

#[tokio::test]
async fn twenty_percent_faults_and_a_revoked_token_still_end_equal_to_ground_truth() {
    let faults = Faults { rate_429: 0.08, rate_500: 0.06, rate_drop: 0.06, latency_ms: 15, ..Faults::default() };
    let app = TestApp::spawn(SandboxConfig { deals: 20_000, faults, ..SandboxConfig::default() }).await;
    // The tokens are revoked mid-run: the 3rd of the 10 or so COQL calls the run makes revokes them on arrival
    // (inside the sandbox, so whatever the machine's speed), and the calls after it meet the revoked token.
    app.control("/__sandbox/on-coql-call", json!({"call": 3, "revoke_access_tokens": true})).await;
    let out = app.run(&["sync", "--since", "200d"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let stats = app.stats().await;
    assert!(stats["calls"]["coql"].as_u64().unwrap_or(0) > 3, "the revocation came mid-run: {stats}");
    assert!(stats["unauthorized"].as_u64().unwrap_or(0) > 0, "a call met the revoked token: {stats}");
    assert!(stats["faults_injected"].as_u64().unwrap_or(0) > 0, "faults were injected: {stats}");
    assert!(out.stderr.contains("minting a new one"), "the revoked token was replaced: {}", out.stderr);
    let ledger = app.warehouse().ledger().await.expect("ledger");
    assert_equals_ground_truth(&app, first_window_start(&ledger)).await;
    let (start, end) = (ledger[0].window_start, ledger[0].window_end);
    assert_eq!(
        app.warehouse().count_won_in_window(start, end).await.expect("count") as usize,
        app.truth().await.won_in(start, end).len()
    );
}

#[tokio::test]
async fn runs_with_mutations_in_between_keep_the_warehouse_equal_to_ground_truth() {
    let app = TestApp::with_deals(4000).await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let since = first_window_start(&app.warehouse().ledger().await.expect("ledger"));
    assert_equals_ground_truth(&app, since).await;

    // A night with every kind of change.
    app.control("/__sandbox/mutate", json!({"win": 25, "unwin": 15, "delete": 12, "edit": 20, "create_won": 10})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_equals_ground_truth(&app, since).await;
    let stored = app.stored().await;
    assert!(stored.iter().any(|r| !r.is_closed_won), "some rows left won");
    assert!(stored.iter().any(|r| r.is_deleted), "some rows were deleted");

    // A skipped night: two rounds of changes, one run.
    app.control("/__sandbox/mutate", json!({"win": 10, "unwin": 10, "delete": 5, "edit": 10})).await;
    app.control("/__sandbox/mutate", json!({"unwin": 5, "edit": 10, "create_won": 5})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_equals_ground_truth(&app, since).await;
    let ledger = app.warehouse().ledger().await.expect("ledger");
    assert_eq!(ledger.len(), 3);
    assert!(ledger[0].window_start < ledger[1].window_end, "windows overlap");
}

fn client_for(app: &TestApp, concurrency: usize) -> ZohoClient {
    let http = http_client().expect("client");
    let creds = ZohoCredentials {
        client_id: DEMO_CLIENT_ID.into(),
        client_secret: DEMO_CLIENT_SECRET.to_owned().into(),
        refresh_token: DEMO_REFRESH_TOKEN.to_owned().into(),
    };
    let base = url::Url::parse(&app.sandbox.base_url()).expect("url");
    let auth = TokenProvider::new(http.clone(), &base, creds, None, RetryPolicy::default()).expect("provider");
    ZohoClient::new(http, auth, concurrency, None, RetryPolicy::default())
}

#[tokio::test]
async fn sixteen_concurrent_fetch_tasks_mint_one_token() {
    let app = TestApp::with_deals(200).await;
    let client = Arc::new(client_for(&app, 10));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let c = Arc::clone(&client);
        tasks.spawn(async move { deals::metadata(&c).await.expect("metadata") });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    assert_eq!(client.auth().mints(), 1);
    assert_eq!(app.stats().await["token_mints"], 1);

    // And a whole run, with every fetcher running, mints once too.
    app.control("/__sandbox/reset-stats", json!({})).await;
    let mut env = app.env();
    env.push(("ZOHO_CONCURRENCY".into(), "10".into()));
    let out = app.run_with_env(&["sync", "--since", "100d"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(app.stats().await["token_mints"], 1, "one mint per run");
}

#[tokio::test]
async fn the_accounts_throttle_exits_4_and_says_to_wait() {
    let app = TestApp::with_deals(50).await;
    app.control("/__sandbox/control", json!({"mint_limit": 1})).await;
    assert_eq!(app.run(&["sync"]).await.code, 0);
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 4, "{}", out.all());
    assert!(out.stderr.contains("10 minutes"), "{}", out.stderr);
    assert_eq!(app.stats().await["token_mints"], 1, "no hot retry loop against a throttled endpoint");
}

fn won(truth: &Truth, d: &Value) -> bool {
    d["Stage"].as_str().is_some_and(|s| truth.won_stages.iter().any(|w| w == s))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Keyset paging over random data (seeds), windows and page sizes returns each matching deal exactly once,
    /// across same-second ties and page boundaries.
    #[test]
    fn keyset_paging_returns_each_deal_in_the_window_exactly_once(
        seed in 0u64..1_000_000,
        deals in 50usize..1500,
        page_size in 1u32..300,
        start_days in 1i64..120,
        len_hours in 1i64..2000,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let app = TestApp::spawn(SandboxConfig { deals, seed, ..SandboxConfig::default() }).await;
            let truth = app.truth().await;
            let now = chrono::Utc::now();
            let start = now - chrono::Duration::days(start_days);
            let window = Window { start, end: (start + chrono::Duration::hours(len_hours)).min(now) };
            let window = zoho_deals_sync::sync::window::floor_window(window);
            let client = client_for(&app, 2);
            let cols = vec!["id".to_owned(), "Modified_Time".to_owned()];
            let q = DealQuery { columns: &cols, filter: StageFilter::Won, stages: &truth.won_stages, window, page_size };
            let mut seen: Vec<String> = Vec::new();
            deals::page_deals(&client, &q, |records| {
                seen.extend(records.iter().filter_map(|r| r["id"].as_str().map(str::to_owned)));
                async { true }
            }).await.expect("paging");
            let unique: HashSet<&String> = seen.iter().collect();
            prop_assert_eq!(unique.len(), seen.len(), "an id was read twice");
            let expected: HashSet<String> = truth.deals.iter()
                .filter(|d| won(&truth, d) && modified(d) >= window.start && modified(d) < window.end)
                .map(|d| d["id"].as_str().expect("id").to_owned()).collect();
            let got: HashSet<String> = seen.into_iter().collect();
            prop_assert_eq!(got, expected);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn concurrency_stays_under_zohos_coql_limit_even_when_asked_for_the_maximum() {
    // Latency keeps calls in flight long enough to overlap.
    let faults = Faults { latency_ms: 50, ..Faults::default() };
    let app = TestApp::spawn(SandboxConfig { deals: 30_000, faults, ..SandboxConfig::default() }).await;
    let mut env = app.env();
    env.push(("ZOHO_CONCURRENCY".into(), "10".into()));
    let out = app.run_with_env(&["sync", "--since", "200d"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let stats = app.stats().await;
    let seen = stats["max_coql_concurrency"].as_u64().expect("max_coql_concurrency");
    assert!((2..=10).contains(&seen), "COQL calls ran concurrently but never more than 10 at once: {seen}");
    assert_eq!(stats["rejected_limits"].as_u64().unwrap_or(0), 0, "no 429 from the concurrency cap: {stats}");
}

#[tokio::test]
async fn deals_modified_while_a_run_pages_are_neither_lost_nor_read_twice() {
    let faults = Faults { latency_ms: 60, ..Faults::default() };
    let mut app = TestApp::spawn(SandboxConfig { deals: 12_000, faults, ..SandboxConfig::default() }).await;
    app.extra_env = vec![("SYNC_LOOKBACK".into(), "200d".into()), ("ZOHO_CONCURRENCY".into(), "1".into())];
    let mutator = {
        let (http, url) = (app.http.clone(), format!("{}/__sandbox/mutate", app.sandbox.base_url()));
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                let body = json!({"win": 10, "unwin": 10, "edit": 20, "delete": 5, "create_won": 5});
                http.post(&url).json(&body).send().await.expect("mutate");
            }
        })
    };
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    mutator.await.expect("mutator");
    let since = first_window_start(&app.warehouse().ledger().await.expect("ledger"));
    // What moved during the run left its window (Modified_Time is now later); the next run picks it up.
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_equals_ground_truth(&app, since).await;
}

#[tokio::test]
async fn keyset_paging_reads_past_100000_matching_rows_where_offset_paging_stops() {
    let app = TestApp::with_deals(150_000).await;
    let truth = app.truth().await;
    // Count every stage except the lost ones as "won", so that one query matches more than 100,000 rows.
    let stages: std::collections::BTreeSet<&str> =
        truth.deals.iter().filter_map(|d| d["Stage"].as_str()).filter(|s| !s.contains("Lost")).collect();
    let stages: Vec<&str> = stages.into_iter().collect();
    let matching = truth.deals.iter().filter(|d| d["Stage"].as_str().is_some_and(|s| stages.contains(&s))).count();
    assert!(matching > 100_000, "{matching}");
    let mut env = app.env();
    env.push(("ZOHO_WON_STAGES".into(), stages.join(",")));
    env.push(("ZOHO_CONCURRENCY".into(), "1".into()));
    let out = app.run_with_env(&["sync", "--since", "400d"], &env).await;
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(app.stored().await.len(), matching);
}

#[tokio::test]
async fn nights_passing_on_zohos_clock_including_a_skipped_one_keep_the_warehouse_equal_to_ground_truth() {
    const DAY: i64 = 86_400;
    let app = TestApp::with_deals(4000).await;
    assert_eq!(app.run(&["sync"]).await.code, 0);
    let since = first_window_start(&app.warehouse().ledger().await.expect("ledger"));

    // Night 1 passes in Zoho; the next run's window ends at Zoho's clock, a day ahead of this machine's.
    app.control("/__sandbox/clock", json!({"advance_secs": DAY})).await;
    app.control("/__sandbox/mutate", json!({"win": 10, "unwin": 6, "delete": 4, "edit": 10, "create_won": 5})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let ledger = app.warehouse().ledger().await.expect("ledger");
    assert!(ledger[0].window_end > chrono::Utc::now() + chrono::Duration::hours(23), "the window follows Zoho's clock");
    assert_equals_ground_truth(&app, since).await;

    // Night 2: the job does not run. Night 3: changes again, then one run covers both nights.
    app.control("/__sandbox/clock", json!({"advance_secs": DAY})).await;
    app.control("/__sandbox/mutate", json!({"win": 10, "unwin": 6, "delete": 4, "edit": 10, "create_won": 5})).await;
    app.control("/__sandbox/clock", json!({"advance_secs": DAY})).await;
    app.control("/__sandbox/mutate", json!({"win": 5, "unwin": 3, "edit": 5, "create_won": 5})).await;
    next_second().await;
    let out = app.run(&["sync"]).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let ledger = app.warehouse().ledger().await.expect("ledger");
    assert_eq!(ledger[0].window_start, ledger[1].window_end - chrono::Duration::minutes(15), "starts at the watermark");
    assert!(ledger[0].window_end - ledger[0].window_start > chrono::Duration::hours(47), "covers both nights");
    assert_equals_ground_truth(&app, since).await;
}
