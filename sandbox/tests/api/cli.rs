//! The `zoho-sandbox` binary: first stdout line, serving, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

#[tokio::test]
async fn binary_prints_its_url_first_serves_and_exits_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zoho-sandbox"))
        .args(["--port", "0", "--deals", "200", "--seed", "3", "--tz", "-07:00", "--rate-429", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("first line");
    let base = line.trim_end().strip_prefix("listening on ").expect("first line is `listening on URL`").to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");

    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let truth: serde_json::Value =
        http.get(format!("{base}/__sandbox/truth")).send().await.expect("truth").json().await.expect("json");
    assert_eq!(truth["deals"].as_array().map(Vec::len), Some(200));
    assert!(truth["now"].as_str().is_some_and(|n| n.ends_with("-07:00")));

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    let err = http.get(format!("{base}/__sandbox/stats")).send().await;
    assert!(err.is_err() || err.is_ok_and(|r| r.status() != StatusCode::OK));
}

#[test]
fn a_bad_tz_flag_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_zoho-sandbox")).args(["--tz", "India"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tz"));
}

#[tokio::test]
async fn shutdown_stops_serving_and_frees_the_port() {
    let sb = crate::helpers::spawn_deals(10).await;
    let url = sb.url("/__sandbox/stats");
    assert_eq!(sb.http.get(&url).send().await.expect("up").status(), StatusCode::OK);
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().expect("client");
    sb.sandbox.shutdown().await;
    let after = http.get(&url).send().await;
    assert!(after.is_err(), "still serving after shutdown: {after:?}");
}

#[test]
fn binary_serves_the_profile_it_is_given_and_refuses_an_unknown_one() {
    let bin = env!("CARGO_BIN_EXE_zoho-sandbox");
    let bad = Command::new(bin).args(["--profile", "enterprise-plus"]).output().expect("binary runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--profile"));

    let mut child = Command::new(bin)
        .args(["--port", "0", "--deals", "50", "--profile", "free", "--refuse-count-id", "--deleted-retention"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("first line");
    let base = line.trim_end().strip_prefix("listening on ").expect("url").to_string();
    let get = |path: &str| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let url = format!("{base}{path}");
        rt.block_on(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
            http.get(url).send().await.expect("get").json::<serde_json::Value>().await.expect("json")
        })
    };
    let truth = get("/__sandbox/truth");
    let knobs = get("/__sandbox/control");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(truth["profile"], "free");
    assert_eq!(knobs["credits_per_day"], 5000);
    assert_eq!((knobs["refuse_count_id"].as_bool(), knobs["deleted_retention"].as_bool()), (Some(true), Some(true)));
}
