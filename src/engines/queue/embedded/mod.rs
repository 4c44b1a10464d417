//! The embedded broker: AMQP 0-9-1 semantics in process, messages in memory.
//!
//! [`EmbeddedBroker`] keeps every contract of the [`Broker`] trait (see the
//! [module documentation](crate::engines::queue)) with RabbitMQ 3.12/3.13 as
//! the reference. Messages live in memory only: unacknowledged and ready
//! messages die with the process, whatever `durable` and `persistent` say
//! (both are recorded and round-trip).
//!
//! # Layout
//!
//! - [`state`]: the one lock's contents (exchanges, queues, expiry
//!   deadlines) and every operation on them; nothing there awaits.
//! - [`queue`]: one queue: ready messages per priority, consumers in turn,
//!   unacknowledged deliveries, expiry at the head, `x-max-length`.
//! - [`routing`]: exchanges, bindings and the headers match.
//! - [`dead_letter`]: death headers and the cycle rule.
//! - [`delivery`]: the consumer stream and the acker.
//!
//! # What holds, precisely
//!
//! - State sits behind one `std::sync::Mutex`, held only for the
//!   synchronous body of an operation, never across an `.await`.
//! - `publish` routes, enqueues and pushes to consumers before it returns:
//!   a publish that returned is visible to `get`, `queue_info` and
//!   consumers. A message published to a queue that is empty and has a
//!   consumer with a free window goes straight to it, so a zero TTL does not
//!   prevent delivery to a waiting consumer (as in RabbitMQ).
//! - Ready messages are one FIFO per priority level (`x-max-priority` + 1
//!   levels, one without it). A message's level is its priority capped at
//!   the maximum (absent = 0). Requeued messages go to the front of their
//!   level, a consumer's several in their original order.
//! - Consumers take turns: the one served goes to the back of the line;
//!   consumers with a full window are skipped. A consumer's deliveries are
//!   unacknowledged from the moment they enter its channel, so
//!   `prefetch` bounds what is buffered in the stream plus what the caller
//!   holds.
//! - Expiry: a message's deadline is fixed when it enters a queue (the
//!   smaller of the queue's `x-message-ttl` and its own `expiration`) and
//!   kept on requeue. Expired messages are removed only at the head of a
//!   priority level, like RabbitMQ: at the start of every operation on the
//!   queue (publish into it, delivery, `get`, `queue_info`, `purge_queue`,
//!   redeclaration) and by a timer task that sleeps until the earliest head
//!   deadline of any queue (no polling). Hence `queue_info` never counts an
//!   expired head, but does count expired messages behind a live head (as
//!   RabbitMQ may). The timer is spawned on the tokio runtime of the first
//!   operation that arms a deadline, and again if that runtime has gone;
//!   outside any runtime expiry is only lazy. Expired messages are
//!   dead-lettered with reason `expired` when the queue has a dead-letter
//!   exchange, else dropped.
//! - `x-max-length` counts ready messages; after each enqueue the heads
//!   beyond it (next to be delivered first) are dead-lettered with reason
//!   `maxlen`, or dropped. The publish still counts as routed.
//! - Dead letters go through the dead-letter exchange like a publish; a
//!   missing dead-letter exchange drops them with a warning in the log (as
//!   RabbitMQ does). A message returning to a queue it died in, without a
//!   rejection in between, is dropped (RabbitMQ's cycle rule). See
//!   [`dead_letter::record_death`] for the headers.
//! - Settling: a delivery is settled once; a second settle, or one after
//!   its consumer was dropped (and the delivery requeued), fails with
//!   `InvalidInput` "PRECONDITION_FAILED - unknown delivery tag". Settling a
//!   delivery of a deleted queue succeeds and does nothing. A delivery from
//!   `get` whose every clone is dropped unsettled is requeued, as closing
//!   its channel would; a consumer's stays unacknowledged until the
//!   consumer is dropped.
//! - Dropping a [`Consumer`] cancels it, requeues its unacknowledged
//!   deliveries (redelivered) and, for an `auto_delete` queue that loses its
//!   last consumer, deletes the queue. Deleting a queue ends its consumers'
//!   streams after what was already sent to them.
//! - `exclusive` is recorded and compared on redeclaration; in process there
//!   is one connection, so it restricts nothing.
//! - Names: at most 255 bytes; the default exchange `""` cannot be
//!   declared, deleted or bound (`InvalidInput`, RabbitMQ's
//!   `ACCESS_REFUSED`); new names with the reserved `amq.` prefix are
//!   refused the same way; `amq.direct`, `amq.fanout`, `amq.topic`,
//!   `amq.headers` and `amq.match` exist from the start and cannot be
//!   deleted. A queue declared with the empty name gets a generated
//!   `amq.gen-` name, returned in its [`QueueInfo`].
//! - `prefetch` must be at least 1 (the trait's contract; AMQP's 0 meaning
//!   "unlimited" is refused with `InvalidInput`).

