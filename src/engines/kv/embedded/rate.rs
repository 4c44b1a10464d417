//! `rate_limit`: the generic cell rate algorithm (GCRA) over one string
//! key holding the theoretical arrival time (TAT).
//!
//! # What MUST hold
//!
//! - [`gcra`] is the arithmetic of the Redis adapter's `RATE_LIMIT` script,
//!   step for step, in integer microseconds: the same state and the same
//!   clock give the same answer on both backends.
//! - With an emission interval `T` (microseconds per request, from
//!   [`rate_interval`]) and `limit` requests, the limiter's capacity is
//!   `limit × T`; a request of cost `c` is allowed when the TAT it would
//!   leave, `max(TAT, now) + c × T`, is at most `capacity` past `now`. So
//!   a fresh key allows `limit` requests at once and then one per `T`.
//! - A refused request writes nothing; an allowed one of cost 0 writes
//!   nothing either. An allowed one stores the new TAT, expiring when the
//!   limiter is full again (rounded up to the millisecond), so an idle key
//!   vanishes.
//! - The read, the decision and the write run under the key's write lock.
//! - Time is the system clock in microseconds of Unix time, as Redis's
//!   `TIME`; a clock that steps back makes the stored TAT look further
//!   away, which only ever refuses more, never allows more.

use std::time::{Duration, SystemTime};

use super::EmbeddedKv;
use super::entry::{Entry, NO_DEADLINE};
use super::strings::{format_int, parse_redis_int};
use crate::engines::kv::command::rate_interval;
use crate::engines::kv::{RateLimitReply, Reply};
use crate::error::{Error, Result};

/// What one rate-limit decision does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decision {
    /// The answer.
    pub(super) reply: RateLimitReply,
    /// The TAT to store and how long it lives, when the decision writes.
    pub(super) store: Option<(i64, Duration)>,
}

/// One GCRA decision at `now` (microseconds of Unix time) for the stored
/// TAT `stored` (`None` when the key is missing), `limit` requests of
/// `interval` microseconds each, and a request of `cost` (at most `limit`).
pub(super) fn gcra(
    now: i64,
    stored: Option<i64>,
    interval: u64,
    limit: u32,
    cost: u32,
) -> Decision {
    // i128: a stored TAT is anything another writer left, up to i64::MAX.
    let now = i128::from(now);
    let interval = i128::from(interval);
    let capacity = interval * i128::from(limit);
    let tat = stored.map_or(now, |t| i128::from(t).max(now));
    let new_tat = tat + i128::from(cost) * interval;
    let allowed = new_tat - now <= capacity;
    let (tat, retry, store) = if allowed {
        let store = (cost > 0).then(|| {
            let ttl_micros = new_tat - now;
            let ttl_millis = ttl_micros.div_euclid(1000) + i128::from(ttl_micros % 1000 != 0);
            (
                i64::try_from(new_tat).unwrap_or(i64::MAX),
                Duration::from_millis(u64::try_from(ttl_millis).unwrap_or(u64::MAX)),
            )
        });
        (new_tat, 0, store)
    } else {
        (tat, new_tat - capacity - now, None)
    };
    let used = tat - now;
    let remaining = ((capacity - used) / interval).clamp(0, i128::from(limit));
    let micros = |n: i128| Duration::from_micros(u64::try_from(n.max(0)).unwrap_or(u64::MAX));
    Decision {
        reply: RateLimitReply {
            allowed,
            remaining: u32::try_from(remaining).unwrap_or(limit),
            retry_after: micros(retry),
            reset_after: micros(used),
        },
        store,
    }
}

