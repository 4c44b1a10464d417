//! Broker throughput: publish → deliver → ack of a batch of messages through
//! `Arc<dyn Broker>`, on a current-thread tokio runtime (one core).
//!
//! `cargo bench --bench queue -- publish_deliver_ack` reports messages/s.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata::engines::queue::embedded::EmbeddedBroker;
use strata::engines::queue::{Broker, ConsumeOptions, Message, QueueOptions};

/// Messages per iteration.
const BATCH: u64 = 10_000;
/// The consumer's window: large enough that acks rarely wait for a refill.
const PREFETCH: u16 = 256;

/// Publishes `BATCH` messages while one consumer takes and acks them all.
async fn round_trip(broker: Arc<dyn Broker>, queue: &'static str, body: bytes::Bytes) {
    let mut consumer = broker
        .consume(
            queue,
            ConsumeOptions {
                prefetch: PREFETCH,
                consumer_tag: None,
            },
        )
        .await
        .expect("consume");
    let publisher = {
        let broker = Arc::clone(&broker);
        tokio::spawn(async move {
            for _ in 0..BATCH {
                let message = Message::new(body.clone());
                broker.publish("", queue, message).await.expect("publish");
                // Lets the consumer run between publishes, as separate
                // tasks on one core would interleave.
                tokio::task::yield_now().await;
            }
        })
    };
    for _ in 0..BATCH {
        let delivery = consumer
            .next()
            .await
            .expect("stream open")
            .expect("delivery");
        delivery.ack().await.expect("ack");
    }
    publisher.await.expect("publisher");
}

fn publish_deliver_ack(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new());
    runtime
        .block_on(broker.declare_queue("bench", QueueOptions::default()))
        .expect("declare");
    let body = bytes::Bytes::from_static(&[b'x'; 256]);

    let mut group = c.benchmark_group("embedded");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("publish_deliver_ack", |b| {
        b.to_async(&runtime)
            .iter(|| round_trip(Arc::clone(&broker), "bench", body.clone()));
    });
    group.finish();
}

criterion_group!(benches, publish_deliver_ack);
criterion_main!(benches);