mod dead_letter;
mod delivery;
mod queue;
mod routing;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::delivery::{CancelOnDrop, DeliveryStream, EmbeddedAcker, Owner, Settlement};
use self::queue::Effects;
use self::state::State;
use super::{
    Broker, ConsumeOptions, Consumer, Delivery, ExchangeKind, ExchangeOptions, FieldTable, Message,
    Published, QueueInfo, QueueOptions,
};
use crate::error::{Error, Result};

/// The in-process broker. Cloning gives another handle to the same broker.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use strata::engines::queue::{Broker, Message, QueueOptions};
/// use strata::engines::queue::embedded::EmbeddedBroker;
///
/// let broker = EmbeddedBroker::new();
/// broker.declare_queue("tasks", QueueOptions::default()).await?;
/// let published = broker.publish("", "tasks", Message::new("train")).await?;
/// assert!(published.routed);
/// let delivery = broker.get("tasks").await?.expect("a message");
/// assert_eq!(&delivery.message.body[..], b"train");
/// delivery.ack().await?;
/// # Ok::<(), strata::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct EmbeddedBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker").finish_non_exhaustive()
    }
}

impl Default for EmbeddedBroker {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedBroker {
    /// An empty broker with RabbitMQ's predeclared `amq.*` exchanges.
    /// Needs no runtime; the expiry timer starts on first use of a TTL.
    pub fn new() -> Self {
        EmbeddedBroker {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new()),
                wake: Arc::new(Notify::new()),
                timer: Mutex::new(None),
                seed: name_seed(),
            }),
        }
    }
}

/// What the broker, its consumers' streams and its ackers share. Streams and
/// ackers hold it weakly, so that dropping the last broker handle ends the
/// streams.
#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the expiry timer: an earlier deadline, or the broker going.
    wake: Arc<Notify>,
    timer: Mutex<Option<JoinHandle<()>>>,
    /// Makes generated names differ between brokers and runs.
    seed: u64,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Lets the timer task see the broker is gone and end.
        self.wake.notify_one();
    }
}

/// Recovers a poisoned lock: a panic while holding it would be a bug here,
/// and every operation leaves the maps consistent at each step, so going on
/// beats failing every later call (including those in `Drop`, which cannot
/// report anything).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Runs one operation under the lock, then routes its dead letters and
    /// hands new deadlines to the timer.
    fn run<T>(self: &Arc<Self>, op: impl FnOnce(&mut State, &mut Effects) -> T) -> T {
        let mut fx = Effects::new(self);
        let (out, armed) = {
            let mut state = lock(&self.state);
            let out = op(&mut state, &mut fx);
            (out, state.finish(&mut fx))
        };
        // A deadline is armed only when it is earlier than what the queue
        // had armed, so this is rare on a queue-TTL workload (later heads
        // never arm), and it also restarts a timer whose runtime is gone.
        if armed {
            self.wake_timer();
        }
        out
    }

    fn settle(self: &Arc<Self>, queue: u64, owner: Owner, tag: u64, how: Settlement) -> Result<()> {
        self.run(|state, fx| state.settle(queue, owner, tag, how, fx))
    }

    fn cancel(self: &Arc<Self>, queue: u64, consumer: u64) {
        self.run(|state, fx| state.cancel(queue, consumer, fx));
    }

    /// Starts the timer task if it is not running (first deadline, or its
    /// runtime is gone), and tells it to look at the deadlines again.
    fn wake_timer(self: &Arc<Self>) {
        let mut timer = lock(&self.timer);
        if timer.as_ref().is_none_or(JoinHandle::is_finished)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            *timer =
                Some(runtime.spawn(expiry_timer(Arc::downgrade(self), Arc::clone(&self.wake))));
        }
        self.wake.notify_one();
    }

    /// A name unique in this broker, shaped like RabbitMQ's generated ones.
    fn generated_name(&self, prefix: &str, id: u64) -> String {
        // splitmix64's finaliser is a bijection, so distinct ids stay
        // distinct; it only makes the names look random.
        let mut z = id ^ self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        format!("{prefix}{z:016x}")
    }
}

