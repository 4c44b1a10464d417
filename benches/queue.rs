//! Broker throughput through `Arc<dyn Broker>`.
//!
//! - `embedded/publish_deliver_ack`: publish → deliver → ack of a batch of
//!   messages on a current-thread tokio runtime (one core).
//! - `rabbitmq/publish` and `rabbitmq/publish_batch/{size}`: persistent
//!   messages into a durable queue on the full profile's RabbitMQ
//!   (`config/full.toml`), one publisher: `publish` after `publish`, each
//!   waiting for its confirm, against `publish_batch` with `size` confirms in
//!   flight. Only the publishing is timed; the queue is purged between
//!   iterations. Runs when `STRATA_TEST_FULL=1` (after
//!   `scripts/services.sh up`), else says it is skipped.
//!
//! `cargo bench --bench queue -- publish_deliver_ack` or
//! `STRATA_TEST_FULL=1 cargo bench --bench queue -- rabbitmq` report
//! messages/s.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use strata::config::{Config, QueueConfig, Sources};
use strata::engines::queue::embedded::EmbeddedBroker;
use strata::engines::queue::rabbitmq::RabbitBroker;
use strata::engines::queue::{Broker, ConsumeOptions, Message, Outgoing, QueueOptions};

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

/// Persistent messages per iteration on RabbitMQ.
const RABBIT_MESSAGES: usize = 1_024;

/// The full profile's RabbitMQ, or `None` (saying why) when
/// `STRATA_TEST_FULL` is not `1` or the broker does not answer.
fn full_rabbit(runtime: &tokio::runtime::Runtime) -> Option<Arc<dyn Broker>> {
    if std::env::var("STRATA_TEST_FULL").as_deref() != Ok("1") {
        eprintln!("rabbitmq benches skipped (set STRATA_TEST_FULL=1 after scripts/services.sh up)");
        return None;
    }
    let sources = Sources {
        config_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config")),
        profile: Some("full".into()),
        ..Default::default()
    };
    let config = match Config::load(&sources) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rabbitmq benches skipped: the full profile does not load: {e}");
            return None;
        }
    };
    let QueueConfig::Rabbitmq(rabbit) = config.queue else {
        eprintln!("rabbitmq benches skipped: the full profile's queue is not RabbitMQ");
        return None;
    };
    match runtime.block_on(RabbitBroker::connect(&rabbit)) {
        Ok(broker) => Some(Arc::new(broker)),
        Err(e) => {
            eprintln!("rabbitmq benches skipped: {e}");
            None
        }
    }
}

/// Publishes `RABBIT_MESSAGES` persistent messages to `queue`, in batches
/// of `batch` (0: one `publish` after another), `iters` times; the time
/// spent publishing.
async fn publish_persistent(
    broker: &Arc<dyn Broker>,
    queue: &str,
    body: &bytes::Bytes,
    batch: usize,
    iters: u64,
) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let message = || Message::new(body.clone()).persistent();
        let start = Instant::now();
        if batch == 0 {
            for _ in 0..RABBIT_MESSAGES {
                let published = broker.publish("", queue, message()).await.expect("publish");
                assert!(published.routed);
            }
        } else {
            let mut left = RABBIT_MESSAGES;
            while left > 0 {
                let size = left.min(batch);
                left -= size;
                let outgoing = (0..size)
                    .map(|_| Outgoing::new("", queue, message()))
                    .collect();
                for published in broker.publish_batch(outgoing).await {
                    assert!(published.expect("publish_batch").routed);
                }
            }
        }
        spent += start.elapsed();
        broker.purge_queue(queue).await.expect("purge");
    }
    spent
}

fn rabbitmq_publish(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(broker) = full_rabbit(&runtime) else {
        return;
    };
    let queue = format!("strata-bench-queue-{}", std::process::id());
    let durable = QueueOptions {
        durable: true,
        ..QueueOptions::default()
    };
    runtime
        .block_on(broker.declare_queue(&queue, durable))
        .expect("declare");
    let body = bytes::Bytes::from_static(&[b'x'; 256]);

    let mut group = c.benchmark_group("rabbitmq");
    group.throughput(Throughput::Elements(RABBIT_MESSAGES as u64));
    group.sample_size(10);
    group.bench_function("publish", |b| {
        b.to_async(&runtime)
            .iter_custom(|iters| publish_persistent(&broker, &queue, &body, 0, iters));
    });
    for size in [64, 256, 1_024] {
        group.bench_with_input(
            BenchmarkId::new("publish_batch", size),
            &size,
            |b, &size| {
                b.to_async(&runtime)
                    .iter_custom(|iters| publish_persistent(&broker, &queue, &body, size, iters));
            },
        );
    }
    group.finish();
    runtime
        .block_on(broker.delete_queue(&queue))
        .expect("delete the bench queue");
}

criterion_group!(benches, publish_deliver_ack, rabbitmq_publish);
criterion_main!(benches);
