//! Fault knobs and limits: 429/500/dropped connections, concurrency, credits, stats and control.

use reqwest::StatusCode;
use serde_json::json;
use zoho_sandbox::{Faults, SandboxConfig};

use crate::helpers::{spawn, spawn_deals};

const Q: &str = "select id from Deals where id > 0";

#[tokio::test]
async fn rate_knobs_produce_429_without_retry_after_500_and_dropped_connections() {
    let sb = spawn_deals(20).await;
    let tok = sb.token().await;

    sb.control(json!({"rate_429": 1.0})).await;
    let resp = sb.coql_raw(&tok, Q).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none());
    let v: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(v["code"], "TOO_MANY_REQUESTS");
    assert_eq!(v["status"], "error");

    sb.control(json!({"rate_429": 0.0, "rate_500": 1.0})).await;
    let (status, v) = sb.coql(&tok, Q).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::INTERNAL_SERVER_ERROR, Some("INTERNAL_ERROR")));

    sb.control(json!({"rate_500": 0.0, "rate_drop": 1.0})).await;
    let err = sb
        .http
        .post(sb.url("/crm/v8/coql"))
        .header("Authorization", format!("Zoho-oauthtoken {tok}"))
        .json(&json!({"select_query": Q}))
        .send()
        .await
        .expect_err("the connection is closed without a response");
    assert!(!err.is_timeout(), "dropped, not hung: {err}");
    assert!(err.status().is_none());

    sb.control(json!({"rate_drop": 0.0})).await;
    let (status, _) = sb.coql(&tok, Q).await;
    assert_eq!(status, StatusCode::OK);

    let stats = sb.stats().await;
    assert_eq!(stats["faults_injected"], 3);
    assert_eq!(stats["faults"], json!({"429": 1, "500": 1, "drop": 1}));
    assert_eq!(stats["calls"]["coql"], 4);
    assert_eq!(stats["credits"]["coql"], 1, "only the successful call is charged");
    // The token endpoint is never faulted.
    sb.control(json!({"rate_500": 1.0})).await;
    assert!(sb.token().await.starts_with("1000."));
}

#[tokio::test]
async fn partial_fault_rates_hit_roughly_that_share_of_calls() {
    let sb = spawn(SandboxConfig {
        deals: 20,
        faults: Faults { rate_500: 0.3, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    let mut errors = 0;
    for _ in 0..100 {
        let (status, _) = sb.get(&tok, "/crm/v8/users?type=CurrentUser").await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            errors += 1;
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert!((10..=50).contains(&errors), "{errors} of 100");
}

#[tokio::test]
async fn calls_beyond_max_concurrency_get_429_and_the_peak_is_recorded() {
    let sb = spawn(SandboxConfig {
        deals: 20,
        faults: Faults { max_concurrency: 2, latency_ms: 1500, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    let calls = (0..5).map(|_| sb.get(&tok, "/crm/v8/users?type=CurrentUser"));
    let results = futures_join_all(calls).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let limited: Vec<_> = results.iter().filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS).collect();
    assert_eq!(ok + limited.len(), 5);
    assert!((1..=2).contains(&ok), "{ok} succeeded");
    assert!(limited.iter().all(|(_, v)| v["code"] == "TOO_MANY_REQUESTS"));
    let stats = sb.stats().await;
    assert!(stats["max_concurrency"].as_u64() >= Some(3), "{stats}");
    assert_eq!(stats["in_flight"], 0);
}

/// Runs futures concurrently on one task (no extra dependency needed).
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<_> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, h) in handles.iter_mut().enumerate() {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(o) => {
                        outs[i] = Some(o);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[tokio::test]
async fn coql_credits_follow_the_limit_and_reset_stats_zeroes_them() {
    let sb = spawn_deals(50).await;
    let tok = sb.token().await;
    for (limit, _) in [(200, 1), (201, 2), (2000, 3)] {
        let (status, _) = sb.coql(&tok, &format!("{Q} limit {limit}")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = sb.get(&tok, "/crm/v8/settings/fields?module=Deals").await;
    assert_eq!(status, StatusCode::OK);
    let stats = sb.stats().await;
    assert_eq!(stats["credits"]["coql"], 6);
    assert_eq!(stats["credits"]["fields"], 1);
    assert_eq!(stats["credits_total"], 7);
    assert_eq!(stats["calls"]["token"], 1);
    let (status, _) = sb.post_json("/__sandbox/reset-stats", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let stats = sb.stats().await;
    assert_eq!(stats["credits_total"], 0);
    assert_eq!(stats["calls"], json!({}));
}

#[tokio::test]
async fn the_daily_credit_allowance_ends_in_429_with_the_remaining_header_before() {
    let sb = spawn(SandboxConfig {
        deals: 10,
        faults: Faults { credits_per_day: 4, ..Faults::default() },
        ..SandboxConfig::default()
    })
    .await;
    let tok = sb.token().await;
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let resp = sb.coql_raw(&tok, Q).await;
        assert_eq!(resp.status(), StatusCode::OK);
        remaining.push(resp.headers().get("X-API-CREDITS-REMAINING").and_then(|v| v.to_str().ok()).map(str::to_string));
    }
    assert_eq!(remaining, vec![None, Some("2".into()), Some("1".into()), Some("0".into())]);
    let (status, v) = sb.coql(&tok, Q).await;
    assert_eq!((status, v["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("TOO_MANY_REQUESTS")));
}

#[tokio::test]
async fn control_rejects_unknown_knobs_and_reports_the_live_ones() {
    let sb = spawn_deals(10).await;
    let (status, _) = sb.post_json("/__sandbox/control", json!({"rate_4299": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = sb.post_json("/__sandbox/control", json!({"rate_429": 3})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v = sb.control(json!({"latency_ms": 5, "mint_limit": 3})).await;
    assert_eq!(v["latency_ms"], 5);
    assert_eq!(v["mint_limit"], 3);
    assert_eq!(v["max_concurrency"], 25);
    for _ in 0..3 {
        sb.token().await;
    }
    let (status, _) = sb.refresh().await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the new mint limit applies");
}
