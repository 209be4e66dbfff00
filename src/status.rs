//! `status`: is the warehouse fresh? Computed from the ledger (`sync_runs`) and the quarantine alone — no Zoho
//! call, no Zoho credentials — so it can run as a monitoring probe (cron, a Kubernetes check, CI).
//!
//! [`Status::from_ledger`] is a pure function of the ledger rows, the open-quarantine count and the clock, so
//! each decision (what counts as the last success, how many failures in a row, stale or not) is unit-tested
//! here. The warehouse view `sync_status` (`sql/views/sync_status.sql`) answers the same for analysts.
//! Not here: reading the warehouse (`app.rs` does that) or printing logs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::deal::format_utc;
use crate::warehouse::{covered_until, CoveredWindow, LedgerRow, RunKind};

/// The newest succeeded run: the one whose window ends last.
#[derive(Debug, Clone, PartialEq)]
pub struct LastSuccess {
    pub run_id: String,
    pub kind: String,
    pub finished_at: Option<DateTime<Utc>>,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// How long ago the window ended: the age of the newest data the warehouse is sure to have.
    pub age: chrono::Duration,
}

/// Zoho's count of won deals in a run's window against the warehouse's, after that run's merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    pub run_id: String,
    pub zoho_won_count: u64,
    pub warehouse_won_count: u64,
}

impl Reconciliation {
    /// Zoho's count minus the warehouse's (positive: the warehouse has fewer).
    pub fn gap(&self) -> i64 {
        i64::try_from(self.zoho_won_count).unwrap_or(i64::MAX)
            - i64::try_from(self.warehouse_won_count).unwrap_or(i64::MAX)
    }
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub now: DateTime<Utc>,
    pub last_success: Option<LastSuccess>,
    /// The end of the contiguous interval covered by succeeded runs (where the next scheduled run starts).
    pub watermark: Option<DateTime<Utc>>,
    /// Failed runs that started after the newest-started succeeded run.
    pub consecutive_failures: u64,
    /// The first line of the newest failed run's error (with its run id), if any run ever failed.
    pub last_error: Option<(String, String)>,
    /// A run recorded `running` (it holds the lease, or died and its lease will expire).
    pub running: Option<String>,
    /// Rows in `quarantined_deals`.
    pub open_quarantines: u64,
    /// From the newest succeeded run that counted (reconciliation runs only when Zoho's count was asked).
    pub reconciliation: Option<Reconciliation>,
    /// `--max-age`, when given.
    pub max_age: Option<Duration>,
}

impl Status {
    /// Computes the status from the ledger (any order), the open quarantine count and the time now.
    pub fn from_ledger(
        ledger: &[LedgerRow],
        open_quarantines: u64,
        now: DateTime<Utc>,
        max_age: Option<Duration>,
    ) -> Status {
        let mut rows: Vec<&LedgerRow> = ledger.iter().collect();
        // Newest first by start; rows without a start time (never written so by this job) sort last.
        rows.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        let succeeded: Vec<&LedgerRow> = rows.iter().copied().filter(|r| r.status == "succeeded").collect();
        let last_success = succeeded
            .iter()
            .max_by(|a, b| (a.window_end, a.started_at).cmp(&(b.window_end, b.started_at)))
            .map(|r| LastSuccess {
                run_id: r.run_id.clone(),
                kind: r.kind.clone(),
                finished_at: r.finished_at,
                window_start: r.window_start,
                window_end: r.window_end,
                age: now - r.window_end,
            });
        let watermark = covered_until(
            succeeded
                .iter()
                .map(|r| CoveredWindow {
                    start: r.window_start,
                    end: r.window_end,
                    kind: if r.kind == RunKind::Backfill.as_str() { RunKind::Backfill } else { RunKind::Scheduled },
                })
                .collect(),
        );
        let consecutive_failures =
            rows.iter().take_while(|r| r.status != "succeeded").filter(|r| r.status == "failed").count() as u64;
        let last_error = rows.iter().find(|r| r.status == "failed").map(|r| {
            let line = r.error.as_deref().unwrap_or("(no error recorded)").lines().next().unwrap_or("").to_owned();
            (r.run_id.clone(), line)
        });
        let running = rows.iter().find(|r| r.status == "running").map(|r| r.run_id.clone());
        let reconciliation = succeeded.iter().find_map(|r| {
            Some(Reconciliation {
                run_id: r.run_id.clone(),
                zoho_won_count: r.zoho_won_count?,
                warehouse_won_count: r.warehouse_won_count?,
            })
        });
        Status {
            now,
            last_success,
            watermark,
            consecutive_failures,
            last_error,
            running,
            open_quarantines,
            reconciliation,
            max_age,
        }
    }

