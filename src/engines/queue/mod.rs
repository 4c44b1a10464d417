//! The queue engine: an AMQP 0-9-1-shaped broker of exchanges, queues and
//! bindings, with confirms, acknowledgements and dead-lettering.
//!
//! # Contracts every implementation keeps
//!
//! - Declarations are idempotent: declaring an exchange or queue again with
//!   the same options succeeds; with different options it fails with
//!   `Conflict` (AMQP `PRECONDITION_FAILED`).
//! - Routing: the default exchange `""` routes to the queue named by the
//!   routing key; `direct` on equal keys; `fanout` to every bound queue;
//!   `topic` on dot-separated words where `*` matches exactly one word and
//!   `#` zero or more; `headers` on the binding's arguments, all of them
//!   (`x-match = all`, the default) or any (`x-match = any`), ignoring
//!   arguments that start with `x-`.
//! - `publish` returns once the broker has taken responsibility for the
//!   message (a publisher confirm). [`Published::routed`] is `false` when no
//!   queue received it. Publishing to an exchange that does not exist fails
//!   with `NotFound`.
//! - A queue delivers by priority (with `x-max-priority`; a higher message
//!   priority first, capped at the maximum, FIFO within a priority), else in
//!   FIFO order; consumers take turns.
//! - A consumer never holds more than `prefetch` unacknowledged deliveries.
//! - `nack`/`reject` with requeue puts the message back at the head of its
//!   priority, and it is delivered again with `redelivered` set; without
//!   requeue, it is dead-lettered when the queue has `x-dead-letter-exchange`,
//!   else dropped. Dropping a [`Consumer`] requeues its unacknowledged
//!   deliveries, as closing an AMQP channel does.
//! - A message expires after the smaller of its own `expiration` and the
//!   queue's `x-message-ttl`; expiry is seen at the head of the queue, as
//!   RabbitMQ does. An expired message, and one pushed out of the head by
//!   `x-max-length`, is dead-lettered when the queue has a dead-letter
//!   exchange.
//! - A dead-lettered message goes to the dead-letter exchange with the
//!   queue's `x-dead-letter-routing-key` or else its original routing key,
//!   and carries the headers `x-first-death-reason` (`rejected`, `expired`
//!   or `maxlen`), `x-first-death-queue` and `x-first-death-exchange`.
//! - [`QueueInfo::messages`] counts messages ready for delivery, not those
//!   delivered and unacknowledged.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::Result;

pub mod embedded;
pub mod rabbitmq;
pub mod topic;

/// The type of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// Routes on equal routing keys.
    Direct,
    /// Routes on routing-key patterns with `*` and `#`.
    Topic,
    /// Routes to every bound queue.
    Fanout,
    /// Routes on message headers.
    Headers,
}

impl ExchangeKind {
    /// AMQP's name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Options of an exchange declaration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExchangeOptions {
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding is removed.
    pub auto_delete: bool,
}

/// Options of a queue declaration, with the `x-` arguments strata uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// Survives a broker restart.
    pub durable: bool,
    /// Used by one connection only and deleted when it closes.
    pub exclusive: bool,
    /// Deleted when its last consumer is cancelled.
    pub auto_delete: bool,
    /// `x-max-priority`: enables priorities 0..=max.
    pub max_priority: Option<u8>,
    /// `x-dead-letter-exchange`.
    pub dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<String>,
    /// `x-message-ttl`.
    pub message_ttl: Option<Duration>,
    /// `x-max-length`: beyond it the ready message at the head (the next to
    /// be delivered: the oldest of the highest priority) is dropped (or
    /// dead-lettered), as RabbitMQ's `drop-head` overflow does.
    pub max_length: Option<u64>,
}

/// A value in an AMQP field table (headers and binding arguments).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// A string.
    String(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<FieldValue>),
    /// A nested table.
    Table(FieldTable),
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> Self {
        FieldValue::String(s.to_owned())
    }
}

impl From<String> for FieldValue {
    fn from(s: String) -> Self {
        FieldValue::String(s)
    }
}

