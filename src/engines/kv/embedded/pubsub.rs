//! In-process publish/subscribe: a registry of channel → subscribers.
//!
//! # What MUST hold
//!
//! - A subscription is registered before `subscribe` returns, so a message
//!   published afterwards is delivered.
//! - `publish` answers how many subscriptions received the message; one
//!   subscription counts once per channel even if it named the channel
//!   twice (as one Redis client does).
//! - Publishing never waits for a subscriber: each subscription has a
//!   bounded buffer (the store's `subscription_capacity`), and a full one
//!   drops its oldest message and tells its reader (`Lagged`); see
//!   [`Subscription`]. A slow reader costs at most its buffer.
//! - Dropping a [`Subscription`] unregisters it (its guard removes its
//!   feeds); `publish` also prunes feeds whose reader is gone, so a leaked
//!   registration never counts as a reached subscriber.
//! - Messages on one channel arrive in publish order: pushing happens under
//!   the registry lock.
//! - Dropping the store ends its subscriptions: the registry holds the only
//!   feeds, so readers get the buffered messages and then `None`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;

use crate::engines::kv::{PubSubMessage, Subscription, SubscriptionFeed};
use crate::error::Result;

#[derive(Debug)]
struct Subscriber {
    id: u64,
    feed: Arc<SubscriptionFeed>,
}

/// The channel registry of one store.
#[derive(Debug)]
pub(super) struct PubSub {
    channels: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
    capacity: usize,
}

impl PubSub {
    /// A registry whose subscriptions buffer `capacity` messages each.
    pub(super) fn new(capacity: usize) -> Self {
        PubSub {
            channels: Mutex::default(),
            next_id: AtomicU64::new(0),
            capacity,
        }
    }

    /// The registry. Every change to it is a single insert or removal, so a
    /// panic elsewhere cannot leave it half-updated: a poisoned lock is
    /// safe to keep using.
    fn channels(&self) -> MutexGuard<'_, HashMap<String, Vec<Subscriber>>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers one subscription on `channels` (at least one).
    pub(super) fn subscribe(self: &Arc<Self>, channels: &[String]) -> Result<Subscription> {
        if channels.is_empty() {
            return Err(super::wrong_arity("subscribe"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut unique: Vec<String> = channels.to_vec();
        unique.sort();
        unique.dedup();
        let guard = SubscriptionGuard {
            pubsub: Arc::downgrade(self),
            id,
            channels: unique.clone(),
        };
        let (feed, subscription) = Subscription::channel(self.capacity, Some(Box::new(guard)));
        let feed = Arc::new(feed);
        let mut registry = self.channels();
        for channel in unique {
            registry.entry(channel).or_default().push(Subscriber {
                id,
                feed: Arc::clone(&feed),
            });
        }
        Ok(subscription)
    }

    /// Delivers to every live subscriber of `channel`; how many got it.
    pub(super) fn publish(&self, channel: &str, payload: Bytes) -> u64 {
        let mut registry = self.channels();
        let Some(subscribers) = registry.get_mut(channel) else {
            return 0;
        };
        let mut reached = 0;
        subscribers.retain(|subscriber| {
            let message = PubSubMessage {
                channel: channel.to_owned(),
                payload: payload.clone(),
            };
            let delivered = subscriber.feed.push(message);
            reached += u64::from(delivered);
            delivered
        });
        if subscribers.is_empty() {
            registry.remove(channel);
        }
        reached
    }

    fn unsubscribe(&self, id: u64, channels: &[String]) {
        let mut registry = self.channels();
        for channel in channels {
            if let Some(subscribers) = registry.get_mut(channel) {
                subscribers.retain(|s| s.id != id);
                if subscribers.is_empty() {
                    registry.remove(channel);
                }
            }
        }
    }
}

/// Held by a [`Subscription`]; unregisters it when dropped. Holds the
/// registry weakly so a subscription outliving its store does not keep the
/// store's registry alive.
#[derive(Debug)]
struct SubscriptionGuard {
    pubsub: Weak<PubSub>,
    id: u64,
    channels: Vec<String>,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        if let Some(pubsub) = self.pubsub.upgrade() {
            pubsub.unsubscribe(self.id, &self.channels);
        }
    }
}
