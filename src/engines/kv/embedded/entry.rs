//! What one key holds: a typed value, its deadline and its weighed size.
//!
//! # What MUST hold
//!
//! - `size` is the value's estimated bytes plus [`KEY_OVERHEAD`], kept up to
//!   date by every mutation *before* the entry is re-inserted into the cache,
//!   so that moka's weigher reads it in O(1) and re-weighs on re-insert.
//! - `deadline` is in milliseconds on the store's [`Clock`], Redis's own
//!   resolution; [`NO_DEADLINE`] means persistent. As in Redis, the key is
//!   alive up to and including its deadline's millisecond and gone for
//!   every command after it, whether or not moka has removed it yet.
//! - Strings are immutable (`Bytes`) and replaced whole; hashes and sorted
//!   sets are mutated in place under their own mutex, so a big sorted set is
//!   never cloned to add a member.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moka::Expiry;

use super::hash::HashValue;
use super::zset::ZSetValue;
use crate::engines::kv::KeyType;
use crate::error::{Error, Result};

/// The deadline of a persistent key.
pub(super) const NO_DEADLINE: u64 = u64::MAX;

/// Estimated fixed cost of a key beyond its bytes and its value's: moka's
/// map slot, entry info and LRU node, the `Arc<Entry>`, the key's `String`
/// header, the two counters, and the key's slot in the ordered key index.
/// An estimate: the bound is on this weighing, not on the allocator's exact
/// figure.
pub(super) const KEY_OVERHEAD: u64 = 160;

/// A store's monotonic clock: milliseconds since the store was created,
/// anchored to the Unix time of that moment for Redis's limit on deadlines.
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    base: Instant,
    /// Unix time of `base`, in milliseconds.
    base_unix_ms: u64,
}

impl Clock {
    pub(super) fn new() -> Self {
        let base_unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock {
            base: Instant::now(),
            base_unix_ms,
        }
    }

    /// Now, in milliseconds since the base.
    pub(super) fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// `instant` in whole milliseconds since the base (0 before it).
    pub(super) fn at(&self, instant: Instant) -> u64 {
        let millis = instant.saturating_duration_since(self.base).as_millis();
        u64::try_from(millis).unwrap_or(NO_DEADLINE - 1)
    }

    /// The deadline `ttl` after `now` (Redis's `PX`: whole milliseconds,
    /// sub-millisecond parts dropped). `None` where Redis answers "invalid
    /// expire time": past `i64::MAX` milliseconds of Unix time.
    pub(super) fn deadline_after(&self, now: u64, ttl: Duration) -> Option<u64> {
        let unix_now = self.base_unix_ms.saturating_add(now);
        let room = (i64::MAX as u64).saturating_sub(unix_now);
        let ttl = u64::try_from(ttl.as_millis())
            .ok()
            .filter(|ms| *ms <= room)?;
        // now + ttl <= i64::MAX - base_unix_ms < NO_DEADLINE.
        Some(now + ttl)
    }

    /// The instant just after `deadline`'s millisecond, when the key is gone.
    fn end_of(&self, deadline: u64) -> Option<Instant> {
        self.base
            .checked_add(Duration::from_millis(deadline.checked_add(1)?))
    }
}

/// A typed value.
#[derive(Debug)]
pub(super) enum Value {
    /// An immutable string, replaced whole by every write.
    String(Bytes),
    /// A hash, mutated in place.
    Hash(Mutex<HashValue>),
    /// A sorted set, mutated in place.
    ZSet(Mutex<ZSetValue>),
}

/// A value mutated in place under its key's write lock: a hash or a
/// sorted set. `EmbeddedKv::read_collection` and `write_collection` serve
/// every such type alike.
pub(super) trait Collection: Default {
    /// The value's lock, when `value` holds this type.
    fn of(value: &Value) -> Option<&Mutex<Self>>;
    /// `value` as this type's [`Value`] variant.
    fn wrap(value: Mutex<Self>) -> Value;
    /// Whether it has no field or member left (the key then goes).
    fn is_empty(&self) -> bool;
    /// Its estimated size in bytes, without the key.
    fn bytes(&self) -> u64;
}

