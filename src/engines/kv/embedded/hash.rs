//! Hash commands: `HSET`, `HSETNX`, `HGET`, `HMGET`, `HGETALL`, `HKEYS`,
//! `HVALS`, `HEXISTS`, `HSTRLEN`, `HDEL`, `HINCRBY`, `HINCRBYFLOAT`, `HLEN`,
//! and `hset_if_newer` (fields written unless their stored event time is
//! later).
//!
//! # What MUST hold
//!
//! - Writes run under the key's write lock, mutate the hash in place under
//!   its own mutex, update the entry's size and re-insert the entry (moka
//!   re-weighs it). Validation happens before any mutation, so a failing
//!   command changes nothing.
//! - A hash whose last field is removed is deleted.
//! - `hset_if_newer` reads every stored time before writing any field, so
//!   a time that is not an integer fails the whole command unchanged; the
//!   fields then apply in order under the one write lock.
//! - The key's expiry survives every hash write (Redis keeps it too).
//! - `HKEYS` answers the fields in order (a `BTreeMap`'s, bytewise) and
//!   `HVALS` the values sorted bytewise, so that both backends answer
//!   alike (Redis's own order is its hash table's; the adapter sorts).
//! - `HINCRBYFLOAT` checks as Redis does, in Redis's order: a NaN increment
//!   is "not a valid float", an infinite one "value is NaN or Infinity"
//!   (both before the key's type), a field that is not a number "hash
//!   value is not a float", an infinite result "increment would produce
//!   NaN or Infinity". It computes in `f64` like `INCRBYFLOAT` (see
//!   `strings`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::EmbeddedKv;
use super::entry::{Collection, Value};
use super::strings::{format_float, format_int, parse_redis_float, parse_redis_int};
use crate::engines::kv::Reply;
use crate::error::{Error, Result};

/// Estimated cost of one field beyond its name and value bytes: the B-tree
/// slot and the `String` and `Bytes` headers.
const FIELD_OVERHEAD: u64 = 64;

/// The fields of a hash, kept sorted so `HGETALL` needs no sort.
#[derive(Debug, Default)]
pub(crate) struct HashValue {
    fields: BTreeMap<String, Bytes>,
    bytes: u64,
}

fn field_bytes(field: &str, value: &Bytes) -> u64 {
    field.len() as u64 + value.len() as u64 + FIELD_OVERHEAD
}

impl HashValue {
    /// The value of `field`.
    pub(super) fn get(&self, field: &str) -> Option<&Bytes> {
        self.fields.get(field)
    }

    /// Sets a field; `true` when it is new.
    pub(super) fn insert(&mut self, field: String, value: Bytes) -> bool {
        let added = field_bytes(&field, &value);
        let name_len = field.len() as u64;
        match self.fields.insert(field, value) {
            Some(old) => {
                // Same name: only the value's bytes change.
                self.bytes = self.bytes + added - (name_len + old.len() as u64 + FIELD_OVERHEAD);
                false
            }
            None => {
                self.bytes += added;
                true
            }
        }
    }

    fn remove(&mut self, field: &str) -> bool {
        match self.fields.remove(field) {
            Some(old) => {
                self.bytes -= field_bytes(field, &old);
                true
            }
            None => false,
        }
    }
}

impl Collection for HashValue {
    fn of(value: &Value) -> Option<&Mutex<Self>> {
        match value {
            Value::Hash(hash) => Some(hash),
            _ => None,
        }
    }

