//! The job against a sandbox with Zoho-like latency (per call, per record, jitter) and a skewed history: however
//! its streams are scheduled, the sandbox never sees more CRM calls in flight than `ZOHO_CONCURRENCY`, by its own
//! peak statistic and by the call log's intervals. Short: a small org and tens of milliseconds per call.

use serde_json::{json, Value};
use zoho_sandbox::{Faults, History, SandboxConfig};

use crate::helpers::TestApp;

/// Most calls whose `[start_ms, end_ms]` intervals in the sandbox's call log overlap at one instant.
fn peak_overlap(log: &[Value]) -> usize {
    let mut edges: Vec<(f64, i32)> = log
        .iter()
        .filter(|e| e["kind"] != "accounts")
        .flat_map(|e| {
            let (s, t) = (e["start_ms"].as_f64().expect("start_ms"), e["end_ms"].as_f64().expect("end_ms"));
            [(s, 1), (t, -1)]
        })
        .collect();
    // At equal instants an end comes before a start: touching intervals do not overlap.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    // `peak` starts at 0 and only grows.
    usize::try_from(peak).unwrap_or(0)
}

#[tokio::test]
async fn the_sandbox_never_sees_more_calls_in_flight_than_zoho_concurrency_at_realistic_latency() {
    let faults = Faults {
        latency_ms: 20,
        latency_per_record_ms: 0.005,
        latency_jitter_ms: 10,
        accounts_latency_ms: 5,
        ..Faults::default()
    };
    let app =
        TestApp::spawn(SandboxConfig { deals: 30_000, history: History::Skewed, faults, ..SandboxConfig::default() })
            .await;
    // Concurrency 3 first, into the empty table: only the won pass runs, so its pages can be counted.
    for concurrency in [3usize, 1] {
        app.control("/__sandbox/reset-stats", json!({})).await;
        let mut env = app.env();
        env.push(("ZOHO_CONCURRENCY".into(), concurrency.to_string()));
        let out = app.run_with_env(&["sync", "--since", "3650d"], &env).await;
        assert_eq!(out.code, 0, "{}", out.all());

        let stats = app.stats().await;
        let peak = stats["max_concurrency"].as_u64().expect("max_concurrency") as usize;
        let log = stats["call_log"]["entries"].as_array().cloned().expect("call log");
        let pages = log.iter().filter(|e| e["kind"] == "page").count();
        assert!(pages > 3, "the backfill paged: {pages} pages");
        assert!(peak >= 1 && peak <= concurrency, "sandbox peak {peak} with ZOHO_CONCURRENCY={concurrency}");
        let from_log = peak_overlap(&log);
        assert!(
            from_log <= concurrency,
            "the call log shows {from_log} calls at once (ZOHO_CONCURRENCY={concurrency})"
        );
        assert_eq!(stats["rejected_limits"].as_u64(), Some(0), "{stats}");
        if concurrency > 1 {
            assert!(peak > 1, "with {concurrency} streams the calls did overlap, so the bound was exercised");
        }
        let stored = app.stored().await.len();
        assert!(stored > 8_000, "the won deals were stored: {stored}");
        if concurrency == 3 {
            // The window was cut by one-row probes into slices of whole pages: every won deal came in a page of
            // 2,000 but the last, no slice ended on a short page, and the probes were 2 one-row answers.
            let coql: Vec<u64> = log
                .iter()
                .filter(|e| e["kind"] == "page" && e["endpoint"] == "coql")
                .map(|e| e["records"].as_u64().expect("records"))
                .collect();
            let (probes, pages): (Vec<u64>, Vec<u64>) = coql.iter().partition(|r| **r <= 1);
            assert_eq!(pages.iter().sum::<u64>(), stored as u64, "every won deal read once: {coql:?}");
            assert_eq!(pages.len() as u64, (stored as u64).div_ceil(2000), "whole pages per slice: {coql:?}");
            assert_eq!(probes.len(), 2, "one probe per cut: {coql:?}");
        }
    }
}

#[test]
fn overlapping_intervals_are_counted_and_touching_ones_are_not() {
    let e = |s: f64, t: f64| json!({"kind": "page", "start_ms": s, "end_ms": t});
    assert_eq!(peak_overlap(&[e(0.0, 10.0), e(5.0, 15.0), e(6.0, 7.0)]), 3);
    assert_eq!(peak_overlap(&[e(0.0, 10.0), e(10.0, 20.0)]), 1);
    assert_eq!(peak_overlap(&[]), 0);
    let token = json!({"kind": "accounts", "start_ms": 0.0, "end_ms": 30.0});
    assert_eq!(peak_overlap(&[token, e(1.0, 2.0)]), 1, "token mints are not CRM calls");
}
