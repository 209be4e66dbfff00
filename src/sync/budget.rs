//! Fitting a run to `--max-credits`.
//!
//! A run that cannot afford its whole window covers the longest prefix `[start, T)` that the budget pays for,
//! commits it like any other run (so a scheduled run's watermark moves to `T`), and says how to go on: the next
//! scheduled run continues from `T`; a backfill prints the `--since T --until …` that finishes it. A long backlog
//! thus catches up over several budgeted runs, each of which leaves the warehouse consistent.
//!
//! The estimate is an upper bound as long as nothing is retried: a window's end is fixed before it is counted and
//! an edited deal leaves the window (its `Modified_Time` moves past the end), so counts can only shrink while the
//! run pages. Retries of 429s, 5xx and dropped connections also count against the budget; if they exhaust it
//! mid-run, the client stops before the call that would pass it and the run merges what it fetched and is
//! recorded failed (see `sync::execute`).

use chrono::{DateTime, Utc};

use crate::deal::Window;
use crate::error::Error;
use crate::zoho::client::{coql_credits, ZohoClient};
use crate::zoho::deals::{self, StageFilter};

/// At most this many probes (one COUNT, 1 credit, per pass) when looking for the prefix the budget pays for: the
/// prefix's end is then within 1/256 of the window's length of the best one.
const MAX_PROBES: u32 = 8;

/// Probing stops when the candidate ends are this close (seconds).
const MIN_SPAN_SECS: i64 = 60;

/// Credits that paging over `expected` deals can take at most (its COUNT not included): per slice, one page per
/// full page of rows plus the last, not-full one (see `deals::plan_pages` and `deals::page_deals`).
pub fn pass_credits(expected: u64, concurrency: usize) -> u64 {
    let (slices, page_size) = deals::plan_pages(expected, concurrency);
    (expected / u64::from(page_size) + slices as u64) * coql_credits(page_size)
}

/// Credits the rest of a run can take once its metadata, deletions and counts are read: the won pass, the
/// not-won pass (`None` when it is skipped), the reconciliation count, and the users call that gives the owners'
/// full names (made only when there are won deals to store).
pub fn run_credits(counts: Counts, concurrency: usize) -> u64 {
    pass_credits(counts.won, concurrency)
        + counts.not_won.map_or(0, |n| pass_credits(n, concurrency))
        + 1
        + u64::from(counts.won > 0)
}

/// Zoho's counts for a window: won deals, and not-won deals when the run reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub won: u64,
    pub not_won: Option<u64>,
}

impl Counts {
    /// Counts the window (one credit per pass).
    pub async fn of(zoho: &ZohoClient, stages: &[String], window: Window, flag_unwon: bool) -> Result<Self, Error> {
        // Both counts at once: neither waits for the other.
        let not_won = async {
            match flag_unwon {
                true => deals::count_matching(zoho, StageFilter::NotWon, stages, window).await.map(Some),
                false => Ok(None),
            }
        };
        let (won, not_won) = tokio::join!(deals::count_matching(zoho, StageFilter::Won, stages, window), not_won);
        Ok(Counts { won: won?, not_won: not_won? })
    }
}

/// What the budget allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fitted {
    /// The window the run will cover: the requested one, or a prefix of it.
    pub window: Window,
    /// Zoho's counts for that window (the passes need not count again).
    pub counts: Counts,
    /// The estimate for that window (credits beyond those already spent).
    pub estimated: u64,
    /// The requested window's end, when the run covers only a prefix.
    pub cut_from: Option<DateTime<Utc>>,
}

/// What the budget stop told the user to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStop {
    pub limit: u64,
    /// Where the requested window ended.
    pub requested_end: DateTime<Utc>,
}

