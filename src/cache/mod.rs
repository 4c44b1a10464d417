//! The three-tier cache: [`TieredCache`], in-process memory (L1, moka) in
//! front of the key-value engine (L2) in front of a loader (L3: a query or
//! a computation). It knows nothing of what it caches.
//!
//! # What a lookup does
//!
//! [`TieredCache::get_or_load`]:
//! 1. L1: a fresh entry answers ([`Tier::L1`]). An entry read after
//!    [`CacheSettings::eager_refresh`] of its freshness starts a refresh in
//!    the background, so a hot key never expires under load.
//! 2. Otherwise L2: a fresh entry answers ([`Tier::L2`]) and fills L1.
//!    The read is the caller's own (no task, no coordination), unless a
//!    load of the key is already in flight: then the caller waits for it.
//! 3. On a miss in both, one *flight* per key and process loads it;
//!    concurrent lookups of the key wait on that flight (single-flight,
//!    counted as `coalesced`).
//! 4. When [`CacheSettings::distributed_lock`] is on, the flight
//!    takes a short lock in L2 so that one instance loads a cold key while
//!    the others wait for its result in L2; then it calls the loader
//!    ([`Tier::Loaded`]), and writes L1 and L2. "Not found" is cached too,
//!    for [`CacheSettings::negative_ttl`].
//!
//! Freshness lasts `ttl` plus a random jitter of up to `jitter × ttl`, so
//! entries loaded together do not expire together.
//!
//! # Failing safe
//!
//! - L2 failing (an error, [`CacheSettings::l2_timeout`] passed, its
//!   breaker open) never fails a lookup: serving goes on from L1 and the
//!   loader, and the lookup says it is `degraded`.
//! - An entry stays usable past its freshness up to
//!   [`CacheSettings::fail_safe_max_age`] from its load. When the loader
//!   fails, or is slower than [`CacheSettings::soft_timeout`], and such an
//!   entry exists (in L1 or L2), it is served as [`Tier::Stale`]; the load
//!   goes on in the background and refreshes the entry when it ends.
//! - [`CacheSettings::hard_timeout`] bounds every lookup.
//!
//! # Invalidation
//!
//! [`TieredCache::set`] writes through both tiers; [`invalidate`],
//! [`invalidate_tag`] and [`clear`] remove from both. Each also reaches the
//! L1 of every other instance through the [`Backplane`]. A load that was in
//! flight when its key was invalidated answers its callers but is not
//! stored, so it cannot put back what the invalidation removed.
//!
//! [`invalidate`]: TieredCache::invalidate
//! [`invalidate_tag`]: TieredCache::invalidate_tag
//! [`clear`]: TieredCache::clear
//!
//! # Batches
//!
//! [`TieredCache::get_or_load_many`] reads L1, then every L1 miss from L2
//! in one round trip, then calls the loader once for all that remain, with
//! a result per key. Batches do not join single-key flights.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use bytesize::ByteSize;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use moka::notification::RemovalCause;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::engines::KvStore;
use crate::engines::kv::{Command, ExpireOptions, KvStoreExt, SetOptions};
use crate::error::{Error, ErrorKind, Result};

mod backplane;
pub mod codec;
mod stats;

pub use backplane::{Backplane, BackplaneStatus, CHANNEL, Invalidation};
pub use stats::CacheStats;

use backplane::Member;
use stats::Counters;

/// How a cache behaves. `[cache]` in the configuration gives every cache's
/// defaults; a service may change its own `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// The most L1 holds, counted as encoded values plus keys; the least
    /// recently used entries are evicted beyond it.
    pub l1_capacity: ByteSize,
    /// How long a loaded value is fresh.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Up to this fraction of `ttl` is added at random to each entry's
    /// freshness (0 to 1).
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub jitter: f64,
    /// How long "not found" is remembered.
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// How old (from its load) an entry may be and still be served stale
    /// when loading fails or is slow; 0 turns fail-safe off.
    #[serde(with = "humantime_serde")]
    pub fail_safe_max_age: Duration,
    /// A load slower than this serves the stale entry, when there is one,
    /// and goes on in the background.
    #[serde(with = "humantime_serde")]
    pub soft_timeout: Duration,
    /// No lookup takes longer than this.
    #[serde(with = "humantime_serde")]
    pub hard_timeout: Duration,
    /// One read or write of L2; past it, the lookup goes on without L2.
    #[serde(with = "humantime_serde")]
    pub l2_timeout: Duration,
    /// A fresh entry read after this fraction of its freshness is
    /// refreshed in the background (0 < f < 1); 0 turns it off.
    #[serde(deserialize_with = "crate::config::lenient::f64")]
    pub eager_refresh: f64,
    /// One load of a cold key across instances: a lock in L2.
    #[serde(deserialize_with = "crate::config::lenient::bool")]
    pub distributed_lock: bool,
    /// How long that lock is held at most; other instances wait for the
    /// value that long before loading it themselves.
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            l1_capacity: ByteSize::mib(64),
            ttl: Duration::from_secs(300),
            jitter: 0.1,
            negative_ttl: Duration::from_secs(5),
            fail_safe_max_age: Duration::from_secs(3600),
            soft_timeout: Duration::from_millis(200),
            hard_timeout: Duration::from_secs(5),
            l2_timeout: Duration::from_millis(100),
            eager_refresh: 0.8,
            distributed_lock: true,
            lock_ttl: Duration::from_secs(2),
        }
    }
}

impl CacheSettings {
    /// Refuses settings that make no sense, naming the key.
    pub fn check(&self) -> Result<()> {
        let bad =
            |key: &str, why: &str| Err(Error::new(ErrorKind::Config, format!("cache.{key} {why}")));
        if self.ttl.is_zero() {
            return bad("ttl", "must be more than zero");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("jitter", "must be between 0 and 1");
        }
        if !(0.0..1.0).contains(&self.eager_refresh) {
            return bad("eager_refresh", "must be at least 0 and below 1");
        }
        if self.hard_timeout.is_zero() {
            return bad("hard_timeout", "must be more than zero");
        }
        if self.l2_timeout.is_zero() {
            return bad("l2_timeout", "must be more than zero");
        }
        if self.soft_timeout > self.hard_timeout {
            return bad("soft_timeout", "must not exceed hard_timeout");
        }
        if self.distributed_lock && self.lock_ttl.is_zero() {
            return bad("lock_ttl", "must be more than zero");
        }
        if self.l1_capacity.as_u64() == 0 {
            return bad("l1_capacity", "must be more than zero");
        }
        Ok(())
    }
}

