//! The consumer side: the delivery stream with its cancel-on-drop guard, and
//! the acker that settles one delivery.

use std::pin::Pin;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use tokio::sync::mpsc::UnboundedReceiver;

use super::Shared;
use crate::engines::queue::{Acker, Delivery};
use crate::error::{Error, ErrorKind, Result};

/// Who holds an unsettled delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// The consumer with this id.
    Consumer(u64),
    /// A `get` caller.
    Get,
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Settlement {
    /// Done with: forget it.
    Ack,
    /// Back to the head of its priority, redelivered.
    Requeue,
    /// Dead-lettered if the queue has a dead-letter exchange, else dropped.
    Discard,
}

/// Settles one delivery of the embedded broker.
///
/// A delivery from `get` has no consumer (AMQP's channel) to outlive it:
/// when its last clone is dropped unsettled, the message is requeued, as
/// closing the channel would. A consumer's delivery dropped unsettled stays
/// unacknowledged until the consumer goes, as in AMQP.
#[derive(Debug)]
pub(super) struct EmbeddedAcker {
    shared: Weak<Shared>,
    queue: u64,
    owner: Owner,
    tag: u64,
    settled: AtomicBool,
}

impl EmbeddedAcker {
    /// The acker of delivery `tag` of `owner` on queue `queue`.
    pub(super) fn new(shared: Weak<Shared>, queue: u64, owner: Owner, tag: u64) -> Self {
        EmbeddedAcker {
            shared,
            queue,
            owner,
            tag,
            settled: AtomicBool::new(false),
        }
    }

    fn settle(&self, how: Settlement, operation: &'static str) -> Result<()> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Err(unknown_tag(self.tag).with_operation(operation));
        }
        let Some(shared) = self.shared.upgrade() else {
            return Err(
                Error::new(ErrorKind::Unavailable, "the embedded broker is gone")
                    .with_operation(operation),
            );
        };
        shared
            .settle(self.queue, self.owner, self.tag, how)
            .map_err(|e| e.with_operation(operation))
    }
}

/// RabbitMQ's channel error for a tag it does not know.
pub(super) fn unknown_tag(tag: u64) -> Error {
    Error::invalid(format!("PRECONDITION_FAILED - unknown delivery tag {tag}"))
}

#[async_trait]
impl Acker for EmbeddedAcker {
    async fn ack(&self) -> Result<()> {
        self.settle(Settlement::Ack, "ack")
    }

    async fn nack(&self, requeue: bool) -> Result<()> {
        let how = if requeue {
            Settlement::Requeue
        } else {
            Settlement::Discard
        };
        self.settle(how, "nack")
    }

    async fn reject(&self, requeue: bool) -> Result<()> {
        let how = if requeue {
            Settlement::Requeue
        } else {
            Settlement::Discard
        };
        self.settle(how, "reject")
    }
}

impl Drop for EmbeddedAcker {
    fn drop(&mut self) {
        if self.owner != Owner::Get || *self.settled.get_mut() {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            // Nothing to report to: the caller let the delivery go. The
            // only failure is an unknown tag, which means it was settled.
            let _ = shared.settle(self.queue, self.owner, self.tag, Settlement::Requeue);
        }
    }
}

/// Cancels the consumer when the stream is dropped.
#[derive(Debug)]
pub(super) struct CancelOnDrop {
    pub(super) shared: Weak<Shared>,
    pub(super) queue: u64,
    pub(super) consumer: u64,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.cancel(self.queue, self.consumer);
        }
    }
}

/// The stream behind a [`Consumer`](crate::engines::queue::Consumer).
#[derive(Debug)]
pub(super) struct DeliveryStream {
    // Declared first so it drops first: the consumer is cancelled (and its
    // deliveries requeued) while the receiver still exists, so the broker
    // never sends into a closed channel.
    pub(super) _cancel: CancelOnDrop,
    pub(super) receiver: UnboundedReceiver<Delivery>,
}

impl Stream for DeliveryStream {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().receiver.poll_recv(cx).map(|d| d.map(Ok))
    }
}
