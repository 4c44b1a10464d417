//! String and key commands: `GET`, `SET`, `MGET`, `MSET`, `DEL`, `EXISTS`,
//! `PEXPIRE`, `PTTL`, `PERSIST`, `TYPE`, `INCRBY`, `INCRBYFLOAT`, and the
//! compare-and-delete of a lock release.
//!
//! # What MUST hold
//!
//! - Integers are parsed as Redis's `string2ll` does: optional `-`, no `+`,
//!   no leading zeros, no spaces, 64-bit range. Anything else is "not an
//!   integer" and the value is left unchanged.
//! - `INCRBY`/`INCRBYFLOAT` keep the key's expiry; `SET` clears it unless
//!   `keep_ttl`.
//! - `INCRBYFLOAT` computes in `f64` and stores the shortest decimal that
//!   reads back as the result, without exponent (Redis's human format).
//!   Redis computes in `long double`, so a result may differ from Redis in
//!   the last digits (`0.1 + 0.2` is `0.30000000000000004` here, `0.3`
//!   there).
//! - `MGET` answers nil for a key of another type (Redis does, no
//!   WRONGTYPE); `compare_and_delete` on a non-string fails with WRONGTYPE
//!   (as Redis's `GET` inside the release script does).
//! - `MSET` and multi-key `DEL` take one key at a time: each key's write is
//!   atomic, the command as a whole is not (Redis's is); a concurrent reader
//!   may see some keys written and not others.

use bytes::Bytes;

use super::EmbeddedKv;
use super::entry::{Clock, Entry, NO_DEADLINE, Value};
use crate::engines::kv::{KeyType, Reply, SetCondition, SetOptions, Ttl};
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
fn parse_redis_float(bytes: &[u8]) -> Option<f64> {
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

fn not_an_integer() -> Error {
    Error::invalid("ERR value is not an integer or out of range")
}

fn overflow() -> Error {
    Error::invalid("ERR increment or decrement would overflow")
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
    fn check_fits(&self, key: &str, value: &Bytes) -> Result<()> {
        let weight = key.len() as u64 + Entry::string_size(value);
        if self.max_memory > 0 && weight > self.max_memory {
            return Err(Error::invalid(format!(
                "OOM a value of {weight} bytes cannot fit in max_memory of {} bytes",
                self.max_memory
            ))
            .with_field(key));
        }
        Ok(())
    }

    pub(super) fn set(&self, key: &str, value: Bytes, options: SetOptions) -> Result<Reply> {
        let ttl_millis = match options.expiry {
            Some(ttl) if ttl.as_millis() == 0 => {
                return Err(Error::invalid("ERR invalid expire time in 'set' command"));
            }
            other => other.map(|ttl| ttl.as_millis()),
        };
        self.check_fits(key, &value)?;
        let _guard = self.write_lock(key);
        // A plain SET needs nothing from the current entry: skip the lookup.
        let needs_existing = options.condition != SetCondition::Always || options.keep_ttl;
        let existing = if needs_existing { self.live(key) } else { None };
        let allowed = match options.condition {
            SetCondition::Always => true,
            SetCondition::IfAbsent => existing.is_none(),
            SetCondition::IfPresent => existing.is_some(),
        };
        if !allowed {
            return Ok(Reply::Bool(false));
        }
        let deadline = match ttl_millis {
            Some(ms) => Clock::deadline_after(self.clock.now(), ms)
                .ok_or_else(|| Error::invalid("ERR invalid expire time in 'set' command"))?,
            None if options.keep_ttl => existing.map_or(NO_DEADLINE, |e| e.deadline()),
            None => NO_DEADLINE,
        };
        self.cache
            .insert(key.to_owned(), Entry::string(value, deadline));
        Ok(Reply::Bool(true))
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
            let entry = Entry::string(value, NO_DEADLINE);
            self.cache.insert(key, entry);
        }
        Ok(Reply::Ok)
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
            // An expired entry goes too: it is dead already, and this frees
            // its weight now rather than at moka's next timer run.
            self.cache.invalidate(key.as_str());
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

    pub(super) fn expire(&self, key: &str, ttl: std::time::Duration) -> Result<Reply> {
        let _guard = self.write_lock(key);
        let Some(entry) = self.live(key) else {
            return Ok(Reply::Bool(false));
        };
        let ms = ttl.as_millis();
        if ms == 0 {
            // Redis deletes a key given a non-positive expiry.
            self.cache.invalidate(key);
            return Ok(Reply::Bool(true));
        }
        let deadline = Clock::deadline_after(self.clock.now(), ms)
            .ok_or_else(|| Error::invalid("ERR invalid expire time in 'pexpire' command"))?;
        entry.set_deadline(deadline);
        // Re-inserting lets moka's timer see the new deadline.
        self.cache.insert(key.to_owned(), entry);
        Ok(Reply::Bool(true))
    }

    pub(super) fn ttl(&self, key: &str) -> Result<Reply> {
        let Some(entry) = self.live(key) else {
            return Ok(Reply::Ttl(Ttl::Missing));
        };
        let deadline = entry.deadline();
        if deadline == NO_DEADLINE {
            return Ok(Reply::Ttl(Ttl::Persistent));
        }
        // Rounded up to the millisecond: a live key never reports 0, and a
        // TTL read right after `PEXPIRE 100` reads 100, as Redis's does.
        let nanos = deadline.saturating_sub(self.clock.now());
        let millis = nanos.div_ceil(1_000_000);
        Ok(Reply::Ttl(Ttl::Expires(std::time::Duration::from_millis(
            millis,
        ))))
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
        self.cache.insert(key.to_owned(), entry);
        Ok(Reply::Bool(true))
    }

    pub(super) fn key_type(&self, key: &str) -> Result<Reply> {
        Ok(Reply::Type(
            self.live(key).map_or(KeyType::None, |e| e.key_type()),
        ))
    }

    /// Reads the string at `key` for a read-modify-write, under the caller's
    /// write lock: its bytes (`None` when missing) and its deadline.
    fn string_for_update(&self, key: &str) -> Result<(Option<Bytes>, u64)> {
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
        self.cache
            .insert(key.to_owned(), Entry::string(format_int(new), deadline));
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
        let stored = Bytes::from(format!("{new}"));
        self.cache
            .insert(key.to_owned(), Entry::string(stored, deadline));
        Ok(Reply::Float(new))
    }

    pub(super) fn compare_and_delete(&self, key: &str, expected: &Bytes) -> Result<Reply> {
        let _guard = self.write_lock(key);
        let (current, _) = self.string_for_update(key)?;
        if current.as_ref() == Some(expected) {
            self.cache.invalidate(key);
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

    #[test]
    fn float_results_are_stored_without_exponent() {
        assert_eq!(format!("{}", 1e21_f64), "1000000000000000000000");
        assert_eq!(format!("{}", 3.0_f64), "3");
        assert_eq!(format!("{}", 1e-7_f64), "0.0000001");
    }
}