/// Which tier answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// This process's memory.
    L1,
    /// The key-value engine.
    L2,
    /// The loader, just now.
    Loaded,
    /// An entry past its freshness, within its fail-safe age: the load
    /// failed or was slow.
    Stale,
}

impl Tier {
    /// `l1`, `l2`, `loaded` or `stale`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::Loaded => "loaded",
            Tier::Stale => "stale",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup<V> {
    /// The value; `None` when the loader found nothing (possibly
    /// remembered, see [`CacheSettings::negative_ttl`]).
    pub value: Option<V>,
    /// Which tier answered.
    pub tier: Tier,
    /// How old the value is (since its load).
    pub age: Duration,
    /// L2 could not be used for this lookup (it failed or was too slow).
    pub degraded: bool,
}

/// The clock a cache reads, in Unix milliseconds. Tests give their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// What a cache's value must be.
pub trait Cacheable: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Cacheable for T {}

/// The loader's answers for a batch: per key, the value, `None` for "not
/// found", or the error of that key alone.
pub type BatchAnswers<V> = HashMap<String, Result<Option<V>>>;

#[derive(Debug)]
struct Entry<V> {
    value: Option<V>,
    created_ms: u64,
    fresh_ms: u64,
    tags: Arc<[String]>,
    /// Bytes it stands for in L1.
    weight: u32,
    /// How long L1 keeps it, from its insertion.
    l1_life: Duration,
}

impl<V> Entry<V> {
    fn age_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.created_ms)
    }

    fn is_fresh(&self, now: u64) -> bool {
        self.age_ms(now) < self.fresh_ms
    }

    fn age(&self, now: u64) -> Duration {
        Duration::from_millis(self.age_ms(now))
    }
}

type Flight<V> = Shared<BoxFuture<'static, std::result::Result<Loaded<V>, Arc<Error>>>>;

#[derive(Debug)]
struct Loaded<V> {
    entry: Arc<Entry<V>>,
    tier: Tier,
    degraded: bool,
}

impl<V> Clone for Loaded<V> {
    fn clone(&self) -> Self {
        Loaded {
            entry: Arc::clone(&self.entry),
            tier: self.tier,
            degraded: self.degraded,
        }
    }
}

struct FlightState<V> {
    done: Flight<V>,
    /// Set when the key is invalidated while loading: the result is not
    /// stored.
    poisoned: AtomicBool,
    /// A stale entry the flight found in L2, usable when the load fails.
    stale: Mutex<Option<Arc<Entry<V>>>>,
}

/// A three-tier cache of `V` by string key (see the module documentation).
/// Cheap to clone; clones share everything.
pub struct TieredCache<V: Cacheable> {
    inner: Arc<Inner<V>>,
}

impl<V: Cacheable> Clone for TieredCache<V> {
    fn clone(&self) -> Self {
        TieredCache {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V: Cacheable> std::fmt::Debug for TieredCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredCache")
            .field("name", &self.inner.name)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

struct Inner<V: Cacheable> {
    name: String,
    settings: CacheSettings,
    l1: moka::sync::Cache<String, Arc<Entry<V>>>,
    l2: Option<Arc<dyn KvStore>>,
    backplane: Backplane,
    clock: Clock,
    flights: Mutex<HashMap<String, Arc<FlightState<V>>>>,
    /// Bumped by every invalidation: a batch load that saw it change does
    /// not store its results.
    generation: AtomicU64,
    counters: Arc<Counters>,
}

/// Builds a [`TieredCache`].
pub struct CacheBuilder<V> {
    value: std::marker::PhantomData<fn() -> V>,
    name: String,
    settings: CacheSettings,
    l2: Option<Arc<dyn KvStore>>,
    backplane: Backplane,
    clock: Clock,
}

impl<V> std::fmt::Debug for CacheBuilder<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<V: Cacheable> CacheBuilder<V> {
    /// The settings (default: [`CacheSettings::default`]).
    pub fn settings(mut self, settings: CacheSettings) -> Self {
        self.settings = settings;
        self
    }

    /// L2 (default: none, L1 and the loader only).
    pub fn l2(mut self, kv: Arc<dyn KvStore>) -> Self {
        self.l2 = Some(kv);
        self
    }

    /// The backplane its invalidations travel on (default: this process
    /// only).
    pub fn backplane(mut self, backplane: &Backplane) -> Self {
        self.backplane = backplane.clone();
        self
    }

    /// The clock (default: the system's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The cache; `Config` error when the settings make no sense.
    pub fn build(self) -> Result<TieredCache<V>> {
        self.settings.check()?;
        let counters = Arc::new(Counters::default());
        let evictions = Arc::clone(&counters);
        let l1 = moka::sync::Cache::builder()
            .max_capacity(self.settings.l1_capacity.as_u64())
            .weigher(|key: &String, entry: &Arc<Entry<V>>| {
                entry
                    .weight
                    .saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
            })
            .expire_after(L1Expiry)
            .support_invalidation_closures()
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    Counters::bump(&evictions.evictions);
                }
            })
            .build();
        let inner = Arc::new(Inner {
            name: self.name,
            settings: self.settings,
            l1,
            l2: self.l2,
            backplane: self.backplane,
            clock: self.clock,
            flights: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            counters,
        });
        let member: Arc<dyn Member> = inner.clone();
        inner.backplane.join(Arc::downgrade(&member));
        Ok(TieredCache { inner })
    }
}

struct L1Expiry;

impl<V> moka::Expiry<String, Arc<Entry<V>>> for L1Expiry {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<Entry<V>>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.l1_life)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Arc<Entry<V>>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.l1_life)
    }
}

