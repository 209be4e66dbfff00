//! The progress bar a person sees on a terminal during a run: deals fetched of the total Zoho counted, pages,
//! credits, rate and ETA. Drawn on stderr, redrawn in place; never drawn in JSON mode or off a terminal
//! (`app.rs` decides), so schedulers' logs stay clean.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::zoho::client::Usage;

/// Redraws per second: smooth enough for a person, cheap for the process.
const TICK: Duration = Duration::from_millis(250);

/// Counters shared by the fetchers and the ticker.
#[derive(Debug, Default)]
pub struct Progress {
    fetched: AtomicU64,
    pages: AtomicU64,
    total: AtomicU64,
}

impl Progress {
    /// Adds what Zoho counted for one query (the ETA's denominator).
    pub fn add_expected(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one fetched page of `records` deals.
    pub fn page(&self, records: usize) {
        self.pages.fetch_add(1, Ordering::Relaxed);
        self.fetched.fetch_add(records as u64, Ordering::Relaxed);
    }
}

/// One frame of the bar.
pub fn render(fetched: u64, total: u64, pages: u64, credits: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 24;
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = fetched as f64 / secs;
    let (bar, eta) = if let Some(done) = (fetched.min(total) * WIDTH).checked_div(total) {
        let done = done as usize;
        let left = total.saturating_sub(fetched) as f64;
        let eta = if rate > 0.0 { format!(" ETA {:.0}s", left / rate) } else { String::new() };
        (format!("[{}{}] ", "#".repeat(done), ".".repeat(WIDTH as usize - done)), eta)
    } else {
        (String::new(), String::new())
    };
    let of = if total > 0 { format!("/{total}") } else { String::new() };
    format!("{bar}{fetched}{of} deals, {pages} pages, {credits} credits, {rate:.0} deals/s{eta}")
}

/// Draws the bar every tick until aborted; the caller clears the line when the run ends.
pub fn spawn(progress: Arc<Progress>, usage: Arc<Usage>) -> tokio::task::JoinHandle<()> {
    let started = Instant::now();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            let frame = render(
                progress.fetched.load(Ordering::Relaxed),
                progress.total.load(Ordering::Relaxed),
                progress.pages.load(Ordering::Relaxed),
                usage.credits(),
                started.elapsed(),
            );
            let mut err = std::io::stderr().lock();
            // \r and "erase to end of line": redraw in place.
            let _ = write!(err, "\r{frame}\x1b[K");
            let _ = err.flush();
        }
    })
}

/// Erases the bar's line.
pub fn clear() {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[K");
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_shows_counts_rate_and_eta_when_the_total_is_known() {
        let f = render(500, 1000, 3, 9, Duration::from_secs(5));
        assert_eq!(f, "[############............] 500/1000 deals, 3 pages, 9 credits, 100 deals/s ETA 5s");
    }

    #[test]
    fn without_a_total_there_is_no_bar_and_no_eta() {
        assert_eq!(render(10, 0, 1, 3, Duration::from_secs(1)), "10 deals, 1 pages, 3 credits, 10 deals/s");
    }
}
