//! The backplane: invalidations carried to the L1 of every running
//! instance over the key-value engine's publish/subscribe.
//!
//! Each instance subscribes once to one channel and publishes there every
//! invalidation it makes (a key, a tag, a clear), naming its cache and
//! itself; an instance ignores its own messages (it has applied them
//! already) and applies the others' to its L1. Publish/subscribe delivers
//! at most once, so a message can be missed: when the subscription lags
//! (its buffer overflowed) or ends (the connection dropped), the instance
//! clears the L1 of every cache, since it cannot know what it missed, and
//! subscribes again, clearing once more when it is back (messages published
//! while it was away are lost too). What this can and cannot promise is
//! set out in `docs/serving.md`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::engines::KvStore;
use crate::engines::kv::{KvStoreExt, SubscriptionEvent};
use crate::retry::RetryPolicy;

use super::CacheStats;

/// The channel strata's caches publish invalidations on (within the
/// key-value store's namespace).
pub const CHANNEL: &str = "strata:cache:invalidations";

/// What one invalidation removes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "arg", rename_all = "lowercase")]
pub enum Invalidation {
    /// One key.
    Key(String),
    /// Every entry with this tag.
    Tag(String),
    /// Everything.
    Clear,
}

#[derive(Debug, Serialize, Deserialize)]
struct Message {
    from: String,
    cache: String,
    #[serde(flatten)]
    what: Invalidation,
}

/// A cache the backplane serves.
pub(crate) trait Member: Send + Sync {
    fn name(&self) -> &str;
    /// Applies another instance's invalidation to L1.
    fn apply_remote(&self, what: &Invalidation);
    /// Clears L1: messages may have been missed.
    fn reset(&self);
    fn stats(&self) -> CacheStats;
}

/// The state of an instance's subscription, for health and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BackplaneStatus {
    /// Whether the subscription is active now.
    pub connected: bool,
    /// Invalidations received from other instances.
    pub received: u64,
    /// Times the L1s were cleared because the subscription lagged or
    /// dropped.
    pub resets: u64,
}

/// One instance's end of the backplane. Cheap to clone.
#[derive(Clone)]
pub struct Backplane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("instance", &self.inner.instance)
            .field("channel", &self.inner.channel)
            .finish_non_exhaustive()
    }
}

