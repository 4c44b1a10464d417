//! In-process publish/subscribe: a registry of channel → subscribers.
//!
//! # What MUST hold
//!
//! - A subscription is registered before `subscribe` returns, so a message
//!   published afterwards is delivered.
//! - `publish` answers how many subscriptions received the message; one
//!   subscription counts once per channel even if it named the channel
//!   twice (as one Redis client does).
//! - Dropping a [`Subscription`] unregisters it (its guard removes its
//!   senders); `publish` also prunes senders whose receiver is gone, so a
//!   leaked registration never counts as a reached subscriber.
//! - Messages on one channel arrive in publish order: sending happens under
//!   the registry lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

use crate::engines::kv::{PubSubMessage, Subscription};
use crate::error::Result;

#[derive(Debug)]
struct Subscriber {
    id: u64,
    sender: UnboundedSender<PubSubMessage>,
}

/// The channel registry of one store.
#[derive(Debug, Default)]
pub(super) struct PubSub {
    channels: Mutex<HashMap<String, Vec<Subscriber>>>,
    next_id: AtomicU64,
}

impl PubSub {
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
        let (sender, receiver) = unbounded_channel();
        let mut unique: Vec<String> = channels.to_vec();
        unique.sort();
        unique.dedup();
        {
            let mut registry = self.channels();
            for channel in &unique {
                registry
                    .entry(channel.clone())
                    .or_default()
                    .push(Subscriber {
                        id,
                        sender: sender.clone(),
                    });
            }
        }
        let guard = SubscriptionGuard {
            pubsub: Arc::downgrade(self),
            id,
            channels: unique,
        };
        Ok(Subscription::new(receiver, Some(Box::new(guard))))
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
            let delivered = subscriber.sender.send(message).is_ok();
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