/// Finds the longest prefix of `window` whose run fits in what is left of `limit`. `flag_unwon` says whether the
/// run will make the not-won pass. `progress_after`: a prefix must end after this to count as progress (a
/// scheduled run's watermark: its window starts an overlap before it, and a prefix ending inside the overlap
/// would not move the watermark, so the next run would redo it forever). Costs one COUNT per pass for the whole window (which the passes then reuse),
/// and as many per probe when it does not fit; a probe is made only while the best prefix found so far stays
/// affordable after it.
pub async fn fit(
    zoho: &ZohoClient,
    stages: &[String],
    window: Window,
    flag_unwon: bool,
    concurrency: usize,
    limit: u64,
    progress_after: Option<DateTime<Utc>>,
) -> Result<Fitted, Error> {
    let spent = || zoho.usage().credits();
    let probe_cost: u64 = if flag_unwon { 2 } else { 1 };

    let whole = Counts::of(zoho, stages, window, flag_unwon).await?;
    let whole_need = run_credits(whole, concurrency);
    if spent() + whole_need <= limit {
        return Ok(Fitted { window, counts: whole, estimated: whole_need, cut_from: None });
    }
    // Bisect on the prefix's end: `lo` fits or is no progress (where it starts), `hi` does not fit.
    let floor = progress_after.map_or(window.start, |w| w.clamp(window.start, window.end));
    let (mut lo, mut hi) = (floor, window.end);
    let mut best: Option<(Counts, u64)> = None;
    let mut hi_need = whole_need;
    let empty_need = run_credits(Counts { won: 0, not_won: flag_unwon.then_some(0) }, concurrency);
    for _ in 0..MAX_PROBES {
        let span = (hi - lo).num_seconds();
        let keep = best.map_or(empty_need, |(_, n)| n);
        if span < MIN_SPAN_SECS || spent() + probe_cost + keep > limit {
            break;
        }
        let mid = lo + chrono::Duration::seconds(span / 2);
        let counts = Counts::of(zoho, stages, Window { start: window.start, end: mid }, flag_unwon).await?;
        let need = run_credits(counts, concurrency);
        if spent() + need <= limit {
            lo = mid;
            best = Some((counts, need));
        } else {
            hi = mid;
            hi_need = need;
        }
    }
    match best {
        Some((counts, estimated)) => Ok(Fitted {
            window: Window { start: window.start, end: lo },
            counts,
            estimated,
            cut_from: Some(window.end),
        }),
        None => Err(Error::CreditBudget(format!(
            "--max-credits {limit} is too small to make progress: {} credits went on metadata, deletions and \
             counting, and the window up to {} ({} from its start at {}) alone needs about {hi_need} more; raise \
             --max-credits (SYNC_MAX_CREDITS), or backfill a shorter window with --since/--until",
            spent(),
            crate::deal::format_utc(&hi),
            humantime_secs((hi - window.start).num_seconds()),
            crate::deal::format_utc(&window.start),
        ))),
    }
}

/// `90061` → `1d 1h 1m 1s`, for messages.
fn humantime_secs(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, u)| format!("{v}{u}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages `page_deals` requests for a slice of `rows`: one per full page, plus the last, not-full one.
    fn pages(rows: u64, page_size: u32) -> u64 {
        rows / u64::from(page_size) + 1
    }

    #[test]
    fn a_pass_estimate_bounds_every_way_the_rows_can_fall_into_slices() {
        let mut rng = fastrand::Rng::with_seed(7);
        for concurrency in [1, 2, 4, 10] {
            for expected in [0, 1, 199, 200, 201, 999, 1000, 1001, 1999, 2000, 2001, 3999, 4000, 4001, 20_000, 99_999] {
                let (slices, page_size) = deals::plan_pages(expected, concurrency);
                let bound = pass_credits(expected, concurrency);
                for _ in 0..200 {
                    // Time slices split the rows unevenly: deal each row to a random slice, some slices favoured.
                    let weights: Vec<u64> = (0..slices).map(|_| rng.u64(0..=3)).collect();
                    let total: u64 = weights.iter().sum::<u64>().max(1);
                    let mut rows: Vec<u64> = weights.iter().map(|w| expected * w / total).collect();
                    let placed: u64 = rows.iter().sum();
                    rows[rng.usize(0..slices)] += expected - placed;
                    let cost = rows.iter().map(|r| pages(*r, page_size)).sum::<u64>() * coql_credits(page_size);
                    assert!(cost <= bound, "{expected} rows in {rows:?}: {cost} credits > estimate {bound}");
                }
            }
        }
    }

    #[test]
    fn the_estimate_stays_near_the_issue_bound() {
        // The benchmark's bound for the won pass: ceil(N/2000)*3 + a small constant.
        for n in [10_000u64, 100_000, 1_000_000] {
            let bound = n.div_ceil(2000) * 3;
            let est = pass_credits(n, 4);
            assert!(est <= bound + 16, "{n}: {est} vs {bound}");
        }
    }

    #[test]
    fn a_run_adds_the_not_won_pass_only_when_it_is_made() {
        assert_eq!(
            run_credits(Counts { won: 0, not_won: None }, 4),
            pass_credits(0, 4) + 1,
            "no won deal: no users call"
        );
        assert_eq!(
            run_credits(Counts { won: 500, not_won: Some(3000) }, 4),
            pass_credits(500, 4) + pass_credits(3000, 4) + 1 + 1
        );
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(humantime_secs(0), "0s");
        assert_eq!(humantime_secs(90_061), "1d 1h 1m 1s");
        assert_eq!(humantime_secs(7200), "2h");
    }
}
