//! String and key commands: `GET`, `SET` (with `GET`), `GETDEL`, `GETEX`,
//! `MGET`, `MSET`, `MSETNX`, `APPEND`, `STRLEN`, `DEL`, `EXISTS`, `PEXPIRE`,
//! `PTTL`, `PERSIST`, `TYPE`, `INCRBY`, `INCRBYFLOAT`, and the locks:
//! `lock_acquire` (a lock and its fence counter), `lock_extend` and the
//! compare-and-delete of a lock release.
//!
//! # What MUST hold
//!
//! - Integers are parsed as Redis's `string2ll` does: optional `-`, no `+`,
//!   no leading zeros, no spaces, 64-bit range. Anything else is "not an
//!   integer" and the value is left unchanged.
//! - `INCRBY`/`INCRBYFLOAT`/`APPEND` keep the key's expiry; `SET` and
//!   `MSET`/`MSETNX` clear it unless `KEEPTTL`.
//! - `INCRBYFLOAT` computes in `f64` and stores the shortest decimal that
//!   reads back as the result, without exponent (Redis's human format).
//!   Redis computes in `long double`, so a result may differ from Redis in
//!   the last digits (`0.1 + 0.2` is `0.30000000000000004` here, `0.3`
//!   there).
//! - Checks come in Redis's order, so the same bad command gets the same
//!   error: `SET` refuses a bad expiry before looking at the key, then
//!   (with `GET`) a non-string; `GETEX` answers nil for a missing key and
//!   WRONGTYPE for a non-string before it judges the expiry; `PEXPIRE`
//!   refuses bad flags, then an unrepresentable deadline, and only then
//!   looks the key up.
//! - `PEXPIRE` `GT`/`LT` compare deadlines in milliseconds, a key without
//!   expiry counting as infinite (`GT` never applies, `LT` always does); an
//!   expiry of zero that passes the conditions deletes the key and answers
//!   `true`.
//! - `MGET` answers nil for a key of another type (Redis does, no
//!   WRONGTYPE); `compare_and_delete` on a non-string fails with WRONGTYPE
//!   (as Redis's `GET` inside the release script does).
//! - `lock_acquire` holds the write locks of the lock and of the counter
//!   (like `MSETNX`), so no writer sees one written without the other; it
//!   checks in the Redis script's order (the expiry, then whether the lock
//!   is held, then the counter) and fails before writing anything.
//! - `MSET` and multi-key `DEL` take one key at a time: each key's write is
//!   atomic, the command as a whole is not (Redis's is); a concurrent reader
//!   may see some keys written and not others. `MSETNX` holds all its keys'
//!   write locks, so it is all or nothing with respect to writers; a reader
//!   may still see it half done.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::EmbeddedKv;
use super::entry::{Entry, NO_DEADLINE, Value};
use crate::engines::kv::{ExpireOptions, GetExpiry, KeyType, Reply, SetCondition, SetOptions, Ttl};
use crate::error::{Error, Result};

