//! Behaviours of the embedded broker beyond the shared conformance suite:
//! the documented choices where AMQP leaves room, and in-process details.

use std::sync::Arc;
use std::time::Duration;

use super::EmbeddedBroker;
use crate::engines::queue::{
    Broker, ConsumeOptions, Consumer, Delivery, ExchangeKind, ExchangeOptions, FieldTable, Message,
    QueueOptions,
};
use crate::error::ErrorKind;

const ARRIVES: Duration = Duration::from_secs(5);

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(ARRIVES, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("the stream is open")
        .expect("a delivery")
}

async fn depth(broker: &EmbeddedBroker, queue: &str) -> u64 {
    broker.queue_info(queue).await.unwrap().messages
}

fn ttl(ttl: Duration) -> QueueOptions {
    QueueOptions {
        message_ttl: Some(ttl),
        ..QueueOptions::default()
    }
}

#[tokio::test]
async fn expired_messages_behind_a_live_head_still_count() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    broker
        .publish("", "q", Message::new("lasting"))
        .await
        .unwrap();
    broker
        .publish(
            "",
            "q",
            Message::new("brief").with_expiration(Duration::from_millis(10)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        depth(&broker, "q").await,
        2,
        "the live head hides the expired one"
    );
    broker
        .get("q")
        .await
        .unwrap()
        .expect("head")
        .ack()
        .await
        .unwrap();
    assert_eq!(depth(&broker, "q").await, 0, "now at the head, it expires");
}

#[tokio::test]
async fn zero_ttl_reaches_a_waiting_consumer_only() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", ttl(Duration::ZERO))
        .await
        .unwrap();
    broker
        .publish("", "q", Message::new("unseen"))
        .await
        .unwrap();
    assert_eq!(depth(&broker, "q").await, 0);
    let mut consumer = broker
        .consume("q", ConsumeOptions::default())
        .await
        .unwrap();
    broker.publish("", "q", Message::new("seen")).await.unwrap();
    assert_eq!(&next(&mut consumer).await.message.body[..], b"seen");
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let broker = EmbeddedBroker::new();
    let options = QueueOptions {
        auto_delete: true,
        ..QueueOptions::default()
    };
    broker.declare_queue("q", options).await.unwrap();
    let first = broker
        .consume("q", ConsumeOptions::default())
        .await
        .unwrap();
    let second = broker
        .consume("q", ConsumeOptions::default())
        .await
        .unwrap();
    drop(first);
    assert_eq!(broker.queue_info("q").await.unwrap().consumers, 1);
    drop(second);
    let err = broker.queue_info("q").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn unsettled_get_delivery_is_requeued_when_dropped() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    broker.publish("", "q", Message::new("m")).await.unwrap();
    let delivery = broker.get("q").await.unwrap().expect("m");
    let clone = delivery.clone();
    drop(delivery);
    assert_eq!(depth(&broker, "q").await, 0, "a clone still holds it");
    drop(clone);
    let again = broker.get("q").await.unwrap().expect("requeued");
    assert!(again.redelivered);
    again.ack().await.unwrap();
}

#[tokio::test]
async fn settling_after_the_consumer_is_dropped_is_refused() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    broker.publish("", "q", Message::new("m")).await.unwrap();
    let mut consumer = broker
        .consume("q", ConsumeOptions::default())
        .await
        .unwrap();
    let delivery = next(&mut consumer).await;
    drop(consumer);
    let err = delivery.ack().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.message().contains("unknown delivery tag"), "{err}");
    assert_eq!(depth(&broker, "q").await, 1, "requeued, not acknowledged");
}

