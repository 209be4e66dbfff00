//! Every analyst query in `sql/queries/` runs on the warehouses its header names (`-- Runs on: both`,
//! `bigquery` or `sqlite`) and returns the expected rows for one small known scenario, written through the
//! `Warehouse` trait into a SQLite file and (when `BIGQUERY_EMULATOR_HOST` is set) an emulator dataset.
//!
//! The scenario: four deals won in a first run (Ada: 1, 3 and 4; Bob: 2), then deal 1 edited and deal 2 un-won in
//! a second run. Closing dates are today and creation dates 10, 20 or 30 days before, so the queries that filter
//! on the current date (this quarter, this year, the last 12 months) see every deal.

use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use zoho_deals_sync::deal::{Deal, DealChange, HomeMoney};
use zoho_deals_sync::warehouse::bigquery::{BigQueryConfig, BigQueryWarehouse};
use zoho_deals_sync::warehouse::sqlite::SqliteWarehouse;
use zoho_deals_sync::warehouse::{RunKind, RunReport, RunStart, Warehouse};

use crate::helpers::{emulator_host, sqlite_rows};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    BigQuery,
}

/// A fixed instant plus `s` seconds: the deals' versions.
fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid date") + Duration::seconds(s)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("a decimal: {s}"))
}

/// A won deal closed today, created `age_days` before, in `currency` with its home (USD) amount.
#[allow(clippy::too_many_arguments)]
fn deal(
    id: &str,
    modified: i64,
    owner: (&str, &str),
    currency: &str,
    amount: &str,
    home: &str,
    age_days: i64,
    region: Option<&str>,
) -> DealChange {
    let today = Utc::now().date_naive();
    let created = today - Duration::days(age_days);
    let raw = match region {
        Some(r) => format!(r#"{{"id":"{id}","Region__c":"{r}"}}"#),
        None => format!(r#"{{"id":"{id}"}}"#),
    };
    DealChange::Won(Deal {
        deal_id: id.to_owned(),
        deal_name: Some(format!("Deal {id}")),
        stage: Some("Closed Won".into()),
        amount: Some(dec(amount)),
        currency: Some(currency.into()),
        closing_date: Some(today),
        owner_id: Some(owner.0.into()),
        owner_name: Some(owner.1.into()),
        created_time: Some(Utc.from_utc_datetime(&created.and_hms_opt(9, 0, 0).expect("a time"))),
        modified_time: t(modified),
        raw,
        home: HomeMoney { currency: Some("USD".into()), amount: Some(dec(home)), expected_revenue: None },
        ..Deal::default()
    })
}

const ADA: (&str, &str) = ("5725767000000200001", "Ada Lovelace");
const BOB: (&str, &str) = ("5725767000000200002", "Bob Babbage");

fn run(id: &str, start: i64, end: i64, started_secs_ago: i64) -> RunStart {
    RunStart {
        run_id: id.to_owned(),
        kind: RunKind::Scheduled,
        started_at: Utc::now() - Duration::seconds(started_secs_ago),
        window_start: t(start),
        window_end: t(end),
        lease_ttl: Duration::minutes(10),
    }
}

async fn fill<W: Warehouse>(w: &W) {
    w.prepare().await.expect("prepare");
    let runs = [
        (
            run("r1", 0, 100, 60),
            vec![
                deal("1", 10, ADA, "EUR", "100.10", "92.5", 10, Some("EMEA")),
                deal("2", 10, BOB, "USD", "50.05", "50.05", 20, Some("APAC")),
                deal("3", 10, ADA, "EUR", "200.20", "185", 30, Some("EMEA")),
                deal("4", 10, ADA, "USD", "10", "10", 20, None),
            ],
        ),
        (
            run("r2", 100, 200, 0),
            vec![
                deal("1", 150, ADA, "EUR", "120.10", "111", 10, Some("EMEA")),
                DealChange::Unwon { deal_id: "2".into(), stage: Some("Closed Lost".into()), modified_time: t(160) },
            ],
        ),
    ];
    for (r, changes) in runs {
        w.begin_run(&r).await.expect("begin_run");
        w.stage(&r, &changes).await.expect("stage");
        w.commit(&r, &RunReport::default()).await.expect("commit");
    }
}

/// The query files: (name, text, the warehouses its header says it runs on).
fn query_files() -> Vec<(String, String, Vec<Dialect>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/queries");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("sql/queries") {
        let path = entry.expect("a directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let name = path.file_stem().and_then(|s| s.to_str()).expect("a file name").to_owned();
        let text = std::fs::read_to_string(&path).expect("read the query");
        let runs_on = text
            .lines()
            .find_map(|l| l.strip_prefix("-- Runs on: "))
            .unwrap_or_else(|| panic!("{name}.sql has no `-- Runs on:` line in its header"));
        let dialects = match runs_on.split(|c: char| !c.is_ascii_alphabetic()).next() {
            Some("both") => vec![Dialect::Sqlite, Dialect::BigQuery],
            Some("bigquery") => vec![Dialect::BigQuery],
            Some("sqlite") => vec![Dialect::Sqlite],
            other => panic!("{name}.sql: unknown `Runs on` {other:?}"),
        };
        out.push((name, text, dialects));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `sql` with its `@as_of` / `@since` parameters written in as timestamp literals of `dialect`.
fn with_params(sql: &str, dialect: Dialect, params: &[(&str, DateTime<Utc>)]) -> String {
    let mut sql = sql.to_owned();
    for (name, at) in params {
        let literal = match dialect {
            Dialect::BigQuery => format!("TIMESTAMP '{}'", at.format("%Y-%m-%d %H:%M:%S+00")),
            Dialect::Sqlite => format!("'{}'", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        };
        sql = sql.replace(&format!("@{name}"), &literal);
    }
    sql
}

/// A cell as the test compares it: numbers as normalized decimals (the emulator may print `320.300000000`).
fn norm(v: &Option<String>) -> String {
    match v {
        None => "NULL".to_owned(),
        Some(s) => Decimal::from_str(s).map(|d| d.normalize().to_string()).unwrap_or_else(|_| s.clone()),
    }
}

fn pick(rows: &[Vec<Option<String>>], columns: &[usize]) -> Vec<Vec<String>> {
    rows.iter().map(|r| columns.iter().map(|i| norm(&r[*i])).collect()).collect()
}

fn expect(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|s| (*s).to_owned()).collect()).collect()
}

/// Runs every query meant for `dialect` and checks its answer.
async fn every_query_answers(dialect: Dialect, query: impl AsyncFn(&str) -> Vec<Vec<Option<String>>>) {
    let month = Utc::now().date_naive().format("%Y-%m-01").to_string();
    let mut ran = Vec::new();
    for (name, text, dialects) in query_files() {
        if !dialects.contains(&dialect) {
            continue;
        }
        let (got, want): (Vec<Vec<String>>, Vec<Vec<String>>) = match name.as_str() {
            "bookings_as_of" => {
                let before = query(&with_params(&text, dialect, &[("as_of", t(100))])).await;
                let after = query(&with_params(&text, dialect, &[("as_of", t(170))])).await;
                let mut got = pick(&before, &[0, 8]);
                got.push(vec!["--".into()]);
                got.extend(pick(&after, &[0, 8]));
                let want = expect(&[
                    &["1", "92.5"],
                    &["2", "50.05"],
                    &["3", "185"],
                    &["4", "10"],
                    &["--"],
                    &["1", "111"],
                    &["3", "185"],
                    &["4", "10"],
                ]);
                (got, want)
            }
            "clawbacks" => {
                let rows = query(&with_params(&text, dialect, &[("since", t(0))])).await;
                (pick(&rows, &[0, 3, 6]), expect(&[&["2", "50.05", "unwon"]]))
            }
            "recent_runs" => {
                let rows = query(&text).await;
                (pick(&rows, &[0, 2, 7, 8]), expect(&[&["r2", "succeeded", "1", "1"], &["r1", "succeeded", "4", "0"]]))
            }
            "custom_field_from_raw" => {
                let mut got = pick(&query(&text).await, &[0, 2, 3]);
                got.sort();
                (got, expect(&[&["1", "EMEA", "120.1"], &["3", "EMEA", "200.2"], &["4", "NULL", "10"]]))
            }
            "median_time_to_close_by_owner" => {
                let rows = query(&text).await;
                (pick(&rows, &[0, 1, 2, 3]), expect(&[&["Ada Lovelace", "3", "20", "30"]]))
            }
            "revenue_last_12_months" => {
                let rows = query(&text).await;
                let month_text = |r: &Vec<Option<String>>| r[0].clone().unwrap_or_default();
                assert!(rows.iter().all(|r| month_text(r) == month), "{name}: this month only: {rows:?}");
                (
                    pick(&rows, &[1, 2, 3, 4]),
                    expect(&[&["Ada Lovelace", "EUR", "2", "320.3"], &["Ada Lovelace", "USD", "1", "10"]]),
                )
            }
            "sqlite_won_revenue_by_owner" => {
                let rows = query(&text).await;
                (
                    pick(&rows, &[0, 1, 2, 3]),
                    expect(&[&["Ada Lovelace", "EUR", "2", "320.3"], &["Ada Lovelace", "USD", "1", "10"]]),
                )
            }
            other => {
                panic!("sql/queries/{other}.sql has no expected answer here: add one to tests/integration/queries.rs")
            }
        };
        assert_eq!(got, want, "{name}.sql on {dialect:?}");
        ran.push(name);
    }
    assert!(ran.len() >= 4, "queries run on {dialect:?}: {ran:?}");
}

#[tokio::test]
async fn every_analyst_query_for_sqlite_returns_the_expected_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("warehouse.sqlite3");
    let w = SqliteWarehouse::open(&path).expect("open SQLite");
    fill(&w).await;
    every_query_answers(Dialect::Sqlite, async |sql: &str| sqlite_rows(&path, sql)).await;
}

#[tokio::test]
async fn every_analyst_query_for_bigquery_returns_the_expected_rows_on_the_emulator() {
    let Some(host) = emulator_host() else { return };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let config = BigQueryConfig {
        emulator_host: Some(host),
        dataset: format!("queries_{}", &suffix[..12]),
        ..BigQueryConfig::new("test-project")
    };
    let w = BigQueryWarehouse::connect(config).await.expect("connect to the emulator");
    fill(&w).await;
    every_query_answers(Dialect::BigQuery, async |sql: &str| {
        w.query_text(sql).await.unwrap_or_else(|e| panic!("{e}\n{sql}"))
    })
    .await;
    w.drop_dataset().await.expect("drop the test dataset");
}

#[test]
fn every_query_file_says_where_it_runs_and_sql_readme_lists_it() {
    let readme = include_str!("../../sql/README.md");
    let files = query_files();
    assert!(files.len() >= 7);
    for (name, _, _) in files {
        assert!(readme.contains(&format!("`queries/{name}.sql`")), "sql/README.md does not list queries/{name}.sql");
    }
}
