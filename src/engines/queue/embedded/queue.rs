//! One queue: ready messages by priority, consumers in turn, unacknowledged
//! deliveries, expiry at the head and `x-max-length`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use tokio::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::Shared;
use super::dead_letter::{DeadLetter, DeathReason, record_death};
use super::delivery::{EmbeddedAcker, Owner};
use crate::engines::queue::{Delivery, Message, QueueOptions};

/// A message in a queue, ready or delivered and unacknowledged.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) message: Message,
    pub(super) exchange: String,
    pub(super) routing_key: String,
    pub(super) redelivered: bool,
    /// When it expires, fixed when it entered this queue: the smaller of
    /// the queue's `x-message-ttl` and the message's own `expiration`.
    pub(super) expires_at: Option<Instant>,
}

/// What one broker operation does beyond the queue it touches: dead letters
/// to route and expiry deadlines to hand to the timer. The operation's
/// caller settles both once the queue is released.
#[derive(Debug)]
pub(super) struct Effects {
    /// The time of the whole operation: one clock reading, so that a
    /// message with a zero TTL can still be handed straight to a waiting
    /// consumer, as RabbitMQ does.
    pub(super) now: Instant,
    pub(super) shared: Weak<Shared>,
    pub(super) dead_letters: VecDeque<DeadLetter>,
    pub(super) deadlines: Vec<(Instant, u64)>,
}

impl Effects {
    /// Effects of an operation starting now.
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        Effects {
            now: Instant::now(),
            shared: Arc::downgrade(shared),
            dead_letters: VecDeque::new(),
            deadlines: Vec::new(),
        }
    }
}

/// A registered consumer and the deliveries it has not settled.
#[derive(Debug)]
pub(super) struct ConsumerSlot {
    pub(super) id: u64,
    prefetch: usize,
    sender: UnboundedSender<Delivery>,
    next_tag: u64,
    pub(super) unacked: BTreeMap<u64, Entry>,
}

impl ConsumerSlot {
    /// A consumer pushing into `sender`.
    pub(super) fn new(id: u64, prefetch: u16, sender: UnboundedSender<Delivery>) -> Self {
        ConsumerSlot {
            id,
            prefetch: usize::from(prefetch),
            sender,
            next_tag: 1,
            unacked: BTreeMap::new(),
        }
    }

    fn has_window(&self) -> bool {
        self.unacked.len() < self.prefetch
    }
}

/// A declared queue.
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) id: u64,
    pub(super) name: String,
    pub(super) options: QueueOptions,
    /// One FIFO per priority level, index = level; one level without
    /// `x-max-priority`.
    ready: Vec<VecDeque<Entry>>,
    ready_len: usize,
    /// Ready entries with an expiry; lets queues without TTLs skip the
    /// head checks entirely.
    expiring: usize,
    /// Consumers in turn order: the front one is served next.
    pub(super) consumers: VecDeque<ConsumerSlot>,
    /// Deliveries taken by `get` and not settled yet.
    pub(super) got: BTreeMap<u64, Entry>,
    /// Whether a consumer ever subscribed: `auto_delete` applies only then.
    pub(super) had_consumer: bool,
    /// The earliest expiry deadline handed to the timer and not fired yet.
    /// Invariant: whenever a head has an expiry, this is set and not later
    /// than some head's expiry, so the timer revisits the queue in time.
    armed: Option<Instant>,
}

impl Queue {
    /// An empty queue.
    pub(super) fn new(id: u64, name: String, options: QueueOptions) -> Self {
        let levels = options.max_priority.map_or(1, |max| usize::from(max) + 1);
        Queue {
            id,
            name,
            options,
            ready: (0..levels).map(|_| VecDeque::new()).collect(),
            ready_len: 0,
            expiring: 0,
            consumers: VecDeque::new(),
            got: BTreeMap::new(),
            had_consumer: false,
            armed: None,
        }
    }

    /// Messages ready for delivery (expired ones behind a live head
    /// included, as in RabbitMQ).
    pub(super) fn ready_len(&self) -> usize {
        self.ready_len
    }

