//! Issue #11, part B, end to end: home-currency amounts, won dates and the version history, from the real binary
//! against the sandbox, on SQLite and (when the emulator runs) BigQuery.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use zoho_deals_sync::deal::WonAtSource;
use zoho_deals_sync::warehouse::bigquery::BigQueryWarehouse;
use zoho_deals_sync::warehouse::StoredDeal;
use zoho_sandbox::data::CURRENCIES;

use crate::helpers::TestApp;

const BOOKINGS_AS_OF: &str = include_str!("../../sql/queries/bookings_as_of.sql");
const CLAWBACKS: &str = include_str!("../../sql/queries/clawbacks.sql");

/// A sandbox whose whole history is inside the first run's window.
async fn app(deals: usize) -> TestApp {
    let mut app = TestApp::with_deals(deals).await;
    app.extra_env.push(("SYNC_LOOKBACK".into(), "200d".into()));
    app
}

async fn sync(app: &TestApp, args: &[&str]) {
    let out = app.run(&[&["sync"][..], args].concat()).await;
    assert_eq!(out.code, 0, "the sync succeeds: {}", out.all());
}

/// Moves the sandbox's clock forward (runs see a later "now"; mutations are stamped with it).
async fn advance(app: &TestApp, secs: i64) {
    app.control("/__sandbox/clock", json!({ "advance_secs": secs })).await;
}

/// Applies a mutation; returns the touched ids of `kind` and the time they were stamped with.
async fn mutate(app: &TestApp, body: Value, kind: &str) -> (Vec<String>, DateTime<Utc>) {
    let out = app.control("/__sandbox/mutate", body).await;
    let ids: Vec<String> =
        out[kind].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_owned()).collect();
    let at = DateTime::parse_from_rfc3339(out["modified_time"].as_str().expect("time")).expect("rfc3339");
    (ids, at.with_timezone(&Utc))
}

async fn rows(app: &TestApp) -> HashMap<String, StoredDeal> {
    app.stored().await.into_iter().map(|r| (r.deal.deal_id.clone(), r)).collect()
}

/// Runs `sql` on the warehouse the runs write, `{{dataset}}` as each needs it; every cell as text.
async fn query(app: &TestApp, sql: &str) -> Vec<Vec<Option<String>>> {
    match &app.bigquery {
        Some(bq) => BigQueryWarehouse::connect(bq.clone())
            .await
            .expect("emulator reachable")
            .query_text(sql)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}")),
        None => crate::helpers::sqlite_rows(&app.db, sql),
    }
}

/// A query file with its `@name` parameters written in as timestamp literals of the warehouse's dialect.
fn with_time(app: &TestApp, sql: &str, name: &str, at: DateTime<Utc>) -> String {
    let literal = match app.bigquery {
        Some(_) => format!("TIMESTAMP '{}'", at.format("%Y-%m-%d %H:%M:%S+00")),
        None => format!("'{}'", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    };
    sql.replace(&format!("@{name}"), &literal)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("a decimal: {s}"))
}

// ---------------------------------------------------------------------------------------------------------
// amount_home