#[tokio::test]
async fn settling_a_delivery_of_a_deleted_queue_succeeds() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    broker.publish("", "q", Message::new("m")).await.unwrap();
    let delivery = broker.get("q").await.unwrap().expect("m");
    broker.delete_queue("q").await.unwrap();
    delivery.ack().await.unwrap();
    assert_eq!(
        delivery.ack().await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn dead_letter_cycles_without_rejection_are_dropped() {
    let broker = EmbeddedBroker::new();
    // Expired messages go to the default exchange with their own key: back
    // to the same queue, forever, unless the cycle rule stops them.
    let options = QueueOptions {
        message_ttl: Some(Duration::from_millis(10)),
        dead_letter_exchange: Some(String::new()),
        ..QueueOptions::default()
    };
    broker.declare_queue("loop", options).await.unwrap();
    broker.publish("", "loop", Message::new("m")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(depth(&broker, "loop").await, 0);
}

#[tokio::test]
async fn rejected_messages_may_cycle() {
    let broker = EmbeddedBroker::new();
    let options = QueueOptions {
        dead_letter_exchange: Some(String::new()),
        ..QueueOptions::default()
    };
    broker.declare_queue("loop", options).await.unwrap();
    broker.publish("", "loop", Message::new("m")).await.unwrap();
    for round in 1..=2 {
        let delivery = broker.get("loop").await.unwrap().expect("back again");
        if round == 2 {
            let deaths = delivery.message.properties.headers.get("x-death");
            let Some(crate::engines::queue::FieldValue::Array(deaths)) = deaths else {
                panic!("x-death missing: {deaths:?}");
            };
            let crate::engines::queue::FieldValue::Table(last) = &deaths[0] else {
                panic!("not a table");
            };
            assert_eq!(
                last.get("count"),
                Some(&crate::engines::queue::FieldValue::Int(1))
            );
        }
        delivery.reject(false).await.unwrap();
    }
    assert_eq!(depth(&broker, "loop").await, 1);
}

#[tokio::test]
async fn reserved_names_are_refused() {
    let broker = EmbeddedBroker::new();
    let refused = [
        broker
            .declare_exchange("amq.mine", ExchangeKind::Direct, ExchangeOptions::default())
            .await
            .unwrap_err(),
        broker.delete_exchange("amq.direct").await.unwrap_err(),
        broker.delete_exchange("").await.unwrap_err(),
        broker
            .declare_exchange("", ExchangeKind::Direct, ExchangeOptions::default())
            .await
            .unwrap_err(),
        broker
            .declare_queue("amq.mine", QueueOptions::default())
            .await
            .unwrap_err(),
        broker
            .declare_queue(&"q".repeat(256), QueueOptions::default())
            .await
            .unwrap_err(),
    ];
    for err in refused {
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    }
    let predeclared = ExchangeOptions {
        durable: true,
        auto_delete: false,
    };
    broker
        .declare_exchange("amq.topic", ExchangeKind::Topic, predeclared)
        .await
        .unwrap();
}

#[tokio::test]
async fn empty_queue_name_is_generated() {
    let broker = EmbeddedBroker::new();
    let first = broker
        .declare_queue("", QueueOptions::default())
        .await
        .unwrap();
    let second = broker
        .declare_queue("", QueueOptions::default())
        .await
        .unwrap();
    assert!(first.name.starts_with("amq.gen-"), "{}", first.name);
    assert_ne!(first.name, second.name);
    assert!(
        broker
            .publish("", &first.name, Message::new("m"))
            .await
            .unwrap()
            .routed
    );
}

#[tokio::test]
async fn zero_prefetch_is_refused() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    let options = ConsumeOptions {
        prefetch: 0,
        consumer_tag: Some("mine".into()),
    };
    let err = broker.consume("q", options).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("prefetch"));
}

#[tokio::test]
async fn consumer_tag_is_kept_or_generated() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    let named = ConsumeOptions {
        consumer_tag: Some("mine".into()),
        ..ConsumeOptions::default()
    };
    assert_eq!(broker.consume("q", named).await.unwrap().tag(), "mine");
    let generated = broker
        .consume("q", ConsumeOptions::default())
        .await
        .unwrap();
    assert!(generated.tag().starts_with("amq.ctag-"));
}

#[tokio::test]
async fn exclusive_is_compared_on_redeclaration() {
    let broker = EmbeddedBroker::new();
    let exclusive = QueueOptions {
        exclusive: true,
        ..QueueOptions::default()
    };
    broker.declare_queue("q", exclusive).await.unwrap();
    let err = broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.message().contains("inequivalent arg 'exclusive'"),
        "{err}"
    );
}

