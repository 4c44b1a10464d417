//! `[pipelines]`: topology names, retries, idempotency, dead letters.

use std::collections::BTreeMap;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// The pipelines' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelinesConfig {
    /// Prefix of every exchange and queue name (`strata.events`,
    /// `strata.onboarding`, ...), so several deployments or test runs can
    /// share one broker.
    pub prefix: String,
    /// `x-max-priority` of every work queue: tasks carry a priority from 0
    /// (normal) to this.
    #[serde(deserialize_with = "crate::config::lenient::u8")]
    pub max_priority: u8,
    /// Payloads larger than this are compressed (zstd, `content-encoding:
    /// zstd`).
    pub compress_above: ByteSize,
    /// How long a processed message id is remembered in the key-value
    /// engine, so that a duplicate delivery is acknowledged and skipped.
    /// `0s` turns the check off.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Deliveries after which a message that never got an answer from its
    /// handler (the handler panicked, or the worker died holding it) is
    /// dead-lettered as poison instead of delivered again.
    #[serde(deserialize_with = "crate::config::lenient::u32")]
    pub max_deliveries: u32,
    /// Messages a worker handles at once per queue (also its prefetch).
    #[serde(deserialize_with = "crate::config::lenient::u16")]
    pub concurrency: u16,
    /// A handler that runs longer than this is treated as failed and retried.
    #[serde(with = "humantime_serde")]
    pub handler_timeout: Duration,
    /// Dead letters older than this are deleted from the document engine.
    #[serde(with = "humantime_serde")]
    pub dead_letter_retention: Duration,
    /// How long a stopping worker waits for the messages it is handling.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Messages one publish batch carries at most (confirms in flight).
    #[serde(deserialize_with = "crate::config::lenient::usize")]
    pub publish_batch: usize,
    /// Publish batches in flight at once.
    #[serde(deserialize_with = "crate::config::lenient::usize")]
    pub publish_in_flight: usize,
    /// The retry policy of every handler: exponential backoff with full
    /// jitter; `max_attempts` counts the first one.
    pub retry: RetryPolicy,
    /// Per-queue changes to `retry`, by queue name (`[pipelines.handlers.onboarding]`).
    pub handlers: BTreeMap<String, HandlerRetry>,
}

/// A queue's changes to the default retry policy; what is absent is the
/// default's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandlerRetry {
    /// The cap of the first wait.
    #[serde(with = "humantime_serde::option")]
    pub base: Option<Duration>,
    /// Growth of the cap per attempt.
    pub factor: Option<f64>,
    /// The largest wait.
    #[serde(with = "humantime_serde::option")]
    pub max_delay: Option<Duration>,
    /// Attempts in all, the first included.
    pub max_attempts: Option<u32>,
}

/// The shortest delay the retry tiers distinguish.
pub const TIER_FLOOR: Duration = Duration::from_millis(100);

impl Default for PipelinesConfig {
    fn default() -> Self {
        PipelinesConfig {
            prefix: "strata".into(),
            max_priority: 9,
            compress_above: ByteSize::kib(16),
            dedupe_window: Duration::from_secs(24 * 3600),
            max_deliveries: 5,
            concurrency: 16,
            handler_timeout: Duration::from_secs(60),
            dead_letter_retention: Duration::from_secs(14 * 24 * 3600),
            shutdown_grace: Duration::from_secs(30),
            publish_batch: 256,
            publish_in_flight: 4,
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                factor: 2.0,
                max_delay: Duration::from_secs(60),
                max_attempts: 5,
                max_elapsed: Duration::from_secs(24 * 3600),
            },
            handlers: BTreeMap::new(),
        }
    }
}

impl PipelinesConfig {
    /// The retry policy of `queue`: the default with the queue's changes.
    pub fn retry_for(&self, queue: &str) -> RetryPolicy {
        let mut policy = self.retry;
        if let Some(changes) = self.handlers.get(queue) {
            policy.base = changes.base.unwrap_or(policy.base);
            policy.factor = changes.factor.unwrap_or(policy.factor);
            policy.max_delay = changes.max_delay.unwrap_or(policy.max_delay);
            policy.max_attempts = changes.max_attempts.unwrap_or(policy.max_attempts);
        }
        policy
    }