    fn wrap(value: Mutex<Self>) -> Value {
        Value::Hash(value)
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The refusal of a stored event time that is not an integer (the Redis
/// script answers the same words).
fn event_time_not_an_integer(field: &str) -> Error {
    Error::invalid(format!(
        "ERR the event time of field '{field}' is not an integer"
    ))
    .with_field(field)
}

impl EmbeddedKv {
    /// Runs `f` on the hash at `key` (`None` when missing), failing with
    /// WRONGTYPE on another type.
    fn read_hash<T>(&self, key: &str, f: impl FnOnce(Option<&HashValue>) -> T) -> Result<T> {
        self.read_collection(key, f)
    }

    /// Applies `f` to the hash at `key`, creating it when missing (see
    /// `write_collection`). `f` must validate before mutating: its error
    /// leaves the hash as is.
    fn write_hash<T>(&self, key: &str, f: impl FnOnce(&mut HashValue) -> Result<T>) -> Result<T> {
        self.write_collection(key, f)
    }

    pub(super) fn hset(&self, key: &str, fields: Vec<(String, Bytes)>) -> Result<Reply> {
        if fields.is_empty() {
            return Err(super::wrong_arity("hset"));
        }
        self.write_hash(key, |hash| {
            let added = fields
                .into_iter()
                .map(|(field, value)| hash.insert(field, value))
                .filter(|added| *added)
                .count();
            Ok(Reply::Int(added as i64))
        })
    }

    pub(super) fn hsetnx(&self, key: &str, field: String, value: Bytes) -> Result<Reply> {
        self.write_hash(key, |hash| {
            if hash.fields.contains_key(&field) {
                return Ok(Reply::Bool(false));
            }
            hash.insert(field, value);
            Ok(Reply::Bool(true))
        })
    }

    pub(super) fn hkeys(&self, key: &str) -> Result<Reply> {
        self.read_hash(key, |hash| {
            Reply::Fields(hash.map_or_else(Vec::new, |h| h.fields.keys().cloned().collect()))
        })
    }

    pub(super) fn hvals(&self, key: &str) -> Result<Reply> {
        self.read_hash(key, |hash| {
            let mut values: Vec<Bytes> =
                hash.map_or_else(Vec::new, |h| h.fields.values().cloned().collect());
            values.sort_unstable();
            Reply::Blobs(values)
        })
    }

    pub(super) fn hexists(&self, key: &str, field: &str) -> Result<Reply> {
        self.read_hash(key, |hash| {
            Reply::Bool(hash.is_some_and(|h| h.fields.contains_key(field)))
        })
    }

    pub(super) fn hstrlen(&self, key: &str, field: &str) -> Result<Reply> {
        self.read_hash(key, |hash| {
            let len = hash.and_then(|h| h.fields.get(field)).map_or(0, Bytes::len);
            Reply::Int(len as i64)
        })
    }

    pub(super) fn hget(&self, key: &str, field: &str) -> Result<Reply> {
        self.read_hash(key, |hash| {
            Reply::Value(hash.and_then(|h| h.fields.get(field).cloned()))
        })
    }

    pub(super) fn hmget(&self, key: &str, fields: &[String]) -> Result<Reply> {
        if fields.is_empty() {
            return Err(super::wrong_arity("hmget"));
        }
        self.read_hash(key, |hash| {
            let values = fields
                .iter()
                .map(|field| hash.and_then(|h| h.fields.get(field).cloned()))
                .collect();
            Reply::Values(values)
        })
    }

    pub(super) fn hgetall(&self, key: &str) -> Result<Reply> {
        self.read_hash(key, |hash| {
            Reply::Hash(hash.map(|h| h.fields.clone()).unwrap_or_default())
        })
    }

    pub(super) fn hlen(&self, key: &str) -> Result<Reply> {
        self.read_hash(key, |hash| {
            Reply::Int(hash.map_or(0, |h| h.fields.len()) as i64)
        })
    }

    pub(super) fn hdel(&self, key: &str, fields: &[String]) -> Result<Reply> {
        if fields.is_empty() {
            return Err(super::wrong_arity("hdel"));
        }
        // On a missing key nothing is removed and the empty hash is not
        // stored: the key stays missing.
        self.write_hash(key, |hash| {
            let removed = fields.iter().filter(|f| hash.remove(f)).count();
            Ok(Reply::Int(removed as i64))
        })
    }

    pub(super) fn hincr_by(&self, key: &str, field: &str, delta: i64) -> Result<Reply> {
        self.write_hash(key, |hash| {
            let current = match hash.fields.get(field) {
                None => 0,
                Some(value) => parse_redis_int(value)
                    .ok_or_else(|| Error::invalid("ERR hash value is not an integer"))?,
            };
            let new = current
                .checked_add(delta)
                .ok_or_else(|| Error::invalid("ERR increment or decrement would overflow"))?;
            hash.insert(field.to_owned(), format_int(new));
            Ok(Reply::Int(new))
        })
    }

    /// `hset_if_newer`: every stored time is checked before anything is
    /// written, then the fields apply in order, under the key's write lock.
    pub(super) fn hset_if_newer(
        &self,
        key: &str,
        fields: Vec<(String, Bytes, i64)>,
        time_prefix: &str,
    ) -> Result<Reply> {
        let time_field = |field: &str| format!("{time_prefix}{field}");
        self.write_hash(key, |hash| {
            for (field, _, _) in &fields {
                if let Some(stored) = hash.get(&time_field(field)) {
                    parse_redis_int(stored).ok_or_else(|| event_time_not_an_integer(field))?;
                }
            }
            let written = fields
                .into_iter()
                .map(|(field, value, time)| {
                    let at = time_field(&field);
                    // Every stored time was checked above, or written since.
                    let newer = hash
                        .get(&at)
                        .and_then(|stored| parse_redis_int(stored))
                        .is_none_or(|stored| time >= stored);
                    if newer {
                        hash.insert(field, value);
                        hash.insert(at, format_int(time));
                    }
                    newer
                })
                .collect();
            Ok(Reply::Bools(written))
        })
    }

    pub(super) fn hincr_by_float(&self, key: &str, field: &str, delta: f64) -> Result<Reply> {
        if delta.is_nan() {
            return Err(Error::invalid("ERR value is not a valid float"));
        }
        if delta.is_infinite() {
            return Err(Error::invalid("ERR value is NaN or Infinity"));
        }
        self.write_hash(key, |hash| {
            let current = match hash.fields.get(field) {
                None => 0.0,
                Some(value) => parse_redis_float(value)
                    .ok_or_else(|| Error::invalid("ERR hash value is not a float"))?,
            };
            let new = current + delta;
            if !new.is_finite() {
                return Err(Error::invalid(
                    "ERR increment would produce NaN or Infinity",
                ));
            }
            hash.insert(field.to_owned(), format_float(new));
            Ok(Reply::Float(new))
        })
    }
}