fn lock_poisoned<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh copy of a shared error, for each caller that waited on it.
fn reissue(e: &Error) -> Error {
    let mut out = Error::new(e.kind(), e.message());
    for operation in e.operations().iter().rev() {
        out = out.with_operation(operation);
    }
    if let Some(wait) = e.retry_after() {
        out = out.with_retry_after(wait);
    }
    if let Some(target) = e.target() {
        out = out.with_target(target.to_owned());
    }
    if let Some(field) = e.field() {
        out = out.with_field(field.to_owned());
    }
    out
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<V: Cacheable> TieredCache<V> {
    /// A builder for the cache `name` (which names its keys in L2 and its
    /// messages on the backplane: two instances' caches of one name share
    /// entries).
    pub fn builder(name: impl Into<String>) -> CacheBuilder<V> {
        CacheBuilder {
            value: std::marker::PhantomData,
            name: name.into(),
            settings: CacheSettings::default(),
            l2: None,
            backplane: Backplane::local(),
            clock: system_clock(),
        }
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Its settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    /// Its counters since it was built.
    pub fn stats(&self) -> CacheStats {
        self.inner.stats()
    }

    /// The value of `key`: from L1, L2, or `load` (see the module
    /// documentation). `load` answers `Ok(None)` for "not found".
    ///
    /// Errors: the loader's error when no stale value could stand in, or
    /// `Timeout` past [`CacheSettings::hard_timeout`].
    pub async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> Result<Lookup<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>>> + Send + 'static,
    {
        self.get_or_load_tagged(key, &[], load).await
    }

    /// [`get_or_load`](TieredCache::get_or_load) storing a loaded value
    /// with `tags`, for [`invalidate_tag`](TieredCache::invalidate_tag).
    pub async fn get_or_load_tagged<F, Fut>(
        &self,
        key: &str,
        tags: &[String],
        load: F,
    ) -> Result<Lookup<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>>> + Send + 'static,
    {
        let inner = &self.inner;
        let now = (inner.clock)();
        let mut fallback = None;
        if let Some(entry) = inner.l1.get(key) {
            if entry.is_fresh(now) {
                Counters::bump(&inner.counters.l1_hits);
                self.maybe_refresh(key, tags, &entry, now, load);
                return Ok(Lookup {
                    value: entry.value.clone(),
                    tier: Tier::L1,
                    age: entry.age(now),
                    degraded: false,
                });
            }
            if inner.usable_stale(&entry, now) {
                fallback = Some(entry);
            }
        }
        // L2 is read here, without a flight: concurrent readers of a key
        // each read L2 (cheap), and only a miss in both tiers goes through
        // the single flight to the loader. Unless a flight is already
        // loading the key: then its result is what to wait for.
        let mut l2_checked = None;
        let mut l2_stale = None;
        if let Some(kv) = &inner.l2
            && !lock_poisoned(&inner.flights).contains_key(key)
        {
            let generation = inner.generation.load(Ordering::Acquire);
            match inner.fetch_l2(kv.as_ref(), &inner.l2_key(key), None).await {
                L2Read::Fresh(entry) => {
                    Counters::bump(&inner.counters.l2_hits);
                    let entry = Arc::new(entry);
                    // Not stored when an invalidation came meanwhile.
                    if inner.generation.load(Ordering::Acquire) == generation {
                        inner.l1.insert(key.to_owned(), Arc::clone(&entry));
                    }
                    return Ok(Lookup {
                        value: entry.value.clone(),
                        tier: Tier::L2,
                        age: entry.age((inner.clock)()),
                        degraded: false,
                    });
                }
                L2Read::Stale(entry) => {
                    l2_checked = Some(false);
                    l2_stale = Some(entry);
                }
                L2Read::Miss => l2_checked = Some(false),
                L2Read::Failed => l2_checked = Some(true),
            }
        }
        let (flight, joined) = self.flight(key, tags, load, None, l2_checked);
        if joined {
            Counters::bump(&inner.counters.coalesced);
        } else if let Some(stale) = l2_stale.clone() {
            // Other callers joining this flight may serve it too.
            lock_poisoned(&flight.stale).get_or_insert(stale);
        }
        self.wait(key, &flight, fallback.or(l2_stale)).await
    }

    fn maybe_refresh<F, Fut>(&self, key: &str, tags: &[String], entry: &Entry<V>, now: u64, load: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>>> + Send + 'static,
    {
        let eager = self.inner.settings.eager_refresh;
        if eager <= 0.0 || entry.value.is_none() {
            return;
        }
        let threshold = (entry.fresh_ms as f64 * eager) as u64;
        if entry.age_ms(now) < threshold {
            return;
        }
        if lock_poisoned(&self.inner.flights).contains_key(key) {
            return;
        }
        Counters::bump(&self.inner.counters.eager_refreshes);
        let _ = self.flight(key, tags, load, Some(entry.created_ms), None);
    }

    /// Joins the flight of `key`, or starts one; whether it joined.
    fn flight<F, Fut>(
        &self,
        key: &str,
        tags: &[String],
        load: F,
        newer_than: Option<u64>,
        l2_checked: Option<bool>,
    ) -> (Arc<FlightState<V>>, bool)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>>> + Send + 'static,
    {
        let mut flights = lock_poisoned(&self.inner.flights);
        if let Some(existing) = flights.get(key) {
            return (Arc::clone(existing), true);
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<Arc<FlightState<V>>>();
        let inner = Arc::clone(&self.inner);
        let owned_key = key.to_owned();
        let tags: Arc<[String]> = tags.into();
        let task = tokio::spawn(async move {
            let Ok(state) = rx.await else {
                return Err(Arc::new(Error::internal("a cache load lost its state")));
            };
            let result = inner
                .load_one(&owned_key, tags, load, &state, newer_than, l2_checked)
                .await;
            // Leave the map before answering, so no later lookup joins a
            // finished flight.
            let mut flights = lock_poisoned(&inner.flights);
            if flights
                .get(&owned_key)
                .is_some_and(|f| Arc::ptr_eq(f, &state))
            {
                flights.remove(&owned_key);
            }
            result.map_err(Arc::new)
        });
        let done = async move {
            match task.await {
                Ok(result) => result,
                Err(e) => Err(Arc::new(Error::internal(format!(
                    "a cache load panicked: {e}"
                )))),
            }
        }
        .boxed()
        .shared();
        let state = Arc::new(FlightState {
            done,
            poisoned: AtomicBool::new(false),
            stale: Mutex::new(None),
        });
        flights.insert(key.to_owned(), Arc::clone(&state));
        drop(flights);
        let _ = tx.send(Arc::clone(&state));
        (state, false)
    }

    async fn wait(
        &self,
        key: &str,
        flight: &FlightState<V>,
        fallback: Option<Arc<Entry<V>>>,
    ) -> Result<Lookup<V>> {
        let inner = &self.inner;
        let started = tokio::time::Instant::now();
        let mut done = flight.done.clone();
        let stale = |flight: &FlightState<V>| {
            fallback
                .clone()
                .or_else(|| lock_poisoned(&flight.stale).clone())
        };
        if !inner.settings.fail_safe_max_age.is_zero() {
            match tokio::time::timeout(inner.settings.soft_timeout, &mut done).await {
                Ok(result) => return self.finish(key, result, stale(flight)),
                Err(_) => {
                    if let Some(entry) = stale(flight) {
                        return Ok(self.serve_stale(key, &entry, "slower than soft_timeout"));
                    }
                }
            }
        }
        let left = inner
            .settings
            .hard_timeout
            .saturating_sub(started.elapsed());
        match tokio::time::timeout(left, done).await {
            Ok(result) => self.finish(key, result, stale(flight)),
            Err(_) => match stale(flight) {
                Some(entry) => Ok(self.serve_stale(key, &entry, "slower than hard_timeout")),
                None => Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "cache `{}`: loading `{key}` took longer than {:?}",
                        inner.name, inner.settings.hard_timeout
                    ),
                )
                .with_operation("cache_load")),
            },
        }
    }

    fn finish(
        &self,
        key: &str,
        result: std::result::Result<Loaded<V>, Arc<Error>>,
        stale: Option<Arc<Entry<V>>>,
    ) -> Result<Lookup<V>> {
        let now = (self.inner.clock)();
        match result {
            Ok(loaded) => Ok(Lookup {
                value: loaded.entry.value.clone(),
                tier: loaded.tier,
                age: loaded.entry.age(now),
                degraded: loaded.degraded,
            }),
            Err(e) => match stale {
                Some(entry) => Ok(self.serve_stale(key, &entry, e.message())),
                None => Err(reissue(&e)),
            },
        }
    }

    fn serve_stale(&self, key: &str, entry: &Entry<V>, why: &str) -> Lookup<V> {
        Counters::bump(&self.inner.counters.stale_served);
        tracing::debug!(cache = %self.inner.name, key, "serving a stale entry: {why}");
        let now = (self.inner.clock)();
        Lookup {
            value: entry.value.clone(),
            tier: Tier::Stale,
            age: entry.age(now),
            degraded: true,
        }
    }

    /// The values of `keys` (duplicates answered once), in their order,
    /// each with its own result: L1, then every L1 miss from L2 in one
    /// round trip, then `load` called once with every key still missing.
    ///
    /// `load` answers a map with an entry per key it was given (a key it
    /// leaves out gets an `Internal` error); its error, or its running past
    /// the timeouts, becomes each missing key's, unless a stale value of
    /// that key can stand in (see the module documentation).
    pub async fn get_or_load_many<F, Fut>(
        &self,
        keys: &[String],
        load: F,
    ) -> Vec<(String, Result<Lookup<V>>)>
    where
        F: FnOnce(Vec<String>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<BatchAnswers<V>>> + Send + 'static,
    {
        let inner = &self.inner;
        let now = (inner.clock)();
        let mut seen = HashSet::new();
        let keys: Vec<String> = keys
            .iter()
            .filter(|k| seen.insert(k.as_str()))
            .cloned()
            .collect();
        let mut answers: HashMap<String, Result<Lookup<V>>> = HashMap::new();
        let mut fallbacks: HashMap<String, Arc<Entry<V>>> = HashMap::new();
        let mut missing = Vec::new();
        for key in &keys {
            match inner.l1.get(key) {
                Some(entry) if entry.is_fresh(now) => {
                    Counters::bump(&inner.counters.l1_hits);
                    answers.insert(
                        key.clone(),
                        Ok(Lookup {
                            value: entry.value.clone(),
                            tier: Tier::L1,
                            age: entry.age(now),
                            degraded: false,
                        }),
                    );
                }
                Some(entry) => {
                    if inner.usable_stale(&entry, now) {
                        fallbacks.insert(key.clone(), entry);
                    }
                    missing.push(key.clone());
                }
                None => missing.push(key.clone()),
            }
        }
        let mut degraded = false;
        if !missing.is_empty()
            && let Some(kv) = &inner.l2
        {
            let l2_keys: Vec<String> = missing.iter().map(|k| inner.l2_key(k)).collect();
            match tokio::time::timeout(inner.settings.l2_timeout, kv.mget(&l2_keys)).await {
                Ok(Ok(values)) => {
                    let mut still = Vec::new();
                    for (key, raw) in missing.into_iter().zip(values) {
                        let entry = raw.and_then(|raw| inner.decode(&raw));
                        match entry {
                            Some(entry) if entry.is_fresh(now) => {
                                Counters::bump(&inner.counters.l2_hits);
                                let entry = Arc::new(entry);
                                inner.l1.insert(key.clone(), Arc::clone(&entry));
                                answers.insert(
                                    key,
                                    Ok(Lookup {
                                        value: entry.value.clone(),
                                        tier: Tier::L2,
                                        age: entry.age(now),
                                        degraded: false,
                                    }),
                                );
                            }
                            Some(entry) => {
                                if inner.usable_stale(&entry, now) {
                                    fallbacks.entry(key.clone()).or_insert(Arc::new(entry));
                                }
                                still.push(key);
                            }
                            None => still.push(key),
                        }
                    }
                    missing = still;
                }
                Ok(Err(e)) => {
                    inner.l2_failed("mget", &e);
                    degraded = true;
                }
                Err(_) => {
                    inner.l2_timed_out("mget");
                    degraded = true;
                }
            }
        }
        if !missing.is_empty() {
            Counters::add(&inner.counters.misses, missing.len() as u64);
            Counters::bump(&inner.counters.loads);
            let generation = inner.generation.load(Ordering::Acquire);
            let task_inner = Arc::clone(inner);
            let asked = missing.clone();
            let task = tokio::spawn(async move {
                let answers = tokio::time::timeout(task_inner.settings.hard_timeout, load(asked))
                    .await
                    .map_err(|_| {
                        Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "cache `{}`: the batch load took longer than {:?}",
                                task_inner.name, task_inner.settings.hard_timeout
                            ),
                        )
                        .with_operation("cache_load")
                    })
                    .and_then(|r| r);
                match answers {
                    Ok(answers) => {
                        let stored = task_inner.store_batch(&answers, generation).await;
                        Ok((answers, stored))
                    }
                    Err(e) => {
                        Counters::bump(&task_inner.counters.load_errors);
                        Err(e)
                    }
                }
            });
            let all_have_fallbacks = missing.iter().all(|k| fallbacks.contains_key(k));
            let wait = if !inner.settings.fail_safe_max_age.is_zero() && all_have_fallbacks {
                inner.settings.soft_timeout
            } else {
                inner.settings.hard_timeout
            };
            let outcome = match tokio::time::timeout(wait, task).await {
                Ok(Ok(result)) => result,
                Ok(Err(e)) => Err(Error::internal(format!("a cache batch load panicked: {e}"))),
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("cache `{}`: the batch load is slow", inner.name),
                )
                .with_operation("cache_load")),
            };
            match outcome {
                Ok((mut loaded, (entries, store_degraded))) => {
                    for key in missing {
                        let answer = match loaded.remove(&key) {
                            // An answer without an entry: it did not encode.
                            Some(Ok(_)) => match entries.get(&key) {
                                Some(entry) => Ok(Lookup {
                                    value: entry.value.clone(),
                                    tier: Tier::Loaded,
                                    age: Duration::ZERO,
                                    degraded: degraded || store_degraded,
                                }),
                                None => Err(Error::internal(format!(
                                    "cache `{}`: the value loaded for `{key}` does not encode",
                                    inner.name
                                ))
                                .with_operation("cache_encode")),
                            },
                            Some(Err(e)) => match fallbacks.get(&key) {
                                Some(entry) => Ok(self.serve_stale(&key, entry, e.message())),
                                None => Err(e),
                            },
                            None => Err(Error::internal(format!(
                                "cache `{}`: the loader gave no answer for `{key}`",
                                inner.name
                            ))
                            .with_operation("cache_load")),
                        };
                        answers.insert(key, answer);
                    }
                }
                Err(e) => {
                    for key in missing {
                        let answer = match fallbacks.get(&key) {
                            Some(entry) => Ok(self.serve_stale(&key, entry, e.message())),
                            None => Err(reissue(&e)),
                        };
                        answers.insert(key, answer);
                    }
                }
            }
        }
        keys.into_iter()
            .map(|key| {
                let answer = answers.remove(&key).unwrap_or_else(|| {
                    Err(Error::internal("a cache batch lost a key").with_operation("cache_load"))
                });
                let answer = answer.map(|mut lookup| {
                    lookup.degraded |= degraded;
                    lookup
                });
                (key, answer)
            })
            .collect()
    }

    /// Writes `value` through L1 and L2 with `tags`, and tells the other
    /// instances to drop the key from their L1. A failing L2 is counted
    /// and logged, not returned: the entry is then in this instance's L1
    /// only. Returns whether L2 took it.
    pub async fn set(&self, key: &str, value: V, tags: &[String]) -> Result<bool> {
        let inner = &self.inner;
        inner.poison(key);
        inner.generation.fetch_add(1, Ordering::AcqRel);
        let now = (inner.clock)();
        let (entry, raw) = inner.entry(Some(value), now, tags.into())?;
        let entry = Arc::new(entry);
        inner.l1.insert(key.to_owned(), Arc::clone(&entry));
        let stored = inner.write_l2(key, &entry, raw).await;
        inner.announce(Invalidation::Key(key.to_owned())).await;
        Ok(stored)
    }

    /// Removes `key` from both tiers here and from the L1 of every other
    /// instance. Whether L2 and the backplane took it (a `false` is
    /// counted and logged: other instances may serve the entry until it
    /// expires).
    pub async fn invalidate(&self, key: &str) -> bool {
        let inner = &self.inner;
        Counters::bump(&inner.counters.invalidations);
        inner.poison(key);
        inner.generation.fetch_add(1, Ordering::AcqRel);
        inner.l1.invalidate(key);
        let mut ok = true;
        if let Some(kv) = &inner.l2 {
            let deleted =
                tokio::time::timeout(inner.settings.l2_timeout, kv.del(&[inner.l2_key(key)])).await;
            ok &= inner.l2_outcome("del", deleted);
        }
        ok & inner.announce(Invalidation::Key(key.to_owned())).await
    }

    /// Removes every entry stored with `tag`, in both tiers here and from
    /// the L1 of every other instance. Whether L2 and the backplane took
    /// it.
    pub async fn invalidate_tag(&self, tag: &str) -> bool {
        let inner = &self.inner;
        Counters::bump(&inner.counters.invalidations);
        inner.poison_all();
        inner.generation.fetch_add(1, Ordering::AcqRel);
        inner.drop_tag_l1(tag);
        let mut ok = true;
        if let Some(kv) = &inner.l2 {
            let index = inner.tag_key(tag);
            let removed = tokio::time::timeout(inner.settings.l2_timeout, async {
                let keys = kv.hkeys(&index).await?;
                let mut doomed: Vec<String> = keys.iter().map(|k| inner.l2_key(k)).collect();
                doomed.push(index.clone());
                kv.del(&doomed).await
            })
            .await;
            ok &= inner.l2_outcome("invalidate_tag", removed);
        }
        ok & inner.announce(Invalidation::Tag(tag.to_owned())).await
    }

    /// Removes everything, in both tiers here and from the L1 of every
    /// other instance. Whether L2 and the backplane took it.
    pub async fn clear(&self) -> bool {
        let inner = &self.inner;
        Counters::bump(&inner.counters.invalidations);
        inner.poison_all();
        inner.generation.fetch_add(1, Ordering::AcqRel);
        inner.l1.invalidate_all();
        let mut ok = true;
        if let Some(kv) = &inner.l2 {
            let pattern = format!("{}*", inner.l2_prefix());
            let removed = kv.delete_pattern(&pattern).await;
            if let Err(e) = &removed {
                inner.l2_failed("clear", e);
                ok = false;
            }
        }
        ok & inner.announce(Invalidation::Clear).await
    }

    /// Drops `key` from this instance's L1 only (what a backplane message
    /// does).
    pub fn forget_local(&self, key: &str) {
        self.inner.l1.invalidate(key);
    }
}

