//! Async pipelines over the queue engine: the topology, envelopes, the
//! batching publisher, outcomes (done / retry / abort), dead letters, and
//! the worker loop ([`worker`]) that runs the handlers.
//!
//! The same code runs on the embedded broker in one process and on
//! RabbitMQ with many workers: everything a retry or a dead letter needs
//! travels with the message or lives in the broker and the shared engines,
//! never in one worker's memory.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

use crate::engines::queue::{Message, Outgoing, Published};
use crate::engines::{Broker, KvStore};
use crate::error::{Error, ErrorKind, Result};
use crate::platform::Platform;

pub mod config;
pub mod dead_letters;
pub mod envelope;
pub mod handlers;
pub mod publisher;
pub mod topology;
pub mod worker;

pub use config::PipelinesConfig;
pub use dead_letters::{DeadLetter, DeadLetterFilter, DeadLetters};
pub use envelope::Task;
pub use publisher::Publisher;
pub use topology::{Binding, QueueSpec, Topology};
pub use worker::{Handler, HandlerFn, Outcome, Worker, WorkerStats};

/// How soon a task should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Behind what is queued.
    #[default]
    Normal,
    /// Ahead of every normal task queued.
    Urgent,
}

/// The pipelines of one process: topology, publisher, dead letters.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pipelines {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    broker: Arc<dyn Broker>,
    kv: Arc<dyn KvStore>,
    config: PipelinesConfig,
    topology: Topology,
    publisher: Publisher,
    dead_letters: DeadLetters,
    declared: Mutex<HashSet<String>>,
}

/// A dead letter a replay could not put back.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplayFailure {
    /// The dead letter.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// What a replay did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// The dead letters put back on their route (or that would be).
    pub replayed: Vec<String>,
    /// Those that could not be, with why.
    pub failed: Vec<ReplayFailure>,
    /// Nothing was published.
    pub dry_run: bool,
}

impl Pipelines {
    /// The pipelines over the platform's queue, key-value and document
    /// engines: declares the exchanges and the dead letters' indexes.
    pub async fn open(platform: &Platform, config: &PipelinesConfig) -> Result<Pipelines> {
        Pipelines::with_engines(
            platform.broker(),
            platform.kv(),
            platform.documents(),
            config,
        )
        .await
    }

