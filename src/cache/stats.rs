//! The counters of one cache.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Live counters of one [`TieredCache`](super::TieredCache).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub l1_hits: AtomicU64,
    pub l2_hits: AtomicU64,
    pub misses: AtomicU64,
    pub loads: AtomicU64,
    pub load_errors: AtomicU64,
    pub coalesced: AtomicU64,
    pub stale_served: AtomicU64,
    pub l2_errors: AtomicU64,
    pub evictions: AtomicU64,
    pub eager_refreshes: AtomicU64,
    pub lock_waits: AtomicU64,
    pub invalidations: AtomicU64,
    pub backplane_messages: AtomicU64,
    pub backplane_resets: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, name: &str, l1_entries: u64, l1_weight: u64) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            name: name.to_owned(),
            l1_hits: get(&self.l1_hits),
            l2_hits: get(&self.l2_hits),
            misses: get(&self.misses),
            loads: get(&self.loads),
            load_errors: get(&self.load_errors),
            coalesced: get(&self.coalesced),
            stale_served: get(&self.stale_served),
            l2_errors: get(&self.l2_errors),
            evictions: get(&self.evictions),
            eager_refreshes: get(&self.eager_refreshes),
            lock_waits: get(&self.lock_waits),
            invalidations: get(&self.invalidations),
            backplane_messages: get(&self.backplane_messages),
            backplane_resets: get(&self.backplane_resets),
            l1_entries,
            l1_bytes: l1_weight,
        }
    }
}

/// A snapshot of one cache's counters since the process started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CacheStats {
    /// The cache.
    pub name: String,
    /// Answers from the process's own memory.
    pub l1_hits: u64,
    /// Answers from the key-value engine.
    pub l2_hits: u64,
    /// Lookups neither tier could answer fresh.
    pub misses: u64,
    /// Calls of the loader (each may answer many keys of a batch).
    pub loads: u64,
    /// Loads that failed or ran out of time.
    pub load_errors: u64,
    /// Lookups that waited on a load another caller had started.
    pub coalesced: u64,
    /// Answers past their freshness, served because the load failed or was
    /// slow.
    pub stale_served: u64,
    /// Reads or writes of the key-value engine that failed; serving went on
    /// without it.
    pub l2_errors: u64,
    /// L1 entries evicted to stay within the bound.
    pub evictions: u64,
    /// Background refreshes of entries read late in their life.
    pub eager_refreshes: u64,
    /// Loads that waited on another instance's lock.
    pub lock_waits: u64,
    /// Invalidations (keys, tags, clears) asked of this instance.
    pub invalidations: u64,
    /// Invalidations received from other instances.
    pub backplane_messages: u64,
    /// Times L1 was cleared because the backplane dropped or lagged.
    pub backplane_resets: u64,
    /// Entries in L1 now.
    pub l1_entries: u64,
    /// Bytes L1 holds now, as encoded values.
    pub l1_bytes: u64,
}