impl<V: Cacheable> Inner<V> {
    fn stats(&self) -> CacheStats {
        self.l1.run_pending_tasks();
        self.counters
            .snapshot(&self.name, self.l1.entry_count(), self.l1.weighted_size())
    }

    fn l2_prefix(&self) -> String {
        format!("cache:{}:", self.name)
    }

    fn l2_key(&self, key: &str) -> String {
        format!("cache:{}:v:{key}", self.name)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("cache:{}:tag:{tag}", self.name)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("cache:{}:lock:{key}", self.name)
    }

    fn usable_stale(&self, entry: &Entry<V>, now: u64) -> bool {
        let max = millis(self.settings.fail_safe_max_age);
        max > 0 && entry.value.is_some() && entry.age_ms(now) < max
    }

    /// How long an entry of this freshness lives in either tier.
    fn lifetime(&self, fresh_ms: u64) -> u64 {
        fresh_ms.max(millis(self.settings.fail_safe_max_age))
    }

    fn decode(&self, raw: &[u8]) -> Option<Entry<V>> {
        let envelope = codec::decode::<V>(raw)?;
        let lifetime = self.lifetime(envelope.fresh_ms);
        let now = (self.clock)();
        let left = lifetime.saturating_sub(now.saturating_sub(envelope.created_ms));
        Some(Entry {
            value: envelope.value,
            created_ms: envelope.created_ms,
            fresh_ms: envelope.fresh_ms,
            tags: envelope.tags.into(),
            weight: u32::try_from(raw.len()).unwrap_or(u32::MAX),
            l1_life: Duration::from_millis(left.max(1)),
        })
    }