/// One key's entry in the cache.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) value: Value,
    deadline: AtomicU64,
    size: AtomicU64,
}

impl Entry {
    /// A string entry.
    pub(super) fn string(bytes: Bytes, deadline: u64) -> Arc<Entry> {
        let size = Self::string_size(&bytes);
        Arc::new(Entry {
            value: Value::String(bytes),
            deadline: AtomicU64::new(deadline),
            size: AtomicU64::new(size),
        })
    }

    /// The weighed size of a string value (without its key).
    pub(super) fn string_size(bytes: &[u8]) -> u64 {
        bytes.len() as u64 + KEY_OVERHEAD
    }

    /// An entry holding a hash or a sorted set.
    pub(super) fn collection<C: Collection>(value: C) -> Arc<Entry> {
        let size = value.bytes() + KEY_OVERHEAD;
        Arc::new(Entry {
            value: C::wrap(Mutex::new(value)),
            deadline: AtomicU64::new(NO_DEADLINE),
            size: AtomicU64::new(size),
        })
    }

    /// Records a collection's new size after an in-place mutation; the
    /// caller re-inserts the entry so that moka re-weighs it.
    pub(super) fn set_value_bytes(&self, value_bytes: u64) {
        self.size
            .store(value_bytes + KEY_OVERHEAD, Ordering::Relaxed);
    }

    /// moka's weight: the running size plus the key's bytes twice (moka's
    /// copy and the scan index's), saturating at `u32::MAX` (moka's weight
    /// type).
    pub(super) fn weight(&self, key: &str) -> u32 {
        let bytes = Self::key_bytes(key) + self.size.load(Ordering::Relaxed);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// What a key's name weighs: it is held twice, by moka and by the scan
    /// index.
    pub(super) fn key_bytes(key: &str) -> u64 {
        2 * key.len() as u64
    }

    /// The raw deadline ([`NO_DEADLINE`] when persistent).
    pub(super) fn deadline(&self) -> u64 {
        self.deadline.load(Ordering::Acquire)
    }

    /// Changes the deadline in place; the caller holds the key's write lock
    /// and re-inserts the entry so that moka's timer follows.
    pub(super) fn set_deadline(&self, deadline: u64) {
        self.deadline.store(deadline, Ordering::Release);
    }

    /// Whether the entry is still alive at `now` (Redis: expired once
    /// `now > deadline`). Persistent entries are alive without reading the
    /// clock; callers pass a lazily read `now`.
    pub(super) fn is_live_at(&self, now: impl FnOnce() -> u64) -> bool {
        let deadline = self.deadline();
        deadline == NO_DEADLINE || now() <= deadline
    }

    /// The Redis type of the value.
    pub(super) fn key_type(&self) -> KeyType {
        match self.value {
            Value::String(_) => KeyType::String,
            Value::Hash(_) => KeyType::Hash,
            Value::ZSet(_) => KeyType::ZSet,
        }
    }
}

/// Locks a collection. A poisoned lock means a panic interrupted a
/// mutation, so the collection may be half-updated: that is reported, never
/// read through.
pub(super) fn lock_value<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    mutex.lock().map_err(|_| {
        Error::internal("a value's lock was poisoned by an earlier panic; the key must be deleted")
    })
}

/// moka's per-entry expiry: the time left until the entry's own deadline,
/// re-read on create and on every re-insert (which is how `PEXPIRE` and
/// `PERSIST` reach moka's timer). Reads leave it unchanged. Commands also
/// check the deadline themselves, so expiry is exact even between moka's
/// housekeeping runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeadlineExpiry {
    pub(super) clock: Clock,
}

impl DeadlineExpiry {
    fn time_left(&self, entry: &Entry, at: Instant) -> Option<Duration> {
        let deadline = entry.deadline();
        if deadline == NO_DEADLINE {
            return None;
        }
        // A deadline too far for `Instant` is as good as none.
        let end = self.clock.end_of(deadline)?;
        Some(end.saturating_duration_since(at))
    }
}

impl Expiry<String, Arc<Entry>> for DeadlineExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        created_at: Instant,
    ) -> Option<Duration> {
        self.time_left(value, created_at)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.time_left(value, updated_at)
    }
}
