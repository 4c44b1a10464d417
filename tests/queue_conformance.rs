//! The broker conformance suite: one case per contract of
//! `strata::engines::queue`, written once against `Arc<dyn Broker>` and run
//! per backend by `queue_conformance!`.
//!
//! Every case names its queues and exchanges under a random prefix and
//! deletes them at the end through the fixture, since a real broker is
//! shared. `cargo test --test queue_conformance embedded::` runs one backend.
//!
//! `rabbitmq_quorum` runs the suite on RabbitMQ with `queue_type = "quorum"`:
//! its fixture declares every queue durable, so that each is a quorum queue,
//! and the priority cases expect FIFO order, since quorum queues of RabbitMQ
//! 3.10 have no priorities.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata::ErrorKind;
use strata::config::{QueueConfig, QueueType};
use strata::engines::queue::embedded::EmbeddedBroker;
use strata::engines::queue::rabbitmq::RabbitBroker;
use strata::engines::queue::{
    Broker, ConsumeOptions, Consumer, Delivery, ExchangeKind, ExchangeOptions, FieldTable,
    FieldValue, Message, Outgoing, Published, QueueOptions,
};

/// How long an expected delivery may take.
const ARRIVES: Duration = Duration::from_secs(5);
/// How long to wait to conclude that nothing more arrives.
const QUIET: Duration = Duration::from_millis(200);
/// A time to live short enough for tests.
const SHORT_TTL: Duration = Duration::from_millis(100);

/// A broker and the names a case created on it.
struct Fixture {
    broker: Arc<dyn Broker>,
    /// The broker declares durable queues as quorum queues: every queue of
    /// the case is made durable, and priorities do not reorder.
    quorum: bool,
    prefix: String,
    queues: Mutex<Vec<String>>,
    exchanges: Mutex<Vec<String>>,
}

impl Fixture {
    fn new(broker: Arc<dyn Broker>) -> Self {
        Self::with_quorum(broker, false)
    }

    fn with_quorum(broker: Arc<dyn Broker>, quorum: bool) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let prefix = format!(
            "strata-test-{:x}-{nanos:x}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Fixture {
            broker,
            quorum,
            prefix,
            queues: Mutex::new(Vec::new()),
            exchanges: Mutex::new(Vec::new()),
        }
    }

    fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// A queue name unique to this case, deleted at teardown.
    fn queue(&self, name: &str) -> String {
        let full = format!("{}.q.{name}", self.prefix);
        self.queues.lock().unwrap().push(full.clone());
        full
    }

    /// An exchange name unique to this case, deleted at teardown.
    fn exchange(&self, name: &str) -> String {
        let full = format!("{}.x.{name}", self.prefix);
        self.exchanges.lock().unwrap().push(full.clone());
        full
    }

    /// `options` as this fixture declares them: durable on a quorum broker.
    fn options(&self, options: QueueOptions) -> QueueOptions {
        QueueOptions {
            durable: options.durable || self.quorum,
            ..options
        }
    }

    /// Declares a queue named after `name` with `options`.
    async fn declare(&self, name: &str, options: QueueOptions) -> String {
        let full = self.queue(name);
        self.broker
            .declare_queue(&full, self.options(options))
            .await
            .unwrap();
        full
    }

    /// Declares an exchange named after `name`.
    async fn declare_exchange(&self, name: &str, kind: ExchangeKind) -> String {
        let full = self.exchange(name);
        self.broker
            .declare_exchange(&full, kind, ExchangeOptions::default())
            .await
            .unwrap();
        full
    }

    /// Declares a queue bound to `exchange` with `key`.
    async fn bound(&self, name: &str, exchange: &str, key: &str) -> String {
        let queue = self.declare(name, QueueOptions::default()).await;
        self.broker
            .bind_queue(&queue, exchange, key, FieldTable::new())
            .await
            .unwrap();
        queue
    }

    /// A dead-letter exchange (direct) and a queue bound to it with `key`.
    async fn dead_letter_pair(&self, key: &str) -> (String, String) {
        let dlx = self.declare_exchange("dlx", ExchangeKind::Direct).await;
        let dlq = self.bound("dlq", &dlx, key).await;
        (dlx, dlq)
    }

    async fn teardown(self) {
        for queue in self.queues.into_inner().unwrap() {
            self.broker.delete_queue(&queue).await.unwrap();
        }
        for exchange in self.exchanges.into_inner().unwrap() {
            self.broker.delete_exchange(&exchange).await.unwrap();
        }
    }
}

fn text(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.message.body).into_owned()
}