    fn entry(
        &self,
        value: Option<V>,
        now: u64,
        tags: Arc<[String]>,
    ) -> Result<(Entry<V>, Vec<u8>)> {
        let base = if value.is_some() {
            self.settings.ttl
        } else {
            self.settings.negative_ttl
        };
        let base_ms = millis(base);
        let jitter_ms = (base_ms as f64 * self.settings.jitter) as u64;
        let fresh_ms = if jitter_ms > 0 && value.is_some() {
            base_ms + rand::rng().random_range(0..=jitter_ms)
        } else {
            base_ms
        };
        let raw = codec::encode(value.as_ref(), now, fresh_ms, &tags)?;
        let lifetime = if value.is_some() {
            self.lifetime(fresh_ms)
        } else {
            fresh_ms
        };
        Ok((
            Entry {
                value,
                created_ms: now,
                fresh_ms,
                tags,
                weight: u32::try_from(raw.len()).unwrap_or(u32::MAX),
                l1_life: Duration::from_millis(lifetime.max(1)),
            },
            raw,
        ))
    }

    /// Writes an entry and its tag index to L2; whether it could.
    async fn write_l2(&self, key: &str, entry: &Entry<V>, raw: Vec<u8>) -> bool {
        let Some(kv) = &self.l2 else { return true };
        let life = Duration::from_millis(entry.l1_life.as_millis().max(1) as u64);
        let mut commands = vec![Command::Set {
            key: self.l2_key(key),
            value: Bytes::from(raw),
            options: SetOptions::ttl(life),
        }];
        for tag in entry.tags.iter() {
            let index = self.tag_key(tag);
            commands.push(Command::HSet {
                key: index.clone(),
                fields: vec![(key.to_owned(), Bytes::new())],
            });
            // The index lives as long as its longest-lived entry: set an
            // expiry when it has none, lengthen it otherwise.
            commands.push(Command::Expire {
                key: index.clone(),
                ttl: life,
                options: ExpireOptions::nx(),
            });
            commands.push(Command::Expire {
                key: index,
                ttl: life,
                options: ExpireOptions::gt(),
            });
        }
        let written = tokio::time::timeout(self.settings.l2_timeout, kv.pipeline(commands)).await;
        match written {
            Ok(Ok(replies)) => match replies.into_iter().find_map(|r| r.err()) {
                Some(e) => {
                    self.l2_failed("set", &e);
                    false
                }
                None => true,
            },
            Ok(Err(e)) => {
                self.l2_failed("set", &e);
                false
            }
            Err(_) => {
                self.l2_timed_out("set");
                false
            }
        }
    }

