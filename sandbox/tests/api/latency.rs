//! The latency model over real HTTP: what the call log says each call was given, the in-flight peak while calls
//! are slow, the accounts server's own latency, and the knobs from the command line and the environment.
//! (No timed assertions: the delays are read from the sandbox's own log, which records what it applied.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use zoho_sandbox::{Faults, History, SandboxConfig};

use crate::helpers::{spawn, TestSandbox};

fn log_entries(stats: &Value) -> Vec<Value> {
    stats["call_log"]["entries"].as_array().cloned().unwrap_or_default()
}

async fn won_page(sb: &TestSandbox, tok: &str, limit: u32) -> usize {
    let q = format!("select id from Deals where id > 0 order by id asc limit {limit}");
    let (status, v) = sb.coql(tok, &q).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_page_is_given_the_base_latency_plus_its_per_record_part_and_a_count_only_the_base() {
    let sb = spawn(SandboxConfig {
        deals: 2500,
        faults: Faults { latency_ms: 20, latency_per_record_ms: 0.01, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    sb.post_json("/__sandbox/reset-stats", json!({})).await;
    assert_eq!(won_page(&sb, &tok, 200).await, 200);
    assert_eq!(won_page(&sb, &tok, 2000).await, 2000);
    let (status, _) = sb.coql(&tok, "select COUNT(id) from Deals where id > 0").await;
    assert_eq!(status, StatusCode::OK);
    sb.control(json!({"latency_ms": 0})).await; // a control call: never delayed, never logged

    let log = log_entries(&sb.stats().await);
    let summary: Vec<(String, u64, f64)> = log
        .iter()
        .map(|e| {
            let kind = e["kind"].as_str().expect("kind").to_string();
            (kind, e["records"].as_u64().expect("records counted"), e["latency_ms"].as_f64().expect("latency"))
        })
        .collect();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    assert_eq!(summary.len(), 3, "three CRM calls, the control call is not logged: {log:?}");
    assert_eq!((summary[0].0.as_str(), summary[0].1), ("page", 200));
    assert!(close(summary[0].2, 22.0), "20 ms + 200 × 0.01 ms: {summary:?}");
    assert_eq!((summary[1].0.as_str(), summary[1].1), ("page", 2000));
    assert!(close(summary[1].2, 40.0), "20 ms + 2000 × 0.01 ms: {summary:?}");
    assert_eq!((summary[2].0.as_str(), summary[2].1), ("count", 1));
    assert!(close(summary[2].2, 20.01), "a COUNT answers one row: {summary:?}");
    assert!(log.iter().all(|e| e["end_ms"].as_f64() >= e["start_ms"].as_f64()));
    // The latency is the call's response time, the sandbox's work inside it: a call answers no sooner (its
    // work is not added on top; see latency.rs).
    for e in &log {
        let took = e["end_ms"].as_f64().expect("end") - e["start_ms"].as_f64().expect("start");
        assert!(took + 1.0 >= e["latency_ms"].as_f64().expect("latency"), "answered before its latency: {e}");
    }
}

#[tokio::test]
async fn jitter_varies_each_call_within_its_bound_and_the_same_seed_repeats_the_sequence() {
    let mut sequences = Vec::new();
    for _ in 0..2 {
        let sb = spawn(SandboxConfig {
            deals: 50,
            seed: 9,
            faults: Faults { latency_ms: 20, latency_jitter_ms: 15, ..Faults::default() },
            ..SandboxConfig::default()
        })
        .await;
        let tok = sb.token().await;
        for _ in 0..12 {
            let (status, _) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
            assert_eq!(status, StatusCode::OK);
        }
        let delays: Vec<f64> = log_entries(&sb.stats().await).iter().filter_map(|e| e["latency_ms"].as_f64()).collect();
        assert_eq!(delays.len(), 13, "the token mint and twelve CRM calls");
        let crm = &delays[1..];
        assert!(crm.iter().all(|d| (5.0..=35.0).contains(d)), "{crm:?}");
        assert!(crm.iter().any(|d| *d != crm[0]), "the jitter moves the delay: {crm:?}");
        sequences.push(crm.to_vec());
    }
    assert_eq!(sequences[0], sequences[1], "same seed, same delays in the same order");
}

#[tokio::test]
async fn slow_calls_count_as_in_flight_for_their_whole_latency() {
    let sb = spawn(SandboxConfig {
        deals: 3000,
        faults: Faults { latency_ms: 600, latency_per_record_ms: 0.05, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    let (a, b, c) = tokio::join!(won_page(&sb, &tok, 2000), won_page(&sb, &tok, 2000), won_page(&sb, &tok, 2000));
    assert_eq!((a, b, c), (2000, 2000, 2000));
    let stats = sb.stats().await;
    assert_eq!(stats["max_concurrency"], 3, "three slow pages overlapped: {}", stats["max_concurrency"]);
    assert_eq!(stats["in_flight"], 0);
}

#[tokio::test]
async fn the_accounts_server_has_its_own_latency() {
    let sb = spawn(SandboxConfig {
        deals: 10,
        faults: Faults { latency_ms: 0, accounts_latency_ms: 7, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    let (status, _) = sb.get(&tok, "/crm/v8/users?type=CurrentUser").await;
    assert_eq!(status, StatusCode::OK);
    let log = log_entries(&sb.stats().await);
    let by_kind: Vec<(&str, &str, f64)> = log
        .iter()
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["latency_ms"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    assert_eq!(by_kind, vec![("token", "accounts", 7.0), ("users", "users", 0.0)]);
    assert_eq!(log[1]["records"], Value::Null, "records are counted only with a per-record latency");
}

#[tokio::test]
async fn the_binary_takes_the_latency_model_from_flags_and_the_environment() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zoho-sandbox"))
        .args(["--port", "0", "--deals", "100", "--latency-ms", "300", "--history", "skewed"])
        .env("SANDBOX_LATENCY_PER_RECORD_MS", "0.1")
        .env("SANDBOX_LATENCY_JITTER_MS", "30")
        .env("SANDBOX_ACCOUNTS_LATENCY_MS", "80")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("first line");
    let base = line.trim_end().strip_prefix("listening on ").map(str::to_string);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let knobs = match &base {
        Some(base) => http.get(format!("{base}/__sandbox/control")).send().await.ok(),
        None => None,
    };
    let knobs: Option<Value> = match knobs {
        Some(r) => r.json().await.ok(),
        None => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    let knobs = knobs.unwrap_or_else(|| panic!("the sandbox answered its knobs (first line {line:?})"));
    assert_eq!(knobs["latency_ms"], 300);
    assert_eq!(knobs["latency_per_record_ms"], 0.1);
    assert_eq!(knobs["latency_jitter_ms"], 30);
    assert_eq!(knobs["accounts_latency_ms"], 80);

    let out = Command::new(env!("CARGO_BIN_EXE_zoho-sandbox")).args(["--history", "recent"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--history"));
}

#[tokio::test]
async fn a_skewed_org_puts_most_deals_in_recent_months_and_a_fifth_in_one_migration_afternoon() {
    let sb = spawn(SandboxConfig { deals: 4000, history: History::Skewed, ..SandboxConfig::default() }).await;
    let truth = sb.truth().await;
    let now = chrono::DateTime::parse_from_rfc3339(truth["now"].as_str().expect("now")).expect("now parses");
    let ages_days: Vec<f64> = truth["deals"]
        .as_array()
        .expect("deals")
        .iter()
        .map(|d| {
            let t = chrono::DateTime::parse_from_rfc3339(d["Modified_Time"].as_str().expect("mt")).expect("parses");
            (now - t).num_seconds() as f64 / 86_400.0
        })
        .collect();
    let share = |f: &dyn Fn(f64) -> bool| ages_days.iter().filter(|a| f(**a)).count() as f64 / ages_days.len() as f64;
    let last_year = share(&|a| a < 365.0);
    let migration = share(&|a| (3.0 * 365.0 - 1.0..=3.0 * 365.0).contains(&a));
    let last_day = share(&|a| a < 1.0);
    let older = share(&|a| a > 3.0 * 365.0 + 1.0);
    assert!(last_year > 0.55, "most deals were last modified within a year: {last_year}");
    assert!((0.12..0.25).contains(&migration), "the migration afternoon holds about a fifth: {migration}");
    assert!((0.003..0.03).contains(&last_day), "about 1% changed in the last day: {last_day}");
    assert!(older > 0.0 && older < 0.05, "a thin tail of old deals: {older}");
}
