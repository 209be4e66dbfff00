//! The latency model: how long a call takes, and the log of every call the sandbox answered.
//!
//! Real Zoho answers in hundreds of milliseconds, and a 2,000-row COQL page takes longer than a 200-row one, so
//! what decides a backfill's time is how many calls run at once. The model has three parts, all knobs of
//! [`crate::Faults`] (command line, environment and `POST /__sandbox/control`):
//!
//! - `latency_ms`: the base latency of every CRM call;
//! - `latency_per_record_ms`: added per record the response carries (`data` rows, or `users`);
//! - `latency_jitter_ms`: each call's base latency varies uniformly within ± this much (never below zero),
//!   drawn from a seeded [`Rng`], so the sequence of delays is a function of the sandbox's `--seed`.
//!
//! The accounts server (`/oauth/v2/*`) has its own flat `accounts_latency_ms`.
//!
//! The model gives a call's **response time**, as a client measures Zoho's: from the request to the answer, the
//! server's own work included. The CRM guard (`server.rs`) runs the handler at once and answers at
//! `start + base + per-record part`; only when its work took longer than that (a sandbox sharing a small
//! machine's cores with the job under test) is a call slower than the model. (Until 2026-12-02 the model's
//! delays were added on top of the sandbox's work, so the sandbox's CPU time, which real Zoho's servers do not
//! take from the client's machine, counted twice against every contender.) The call holds its in-flight slot
//! until it answers: the sandbox's `max_concurrency` statistic counts a slow call for as long as it takes. A
//! fault (429, 500, dropped connection) answers after the base part. `/__sandbox/` control calls are never
//! delayed.
//!
//! Every call that reaches the accounts routes or the CRM guard's in-flight section is logged ([`CallLog`], in
//! `GET /__sandbox/stats` as `call_log`): endpoint, kind (a COQL `COUNT` is told from a page), records, the
//! latency applied and when it started and ended. The benchmark computes its latency floor from it.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::config::Faults;
use crate::rng::Rng;

/// Most entries the call log keeps; later calls are only counted (`dropped`). A bench run makes hundreds of
/// calls; the bound only keeps a sandbox that runs for days from growing without end.
pub const CALL_LOG_CAPACITY: usize = 100_000;

/// The latency knobs of one call, read from the live [`Faults`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    /// Base latency of a CRM call, in ms.
    pub base_ms: u64,
    /// Added per record in the response, in ms.
    pub per_record_ms: f64,
    /// The base varies uniformly within ± this, in ms.
    pub jitter_ms: u64,
}

impl LatencyModel {
    /// The CRM latency knobs now in force.
    pub fn of(f: &Faults) -> Self {
        LatencyModel { base_ms: f.latency_ms, per_record_ms: f.latency_per_record_ms, jitter_ms: f.latency_jitter_ms }
    }

    /// The part of a call's latency that does not depend on its response: the base, moved by the jitter. Draws
    /// from `dice` only when there is jitter, so a sandbox without jitter keeps its other random streams as they
    /// were.
    pub fn base_delay(&self, dice: &mut Rng) -> Duration {
        if self.jitter_ms == 0 {
            return Duration::from_millis(self.base_ms);
        }
        let j = i64::try_from(self.jitter_ms).unwrap_or(i64::MAX);
        let ms = i64::try_from(self.base_ms).unwrap_or(i64::MAX).saturating_add(dice.range(-j, j)).max(0);
        Duration::from_millis(ms.unsigned_abs())
    }

    /// The part that grows with the response: `per_record_ms` for each of `records`.
    pub fn records_delay(&self, records: u64) -> Duration {
        if records == 0 || self.per_record_ms <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.per_record_ms * records as f64 / 1000.0)
    }

    /// Whether the per-record part is on (the guard then counts the records of each response).
    pub fn counts_records(&self) -> bool {
        self.per_record_ms > 0.0
    }
}