    fn l2_failed(&self, operation: &str, e: &Error) {
        Counters::bump(&self.counters.l2_errors);
        tracing::debug!(cache = %self.name, operation, "L2 failed, going on without it: {e}");
    }

    fn l2_timed_out(&self, operation: &str) {
        Counters::bump(&self.counters.l2_errors);
        tracing::debug!(cache = %self.name, operation, "L2 slower than l2_timeout, going on without it");
    }

    fn l2_outcome<T>(
        &self,
        operation: &str,
        outcome: std::result::Result<Result<T>, tokio::time::error::Elapsed>,
    ) -> bool {
        match outcome {
            Ok(Ok(_)) => true,
            Ok(Err(e)) => {
                self.l2_failed(operation, &e);
                tracing::warn!(cache = %self.name, operation, "an invalidation did not reach L2: {e}");
                false
            }
            Err(_) => {
                self.l2_timed_out(operation);
                tracing::warn!(cache = %self.name, operation, "an invalidation did not reach L2 in time");
                false
            }
        }
    }

    async fn announce(&self, what: Invalidation) -> bool {
        match self.backplane.publish(&self.name, what).await {
            Ok(()) => true,
            Err(e) => {
                Counters::bump(&self.counters.l2_errors);
                tracing::warn!(cache = %self.name, "an invalidation did not reach the other instances: {e}");
                false
            }
        }
    }