    /// [`Pipelines::open`] over engines given one by one.
    pub async fn with_engines(
        broker: Arc<dyn Broker>,
        kv: Arc<dyn KvStore>,
        documents: Arc<dyn crate::engines::DocumentStore>,
        config: &PipelinesConfig,
    ) -> Result<Pipelines> {
        config.check()?;
        let topology = Topology::new(config);
        topology.declare_exchanges(broker.as_ref()).await?;
        let dead_letters = DeadLetters::new(documents, config.dead_letter_retention);
        dead_letters.ensure_indexes().await?;
        let publisher = Publisher::start(
            Arc::clone(&broker),
            config.publish_batch,
            config.publish_in_flight,
        );
        Ok(Pipelines {
            inner: Arc::new(Inner {
                broker,
                kv,
                config: config.clone(),
                topology,
                publisher,
                dead_letters,
                declared: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &PipelinesConfig {
        &self.inner.config
    }

    /// The names of exchanges and queues.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The dead-letter store.
    pub fn dead_letters(&self) -> &DeadLetters {
        &self.inner.dead_letters
    }

    /// The batching publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.inner.publisher
    }

    pub(crate) fn broker(&self) -> Arc<dyn Broker> {
        Arc::clone(&self.inner.broker)
    }

    pub(crate) fn kv(&self) -> Arc<dyn KvStore> {
        Arc::clone(&self.inner.kv)
    }

    /// Declares a work queue with its delay tiers and dead-letter queue
    /// (idempotent; once per process and queue).
    pub async fn declare(&self, spec: &QueueSpec) -> Result<()> {
        let key = format!("{spec:?}");
        if self.declared().contains(&key) {
            return Ok(());
        }
        let tiers = PipelinesConfig::tiers(&self.config().retry_for(&spec.name));
        self.topology()
            .declare_queue(self.inner.broker.as_ref(), spec, tiers)
            .await?;
        self.declared().insert(key);
        Ok(())
    }

    fn declared(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes the queues of `specs` (and, with `exchanges`, the
    /// exchanges): tests clean up with it.
    pub async fn delete(&self, specs: &[QueueSpec], exchanges: bool) -> Result<()> {
        let tiers = specs
            .iter()
            .map(|s| PipelinesConfig::tiers(&self.config().retry_for(&s.name)))
            .max()
            .unwrap_or(1);
        self.declared().clear();
        self.topology()
            .delete(self.inner.broker.as_ref(), specs, tiers, exchanges)
            .await
    }

    /// Messages ready in the work queue `queue` (without the prefix).
    pub async fn depth(&self, queue: &str) -> Result<u64> {
        Ok(self
            .inner
            .broker
            .queue_info(&self.topology().queue(queue))
            .await?
            .messages)
    }

    /// The broker's view of the work queue `queue` (without the prefix):
    /// messages ready and consumers attached.
    pub async fn queue_info(&self, queue: &str) -> Result<crate::engines::queue::QueueInfo> {
        self.inner
            .broker
            .queue_info(&self.topology().queue(queue))
            .await
    }

    /// The next message of the work queue `queue`, put back at once
    /// (marked redelivered); for inspection.
    pub async fn peek(&self, queue: &str) -> Result<Option<Message>> {
        let Some(delivery) = self.inner.broker.get(&self.topology().queue(queue)).await? else {
            return Ok(None);
        };
        let message = delivery.message.clone();
        delivery.nack(true).await?;
        Ok(Some(message))
    }

    fn message(&self, payload: &impl Serialize, id: Option<String>) -> Result<Message> {
        let body = serde_json::to_vec(payload)
            .map_err(|e| Error::invalid(format!("the payload does not encode as JSON: {e}")))?;
        let mut message = Message::new(body);
        message.properties.content_type = Some("application/json".into());
        message.properties.persistent = true;
        message.properties.message_id =
            Some(id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()));
        envelope::compress(&mut message, self.config().compress_above.as_u64())?;
        Ok(message)
    }

    /// Sends a task to `queue`; returns its message id once the broker
    /// confirmed it. A queue nobody declared is a `NotFound` error: the
    /// task would be lost.
    pub async fn send_task(
        &self,
        queue: &str,
        payload: &impl Serialize,
        priority: Priority,
        id: Option<String>,
    ) -> Result<String> {
        let mut message = self.message(payload, id)?;
        message.properties.priority = Some(match priority {
            Priority::Normal => 0,
            Priority::Urgent => self.config().max_priority,
        });
        let id = message.properties.message_id.clone().unwrap_or_default();
        let published = self
            .inner
            .publisher
            .publish(Outgoing::new(self.topology().tasks(), queue, message))
            .await?;
        if !published.routed {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no queue takes tasks for `{queue}`; the task was not kept"),
            ));
        }
        Ok(id)
    }

    /// Publishes events on the topic exchange, each with its type as the
    /// routing key, all confirmations in flight together; each result is
    /// the event's message id, or why it was not taken. An event no queue
    /// is bound for is refused (`Unavailable`): the broker took it and
    /// dropped it, so nothing will ever handle it, and saying it was taken
    /// would be a lie. (Seen while a broker restarts: its queues are back a
    /// moment after its exchanges.)
    pub async fn publish_events(
        &self,
        events: Vec<(String, serde_json::Value, Option<String>)>,
    ) -> Vec<Result<String>> {
        let mut ids = Vec::with_capacity(events.len());
        let mut outgoing = Vec::with_capacity(events.len());
        let mut slots = Vec::with_capacity(events.len());
        for (kind, payload, id) in events {
            match self.message(&payload, id) {
                Ok(message) => {
                    ids.push(Ok(message
                        .properties
                        .message_id
                        .clone()
                        .unwrap_or_default()));
                    slots.push(Some(kind.clone()));
                    outgoing.push(Outgoing::new(self.topology().events(), kind, message));
                }
                Err(e) => {
                    ids.push(Err(e));
                    slots.push(None);
                }
            }
        }
        let mut published = self
            .inner
            .publisher
            .publish_many(outgoing)
            .await
            .into_iter();
        ids.into_iter()
            .zip(slots)
            .map(|(id, kind)| {
                let Some(kind) = kind else {
                    return id;
                };
                match published.next() {
                    Some(Ok(p)) if p.routed => id,
                    Some(Ok(_)) => Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "no queue is bound for event `{}` (are the pipelines' queues declared? \
                             `strata worker` declares them); it was not kept",
                            kind
                        ),
                    )
                    .with_operation("publish_events")),
                    Some(Err(e)) => Err(e),
                    None => Err(Error::internal("a publish result is missing")),
                }
            })
            .collect()
    }