/// Now, in microseconds of Unix time (0 before 1970, saturating far after).
fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl EmbeddedKv {
    pub(super) fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        cost: u32,
    ) -> Result<Reply> {
        let interval = rate_interval(limit, period)?;
        let _guard = self.write_lock(key);
        let (current, _) = self.string_for_update(key)?;
        let stored = current
            .map(|bytes| {
                parse_redis_int(&bytes)
                    .ok_or_else(|| Error::invalid("ERR value is not an integer or out of range"))
            })
            .transpose()?;
        let decision = gcra(unix_micros(), stored, interval, limit, cost);
        if let Some((tat, ttl)) = decision.store {
            let deadline = self
                .clock
                .deadline_after(self.clock.now(), ttl)
                .unwrap_or(NO_DEADLINE);
            self.store(key, Entry::string(format_int(tat), deadline));
        }
        Ok(Reply::RateLimit(decision.reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn a_fresh_key_allows_the_burst_then_one_per_interval() {
        // 5 per 10 s: one every 2 s.
        let (interval, limit) = (2 * SECOND as u64, 5);
        let now = 1_700_000_000 * SECOND;
        let mut tat = None;
        for left in (0..5).rev() {
            let d = gcra(now, tat, interval, limit, 1);
            assert!(d.reply.allowed);
            assert_eq!(d.reply.remaining, left);
            assert_eq!(d.reply.retry_after, Duration::ZERO);
            let (stored, ttl) = d.store.unwrap();
            assert_eq!(Duration::from_micros((stored - now) as u64), ttl);
            assert_eq!(d.reply.reset_after, ttl);
            tat = Some(stored);
        }
        let refused = gcra(now, tat, interval, limit, 1);
        assert!(!refused.reply.allowed);
        assert_eq!(refused.store, None, "a refusal consumes nothing");
        assert_eq!(refused.reply.remaining, 0);
        assert_eq!(refused.reply.retry_after, Duration::from_secs(2));
        assert_eq!(refused.reply.reset_after, Duration::from_secs(10));
        // 1.5 s later: still refused, half a second to go.
        let later = gcra(now + 3 * SECOND / 2, tat, interval, limit, 1);
        assert!(!later.reply.allowed);
        assert_eq!(later.reply.retry_after, Duration::from_millis(500));
        // 2 s later, one more; 10 s later, a whole burst again.
        assert!(
            gcra(now + 2 * SECOND, tat, interval, limit, 1)
                .reply
                .allowed
        );
        let full = gcra(now + 10 * SECOND, tat, interval, limit, 0);
        assert_eq!(full.reply.remaining, 5);
        assert_eq!(full.reply.reset_after, Duration::ZERO);
    }

    #[test]
    fn costs_count_several_requests_and_zero_only_reports() {
        let (interval, limit, now) = (1000, 10, 5 * SECOND);
        let d = gcra(now, None, interval, limit, 4);
        assert_eq!((d.reply.allowed, d.reply.remaining), (true, 6));
        let tat = d.store.map(|(t, _)| t);
        let report = gcra(now, tat, interval, limit, 0);
        assert_eq!((report.reply.allowed, report.reply.remaining), (true, 6));
        assert_eq!(report.store, None);
        let too_much = gcra(now, tat, interval, limit, 7);
        assert!(!too_much.reply.allowed);
        assert_eq!(too_much.reply.retry_after, Duration::from_micros(1000));
        assert_eq!(too_much.reply.remaining, 6);
    }

    #[test]
    fn the_expiry_is_rounded_up_to_the_millisecond() {
        let d = gcra(0, None, 1500, 3, 1);
        assert_eq!(d.store, Some((1500, Duration::from_millis(2))));
        let d = gcra(0, None, 2000, 3, 1);
        assert_eq!(d.store, Some((2000, Duration::from_millis(2))));
    }

    #[test]
    fn a_clock_stepping_back_only_refuses_more() {
        let (interval, limit) = (SECOND as u64, 2);
        let tat = Some(100 * SECOND + 2 * SECOND);
        let d = gcra(90 * SECOND, tat, interval, limit, 1);
        assert!(!d.reply.allowed);
        assert_eq!(d.reply.remaining, 0);
        assert_eq!(d.reply.retry_after, Duration::from_secs(11));
        // A TAT far in the future written by someone else does not overflow.
        let d = gcra(0, Some(i64::MAX), interval, limit, 1);
        assert!(!d.reply.allowed);
    }
}