    /// Checks the values a worker cannot run with, naming the key.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, why: &str| {
            Err(Error::new(
                crate::error::ErrorKind::Config,
                format!("pipelines.{key}: {why}"),
            ))
        };
        if self.prefix.is_empty()
            || !self
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return bad(
                "prefix",
                "must be non-empty letters, digits, `-`, `_` or `.`",
            );
        }
        if self.max_priority == 0 {
            return bad("max_priority", "must be at least 1");
        }
        if self.max_deliveries == 0 {
            return bad("max_deliveries", "must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("concurrency", "must be at least 1");
        }
        if self.publish_batch == 0 || self.publish_in_flight == 0 {
            return bad(
                "publish_batch",
                "publish_batch and publish_in_flight must be at least 1",
            );
        }
        if self.handler_timeout.is_zero() {
            return bad("handler_timeout", "must be more than 0s");
        }
        for (name, policy) in std::iter::once(("retry".to_owned(), self.retry)).chain(
            self.handlers
                .keys()
                .map(|q| (format!("handlers.{q}"), self.retry_for(q))),
        ) {
            if policy.max_attempts == 0 {
                return bad(&format!("{name}.max_attempts"), "must be at least 1");
            }
            if !(policy.factor >= 1.0 && policy.factor.is_finite()) {
                return bad(&format!("{name}.factor"), "must be a number of at least 1");
            }
            if policy.max_delay < policy.base {
                return bad(&format!("{name}.max_delay"), "must be at least `base`");
            }
            if policy.max_delay > Duration::from_secs(24 * 3600) {
                return bad(&format!("{name}.max_delay"), "must be at most 24h");
            }
        }
        Ok(())
    }

    /// The number of delay tiers a queue with `policy` needs: tier `k`
    /// holds waits in `[TIER_FLOOR·2^k, TIER_FLOOR·2^(k+1))` (tier 0 from 0).
    pub fn tiers(policy: &RetryPolicy) -> u32 {
        let mut tiers = 1;
        while TIER_FLOOR * 2u32.saturating_pow(tiers) <= policy.max_delay && tiers < 31 {
            tiers += 1;
        }
        tiers
    }

    /// The tier of a wait of `delay` (with `tiers` tiers).
    pub fn tier_of(delay: Duration, tiers: u32) -> u32 {
        let mut tier = 0;
        while tier + 1 < tiers && delay >= TIER_FLOOR * 2u32.pow(tier + 1) {
            tier += 1;
        }
        tier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_cover_the_largest_delay_and_bound_each_wait_by_twice_itself() {
        let policy = PipelinesConfig::default().retry;
        let tiers = PipelinesConfig::tiers(&policy);
        assert_eq!(tiers, 10, "100ms·2^9 = 51.2s ≤ 60s < 102.4s");
        assert_eq!(PipelinesConfig::tier_of(Duration::ZERO, tiers), 0);
        assert_eq!(
            PipelinesConfig::tier_of(Duration::from_millis(199), tiers),
            0
        );
        assert_eq!(
            PipelinesConfig::tier_of(Duration::from_millis(200), tiers),
            1
        );
        assert_eq!(PipelinesConfig::tier_of(Duration::from_secs(60), tiers), 9);
        assert_eq!(PipelinesConfig::tier_of(Duration::from_secs(600), tiers), 9);
    }

    #[test]
    fn a_queue_changes_only_what_it_names() {
        let mut config = PipelinesConfig::default();
        config.handlers.insert(
            "onboarding".into(),
            HandlerRetry {
                max_attempts: Some(2),
                ..Default::default()
            },
        );
        let policy = config.retry_for("onboarding");
        assert_eq!(policy.max_attempts, 2);
        assert_eq!(policy.base, config.retry.base);
        assert_eq!(config.retry_for("other"), config.retry);
        config.check().unwrap();
        config.handlers.get_mut("onboarding").unwrap().factor = Some(0.5);
        let err = config.check().unwrap_err();
        assert!(
            err.message().contains("handlers.onboarding.factor"),
            "{err}"
        );
    }
}