/// The next delivery, which must come within [`ARRIVES`].
async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(ARRIVES, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the stream is open")
        .expect("a delivery, not an error")
}

/// Asserts that nothing arrives within [`QUIET`].
async fn nothing_more(consumer: &mut Consumer) {
    if let Ok(got) = tokio::time::timeout(QUIET, consumer.next()).await {
        panic!(
            "expected nothing more, got {:?}",
            got.map(|d| d.map(|d| text(&d)))
        );
    }
}

async fn consume(broker: &Arc<dyn Broker>, queue: &str, prefetch: u16) -> Consumer {
    broker
        .consume(
            queue,
            ConsumeOptions {
                prefetch,
                consumer_tag: None,
            },
        )
        .await
        .unwrap()
}

async fn publish(broker: &Arc<dyn Broker>, exchange: &str, key: &str, body: &str) -> bool {
    broker
        .publish(exchange, key, Message::new(body.to_owned()))
        .await
        .unwrap()
        .routed
}

/// Takes every ready message with `get`, acknowledging each; their bodies.
async fn drain(broker: &Arc<dyn Broker>, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(delivery) = broker.get(queue).await.unwrap() {
        bodies.push(text(&delivery));
        delivery.ack().await.unwrap();
    }
    bodies
}

async fn depth(broker: &Arc<dyn Broker>, queue: &str) -> u64 {
    broker.queue_info(queue).await.unwrap().messages
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a FieldValue> {
    delivery.message.properties.headers.get(name)
}

fn string(value: &str) -> FieldValue {
    FieldValue::String(value.to_owned())
}

// ---------------------------------------------------------------- declarations

async fn declare_is_idempotent(t: &Fixture) {
    let b = t.broker();
    let options = QueueOptions {
        durable: true,
        max_priority: Some(5),
        message_ttl: Some(Duration::from_secs(60)),
        ..QueueOptions::default()
    };
    let queue = t.queue("work");
    let first = b.declare_queue(&queue, options.clone()).await.unwrap();
    publish(b, "", &queue, "kept").await;
    let second = b.declare_queue(&queue, options).await.unwrap();
    assert_eq!(first.name, queue);
    assert_eq!(second.messages, 1, "redeclaring keeps the messages");

    let exchange = t.exchange("events");
    for _ in 0..2 {
        b.declare_exchange(&exchange, ExchangeKind::Topic, ExchangeOptions::default())
            .await
            .unwrap();
    }
}

async fn conflicting_redeclare_fails(t: &Fixture) {
    let b = t.broker();
    let queue = t
        .declare(
            "work",
            QueueOptions {
                max_priority: Some(5),
                ..QueueOptions::default()
            },
        )
        .await;
    let err = b
        .declare_queue(&queue, QueueOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    let exchange = t.declare_exchange("events", ExchangeKind::Direct).await;
    let err = b
        .declare_exchange(&exchange, ExchangeKind::Fanout, ExchangeOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
}

async fn missing_queue_or_exchange_is_not_found(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("real", QueueOptions::default()).await;
    let exchange = t.declare_exchange("real", ExchangeKind::Direct).await;
    let missing_queue = t.queue("missing");
    let missing_exchange = t.exchange("missing");
    let errors = [
        b.queue_info(&missing_queue).await.unwrap_err(),
        b.bind_queue(&missing_queue, &exchange, "k", FieldTable::new())
            .await
            .unwrap_err(),
        b.bind_queue(&queue, &missing_exchange, "k", FieldTable::new())
            .await
            .unwrap_err(),
        b.consume(&missing_queue, ConsumeOptions::default())
            .await
            .unwrap_err(),
        b.get(&missing_queue).await.unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
}

// --------------------------------------------------------------------- routing

async fn default_exchange_routes_by_queue_name(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("tasks", QueueOptions::default()).await;
    assert!(publish(b, "", &queue, "hello").await);
    let delivery = b.get(&queue).await.unwrap().expect("the message");
    assert_eq!(text(&delivery), "hello");
    assert_eq!(delivery.exchange, "");
    assert_eq!(delivery.routing_key, queue);
    delivery.ack().await.unwrap();
    assert!(!publish(b, "", &t.queue("absent"), "lost").await);
}

async fn binding_to_default_exchange_is_refused(t: &Fixture) {
    let queue = t.declare("tasks", QueueOptions::default()).await;
    let err = t
        .broker()
        .bind_queue(&queue, "", "anything", FieldTable::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

async fn direct_routes_on_equal_keys(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("direct", ExchangeKind::Direct).await;
    let red = t.bound("red", &exchange, "red").await;
    let blue = t.bound("blue", &exchange, "blue").await;
    assert!(publish(b, &exchange, "red", "r1").await);
    assert!(publish(b, &exchange, "blue", "b1").await);
    assert!(!publish(b, &exchange, "green", "g1").await);
    assert_eq!(drain(b, &red).await, ["r1"]);
    assert_eq!(drain(b, &blue).await, ["b1"]);
}

async fn fanout_reaches_every_bound_queue(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("fanout", ExchangeKind::Fanout).await;
    let one = t.bound("one", &exchange, "").await;
    let two = t.bound("two", &exchange, "ignored").await;
    assert!(publish(b, &exchange, "any.key", "all").await);
    assert_eq!(drain(b, &one).await, ["all"]);
    assert_eq!(drain(b, &two).await, ["all"]);
}

async fn topic_star_matches_one_word(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("topic", ExchangeKind::Topic).await;
    let queue = t.bound("nyse", &exchange, "stock.*.nyse").await;
    assert!(publish(b, &exchange, "stock.usd.nyse", "one word").await);
    assert!(!publish(b, &exchange, "stock.nyse", "no word").await);
    assert!(!publish(b, &exchange, "stock.usd.eur.nyse", "two words").await);
    assert_eq!(drain(b, &queue).await, ["one word"]);
}

async fn topic_hash_matches_zero_or_more_words(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("topic", ExchangeKind::Topic).await;
    let all = t.bound("all", &exchange, "#").await;
    let under_a = t.bound("under-a", &exchange, "a.#").await;
    let ends_b = t.bound("ends-b", &exchange, "#.b").await;
    let a_to_b = t.bound("a-to-b", &exchange, "a.#.b").await;
    for key in ["a", "a.b", "b", "c.d.b", "a.x.y.b", "c"] {
        assert!(
            publish(b, &exchange, key, key).await,
            "{key} is routed by #"
        );
    }
    assert_eq!(
        drain(b, &all).await,
        ["a", "a.b", "b", "c.d.b", "a.x.y.b", "c"]
    );
    assert_eq!(drain(b, &under_a).await, ["a", "a.b", "a.x.y.b"]);
    assert_eq!(drain(b, &ends_b).await, ["a.b", "b", "c.d.b", "a.x.y.b"]);
    assert_eq!(drain(b, &a_to_b).await, ["a.b", "a.x.y.b"]);
}

fn table(pairs: &[(&str, &str)]) -> FieldTable {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), FieldValue::from(*v)))
        .collect()
}

fn with_headers(body: &str, pairs: &[(&str, &str)]) -> Message {
    pairs
        .iter()
        .fold(Message::new(body.to_owned()), |m, (k, v)| {
            m.with_header(*k, *v)
        })
}

async fn headers_all_needs_every_argument(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("headers", ExchangeKind::Headers).await;
    let queue = t.declare("reports", QueueOptions::default()).await;
    let arguments = table(&[("format", "pdf"), ("type", "report")]);
    b.bind_queue(&queue, &exchange, "", arguments)
        .await
        .unwrap();
    let both = with_headers("both", &[("format", "pdf"), ("type", "report"), ("x", "y")]);
    let one = with_headers("one", &[("format", "pdf")]);
    assert!(b.publish(&exchange, "", both).await.unwrap().routed);
    assert!(!b.publish(&exchange, "", one).await.unwrap().routed);
    assert_eq!(drain(b, &queue).await, ["both"]);
}

async fn headers_any_needs_one_argument(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("headers", ExchangeKind::Headers).await;
    let queue = t.declare("reports", QueueOptions::default()).await;
    let arguments = table(&[("x-match", "any"), ("format", "pdf"), ("type", "report")]);
    b.bind_queue(&queue, &exchange, "", arguments)
        .await
        .unwrap();
    let one = with_headers("one", &[("format", "pdf")]);
    let other = with_headers("other", &[("format", "zip")]);
    assert!(b.publish(&exchange, "", one).await.unwrap().routed);
    assert!(!b.publish(&exchange, "", other).await.unwrap().routed);
    assert_eq!(drain(b, &queue).await, ["one"]);
}

async fn unroutable_publish_is_not_routed(t: &Fixture) {
    let exchange = t.declare_exchange("lonely", ExchangeKind::Direct).await;
    assert!(!publish(t.broker(), &exchange, "nobody", "lost").await);
}

async fn publish_to_missing_exchange_is_not_found(t: &Fixture) {
    let err = t
        .broker()
        .publish(&t.exchange("missing"), "k", Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

async fn unbind_stops_routing(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("direct", ExchangeKind::Direct).await;
    let queue = t.bound("q", &exchange, "k").await;
    assert!(publish(b, &exchange, "k", "before").await);
    b.unbind_queue(&queue, &exchange, "k", FieldTable::new())
        .await
        .unwrap();
    assert!(!publish(b, &exchange, "k", "after").await);
    assert_eq!(drain(b, &queue).await, ["before"]);
}

// -------------------------------------------------------------------- ordering

async fn higher_priority_is_delivered_first(t: &Fixture) {
    let b = t.broker();
    let queue = t
        .declare(
            "prio",
            QueueOptions {
                max_priority: Some(10),
                ..QueueOptions::default()
            },
        )
        .await;
    for (body, priority) in [("low", 1), ("high", 9), ("mid", 5)] {
        b.publish("", &queue, Message::new(body).with_priority(priority))
            .await
            .unwrap();
    }
    let mut consumer = consume(b, &queue, 10).await;
    let mut order = Vec::new();
    for _ in 0..3 {
        let delivery = next(&mut consumer).await;
        order.push(text(&delivery));
        delivery.ack().await.unwrap();
    }
    if t.quorum {
        assert_eq!(order, ["low", "high", "mid"], "quorum queues are FIFO");
    } else {
        assert_eq!(order, ["high", "mid", "low"]);
    }
}

async fn priority_is_capped_at_the_maximum(t: &Fixture) {
    let b = t.broker();
    let queue = t
        .declare(
            "prio",
            QueueOptions {
                max_priority: Some(5),
                ..QueueOptions::default()
            },
        )
        .await;
    for (body, priority) in [("four", 4), ("five", 5), ("two-hundred", 200)] {
        b.publish("", &queue, Message::new(body).with_priority(priority))
            .await
            .unwrap();
    }
    let order = drain(b, &queue).await;
    if t.quorum {
        assert_eq!(
            order,
            ["four", "five", "two-hundred"],
            "quorum queues are FIFO"
        );
    } else {
        // 200 counts as 5, so it queues behind the earlier 5.
        assert_eq!(order, ["five", "two-hundred", "four"]);
    }
}

async fn fifo_within_a_priority(t: &Fixture) {
    let b = t.broker();
    let plain = t.declare("plain", QueueOptions::default()).await;
    let prio = t
        .declare(
            "prio",
            QueueOptions {
                max_priority: Some(5),
                ..QueueOptions::default()
            },
        )
        .await;
    let bodies = ["m0", "m1", "m2", "m3", "m4"];
    for (body, priority) in bodies.iter().zip([3, 1, 4, 1, 5]) {
        // Without x-max-priority, priorities do not reorder.
        b.publish("", &plain, Message::new(*body).with_priority(priority))
            .await
            .unwrap();
        b.publish("", &prio, Message::new(*body).with_priority(2))
            .await
            .unwrap();
    }
    assert_eq!(drain(b, &plain).await, bodies);
    assert_eq!(drain(b, &prio).await, bodies);
}

async fn consumers_take_turns(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("shared", QueueOptions::default()).await;
    let mut first = consume(b, &queue, 10).await;
    let mut second = consume(b, &queue, 10).await;
    for i in 0..4 {
        publish(b, "", &queue, &format!("m{i}")).await;
    }
    let mut got = Vec::new();
    for consumer in [&mut first, &mut second] {
        let mut mine = Vec::new();
        for _ in 0..2 {
            let delivery = next(consumer).await;
            mine.push(text(&delivery));
            delivery.ack().await.unwrap();
        }
        nothing_more(consumer).await;
        got.extend(mine);
    }
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3"]);
}

// ---------------------------------------------------------- acknowledgements

async fn prefetch_limits_unacked_deliveries(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    for i in 0..5 {
        publish(b, "", &queue, &format!("m{i}")).await;
    }
    let mut consumer = consume(b, &queue, 2).await;
    let first = next(&mut consumer).await;
    let second = next(&mut consumer).await;
    nothing_more(&mut consumer).await;
    first.ack().await.unwrap();
    let third = next(&mut consumer).await;
    assert_eq!(
        [text(&first), text(&second), text(&third)],
        ["m0", "m1", "m2"]
    );
    nothing_more(&mut consumer).await;
    second.ack().await.unwrap();
    third.ack().await.unwrap();
}

async fn ack_removes_the_message(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    publish(b, "", &queue, "done").await;
    let mut consumer = consume(b, &queue, 10).await;
    next(&mut consumer).await.ack().await.unwrap();
    drop(consumer);
    assert_eq!(depth(b, &queue).await, 0);
    assert!(b.get(&queue).await.unwrap().is_none());
}

async fn nack_with_requeue_redelivers_at_the_head(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    publish(b, "", &queue, "first").await;
    publish(b, "", &queue, "second").await;
    let mut consumer = consume(b, &queue, 1).await;
    let delivery = next(&mut consumer).await;
    assert!(!delivery.redelivered);
    delivery.nack(true).await.unwrap();
    if t.quorum {
        // A quorum queue puts a requeued message behind the ready ones and
        // counts its deliveries in `x-delivery-count`.
        let second = next(&mut consumer).await;
        assert_eq!(text(&second), "second");
        assert!(!second.redelivered);
        second.ack().await.unwrap();
        let again = next(&mut consumer).await;
        assert_eq!(text(&again), "first");
        assert!(again.redelivered);
        assert_eq!(
            header(&again, "x-delivery-count"),
            Some(&FieldValue::Int(1))
        );
        again.ack().await.unwrap();
        return;
    }
    let again = next(&mut consumer).await;
    assert_eq!(text(&again), "first");
    assert!(again.redelivered);
    again.ack().await.unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(text(&second), "second");
    assert!(!second.redelivered);
    second.ack().await.unwrap();
}

async fn reject_without_requeue_dead_letters(t: &Fixture) {
    let b = t.broker();
    let (dlx, dlq) = t.dead_letter_pair("dead").await;
    let queue = t
        .declare(
            "work",
            QueueOptions {
                dead_letter_exchange: Some(dlx.clone()),
                dead_letter_routing_key: Some("dead".into()),
                ..QueueOptions::default()
            },
        )
        .await;
    publish(b, "", &queue, "bad").await;
    b.get(&queue)
        .await
        .unwrap()
        .expect("the message")
        .reject(false)
        .await
        .unwrap();
    let mut dead = consume(b, &dlq, 10).await;
    let delivery = next(&mut dead).await;
    assert_eq!(text(&delivery), "bad");
    assert_eq!(delivery.exchange, dlx);
    assert_eq!(delivery.routing_key, "dead");
    assert_eq!(
        header(&delivery, "x-first-death-reason"),
        Some(&string("rejected"))
    );
    assert_eq!(
        header(&delivery, "x-first-death-queue"),
        Some(&string(&queue))
    );
    assert_eq!(
        header(&delivery, "x-first-death-exchange"),
        Some(&string(""))
    );
    delivery.ack().await.unwrap();
    assert_eq!(depth(b, &queue).await, 0);
}

async fn nack_without_requeue_or_dlx_drops(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    publish(b, "", &queue, "gone").await;
    let delivery = b.get(&queue).await.unwrap().expect("the message");
    delivery.nack(false).await.unwrap();
    assert_eq!(depth(b, &queue).await, 0);
    assert!(b.get(&queue).await.unwrap().is_none());
}

async fn settling_twice_is_refused(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    publish(b, "", &queue, "once").await;
    let delivery = b.get(&queue).await.unwrap().expect("the message");
    delivery.ack().await.unwrap();
    let err = delivery.ack().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

async fn dropped_consumer_requeues_unacked(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    publish(b, "", &queue, "a").await;
    publish(b, "", &queue, "b").await;
    let mut consumer = consume(b, &queue, 10).await;
    let a = next(&mut consumer).await;
    let b_delivery = next(&mut consumer).await;
    assert_eq!([text(&a), text(&b_delivery)], ["a", "b"]);
    drop(consumer);
    let mut again = consume(b, &queue, 10).await;
    for expected in ["a", "b"] {
        let delivery = next(&mut again).await;
        assert_eq!(text(&delivery), expected);
        assert!(delivery.redelivered);
        delivery.ack().await.unwrap();
    }
}

async fn get_takes_one_message(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    assert!(b.get(&queue).await.unwrap().is_none());
    publish(b, "", &queue, "one").await;
    publish(b, "", &queue, "two").await;
    let first = b.get(&queue).await.unwrap().expect("a message");
    assert_eq!(text(&first), "one");
    assert!(!first.redelivered);
    assert_eq!(depth(b, &queue).await, 1);
    first.nack(true).await.unwrap();
    if t.quorum {
        // Requeued behind the ready message (see the nack case).
        assert_eq!(drain(b, &queue).await, ["two", "one"]);
        return;
    }
    let again = b.get(&queue).await.unwrap().expect("the requeued message");
    assert_eq!(text(&again), "one");
    assert!(again.redelivered);
    again.ack().await.unwrap();
    assert_eq!(drain(b, &queue).await, ["two"]);
}

// ---------------------------------------------------------- expiry and limits

async fn message_ttl_dead_letters_expired(t: &Fixture) {
    let b = t.broker();
    let queue = t.queue("short-lived");
    let (dlx, dlq) = t.dead_letter_pair(&queue).await;
    b.declare_queue(
        &queue,
        t.options(QueueOptions {
            message_ttl: Some(SHORT_TTL),
            dead_letter_exchange: Some(dlx),
            ..QueueOptions::default()
        }),
    )
    .await
    .unwrap();
    // The consumer waits on the dead-letter queue; nothing touches `queue`.
    let mut dead = consume(b, &dlq, 10).await;
    publish(b, "", &queue, "stale").await;
    let delivery = next(&mut dead).await;
    assert_eq!(text(&delivery), "stale");
    assert_eq!(delivery.routing_key, queue, "the original routing key");
    assert_eq!(
        header(&delivery, "x-first-death-reason"),
        Some(&string("expired"))
    );
    assert_eq!(
        header(&delivery, "x-first-death-queue"),
        Some(&string(&queue))
    );
    delivery.ack().await.unwrap();
    assert_eq!(depth(b, &queue).await, 0);
}

async fn per_message_expiration_applies(t: &Fixture) {
    let b = t.broker();
    let (dlx, dlq) = t.dead_letter_pair("expired").await;
    let queue = t
        .declare(
            "mixed",
            QueueOptions {
                // The smaller of the two wins.
                message_ttl: Some(Duration::from_secs(60)),
                dead_letter_exchange: Some(dlx),
                dead_letter_routing_key: Some("expired".into()),
                ..QueueOptions::default()
            },
        )
        .await;
    let mut dead = consume(b, &dlq, 10).await;
    b.publish("", &queue, Message::new("brief").with_expiration(SHORT_TTL))
        .await
        .unwrap();
    publish(b, "", &queue, "lasting").await;
    let delivery = next(&mut dead).await;
    assert_eq!(text(&delivery), "brief");
    assert_eq!(
        header(&delivery, "x-first-death-reason"),
        Some(&string("expired"))
    );
    delivery.ack().await.unwrap();
    nothing_more(&mut dead).await;
    assert_eq!(drain(b, &queue).await, ["lasting"]);
}

async fn max_length_pushes_out_the_oldest(t: &Fixture) {
    let b = t.broker();
    let (dlx, dlq) = t.dead_letter_pair("overflow").await;
    let queue = t
        .declare(
            "bounded",
            QueueOptions {
                max_length: Some(2),
                dead_letter_exchange: Some(dlx),
                dead_letter_routing_key: Some("overflow".into()),
                ..QueueOptions::default()
            },
        )
        .await;
    for body in ["m1", "m2", "m3"] {
        assert!(publish(b, "", &queue, body).await);
    }
    let mut dead = consume(b, &dlq, 10).await;
    let delivery = next(&mut dead).await;
    assert_eq!(text(&delivery), "m1");
    assert_eq!(
        header(&delivery, "x-first-death-reason"),
        Some(&string("maxlen"))
    );
    delivery.ack().await.unwrap();
    assert_eq!(depth(b, &queue).await, 2);
    assert_eq!(drain(b, &queue).await, ["m2", "m3"]);
}

// --------------------------------------------------------------- queue state

async fn depth_counts_ready_not_unacked(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    for i in 0..3 {
        publish(b, "", &queue, &format!("m{i}")).await;
    }
    let mut consumer = consume(b, &queue, 1).await;
    let delivery = next(&mut consumer).await;
    let info = b.queue_info(&queue).await.unwrap();
    assert_eq!((info.messages, info.consumers), (2, 1));
    delivery.ack().await.unwrap();
}

async fn purge_removes_ready_messages(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("work", QueueOptions::default()).await;
    for i in 0..3 {
        publish(b, "", &queue, &format!("m{i}")).await;
    }
    assert_eq!(b.purge_queue(&queue).await.unwrap(), 3);
    assert_eq!(depth(b, &queue).await, 0);
    assert!(b.get(&queue).await.unwrap().is_none());
}

async fn deleting_a_queue_ends_its_consumers(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("doomed", QueueOptions::default()).await;
    let mut consumer = consume(b, &queue, 10).await;
    b.delete_queue(&queue).await.unwrap();
    let end = tokio::time::timeout(ARRIVES, consumer.next())
        .await
        .expect("the stream ends in time");
    assert!(end.is_none(), "no delivery after deletion");
    let err = b.queue_info(&queue).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

async fn properties_round_trip(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("props", QueueOptions::default()).await;
    let mut nested = FieldTable::new();
    nested.insert("depth".into(), FieldValue::Int(2));
    let mut message = Message::new(&b"\x00binary\xff"[..])
        .with_priority(3)
        .with_message_id("msg-1")
        .with_correlation_id("corr-1")
        .with_expiration(Duration::from_secs(3600))
        .with_header("text", "value")
        .with_header("count", 42_i64)
        .with_header("flag", true)
        .with_header("ratio", FieldValue::Float(0.5))
        .with_header(
            "list",
            FieldValue::Array(vec!["a".into(), FieldValue::Int(1)]),
        )
        .with_header("table", FieldValue::Table(nested))
        .persistent();
    message.properties.content_type = Some("application/octet-stream".into());
    message.properties.content_encoding = Some("gzip".into());
    message.properties.reply_to = Some("replies".into());
    b.publish("", &queue, message.clone()).await.unwrap();
    let delivery = b.get(&queue).await.unwrap().expect("the message");
    let mut got = delivery.message.clone();
    if t.quorum {
        // A quorum queue adds its count of earlier deliveries.
        assert_eq!(
            got.properties.headers.remove("x-delivery-count"),
            Some(FieldValue::Int(0))
        );
    }
    assert_eq!(got, message);
    delivery.ack().await.unwrap();
}

// ------------------------------------------------------------- publish_batch

/// Whether each result of a batch was routed; panics on an error.
fn routed(results: &[strata::Result<Published>]) -> Vec<bool> {
    results
        .iter()
        .map(|r| {
            r.as_ref()
                .map(|p| p.routed)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

async fn publish_batch_answers_in_order(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("tasks", QueueOptions::default()).await;
    let batch = (0..5)
        .map(|i| Outgoing::new("", &queue, Message::new(format!("m{i}"))))
        .collect();
    let results = b.publish_batch(batch).await;
    assert_eq!(routed(&results), [true; 5]);
    assert_eq!(drain(b, &queue).await, ["m0", "m1", "m2", "m3", "m4"]);
}

async fn publish_batch_mixes_routed_and_unrouted(t: &Fixture) {
    let b = t.broker();
    let exchange = t.declare_exchange("direct", ExchangeKind::Direct).await;
    let queue = t.bound("red", &exchange, "red").await;
    // Identical bodies, so each message's fate must come from its own
    // routing, not from which return arrived when.
    let keys = ["red", "green", "red", "green", "green", "red"];
    let batch = keys
        .iter()
        .map(|key| Outgoing::new(&exchange, *key, Message::new("same").persistent()))
        .collect();
    let results = b.publish_batch(batch).await;
    assert_eq!(routed(&results), [true, false, true, false, false, true]);
    assert_eq!(drain(b, &queue).await, ["same", "same", "same"]);
}

async fn publish_batch_to_missing_exchange_is_not_found(t: &Fixture) {
    let b = t.broker();
    let queue = t.declare("tasks", QueueOptions::default()).await;
    let missing = t.exchange("missing");
    let batch = vec![
        Outgoing::new("", &queue, Message::new("m0")),
        Outgoing::new(&missing, "k", Message::new("m1")),
        Outgoing::new("", &queue, Message::new("m2")),
        Outgoing::new(&missing, "k", Message::new("m3")),
        Outgoing::new("", &queue, Message::new("m4")),
    ];
    let results = b.publish_batch(batch).await;
    assert_eq!(results.len(), 5);
    for (i, result) in results.iter().enumerate() {
        if i % 2 == 1 {
            let err = result.as_ref().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound, "message {i}: {err}");
        } else {
            assert_eq!(
                result.as_ref().map(|p| p.routed).ok(),
                Some(true),
                "message {i}"
            );
        }
    }
    assert_eq!(drain(b, &queue).await, ["m0", "m2", "m4"]);

    // A batch only for the missing exchange.
    let batch = (0..3)
        .map(|i| Outgoing::new(&missing, "k", Message::new(format!("x{i}"))))
        .collect();
    for result in b.publish_batch(batch).await {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::NotFound);
    }
}

async fn publish_batch_of_a_thousand_arrives_exactly_once(t: &Fixture) {
    const COUNT: usize = 1_000;
    let b = t.broker();
    let queue = t
        .declare(
            "bulk",
            QueueOptions {
                durable: true,
                ..QueueOptions::default()
            },
        )
        .await;
    let batch = (0..COUNT)
        .map(|i| Outgoing::new("", &queue, Message::new(i.to_string()).persistent()))
        .collect();
    let results = b.publish_batch(batch).await;
    assert_eq!(routed(&results), vec![true; COUNT]);
    assert_eq!(depth(b, &queue).await, COUNT as u64);
    let mut consumer = consume(b, &queue, 256).await;
    let mut seen = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        let delivery = next(&mut consumer).await;
        seen.push(text(&delivery).parse::<usize>().unwrap());
        delivery.ack().await.unwrap();
    }
    nothing_more(&mut consumer).await;
    // One queue, one publisher: FIFO, each once.
    assert_eq!(seen, (0..COUNT).collect::<Vec<_>>());
}

async fn empty_publish_batch_answers_nothing(t: &Fixture) {
    assert!(t.broker().publish_batch(Vec::new()).await.is_empty());
}

// ------------------------------------------------------------------- harness

macro_rules! conformance_cases {
    ($setup:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(fixture) = $setup.await else { return };
                // Tear down even when the case fails, so a shared broker is
                // left as it was found; then report the failure.
                let outcome = futures::FutureExt::catch_unwind(
                    std::panic::AssertUnwindSafe(super::$case(&fixture)),
                )
                .await;
                fixture.teardown().await;
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            }
        )*
    };
}

/// Runs every case against the backend that `$setup` (an async expression
/// giving `Option<Fixture>`; `None` = not configured) provides.
macro_rules! queue_conformance {
    ($backend:ident, $setup:expr) => {
        mod $backend {
            use super::*;
            conformance_cases!($setup;
                declare_is_idempotent,
                conflicting_redeclare_fails,
                missing_queue_or_exchange_is_not_found,
                default_exchange_routes_by_queue_name,
                binding_to_default_exchange_is_refused,
                direct_routes_on_equal_keys,
                fanout_reaches_every_bound_queue,
                topic_star_matches_one_word,
                topic_hash_matches_zero_or_more_words,
                headers_all_needs_every_argument,
                headers_any_needs_one_argument,
                unroutable_publish_is_not_routed,
                publish_to_missing_exchange_is_not_found,
                unbind_stops_routing,
                higher_priority_is_delivered_first,
                priority_is_capped_at_the_maximum,
                fifo_within_a_priority,
                consumers_take_turns,
                prefetch_limits_unacked_deliveries,
                ack_removes_the_message,
                nack_with_requeue_redelivers_at_the_head,
                reject_without_requeue_dead_letters,
                nack_without_requeue_or_dlx_drops,
                settling_twice_is_refused,
                dropped_consumer_requeues_unacked,
                get_takes_one_message,
                message_ttl_dead_letters_expired,
                per_message_expiration_applies,
                max_length_pushes_out_the_oldest,
                depth_counts_ready_not_unacked,
                purge_removes_ready_messages,
                deleting_a_queue_ends_its_consumers,
                properties_round_trip,
                publish_batch_answers_in_order,
                publish_batch_mixes_routed_and_unrouted,
                publish_batch_to_missing_exchange_is_not_found,
                publish_batch_of_a_thousand_arrives_exactly_once,
                empty_publish_batch_answers_nothing,
            );
        }
    };
}

async fn setup_embedded() -> Option<Fixture> {
    Some(Fixture::new(Arc::new(EmbeddedBroker::new())))
}

queue_conformance!(embedded, setup_embedded());

/// RabbitMQ of the full profile (`STRATA_TEST_FULL=1` after
/// `scripts/services.sh up`); `None`, with one line on stderr, otherwise.
async fn setup_rabbitmq() -> Option<Fixture> {
    let config = common::full_profile("queue_conformance")?;
    let QueueConfig::Rabbitmq(rabbit) = &config.queue else {
        panic!("config/full.toml: queue.kind must be \"rabbitmq\"");
    };
    let broker = RabbitBroker::connect(rabbit)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Some(Fixture::new(Arc::new(broker)))
}

queue_conformance!(rabbitmq, setup_rabbitmq());

/// The same RabbitMQ with `queue_type = "quorum"`.
async fn setup_rabbitmq_quorum() -> Option<Fixture> {
    let config = common::full_profile("queue_conformance")?;
    let QueueConfig::Rabbitmq(mut rabbit) = config.queue else {
        panic!("config/full.toml: queue.kind must be \"rabbitmq\"");
    };
    rabbit.queue_type = QueueType::Quorum;
    let broker = RabbitBroker::connect(&rabbit)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Some(Fixture::with_quorum(Arc::new(broker), true))
}

queue_conformance!(rabbitmq_quorum, setup_rabbitmq_quorum());
