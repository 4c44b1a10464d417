//! Hot paths measured in nanoseconds, each input built before the timed
//! closure and passed through `black_box`, each result kept through it.
//!
//! - `filter/*`: `Filter::matches` of a filter parsed beforehand
//!   (`Filter::parse`, as the embedded document engine plans a query) on
//!   the `fraud-detector-v1` model config of `strata seed`:
//!   - `eq`: `{framework: "pytorch"}`;
//!   - `range_in`: `metrics.accuracy` in `[0.95, 1)` and `framework` `$in`
//!     three values;
//!   - `and_or`: an `$and` of two `$or`s on dotted paths, one reaching
//!     through the `config.architecture.layers` array;
//!
//!   each as `match` and `miss` (the miss fails on the last condition
//!   checked, so it does the whole work).
//! - `topic/*`: `topic_matches(pattern, routing_key)`: `exact` (no
//!   wildcard: the no-allocation path), `star` (`run.*`), `hash_middle`
//!   (`metrics.#.p99` over four words), `hash_end` (`run.#`) and `miss`
//!   (`metrics.#.p99` against a key ending otherwise).
//! - `l1_hit`: `TieredCache<String>::get_or_load` of a key present in L1
//!   (the embedded key-value engine as L2, default settings, a 256-byte
//!   value), on a current-thread runtime with `to_async`, which drives all
//!   iterations inside one `block_on`. The loader returns an error, and the
//!   cache's counters are checked afterwards: every call was an L1 hit.
//! - `serialization/*`: encode and decode of what the hot paths carry.
//!   Entries as the cache stores them in L2 (`cache::codec::encode` and
//!   `decode`: a binary header, the tags, the value in MessagePack):
//!   `prediction` (a cached `Scored` with its entity tag, the `predictions`
//!   cache), `feature_view` (a view of 8 floats, the `feature_views` cache
//!   every feature read and prediction goes through) and `model_config`
//!   (the `fraud-detector-v1` config, BSON inside MessagePack, the `configs`
//!   cache). Then a pipeline message: `event_message/encode` is
//!   `OutboxEvent::message` (a `run.completed` event as the relay publishes
//!   it: JSON body, message id, `x-strata-seq` header);
//!   `event_message/decode` is what a worker does with its delivery before
//!   and inside the read model's handler: `message_id`, the attempt header,
//!   `payload_of`, `route_of`, `history_of` into a `Task`, then
//!   `parse_event` of its payload.
//!
//! No target is enforced; criterion reports each median.
//!
//! `cargo bench --bench hot_paths` (about a minute and a half), or one
//! group: `cargo bench --bench hot_paths -- filter` (`topic`, `l1_hit`,
//! `serialization`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bson::{Document, doc};
use chrono::{DateTime, Utc};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use strata::cache::codec::{self, Envelope};
use strata::cache::{CacheSettings, Tier, TieredCache};
use strata::engines::KvStore;
use strata::engines::document::query::filter::Filter;
use strata::engines::kv::embedded::{EmbeddedKv, EmbeddedKvOptions};
use strata::engines::queue::topic::topic_matches;
use strata::engines::queue::{Acker, Delivery};
use strata::pipelines::Task;
use strata::pipelines::envelope;
use strata::platform::configs::seed_configs;
use strata::platform::outbox::{OutboxEvent, parse_event, topics};
use strata::platform::rows::CachedDocument;
use strata::serving::features::{FeatureSpec, FeatureType, FeatureView};
use strata::serving::predict::{Scored, entity_tag};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The `fraud-detector-v1` model config of `strata seed`.
fn model_config() -> Document {
    seed_configs()
        .into_iter()
        .find(|d| d.get_str("model_id").ok() == Some("fraud-detector-v1"))
        .expect("the seed has fraud-detector-v1")
}

