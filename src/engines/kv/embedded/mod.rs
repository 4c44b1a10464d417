//! The embedded key-value store: in-process, memory-bounded, LRU, on moka.
//!
//! # Layout
//!
//! - `entry`: what a key holds (typed value, deadline, weighed size) and
//!   moka's per-entry expiry.
//! - `keys`: the ordered key index and `SCAN`.
//! - `strings`: string and key commands, and the locks; `hash`: hash
//!   commands; `zset`: sorted-set commands; `rate`: the rate limiter;
//!   `pubsub`: the in-process channel registry.
//!
//! # What MUST hold (beyond the [`KvStore`] contracts)
//!
//! - Memory: with `max_memory > 0` the weighed size of all entries (key
//!   bytes + value bytes + a fixed per-key and per-field estimate) stays at
//!   or under `max_memory` once moka's pending work has run (`info()` runs
//!   it). Room is made by evicting the least recently used keys (reads and
//!   writes both count as use); each is counted in [`KvInfo::evictions`].
//!   The policy is plain LRU, without TinyLFU's admission filter: a fresh
//!   `SET` is always stored, as a cache that drops new writes would surprise
//!   every caller. A single string that could never fit is refused with an
//!   OOM `InvalidInput` (Redis answers OOM too); a hash or sorted set that
//!   grows past the whole bound by itself is evicted like any other key.
//! - Expiry is exact to the millisecond: every command checks the key's
//!   deadline itself; moka's timer only frees the memory.
//! - Every key moka holds live is in the ordered key index (see `keys`),
//!   so `SCAN` never misses a key that exists throughout a scan.
//! - Atomicity: every write takes the key's stripe of a striped mutex
//!   (256 stripes, chosen by a hash of the key), reads the current entry,
//!   and writes the new one before letting go. Two writes of one key never
//!   interleave, so 8 tasks × 1000 `INCR` end at 8000. A striped lock rather
//!   than moka's `entry().and_compute_with`: moka serialises compute calls
//!   only against other compute calls, not against `insert`/`invalidate`,
//!   so every write path would have to go through it to be safe; the stripe
//!   covers every write path (including `DEL`, `PEXPIRE` and in-place
//!   collection updates) uniformly, lets commands return typed replies and
//!   errors directly, and costs one uncontended mutex per write. Reads take
//!   no lock: strings are immutable `Bytes`, collections have their own
//!   mutex. `MSETNX` takes the stripes of all its keys, in stripe order (so
//!   two never deadlock): all its keys are written or none, as a whole
//!   with respect to other writers. So do the atomic commands of two keys
//!   (`lock_acquire`: the lock and its fence counter; `zadd_best`: the
//!   sorted set and the hash of times); the others (`lock_extend`,
//!   `rate_limit`, `hset_if_newer`, `compare_and_delete`) hold their one
//!   key's stripe from the read to the write. Every one of them checks
//!   everything before its first write, so a failure changes nothing.
//! - Nothing blocks the async runtime for long: every command is a few
//!   map operations under short locks, and a `SCAN` step examines at most
//!   `COUNT` keys.
//! - Nothing is durable: the store is a cache and starts empty.

mod entry;
mod hash;
mod keys;
mod pubsub;
mod rate;
mod strings;
mod zset;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use self::entry::{Clock, Collection, DeadlineExpiry, Entry, lock_value};
use self::keys::KeyIndex;
use self::pubsub::PubSub;
use super::{
    Command, DEFAULT_SUBSCRIPTION_CAPACITY, KvInfo, KvStore, Reply, ScanCursor, ScanOptions,
    ScanPage, Subscription,
};
use crate::error::{Error, Result};

/// How many write-lock stripes: well above the cores strata runs on, so
/// unrelated keys rarely share one.
const STRIPES: usize = 256;