    fn poison(&self, key: &str) {
        if let Some(flight) = lock_poisoned(&self.flights).remove(key) {
            flight.poisoned.store(true, Ordering::Release);
        }
    }

    fn poison_all(&self) {
        for (_, flight) in lock_poisoned(&self.flights).drain() {
            flight.poisoned.store(true, Ordering::Release);
        }
    }

    fn drop_tag_l1(&self, tag: &str) {
        let tag = tag.to_owned();
        // Cannot fail: invalidation closures are enabled at build.
        let _ = self
            .l1
            .invalidate_entries_if(move |_, entry| entry.tags.contains(&tag));
    }

    async fn load_one<F, Fut>(
        &self,
        key: &str,
        tags: Arc<[String]>,
        load: F,
        state: &FlightState<V>,
        newer_than: Option<u64>,
        l2_checked: Option<bool>,
    ) -> Result<Loaded<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>>> + Send + 'static,
    {
        // `l2_checked`: the caller read L2 just before starting this
        // flight (`Some(degraded)`), so it is not read again.
        let mut degraded = l2_checked.unwrap_or(false);
        let l2_key = self.l2_key(key);
        if let (Some(kv), None) = (&self.l2, l2_checked) {
            match self.read_l2(kv.as_ref(), &l2_key, newer_than, state).await {
                Ok(Some(found)) => return Ok(self.found_in_l2(key, found, state)),
                Ok(None) => {}
                Err(()) => degraded = true,
            }
        }
        if newer_than.is_none() {
            Counters::bump(&self.counters.misses);
        }
        let mut lock = None;
        if let (Some(kv), true, false) = (&self.l2, self.settings.distributed_lock, degraded) {
            match self
                .lock_or_wait(kv.as_ref(), key, &l2_key, newer_than, state)
                .await
            {
                LockOutcome::Held(token) => lock = Some(token),
                LockOutcome::Filled(found) => return Ok(self.found_in_l2(key, found, state)),
                LockOutcome::Proceed => {}
            }
        }
        Counters::bump(&self.counters.loads);
        let loaded = tokio::time::timeout(self.settings.hard_timeout, load()).await;
        let result = match loaded {
            Ok(Ok(value)) => {
                let now = (self.clock)();
                match self.entry(value, now, tags) {
                    Ok((entry, raw)) => {
                        let entry = Arc::new(entry);
                        if !state.poisoned.load(Ordering::Acquire) {
                            self.l1.insert(key.to_owned(), Arc::clone(&entry));
                            if !self.write_l2(key, &entry, raw).await {
                                degraded = true;
                            }
                        }
                        Ok(Loaded {
                            entry,
                            tier: Tier::Loaded,
                            degraded,
                        })
                    }
                    Err(e) => Err(e),
                }
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "cache `{}`: loading `{key}` took longer than {:?}",
                    self.name, self.settings.hard_timeout
                ),
            )
            .with_operation("cache_load")),
        };
        if result.is_err() {
            Counters::bump(&self.counters.load_errors);
        }
        if let (Some(kv), Some(token)) = (&self.l2, lock) {
            let release = tokio::time::timeout(
                self.settings.l2_timeout,
                kv.compare_and_delete(&self.lock_key(key), Bytes::from(token)),
            )
            .await;
            // An unreleased lock expires after lock_ttl.
            let _ = self.l2_outcome("unlock", release);
        }
        result
    }

    fn found_in_l2(&self, key: &str, entry: Entry<V>, state: &FlightState<V>) -> Loaded<V> {
        Counters::bump(&self.counters.l2_hits);
        let entry = Arc::new(entry);
        if !state.poisoned.load(Ordering::Acquire) {
            self.l1.insert(key.to_owned(), Arc::clone(&entry));
        }
        Loaded {
            entry,
            tier: Tier::L2,
            degraded: false,
        }
    }

    /// Reads `l2_key` once: a fresh entry (newer than `newer_than`), a
    /// stale one still usable for fail-safe, nothing, or a failure (counted).
    async fn fetch_l2(&self, kv: &dyn KvStore, l2_key: &str, newer_than: Option<u64>) -> L2Read<V> {
        match tokio::time::timeout(self.settings.l2_timeout, kv.get(l2_key)).await {
            Ok(Ok(Some(raw))) => {
                let Some(entry) = self.decode(&raw) else {
                    return L2Read::Miss;
                };
                let now = (self.clock)();
                let newer = newer_than.is_none_or(|t| entry.created_ms > t);
                if entry.is_fresh(now) && newer {
                    L2Read::Fresh(entry)
                } else if self.usable_stale(&entry, now) {
                    L2Read::Stale(Arc::new(entry))
                } else {
                    L2Read::Miss
                }
            }
            Ok(Ok(None)) => L2Read::Miss,
            Ok(Err(e)) => {
                self.l2_failed("get", &e);
                L2Read::Failed
            }
            Err(_) => {
                self.l2_timed_out("get");
                L2Read::Failed
            }
        }
    }

    /// [`fetch_l2`](Inner::fetch_l2) for a flight: a stale entry is kept
    /// in `state` for fail-safe; `Err` when L2 failed.
    async fn read_l2(
        &self,
        kv: &dyn KvStore,
        l2_key: &str,
        newer_than: Option<u64>,
        state: &FlightState<V>,
    ) -> std::result::Result<Option<Entry<V>>, ()> {
        match self.fetch_l2(kv, l2_key, newer_than).await {
            L2Read::Fresh(entry) => Ok(Some(entry)),
            L2Read::Stale(entry) => {
                lock_poisoned(&state.stale).get_or_insert(entry);
                Ok(None)
            }
            L2Read::Miss => Ok(None),
            L2Read::Failed => Err(()),
        }
    }

    async fn lock_or_wait(
        &self,
        kv: &dyn KvStore,
        key: &str,
        l2_key: &str,
        newer_than: Option<u64>,
        state: &FlightState<V>,
    ) -> LockOutcome<V> {
        let lock_key = self.lock_key(key);
        let token = uuid::Uuid::now_v7().simple().to_string();
        let options = SetOptions::ttl(self.settings.lock_ttl).if_absent();
        let deadline = tokio::time::Instant::now() + self.settings.lock_ttl;
        let mut delay = Duration::from_millis(2);
        let mut waited = false;
        loop {
            let taken = tokio::time::timeout(
                self.settings.l2_timeout,
                kv.set_with(&lock_key, Bytes::from(token.clone()), options),
            )
            .await;
            match taken {
                Ok(Ok(true)) => return LockOutcome::Held(token),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => {
                    self.l2_failed("lock", &e);
                    return LockOutcome::Proceed;
                }
                Err(_) => {
                    self.l2_timed_out("lock");
                    return LockOutcome::Proceed;
                }
            }
            if !waited {
                waited = true;
                Counters::bump(&self.counters.lock_waits);
            }
            // Another instance is loading: wait for its value in L2.
            if tokio::time::Instant::now() >= deadline {
                return LockOutcome::Proceed;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(50));
            match self.read_l2(kv, l2_key, newer_than, state).await {
                Ok(Some(found)) => return LockOutcome::Filled(found),
                Ok(None) => {}
                Err(()) => return LockOutcome::Proceed,
            }
        }
    }

    /// Stores a batch's answers (unless an invalidation happened since
    /// `generation`); the entries and whether L2 failed.
    async fn store_batch(
        &self,
        answers: &BatchAnswers<V>,
        generation: u64,
    ) -> (HashMap<String, Arc<Entry<V>>>, bool) {
        let now = (self.clock)();
        let store = self.generation.load(Ordering::Acquire) == generation;
        let mut entries = HashMap::new();
        let mut commands = Vec::new();
        for (key, answer) in answers {
            let Ok(value) = answer else { continue };
            let (entry, raw) = match self.entry(value.clone(), now, Arc::from([])) {
                Ok(built) => built,
                Err(e) => {
                    // Answered as that key's error by the caller.
                    tracing::error!(cache = %self.name, key, "a loaded value does not encode: {e}");
                    continue;
                }
            };
            let entry = Arc::new(entry);
            if store {
                self.l1.insert(key.clone(), Arc::clone(&entry));
                commands.push(Command::Set {
                    key: self.l2_key(key),
                    value: Bytes::from(raw),
                    options: SetOptions::ttl(entry.l1_life),
                });
            }
            entries.insert(key.clone(), entry);
        }
        let mut degraded = false;
        if let (Some(kv), false) = (&self.l2, commands.is_empty()) {
            match tokio::time::timeout(self.settings.l2_timeout, kv.pipeline(commands)).await {
                Ok(Ok(replies)) => {
                    if let Some(e) = replies.into_iter().find_map(|r| r.err()) {
                        self.l2_failed("set", &e);
                        degraded = true;
                    }
                }
                Ok(Err(e)) => {
                    self.l2_failed("set", &e);
                    degraded = true;
                }
                Err(_) => {
                    self.l2_timed_out("set");
                    degraded = true;
                }
            }
        }
        (entries, degraded)
    }
}