impl From<i64> for FieldValue {
    fn from(i: i64) -> Self {
        FieldValue::Int(i)
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

/// An AMQP field table.
pub type FieldTable = BTreeMap<String, FieldValue>;

/// Properties of a message (AMQP `basic` properties).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageProperties {
    /// MIME type of the body.
    pub content_type: Option<String>,
    /// Encoding of the body (`gzip`, ...).
    pub content_encoding: Option<String>,
    /// Application headers.
    pub headers: FieldTable,
    /// Priority, 0..=255; capped at the queue's `x-max-priority`.
    pub priority: Option<u8>,
    /// Application message id.
    pub message_id: Option<String>,
    /// Correlation id (request/reply).
    pub correlation_id: Option<String>,
    /// Reply-to queue.
    pub reply_to: Option<String>,
    /// Delivery mode 2: written to disk by a durable broker.
    pub persistent: bool,
    /// Per-message time to live.
    pub expiration: Option<Duration>,
}

/// A message: a body and its properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The payload.
    pub body: Bytes,
    /// The properties.
    pub properties: MessageProperties,
}

impl Message {
    /// A message with `body` and default properties.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            body: body.into(),
            properties: MessageProperties::default(),
        }
    }

    /// A JSON message: `content_type = application/json`.
    pub fn json(value: &serde_json::Value) -> Self {
        let mut message = Message::new(value.to_string());
        message.properties.content_type = Some("application/json".into());
        message
    }

    /// Sets the priority.
    pub fn with_priority(mut self, priority: u8) -> Self {
        self.properties.priority = Some(priority);
        self
    }

    /// Sets a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<FieldValue>) -> Self {
        self.properties.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the per-message expiration.
    pub fn with_expiration(mut self, ttl: Duration) -> Self {
        self.properties.expiration = Some(ttl);
        self
    }

    /// Marks the message persistent.
    pub fn persistent(mut self) -> Self {
        self.properties.persistent = true;
        self
    }

    /// Sets the message id.
    pub fn with_message_id(mut self, id: impl Into<String>) -> Self {
        self.properties.message_id = Some(id.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.properties.correlation_id = Some(id.into());
        self
    }
}

/// The broker's confirmation of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// At least one queue received the message.
    pub routed: bool,
}

/// One message of a batch given to [`Broker::publish_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The exchange to publish to.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The message.
    pub message: Message,
}

impl Outgoing {
    /// A message for `exchange` with `routing_key`.
    pub fn new(
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
        message: Message,
    ) -> Self {
        Outgoing {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            message,
        }
    }
}

/// Options of [`Broker::consume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeOptions {
    /// Most unacknowledged deliveries at once (`basic.qos`); at least 1.
    pub prefetch: u16,
    /// Consumer tag; generated when absent.
    pub consumer_tag: Option<String>,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        ConsumeOptions {
            prefetch: 10,
            consumer_tag: None,
        }
    }
}

/// Depth and consumers of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Messages ready for delivery.
    pub messages: u64,
    /// Active consumers.
    pub consumers: u64,
}

/// Settles one delivery; implemented by each backend.
#[async_trait]
pub trait Acker: Send + Sync + std::fmt::Debug {
    /// Acknowledges: the message is done.
    async fn ack(&self) -> Result<()>;
    /// Negative acknowledgement, with or without requeue.
    async fn nack(&self, requeue: bool) -> Result<()>;
    /// Rejection, with or without requeue (same effect as `nack` for one
    /// message).
    async fn reject(&self, requeue: bool) -> Result<()>;
}

/// A message delivered to a consumer, to be settled exactly once.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The delivery tag, unique per consumer.
    pub delivery_tag: u64,
    /// The exchange it was published to.
    pub exchange: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Delivered before and requeued.
    pub redelivered: bool,
    /// The message.
    pub message: Message,
    acker: Arc<dyn Acker>,
}

impl Delivery {
    /// Builds a delivery; used by backends.
    pub fn new(
        delivery_tag: u64,
        exchange: String,
        routing_key: String,
        redelivered: bool,
        message: Message,
        acker: Arc<dyn Acker>,
    ) -> Self {
        Delivery {
            delivery_tag,
            exchange,
            routing_key,
            redelivered,
            message,
            acker,
        }
    }

