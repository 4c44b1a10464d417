//! The ordered key index behind `SCAN`, and the scan itself.
//!
//! moka's map has no order and no stable position, so the store keeps every
//! key a second time, with its type, in a sorted map. A scan walks that map
//! in key order and
//! its cursor is the last key it examined (`k` + the key in hex): the next
//! step goes on after that key, so a cursor stays valid however many keys
//! come and go in between, and memory per scan is one key.
//!
//! # What MUST hold
//!
//! - Every live key is in the index. A key becomes live only through
//!   `EmbeddedKv::store`, which adds it to the index before inserting it into
//!   moka, under the key's write lock. A key leaves the index only under its
//!   write lock and only once moka no longer holds it live: `EmbeddedKv::
//!   remove` (deletes) does both; keys moka expires or evicts by itself are
//!   queued by its removal listener and checked by `EmbeddedKv::settle_index`
//!   (run after every command, with no write lock held), which drops those
//!   still absent. So a key that exists from a scan's first step to its last
//!   is passed over exactly once and returned, as Redis guarantees.
//! - The index is memory-bounded with the store: it holds the live keys
//!   plus the removed keys not yet settled, which is at most the keys moka
//!   removed since the last command. Its cost is part of each key's weight.
//! - A step examines at most `COUNT` keys, taking the index lock for at most
//!   [`CHUNK`] keys at a time, so neither a huge index nor a huge `COUNT`
//!   holds the lock for long.
//! - The type recorded for a live key is its value's: `store` records it
//!   whenever the key is new or changes type (under the key's write lock).
//! - A scan never counts as a use for the LRU, as Redis's does not: liveness
//!   is moka's `contains_key`, the type the index's.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::EmbeddedKv;
use crate::engines::kv::pattern::glob_match;
use crate::engines::kv::{KeyType, ScanCursor, ScanOptions, ScanPage};
use crate::error::{Error, Result};

/// Keys taken from the index under one hold of its lock.
const CHUNK: usize = 256;

/// Every key the store may hold, in order, with its type, and the keys moka
/// dropped by itself, waiting to be checked.
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    keys: Mutex<BTreeMap<String, KeyType>>,
    removed: Mutex<Vec<String>>,
    removed_len: AtomicUsize,
}

/// A lock whose holders make single `BTreeMap`/`Vec` calls, which leave it
/// consistent even if one panicked: a poisoned lock is used as is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeyIndex {
    /// Records `key` as holding `key_type`.
    pub(super) fn insert(&self, key: &str, key_type: KeyType) {
        let mut keys = lock(&self.keys);
        match keys.get_mut(key) {
            Some(recorded) => *recorded = key_type,
            None => {
                keys.insert(key.to_owned(), key_type);
            }
        }
    }

    pub(super) fn remove(&self, key: &str) {
        lock(&self.keys).remove(key);
    }

    /// Called by moka's removal listener for a key it expired or evicted.
    pub(super) fn note_removed(&self, key: String) {
        lock(&self.removed).push(key);
        self.removed_len.fetch_add(1, Ordering::Release);
    }

    /// The keys noted since the last call.
    pub(super) fn take_removed(&self) -> Vec<String> {
        if self.removed_len.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let taken = std::mem::take(&mut *lock(&self.removed));
        self.removed_len.fetch_sub(taken.len(), Ordering::Release);
        taken
    }

    /// Up to `limit` keys after `position` (from the first when `None`), in
    /// order, with their types.
    fn after(&self, position: Option<&str>, limit: usize) -> Vec<(String, KeyType)> {
        let keys = lock(&self.keys);
        let from = match position {
            Some(key) => Bound::Excluded(key),
            None => Bound::Unbounded,
        };
        keys.range::<str, _>((from, Bound::Unbounded))
            .take(limit)
            .map(|(key, key_type)| (key.clone(), *key_type))
            .collect()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.keys).len()
    }
}

fn invalid_cursor() -> Error {
    Error::invalid("ERR invalid cursor")
}

