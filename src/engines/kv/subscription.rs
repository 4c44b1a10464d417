//! A subscription's bounded buffer, shared by every backend.
//!
//! A backend pushes each received message into the [`SubscriptionFeed`]
//! half, never waiting; the caller reads [`SubscriptionEvent`]s from the
//! [`Subscription`] half at its own pace.
//!
//! # What MUST hold
//!
//! - Memory is bounded: at most `capacity` messages wait. When a message
//!   arrives at a full buffer the oldest waiting one is dropped (the newest
//!   news is the one worth keeping: an invalidation, a config change) and
//!   counted.
//! - The reader learns of every drop, at the place it happened: the next
//!   event after a drop is `Lagged(n)`, `n` the messages dropped since the
//!   previous event, and only then the oldest message that was kept. Reading
//!   then goes on normally.
//! - Pushing never blocks and never fails the publisher: it is a short
//!   critical section on the subscription's own mutex.
//! - The end is explicit: once the backend is gone (its feed dropped) and
//!   the buffer is drained, `next` answers `None`; when the backend lost
//!   the subscription (a Redis connection dropped), `next` answers that
//!   error once, then `None`. Either way messages may have been missed, and
//!   a caller that keeps a copy of remote state (a local cache tier) must
//!   drop it and subscribe again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// How many messages a subscription buffers by default: enough for a burst
/// of invalidations while the reader is busy, a few hundred KiB at most for
/// small messages.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;

/// A message received on a subscribed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    /// The channel it was published on.
    pub channel: String,
    /// The payload.
    pub payload: Bytes,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEvent {
    /// The next message.
    Message(PubSubMessage),
    /// The reader fell behind and this many messages were dropped, all of
    /// them older than the messages that follow.
    Lagged(u64),
}

#[derive(Debug)]
struct State {
    queue: VecDeque<PubSubMessage>,
    /// Dropped since the last `Lagged` event.
    unreported: u64,
    /// Dropped since the subscription began.
    dropped: u64,
    /// The backend is gone: nothing more will be pushed.
    ended: bool,
    /// Why the backend lost the subscription, until read.
    error: Option<Error>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Wakes the reader; a permit is kept when it is not waiting.
    ready: Notify,
    /// The reader dropped the subscription.
    closed: AtomicBool,
}

impl Shared {
    /// The state. Every change to it is a few field updates that cannot
    /// panic halfway, so a poisoned lock holds a consistent state.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The backend's half of a subscription: where received messages go.
/// Dropping it ends the subscription (after the reader has drained what is
/// buffered).
#[derive(Debug)]
pub struct SubscriptionFeed {
    shared: Arc<Shared>,
}

impl SubscriptionFeed {
    /// Buffers `message`, dropping the oldest buffered one when full.
    /// `false` when the reader is gone, so the backend can forget this
    /// subscriber.
    pub fn push(&self, message: PubSubMessage) -> bool {
        if self.shared.closed.load(Ordering::Acquire) {
            return false;
        }
        {
            let mut state = self.shared.state();
            if state.queue.len() >= self.shared.capacity {
                state.queue.pop_front();
                state.unreported += 1;
                state.dropped += 1;
            }
            state.queue.push_back(message);
        }
        self.shared.ready.notify_one();
        true
    }

    /// Ends the subscription with `error`: the reader gets it once, after
    /// the messages already buffered.
    pub fn fail(self, error: Error) {
        self.shared.state().error = Some(error);
        // Dropping `self` marks the end and wakes the reader.
    }

    /// Whether the reader has dropped the subscription.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl Drop for SubscriptionFeed {
    fn drop(&mut self) {
        self.shared.state().ended = true;
        self.shared.ready.notify_one();
    }
}

/// An active subscription. Dropping it unsubscribes.
///
/// ```
/// use strata::engines::kv::{PubSubMessage, Subscription, SubscriptionEvent};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let (feed, mut subscription) = Subscription::channel(2, None);
/// for n in 0..3 {
///     let payload = format!("{n}").into();
///     feed.push(PubSubMessage { channel: "news".into(), payload });
/// }
/// drop(feed);
/// // The oldest message made room for the newest, and the reader is told.
/// assert_eq!(subscription.next().await.unwrap().unwrap(), SubscriptionEvent::Lagged(1));
/// let Some(Ok(SubscriptionEvent::Message(m))) = subscription.next().await else { panic!() };
/// assert_eq!(m.payload, "1");
/// # });
/// ```
#[derive(Debug)]
pub struct Subscription {
    shared: Arc<Shared>,
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Subscription {
    /// A subscription buffering at most `capacity` messages (at least 1:
    /// 0 is taken as 1), and the feed its backend pushes into. `guard` is
    /// dropped with the subscription and lets the backend unsubscribe.
    pub fn channel(
        capacity: usize,
        guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> (SubscriptionFeed, Subscription) {
        let capacity = capacity.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                // Grows with use up to `capacity`, not allocated up front.
                queue: VecDeque::new(),
                unreported: 0,
                dropped: 0,
                ended: false,
                error: None,
            }),
            capacity,
            ready: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let feed = SubscriptionFeed {
            shared: Arc::clone(&shared),
        };
        (
            feed,
            Subscription {
                shared,
                _guard: guard,
            },
        )
    }

