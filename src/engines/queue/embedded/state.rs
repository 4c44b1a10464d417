//! The broker's state behind its one lock: exchanges, queues and the expiry
//! deadlines, and every operation on them. Nothing here awaits.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use tokio::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::dead_letter::is_cycle;
use super::delivery::{Owner, Settlement, unknown_tag};
use super::queue::{ConsumerSlot, Effects, Entry, Queue};
use super::routing::{Binding, Exchange, HeaderMatch};
use crate::engines::queue::{
    Delivery, ExchangeKind, ExchangeOptions, FieldTable, Message, QueueInfo, QueueOptions,
};
use crate::error::{Error, Result};

/// AMQP's longest exchange or queue name, in bytes.
const MAX_NAME_LEN: usize = 255;

/// The exchanges every RabbitMQ vhost starts with.
const PREDECLARED: [(&str, ExchangeKind); 5] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// Everything the broker holds.
#[derive(Debug)]
pub(super) struct State {
    exchanges: HashMap<String, Exchange>,
    queue_ids: HashMap<String, u64>,
    queues: HashMap<u64, Queue>,
    next_id: u64,
    /// Expiry deadlines per queue, earliest first, for the timer task.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Reused for routing, to spare an allocation per publish.
    route_scratch: Vec<u64>,
}

impl State {
    /// A broker with only the predeclared `amq.*` exchanges.
    pub(super) fn new() -> Self {
        let durable = ExchangeOptions {
            durable: true,
            auto_delete: false,
        };
        State {
            exchanges: PREDECLARED
                .iter()
                .map(|(name, kind)| ((*name).to_owned(), Exchange::new(*kind, durable)))
                .collect(),
            queue_ids: HashMap::new(),
            queues: HashMap::new(),
            next_id: 1,
            deadlines: BinaryHeap::new(),
            route_scratch: Vec::new(),
        }
    }

    /// A fresh id for a queue, consumer or `get` delivery tag.
    pub(super) fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn queue_id(&self, name: &str) -> Result<u64> {
        self.queue_ids
            .get(name)
            .copied()
            .ok_or_else(|| no_queue(name))
    }

    fn queue_mut(&mut self, name: &str) -> Result<&mut Queue> {
        let id = self.queue_id(name)?;
        self.queues.get_mut(&id).ok_or_else(|| no_queue(name))
    }