/// One read of an entry in L2.
enum L2Read<V> {
    Fresh(Entry<V>),
    /// Past its freshness, within its fail-safe age.
    Stale(Arc<Entry<V>>),
    Miss,
    /// Failed or too slow (counted).
    Failed,
}

enum LockOutcome<V> {
    Held(String),
    Filled(Entry<V>),
    Proceed,
}

impl<V: Cacheable> Member for Inner<V> {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply_remote(&self, what: &Invalidation) {
        Counters::bump(&self.counters.backplane_messages);
        self.generation.fetch_add(1, Ordering::AcqRel);
        match what {
            Invalidation::Key(key) => {
                self.poison(key);
                self.l1.invalidate(key);
            }
            Invalidation::Tag(tag) => {
                self.poison_all();
                self.drop_tag_l1(tag);
            }
            Invalidation::Clear => {
                self.poison_all();
                self.l1.invalidate_all();
            }
        }
    }

    fn reset(&self) {
        Counters::bump(&self.counters.backplane_resets);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.poison_all();
        self.l1.invalidate_all();
    }

    fn stats(&self) -> CacheStats {
        Inner::stats(self)
    }
}

/// The caches of one process, sharing L2, a backplane and default
/// settings: what the composition root hands the services.
#[derive(Debug, Clone)]
pub struct Caches {
    l2: Option<Arc<dyn KvStore>>,
    backplane: Backplane,
    defaults: CacheSettings,
}

impl Caches {
    /// Caches over `l2`, their invalidations on `backplane`.
    pub fn new(
        l2: Option<Arc<dyn KvStore>>,
        backplane: Backplane,
        defaults: CacheSettings,
    ) -> Self {
        Caches {
            l2,
            backplane,
            defaults,
        }
    }

    /// The default settings.
    pub fn defaults(&self) -> CacheSettings {
        self.defaults
    }

    /// A new cache named `name` with `settings`.
    pub fn create<V: Cacheable>(
        &self,
        name: &str,
        settings: CacheSettings,
    ) -> Result<TieredCache<V>> {
        let mut builder = TieredCache::<V>::builder(name)
            .settings(settings)
            .backplane(&self.backplane);
        if let Some(kv) = &self.l2 {
            builder = builder.l2(Arc::clone(kv));
        }
        builder.build()
    }

    /// The backplane.
    pub fn backplane(&self) -> &Backplane {
        &self.backplane
    }

    /// Every live cache's counters, by name.
    pub fn stats(&self) -> Vec<CacheStats> {
        let mut all = self.backplane.stats();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}