    /// Publishes one event.
    pub async fn publish_event(&self, kind: &str, payload: &serde_json::Value) -> Result<String> {
        self.publish_events(vec![(kind.to_owned(), payload.clone(), None)])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::internal("a publish result is missing")))
    }

    /// Puts one dead letter back on its route with a corrected JSON
    /// `payload` (its id and history kept, as [`Pipelines::replay`]):
    /// fixing data the handler refused.
    pub async fn replay_corrected(
        &self,
        id: &str,
        payload: &serde_json::Value,
    ) -> Result<ReplayReport> {
        let Some(mut letter) = self.dead_letters().get(id).await? else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no dead letter `{id}`"),
            ));
        };
        letter.payload = serde_json::to_string(payload)
            .map_err(|e| Error::invalid(format!("the payload does not encode as JSON: {e}")))?;
        letter.payload_encoding = "utf8".into();
        let mut message = letter.to_message();
        message.properties.content_type = Some("application/json".into());
        envelope::compress(&mut message, self.config().compress_above.as_u64())?;
        let published = self
            .inner
            .publisher
            .publish(Outgoing::new(
                letter.exchange.clone(),
                letter.routing_key.clone(),
                message,
            ))
            .await?;
        if !published.routed {
            return Ok(ReplayReport {
                failed: vec![ReplayFailure {
                    id: letter.id,
                    reason: format!(
                        "no queue is bound to `{}` with `{}` any more",
                        letter.exchange, letter.routing_key
                    ),
                }],
                ..Default::default()
            });
        }
        self.dead_letters().mark_replayed(&letter.id).await?;
        Ok(ReplayReport {
            replayed: vec![letter.id],
            ..Default::default()
        })
    }

    /// Puts the dead letters matching `filter` (at most `limit`) back on
    /// their original route, at most `per_second` a second (0: no limit),
    /// with their id (so a message processed meanwhile is skipped) and
    /// history; each one replayed is marked so. `dry_run` only lists them.
    pub async fn replay(
        &self,
        filter: &DeadLetterFilter,
        limit: u64,
        per_second: u32,
        dry_run: bool,
    ) -> Result<ReplayReport> {
        let letters = self.dead_letters().list(filter, limit).await?;
        let mut report = ReplayReport {
            dry_run,
            ..Default::default()
        };
        if dry_run {
            report.replayed = letters.into_iter().map(|l| l.id).collect();
            return Ok(report);
        }
        let mut pace = (per_second > 0).then(|| {
            let mut interval =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(per_second)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        for letter in letters {
            if let Some(pace) = pace.as_mut() {
                pace.tick().await;
            }
            let outgoing = Outgoing::new(
                letter.exchange.clone(),
                letter.routing_key.clone(),
                letter.to_message(),
            );
            match self.inner.publisher.publish(outgoing).await {
                Ok(Published { routed: true }) => {
                    self.dead_letters().mark_replayed(&letter.id).await?;
                    report.replayed.push(letter.id);
                }
                Ok(Published { routed: false }) => report.failed.push(ReplayFailure {
                    id: letter.id,
                    reason: format!(
                        "no queue is bound to `{}` with `{}` any more",
                        letter.exchange, letter.routing_key
                    ),
                }),
                Err(e) => report.failed.push(ReplayFailure {
                    id: letter.id,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(report)
    }
}