/// Options of an [`EmbeddedKv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedKvOptions {
    /// Memory bound in bytes of weighed entries; 0 = unbounded.
    pub max_memory: u64,
    /// Messages each subscription buffers for a slow reader before it drops
    /// the oldest (at least 1; 0 is taken as 1).
    pub subscription_capacity: usize,
}

impl Default for EmbeddedKvOptions {
    /// Unbounded memory, [`DEFAULT_SUBSCRIPTION_CAPACITY`].
    fn default() -> Self {
        EmbeddedKvOptions {
            max_memory: 0,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
        }
    }
}

/// The in-process [`KvStore`]: strings, hashes and sorted sets with
/// millisecond expiry, LRU-evicted within a memory bound, plus in-process
/// publish/subscribe. See the module docs for what it guarantees.
///
/// ```
/// use strata::engines::kv::KvStoreExt;
/// use strata::engines::kv::embedded::{EmbeddedKv, EmbeddedKvOptions};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let kv = EmbeddedKv::new(EmbeddedKvOptions { max_memory: 64 << 20, ..Default::default() });
/// kv.set("greeting", "hello".into()).await?;
/// assert_eq!(kv.get("greeting").await?, Some("hello".into()));
/// assert_eq!(kv.incr("visits").await?, 1);
/// # Ok::<(), strata::Error>(())
/// # }).unwrap();
/// ```
pub struct EmbeddedKv {
    cache: Cache<String, Arc<Entry>>,
    stripes: Box<[Mutex<()>]>,
    stripe_hasher: std::collections::hash_map::RandomState,
    clock: Clock,
    max_memory: u64,
    evictions: Arc<AtomicU64>,
    index: Arc<KeyIndex>,
    pubsub: Arc<PubSub>,
}

impl std::fmt::Debug for EmbeddedKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKv")
            .field("max_memory", &self.max_memory)
            .field("entries", &self.cache.entry_count())
            .field("weighted_size", &self.cache.weighted_size())
            .finish_non_exhaustive()
    }
}

/// Redis's error for a command given no keys, fields or members.
pub(super) fn wrong_arity(command: &str) -> Error {
    Error::invalid(format!(
        "ERR wrong number of arguments for '{command}' command"
    ))
}