fn name_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Expires queue heads as their deadlines come. Holds the broker weakly and
/// ends when it is gone.
async fn expiry_timer(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.run(|state, fx| {
                state.fire_deadlines(fx);
            });
            lock(&shared.state).next_deadline()
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

#[async_trait]
impl Broker for EmbeddedBroker {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn target(&self) -> String {
        "in-process".to_owned()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<()> {
        self.shared
            .run(|state, _| state.declare_exchange(name, kind, options))
            .map_err(|e| e.with_operation("declare_exchange"))
    }

    async fn delete_exchange(&self, name: &str) -> Result<()> {
        self.shared
            .run(|state, _| state.delete_exchange(name))
            .map_err(|e| e.with_operation("delete_exchange"))
    }

    async fn declare_queue(&self, name: &str, options: QueueOptions) -> Result<QueueInfo> {
        self.shared
            .run(|state, fx| {
                if name.is_empty() {
                    let id = state.fresh_id();
                    let generated = self.shared.generated_name("amq.gen-", id);
                    state.declare_queue(&generated, true, options, fx)
                } else {
                    state.declare_queue(name, false, options, fx)
                }
            })
            .map_err(|e| e.with_operation("declare_queue"))
    }

    async fn delete_queue(&self, name: &str) -> Result<()> {
        self.shared.run(|state, _| state.delete_queue(name));
        Ok(())
    }

    async fn purge_queue(&self, name: &str) -> Result<u64> {
        self.shared
            .run(|state, fx| state.purge_queue(name, fx))
            .map_err(|e| e.with_operation("purge_queue"))
    }

    async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        self.shared
            .run(|state, fx| state.queue_info(name, fx))
            .map_err(|e| e.with_operation("queue_info"))
    }

    async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        self.shared
            .run(|state, _| state.bind_queue(queue, exchange, routing_key, arguments))
            .map_err(|e| e.with_operation("bind_queue"))
    }

    async fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        self.shared
            .run(|state, _| state.unbind_queue(queue, exchange, routing_key, &arguments))
            .map_err(|e| e.with_operation("unbind_queue"))
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<Published> {
        self.shared
            .run(|state, fx| state.publish(exchange, routing_key, message, fx))
            .map(|routed| Published { routed })
            .map_err(|e| e.with_operation("publish"))
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Consumer> {
        if options.prefetch == 0 {
            return Err(Error::invalid(
                "prefetch must be at least 1 (0, AMQP's \"unlimited\", is not supported)",
            )
            .with_field("prefetch")
            .with_operation("consume"));
        }
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let (queue_id, consumer_id) = self
            .shared
            .run(|state, fx| state.consume(queue, options.prefetch, sender, fx))
            .map_err(|e| e.with_operation("consume"))?;
        let tag = options
            .consumer_tag
            .unwrap_or_else(|| self.shared.generated_name("amq.ctag-", consumer_id));
        let stream = DeliveryStream {
            _cancel: CancelOnDrop {
                shared: Arc::downgrade(&self.shared),
                queue: queue_id,
                consumer: consumer_id,
            },
            receiver,
        };
        Ok(Consumer::new(tag, Box::pin(stream)))
    }

    async fn get(&self, queue: &str) -> Result<Option<Delivery>> {
        let taken = self
            .shared
            .run(|state, fx| state.get(queue, fx))
            .map_err(|e| e.with_operation("get"))?;
        // Built outside the lock: dropping an unsettled `get` acker takes the
        // lock to requeue.
        Ok(taken.map(|(queue_id, tag, entry)| {
            let acker = EmbeddedAcker::new(Arc::downgrade(&self.shared), queue_id, Owner::Get, tag);
            Delivery::new(
                tag,
                entry.exchange,
                entry.routing_key,
                entry.redelivered,
                entry.message,
                Arc::new(acker),
            )
        }))
    }
}

#[cfg(test)]
mod tests;