    /// Adds a guard, dropped with the subscription: for a backend that can
    /// only start feeding once it has the feed (a forwarding task).
    pub fn with_guard(mut self, guard: Box<dyn std::any::Any + Send + Sync>) -> Self {
        self._guard = Some(guard);
        self
    }

    /// The next event: a message, or `Lagged(n)` right where `n` messages
    /// were dropped. `Some(Err(..))` once when the backend lost the
    /// subscription (a Redis connection dropped: `Unavailable`); `None`
    /// when it has ended and nothing more will come. After either, the
    /// caller must assume it missed messages.
    ///
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<Result<SubscriptionEvent>> {
        loop {
            {
                let mut state = self.shared.state();
                if state.unreported > 0 {
                    let lagged = std::mem::take(&mut state.unreported);
                    return Some(Ok(SubscriptionEvent::Lagged(lagged)));
                }
                if let Some(message) = state.queue.pop_front() {
                    return Some(Ok(SubscriptionEvent::Message(message)));
                }
                if state.ended {
                    return state.error.take().map(Err);
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// The next message, skipping `Lagged` events; `None` at the end,
    /// whether by error or not. For callers that keep no state a missed
    /// message could make stale.
    pub async fn next_message(&mut self) -> Option<PubSubMessage> {
        loop {
            match self.next().await? {
                Ok(SubscriptionEvent::Message(message)) => return Some(message),
                Ok(SubscriptionEvent::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    }

    /// Messages dropped since the subscription began, reported or not yet.
    pub fn dropped(&self) -> u64 {
        self.shared.state().dropped
    }

    /// How many messages it buffers at most.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u32) -> PubSubMessage {
        PubSubMessage {
            channel: "c".into(),
            payload: Bytes::from(n.to_string()),
        }
    }

    fn payload(event: Option<Result<SubscriptionEvent>>) -> String {
        match event {
            Some(Ok(SubscriptionEvent::Message(m))) => String::from_utf8_lossy(&m.payload).into(),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_full_buffer_drops_the_oldest_and_reports_where() {
        let (feed, mut sub) = Subscription::channel(3, None);
        for n in 0..3 {
            assert!(feed.push(message(n)));
        }
        assert_eq!(payload(sub.next().await), "0");
        for n in 3..8 {
            feed.push(message(n));
        }
        // 1 and 2 were waiting when 3..7 arrived: only three fit, so 1 2 3
        // 4 went, oldest first.
        assert_eq!(sub.dropped(), 4);
        assert_eq!(
            sub.next().await.unwrap().unwrap(),
            SubscriptionEvent::Lagged(4)
        );
        assert_eq!(payload(sub.next().await), "5");
        feed.push(message(8));
        assert_eq!(payload(sub.next().await), "6");
        assert_eq!(payload(sub.next().await), "7");
        assert_eq!(payload(sub.next().await), "8");
        assert_eq!(sub.dropped(), 4, "the total stays");
    }

    #[tokio::test]
    async fn the_end_comes_after_the_buffered_messages() {
        let (feed, mut sub) = Subscription::channel(4, None);
        feed.push(message(1));
        feed.fail(Error::new(crate::ErrorKind::Unavailable, "connection lost"));
        assert_eq!(payload(sub.next().await), "1");
        let err = sub.next().await.unwrap().unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
        assert!(sub.next().await.is_none());

        let (feed, mut sub) = Subscription::channel(4, None);
        drop(feed);
        assert!(sub.next().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_reader_is_woken() {
        let (feed, mut sub) = Subscription::channel(1, None);
        let reader = tokio::spawn(async move { payload(sub.next().await) });
        tokio::task::yield_now().await;
        feed.push(message(7));
        assert_eq!(reader.await.unwrap(), "7");
    }

    #[test]
    fn pushing_to_a_dropped_subscription_says_so() {
        let (feed, sub) = Subscription::channel(0, None);
        assert_eq!(sub.capacity(), 1);
        assert!(feed.push(message(1)));
        drop(sub);
        assert!(feed.is_closed());
        assert!(!feed.push(message(2)));
    }
}