/// What a logged call was, as the benchmark's floor needs to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// The accounts server (`/oauth/v2/token`, `/auth`, `/token/revoke`).
    Accounts,
    /// Metadata: fields, layouts, pipelines, modules, org.
    Metadata,
    /// The users API.
    Users,
    /// A COQL aggregate (`COUNT(...)`).
    Count,
    /// A page of records: a COQL row query, Get Records, deleted records.
    Page,
}

impl CallKind {
    /// The kind of a CRM call by its endpoint key (`coql` needs [`coql_kind`]).
    pub fn of_endpoint(key: &str) -> CallKind {
        match key {
            "users" => CallKind::Users,
            "get_records" | "deleted" | "coql" => CallKind::Page,
            _ => CallKind::Metadata,
        }
    }
}

/// A COQL request body's kind: `Count` when its `select_query` selects an aggregate, else `Page`.
pub fn coql_kind(body: &[u8]) -> CallKind {
    #[derive(Deserialize)]
    struct Body {
        select_query: Option<String>,
    }
    let query = serde_json::from_slice::<Body>(body).ok().and_then(|b| b.select_query).unwrap_or_default();
    let q = query.to_ascii_lowercase();
    let select_list = q.trim_start().strip_prefix("select").and_then(|s| s.split(" from ").next()).unwrap_or("");
    if select_list.contains("count(") || select_list.contains("count (") {
        CallKind::Count
    } else {
        CallKind::Page
    }
}

/// How many records a CRM response body carries: the length of its top-level `data` array (COQL, Get Records,
/// deleted records) or `users` array; 0 for anything else (204s, metadata, errors, bodies that are not JSON).
/// Scans the body without building it.
pub fn records_in(body: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct Counted {
        #[serde(default, deserialize_with = "seq_len")]
        data: u64,
        #[serde(default, deserialize_with = "seq_len")]
        users: u64,
    }
    serde_json::from_slice::<Counted>(body).map_or(0, |c| c.data + c.users)
}

fn seq_len<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Len;
    impl<'de> Visitor<'de> for Len {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
        fn visit_unit<E>(self) -> Result<u64, E> {
            Ok(0)
        }
    }
    d.deserialize_any(Len)
}

/// One logged call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// Endpoint key (`token`, `coql`, `fields`, `users`, `deleted`, `get_records`, ...).
    pub endpoint: &'static str,
    /// What the call was.
    pub kind: CallKind,
    /// HTTP status answered (0: the connection was dropped without a response).
    pub status: u16,
    /// Records in the response; `None` when they were not counted (no per-record latency).
    pub records: Option<u64>,
    /// Latency the model added to this call, in ms.
    pub latency_ms: f64,
    /// When the call entered the sandbox's in-flight section, in ms since the process's first logged call.
    pub start_ms: f64,
    /// When its response was ready, same clock.
    pub end_ms: f64,
}

/// The log of calls (`call_log` in `GET /__sandbox/stats`; emptied by `POST /__sandbox/reset-stats`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallLog {
    /// The calls, in the order they ended.
    pub entries: Vec<CallRecord>,
    /// Calls not kept because the log was full ([`CALL_LOG_CAPACITY`]).
    pub dropped: u64,
}

impl CallLog {
    /// Appends one call (or counts it as dropped when full).
    pub fn push(&mut self, record: CallRecord) {
        if self.entries.len() < CALL_LOG_CAPACITY {
            self.entries.push(record);
        } else {
            self.dropped += 1;
        }
    }
}

