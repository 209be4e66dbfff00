//! Which `Modified_Time` window a run covers.
//!
//! Scheduled: `[watermark − overlap, now)`, or `[now − lookback, now)` on the first run. Backfill:
//! `[--since, --until or now)`. Bounds are whole seconds (Zoho's timestamps have no fraction) and the upper
//! bound is exclusive and fixed for the whole run.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use super::SyncOptions;
use crate::deal::Window;
use crate::error::Error;
use crate::warehouse::RunKind;

/// Drops the sub-second part.
pub fn floor_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// A run's kind, from the command line alone: a backfill names `--since`.
pub fn kind(options: &SyncOptions) -> RunKind {
    match options.since {
        Some(_) => RunKind::Backfill,
        None => RunKind::Scheduled,
    }
}

/// Chooses the run's kind and window.
pub fn choose(
    options: &SyncOptions,
    watermark: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    lookback: Duration,
    overlap: Duration,
) -> Result<(RunKind, Window), Error> {
    let dur = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
    if options.since.is_none() && options.until.is_some() {
        return Err(Error::Usage("--until needs --since (a backfill names both ends, or just --since)".into()));
    }
    let (kind, start, end) = match options.since {
        Some(since) => (RunKind::Backfill, since, options.until.unwrap_or(now)),
        None => match watermark {
            Some(w) => (RunKind::Scheduled, w.checked_sub_signed(dur(overlap)).unwrap_or(w), now),
            None => (RunKind::Scheduled, now.checked_sub_signed(dur(lookback)).unwrap_or(now), now),
        },
    };
    let (start, end) = (floor_to_second(start), floor_to_second(end));
    if options.since.is_some() && options.until.is_none() && start >= now {
        return Err(Error::Usage(format!(
            "--since {} is in the future (Zoho's clock says it is {}): a backfill starts in the past",
            crate::deal::format_utc(&start),
            crate::deal::format_utc(&now)
        )));
    }
    if end > now {
        return Err(Error::Usage(format!(
            "--until {} is in the future; a window ends at the latest now",
            crate::deal::format_utc(&end)
        )));
    }
    if start >= end {
        return Err(Error::Usage(format!(
            "the window [{}, {}) is empty: --since must be before --until",
            crate::deal::format_utc(&start),
            crate::deal::format_utc(&end)
        )));
    }
    Ok((kind, Window { start, end }))
}

/// The same window with both ends floored to whole seconds.
pub fn floor_window(w: Window) -> Window {
    Window { start: floor_to_second(w.start), end: floor_to_second(w.end) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).single().expect("valid")
    }
    const DAY: Duration = Duration::from_secs(86_400);
    const QUARTER: Duration = Duration::from_secs(900);

    #[test]
    fn the_first_run_looks_back_the_lookback() {
        let (kind, w) = choose(&SyncOptions::default(), None, now(), DAY, QUARTER).expect("ok");
        assert_eq!(kind, RunKind::Scheduled);
        assert_eq!(w.start, now() - chrono::Duration::days(1));
        assert_eq!(w.end, now());
    }

    #[test]
    fn later_runs_start_at_the_watermark_minus_overlap_so_a_missed_night_is_covered() {
        let wm = now() - chrono::Duration::days(2);
        let (_, w) = choose(&SyncOptions::default(), Some(wm), now(), DAY, QUARTER).expect("ok");
        assert_eq!(w.start, wm - chrono::Duration::minutes(15));
    }

    #[test]
    fn a_backfill_uses_its_flags() {
        let since = now() - chrono::Duration::days(30);
        let opts = SyncOptions { since: Some(since), ..Default::default() };
        let (kind, w) = choose(&opts, Some(now()), now(), DAY, QUARTER).expect("ok");
        assert_eq!((kind, w.start, w.end), (RunKind::Backfill, since, now()));
    }

    #[test]
    fn empty_or_future_windows_are_usage_errors() {
        let opts =
            SyncOptions { since: Some(now()), until: Some(now() - chrono::Duration::hours(1)), ..Default::default() };
        assert!(choose(&opts, None, now(), DAY, QUARTER).is_err());
        let opts =
            SyncOptions { since: Some(now()), until: Some(now() + chrono::Duration::hours(1)), ..Default::default() };
        assert!(choose(&opts, None, now(), DAY, QUARTER).is_err());
    }

    #[test]
    fn a_since_ahead_of_zohos_clock_is_called_the_future_not_an_until_problem() {
        let opts = SyncOptions { since: Some(now() + chrono::Duration::seconds(30)), ..Default::default() };
        let e = choose(&opts, None, now(), DAY, QUARTER).expect_err("future").to_string();
        assert!(e.contains("--since") && e.contains("in the future") && !e.contains("--until"), "{e}");
    }
}
