//! The exchanges and queues of the pipelines, and their idempotent
//! declaration.
//!
//! With prefix `P` (`pipelines.prefix`):
//!
//! | name | kind | what it does |
//! |---|---|---|
//! | `P.events` | topic exchange | events, routed by `<type>` (`user.signup`, `event.purchase`, `run.completed`) |
//! | `P.tasks` | direct exchange | tasks, routed by the name of their queue |
//! | `P.broadcast` | fanout exchange | messages for every instance |
//! | `P.dead` | direct exchange | dead letters, routed by the name of the queue they died in |
//! | `P.<queue>` | work queue | durable, `x-max-priority`, dead-letters to `P.dead` with key `<queue>` |
//! | `P.<queue>.delay.<k>` | delay queue | no consumer; a message waits its own `expiration`, then is dead-lettered back to `P.<queue>` through the default exchange |
//! | `P.<queue>.dead` | dead-letter queue | bound to `P.dead` with `<queue>`; the worker moves each message into the document engine |
//!
//! Retries are held by the broker, never in a worker's memory: a retried
//! message is published to a delay queue with a per-message TTL. As a queue
//! expires messages only at its head, waits are sorted into tiers: tier `k`
//! holds waits in `[100ms·2^k, 100ms·2^(k+1))`, so a wait of `d` ends between
//! `d` and `2d` later whatever else waits beside it.
//!
//! Every work queue has its dead-letter exchange set explicitly. The limit on
//! deliveries is kept by the worker (a count per message id in the key-value
//! engine, taken on redeliveries only), because classic queues have no
//! `x-delivery-limit`.

use crate::engines::Broker;
use crate::engines::queue::{ExchangeKind, ExchangeOptions, QueueOptions};
use crate::error::Result;

use super::config::PipelinesConfig;

/// How a work queue receives its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// Tasks published for this queue by name.
    Tasks,
    /// Events whose type matches a topic pattern (`event.*`, `user.signup`, `#`).
    Events(String),
    /// Every broadcast.
    Broadcast,
}

/// A work queue: its name (without the prefix) and bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue's name without the prefix, e.g. `onboarding`.
    pub name: String,
    /// Where its messages come from.
    pub bindings: Vec<Binding>,
}

impl QueueSpec {
    /// A queue for tasks sent to `name`.
    pub fn tasks(name: impl Into<String>) -> Self {
        QueueSpec {
            name: name.into(),
            bindings: vec![Binding::Tasks],
        }
    }

    /// A queue for events matching `pattern`.
    pub fn events(name: impl Into<String>, pattern: impl Into<String>) -> Self {
        QueueSpec {
            name: name.into(),
            bindings: vec![Binding::Events(pattern.into())],
        }
    }

    /// Adds a binding.
    pub fn with(mut self, binding: Binding) -> Self {
        self.bindings.push(binding);
        self
    }
}

/// The names of the topology under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    max_priority: u8,
}

impl Topology {
    /// The topology of `config`.
    pub fn new(config: &PipelinesConfig) -> Self {
        Topology {
            prefix: config.prefix.clone(),
            max_priority: config.max_priority,
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic exchange of events.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The direct exchange of tasks.
    pub fn tasks(&self) -> String {
        format!("{}.tasks", self.prefix)
    }

    /// The fanout exchange of broadcasts.
    pub fn broadcast(&self) -> String {
        format!("{}.broadcast", self.prefix)
    }

    /// The direct exchange of dead letters.
    pub fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The work queue `queue`.
    pub fn queue(&self, queue: &str) -> String {
        format!("{}.{queue}", self.prefix)
    }

    /// Delay tier `tier` of `queue`.
    pub fn delay(&self, queue: &str, tier: u32) -> String {
        format!("{}.{queue}.delay.{tier}", self.prefix)
    }

    /// The dead-letter queue of `queue`.
    pub fn dead_queue(&self, queue: &str) -> String {
        format!("{}.{queue}.dead", self.prefix)
    }

    /// Declares the exchanges (idempotent).
    pub async fn declare_exchanges(&self, broker: &dyn Broker) -> Result<()> {
        let durable = ExchangeOptions {
            durable: true,
            auto_delete: false,
        };
        broker
            .declare_exchange(&self.events(), ExchangeKind::Topic, durable)
            .await?;
        broker
            .declare_exchange(&self.tasks(), ExchangeKind::Direct, durable)
            .await?;
        broker
            .declare_exchange(&self.broadcast(), ExchangeKind::Fanout, durable)
            .await?;
        broker
            .declare_exchange(&self.dead(), ExchangeKind::Direct, durable)
            .await?;
        Ok(())
    }

    /// The options of the work queue `queue`.
    pub fn work_queue_options(&self, queue: &str) -> QueueOptions {
        QueueOptions {
            durable: true,
            max_priority: Some(self.max_priority),
            dead_letter_exchange: Some(self.dead()),
            dead_letter_routing_key: Some(queue.to_owned()),
            ..Default::default()
        }
    }

    /// Declares `spec`'s work queue, its delay tiers, its dead-letter queue
    /// and their bindings (idempotent; the exchanges first).
    pub async fn declare_queue(
        &self,
        broker: &dyn Broker,
        spec: &QueueSpec,
        tiers: u32,
    ) -> Result<()> {
        let work = self.queue(&spec.name);
        broker
            .declare_queue(&work, self.work_queue_options(&spec.name))
            .await?;
        for binding in &spec.bindings {
            match binding {
                Binding::Tasks => {
                    broker
                        .bind_queue(&work, &self.tasks(), &spec.name, Default::default())
                        .await?
                }
                Binding::Events(pattern) => {
                    broker
                        .bind_queue(&work, &self.events(), pattern, Default::default())
                        .await?
                }
                Binding::Broadcast => {
                    broker
                        .bind_queue(&work, &self.broadcast(), "", Default::default())
                        .await?
                }
            }
        }
        for tier in 0..tiers {
            broker
                .declare_queue(
                    &self.delay(&spec.name, tier),
                    QueueOptions {
                        durable: true,
                        dead_letter_exchange: Some(String::new()),
                        dead_letter_routing_key: Some(work.clone()),
                        ..Default::default()
                    },
                )
                .await?;
        }
        let dead = self.dead_queue(&spec.name);
        broker
            .declare_queue(
                &dead,
                QueueOptions {
                    durable: true,
                    ..Default::default()
                },
            )
            .await?;
        broker
            .bind_queue(&dead, &self.dead(), &spec.name, Default::default())
            .await?;
        Ok(())
    }

    /// Deletes `spec`'s queues and, with `exchanges`, the exchanges (tests
    /// clean up with it).
    pub async fn delete(
        &self,
        broker: &dyn Broker,
        specs: &[QueueSpec],
        tiers: u32,
        exchanges: bool,
    ) -> Result<()> {
        for spec in specs {
            broker.delete_queue(&self.queue(&spec.name)).await?;
            broker.delete_queue(&self.dead_queue(&spec.name)).await?;
            for tier in 0..tiers {
                broker.delete_queue(&self.delay(&spec.name, tier)).await?;
            }
        }
        if exchanges {
            for exchange in [self.events(), self.tasks(), self.broadcast(), self.dead()] {
                broker.delete_exchange(&exchange).await?;
            }
        }
        Ok(())
    }
}