    pub(super) fn declare_exchange(
        &mut self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<()> {
        check_name(name, "exchange")?;
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if let Some(existing) = self.exchanges.get(name) {
            let mismatch = if existing.kind != kind {
                Some((
                    "type",
                    kind.as_str().to_owned(),
                    existing.kind.as_str().to_owned(),
                ))
            } else if existing.options.durable != options.durable {
                Some((
                    "durable",
                    options.durable.to_string(),
                    existing.options.durable.to_string(),
                ))
            } else if existing.options.auto_delete != options.auto_delete {
                Some((
                    "auto_delete",
                    options.auto_delete.to_string(),
                    existing.options.auto_delete.to_string(),
                ))
            } else {
                None
            };
            return match mismatch {
                None => Ok(()),
                Some((arg, received, current)) => {
                    Err(inequivalent(arg, "exchange", name, &received, &current))
                }
            };
        }
        if name.starts_with("amq.") {
            return Err(Error::invalid(format!(
                "ACCESS_REFUSED - exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        self.exchanges
            .insert(name.to_owned(), Exchange::new(kind, options));
        Ok(())
    }

    pub(super) fn delete_exchange(&mut self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        if PREDECLARED.iter().any(|(n, _)| *n == name) {
            return Err(Error::invalid(format!(
                "ACCESS_REFUSED - deletion of system exchange '{name}' is not allowed"
            )));
        }
        self.exchanges.remove(name);
        Ok(())
    }

    /// Declares a queue. `generated` says the broker chose the name (for a
    /// declaration without one), which may then use the reserved `amq.`
    /// prefix.
    pub(super) fn declare_queue(
        &mut self,
        name: &str,
        generated: bool,
        options: QueueOptions,
        fx: &mut Effects,
    ) -> Result<QueueInfo> {
        check_name(name, "queue")?;
        if let Some(&id) = self.queue_ids.get(name)
            && let Some(queue) = self.queues.get_mut(&id)
        {
            check_equivalent(name, &queue.options, &options)?;
            queue.expire_heads(fx);
            return Ok(info(queue));
        }
        if name.starts_with("amq.") && !generated {
            return Err(Error::invalid(format!(
                "ACCESS_REFUSED - queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let id = self.fresh_id();
        let queue = Queue::new(id, name.to_owned(), options);
        let declared = info(&queue);
        self.queue_ids.insert(name.to_owned(), id);
        self.queues.insert(id, queue);
        Ok(declared)
    }

    pub(super) fn delete_queue(&mut self, name: &str) {
        let Some(id) = self.queue_ids.remove(name) else {
            return;
        };
        // Dropping the queue drops its consumers' senders, which ends their
        // streams once they have yielded what was already sent.
        self.queues.remove(&id);
        self.exchanges.retain(|_, exchange| {
            let before = exchange.bindings.len();
            exchange.bindings.retain(|b| b.queue != id);
            !(exchange.options.auto_delete && before > 0 && exchange.bindings.is_empty())
        });
    }

    pub(super) fn purge_queue(&mut self, name: &str, fx: &mut Effects) -> Result<u64> {
        let queue = self.queue_mut(name)?;
        queue.expire_heads(fx);
        Ok(queue.purge() as u64)
    }

    pub(super) fn queue_info(&mut self, name: &str, fx: &mut Effects) -> Result<QueueInfo> {
        let queue = self.queue_mut(name)?;
        queue.expire_heads(fx);
        Ok(info(queue))
    }

    pub(super) fn bind_queue(
        &mut self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        if exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        let queue_id = self.queue_id(queue)?;
        let Some(target) = self.exchanges.get_mut(exchange) else {
            return Err(no_exchange(exchange));
        };
        let header_match = if target.kind == ExchangeKind::Headers {
            HeaderMatch::from_arguments(&arguments)?
        } else {
            HeaderMatch::All
        };
        let exists = target.bindings.iter().any(|b| {
            b.queue == queue_id && b.routing_key == routing_key && b.arguments == arguments
        });
        if !exists {
            target.bindings.push(Binding {
                queue: queue_id,
                routing_key: routing_key.to_owned(),
                arguments,
                header_match,
            });
        }
        Ok(())
    }

    pub(super) fn unbind_queue(
        &mut self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> Result<()> {
        if exchange.is_empty() {
            return Err(default_exchange_refused());
        }
        let (Some(&queue_id), Some(target)) =
            (self.queue_ids.get(queue), self.exchanges.get_mut(exchange))
        else {
            return Ok(());
        };
        let before = target.bindings.len();
        target.bindings.retain(|b| {
            !(b.queue == queue_id && b.routing_key == routing_key && &b.arguments == arguments)
        });
        if target.options.auto_delete && before > 0 && target.bindings.is_empty() {
            self.exchanges.remove(exchange);
        }
        Ok(())
    }

    /// Routes and enqueues a message; whether any queue took it.
    pub(super) fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        message: Message,
        fx: &mut Effects,
    ) -> Result<bool> {
        let mut targets = std::mem::take(&mut self.route_scratch);
        targets.clear();
        let routed = self.route(
            exchange,
            routing_key,
            &message.properties.headers,
            &mut targets,
        );
        if routed.is_ok() {
            self.enqueue_to(&targets, exchange, routing_key, message, fx);
        }
        let routed = routed.map(|()| !targets.is_empty());
        self.route_scratch = targets;
        routed
    }

    /// The ids of the queues a message reaches, without duplicates.
    fn route(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: &FieldTable,
        out: &mut Vec<u64>,
    ) -> Result<()> {
        if exchange.is_empty() {
            out.extend(self.queue_ids.get(routing_key));
            return Ok(());
        }
        let Some(target) = self.exchanges.get(exchange) else {
            return Err(no_exchange(exchange));
        };
        target.route(routing_key, headers, out);
        // A queue bound by several matching bindings gets one copy.
        if out.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        Ok(())
    }

    fn enqueue_to(
        &mut self,
        targets: &[u64],
        exchange: &str,
        routing_key: &str,
        message: Message,
        fx: &mut Effects,
    ) {
        let Some((last, rest)) = targets.split_last() else {
            return;
        };
        for id in rest {
            self.enqueue(*id, exchange, routing_key, message.clone(), fx);
        }
        self.enqueue(*last, exchange, routing_key, message, fx);
    }

    fn enqueue(
        &mut self,
        queue: u64,
        exchange: &str,
        routing_key: &str,
        message: Message,
        fx: &mut Effects,
    ) {
        let Some(queue) = self.queues.get_mut(&queue) else {
            return;
        };
        let entry = Entry {
            expires_at: queue.expiry_of(&message, fx.now),
            message,
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
            redelivered: false,
        };
        queue.enqueue(entry, fx);
    }

    /// Registers a consumer and serves it what is ready.
    pub(super) fn consume(
        &mut self,
        queue: &str,
        prefetch: u16,
        sender: UnboundedSender<Delivery>,
        fx: &mut Effects,
    ) -> Result<(u64, u64)> {
        let queue_id = self.queue_id(queue)?;
        let consumer_id = self.fresh_id();
        let queue = self.queue_mut(queue)?;
        queue.had_consumer = true;
        queue
            .consumers
            .push_back(ConsumerSlot::new(consumer_id, prefetch, sender));
        queue.dispatch(fx);
        Ok((queue_id, consumer_id))
    }

    /// `basic.get`: the next live message with its new tag, kept as
    /// unacknowledged until settled.
    pub(super) fn get(
        &mut self,
        queue: &str,
        fx: &mut Effects,
    ) -> Result<Option<(u64, u64, Entry)>> {
        let tag = self.fresh_id();
        let queue = self.queue_mut(queue)?;
        let Some(entry) = queue.take(fx) else {
            return Ok(None);
        };
        let copy = Entry {
            message: entry.message.clone(),
            exchange: entry.exchange.clone(),
            routing_key: entry.routing_key.clone(),
            redelivered: entry.redelivered,
            expires_at: entry.expires_at,
        };
        queue.got.insert(tag, entry);
        Ok(Some((queue.id, tag, copy)))
    }

    /// Settles one delivery. A delivery of a deleted queue settles quietly
    /// (its message is gone with the queue, as in RabbitMQ); one of a
    /// cancelled consumer, or settled before, is an unknown tag.
    pub(super) fn settle(
        &mut self,
        queue: u64,
        owner: Owner,
        tag: u64,
        how: Settlement,
        fx: &mut Effects,
    ) -> Result<()> {
        let Some(queue) = self.queues.get_mut(&queue) else {
            return Ok(());
        };
        let Some(entry) = queue.take_unacked(owner, tag) else {
            return Err(unknown_tag(tag));
        };
        match how {
            Settlement::Ack => {}
            Settlement::Requeue => queue.requeue(entry, fx),
            Settlement::Discard => {
                queue.dead_letter(entry, super::dead_letter::DeathReason::Rejected, fx)
            }
        }
        queue.dispatch(fx);
        Ok(())
    }

    /// Cancels a consumer; an `auto_delete` queue goes with its last one.
    pub(super) fn cancel(&mut self, queue: u64, consumer: u64, fx: &mut Effects) {
        let Some(target) = self.queues.get_mut(&queue) else {
            return;
        };
        if !target.has_consumer(consumer) {
            return;
        }
        target.cancel(consumer, fx);
        if target.options.auto_delete && target.consumers.is_empty() {
            let name = target.name.clone();
            self.delete_queue(&name);
        }
    }

    /// Routes the dead letters an operation produced, and those their
    /// routing produces in turn, then files its new expiry deadlines;
    /// whether there were any. Cycles end: RabbitMQ's cycle rule drops a
    /// message coming back to a queue without a rejection on the way.
    pub(super) fn finish(&mut self, fx: &mut Effects) -> bool {
        let mut targets = Vec::new();
        while let Some(letter) = fx.dead_letters.pop_front() {
            targets.clear();
            let headers = &letter.message.properties.headers;
            if let Err(e) = self.route(&letter.exchange, &letter.routing_key, headers, &mut targets)
            {
                // RabbitMQ drops the message too; say so rather than lose it
                // silently.
                tracing::warn!(error = %e, "dead letter dropped: its exchange does not exist");
                continue;
            }
            targets.retain(|id| {
                self.queues
                    .get(id)
                    .is_some_and(|q| !is_cycle(&letter.message, letter.reason, &q.name))
            });
            let (exchange, routing_key) = (letter.exchange, letter.routing_key);
            self.enqueue_to(&targets, &exchange, &routing_key, letter.message, fx);
        }
        let armed = !fx.deadlines.is_empty();
        for (at, queue) in fx.deadlines.drain(..) {
            self.deadlines.push(Reverse((at, queue)));
        }
        armed
    }

    /// The earliest pending expiry deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Expires the heads of queues whose deadline has come.
    pub(super) fn fire_deadlines(&mut self, fx: &mut Effects) {
        while let Some(&Reverse((at, queue))) = self.deadlines.peek() {
            if at > fx.now {
                break;
            }
            self.deadlines.pop();
            if let Some(queue) = self.queues.get_mut(&queue) {
                queue.on_deadline(at, fx);
            }
        }
    }
}

fn info(queue: &Queue) -> QueueInfo {
    QueueInfo {
        name: queue.name.clone(),
        messages: queue.ready_len() as u64,
        consumers: queue.consumers.len() as u64,
    }
}

fn check_name(name: &str, what: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{what} name is {} bytes long; AMQP allows at most {MAX_NAME_LEN}",
            name.len()
        )));
    }
    Ok(())
}

/// Checks a redeclaration against the queue's options, naming the first
/// argument that differs as RabbitMQ does.
pub(super) fn check_equivalent(
    name: &str,
    current: &QueueOptions,
    received: &QueueOptions,
) -> Result<()> {
    fn show<T: std::fmt::Debug>(value: &Option<T>) -> String {
        value
            .as_ref()
            .map_or_else(|| "none".to_owned(), |v| format!("{v:?}"))
    }
    let differences = [
        (
            "durable",
            current.durable.to_string(),
            received.durable.to_string(),
        ),
        (
            "exclusive",
            current.exclusive.to_string(),
            received.exclusive.to_string(),
        ),
        (
            "auto_delete",
            current.auto_delete.to_string(),
            received.auto_delete.to_string(),
        ),
        (
            "x-max-priority",
            show(&current.max_priority),
            show(&received.max_priority),
        ),
        (
            "x-dead-letter-exchange",
            show(&current.dead_letter_exchange),
            show(&received.dead_letter_exchange),
        ),
        (
            "x-dead-letter-routing-key",
            show(&current.dead_letter_routing_key),
            show(&received.dead_letter_routing_key),
        ),
        (
            "x-message-ttl",
            show(&current.message_ttl),
            show(&received.message_ttl),
        ),
        (
            "x-max-length",
            show(&current.max_length),
            show(&received.max_length),
        ),
    ];
    match differences.into_iter().find(|(_, c, r)| c != r) {
        None => Ok(()),
        Some((arg, current, received)) => {
            Err(inequivalent(arg, "queue", name, &received, &current))
        }
    }
}

fn inequivalent(arg: &str, what: &str, name: &str, received: &str, current: &str) -> Error {
    Error::conflict(format!(
        "PRECONDITION_FAILED - inequivalent arg '{arg}' for {what} '{name}' in vhost '/': \
         received '{received}' but current is '{current}'"
    ))
    .with_field(arg.to_owned())
}

fn no_queue(name: &str) -> Error {
    Error::not_found(format!("NOT_FOUND - no queue '{name}' in vhost '/'"))
}

fn no_exchange(name: &str) -> Error {
    Error::not_found(format!("NOT_FOUND - no exchange '{name}' in vhost '/'"))
}

fn default_exchange_refused() -> Error {
    Error::invalid("ACCESS_REFUSED - operation not permitted on the default exchange")
}