struct Inner {
    kv: Option<Arc<dyn KvStore>>,
    channel: String,
    instance: String,
    members: Mutex<Vec<Weak<dyn Member>>>,
    connected: AtomicBool,
    received: AtomicU64,
    resets: AtomicU64,
    /// Bumped at every subscription and every message handled, so a
    /// waiter can tell something happened.
    events: watch::Sender<u64>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl Backplane {
    /// A backplane that carries nothing: invalidations stay in this
    /// process (a cache without L2, or a single instance).
    pub fn local() -> Backplane {
        Backplane::build(None, CHANNEL.to_owned())
    }

    fn build(kv: Option<Arc<dyn KvStore>>, channel: String) -> Backplane {
        Backplane {
            inner: Arc::new(Inner {
                kv,
                channel,
                instance: uuid::Uuid::now_v7().simple().to_string(),
                members: Mutex::new(Vec::new()),
                connected: AtomicBool::new(false),
                received: AtomicU64::new(0),
                resets: AtomicU64::new(0),
                events: watch::Sender::new(0),
                task: Mutex::new(None),
            }),
        }
    }

    /// Subscribes to `channel` on `kv` in the background, and keeps
    /// subscribing again (waiting per `retry`'s delays, at most a second)
    /// whenever the subscription ends. Call [`Backplane::connected`] to
    /// wait for the first subscription.
    pub fn start(kv: Arc<dyn KvStore>, channel: impl Into<String>, retry: RetryPolicy) -> Self {
        let backplane = Backplane::build(Some(kv), channel.into());
        let weak = Arc::downgrade(&backplane.inner);
        let task = tokio::spawn(listen(weak, retry));
        *backplane
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        backplane
    }

    /// This instance's id, which its messages carry.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Waits until the subscription is active, at most `wait`; whether it
    /// is. Always `true` for a [`local`](Backplane::local) backplane.
    pub async fn connected(&self, wait: Duration) -> bool {
        if self.inner.kv.is_none() {
            return true;
        }
        let mut events = self.inner.events.subscribe();
        let until = tokio::time::timeout(wait, async {
            while !self.inner.connected.load(Ordering::Acquire) {
                if events.changed().await.is_err() {
                    return;
                }
            }
        });
        let _ = until.await;
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Waits until `done` holds of the [`status`](Backplane::status), at
    /// most `wait`; whether it does. For tests and health checks that
    /// wait on an invalidation's arrival rather than on time.
    pub async fn wait_until(
        &self,
        done: impl Fn(&BackplaneStatus) -> bool,
        wait: Duration,
    ) -> bool {
        let mut events = self.inner.events.subscribe();
        let until = tokio::time::timeout(wait, async {
            while !done(&self.status()) {
                if events.changed().await.is_err() {
                    return;
                }
            }
        });
        let _ = until.await;
        done(&self.status())
    }

    /// The subscription's state.
    pub fn status(&self) -> BackplaneStatus {
        BackplaneStatus {
            connected: self.inner.kv.is_none() || self.inner.connected.load(Ordering::Acquire),
            received: self.inner.received.load(Ordering::Acquire),
            resets: self.inner.resets.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn join(&self, member: Weak<dyn Member>) {
        let mut members = self
            .inner
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        members.retain(|m| m.strong_count() > 0);
        members.push(member);
    }

    /// Every live cache's counters.
    pub(crate) fn stats(&self) -> Vec<CacheStats> {
        self.members().iter().map(|m| m.stats()).collect()
    }

    fn members(&self) -> Vec<Arc<dyn Member>> {
        live_members(&self.inner)
    }

    /// Tells the other instances. A failure is returned (the caller counts
    /// it): their L1s keep the entry until it expires, or until their own
    /// subscription, which a failing store drops too, resets them.
    pub(crate) async fn publish(&self, cache: &str, what: Invalidation) -> crate::Result<()> {
        let Some(kv) = &self.inner.kv else {
            return Ok(());
        };
        let message = Message {
            from: self.inner.instance.clone(),
            cache: cache.to_owned(),
            what,
        };
        let payload = serde_json::to_vec(&message).map_err(|e| {
            crate::Error::internal(format!("an invalidation does not serialize: {e}"))
        })?;
        kv.publish(&self.inner.channel, Bytes::from(payload))
            .await
            .map(|_| ())
    }
}

/// The caches still alive.
fn live_members(inner: &Inner) -> Vec<Arc<dyn Member>> {
    inner
        .members
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect()
}

fn reset_all(inner: &Inner, why: &str) {
    inner.resets.fetch_add(1, Ordering::Relaxed);
    let members = live_members(inner);
    tracing::info!(
        caches = members.len(),
        "cache backplane {why}: clearing every L1, invalidations may have been missed"
    );
    for member in members {
        member.reset();
    }
}

async fn listen(weak: Weak<Inner>, retry: RetryPolicy) {
    let mut attempt: u32 = 0;
    let mut subscribed_before = false;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let Some(kv) = inner.kv.clone() else { return };
        let channel = inner.channel.clone();
        drop(inner);
        match kv.subscribe(std::slice::from_ref(&channel)).await {
            Ok(mut subscription) => {
                let Some(inner) = weak.upgrade() else { return };
                if subscribed_before || attempt > 0 {
                    reset_all(&inner, "resubscribed");
                }
                attempt = 0;
                subscribed_before = true;
                inner.connected.store(true, Ordering::Release);
                inner.events.send_modify(|n| *n += 1);
                drop(inner);
                loop {
                    let event = subscription.next().await;
                    let Some(inner) = weak.upgrade() else { return };
                    match event {
                        Some(Ok(SubscriptionEvent::Message(message))) => {
                            dispatch(&inner, &message.payload);
                        }
                        Some(Ok(SubscriptionEvent::Lagged(lost))) => {
                            tracing::warn!(lost, "cache backplane fell behind");
                            reset_all(&inner, "lagged");
                        }
                        Some(Err(e)) => {
                            tracing::warn!("cache backplane subscription lost: {e}");
                            inner.connected.store(false, Ordering::Release);
                            reset_all(&inner, "dropped");
                            break;
                        }
                        None => {
                            inner.connected.store(false, Ordering::Release);
                            reset_all(&inner, "ended");
                            break;
                        }
                    }
                    inner.events.send_modify(|n| *n += 1);
                }
            }
            Err(e) => {
                attempt = attempt.saturating_add(1);
                if attempt == 1 {
                    tracing::warn!("cache backplane cannot subscribe (retrying): {e}");
                }
                if let Some(inner) = weak.upgrade() {
                    inner.connected.store(false, Ordering::Release);
                }
                let wait = retry.delay(attempt).min(Duration::from_secs(1));
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
        }
    }
}

fn dispatch(inner: &Inner, payload: &[u8]) {
    let message: Message = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("cache backplane ignored a message it cannot read: {e}");
            return;
        }
    };
    if message.from == inner.instance {
        return;
    }
    for member in live_members(inner) {
        if member.name() == message.cache {
            member.apply_remote(&message.what);
        }
    }
    // Counted once applied: a reader of the count may rely on it.
    inner.received.fetch_add(1, Ordering::Release);
}
