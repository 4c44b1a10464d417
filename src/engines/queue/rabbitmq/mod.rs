//! The RabbitMQ adapter of [`Broker`], through lapin.
//!
//! [`RabbitBroker`] maps each trait method onto one AMQP 0-9-1 method, so
//! RabbitMQ itself keeps the contracts of the
//! [module documentation](crate::engines::queue); this adapter adds only
//! connection handling and the mapping of types and errors.
//!
//! # Layout
//!
//! - `batch`: `publish_batch`, many confirms in flight on one channel.
//! - `connection`: the connection, pools of channels, lazy reconnection.
//! - `delivery`: the consumer stream and the ackers.
//! - `convert`: field tables, message properties and `x-` arguments.
//! - `error`: AMQP reply codes and lapin's errors as strata errors.
//!
//! # What holds, precisely
//!
//! - `connect` opens the connection within `connect_timeout` (retrying a
//!   refused connection with backoff until then): refused credentials fail
//!   with `AuthenticationFailed`, an unreachable broker with `Unavailable`,
//!   both naming the redacted URL. `amqp://` and `amqps://` (TLS through
//!   rustls with the webpki roots) are accepted.
//! - Management operations (declare, delete, purge, bind, unbind,
//!   `queue_info`) each use an idle channel of their own, so an AMQP channel
//!   error (which closes the channel) never reaches a later operation. If the
//!   connection turns out lost during one, it is reopened and the operation
//!   tried once more; these operations are idempotent.
//! - `queue_info` is a passive declaration: `messages` is RabbitMQ's ready
//!   count, `consumers` its consumer count. `delete_queue`,
//!   `delete_exchange` and `unbind_queue` of something absent succeed.
//! - `publish` uses a channel in confirm mode, held alone until the broker's
//!   `basic.ack`, with `mandatory` set: a `basic.return` before the ack means
//!   `routed: false`. A `basic.nack`, or a connection lost before the
//!   confirm, fails with `Unavailable` (retryable; the message may or may
//!   not have been enqueued); a publish is never retried behind the caller's
//!   back, since that could duplicate it.
//! - `publish_batch` sends the whole batch on one such channel without
//!   waiting, then awaits every confirm together, so one caller has many
//!   confirms in flight; exchanges are checked first, so a missing one fails
//!   only its own messages (`batch` has the details). Concurrent `publish`
//!   calls keep one channel each, so that a refused publish (which closes its
//!   channel) cannot fail another caller's confirm; a caller that needs
//!   throughput batches instead.
//! - `consume` opens a channel per consumer with `basic.qos(prefetch)`
//!   (per consumer) and manual acknowledgement. Dropping the [`Consumer`]
//!   cancels it and closes the channel, and RabbitMQ requeues its
//!   unacknowledged deliveries. When the broker cancels it (queue deleted)
//!   the stream ends with `None`. When the connection is lost the stream
//!   yields one `Unavailable` error and then ends: consumers do not resume
//!   by themselves; the caller consumes again (which reconnects).
//! - `get` is `basic.get` with manual acknowledgement on a channel the
//!   delivery keeps until it is settled; dropped unsettled, the channel closes
//!   and RabbitMQ requeues the message.
//! - Settling twice, or after the delivery's channel closed, fails with
//!   `InvalidInput` ("unknown delivery tag"), as on the embedded broker.
//! - `prefetch` must be at least 1 (AMQP's 0, "unlimited", is refused with
//!   `InvalidInput`, as on the embedded broker).
//!
//! # Queue types
//!
//! With `queue_type = quorum` ([`QueueType`]) every durable, non-exclusive,
//! non-auto-delete queue is declared with `x-queue-type: quorum` and without
//! `x-max-priority` (quorum queues of RabbitMQ 3.10 refuse it, so they
//! deliver in FIFO order); the others stay classic, as RabbitMQ requires.
//! Quorum queues also requeue behind the ready messages rather than at the
//! head, and add `x-delivery-count` to every delivery; docs/engines.md lists
//! the differences and `tests/queue_conformance.rs` (`rabbitmq_quorum`)
//! checks them.
//!
//! # Recovery
//!
//! The connection is reopened lazily: each operation first checks it and,
//! when it was lost (broker restart, forced close, missed heartbeats),
//! reconnects with exponential backoff (50 ms doubling up to 1 s) for at most
//! `connect_timeout`, then fails with `Unavailable`. One caller reconnects at
//! a time; those that waited on a reconnect that failed get its error at
//! once. A lost connection takes with it what AMQP ties to a connection:
//! consumers (their streams yield `Unavailable`, then end), unsettled
//! deliveries (requeued by the broker; settling fails), exclusive queues, and
//! unconfirmed publishes (`Unavailable`). lapin's own topology recovery is
//! not used, since it would re-declare what was since deleted through
//! another channel and non-durable queues a restarted broker rightly lost.