    /// When a message published now into this queue expires.
    pub(super) fn expiry_of(&self, message: &Message, now: Instant) -> Option<Instant> {
        let ttl = match (self.options.message_ttl, message.properties.expiration) {
            (Some(queue), Some(own)) => Some(queue.min(own)),
            (queue, own) => queue.or(own),
        };
        // A TTL too long to represent never expires.
        ttl.and_then(|ttl| now.checked_add(ttl))
    }

    fn level_of(&self, message: &Message) -> usize {
        match self.options.max_priority {
            Some(max) => usize::from(message.properties.priority.unwrap_or(0).min(max)),
            None => 0,
        }
    }

    /// Takes a message routed to this queue: straight to a consumer when
    /// one is free and nothing is waiting, else at the tail of its priority;
    /// then `x-max-length` pushes out heads.
    pub(super) fn enqueue(&mut self, entry: Entry, fx: &mut Effects) {
        self.expire_heads(fx);
        if self.ready_len == 0
            && let Some(turn) = self.consumers.iter().position(ConsumerSlot::has_window)
        {
            self.deliver(turn, entry, fx);
        } else {
            let level = self.level_of(&entry.message).min(self.ready.len() - 1);
            self.push(level, entry, false, fx);
            self.dispatch(fx);
        }
        if let Some(max) = self.options.max_length {
            while self.ready_len as u64 > max {
                let Some(head) = self.pop_head(fx) else { break };
                self.dead_letter(head, DeathReason::MaxLength, fx);
            }
        }
    }

    /// Puts a settled-with-requeue message back at the head of its priority.
    pub(super) fn requeue(&mut self, mut entry: Entry, fx: &mut Effects) {
        entry.redelivered = true;
        let level = self.level_of(&entry.message).min(self.ready.len() - 1);
        self.push(level, entry, true, fx);
    }

    fn push(&mut self, level: usize, entry: Entry, front: bool, fx: &mut Effects) {
        let Some(fifo) = self.ready.get_mut(level) else {
            return;
        };
        let expires_at = entry.expires_at;
        let becomes_head = front || fifo.is_empty();
        if front {
            fifo.push_front(entry);
        } else {
            fifo.push_back(entry);
        }
        self.ready_len += 1;
        if expires_at.is_some() {
            self.expiring += 1;
            if becomes_head {
                self.arm(expires_at, fx);
            }
        }
    }

    fn pop_level(&mut self, level: usize, fx: &mut Effects) -> Option<Entry> {
        let fifo = self.ready.get_mut(level)?;
        let entry = fifo.pop_front()?;
        let next_expiry = fifo.front().and_then(|e| e.expires_at);
        self.ready_len -= 1;
        if entry.expires_at.is_some() {
            self.expiring -= 1;
        }
        self.arm(next_expiry, fx);
        Some(entry)
    }

    /// The next message to deliver: the head of the highest non-empty
    /// priority.
    fn pop_head(&mut self, fx: &mut Effects) -> Option<Entry> {
        let level = self.ready.iter().rposition(|fifo| !fifo.is_empty())?;
        self.pop_level(level, fx)
    }

    /// Takes the next live message, for `get`.
    pub(super) fn take(&mut self, fx: &mut Effects) -> Option<Entry> {
        self.expire_heads(fx);
        self.pop_head(fx)
    }

    /// Removes every ready message; returns how many.
    pub(super) fn purge(&mut self) -> usize {
        let purged = self.ready_len;
        self.ready.iter_mut().for_each(VecDeque::clear);
        self.ready_len = 0;
        self.expiring = 0;
        purged
    }

    /// Drops or dead-letters expired messages at the head of each priority.
    /// Messages behind a live head wait until they reach it (RabbitMQ's
    /// behaviour).
    pub(super) fn expire_heads(&mut self, fx: &mut Effects) {
        if self.expiring == 0 {
            return;
        }
        for level in 0..self.ready.len() {
            while self.ready[level]
                .front()
                .and_then(|e| e.expires_at)
                .is_some_and(|at| at <= fx.now)
            {
                if let Some(entry) = self.pop_level(level, fx) {
                    self.dead_letter(entry, DeathReason::Expired, fx);
                }
            }
        }
    }