fn filter(c: &mut Criterion) {
    let config = model_config();
    let cases: [(&str, Document, Document); 3] = [
        (
            "eq",
            doc! {"framework": "pytorch"},
            doc! {"framework": "xgboost"},
        ),
        (
            "range_in",
            doc! {
                "metrics.accuracy": {"$gte": 0.95, "$lt": 1.0},
                "framework": {"$in": ["pytorch", "tensorflow", "jax"]},
            },
            doc! {
                "metrics.accuracy": {"$gte": 0.95, "$lt": 1.0},
                "framework": {"$in": ["xgboost", "sklearn", "jax"]},
            },
        ),
        (
            "and_or",
            doc! {"$and": [
                {"$or": [{"framework": "xgboost"}, {"config.training.optimizer": "adam"}]},
                {"$or": [
                    {"metrics.recall": {"$gt": 0.99}},
                    {"config.architecture.layers.units": {"$gte": 128}},
                ]},
            ]},
            doc! {"$and": [
                {"$or": [{"framework": "xgboost"}, {"config.training.optimizer": "adam"}]},
                {"$or": [
                    {"metrics.recall": {"$gt": 0.99}},
                    {"config.architecture.layers.units": {"$gte": 256}},
                ]},
            ]},
        ),
    ];
    let mut group = c.benchmark_group("filter");
    for (name, matching, missing) in cases {
        for (outcome, spec, expected) in [("match", matching, true), ("miss", missing, false)] {
            let parsed = Filter::parse(&spec).expect("the filter parses");
            assert_eq!(parsed.matches(&config), expected, "{name}/{outcome}");
            group.bench_function(format!("{name}/{outcome}"), |b| {
                b.iter(|| black_box(black_box(&parsed).matches(black_box(&config))))
            });
        }
    }
    group.finish();
}

fn topic(c: &mut Criterion) {
    let cases = [
        ("exact", "run.completed", "run.completed", true),
        ("star", "run.*", "run.completed", true),
        (
            "hash_middle",
            "metrics.#.p99",
            "metrics.api.get_model.p99",
            true,
        ),
        ("hash_end", "run.#", "run.completed.fraud-detector", true),
        ("miss", "metrics.#.p99", "metrics.api.get_model.p50", false),
    ];
    let mut group = c.benchmark_group("topic");
    for (name, pattern, key, expected) in cases {
        assert_eq!(topic_matches(pattern, key), expected, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(topic_matches(black_box(pattern), black_box(key))))
        });
    }
    group.finish();
}

async fn no_load() -> strata::Result<Option<String>> {
    Err(strata::Error::internal(
        "the bench's loader ran: the key should have been in L1",
    ))
}

fn l1_hit(c: &mut Criterion) {
    let rt = runtime();
    let kv: Arc<dyn KvStore> = Arc::new(EmbeddedKv::new(EmbeddedKvOptions::default()));
    let cache = TieredCache::<String>::builder("bench_hot_l1")
        .settings(CacheSettings::default())
        .l2(kv)
        .build()
        .expect("the cache");
    let key = "user:00042";
    let value = format!("{key}={}", "v".repeat(256 - key.len() - 1));
    rt.block_on(async {
        let loaded = value.clone();
        let found = cache
            .get_or_load(key, move || async move { Ok(Some(loaded)) })
            .await
            .expect("the first load");
        assert_eq!(found.tier, Tier::Loaded);
        let found = cache.get_or_load(key, no_load).await.expect("an L1 hit");
        assert_eq!(found.tier, Tier::L1);
        assert_eq!(found.value.as_ref(), Some(&value));
    });
    let before = cache.stats();
    c.bench_function("l1_hit", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get_or_load(black_box(key), no_load).await) })
    });
    let after = cache.stats();
    assert_eq!(after.loads, before.loads, "the loader ran");
    assert_eq!(after.l2_hits, before.l2_hits, "a lookup reached L2");
    assert_eq!(after.misses, before.misses, "a lookup missed L1");
    assert_eq!(after.load_errors, 0, "the loader ran");
}

/// A noop settlement: the decoded deliveries are never acknowledged.
#[derive(Debug)]
struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(&self) -> strata::Result<()> {
        Ok(())
    }
    async fn nack(&self, _requeue: bool) -> strata::Result<()> {
        Ok(())
    }
    async fn reject(&self, _requeue: bool) -> strata::Result<()> {
        Ok(())
    }
}