    /// `Some(true)` when `--max-age` was given and the newest succeeded window end is older than it (or there
    /// is no succeeded run at all); `None` without `--max-age`.
    pub fn stale(&self) -> Option<bool> {
        let max = chrono::Duration::from_std(self.max_age?).unwrap_or(chrono::Duration::MAX);
        Some(self.last_success.as_ref().is_none_or(|s| s.age > max))
    }

    /// The exit code: [`ExitCode::Stale`](crate::error::ExitCode::Stale) when stale, else success. Failures
    /// and quarantines alone do not fail the probe: a failed night followed by a fresh success is healthy, and
    /// a run of failures shows up as staleness once the data is older than `--max-age`.
    pub fn exit_code(&self) -> crate::error::ExitCode {
        match self.stale() {
            Some(true) => crate::error::ExitCode::Stale,
            _ => crate::error::ExitCode::Success,
        }
    }

    /// Lines for a person.
    pub fn render_text(&self) -> String {
        let mut out = Vec::new();
        match &self.last_success {
            Some(s) => out.push(format!(
                "last success: run {} ({}) finished {}; window [{}, {}) ended {} ago",
                s.run_id,
                s.kind,
                s.finished_at.map(|t| format_utc(&t)).unwrap_or_else(|| "(time unknown)".into()),
                format_utc(&s.window_start),
                format_utc(&s.window_end),
                human(s.age)
            )),
            None => out.push(
                "last success: none yet (run `zoho-deals-sync sync`; the first run covers SYNC_LOOKBACK, default 24h)"
                    .into(),
            ),
        }
        out.push(format!(
            "watermark: {}",
            self.watermark.map(|t| format_utc(&t)).unwrap_or_else(|| "none (no succeeded run)".into())
        ));
        match (&self.last_error, self.consecutive_failures) {
            (Some((run, line)), 0) => {
                out.push(format!("consecutive failures: 0 (an earlier run {run} failed: {line})"));
            }
            (Some((run, line)), n) => out.push(format!("consecutive failures: {n}; last error (run {run}): {line}")),
            (None, n) => out.push(format!("consecutive failures: {n}")),
        }
        if let Some(run) = &self.running {
            out.push(format!(
                "running: run {run} is recorded as running (it holds the lease, or died and its lease will expire)"
            ));
        }
        out.push(match self.open_quarantines {
            0 => "open quarantines: 0".into(),
            n => format!("open quarantines: {n} (see the quarantined_deals table for ids, fields and reasons)"),
        });
        out.push(match &self.reconciliation {
            Some(r) => format!(
                "last reconciliation: run {} zoho_won={} warehouse_won={} gap={}",
                r.run_id,
                r.zoho_won_count,
                r.warehouse_won_count,
                r.gap()
            ),
            None => "last reconciliation: none recorded".into(),
        });
        if let (Some(stale), Some(max)) = (self.stale(), self.max_age) {
            let max = human(chrono::Duration::from_std(max).unwrap_or(chrono::Duration::MAX));
            out.push(match (stale, &self.last_success) {
                (false, Some(s)) => {
                    format!("fresh: the newest window ended {} ago, within --max-age {max}", human(s.age))
                }
                (true, Some(s)) => format!(
                    "STALE: the newest window ended {} ago, more than --max-age {max} (exit {})",
                    human(s.age),
                    crate::error::ExitCode::Stale.code()
                ),
                (_, None) => format!(
                    "STALE: no run has succeeded yet (--max-age {max}; exit {})",
                    crate::error::ExitCode::Stale.code()
                ),
            });
        }
        out.join("\n")
    }

