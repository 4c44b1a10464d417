//! [`RetryPolicy`]: when and how long to wait before trying a failed
//! operation again. One policy type serves every layer: connecting to an
//! engine, the retry layer around an engine, saga steps and, later,
//! pipeline tasks.
//!
//! # What it does
//!
//! - Only errors that say a retry may help are retried
//!   ([`Error::is_retryable`]: `Unavailable`, `Timeout`); every other error
//!   is returned at once.
//! - The wait before retry `n` (1-based) is drawn uniformly from
//!   `[0, min(max_delay, base × factor^(n-1))]`: exponential backoff with
//!   *full jitter*, which spreads the retries of many clients that failed
//!   together instead of sending them back in synchronised waves.
//! - An error that carries [`Error::retry_after`] (an open circuit, a rate
//!   limit) is waited out at least that long.
//! - Retrying stops after `max_attempts` attempts in all, or before a wait
//!   that would end past `max_elapsed` since the first attempt; the last
//!   error is returned, naming how many attempts were made.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Exponential backoff with full jitter, bounded by attempts and by time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// The cap of the first wait.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// How much the cap grows per attempt (at least 1).
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub factor: f64,
    /// The largest cap of one wait.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Attempts in all, the first included (at least 1).
    #[serde(deserialize_with = "crate::config::lenient::u32")]
    pub max_attempts: u32,
    /// No retry starts later than this after the first attempt.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 50 ms doubling up to 2 s, at most 5 attempts within 10 s.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(50),
            factor: 2.0,
            max_delay: Duration::from_secs(2),
            max_attempts: 5,
            max_elapsed: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn never() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// Retries for as long as `max_elapsed` allows, however many attempts
    /// that takes (connecting to a server that is starting).
    pub fn within(max_elapsed: Duration) -> Self {
        RetryPolicy {
            max_attempts: u32::MAX,
            max_elapsed,
            ..Default::default()
        }
    }

    /// Sets the first cap and the largest one.
    pub fn with_delays(mut self, base: Duration, max_delay: Duration) -> Self {
        self.base = base;
        self.max_delay = max_delay;
        self
    }

    /// Sets the number of attempts in all.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the time after which no retry starts.
    pub fn with_max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.max_elapsed = max_elapsed;
        self
    }

    /// The cap of the wait before retry `retry` (1-based):
    /// `min(max_delay, base × factor^(retry-1))`.
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = self.factor.max(1.0);
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = self.base.as_secs_f64() * factor.powi(exponent);
        if grown.is_finite() && grown < self.max_delay.as_secs_f64() {
            Duration::from_secs_f64(grown)
        } else {
            self.max_delay
        }
    }

    /// A wait before retry `retry`, drawn uniformly from `[0, cap(retry)]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.cap(retry);
        if cap.is_zero() {
            return cap;
        }
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }

    /// Runs `attempt` (given the 1-based attempt number) until it succeeds,
    /// fails with an error a retry cannot help, or the policy gives up.
    /// Waits run on tokio's clock, so tests can pause it.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut number = 1;
        loop {
            let error = match attempt(number).await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let Some(wait) = self.next_wait(&error, number, started.elapsed()) else {
                return Err(if number > 1 {
                    annotate(error, number)
                } else {
                    error
                });
            };
            tracing::debug!("attempt {number} failed, retrying in {wait:?}: {error}");
            tokio::time::sleep(wait).await;
            number = number.saturating_add(1);
        }
    }

    /// The wait before the next attempt after `error` ended attempt
    /// `attempts`, `elapsed` after the first began; `None` to give up.
    pub fn next_wait(&self, error: &Error, attempts: u32, elapsed: Duration) -> Option<Duration> {
        if !error.is_retryable() || attempts >= self.max_attempts.max(1) {
            return None;
        }
        let mut wait = self.delay(attempts);
        if let Some(asked) = error.retry_after() {
            wait = wait.max(asked);
        }
        (elapsed + wait <= self.max_elapsed).then_some(wait)
    }
}

/// The last error, saying how many attempts it took.
fn annotate(error: Error, attempts: u32) -> Error {
    let message = format!("{} (after {attempts} attempts)", error.message());
    let mut out = Error::new(error.kind(), message);
    for op in error.operations() {
        out = out.with_operation(op);
    }
    if let Some(target) = error.target() {
        out = out.with_target(target.to_owned());
    }
    if let Some(field) = error.field() {
        out = out.with_field(field.to_owned());
    }
    if let Some(wait) = error.retry_after() {
        out = out.with_retry_after(wait);
    }
    out.with_source(error)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::ErrorKind;

    fn unavailable() -> Error {
        Error::new(ErrorKind::Unavailable, "refused").with_operation("ping")
    }

    #[test]
    fn caps_grow_exponentially_up_to_the_largest_wait() {
        let policy = RetryPolicy::default()
            .with_delays(Duration::from_millis(10), Duration::from_millis(100));
        let caps: Vec<u128> = (1..=6).map(|n| policy.cap(n).as_millis()).collect();
        assert_eq!(caps, [10, 20, 40, 80, 100, 100]);
        // Far beyond any float: still the cap, never a panic.
        assert_eq!(policy.cap(u32::MAX), Duration::from_millis(100));
    }

    #[test]
    fn waits_are_full_jitter_within_the_cap() {
        let policy =
            RetryPolicy::default().with_delays(Duration::from_millis(100), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..2000).map(|_| policy.delay(1)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(100)));
        // Uniform over [0, cap]: some waits fall in each tenth of it.
        for tenth in 0..10u64 {
            let low = Duration::from_millis(tenth * 10);
            let high = low + Duration::from_millis(10);
            assert!(
                waits.iter().any(|w| *w >= low && *w < high),
                "no wait in [{low:?}, {high:?})"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let value = policy
            .run(|n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { if n < 3 { Err(unavailable()) } else { Ok(n) } }
            })
            .await
            .expect("third attempt succeeds");
        assert_eq!(value, 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let calls = AtomicU32::new(0);
        let error = RetryPolicy::default()
            .run(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(Error::conflict("taken")) }
            })
            .await
            .expect_err("a conflict is final");
        assert_eq!(error.kind(), ErrorKind::Conflict);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_attempts_naming_them() {
        let calls = AtomicU32::new(0);
        let error = RetryPolicy::default()
            .with_max_attempts(4)
            .run(|_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(unavailable()) }
            })
            .await
            .expect_err("always unavailable");
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert_eq!(error.operation(), Some("ping"));
        assert!(error.message().contains("after 4 attempts"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_before_a_wait_past_the_elapsed_bound() {
        let started = Instant::now();
        let policy = RetryPolicy::within(Duration::from_secs(1))
            .with_delays(Duration::from_millis(100), Duration::from_millis(400));
        let error = policy
            .run(|_| async { Err::<(), _>(unavailable()) })
            .await
            .expect_err("always unavailable");
        assert!(started.elapsed() <= Duration::from_secs(1), "{error}");
        assert_eq!(error.kind(), ErrorKind::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_waited_out() {
        let started = Instant::now();
        let policy =
            RetryPolicy::default().with_delays(Duration::from_millis(1), Duration::from_millis(1));
        let calls = AtomicU32::new(0);
        policy
            .run(|n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n == 1 {
                        Err(unavailable().with_retry_after(Duration::from_millis(500)))
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .expect("second attempt succeeds");
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
