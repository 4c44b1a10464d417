//! Publishing with many confirmations in flight, each message's fate told
//! to its own caller.
//!
//! Callers hand messages to one driver task through a channel. The driver
//! takes whatever is waiting (up to `publish_batch` messages) as one batch
//! and gives it to [`Broker::publish_batch`], which keeps the whole batch's
//! confirmations in flight at once; up to `publish_in_flight` batches are
//! out at a time. Each caller waits for its own message's confirmation: an
//! `Ok` means the broker took responsibility for it; an error means it may
//! not have been enqueued, and says so.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::engines::Broker;
use crate::engines::queue::{FieldValue, Outgoing, Published};
use crate::error::{Error, ErrorKind, Result};

struct Request {
    item: Outgoing,
    reply: oneshot::Sender<Result<Published>>,
}

/// The batching publisher. Cheap to clone; the driver stops when the last
/// clone is dropped, after publishing what it was given.
#[derive(Clone)]
pub struct Publisher {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    /// Starts the driver over `broker` (must run inside a tokio runtime).
    pub fn start(broker: Arc<dyn Broker>, batch: usize, in_flight: usize) -> Self {
        let batch = batch.max(1);
        let (requests, receiver) = mpsc::channel(batch * in_flight.max(1) * 2);
        tokio::spawn(drive(broker, receiver, batch, in_flight.max(1)));
        Publisher { requests }
    }

    /// Publishes one message and waits for its confirmation.
    pub async fn publish(&self, mut item: Outgoing) -> Result<Published> {
        stamp(&mut item);
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { item, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Publishes many messages, all in flight together; the results are in
    /// the order given.
    pub async fn publish_many(&self, items: Vec<Outgoing>) -> Vec<Result<Published>> {
        let mut answers = Vec::with_capacity(items.len());
        for mut item in items {
            stamp(&mut item);
            let (reply, answer) = oneshot::channel();
            match self.requests.send(Request { item, reply }).await {
                Ok(()) => answers.push(Some(answer)),
                Err(_) => answers.push(None),
            }
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer {
                Some(answer) => answer.await.unwrap_or_else(|_| Err(stopped())),
                None => Err(stopped()),
            });
        }
        results
    }
}

/// Stamps what the worker reports on: when the message was first
/// published, the request it was published for, and (when traces are
/// exported) the trace context of the span publishing it. A message
/// published again (a retry, a replay) keeps its first stamps.
fn stamp(item: &mut Outgoing) {
    let headers = &mut item.message.properties.headers;
    headers
        .entry(crate::trace::PUBLISHED_AT.to_owned())
        .or_insert_with(|| FieldValue::Int(chrono::Utc::now().timestamp_millis()));
    if let Some(id) = crate::trace::current() {
        headers
            .entry(crate::trace::HEADER.to_owned())
            .or_insert(FieldValue::String(id));
    }
    if !headers.contains_key(crate::telemetry::TRACEPARENT)
        && let Some(traceparent) = crate::telemetry::current_traceparent()
    {
        headers.insert(
            crate::telemetry::TRACEPARENT.to_owned(),
            FieldValue::String(traceparent),
        );
    }
}

fn stopped() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the publisher stopped before the broker confirmed the message; it may not have been enqueued",
    )
    .with_operation("publish")
}

async fn drive(
    broker: Arc<dyn Broker>,
    mut receiver: mpsc::Receiver<Request>,
    batch: usize,
    in_flight: usize,
) {
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = receiver.recv().await {
        let mut requests = vec![first];
        while requests.len() < batch {
            match receiver.try_recv() {
                Ok(request) => requests.push(request),
                Err(_) => break,
            }
        }
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            let (items, replies): (Vec<_>, Vec<_>) =
                requests.into_iter().map(|r| (r.item, r.reply)).unzip();
            let count = items.len();
            let mut results = broker.publish_batch(items).await;
            results.resize_with(count, || {
                Err(Error::internal(
                    "the broker answered fewer results than messages",
                ))
            });
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away no longer wants its answer.
                let _ = reply.send(result);
            }
            drop(slot);
        });
    }
    // Let the batches in flight finish before the driver ends.
    let _ = slots.acquire_many(in_flight as u32).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::queue::embedded::EmbeddedBroker;
    use crate::engines::queue::{ExchangeKind, ExchangeOptions, Message, QueueOptions};

    #[tokio::test]
    async fn each_caller_learns_its_own_message_s_fate() {
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
        broker
            .declare_exchange("ex", ExchangeKind::Direct, ExchangeOptions::default())
            .await
            .unwrap();
        broker
            .declare_queue("q", QueueOptions::default())
            .await
            .unwrap();
        broker
            .bind_queue("q", "ex", "k", Default::default())
            .await
            .unwrap();
        let publisher = Publisher::start(Arc::clone(&broker), 16, 2);
        let mut tasks = Vec::new();
        for i in 0..200 {
            let publisher = publisher.clone();
            tasks.push(tokio::spawn(async move {
                let (exchange, key) = match i % 3 {
                    0 => ("ex", "k"),
                    1 => ("ex", "nowhere"),
                    _ => ("missing", "k"),
                };
                (
                    i,
                    publisher
                        .publish(Outgoing::new(exchange, key, Message::new(format!("{i}"))))
                        .await,
                )
            }));
        }
        for task in tasks {
            let (i, result) = task.await.unwrap();
            match i % 3 {
                0 => assert!(result.unwrap().routed),
                1 => assert!(!result.unwrap().routed),
                _ => assert_eq!(result.unwrap_err().kind(), ErrorKind::NotFound),
            }
        }
        assert_eq!(broker.queue_info("q").await.unwrap().messages, 67);
        let many = publisher
            .publish_many(
                (0..10)
                    .map(|i| Outgoing::new("ex", "k", Message::new(format!("{i}"))))
                    .collect(),
            )
            .await;
        assert!(many.iter().all(|r| r.as_ref().unwrap().routed));
        assert_eq!(broker.queue_info("q").await.unwrap().messages, 77);
    }
}