/// What `amount` in `currency` is in US dollars at the sandbox's rate for that currency, computed here from the
/// sandbox's currency table: divided by the rate (foreign units per dollar), rounded to the cent half away from
/// zero; dollar amounts unchanged.
fn hand_computed_usd(amount: Decimal, currency: &str) -> Decimal {
    if currency == "USD" {
        return amount;
    }
    let (_, rate, _) = CURRENCIES.iter().find(|(iso, _, _)| *iso == currency).expect("a sandbox currency");
    (amount / dec(rate)).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

async fn amount_home_equals_the_hand_computed_value_for_every_currency(app: TestApp) {
    sync(&app, &[]).await;
    let stored = app.stored().await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for row in &stored {
        let d = &row.deal;
        assert_eq!(d.home.currency.as_deref(), Some("USD"), "the sandbox's home currency, on {}", d.deal_id);
        let currency = d.currency.clone().expect("multi-currency deals carry a currency");
        match d.amount {
            Some(amount) => {
                assert_eq!(d.home.amount, Some(hand_computed_usd(amount, &currency)), "amount_home of {}", d.deal_id);
                *seen.entry(currency.clone()).or_default() += 1;
            }
            None => assert_eq!(d.home.amount, None, "no amount, no home amount: {}", d.deal_id),
        }
        let expected_revenue = d.expected_revenue.map(|e| hand_computed_usd(e, &currency));
        assert_eq!(d.home.expected_revenue, expected_revenue, "expected_revenue_home of {}", d.deal_id);
    }
    for (iso, _, _) in CURRENCIES {
        assert!(seen.get(*iso).copied().unwrap_or(0) > 0, "a won deal in {iso} was checked: {seen:?}");
    }

    // The view sums them exactly, on both warehouses; the first run's deals have no known won date.
    let view =
        query(&app, "SELECT won_month, home_currency, deals, revenue_home FROM `{{dataset}}.won_revenue_by_won_month`")
            .await;
    assert_eq!(view.len(), 1, "one group (unknown won month, USD): {view:?}");
    let current: Vec<&StoredDeal> = stored.iter().filter(|r| r.is_closed_won && !r.is_deleted).collect();
    let total: Decimal = current.iter().filter_map(|r| r.deal.home.amount).sum();
    assert_eq!(view[0][0], None, "won_month of deals whose won date is unknown");
    assert_eq!(view[0][2].as_deref().map(str::to_owned), Some(current.len().to_string()));
    assert_eq!(view[0][3].as_deref().map(dec), Some(total), "the exact sum");
    assert!(current.iter().all(|r| r.deal.won.source == WonAtSource::Unknown && r.deal.won.at.is_none()));
}

#[tokio::test]
async fn amount_home_equals_the_hand_computed_value_for_every_currency_on_sqlite() {
    amount_home_equals_the_hand_computed_value_for_every_currency(app(400).await).await;
}

#[tokio::test]
async fn amount_home_equals_the_hand_computed_value_for_every_currency_on_bigquery() {
    let Some(app) = app(150).await.on_bigquery("money") else { return };
    amount_home_equals_the_hand_computed_value_for_every_currency(app).await;
}

// ---------------------------------------------------------------------------------------------------------
// won_at

async fn won_at_comes_from_the_stage_history_for_deals_won_after_the_first_run_and_is_observed_when_capped(
    app: TestApp,
) {
    sync(&app, &[]).await;

    // Two deals are won; one of them is edited later, before the next run.
    advance(&app, 3_600).await;
    let (won, won_at) = mutate(&app, json!({"win": 2}), "win").await;
    assert_eq!(won.len(), 2);
    advance(&app, 3_600).await;
    let (edited, edited_at) = mutate(&app, json!({"edit": 1, "only": [won[0]]}), "edit").await;
    assert_eq!(edited, vec![won[0].clone()]);
    advance(&app, 60).await;
    sync(&app, &[]).await;
    let stored = rows(&app).await;
    for id in &won {
        let w = stored[id].deal.won;
        assert_eq!((w.at, w.source), (Some(won_at), WonAtSource::StageHistory), "deal {id}");
    }
    assert_eq!(stored[&won[0]].deal.modified_time, edited_at, "the stored version is the later edit");

    // With the stage history capped at zero reads, a new win gets the time of the version the job saw.
    advance(&app, 3_600).await;
    let (capped, _) = mutate(&app, json!({"win": 1}), "win").await;
    advance(&app, 3_600).await;
    let (_, capped_seen) = mutate(&app, json!({"edit": 1, "only": [capped[0]]}), "edit").await;
    advance(&app, 60).await;
    let out =
        app.run_with_env(&["sync"], &[app.env(), vec![("SYNC_STAGE_HISTORY_MAX".into(), "0".into())]].concat()).await;
    assert_eq!(out.code, 0, "{}", out.all());
    // … and an edit of a deal already won never moves its won date.
    advance(&app, 3_600).await;
    mutate(&app, json!({"edit": 1, "only": [won[1]]}), "edit").await;
    advance(&app, 60).await;
    sync(&app, &[]).await;
    let stored = rows(&app).await;
    let c = stored[&capped[0]].deal.won;
    assert_eq!((c.at, c.source), (Some(capped_seen), WonAtSource::Observed));
    let w = stored[&won[1]].deal.won;
    assert_eq!((w.at, w.source), (Some(won_at), WonAtSource::StageHistory), "unchanged by the edit");
    assert!(stored[&won[1]].deal.modified_time > won_at);
}

#[tokio::test]
async fn won_at_comes_from_the_stage_history_for_deals_won_after_the_first_run_and_is_observed_when_capped_on_sqlite() {
    won_at_comes_from_the_stage_history_for_deals_won_after_the_first_run_and_is_observed_when_capped(app(300).await)
        .await;
}

#[tokio::test]
async fn won_at_comes_from_the_stage_history_for_deals_won_after_the_first_run_and_is_observed_when_capped_on_bigquery()
{
    let Some(app) = app(100).await.on_bigquery("won_at") else { return };
    won_at_comes_from_the_stage_history_for_deals_won_after_the_first_run_and_is_observed_when_capped(app).await;
}

// ---------------------------------------------------------------------------------------------------------
// history

/// One history row of a deal: (change, valid_from as text, is_current as text), oldest first.
async fn versions(app: &TestApp, id: &str) -> Vec<(String, String)> {
    let sql = format!(
        "SELECT change, amount_home FROM `{{{{dataset}}}}.closed_won_deals_history` WHERE deal_id = '{id}' ORDER BY valid_from"
    );
    query(app, &sql)
        .await
        .into_iter()
        .map(|r| (r[0].clone().unwrap_or_default(), r[1].clone().unwrap_or_default()))
        .collect()
}

async fn history_rows(app: &TestApp) -> usize {
    let n = query(app, "SELECT COUNT(*) FROM `{{dataset}}.closed_won_deals_history`").await;
    n[0][0].as_deref().and_then(|s| s.parse().ok()).expect("a count")
}

/// Deal ids and home amounts the bookings query lists as of `at`.
async fn bookings(app: &TestApp, at: DateTime<Utc>) -> HashMap<String, Decimal> {
    query(app, &with_time(app, BOOKINGS_AS_OF, "as_of", at))
        .await
        .into_iter()
        .map(|r| (r[0].clone().expect("deal_id"), r[8].as_deref().map(dec).unwrap_or_default()))
        .collect()
}

async fn history_answers_as_of_queries_after_edits_unwins_and_rewins(app: TestApp) {
    sync(&app, &[]).await;
    let first = history_rows(&app).await;
    let won_first: usize = rows(&app).await.values().filter(|r| r.is_closed_won && !r.is_deleted).count();
    assert_eq!(first, won_first, "one version per stored deal after the first run");

    advance(&app, 3_600).await;
    let (x, edited_at) = mutate(&app, json!({"edit": 1}), "edit").await;
    let x = x[0].clone();
    let before_edit = rows(&app).await[&x].deal.home.amount;
    advance(&app, 3_600).await;
    sync(&app, &[]).await;
    let after_edit = rows(&app).await[&x].deal.home.amount;
    assert_ne!(before_edit, after_edit, "the edit changed the amount");

    advance(&app, 3_600).await;
    let (_, unwon_at) = mutate(&app, json!({"unwin": 1, "only": [x]}), "unwin").await;
    advance(&app, 3_600).await;
    sync(&app, &[]).await;

    advance(&app, 3_600).await;
    let (rewon, rewon_at) = mutate(&app, json!({"win": 1, "only": [x]}), "win").await;
    assert_eq!(rewon, vec![x.clone()], "the un-won deal is won again");
    advance(&app, 3_600).await;
    sync(&app, &[]).await;

    let v = versions(&app, &x).await;
    let changes: Vec<&str> = v.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(changes, ["won", "edited", "unwon", "won"], "{v:?}");

    // As of each moment, the bookings query gives the version valid then.
    let second = Duration::seconds(1);
    assert_eq!(bookings(&app, edited_at - second).await.get(&x).copied(), before_edit.or(Some(Decimal::ZERO)));
    assert_eq!(bookings(&app, edited_at).await.get(&x).copied(), after_edit.or(Some(Decimal::ZERO)));
    assert_eq!(bookings(&app, unwon_at).await.get(&x), None, "not booked while un-won");
    assert!(bookings(&app, rewon_at).await.contains_key(&x), "booked again once re-won");
    // Deals nobody touched are booked all along.
    assert_eq!(bookings(&app, edited_at - second).await.len(), won_first);

    let clawbacks = query(&app, &with_time(&app, CLAWBACKS, "since", edited_at)).await;
    let ids: Vec<&str> = clawbacks.iter().filter_map(|r| r[0].as_deref()).collect();
    assert_eq!(ids, [x.as_str()], "the un-win is the one clawback: {clawbacks:?}");

    // Reading the whole scenario's window again (an overlap reaching back over every run: the same versions
    // again) writes no version twice. (A `--since` backfill cannot be used: the sandbox's clock is ahead.)
    let total = history_rows(&app).await;
    let reread = [app.env(), vec![("SYNC_OVERLAP".into(), "2d".into())]].concat();
    let out = app.run_with_env(&["sync"], &reread).await;
    assert_eq!(out.code, 0, "{}", out.all());
    let ledger = app.ledger().await;
    let rerun = ledger
        .iter()
        .find(|r| r.window_start < edited_at - Duration::hours(1) && r.window_end > rewon_at)
        .unwrap_or_else(|| panic!("a run covered the whole scenario: {ledger:?}"));
    assert!(rerun.deals_upserted > 0, "and re-applied its versions: {rerun:?}");
    sync(&app, &[]).await;
    assert_eq!(history_rows(&app).await, total, "reruns and overlaps add no version");
    assert_eq!(versions(&app, &x).await, v);
    let current = query(&app, "SELECT deal_id FROM `{{dataset}}.closed_won_deals_history` WHERE is_current").await;
    assert_eq!(current.len(), rows(&app).await.len(), "exactly one current version per stored deal");
}

#[tokio::test]
async fn history_answers_as_of_queries_after_edits_unwins_and_rewins_on_sqlite() {
    history_answers_as_of_queries_after_edits_unwins_and_rewins(app(200).await).await;
}

#[tokio::test]
async fn history_answers_as_of_queries_after_edits_unwins_and_rewins_on_bigquery() {
    let Some(app) = app(100).await.on_bigquery("history") else { return };
    history_answers_as_of_queries_after_edits_unwins_and_rewins(app).await;
}