#[tokio::test]
async fn dropping_the_broker_ends_streams() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    let mut consumer = broker
        .consume("q", ConsumeOptions::default())
        .await
        .unwrap();
    drop(broker);
    assert!(consumer.next().await.is_none());
}

#[tokio::test]
async fn overlapping_bindings_deliver_one_copy() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_exchange("t", ExchangeKind::Topic, ExchangeOptions::default())
        .await
        .unwrap();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    for pattern in ["a.*", "#", "a.b"] {
        broker
            .bind_queue("q", "t", pattern, FieldTable::new())
            .await
            .unwrap();
    }
    assert!(
        broker
            .publish("t", "a.b", Message::new("m"))
            .await
            .unwrap()
            .routed
    );
    assert_eq!(depth(&broker, "q").await, 1);
}

#[tokio::test]
async fn auto_delete_exchange_goes_with_its_last_binding() {
    let broker = EmbeddedBroker::new();
    let options = ExchangeOptions {
        durable: false,
        auto_delete: true,
    };
    broker
        .declare_exchange("x", ExchangeKind::Fanout, options)
        .await
        .unwrap();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    broker
        .bind_queue("q", "x", "", FieldTable::new())
        .await
        .unwrap();
    broker
        .unbind_queue("q", "x", "", FieldTable::new())
        .await
        .unwrap();
    let err = broker
        .publish("x", "", Message::new("m"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn invalid_x_match_is_refused() {
    let broker = EmbeddedBroker::new();
    broker
        .declare_exchange("h", ExchangeKind::Headers, ExchangeOptions::default())
        .await
        .unwrap();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    let mut arguments = FieldTable::new();
    arguments.insert("x-match".into(), "most".into());
    let err = broker
        .bind_queue("q", "h", "", arguments)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn requeue_keeps_priority_order() {
    let broker = EmbeddedBroker::new();
    let options = QueueOptions {
        max_priority: Some(5),
        ..QueueOptions::default()
    };
    broker.declare_queue("q", options).await.unwrap();
    for (body, priority) in [("low", 1), ("high", 5)] {
        broker
            .publish("", "q", Message::new(body).with_priority(priority))
            .await
            .unwrap();
    }
    let head = {
        let high = broker.get("q").await.unwrap().expect("high");
        let low = broker.get("q").await.unwrap().expect("low");
        low.nack(true).await.unwrap();
        high.nack(true).await.unwrap();
        broker.get("q").await.unwrap().expect("head")
    };
    assert_eq!(&head.message.body[..], b"high", "requeued to its own level");
    head.ack().await.unwrap();
}

#[test]
fn works_as_a_trait_object() {
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
    assert_eq!(
        (broker.kind(), broker.target()),
        ("embedded", "in-process".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_and_consumers_settle_every_message_once() {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 500;
    let broker = EmbeddedBroker::new();
    broker
        .declare_queue("q", QueueOptions::default())
        .await
        .unwrap();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut consumers = Vec::new();
    for c in 0..3 {
        let mut consumer = broker
            .consume(
                "q",
                ConsumeOptions {
                    prefetch: 7,
                    consumer_tag: None,
                },
            )
            .await
            .unwrap();
        let acked = Arc::clone(&acked);
        consumers.push(tokio::spawn(async move {
            let mut seen = 0_usize;
            while let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
            {
                seen += 1;
                // Every third first delivery is requeued once, exercising
                // requeue under contention.
                if !delivery.redelivered && (seen + c) % 3 == 0 {
                    delivery.nack(true).await.unwrap();
                } else {
                    acked.lock().unwrap().push(delivery.message.body.clone());
                    delivery.ack().await.unwrap();
                }
            }
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let broker = broker.clone();
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                broker
                    .publish("", "q", Message::new(format!("{p}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in publishers.into_iter().chain(consumers) {
        task.await.unwrap();
    }
    let mut bodies = acked.lock().unwrap().clone();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), PUBLISHERS * EACH);
    assert_eq!(
        acked.lock().unwrap().len(),
        PUBLISHERS * EACH,
        "no duplicates"
    );
    assert_eq!(depth(&broker, "q").await, 0);
}