/// Milliseconds since the first call to this function in the process: the call log's clock.
pub fn ms_since_epoch(t: Instant) -> f64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    t.saturating_duration_since(epoch).as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(base_ms: u64, per_record_ms: f64, jitter_ms: u64) -> LatencyModel {
        LatencyModel { base_ms, per_record_ms, jitter_ms }
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence_of_delays_within_the_jitter() {
        let m = model(300, 0.1, 50);
        let draw = |seed| {
            let mut dice = Rng::new(seed);
            (0..200).map(|_| m.base_delay(&mut dice)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7), "a seed fixes the delays");
        assert_ne!(a, draw(8), "another seed gives other delays");
        assert!(a.iter().all(|d| (250..=350).contains(&(d.as_millis() as u64))), "{a:?}");
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 20, "the jitter varies the delay: {distinct:?}");
    }

    #[test]
    fn without_jitter_the_base_is_exact_and_no_dice_are_drawn() {
        let mut dice = Rng::new(1);
        let before = dice.clone().next_u64();
        assert_eq!(model(300, 0.0, 0).base_delay(&mut dice), Duration::from_millis(300));
        assert_eq!(dice.next_u64(), before, "the dice did not move");
    }

    #[test]
    fn jitter_larger_than_the_base_never_gives_a_negative_delay() {
        let mut dice = Rng::new(3);
        let m = model(5, 0.0, 50);
        let delays: Vec<_> = (0..500).map(|_| m.base_delay(&mut dice)).collect();
        assert!(delays.iter().all(|d| d.as_millis() <= 55));
        assert!(delays.contains(&Duration::ZERO), "clamped at zero rather than wrapped");
    }

    #[test]
    fn the_per_record_part_scales_with_the_rows_of_a_page() {
        let m = model(300, 0.1, 0);
        assert_eq!(m.records_delay(0), Duration::ZERO);
        assert_eq!(m.records_delay(200), Duration::from_millis(20));
        assert_eq!(m.records_delay(2000), Duration::from_millis(200));
        assert_eq!(m.records_delay(2000), m.records_delay(200) * 10, "ten times the rows, ten times the part");
        assert!(!model(300, 0.0, 0).counts_records());
        assert_eq!(model(300, 0.0, 0).records_delay(2000), Duration::ZERO);
    }

    #[test]
    fn records_are_counted_from_data_or_users_arrays_of_any_body() {
        let page = serde_json::json!({"data": [{"id": "1", "x": [1, 2]}, {"id": "2"}], "info": {"count": 2}});
        assert_eq!(records_in(page.to_string().as_bytes()), 2);
        assert_eq!(records_in(br#"{"users": [{"id": "1"}], "info": {}}"#), 1);
        assert_eq!(records_in(br#"{"fields": [{"api_name": "Amount"}]}"#), 0);
        assert_eq!(records_in(br#"{"data": null}"#), 0);
        assert_eq!(records_in(b""), 0, "a 204 has no body");
        assert_eq!(records_in(b"not json"), 0);
    }

    #[test]
    fn a_coql_count_is_told_from_a_page() {
        let body = |q: &str| serde_json::json!({ "select_query": q }).to_string();
        assert_eq!(coql_kind(body("select COUNT(id) from Deals where Stage in ('Won')").as_bytes()), CallKind::Count);
        assert_eq!(coql_kind(body("SELECT count(id) FROM Deals WHERE id > 0").as_bytes()), CallKind::Count);
        let page = "select id, Deal_Name from Deals where Deal_Name = 'count(me)' order by id limit 2000";
        assert_eq!(coql_kind(body(page).as_bytes()), CallKind::Page, "count( in a literal is not an aggregate");
        assert_eq!(coql_kind(b"{}"), CallKind::Page);
    }

    #[test]
    fn the_log_keeps_at_most_its_capacity_and_counts_the_rest() {
        let mut log = CallLog::default();
        let rec = CallRecord {
            endpoint: "coql",
            kind: CallKind::Page,
            status: 200,
            records: Some(1),
            latency_ms: 1.0,
            start_ms: 0.0,
            end_ms: 1.0,
        };
        for _ in 0..CALL_LOG_CAPACITY + 3 {
            log.push(rec.clone());
        }
        assert_eq!((log.entries.len(), log.dropped), (CALL_LOG_CAPACITY, 3));
    }
}