impl EmbeddedKv {
    /// An empty store bounded by `options.max_memory`.
    pub fn new(options: EmbeddedKvOptions) -> Self {
        let clock = Clock::new();
        let evictions = Arc::new(AtomicU64::new(0));
        let index = Arc::new(KeyIndex::default());
        let (counter, removed) = (Arc::clone(&evictions), Arc::clone(&index));
        let mut builder = Cache::<String, Arc<Entry>>::builder()
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|key: &String, entry: &Arc<Entry>| entry.weight(key))
            .expire_after(DeadlineExpiry { clock })
            // Runs inside moka calls, possibly under a key's write lock: it
            // only counts and queues (a leaf lock), never takes another.
            .eviction_listener(move |key: Arc<String>, _entry, cause| match cause {
                RemovalCause::Size => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    removed.note_removed(key.as_ref().clone());
                }
                RemovalCause::Expired => removed.note_removed(key.as_ref().clone()),
                // Deletes update the index themselves; a replaced key stays.
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            });
        if options.max_memory > 0 {
            builder = builder.max_capacity(options.max_memory);
        }
        EmbeddedKv {
            cache: builder.build(),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stripe_hasher: Default::default(),
            clock,
            max_memory: options.max_memory,
            evictions,
            index,
            pubsub: Arc::new(PubSub::new(options.subscription_capacity.max(1))),
        }
    }

    /// `GET` without going through `async`: the fast path for callers on
    /// the hot path (no boxed future, no command value).
    pub fn get_sync(&self, key: &str) -> Result<Option<Bytes>> {
        self.get_string(key).map_err(|e| e.with_operation("get"))
    }

    /// Runs one command synchronously; [`KvStore::execute`] is this.
    pub fn execute_sync(&self, command: Command) -> Result<Reply> {
        let name = command.name();
        let reply = self.dispatch(command).map_err(|e| e.with_operation(name));
        // No write lock is held any more: forget the keys moka dropped.
        self.settle_index();
        reply
    }

    fn dispatch(&self, command: Command) -> Result<Reply> {
        command.check()?;
        match command {
            Command::Get { key } => self.get_string(&key).map(Reply::Value),
            Command::Set {
                key,
                value,
                options,
            } => self
                .write_string(&key, value, options, false)
                .map(|(written, _)| Reply::Bool(written)),
            Command::SetGet {
                key,
                value,
                options,
            } => self
                .write_string(&key, value, options, true)
                .map(|(_, old)| Reply::Value(old)),
            Command::GetDel { key } => self.getdel(&key),
            Command::GetEx { key, expiry } => self.getex(&key, expiry),
            Command::MGet { keys } => self.mget(&keys),
            Command::MSet { pairs } => self.mset(pairs),
            Command::MSetNx { pairs } => self.msetnx(pairs),
            Command::Append { key, value } => self.append(&key, &value),
            Command::StrLen { key } => self.strlen(&key),
            Command::Del { keys } => self.del(&keys),
            Command::Exists { keys } => self.exists(&keys),
            Command::Expire { key, ttl, options } => self.expire(&key, ttl, options),
            Command::Ttl { key } => self.ttl(&key),
            Command::Persist { key } => self.persist(&key),
            Command::Type { key } => self.key_type(&key),
            Command::IncrBy { key, delta } => self.incr_by(&key, delta),
            Command::IncrByFloat { key, delta } => self.incr_by_float(&key, delta),
            Command::HSet { key, fields } => self.hset(&key, fields),
            Command::HSetNx { key, field, value } => self.hsetnx(&key, field, value),
            Command::HGet { key, field } => self.hget(&key, &field),
            Command::HMGet { key, fields } => self.hmget(&key, &fields),
            Command::HGetAll { key } => self.hgetall(&key),
            Command::HKeys { key } => self.hkeys(&key),
            Command::HVals { key } => self.hvals(&key),
            Command::HExists { key, field } => self.hexists(&key, &field),
            Command::HStrLen { key, field } => self.hstrlen(&key, &field),
            Command::HDel { key, fields } => self.hdel(&key, &fields),
            Command::HIncrBy { key, field, delta } => self.hincr_by(&key, &field, delta),
            Command::HIncrByFloat { key, field, delta } => self.hincr_by_float(&key, &field, delta),
            Command::HLen { key } => self.hlen(&key),
            Command::ZAdd {
                key,
                members,
                options,
            } => self.zadd(&key, &members, options),
            Command::ZIncrBy { key, delta, member } => self.zincr_by(&key, delta, &member),
            Command::ZScore { key, member } => self.zscore(&key, &member),
            Command::ZRank { key, member, rev } => self.zrank(&key, &member, rev),
            Command::ZRange {
                key,
                start,
                stop,
                rev,
            } => self.zrange(&key, start, stop, rev),
            Command::ZRangeByScore {
                key,
                min,
                max,
                rev,
                limit,
            } => self.zrange_by_score(&key, min, max, rev, limit),
            Command::ZCount { key, min, max } => self.zcount(&key, min, max),
            Command::ZRemRangeByScore { key, min, max } => self.zrem_range_by_score(&key, min, max),
            Command::ZRem { key, members } => self.zrem(&key, &members),
            Command::ZCard { key } => self.zcard(&key),
            Command::CompareAndDelete { key, expected } => self.compare_and_delete(&key, &expected),
            Command::LockAcquire {
                key,
                token,
                ttl,
                fence_key,
            } => self.lock_acquire(&key, token, ttl, &fence_key),
            Command::LockExtend { key, token, ttl } => self.lock_extend(&key, &token, ttl),
            Command::RateLimit {
                key,
                limit,
                period,
                cost,
            } => self.rate_limit(&key, limit, period, cost),
            Command::ZAddBest {
                key,
                member,
                score,
                at_key,
                at,
            } => self.zadd_best(&key, &member, score, &at_key, at),
            Command::HSetIfNewer {
                key,
                fields,
                time_prefix,
            } => self.hset_if_newer(&key, fields, &time_prefix),
            Command::Publish { channel, message } => {
                Ok(Reply::Int(self.pubsub.publish(&channel, message) as i64))
            }
        }
    }

    /// The live entry at `key`: `None` when missing or past its deadline
    /// (whether or not moka has dropped it yet). The clock is read only for
    /// keys that have a deadline.
    fn live(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache
            .get(key)
            .filter(|entry| entry.is_live_at(|| self.clock.now()))
    }

    /// Stores `entry` at `key`, entering the key and its type in the scan
    /// index first unless moka holds it live already with that type. The
    /// caller holds `key`'s write lock, which is what keeps the index's
    /// invariant (see `keys`). The lookup is a use for the LRU, as the write
    /// is anyway.
    fn store(&self, key: &str, entry: Arc<Entry>) {
        let key_type = entry.key_type();
        let indexed = self
            .cache
            .get(key)
            .is_some_and(|current| current.key_type() == key_type);
        if !indexed {
            self.index.insert(key, key_type);
        }
        self.cache.insert(key.to_owned(), entry);
    }

    /// Deletes `key` (also an expired entry, freeing its weight now rather
    /// than at moka's next timer run). The caller holds `key`'s write lock.
    fn remove(&self, key: &str) {
        self.cache.invalidate(key);
        self.index.remove(key);
    }

    /// Runs `f` on the hash or sorted set at `key` (`None` when missing),
    /// failing with WRONGTYPE when the key holds another type.
    fn read_collection<C: Collection, T>(
        &self,
        key: &str,
        f: impl FnOnce(Option<&C>) -> T,
    ) -> Result<T> {
        match self.live(key) {
            None => Ok(f(None)),
            Some(entry) => match C::of(&entry.value) {
                Some(value) => Ok(f(Some(&*lock_value(value)?))),
                None => Err(Error::wrong_type()),
            },
        }
    }

    /// Applies `f` to the hash or sorted set at `key`, creating it when
    /// missing, under the key's write lock; then re-inserts the entry so
    /// that moka re-weighs it, or deletes the key when it was left empty.
    /// `f` must validate before mutating: its error leaves the value as is.
    fn write_collection<C: Collection, T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut C) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.write_lock(key);
        self.write_collection_locked(key, f)
    }

    /// [`write_collection`](Self::write_collection) for a caller that holds
    /// `key`'s write lock already (a command writing several keys).
    fn write_collection_locked<C: Collection, T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut C) -> Result<T>,
    ) -> Result<T> {
        match self.live(key) {
            None => {
                let mut value = C::default();
                let out = f(&mut value)?;
                if !value.is_empty() {
                    self.store(key, Entry::collection(value));
                }
                Ok(out)
            }
            Some(entry) => {
                let mutex = C::of(&entry.value).ok_or_else(Error::wrong_type)?;
                let mut value = lock_value(mutex)?;
                let out = f(&mut value)?;
                let (empty, bytes) = (value.is_empty(), value.bytes());
                drop(value);
                if empty {
                    self.remove(key);
                } else {
                    entry.set_value_bytes(bytes);
                    self.store(key, entry);
                }
                Ok(out)
            }
        }
    }

    fn stripe(&self, key: &str) -> usize {
        // The modulo keeps the index in range for any hash.
        (self.stripe_hasher.hash_one(key) % STRIPES as u64) as usize
    }

    /// The write lock of `key`'s stripe. It guards no data (`()`), so a
    /// poisoned stripe carries no broken state and is used as is.
    fn write_lock(&self, key: &str) -> MutexGuard<'_, ()> {
        self.stripes[self.stripe(key)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The write locks of all of `keys`, each stripe once, taken in stripe
    /// order so that two multi-key writers cannot deadlock.
    fn write_locks<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Vec<MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = keys.map(|key| self.stripe(key)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        stripes
            .into_iter()
            .map(|stripe| {
                self.stripes[stripe]
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
            })
            .collect()
    }
}