/// Redis's `string2ll`: the strict base-10 form Redis itself writes.
pub(super) fn parse_redis_int(bytes: &[u8]) -> Option<i64> {
    if bytes == b"0" {
        return Some(0);
    }
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if bytes.len() > 20
        || !matches!(digits.first(), Some(b'1'..=b'9'))
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Redis's `string2ld`: no leading space, the whole string a number, not
/// NaN.
pub(super) fn parse_redis_float(bytes: &[u8]) -> Option<f64> {
    if bytes.first().is_none_or(u8::is_ascii_whitespace) {
        return None;
    }
    let value: f64 = std::str::from_utf8(bytes).ok()?.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// An integer as Redis stores it.
pub(super) fn format_int(value: i64) -> Bytes {
    Bytes::from(value.to_string())
}

/// A float as the float increments store it: the shortest decimal that
/// reads back as `value`, without exponent.
pub(super) fn format_float(value: f64) -> Bytes {
    Bytes::from(format!("{value}"))
}

fn not_an_integer() -> Error {
    Error::invalid("ERR value is not an integer or out of range")
}

fn overflow() -> Error {
    Error::invalid("ERR increment or decrement would overflow")
}

/// Redis's refusal of an expiry, naming the command as Redis does.
fn invalid_expire_time(command: &str) -> Error {
    Error::invalid(format!("ERR invalid expire time in '{command}' command"))
}

/// Whether `PEXPIRE`'s conditions keep `current` (a deadline, or
/// [`NO_DEADLINE`]) from becoming `new`, as Redis's `expireGenericCommand`
/// judges them: a key without expiry counts as an infinite one.
fn expire_refused(options: ExpireOptions, current: u64, new: u64) -> bool {
    let persistent = current == NO_DEADLINE;
    (options.nx && !persistent)
        || (options.xx && persistent)
        || (options.gt && (persistent || new <= current))
        || (options.lt && !persistent && new >= current)
}

impl EmbeddedKv {
    pub(super) fn get_string(&self, key: &str) -> Result<Option<Bytes>> {
        match self.live(key) {
            None => Ok(None),
            Some(entry) => match &entry.value {
                Value::String(bytes) => Ok(Some(bytes.clone())),
                _ => Err(Error::wrong_type()),
            },
        }
    }

    /// Fails when one value alone could never fit in `max_memory` (Redis
    /// answers OOM when eviction cannot make room). Checked before writing,
    /// so such a write changes nothing rather than being evicted at once.
    fn check_fits(&self, key: &str, value: &[u8]) -> Result<()> {
        let weight = Entry::key_bytes(key) + Entry::string_size(value);
        if self.max_memory > 0 && weight > self.max_memory {
            return Err(Error::invalid(format!(
                "OOM a value of {weight} bytes cannot fit in max_memory of {} bytes",
                self.max_memory
            ))
            .with_field(key));
        }
        Ok(())
    }

    /// The deadline `ttl` from now for `command`, refused as Redis refuses
    /// it: zero (unless `zero_allowed`) or past Redis's range.
    fn deadline_for(&self, ttl: Duration, command: &str, zero_allowed: bool) -> Result<u64> {
        if !zero_allowed && ttl.as_millis() == 0 {
            return Err(invalid_expire_time(command));
        }
        self.clock
            .deadline_after(self.clock.now(), ttl)
            .ok_or_else(|| invalid_expire_time(command))
    }

    /// `SET`, and `SET ... GET` when `get`: whether it wrote, and (with
    /// `get`) the string that was there.
    pub(super) fn write_string(
        &self,
        key: &str,
        value: Bytes,
        options: SetOptions,
        get: bool,
    ) -> Result<(bool, Option<Bytes>)> {
        let deadline = options
            .expiry
            .map(|ttl| self.deadline_for(ttl, "set", false))
            .transpose()?;
        self.check_fits(key, &value)?;
        let _guard = self.write_lock(key);
        // A plain SET needs nothing from the current entry: skip the lookup.
        let needs_existing = get || options.condition != SetCondition::Always || options.keep_ttl;
        let existing = if needs_existing { self.live(key) } else { None };
        let old = match (get, existing.as_deref()) {
            (
                true,
                Some(Entry {
                    value: Value::String(bytes),
                    ..
                }),
            ) => Some(bytes.clone()),
            (true, Some(_)) => return Err(Error::wrong_type()),
            _ => None,
        };
        let allowed = match options.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => existing.is_none(),
            SetCondition::IfPresent => existing.is_some(),
        };
        if !allowed {
            return Ok((false, old));
        }
        let deadline = match deadline {
            Some(deadline) => deadline,
            None if options.keep_ttl => existing.map_or(NO_DEADLINE, |e| e.deadline()),
            None => NO_DEADLINE,
        };
        self.store(key, Entry::string(value, deadline));
        Ok((true, old))
    }

    pub(super) fn getdel(&self, key: &str) -> Result<Reply> {
        let _guard = self.write_lock(key);
        let value = self.get_string(key)?;
        if value.is_some() {
            self.remove(key);
        }
        Ok(Reply::Value(value))
    }

    pub(super) fn getex(&self, key: &str, expiry: GetExpiry) -> Result<Reply> {
        if expiry == GetExpiry::Unchanged {
            return self.get_string(key).map(Reply::Value);
        }
        let _guard = self.write_lock(key);
        let Some(entry) = self.live(key) else {
            return Ok(Reply::Value(None));
        };
        let Value::String(bytes) = &entry.value else {
            return Err(Error::wrong_type());
        };
        let value = bytes.clone();
        let deadline = match expiry {
            GetExpiry::After(ttl) => self.deadline_for(ttl, "getex", false)?,
            GetExpiry::Persist | GetExpiry::Unchanged => NO_DEADLINE,
        };
        if entry.deadline() != deadline {
            entry.set_deadline(deadline);
            // Re-inserting lets moka's timer see the new deadline.
            self.store(key, entry);
        }
        Ok(Reply::Value(Some(value)))
    }

    pub(super) fn mget(&self, keys: &[String]) -> Result<Reply> {
        if keys.is_empty() {
            return Err(super::wrong_arity("mget"));
        }
        let values = keys
            .iter()
            .map(|key| match self.live(key).as_deref() {
                Some(Entry {
                    value: Value::String(bytes),
                    ..
                }) => Some(bytes.clone()),
                _ => None,
            })
            .collect();
        Ok(Reply::Values(values))
    }

    pub(super) fn mset(&self, pairs: Vec<(String, Bytes)>) -> Result<Reply> {
        if pairs.is_empty() {
            return Err(super::wrong_arity("mset"));
        }
        // All or nothing on size, before writing any.
        for (key, value) in &pairs {
            self.check_fits(key, value)?;
        }
        for (key, value) in pairs {
            let _guard = self.write_lock(&key);
            self.store(&key, Entry::string(value, NO_DEADLINE));
        }
        Ok(Reply::Ok)
    }

    pub(super) fn msetnx(&self, pairs: Vec<(String, Bytes)>) -> Result<Reply> {
        if pairs.is_empty() {
            return Err(super::wrong_arity("msetnx"));
        }
        for (key, value) in &pairs {
            self.check_fits(key, value)?;
        }
        let _guards = self.write_locks(pairs.iter().map(|(key, _)| key.as_str()));
        if pairs.iter().any(|(key, _)| self.live(key).is_some()) {
            return Ok(Reply::Bool(false));
        }
        // A key named twice ends with its last value, as in Redis.
        for (key, value) in pairs {
            self.store(&key, Entry::string(value, NO_DEADLINE));
        }
        Ok(Reply::Bool(true))
    }

    pub(super) fn append(&self, key: &str, suffix: &Bytes) -> Result<Reply> {
        let _guard = self.write_lock(key);
        let (current, deadline) = self.string_for_update(key)?;
        let value = match current {
            None => suffix.clone(),
            Some(current) => {
                let mut joined = BytesMut::with_capacity(current.len() + suffix.len());
                joined.extend_from_slice(&current);
                joined.extend_from_slice(suffix);
                joined.freeze()
            }
        };
        self.check_fits(key, &value)?;
        let len = value.len() as i64;
        self.store(key, Entry::string(value, deadline));
        Ok(Reply::Int(len))
    }

    pub(super) fn strlen(&self, key: &str) -> Result<Reply> {
        let len = self.get_string(key)?.map_or(0, |v| v.len());
        Ok(Reply::Int(len as i64))
    }

    pub(super) fn del(&self, keys: &[String]) -> Result<Reply> {
        if keys.is_empty() {
            return Err(super::wrong_arity("del"));
        }
        let mut deleted = 0;
        for key in keys {
            let _guard = self.write_lock(key);
            if self.live(key).is_some() {
                deleted += 1;
            }
            self.remove(key);
        }
        Ok(Reply::Int(deleted))
    }

    pub(super) fn exists(&self, keys: &[String]) -> Result<Reply> {
        if keys.is_empty() {
            return Err(super::wrong_arity("exists"));
        }
        // A key named twice counts twice, as in Redis.
        let count = keys.iter().filter(|k| self.live(k).is_some()).count();
        Ok(Reply::Int(count as i64))
    }

    pub(super) fn expire(&self, key: &str, ttl: Duration, options: ExpireOptions) -> Result<Reply> {
        options.check()?;
        let now = self.clock.now();
        let deadline = self.deadline_for(ttl, "pexpire", true)?;
        let _guard = self.write_lock(key);
        let Some(entry) = self.live(key) else {
            return Ok(Reply::Bool(false));
        };
        if expire_refused(options, entry.deadline(), deadline) {
            return Ok(Reply::Bool(false));
        }
        self.apply_deadline(key, entry, now, deadline);
        Ok(Reply::Bool(true))
    }

    /// Gives the live `entry` at `key` its new `deadline` (decided at
    /// `now`), deleting the key when the deadline has passed already, as
    /// Redis does. The caller holds `key`'s write lock.
    fn apply_deadline(&self, key: &str, entry: Arc<Entry>, now: u64, deadline: u64) {
        if deadline <= now {
            self.remove(key);
            return;
        }
        entry.set_deadline(deadline);
        // Re-inserting lets moka's timer see the new deadline.
        self.store(key, entry);
    }

    pub(super) fn ttl(&self, key: &str) -> Result<Reply> {
        let Some(entry) = self.live(key) else {
            return Ok(Reply::Ttl(Ttl::Missing));
        };
        let deadline = entry.deadline();
        if deadline == NO_DEADLINE {
            return Ok(Reply::Ttl(Ttl::Persistent));
        }
        // As Redis: 0 in the key's last millisecond.
        let left = deadline.saturating_sub(self.clock.now());
        Ok(Reply::Ttl(Ttl::Expires(Duration::from_millis(left))))
    }

    pub(super) fn persist(&self, key: &str) -> Result<Reply> {
        let _guard = self.write_lock(key);
        let Some(entry) = self.live(key) else {
            return Ok(Reply::Bool(false));
        };
        if entry.deadline() == NO_DEADLINE {
            return Ok(Reply::Bool(false));
        }
        entry.set_deadline(NO_DEADLINE);
        self.store(key, entry);
        Ok(Reply::Bool(true))
    }

    pub(super) fn key_type(&self, key: &str) -> Result<Reply> {
        Ok(Reply::Type(
            self.live(key).map_or(KeyType::None, |e| e.key_type()),
        ))
    }

    /// Reads the string at `key` for a read-modify-write, under the caller's
    /// write lock: its bytes (`None` when missing) and its deadline.
    pub(super) fn string_for_update(&self, key: &str) -> Result<(Option<Bytes>, u64)> {
        match self.live(key) {
            None => Ok((None, NO_DEADLINE)),
            Some(entry) => match &entry.value {
                Value::String(bytes) => Ok((Some(bytes.clone()), entry.deadline())),
                _ => Err(Error::wrong_type()),
            },
        }
    }

    pub(super) fn incr_by(&self, key: &str, delta: i64) -> Result<Reply> {
        let _guard = self.write_lock(key);
        let (current, deadline) = self.string_for_update(key)?;
        let current = match current {
            None => 0,
            Some(bytes) => parse_redis_int(&bytes).ok_or_else(not_an_integer)?,
        };
        let new = current.checked_add(delta).ok_or_else(overflow)?;
        self.store(key, Entry::string(format_int(new), deadline));
        Ok(Reply::Int(new))
    }

    pub(super) fn incr_by_float(&self, key: &str, delta: f64) -> Result<Reply> {
        if delta.is_nan() {
            return Err(Error::invalid("ERR value is not a valid float"));
        }
        let _guard = self.write_lock(key);
        let (current, deadline) = self.string_for_update(key)?;
        let current = match current {
            None => 0.0,
            Some(bytes) => parse_redis_float(&bytes)
                .ok_or_else(|| Error::invalid("ERR value is not a valid float"))?,
        };
        let new = current + delta;
        if !new.is_finite() {
            return Err(Error::invalid(
                "ERR increment would produce NaN or Infinity",
            ));
        }
        self.store(key, Entry::string(format_float(new), deadline));
        Ok(Reply::Float(new))
    }

    /// `lock_acquire`, in the order of the Redis script's steps: the
    /// expiry is judged (as `SET` judges it), then the lock key, then the
    /// counter, and both are written under both keys' write locks.
    pub(super) fn lock_acquire(
        &self,
        key: &str,
        token: String,
        ttl: Duration,
        fence_key: &str,
    ) -> Result<Reply> {
        let deadline = self.deadline_for(ttl, "set", false)?;
        let token = Bytes::from(token);
        self.check_fits(key, &token)?;
        let _guards = self.write_locks([key, fence_key].into_iter());
        if self.live(key).is_some() {
            return Ok(Reply::Fence(None));
        }
        let (counter, counter_deadline) = self.string_for_update(fence_key)?;
        let counter = match counter {
            None => 0,
            Some(bytes) => parse_redis_int(&bytes).ok_or_else(not_an_integer)?,
        };
        let fence = counter.checked_add(1).ok_or_else(overflow)?;
        // `INCR` keeps the counter's expiry (it never gets one from here).
        self.store(
            fence_key,
            Entry::string(format_int(fence), counter_deadline),
        );
        self.store(key, Entry::string(token, deadline));
        crate::engines::kv::command::fence_number(fence).map(|n| Reply::Fence(Some(n)))
    }

    /// `lock_extend`: `PEXPIRE` while the key holds `token`. As the Redis
    /// script, a ttl Redis could not be sent is refused first, and a
    /// deadline out of Redis's range only once the token matched.
    pub(super) fn lock_extend(&self, key: &str, token: &str, ttl: Duration) -> Result<Reply> {
        if i64::try_from(ttl.as_millis()).is_err() {
            return Err(invalid_expire_time("pexpire"));
        }
        let _guard = self.write_lock(key);
        let Some(entry) = self.live(key) else {
            return Ok(Reply::Bool(false));
        };
        let Value::String(bytes) = &entry.value else {
            return Err(Error::wrong_type());
        };
        if bytes.as_ref() != token.as_bytes() {
            return Ok(Reply::Bool(false));
        }
        let now = self.clock.now();
        let deadline = self.deadline_for(ttl, "pexpire", true)?;
        self.apply_deadline(key, entry, now, deadline);
        Ok(Reply::Bool(true))
    }

    pub(super) fn compare_and_delete(&self, key: &str, expected: &Bytes) -> Result<Reply> {
        let _guard = self.write_lock(key);
        let (current, _) = self.string_for_update(key)?;
        if current.as_ref() == Some(expected) {
            self.remove(key);
            return Ok(Reply::Bool(true));
        }
        Ok(Reply::Bool(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_redis() {
        for (text, want) in [
            ("0", Some(0)),
            ("42", Some(42)),
            ("-7", Some(-7)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("+1", None),
            ("01", None),
            ("-0", None),
            (" 1", None),
            ("1 ", None),
            ("", None),
            ("-", None),
            ("1.0", None),
            ("abc", None),
        ] {
            assert_eq!(parse_redis_int(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn floats_parse_like_redis() {
        assert_eq!(parse_redis_float(b"1.5"), Some(1.5));
        assert_eq!(parse_redis_float(b"10"), Some(10.0));
        assert_eq!(parse_redis_float(b"-2e3"), Some(-2000.0));
        assert_eq!(parse_redis_float(b" 1"), None);
        assert_eq!(parse_redis_float(b"1 "), None);
        assert_eq!(parse_redis_float(b"nan"), None);
        assert_eq!(parse_redis_float(b""), None);
        assert_eq!(parse_redis_float(b"x"), None);
    }

    /// The EXPIRE condition matrix; `kv_conformance`'s
    /// `expire_condition_matrix_matches_redis` runs the same cases against
    /// both backends.
    #[test]
    fn expire_conditions_follow_redis() {
        let o = |nx, xx, gt, lt| ExpireOptions { nx, xx, gt, lt };
        let (none, nx, xx) = (
            o(false, false, false, false),
            o(true, false, false, false),
            o(false, true, false, false),
        );
        let (gt, lt) = (o(false, false, true, false), o(false, false, false, true));
        let (xx_gt, xx_lt) = (o(false, true, true, false), o(false, true, false, true));
        let persistent = NO_DEADLINE;
        // (options, current, new, refused)
        let cases = [
            (none, persistent, 100, false),
            (none, 100, 50, false),
            (nx, persistent, 100, false),
            (nx, 100, 200, true),
            (xx, persistent, 100, true),
            (xx, 100, 50, false),
            (gt, persistent, 100, true),
            (gt, 100, 100, true),
            (gt, 100, 101, false),
            (lt, persistent, 100, false),
            (lt, 100, 100, true),
            (lt, 100, 99, false),
            (xx_gt, persistent, 100, true),
            (xx_gt, 100, 200, false),
            (xx_lt, persistent, 1, true),
            (xx_lt, 100, 200, true),
            (xx_lt, 100, 50, false),
        ];
        for (options, current, new, refused) in cases {
            assert_eq!(
                expire_refused(options, current, new),
                refused,
                "{options:?} current {current} new {new}"
            );
        }
    }

    #[test]
    fn float_results_are_stored_without_exponent() {
        assert_eq!(format!("{}", 1e21_f64), "1000000000000000000000");
        assert_eq!(format!("{}", 3.0_f64), "3");
        assert_eq!(format!("{}", 1e-7_f64), "0.0000001");
    }
}
