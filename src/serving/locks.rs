//! Distributed locks with fencing tokens, on the key-value engine.
//!
//! [`Locks::acquire`] is one atomic step (a Lua script on Redis, one
//! critical section in the embedded store): the lock is taken with a TTL
//! and a random token only when free, and a fencing token is drawn from a
//! counter that only grows. Only the holder (its token) may
//! [`extend`](Locks::extend) or [`release`](Locks::release) it; a holder
//! that dies leaves it free once its TTL runs out.
//!
//! A lock alone cannot protect a resource from a holder that paused (a GC,
//! a stalled VM) past its TTL and then writes: by then another holder has
//! the lock. So the resource checks the fencing token: a write carrying a
//! token older than one it has already seen is refused
//! ([`Registry::set_run_tags_fenced`](crate::platform::Registry::set_run_tags_fenced)).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::engines::KvStore;
use crate::engines::kv::KvStoreExt;
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The lock's name.
    pub name: String,
    /// The holder's random token: only it releases or extends the lock.
    pub token: String,
    /// The fencing token drawn with the lock: larger than any drawn before
    /// for this name.
    pub fence: u64,
    /// How long the lock lasts from its acquisition or last extension.
    pub ttl: Duration,
}

/// The locks. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Locks {
    kv: Arc<dyn KvStore>,
}

fn lock_key(name: &str) -> String {
    format!("lock:{name}")
}

fn fence_key(name: &str) -> String {
    format!("lock:{name}:fence")
}

impl Locks {
    pub(crate) fn new(kv: Arc<dyn KvStore>) -> Locks {
        Locks { kv }
    }

    /// Takes the lock `name` for `ttl` when it is free; `None` when
    /// another holder has it.
    pub async fn acquire(&self, name: &str, ttl: Duration) -> Result<Option<Lease>> {
        if name.is_empty() || name.len() > 255 {
            return Err(Error::invalid("a lock's name has 1 to 255 bytes").with_field("name"));
        }
        if ttl < Duration::from_millis(1) {
            return Err(Error::invalid("a lock's ttl is at least 1 ms").with_field("ttl"));
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let fence = self
            .kv
            .lock_acquire(&lock_key(name), &token, ttl, &fence_key(name))
            .await?;
        Ok(fence.map(|fence| Lease {
            name: name.to_owned(),
            token,
            fence,
            ttl,
        }))
    }

    /// [`acquire`](Locks::acquire), trying again as `retry` allows while
    /// another holder has it; `None` when it never came free.
    pub async fn acquire_within(
        &self,
        name: &str,
        ttl: Duration,
        retry: RetryPolicy,
    ) -> Result<Option<Lease>> {
        let started = tokio::time::Instant::now();
        let mut attempt = 0;
        loop {
            if let Some(lease) = self.acquire(name, ttl).await? {
                return Ok(Some(lease));
            }
            attempt += 1;
            if attempt >= retry.max_attempts || started.elapsed() >= retry.max_elapsed {
                return Ok(None);
            }
            tokio::time::sleep(retry.delay(attempt)).await;
        }
    }

    /// Extends a held lock to `ttl` from now; `false` when it is no longer
    /// the holder's (expired, or taken by another).
    pub async fn extend(&self, lease: &mut Lease, ttl: Duration) -> Result<bool> {
        let extended = self
            .kv
            .lock_extend(&lock_key(&lease.name), &lease.token, ttl)
            .await?;
        if extended {
            lease.ttl = ttl;
        }
        Ok(extended)
    }

    /// Releases a held lock; `false` when it was no longer the holder's
    /// (nothing is released then).
    pub async fn release(&self, lease: Lease) -> Result<bool> {
        self.kv
            .compare_and_delete(&lock_key(&lease.name), Bytes::from(lease.token))
            .await
    }
}
