//! Hash commands: `HSET`, `HGET`, `HMGET`, `HGETALL`, `HDEL`, `HINCRBY`,
//! `HLEN`.
//!
//! # What MUST hold
//!
//! - Writes run under the key's write lock, mutate the hash in place under
//!   its own mutex, update the entry's size and re-insert the entry (moka
//!   re-weighs it). Validation happens before any mutation, so a failing
//!   command changes nothing.
//! - A hash whose last field is removed is deleted.
//! - The key's expiry survives every hash write (Redis keeps it too).

use std::collections::BTreeMap;
use std::sync::Mutex;

use bytes::Bytes;

use super::EmbeddedKv;
use super::entry::{Collection, Value};
use super::strings::{format_int, parse_redis_int};
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
    /// Sets a field; `true` when it is new.
    fn insert(&mut self, field: String, value: Bytes) -> bool {
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
}