    /// One JSON object (stable field names; times RFC 3339 UTC; ages in whole seconds).
    pub fn to_json(&self) -> Value {
        let ts = |t: Option<DateTime<Utc>>| t.map(|t| format_utc(&t));
        json!({
            "now": format_utc(&self.now),
            "last_success": self.last_success.as_ref().map(|s| json!({
                "run_id": s.run_id,
                "kind": s.kind,
                "finished_at": ts(s.finished_at),
                "window_start": format_utc(&s.window_start),
                "window_end": format_utc(&s.window_end),
                "age_seconds": s.age.num_seconds(),
            })),
            "watermark": ts(self.watermark),
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error.as_ref().map(|(run, line)| json!({"run_id": run, "error": line})),
            "running_run_id": self.running,
            "open_quarantines": self.open_quarantines,
            "reconciliation": self.reconciliation.as_ref().map(|r| json!({
                "run_id": r.run_id,
                "zoho_won_count": r.zoho_won_count,
                "warehouse_won_count": r.warehouse_won_count,
                "gap": r.gap(),
            })),
            "max_age_seconds": self.max_age.map(|d| d.as_secs()),
            "stale": self.stale(),
            "exit_code": self.exit_code().code(),
        })
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s` (negative durations — a clock ahead of the ledger — as `0s`).
fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, mins, secs) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m {secs}s"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A configured duration as its user would write it: `24h`, `7d`, `90m`, `45s`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 && s >= 7 * 86_400 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// After a first scheduled run (no earlier success), the line that says what it covered and how to load older
/// history; `None` for any other run. `ledger` is read after the run committed.
pub fn first_run_note(ledger: &[LedgerRow], run_id: &str, lookback: Duration) -> Option<String> {
    let mut succeeded = ledger.iter().filter(|r| r.status == "succeeded");
    let only = succeeded.next()?;
    if succeeded.next().is_some() || only.run_id != run_id || only.kind != RunKind::Scheduled.as_str() {
        return None;
    }
    let lookback = human_duration(lookback);
    Some(format!(
        "first run: it covered only the last {lookback} (SYNC_LOOKBACK), window [{}, {}); to load older deals run \
         `zoho-deals-sync sync --since 2024-01-01` (any date or duration such as 90d); later runs continue from here",
        format_utc(&only.window_start),
        format_utc(&only.window_end)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid") + chrono::Duration::hours(h)
    }

    fn row(id: &str, status: &str, started: i64, window: (i64, i64)) -> LedgerRow {
        LedgerRow {
            run_id: id.into(),
            kind: "scheduled".into(),
            status: status.into(),
            window_start: t(window.0),
            window_end: t(window.1),
            deals_upserted: 0,
            error: (status == "failed").then(|| format!("{id} broke: HTTP 503\nsecond line")),
            started_at: Some(t(started)),
            finished_at: (status != "running").then(|| t(started) + chrono::Duration::minutes(2)),
            zoho_won_count: None,
            warehouse_won_count: None,
        }
    }

    const H26: Option<Duration> = Some(Duration::from_secs(26 * 3600));

    #[test]
    fn an_empty_ledger_has_no_success_and_is_stale_only_when_a_max_age_is_asked() {
        let s = Status::from_ledger(&[], 0, t(0), None);
        assert_eq!((s.last_success.clone(), s.watermark, s.consecutive_failures), (None, None, 0));
        assert_eq!(s.stale(), None);
        assert_eq!(s.exit_code(), crate::error::ExitCode::Success);
        let s = Status::from_ledger(&[], 0, t(0), H26);
        assert_eq!(s.stale(), Some(true));
        assert_eq!(s.exit_code().code(), 10);
        assert!(s.render_text().contains("no run has succeeded yet"), "{}", s.render_text());
    }

    #[test]
    fn the_last_success_is_the_newest_window_end_and_its_age_is_measured_from_it() {
        let ledger = [row("a", "succeeded", 0, (-24, 0)), row("b", "succeeded", 24, (0, 24))];
        let s = Status::from_ledger(&ledger, 0, t(30), H26);
        let last = s.last_success.clone().expect("a success");
        assert_eq!((last.run_id.as_str(), last.age), ("b", chrono::Duration::hours(6)));
        assert_eq!(s.watermark, Some(t(24)));
        assert_eq!(s.stale(), Some(false));
        assert_eq!(s.exit_code().code(), 0);
    }

    #[test]
    fn a_window_end_older_than_max_age_is_stale() {
        let ledger = [row("a", "succeeded", 0, (-24, 0))];
        let s = Status::from_ledger(&ledger, 0, t(27), H26);
        assert_eq!(s.stale(), Some(true));
        assert!(s.render_text().contains("STALE"), "{}", s.render_text());
        assert_eq!(s.to_json()["stale"], json!(true));
        assert_eq!(s.to_json()["last_success"]["age_seconds"], json!(27 * 3600));
    }

    #[test]
    fn failures_after_the_newest_success_count_in_a_row_and_the_last_error_is_its_first_line() {
        let ledger = [
            row("old-fail", "failed", -10, (-30, -10)),
            row("ok", "succeeded", 0, (-24, 0)),
            row("f1", "failed", 24, (0, 24)),
            row("f2", "failed", 48, (0, 48)),
        ];
        let s = Status::from_ledger(&ledger, 0, t(49), None);
        assert_eq!(s.consecutive_failures, 2);
        assert_eq!(s.last_error, Some(("f2".into(), "f2 broke: HTTP 503".into())));
        let text = s.render_text();
        assert!(text.contains("consecutive failures: 2") && !text.contains("second line"), "{text}");
    }

    #[test]
    fn a_success_after_failures_resets_the_count_but_keeps_the_earlier_error_visible() {
        let ledger = [row("f1", "failed", 0, (-24, 0)), row("ok", "succeeded", 24, (-24, 24))];
        let s = Status::from_ledger(&ledger, 0, t(25), None);
        assert_eq!(s.consecutive_failures, 0);
        assert!(s.render_text().contains("an earlier run f1 failed"), "{}", s.render_text());
    }

    #[test]
    fn a_backfill_far_ahead_does_not_move_the_watermark_but_is_the_newest_window_end() {
        let mut b = row("b", "succeeded", 30, (96, 120));
        b.kind = "backfill".into();
        let ledger = [row("a", "succeeded", 0, (0, 24)), b];
        let s = Status::from_ledger(&ledger, 0, t(121), None);
        assert_eq!(s.watermark, Some(t(24)));
        assert_eq!(s.last_success.expect("success").run_id, "b");
    }

    #[test]
    fn the_reconciliation_comes_from_the_newest_succeeded_run_that_counted() {
        let mut a = row("a", "succeeded", 0, (-24, 0));
        (a.zoho_won_count, a.warehouse_won_count) = (Some(10), Some(9));
        let b = row("b", "succeeded", 24, (0, 24));
        let s = Status::from_ledger(&[a, b], 3, t(25), None);
        let r = s.reconciliation.clone().expect("reconciled");
        assert_eq!((r.run_id.as_str(), r.gap()), ("a", 1));
        assert_eq!(s.open_quarantines, 3);
        let j = s.to_json();
        assert_eq!((j["reconciliation"]["gap"].clone(), j["open_quarantines"].clone()), (json!(1), json!(3)));
    }

    #[test]
    fn a_running_row_is_reported_and_does_not_count_as_a_failure() {
        let ledger = [row("ok", "succeeded", 0, (-24, 0)), row("r", "running", 24, (0, 24))];
        let s = Status::from_ledger(&ledger, 0, t(24), None);
        assert_eq!((s.running.as_deref(), s.consecutive_failures), (Some("r"), 0));
    }

    #[test]
    fn the_first_scheduled_run_gets_a_note_naming_the_lookback_and_the_backfill_command() {
        let ledger = [row("first", "succeeded", 0, (-24, 0))];
        let note = first_run_note(&ledger, "first", Duration::from_secs(86_400)).expect("a note");
        assert!(note.contains("last 24h") && note.contains("SYNC_LOOKBACK") && note.contains("sync --since"), "{note}");
        let ledger = [row("second", "succeeded", 24, (0, 24)), row("first", "succeeded", 0, (-24, 0))];
        assert_eq!(first_run_note(&ledger, "second", Duration::from_secs(86_400)), None);
    }

    #[test]
    fn ages_read_as_days_hours_minutes() {
        assert_eq!(human(chrono::Duration::seconds(12)), "12s");
        assert_eq!(human(chrono::Duration::seconds(3 * 3600 + 120)), "3h 2m");
        assert_eq!(human(chrono::Duration::hours(50)), "2d 2h");
        assert_eq!(human_duration(Duration::from_secs(86_400)), "24h");
        assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
    }
}
