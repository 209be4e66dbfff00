//! The one retry helper: exponential backoff with full jitter, a cap, a total time budget, and `Retry-After`
//! honoured when the server sends one. It only does the mechanics; each caller's error type says what is
//! retryable (see [`Retryable`]).

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use tokio::time::Instant;

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The first backoff before jitter.
    pub min_delay: Duration,
    /// No single wait is longer than this (a `Retry-After` above it is capped too).
    pub max_delay: Duration,
    /// Retries at most (not counting the first attempt).
    pub max_retries: usize,
    /// No retry starts after this much time since the first attempt.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    /// Sized for a nightly job against Zoho: Zoho sends no `Retry-After` on 429 and its concurrency limits clear
    /// within seconds, so 0.5 s doubling to a 30 s cap, within 5 minutes, rides out a bad minute without
    /// hammering.
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retries: 12,
            budget: Duration::from_secs(300),
        }
    }
}

/// What the retry helper asks of an error.
pub trait Retryable {
    /// Whether trying again could help (throttling, 5xx, timeouts, dropped connections).
    fn is_retryable(&self) -> bool;
    /// The server's `Retry-After`, when it sent one.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the policy is exhausted; then returns the
/// last error. `on_retry` is told about each retry (for logs and counters).
pub async fn retry<T, E, F, Fut>(policy: RetryPolicy, op: F, mut on_retry: impl FnMut(&E, Duration)) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.min_delay)
        .with_max_delay(policy.max_delay)
        .with_max_times(policy.max_retries);
    op.retry(backoff)
        .when(|e: &E| e.is_retryable())
        .adjust(move |e: &E, next: Option<Duration>| {
            // `next` is None once max_retries is reached: stop then, whatever the server says.
            let ceiling = next?;
            // Full jitter (a uniform wait in [0, ceiling]) spreads retries of parallel tasks apart; a server's
            // Retry-After overrides it, capped so that one odd header cannot stall the run.
            let wait = match e.retry_after() {
                Some(after) => after.min(policy.max_delay),
                None => ceiling.mul_f64(fastrand::f64()),
            };
            (started.elapsed() + wait <= policy.budget).then_some(wait)
        })
        .notify(|e: &E, wait: Duration| on_retry(e, wait))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Fault {
        retryable: bool,
        after: Option<Duration>,
    }

    impl Retryable for Fault {
        fn is_retryable(&self) -> bool {
            self.retryable
        }
        fn retry_after(&self) -> Option<Duration> {
            self.after
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_retries: 20,
            budget: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicUsize::new(0);
        let out = retry(
            policy(),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(Fault { retryable: true, after: None })
                } else {
                    Ok(n)
                }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(out.expect("succeeds"), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let calls = AtomicUsize::new(0);
        let out: Result<(), Fault> = retry(
            policy(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Fault { retryable: false, after: None })
            },
            |_, _| {},
        )
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_grow_exponentially_with_full_jitter_and_respect_the_cap() {
        let mut waits = Vec::new();
        let _: Result<(), Fault> = retry(
            RetryPolicy { budget: Duration::from_secs(3600), max_retries: 8, ..policy() },
            || async { Err(Fault { retryable: true, after: None }) },
            |_, w| waits.push(w),
        )
        .await;
        assert_eq!(waits.len(), 8);
        // Full jitter: each wait is within [0, min(1s * 2^i, 8s)].
        for (i, w) in waits.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << i.min(3));
            assert!(*w <= ceiling, "retry {i} waited {w:?} > {ceiling:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_capped() {
        let mut waits = Vec::new();
        let t0 = Instant::now();
        let _: Result<(), Fault> = retry(
            RetryPolicy { max_retries: 2, ..policy() },
            || async { Err(Fault { retryable: true, after: Some(Duration::from_secs(5)) }) },
            |_, w| waits.push(w),
        )
        .await;
        assert_eq!(waits, vec![Duration::from_secs(5), Duration::from_secs(5)]);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));

        let mut capped = Vec::new();
        let _: Result<(), Fault> = retry(
            RetryPolicy { max_retries: 1, ..policy() },
            || async { Err(Fault { retryable: true, after: Some(Duration::from_secs(600)) }) },
            |_, w| capped.push(w),
        )
        .await;
        assert_eq!(capped, vec![Duration::from_secs(8)]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_after_the_time_budget() {
        let calls = AtomicUsize::new(0);
        let t0 = Instant::now();
        let _: Result<(), Fault> = retry(
            RetryPolicy { budget: Duration::from_secs(12), max_retries: 100, ..policy() },
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Fault { retryable: true, after: Some(Duration::from_secs(5)) })
            },
            |_, _| {},
        )
        .await;
        // Waits of 5 s: after 5 and 10 s a retry fits in 12 s; a third (15 s) does not.
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
    }
}