/// What `worker::process` does with a delivery before and inside the read
/// model's handler, its key-value checks left out.
fn decode_event(delivery: &Delivery, queue: &str) -> strata::Result<OutboxEvent> {
    let id = envelope::message_id(delivery);
    let attempt = envelope::header_int(&delivery.message, envelope::ATTEMPT)
        .and_then(|a| u32::try_from(a).ok())
        .unwrap_or(1)
        .max(1);
    let payload = envelope::payload_of(&delivery.message)?;
    let (_, routing_key) = envelope::route_of(delivery);
    let task = Task {
        id,
        queue: queue.to_owned(),
        routing_key,
        payload,
        attempt,
        history: envelope::history_of(&delivery.message),
        message: delivery.message.clone(),
    };
    parse_event(&task.payload)
}

/// Encode and decode of `value` as the cache stores it in L2.
fn entry_round_trip<V>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    value: &V,
    tags: &[String],
) where
    V: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let (created_ms, fresh_ms) = (1_780_000_000_000u64, 300_000u64);
    let raw = codec::encode(Some(value), created_ms, fresh_ms, tags).expect("encodes");
    let decoded: Envelope<V> = codec::decode(&raw).expect("decodes");
    assert_eq!(decoded.value.as_ref(), Some(value), "{name}");
    assert_eq!(decoded.tags, tags, "{name}");
    group.bench_function(format!("{name}/encode"), |b| {
        b.iter(|| {
            black_box(codec::encode(
                Some(black_box(value)),
                black_box(created_ms),
                fresh_ms,
                black_box(tags),
            ))
        })
    });
    group.bench_function(format!("{name}/decode"), |b| {
        b.iter(|| black_box(codec::decode::<V>(black_box(&raw))))
    });
    println!("serialization/{name}: {} bytes in L2", raw.len());
}

fn serialization(c: &mut Criterion) {
    let mut group = c.benchmark_group("serialization");
    let scored = Scored {
        score: 0.731_058_578_630_004_9,
    };
    entry_round_trip(
        &mut group,
        "prediction",
        &scored,
        &[entity_tag("user", "u-000042")],
    );

    let view = FeatureView {
        name: "user_activity".into(),
        entity: "user".into(),
        features: (1..=8)
            .map(|j| FeatureSpec {
                name: format!("f{j}"),
                kind: FeatureType::Float,
            })
            .collect(),
        ttl: Duration::from_secs(3600),
        description: Some("activity counters of a user".into()),
    };
    entry_round_trip(&mut group, "feature_view", &view, &[]);

    let mut config = model_config();
    config.remove("_id");
    entry_round_trip(
        &mut group,
        "model_config",
        &CachedDocument(Arc::new(config)),
        &[],
    );

    let at: DateTime<Utc> = "2026-12-01T10:00:00.123456Z".parse().expect("a time");
    let event = OutboxEvent {
        seq: 42,
        topic: topics::RUN_COMPLETED.into(),
        aggregate: "fraud-detector-v1".into(),
        at,
        payload: serde_json::json!({
            "run_id": 19,
            "model_name": "fraud-detector",
            "framework": "pytorch",
            "status": "completed",
            "metrics": {"accuracy": 0.9845, "loss": 0.0412, "training_time_seconds": 3621.5},
            "started_at": "2026-12-01T09:00:00.000000Z",
            "completed_at": "2026-12-01T10:00:00.123456Z",
        }),
    };
    let message = event.message();
    let delivery = Delivery::new(
        7,
        "strata.events".into(),
        event.topic.clone(),
        false,
        message,
        Arc::new(NoAck),
    );
    let queue = "read-model";
    assert_eq!(decode_event(&delivery, queue).expect("decodes"), event);
    group.bench_function("event_message/encode", |b| {
        b.iter(|| black_box(black_box(&event).message()))
    });
    group.bench_function("event_message/decode", |b| {
        b.iter(|| black_box(decode_event(black_box(&delivery), black_box(queue))))
    });
    group.finish();
}

criterion_group!(benches, filter, topic, l1_hit, serialization);
criterion_main!(benches);