/// The cursor that resumes after `key`.
fn cursor_after(key: &str) -> ScanCursor {
    use std::fmt::Write;
    let mut token = String::with_capacity(1 + 2 * key.len());
    token.push('k');
    for byte in key.as_bytes() {
        // Writing to a String cannot fail.
        let _ = write!(token, "{byte:02x}");
    }
    ScanCursor::new(token)
}

/// The key a cursor resumes after; `None` for `0`, the start.
fn position(cursor: &ScanCursor) -> Result<Option<String>> {
    if cursor.is_start() {
        return Ok(None);
    }
    let hex = cursor
        .as_str()
        .strip_prefix('k')
        .ok_or_else(invalid_cursor)?;
    if hex.len() % 2 != 0 {
        return Err(invalid_cursor());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid_cursor)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| invalid_cursor())
}

impl EmbeddedKv {
    /// Drops from the index the keys moka expired or evicted by itself and
    /// that are still absent. Takes each key's write lock: the caller must
    /// hold none.
    pub(super) fn settle_index(&self) {
        for key in self.index.take_removed() {
            let _guard = self.write_lock(&key);
            if !self.cache.contains_key(key.as_str()) {
                self.index.remove(&key);
            }
        }
    }

    /// One `SCAN` step: `COUNT` keys examined in order after the cursor's.
    pub(super) fn scan_page(&self, cursor: &ScanCursor, options: &ScanOptions) -> Result<ScanPage> {
        let count = options.checked_count()?;
        let mut position = position(cursor)?;
        self.settle_index();
        // `count` fits: checked_count caps it at i64::MAX.
        let mut left = usize::try_from(count).unwrap_or(usize::MAX);
        let mut keys = Vec::new();
        while left > 0 {
            let want = left.min(CHUNK);
            let chunk = self.index.after(position.as_deref(), want);
            let exhausted = chunk.len() < want;
            left -= chunk.len();
            position = chunk.last().map(|(key, _)| key.clone());
            keys.extend(
                chunk
                    .into_iter()
                    .filter(|(key, key_type)| self.selects(key, *key_type, options))
                    .map(|(key, _)| key),
            );
            if exhausted {
                return Ok(ScanPage {
                    cursor: ScanCursor::start(),
                    keys,
                });
            }
        }
        let cursor = position
            .as_deref()
            .map_or_else(ScanCursor::start, cursor_after);
        Ok(ScanPage { cursor, keys })
    }

    /// Whether a scan returns `key`, recorded as holding `key_type`:
    /// matching, of the asked type, live.
    fn selects(&self, key: &str, key_type: KeyType, options: &ScanOptions) -> bool {
        options
            .pattern
            .as_deref()
            .is_none_or(|p| glob_match(p, key))
            && options.key_type.is_none_or(|wanted| wanted == key_type)
            && self.cache.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_carry_the_key_in_hex() {
        for key in ["", "a", "user:1", "ключ", "0", "k"] {
            let cursor = cursor_after(key);
            assert!(!cursor.is_start());
            assert_eq!(position(&cursor).unwrap().as_deref(), Some(key));
        }
        assert_eq!(cursor_after("ab").as_str(), "k6162");
        assert_eq!(position(&ScanCursor::start()).unwrap(), None);
        for bad in ["", "1", "17", "k6", "kzz", "x61", "kff"] {
            let err = position(&ScanCursor::new(bad)).unwrap_err();
            assert_eq!(err.message(), "ERR invalid cursor", "{bad:?}");
        }
    }

    #[test]
    fn the_index_walks_in_order_after_a_position() {
        let index = KeyIndex::default();
        for key in ["c", "a", "b", "d"] {
            index.insert(key, KeyType::String);
        }
        index.insert("b", KeyType::Hash);
        assert_eq!(index.len(), 4);
        let names =
            |walk: Vec<(String, KeyType)>| walk.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            index.after(None, 2),
            [("a".into(), KeyType::String), ("b".into(), KeyType::Hash)]
        );
        assert_eq!(names(index.after(Some("b"), 10)), ["c", "d"]);
        // A position that is no longer a key still places the walk.
        index.remove("c");
        assert_eq!(names(index.after(Some("bb"), 10)), ["d"]);
        index.note_removed("d".into());
        assert_eq!(index.take_removed(), ["d"]);
        assert!(index.take_removed().is_empty());
    }
}