#[async_trait]
impl KvStore for EmbeddedKv {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn target(&self) -> String {
        if self.max_memory == 0 {
            "in-process (unbounded)".to_owned()
        } else {
            format!("in-process (max_memory {} bytes)", self.max_memory)
        }
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn execute(&self, command: Command) -> Result<Reply> {
        self.execute_sync(command)
    }

    async fn pipeline(&self, commands: Vec<Command>) -> Result<Vec<Result<Reply>>> {
        Ok(commands
            .into_iter()
            .map(|command| self.execute_sync(command))
            .collect())
    }

    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> Result<ScanPage> {
        self.scan_page(cursor, options)
            .map_err(|e| e.with_operation("scan"))
    }

    async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        self.pubsub
            .subscribe(channels)
            .map_err(|e| e.with_operation("subscribe"))
    }

    /// `keys` counts live keys by iterating (O(keys)): moka's own count
    /// still includes keys whose deadline has passed until its timer wheel
    /// (about one-second buckets) reclaims them. `used_memory` is moka's
    /// weighed size, which likewise includes such keys for up to about a
    /// second (as Redis's memory includes keys not yet actively expired).
    async fn info(&self) -> Result<KvInfo> {
        // Evictions, removals and weight changes are applied lazily by moka;
        // settle them so the figures are current.
        self.cache.run_pending_tasks();
        self.settle_index();
        let now = self.clock.now();
        let keys = self
            .cache
            .iter()
            .filter(|(_, entry)| entry.is_live_at(|| now))
            .count();
        Ok(KvInfo {
            keys: keys as u64,
            used_memory: self.cache.weighted_size(),
            max_memory: self.max_memory,
            evictions: self.evictions.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engines::kv::{KvStoreExt, SetOptions};

    /// The scan index holds the live keys, not every key ever written: keys
    /// evicted, expired and deleted leave it.
    #[tokio::test]
    async fn the_scan_index_forgets_keys_that_are_gone() {
        let kv = EmbeddedKv::new(EmbeddedKvOptions {
            max_memory: 64 * 1024,
            ..Default::default()
        });
        let value = Bytes::from(vec![b'x'; 200]);
        for i in 0..5_000 {
            kv.set(&format!("fill:{i}"), value.clone()).await.unwrap();
        }
        let info = kv.info().await.unwrap();
        assert!(info.evictions > 0, "{info:?}");
        assert_eq!(kv.index.len() as u64, info.keys, "{info:?}");
        assert!(kv.index.len() < 1_000, "{}", kv.index.len());

        let kv = EmbeddedKv::new(EmbeddedKvOptions::default());
        for i in 0..100 {
            let key = format!("short:{i}");
            kv.set_with(
                &key,
                value.clone(),
                SetOptions::ttl(Duration::from_millis(1)),
            )
            .await
            .unwrap();
        }
        kv.set("stays", value.clone()).await.unwrap();
        kv.set("deleted", value.clone()).await.unwrap();
        // The inherent `del` (the command itself) shadows the helper here.
        KvStoreExt::del(&kv, &["deleted".into()]).await.unwrap();
        assert_eq!(kv.index.len(), 101);
        // Wait for the keys' deadlines, then let moka's housekeeping remove
        // them (its expirations are what the index learns from).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while kv.index.len() > 1 {
            assert!(std::time::Instant::now() < deadline, "{}", kv.index.len());
            tokio::time::sleep(Duration::from_millis(5)).await;
            kv.info().await.unwrap();
        }
        assert_eq!(kv.scan_all("*").await.unwrap(), ["stays"]);
    }
}
