//! Deliveries: the consumer stream and the ackers of consumed and fetched
//! messages.
//!
//! A consumer owns its channel: when its stream is dropped, lapin cancels
//! the consumer and closes the channel, and RabbitMQ requeues what the
//! consumer had not settled. Ackers therefore do not keep a consumer's
//! channel open. A `get` delivery does keep its channel (taken from the plain
//! pool) until it is settled, then returns it to the pool; dropped
//! unsettled, the channel closes and the message is requeued.

use std::pin::Pin;
use std::sync::{Mutex, PoisonError, Weak};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};

use super::connection::{Link, Mode};
use super::{convert, error};
use crate::engines::queue::{Acker, Delivery};
use crate::error::{Error, Result};

/// How a delivery is settled.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Nack { requeue: bool },
    Reject { requeue: bool },
}

impl Settle {
    fn operation(self) -> &'static str {
        match self {
            Settle::Ack => "ack",
            Settle::Nack { .. } => "nack",
            Settle::Reject { .. } => "reject",
        }
    }

    /// Sends the settlement through lapin's acker; `Ok(false)` when the acker
    /// was used already or its channel is gone.
    async fn send(self, acker: &lapin::Acker) -> lapin::Result<bool> {
        match self {
            Settle::Ack => acker.ack(BasicAckOptions::default()).await,
            Settle::Nack { requeue } => {
                acker
                    .nack(BasicNackOptions {
                        requeue,
                        multiple: false,
                    })
                    .await
            }
            Settle::Reject { requeue } => acker.reject(BasicRejectOptions { requeue }).await,
        }
    }
}

/// Settles through lapin's acker, mapping its outcomes.
async fn settle(acker: &lapin::Acker, how: Settle, target: &str) -> Result<()> {
    let operation = how.operation();
    match how.send(acker).await {
        Ok(true) => Ok(()),
        // RabbitMQ's answer to a second settle is this channel error; the
        // embedded broker reports both cases the same way.
        Ok(false) if acker.poisoned() => Err(Error::invalid(
            "PRECONDITION_FAILED - unknown delivery tag: the delivery's channel closed \
             (its consumer was dropped or the connection was lost), so the broker requeued it",
        )
        .with_operation(operation)
        .with_target(target)),
        Ok(false) => Err(Error::invalid(
            "PRECONDITION_FAILED - unknown delivery tag: the delivery was already settled",
        )
        .with_operation(operation)
        .with_target(target)),
        Err(e) => Err(error::map(e, operation, target)),
    }
}

/// The acker of a consumed delivery.
#[derive(Debug)]
pub(super) struct ConsumedAcker {
    acker: lapin::Acker,
    target: String,
}

#[async_trait]
impl Acker for ConsumedAcker {
    async fn ack(&self) -> Result<()> {
        settle(&self.acker, Settle::Ack, &self.target).await
    }

    async fn nack(&self, requeue: bool) -> Result<()> {
        settle(&self.acker, Settle::Nack { requeue }, &self.target).await
    }

    async fn reject(&self, requeue: bool) -> Result<()> {
        settle(&self.acker, Settle::Reject { requeue }, &self.target).await
    }
}

/// The acker of a `get` delivery; holds the channel until settled.
pub(super) struct FetchedAcker {
    acker: lapin::Acker,
    channel: Mutex<Option<Channel>>,
    link: Weak<Link>,
    target: String,
}

impl std::fmt::Debug for FetchedAcker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedAcker")
            .field("acker", &self.acker)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl FetchedAcker {
    async fn settle(&self, how: Settle) -> Result<()> {
        settle(&self.acker, how, &self.target).await?;
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(channel), Some(link)) = (channel, self.link.upgrade()) {
            link.give_back(Mode::Plain, channel);
        }
        Ok(())
    }
}

#[async_trait]
impl Acker for FetchedAcker {
    async fn ack(&self) -> Result<()> {
        self.settle(Settle::Ack).await
    }

    async fn nack(&self, requeue: bool) -> Result<()> {
        self.settle(Settle::Nack { requeue }).await
    }

    async fn reject(&self, requeue: bool) -> Result<()> {
        self.settle(Settle::Reject { requeue }).await
    }
}

/// A delivery from `basic.get`, holding `channel` until settled.
pub(super) fn fetched(
    delivery: lapin::message::Delivery,
    channel: Channel,
    link: Weak<Link>,
    target: &str,
) -> Delivery {
    let message = convert::to_message(delivery.data, &delivery.properties);
    let acker = FetchedAcker {
        acker: delivery.acker,
        channel: Mutex::new(Some(channel)),
        link,
        target: target.to_owned(),
    };
    Delivery::new(
        delivery.delivery_tag,
        delivery.exchange.to_string(),
        delivery.routing_key.to_string(),
        delivery.redelivered,
        message,
        std::sync::Arc::new(acker),
    )
}

/// The stream of one consumer. Owns the consumer's channel: dropping the
/// stream cancels the consumer and closes the channel.
pub(super) struct ConsumerStream {
    consumer: lapin::Consumer,
    // Held so the channel lives exactly as long as the stream.
    _channel: Channel,
    target: String,
}

impl ConsumerStream {
    /// Wraps lapin's consumer on its dedicated `channel`.
    pub(super) fn new(consumer: lapin::Consumer, channel: Channel, target: String) -> Self {
        ConsumerStream {
            consumer,
            _channel: channel,
            target,
        }
    }
}

impl Stream for ConsumerStream {
    type Item = Result<Delivery>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = match self.consumer.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(item)) => item,
        };
        Poll::Ready(Some(match item {
            Ok(delivery) => {
                let message = convert::to_message(delivery.data, &delivery.properties);
                let acker = ConsumedAcker {
                    acker: delivery.acker,
                    target: self.target.clone(),
                };
                Ok(Delivery::new(
                    delivery.delivery_tag,
                    delivery.exchange.to_string(),
                    delivery.routing_key.to_string(),
                    delivery.redelivered,
                    message,
                    std::sync::Arc::new(acker),
                ))
            }
            // lapin ends the stream after an error: the caller sees the
            // error, then `None`.
            Err(e) => Err(error::map(e, "consume", &self.target)),
        }))
    }
}