    /// Acknowledges the delivery.
    pub async fn ack(&self) -> Result<()> {
        self.acker.ack().await
    }

    /// Negatively acknowledges it.
    pub async fn nack(&self, requeue: bool) -> Result<()> {
        self.acker.nack(requeue).await
    }

    /// Rejects it.
    pub async fn reject(&self, requeue: bool) -> Result<()> {
        self.acker.reject(requeue).await
    }
}

/// A stream of deliveries from one queue. Dropping it cancels the consumer
/// and requeues its unacknowledged deliveries.
pub struct Consumer {
    tag: String,
    stream: Pin<Box<dyn Stream<Item = Result<Delivery>> + Send>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("tag", &self.tag).finish()
    }
}

impl Consumer {
    /// Wraps a backend's stream of deliveries.
    pub fn new(tag: String, stream: Pin<Box<dyn Stream<Item = Result<Delivery>> + Send>>) -> Self {
        Consumer { tag, stream }
    }

    /// The consumer tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The next delivery; `None` when the consumer was cancelled by the
    /// broker (queue deleted) or the broker is gone.
    pub async fn next(&mut self) -> Option<Result<Delivery>> {
        self.stream.next().await
    }
}

/// An AMQP 0-9-1-shaped message broker.
///
/// Implementations: [`embedded::EmbeddedBroker`] (in-process; messages live
/// in memory) and the RabbitMQ adapter. The module documentation lists the
/// contracts; `tests/queue_conformance.rs` checks them against every
/// implementation.
#[async_trait]
pub trait Broker: Send + Sync + std::fmt::Debug {
    /// The implementation: `"embedded"` or `"rabbitmq"`.
    fn kind(&self) -> &'static str;

    /// Where it connects, for humans, with secrets redacted.
    fn target(&self) -> String;

    /// Checks that the broker answers.
    async fn ping(&self) -> Result<()>;

    /// Declares an exchange.
    async fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<()>;

    /// Deletes an exchange and its bindings. Absent is fine.
    async fn delete_exchange(&self, name: &str) -> Result<()>;

    /// Declares a queue and returns its state.
    async fn declare_queue(&self, name: &str, options: QueueOptions) -> Result<QueueInfo>;

    /// Deletes a queue and its messages. Absent is fine.
    async fn delete_queue(&self, name: &str) -> Result<()>;

    /// Removes every ready message; returns how many.
    async fn purge_queue(&self, name: &str) -> Result<u64>;

    /// The queue's depth and consumers; `NotFound` when it does not exist.
    async fn queue_info(&self, name: &str) -> Result<QueueInfo>;

    /// Binds a queue to an exchange. `arguments` carry the header match of a
    /// headers exchange (with `x-match`).
    async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()>;

    /// Removes a binding. Absent is fine.
    async fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()>;

    /// Publishes and waits for the broker's confirmation.
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<Published>;

    /// Publishes every message of `batch` with many confirmations in
    /// flight at once, and answers each message's fate, in the order given:
    /// the result at index `i` is what [`Broker::publish`] would have said
    /// of message `i` (`routed: false` when no queue took it, `NotFound`
    /// when its exchange does not exist). One message's failure does not
    /// stop the others being tried. An empty batch answers an empty `Vec`.
    ///
    /// Not atomic: each message is enqueued or not on its own, and a batch
    /// is never retried as a whole. When the broker's connection (or, on
    /// RabbitMQ, the publishing channel, say because an exchange was deleted
    /// during the batch) is lost before a message is confirmed, that message
    /// fails with `Unavailable` and may or may not have been enqueued.
    async fn publish_batch(&self, batch: Vec<Outgoing>) -> Vec<Result<Published>> {
        let mut results = Vec::with_capacity(batch.len());
        for item in batch {
            results.push(
                self.publish(&item.exchange, &item.routing_key, item.message)
                    .await,
            );
        }
        results
    }

    /// Starts consuming from a queue.
    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Consumer>;

    /// Takes one ready message, if any (`basic.get`); it must be settled.
    async fn get(&self, queue: &str) -> Result<Option<Delivery>>;
}