mod batch;
mod connection;
mod convert;
mod delivery;
mod error;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use lapin::Channel;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{FieldTable as AmqpTable, ShortString};
use lapin::{Confirmation, ExchangeKind as AmqpExchangeKind};

use self::connection::{Connector, Link, Mode};
use self::convert::short;
use self::delivery::ConsumerStream;
use super::{
    Broker, ConsumeOptions, Consumer, Delivery, ExchangeKind, ExchangeOptions, FieldTable, Message,
    Outgoing, Published, QueueInfo, QueueOptions,
};
use crate::config::{QueueType, RabbitConfig, redact_url, with_password};
use crate::error::{Error, ErrorKind, Result};

/// A broker on RabbitMQ. Holds one AMQP connection, reopened when lost.
pub struct RabbitBroker {
    connector: Connector,
    queue_type: QueueType,
}

impl std::fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connector prints the redacted URL only.
        f.debug_struct("RabbitBroker")
            .field("connector", &self.connector)
            .field("queue_type", &self.queue_type)
            .finish()
    }
}

impl RabbitBroker {
    /// Connects to the broker `config` names.
    ///
    /// # Errors
    ///
    /// `Config` for a malformed URL or a scheme other than `amqp`/`amqps`,
    /// a `tls_ca_file` that cannot be read or holds no certificate (or is
    /// set for an `amqp://` URL), a certificate that does not verify,
    /// `AuthenticationFailed` when RabbitMQ refuses the credentials,
    /// `Unavailable` when it cannot be reached within `connect_timeout`.
    pub async fn connect(config: &RabbitConfig) -> Result<Self> {
        let url = with_password(&config.url, config.password.as_ref())
            .map_err(|e| e.with_operation("connect"))?;
        let target = redact_url(&url);
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("rabbitmq: the URL `{target}` must start with amqp:// or amqps://"),
            )
            .with_operation("connect")
            .with_target(target));
        }
        let ca_pem = match &config.tls_ca_file {
            None => None,
            Some(path) => {
                if !url.starts_with("amqps://") {
                    return Err(Error::new(
                        ErrorKind::Config,
                        "queue.tls_ca_file is set but queue.url is not an amqps:// (TLS) URL",
                    )
                    .with_field("queue.tls_ca_file")
                    .with_operation("connect")
                    .with_target(target));
                }
                let pem = crate::engines::tls::read_ca_file("queue.tls_ca_file", path)
                    .map_err(|e| e.with_operation("connect").with_target(target.clone()))?;
                // Checked to hold certificates in PEM, which is ASCII.
                Some(String::from_utf8_lossy(&pem).into_owned())
            }
        };
        let connector = Connector::new(&url, target, config.connect_timeout, ca_pem)?;
        connector.link().await?;
        Ok(RabbitBroker {
            connector,
            queue_type: config.queue_type,
        })
    }

    /// The `connection_name` this broker's AMQP connection carries (shown by
    /// `rabbitmqctl list_connections user_provided_name`); unique per
    /// process and broker.
    pub fn connection_name(&self) -> &str {
        self.connector.name()
    }

    fn map(&self, error: lapin::Error, operation: &'static str) -> Error {
        error::map(error, operation, self.connector.target())
    }

    /// Runs `body` on the current connection; when it fails because the
    /// connection was lost meanwhile, reconnects and runs it once more. Only
    /// for operations that are safe to repeat.
    async fn with_link<T, F, Fut>(&self, operation: &'static str, body: F) -> Result<T>
    where
        F: Fn(Arc<Link>) -> Fut,
        Fut: Future<Output = lapin::Result<T>>,
    {
        let mut retried = false;
        loop {
            let link = self.connector.link().await?;
            match body(Arc::clone(&link)).await {
                Ok(value) => return Ok(value),
                Err(e) if !retried && !link.is_open() => {
                    tracing::debug!(operation, error = %e, "rabbitmq connection lost; retrying once");
                    retried = true;
                }
                Err(e) => return Err(self.map(e, operation)),
            }
        }
    }

    /// Runs one method on an idle plain channel, which goes back to the pool
    /// only if the method succeeded.
    async fn on_channel<T, F, Fut>(&self, operation: &'static str, method: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = lapin::Result<T>>,
    {
        let method = &method;
        self.with_link(operation, |link| async move {
            let channel = link.take(Mode::Plain).await?;
            let value = method(channel.clone()).await?;
            link.give_back(Mode::Plain, channel);
            Ok(value)
        })
        .await
    }

    fn name(&self, value: &str, field: &str, operation: &'static str) -> Result<ShortString> {
        short(value, field).map_err(|e| e.with_operation(operation).with_target(self.target()))
    }

    /// The driver's forms of a binding's queue, exchange, routing key and
    /// arguments, each checked, for `bind_queue` and `unbind_queue`.
    fn binding(
        &self,
        operation: &'static str,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<(ShortString, ShortString, ShortString, AmqpTable)> {
        let queue = self.name(queue, "queue", operation)?;
        let exchange = self.name(exchange, "exchange", operation)?;
        let key = self.name(routing_key, "routing_key", operation)?;
        let arguments = convert::to_amqp_table(arguments, "arguments")
            .map_err(|e| e.with_operation(operation).with_target(self.target()))?;
        Ok((queue, exchange, key, arguments))
    }

    fn consumer_tag(&self) -> String {
        static TAGS: AtomicU64 = AtomicU64::new(0);
        format!(
            "{}-ctag-{}",
            self.connector.name(),
            TAGS.fetch_add(1, Ordering::Relaxed)
        )
    }
}

fn exchange_kind(kind: ExchangeKind) -> AmqpExchangeKind {
    match kind {
        ExchangeKind::Direct => AmqpExchangeKind::Direct,
        ExchangeKind::Topic => AmqpExchangeKind::Topic,
        ExchangeKind::Fanout => AmqpExchangeKind::Fanout,
        ExchangeKind::Headers => AmqpExchangeKind::Headers,
    }
}

/// `Ok` for a `404`: deleting or unbinding something absent is fine.
fn absent_is_fine(result: lapin::Result<()>) -> lapin::Result<()> {
    match result {
        Err(e) if error::is_not_found(&e) => Ok(()),
        other => other,
    }
}

fn queue_info(queue: &lapin::Queue) -> QueueInfo {
    QueueInfo {
        name: queue.name().to_string(),
        messages: u64::from(queue.message_count()),
        consumers: u64::from(queue.consumer_count()),
    }
}

#[async_trait]
impl Broker for RabbitBroker {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn target(&self) -> String {
        self.connector.target().to_owned()
    }

    async fn ping(&self) -> Result<()> {
        // A passive declaration of an exchange every vhost has: one round trip.
        self.on_channel("ping", |channel| async move {
            channel
                .exchange_declare(
                    "amq.direct".into(),
                    AmqpExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        passive: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    AmqpTable::default(),
                )
                .await
        })
        .await
    }

    async fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<()> {
        const OP: &str = "declare_exchange";
        let name = self.name(name, "exchange", OP)?;
        let declare = ExchangeDeclareOptions {
            durable: options.durable,
            auto_delete: options.auto_delete,
            ..ExchangeDeclareOptions::default()
        };
        self.on_channel(OP, |channel| {
            let name = name.clone();
            async move {
                channel
                    .exchange_declare(name, exchange_kind(kind), declare, AmqpTable::default())
                    .await
            }
        })
        .await
    }

    async fn delete_exchange(&self, name: &str) -> Result<()> {
        const OP: &str = "delete_exchange";
        let name = self.name(name, "exchange", OP)?;
        self.on_channel(OP, |channel| {
            let name = name.clone();
            async move {
                absent_is_fine(
                    channel
                        .exchange_delete(name, ExchangeDeleteOptions::default())
                        .await,
                )
            }
        })
        .await
    }

    async fn declare_queue(&self, name: &str, options: QueueOptions) -> Result<QueueInfo> {
        const OP: &str = "declare_queue";
        let name = self.name(name, "queue", OP)?;
        let arguments = convert::queue_arguments(&options, self.queue_type)
            .map_err(|e| e.with_operation(OP).with_target(self.target()))?;
        let declare = QueueDeclareOptions {
            durable: options.durable,
            exclusive: options.exclusive,
            auto_delete: options.auto_delete,
            ..QueueDeclareOptions::default()
        };
        self.on_channel(OP, |channel| {
            let (name, arguments) = (name.clone(), arguments.clone());
            async move {
                let queue = channel.queue_declare(name, declare, arguments).await?;
                Ok(queue_info(&queue))
            }
        })
        .await
    }

    async fn delete_queue(&self, name: &str) -> Result<()> {
        const OP: &str = "delete_queue";
        let name = self.name(name, "queue", OP)?;
        self.on_channel(OP, |channel| {
            let name = name.clone();
            async move {
                let deleted = channel
                    .queue_delete(name, QueueDeleteOptions::default())
                    .await
                    .map(|_| ());
                absent_is_fine(deleted)
            }
        })
        .await
    }

    async fn purge_queue(&self, name: &str) -> Result<u64> {
        const OP: &str = "purge_queue";
        let name = self.name(name, "queue", OP)?;
        self.on_channel(OP, |channel| {
            let name = name.clone();
            async move {
                let purged = channel
                    .queue_purge(name, QueuePurgeOptions::default())
                    .await?;
                Ok(u64::from(purged))
            }
        })
        .await
    }

    async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        const OP: &str = "queue_info";
        let name = self.name(name, "queue", OP)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.on_channel(OP, |channel| {
            let name = name.clone();
            async move {
                let queue = channel
                    .queue_declare(name, passive, AmqpTable::default())
                    .await?;
                Ok(queue_info(&queue))
            }
        })
        .await
    }

    async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        const OP: &str = "bind_queue";
        let (queue, exchange, key, arguments) =
            self.binding(OP, queue, exchange, routing_key, &arguments)?;
        self.on_channel(OP, |channel| {
            let (queue, exchange, key) = (queue.clone(), exchange.clone(), key.clone());
            let arguments = arguments.clone();
            async move {
                channel
                    .queue_bind(queue, exchange, key, QueueBindOptions::default(), arguments)
                    .await
            }
        })
        .await
    }

    async fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        const OP: &str = "unbind_queue";
        let (queue, exchange, key, arguments) =
            self.binding(OP, queue, exchange, routing_key, &arguments)?;
        self.on_channel(OP, |channel| {
            let (queue, exchange, key) = (queue.clone(), exchange.clone(), key.clone());
            let arguments = arguments.clone();
            async move {
                absent_is_fine(channel.queue_unbind(queue, exchange, key, arguments).await)
            }
        })
        .await
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<Published> {
        const OP: &str = "publish";
        let exchange = self.name(exchange, "exchange", OP)?;
        let key = self.name(routing_key, "routing_key", OP)?;
        let properties = convert::to_basic_properties(&message.properties)
            .map_err(|e| e.with_operation(OP).with_target(self.target()))?;
        // Only taking the channel is retried: once the message is sent, a
        // retry could enqueue it twice.
        let (link, channel) = self
            .with_link(OP, |link| async move {
                let channel = link.take(Mode::Confirm).await?;
                Ok((link, channel))
            })
            .await?;
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirmation = async {
            channel
                .basic_publish(exchange, key, options, &message.body, properties)
                .await?
                .await
        }
        .await
        .map_err(|e| self.map(e, OP))?;
        match confirmation {
            Confirmation::Ack(returned) => {
                link.give_back(Mode::Confirm, channel);
                Ok(Published {
                    routed: returned.is_none(),
                })
            }
            Confirmation::Nack(_) => {
                link.give_back(Mode::Confirm, channel);
                Err(Error::new(
                    ErrorKind::Unavailable,
                    "rabbitmq refused the message (basic.nack); it was not enqueued",
                )
                .with_operation(OP)
                .with_target(self.target()))
            }
            Confirmation::NotRequested => Err(Error::internal(
                "rabbitmq: the publishing channel was not in confirm mode",
            )
            .with_operation(OP)
            .with_target(self.target())),
        }
    }

    async fn publish_batch(&self, batch: Vec<Outgoing>) -> Vec<Result<Published>> {
        self.publish_many(batch).await
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Consumer> {
        const OP: &str = "consume";
        if options.prefetch == 0 {
            return Err(error::invalid(
                "prefetch must be at least 1 (0, AMQP's \"unlimited\", is not supported)",
                "prefetch",
                OP,
                &self.target(),
            ));
        }
        let queue = self.name(queue, "queue", OP)?;
        let tag = match options.consumer_tag {
            Some(tag) => tag,
            None => self.consumer_tag(),
        };
        let amqp_tag = self.name(&tag, "consumer_tag", OP)?;
        let (consumer, channel) = self
            .with_link(OP, |link| {
                let (queue, amqp_tag) = (queue.clone(), amqp_tag.clone());
                async move {
                    let channel = link.dedicated().await?;
                    channel
                        .basic_qos(options.prefetch, BasicQosOptions { global: false })
                        .await?;
                    let consumer = channel
                        .basic_consume(
                            queue,
                            amqp_tag,
                            BasicConsumeOptions::default(),
                            AmqpTable::default(),
                        )
                        .await?;
                    Ok((consumer, channel))
                }
            })
            .await?;
        let stream = ConsumerStream::new(consumer, channel, self.target());
        Ok(Consumer::new(tag, Box::pin(stream)))
    }

    async fn get(&self, queue: &str) -> Result<Option<Delivery>> {
        const OP: &str = "get";
        let queue = self.name(queue, "queue", OP)?;
        let target = self.target();
        self.with_link(OP, |link| {
            let (queue, target) = (queue.clone(), target.clone());
            async move {
                let channel = link.take(Mode::Plain).await?;
                let fetched = channel
                    .basic_get(queue, BasicGetOptions { no_ack: false })
                    .await?;
                Ok(match fetched {
                    None => {
                        link.give_back(Mode::Plain, channel);
                        None
                    }
                    Some(message) => Some(delivery::fetched(
                        message.delivery,
                        channel,
                        Arc::downgrade(&link),
                        &target,
                    )),
                })
            }
        })
        .await
    }
}