    /// Called by the timer when `deadline` comes: expires heads and arms the
    /// next deadline. Stale deadlines (superseded by an earlier one) are
    /// ignored.
    pub(super) fn on_deadline(&mut self, deadline: Instant, fx: &mut Effects) {
        if self.armed != Some(deadline) {
            return;
        }
        self.armed = None;
        self.expire_heads(fx);
        let heads: Vec<Option<Instant>> = self
            .ready
            .iter()
            .map(|fifo| fifo.front().and_then(|e| e.expires_at))
            .collect();
        for expiry in heads {
            self.arm(expiry, fx);
        }
    }

    /// Makes sure the timer wakes for this queue by `expiry`.
    fn arm(&mut self, expiry: Option<Instant>, fx: &mut Effects) {
        let Some(at) = expiry else { return };
        if self.armed.is_none_or(|armed| at < armed) {
            self.armed = Some(at);
            fx.deadlines.push((at, self.id));
        }
    }

    /// Sends an entry out of this queue to its dead-letter exchange, or
    /// drops it when the queue has none.
    pub(super) fn dead_letter(&mut self, entry: Entry, reason: DeathReason, fx: &mut Effects) {
        let Some(exchange) = &self.options.dead_letter_exchange else {
            return;
        };
        let Entry {
            mut message,
            exchange: original_exchange,
            routing_key,
            ..
        } = entry;
        record_death(
            &mut message,
            reason,
            &self.name,
            &original_exchange,
            &routing_key,
        );
        fx.dead_letters.push_back(DeadLetter {
            exchange: exchange.clone(),
            routing_key: self
                .options
                .dead_letter_routing_key
                .clone()
                .unwrap_or(routing_key),
            message,
            reason,
        });
    }

    /// Pushes ready messages to consumers with a free window, taking turns.
    pub(super) fn dispatch(&mut self, fx: &mut Effects) {
        while self.ready_len > 0 {
            let Some(turn) = self.consumers.iter().position(ConsumerSlot::has_window) else {
                return;
            };
            self.expire_heads(fx);
            let Some(entry) = self.pop_head(fx) else {
                return;
            };
            self.deliver(turn, entry, fx);
        }
    }

    /// Hands `entry` to the consumer at `turn`, which then goes to the back
    /// of the line.
    fn deliver(&mut self, turn: usize, entry: Entry, fx: &mut Effects) {
        let Some(mut consumer) = self.consumers.remove(turn) else {
            return;
        };
        let tag = consumer.next_tag;
        consumer.next_tag += 1;
        let acker = EmbeddedAcker::new(
            fx.shared.clone(),
            self.id,
            Owner::Consumer(consumer.id),
            tag,
        );
        let delivery = Delivery::new(
            tag,
            entry.exchange.clone(),
            entry.routing_key.clone(),
            entry.redelivered,
            entry.message.clone(),
            Arc::new(acker),
        );
        consumer.unacked.insert(tag, entry);
        // The receiver lives as long as the slot: the stream cancels the
        // consumer (under the broker lock) before dropping its receiver. A
        // failed send would leave the entry unacknowledged, and the pending
        // cancellation requeues it.
        let _ = consumer.sender.send(delivery);
        self.consumers.push_back(consumer);
    }

    /// Removes a consumer and requeues its unacknowledged deliveries at the
    /// head, in their original order, marked redelivered.
    pub(super) fn cancel(&mut self, consumer: u64, fx: &mut Effects) {
        let Some(at) = self.consumers.iter().position(|c| c.id == consumer) else {
            return;
        };
        let Some(slot) = self.consumers.remove(at) else {
            return;
        };
        for (_, entry) in slot.unacked.into_iter().rev() {
            self.requeue(entry, fx);
        }
        self.dispatch(fx);
    }

    /// Takes an unsettled delivery back from its owner.
    pub(super) fn take_unacked(&mut self, owner: Owner, tag: u64) -> Option<Entry> {
        match owner {
            Owner::Consumer(id) => self
                .consumers
                .iter_mut()
                .find(|c| c.id == id)?
                .unacked
                .remove(&tag),
            Owner::Get => self.got.remove(&tag),
        }
    }

    /// Whether the consumer `id` is still registered.
    pub(super) fn has_consumer(&self, id: u64) -> bool {
        self.consumers.iter().any(|c| c.id == id)
    }
}
