//! The transactional outbox (`strata::platform::outbox`) and the models'
//! read model (`strata::platform::read_model`): an event exactly for each
//! committed change, published at least once with a stable message id by
//! any number of relays, through crashes at each point; the read model
//! kept from the events equals the one rebuilt from SQL, whatever the
//! order and repetition of the events.
//!
//! Every case runs on the embedded profile (the in-process broker) and,
//! with `STRATA_TEST_FULL=1`, on the full profile (PostgreSQL, MongoDB,
//! Redis and RabbitMQ, with an exchange and queue of the case's own).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::TransactionTrait;
use strata::config::{OutboxConfig, SagasConfig};
use strata::engines::queue::{Delivery, ExchangeKind, ExchangeOptions, FieldValue, QueueOptions};
use strata::engines::{Broker, Engines};
use strata::platform::entities::RunStatus;
use strata::platform::outbox::{RelayPoint, parse_event, topics};
use strata::platform::read_model::{Applied, ModelView};
use strata::platform::registry::{self, NewArtifact, NewDataset, NewRun, RunOutcome, aliases};
use strata::platform::sagas::{FaultPoint, Phase, RegisterRun, SagaOutcome};
use strata::platform::{OutboxEvent, Platform};
use strata::{Error, ErrorKind};
use tokio_util::sync::CancellationToken;

use common::engines::{run_case, setup_embedded};

async fn setup_full() -> Option<common::engines::Env> {
    common::engines::setup_full("outbox").await
}

/// One case's platform and the topic exchange its relays publish to, with
/// a queue bound to it by `#` that receives every event.
struct Bus {
    platform: Platform,
    broker: Arc<dyn Broker>,
    exchange: String,
    queue: String,
}

impl Bus {
    async fn open(engines: Engines) -> Bus {
        let full = strata::engines::relational::backend_name(&engines.relational) == "postgres";
        let broker: Arc<dyn Broker> = if full {
            let config = common::full_profile("outbox").expect("full profile");
            strata::engines::open_queue(&config)
                .await
                .expect("connect to RabbitMQ")
        } else {
            engines.queue.clone()
        };
        let platform = Platform::with_engines(engines, SagasConfig::default())
            .await
            .unwrap();
        let exchange = common::unique_name("outbox_x");
        let queue = common::unique_name("outbox_q");
        broker
            .declare_exchange(&exchange, ExchangeKind::Topic, ExchangeOptions::default())
            .await
            .unwrap();
        broker
            .declare_queue(&queue, QueueOptions::default())
            .await
            .unwrap();
        broker
            .bind_queue(&queue, &exchange, "#", Default::default())
            .await
            .unwrap();
        Bus {
            platform,
            broker,
            exchange,
            queue,
        }
    }

    fn relay(&self) -> strata::platform::Relay {
        self.platform
            .outbox()
            .relay(self.broker.clone(), self.exchange.clone())
    }

    /// Every message waiting in the queue, acknowledged.
    async fn drain(&self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(delivery) = self.broker.get(&self.queue).await.unwrap() {
            delivery.ack().await.unwrap();
            out.push(delivery);
        }
        out
    }

    /// Relay passes until nothing is left to send.
    async fn publish_everything(&self) -> usize {
        let relay = self.relay();
        let mut published = 0;
        loop {
            let pass = relay.run_once().await.unwrap();
            assert_eq!(pass.failed, 0);
            if pass.published == 0 {
                break;
            }
            published += pass.published;
        }
        assert_eq!(self.platform.outbox().backlog().await.unwrap(), 0);
        published
    }

    async fn close(self) {
        let _ = self.broker.delete_queue(&self.queue).await;
        let _ = self.broker.delete_exchange(&self.exchange).await;
    }
}

fn message_id(delivery: &Delivery) -> String {
    delivery
        .message
        .properties
        .message_id
        .clone()
        .expect("a message id")
}

async fn dataset(platform: &Platform) -> String {
    let name = common::unique_name("ds");
    platform
        .registry()
        .create_dataset(NewDataset {
            name: name.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    name
}

async fn register(platform: &Platform, dataset: &str, model_id: &str, model_name: &str) -> i64 {
    let outcome = platform
        .sagas()
        .register_run(
            RegisterRun {
                dataset_name: dataset.into(),
                model_id: model_id.into(),
                model_name: model_name.into(),
                framework: "xgboost".into(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let SagaOutcome::Done(registered) = outcome else {
        panic!("the registration did not complete: {outcome:?}");
    };
    registered.run.id
}

fn completed(accuracy: f64) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Completed,
        accuracy: Some(accuracy),
        loss: Some(0.25),
        training_time_seconds: Some(60),
        completed_at: None,
    }
}

async fn artifact(engines: &Engines, run_id: i64) -> i64 {
    registry::create_artifact(
        &engines.relational,
        NewArtifact {
            run_id,
            uri: format!("s3://models/{run_id}.bin"),
            format: "xgboost".into(),
            size_bytes: 1,
            checksum: "c".into(),
        },
    )
    .await
    .unwrap()
    .id
}

async fn committed_changes_each_publish_one_event(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let p = &bus.platform;
    let ds = dataset(p).await;
    let run_id = register(p, &ds, "fd-1", "fraud").await;
    p.registry()
        .complete_run("fd-1", completed(0.9))
        .await
        .unwrap();
    let art = artifact(&engines, run_id).await;
    let alias = aliases::AliasRef::new("fraud", "champion").unwrap();
    p.registry()
        .move_alias(&alias, art, "ana", Some("best"))
        .await
        .unwrap();
    // Moving it where it is changes nothing and announces nothing.
    p.registry()
        .move_alias(&alias, art, "ana", None)
        .await
        .unwrap();
    assert_eq!(p.outbox().backlog().await.unwrap(), 3);

    assert_eq!(bus.publish_everything().await, 3);
    let got = bus.drain().await;
    assert_eq!(got.len(), 3);
    let events: Vec<OutboxEvent> = got
        .iter()
        .map(|d| parse_event(&d.message.body).unwrap())
        .collect();
    let mut by_topic: HashMap<String, (&Delivery, &OutboxEvent)> = HashMap::new();
    for (d, e) in got.iter().zip(&events) {
        assert_eq!(d.routing_key, e.topic);
        assert_eq!(message_id(d), format!("outbox-{}", e.seq));
        assert!(d.message.properties.persistent);
        assert_eq!(
            d.message.properties.content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(
            d.message.properties.headers.get("x-strata-seq"),
            Some(&FieldValue::Int(e.seq))
        );
        assert_eq!(e.aggregate, "fd-1");
        by_topic.insert(e.topic.clone(), (d, e));
    }
    let body = |topic: &str| -> serde_json::Value {
        serde_json::from_slice(&by_topic[topic].0.message.body).unwrap()
    };
    let registered = body(topics::RUN_REGISTERED);
    assert_eq!(registered["type"], "run.registered");
    assert_eq!(registered["model_id"], "fd-1");
    assert_eq!(registered["data"]["run_id"], run_id);
    assert_eq!(registered["data"]["dataset"], ds.as_str());
    assert_eq!(registered["data"]["status"], "running");
    let done = body(topics::RUN_COMPLETED);
    assert_eq!(done["data"]["status"], "completed");
    assert_eq!(done["data"]["metrics"]["accuracy"], 0.9);
    assert_eq!(done["data"]["metrics"]["training_time_seconds"], 60);
    let moved = body(topics::ALIAS_MOVED);
    assert_eq!(moved["data"]["alias"], "champion");
    assert_eq!(moved["data"]["from_artifact_id"], serde_json::Value::Null);
    assert_eq!(moved["data"]["to_artifact_id"], art);
    assert_eq!(moved["data"]["reason"], "best");
    // Sequences follow the commits.
    assert!(by_topic["run.registered"].1.seq < by_topic["run.completed"].1.seq);
    assert!(by_topic["run.completed"].1.seq < by_topic["alias.moved"].1.seq);
    // Nothing is left to send.
    assert_eq!(bus.relay().run_once().await.unwrap().published, 0);
    bus.close().await;
}

async fn rolled_back_changes_leave_no_event(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let p = &bus.platform;
    let ds = dataset(p).await;
    let run_id = register(p, &ds, "rb-1", "rollback").await;
    let before = p.outbox().events().await.unwrap().len();

    // A completion inside a transaction that rolls back.
    let txn = engines.relational.begin().await.unwrap();
    registry::complete_run(&txn, "rb-1", completed(0.5))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    // An alias move likewise.
    let art = artifact(&engines, run_id).await;
    let alias = aliases::AliasRef::new("rollback", "prod").unwrap();
    let txn = engines.relational.begin().await.unwrap();
    aliases::move_alias(&txn, &alias, art, "ana", None)
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(p.outbox().events().await.unwrap().len(), before);
    assert_eq!(
        p.registry().run("rb-1").await.unwrap().run.status,
        RunStatus::Running
    );

    // A failing write: a run that cannot end twice, an unknown run.
    p.registry()
        .complete_run("rb-1", completed(0.5))
        .await
        .unwrap();
    let again = p.registry().complete_run("rb-1", completed(0.6)).await;
    assert_eq!(again.unwrap_err().kind(), ErrorKind::Conflict);
    let unknown = p.registry().complete_run("nope-1", completed(0.6)).await;
    assert_eq!(unknown.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(p.outbox().events().await.unwrap().len(), before + 1);

    // A registration that fails at its last step is undone, and never
    // announced.
    let failing = p.sagas().with_faults(Arc::new(|point: FaultPoint| {
        if point.step == "registration_counter" && point.phase == Phase::Apply {
            Err(Error::invalid("injected"))
        } else {
            Ok(())
        }
    }));
    let outcome = failing
        .register_run(
            RegisterRun {
                dataset_name: ds.clone(),
                model_id: "rb-2".into(),
                model_name: "rollback".into(),
                framework: "xgboost".into(),
                ..Default::default()
            },
            None,
        )
        .await;
    assert!(outcome.is_err(), "{outcome:?}");
    let events = p.outbox().events().await.unwrap();
    assert_eq!(events.len(), before + 1);
    assert!(events.iter().all(|e| e.aggregate != "rb-2"));

    // Exactly the committed ones are published.
    assert_eq!(bus.publish_everything().await, before + 1);
    assert_eq!(bus.drain().await.len(), before + 1);
    bus.close().await;
}

/// `tasks` writers, each with a model of its own, complete `per_task` runs
/// and move the model's alias to each in turn, and try a completion that
/// must fail. Returns the number of committed changes.
async fn concurrent_writes(bus: &Bus, engines: &Engines, tasks: usize, per_task: usize) -> usize {
    let ds = dataset(&bus.platform).await;
    let dataset_id = bus.platform.registry().dataset(&ds).await.unwrap().id;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let platform = bus.platform.clone();
        let engines = engines.clone();
        handles.push(tokio::spawn(async move {
            let model_name = format!("model-{t}");
            let alias = aliases::AliasRef::new(model_name.clone(), "champion").unwrap();
            for i in 0..per_task {
                let model_id = format!("m{t}-{i}");
                let run = registry::create_run(
                    &engines.relational,
                    NewRun {
                        dataset_id,
                        model_id: model_id.clone(),
                        model_name: model_name.clone(),
                        framework: "torch".into(),
                        tags: BTreeMap::new(),
                        started_at: None,
                    },
                )
                .await
                .unwrap();
                let art = artifact(&engines, run.id).await;
                let accuracy = (i as f64 + 1.0) / (per_task as f64 + 1.0);
                platform
                    .registry()
                    .complete_run(&model_id, completed(accuracy))
                    .await
                    .unwrap();
                let twice = platform
                    .registry()
                    .complete_run(&model_id, completed(accuracy))
                    .await;
                assert_eq!(twice.unwrap_err().kind(), ErrorKind::Conflict);
                platform
                    .registry()
                    .move_alias(&alias, art, "bot", None)
                    .await
                    .unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    tasks * per_task * 2
}

async fn concurrent_writers_each_get_exactly_one_published_event(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let changes = concurrent_writes(&bus, &engines, 8, 25).await;
    let events = bus.platform.outbox().events().await.unwrap();
    assert_eq!(events.len(), changes);
    let mut per_change: HashMap<(String, String), usize> = HashMap::new();
    for e in &events {
        *per_change
            .entry((e.topic.clone(), e.aggregate.clone()))
            .or_default() += 1;
    }
    // One completion and one move into each run: no more, no less.
    assert_eq!(per_change.len(), changes);
    assert!(per_change.values().all(|n| *n == 1));

    assert_eq!(bus.publish_everything().await, changes);
    let got = bus.drain().await;
    let mut ids: Vec<String> = got.iter().map(message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), changes);
    assert_eq!(got.len(), changes);
    bus.close().await;
}

async fn concurrent_relays_publish_each_event_once(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let changes = concurrent_writes(&bus, &engines, 4, 40).await;
    let small = OutboxConfig {
        batch: 16,
        ..OutboxConfig::default()
    };
    let mut relays = Vec::new();
    for _ in 0..3 {
        let relay = bus.relay().with_config(small);
        relays.push(tokio::spawn(async move {
            let mut published = 0;
            loop {
                let pass = relay.run_once().await.unwrap();
                assert_eq!(pass.failed, 0);
                if pass.published == 0 {
                    return published;
                }
                published += pass.published;
            }
        }));
    }
    let mut total = 0;
    for relay in relays {
        total += relay.await.unwrap();
    }
    // Whatever a relay saw as empty, the last pass of each found nothing:
    // everything was published, each event by one relay.
    assert_eq!(total, changes);
    assert_eq!(bus.platform.outbox().backlog().await.unwrap(), 0);
    let got = bus.drain().await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for d in &got {
        *counts.entry(message_id(d)).or_default() += 1;
    }
    assert_eq!(counts.len(), changes);
    assert!(counts.values().all(|n| *n == 1), "an event published twice");
    bus.close().await;
}

async fn a_crash_between_commit_and_publish_loses_nothing(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let ds = dataset(&bus.platform).await;
    register(&bus.platform, &ds, "cc-1", "crash").await;
    bus.platform
        .registry()
        .complete_run("cc-1", completed(0.7))
        .await
        .unwrap();
    // The process that committed stops before any relay ran; a new one
    // over the same engines publishes what it left.
    drop(bus.relay());
    let next = Platform::with_engines(engines.clone(), SagasConfig::default())
        .await
        .unwrap();
    assert_eq!(next.outbox().backlog().await.unwrap(), 2);
    let pass = next
        .outbox()
        .relay(bus.broker.clone(), bus.exchange.clone())
        .run_once()
        .await
        .unwrap();
    assert_eq!((pass.published, pass.failed), (2, 0));
    assert_eq!(bus.drain().await.len(), 2);
    bus.close().await;
}

async fn a_crash_between_publish_and_mark_sent_republishes_with_the_same_id(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let ds = dataset(&bus.platform).await;
    register(&bus.platform, &ds, "cp-1", "crash").await;
    bus.platform
        .registry()
        .complete_run("cp-1", completed(0.7))
        .await
        .unwrap();
    // This relay's claims run out at once, as those of a relay that died.
    let dying = bus
        .relay()
        .with_config(OutboxConfig {
            lease: Duration::ZERO,
            ..OutboxConfig::default()
        })
        .with_faults(Arc::new(|point| match point {
            RelayPoint::AfterPublish => Err(Error::invalid("the relay died")),
            RelayPoint::AfterClaim => Ok(()),
        }));
    assert!(dying.run_once().await.is_err());
    let first = bus.drain().await;
    assert_eq!(first.len(), 2);
    assert_eq!(bus.platform.outbox().backlog().await.unwrap(), 2);

    let pass = bus.relay().run_once().await.unwrap();
    assert_eq!((pass.published, pass.failed), (2, 0));
    let second = bus.drain().await;
    let ids = |ds: &[Delivery]| {
        let mut v: Vec<(String, bytes::Bytes)> = ds
            .iter()
            .map(|d| (message_id(d), d.message.body.clone()))
            .collect();
        v.sort();
        v
    };
    // Consumers see the same message twice and dedupe on its id.
    assert_eq!(ids(&first), ids(&second));
    assert_eq!(bus.platform.outbox().backlog().await.unwrap(), 0);
    bus.close().await;
}

async fn a_failed_publication_is_retried_by_a_later_pass(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let ds = dataset(&bus.platform).await;
    register(&bus.platform, &ds, "fp-1", "retry").await;
    // The exchange is missing: the broker refuses the publication.
    let lost = bus
        .platform
        .outbox()
        .relay(bus.broker.clone(), common::unique_name("absent"));
    let pass = lost.run_once().await.unwrap();
    assert_eq!((pass.published, pass.failed), (0, 1));
    assert_eq!(bus.platform.outbox().backlog().await.unwrap(), 1);
    // The claim was released: the next relay does not wait for a lease.
    let pass = bus.relay().run_once().await.unwrap();
    assert_eq!((pass.published, pass.failed), (1, 0));
    assert_eq!(bus.drain().await.len(), 1);
    bus.close().await;
}

async fn the_relay_loop_wakes_on_a_local_commit(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let ds = dataset(&bus.platform).await;
    register(&bus.platform, &ds, "wk-1", "wake").await;
    // Polling alone would take an hour: only the commit can wake it.
    let relay = bus.relay().with_config(OutboxConfig {
        poll_interval: Duration::from_secs(3600),
        ..OutboxConfig::default()
    });
    let mut consumer = bus
        .broker
        .consume(&bus.queue, Default::default())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let task = relay.spawn(shutdown.clone());
    // The backlog at start.
    let first = next_delivery(&mut consumer).await;
    first.ack().await.unwrap();
    assert_eq!(
        parse_event(&first.message.body).unwrap().topic,
        "run.registered"
    );
    // A commit while the relay waits.
    bus.platform
        .registry()
        .complete_run("wk-1", completed(0.8))
        .await
        .unwrap();
    let second = next_delivery(&mut consumer).await;
    second.ack().await.unwrap();
    assert_eq!(
        parse_event(&second.message.body).unwrap().topic,
        "run.completed"
    );
    shutdown.cancel();
    task.await.unwrap();
    drop(consumer);
    bus.close().await;
}

async fn next_delivery(consumer: &mut strata::engines::queue::Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), consumer.next())
        .await
        .expect("an event within 20s")
        .expect("a delivery")
        .unwrap()
}

async fn http_get(platform: &Platform, uri: &str) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let config = strata::config::Config::default();
    let serving = strata::serving::Serving::open(platform, &config.serving)
        .await
        .unwrap();
    let pipelines = strata::pipelines::Pipelines::open(platform, &config.pipelines)
        .await
        .unwrap();
    let scenario =
        strata::analytics::scenario::Scenario::open(platform, &pipelines, &config.analytics)
            .unwrap();
    let router = strata::api::router(platform.clone(), serving, pipelines, scenario, &config.api);
    let request = axum::http::Request::builder()
        .uri(uri)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// The views of every model, `last_seq` aside (a rebuild records the
/// outbox's highest sequence, events their own).
async fn views(platform: &Platform, model_ids: &[String]) -> Vec<ModelView> {
    let mut out = Vec::new();
    for id in model_ids {
        let mut view = platform
            .read_model()
            .get(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no view of {id}"));
        view.last_seq = 0;
        out.push(view);
    }
    out
}

async fn the_read_model_from_events_equals_the_rebuild(engines: Engines) {
    let bus = Bus::open(engines.clone()).await;
    let p = &bus.platform;
    let ds = dataset(p).await;
    let mut model_ids = Vec::new();
    let mut artifacts = Vec::new();
    for i in 0..4 {
        let model_id = format!("rm-{i}");
        let run_id = register(p, &ds, &model_id, "ranker").await;
        artifacts.push(artifact(&engines, run_id).await);
        model_ids.push(model_id);
    }
    for (i, id) in model_ids.iter().enumerate().take(3) {
        let outcome = if i == 2 {
            RunOutcome {
                status: RunStatus::Failed,
                ..completed(0.99)
            }
        } else {
            completed(0.6 + i as f64 / 10.0)
        };
        p.registry().complete_run(id, outcome).await.unwrap();
    }
    let champion = aliases::AliasRef::new("ranker", "champion").unwrap();
    let staging = aliases::AliasRef::new("ranker", "staging.v1").unwrap();
    for art in [artifacts[0], artifacts[1], artifacts[0], artifacts[3]] {
        p.registry()
            .move_alias(&champion, art, "ana", None)
            .await
            .unwrap();
    }
    p.registry()
        .move_alias(&staging, artifacts[1], "ana", None)
        .await
        .unwrap();

    bus.publish_everything().await;
    let events: Vec<OutboxEvent> = bus
        .drain()
        .await
        .iter()
        .map(|d| parse_event(&d.message.body).unwrap())
        .collect();
    assert_eq!(events.len(), 4 + 3 + 5);
    for e in &events {
        p.read_model().apply(e).await.unwrap();
    }
    let from_events = views(p, &model_ids).await;
    // Applying again, in any order, changes nothing.
    for e in events.iter().rev() {
        assert_eq!(p.read_model().apply(e).await.unwrap(), Applied::Skipped);
    }
    assert_eq!(views(p, &model_ids).await, from_events);

    let view = &from_events[0];
    assert_eq!(view.model_name.as_deref(), Some("ranker"));
    assert_eq!(view.run_count, 1);
    assert_eq!(view.best_accuracy, Some(0.6));
    let latest = view.latest_run.as_ref().unwrap();
    assert_eq!(latest.status, "completed");
    assert_eq!(latest.metrics.accuracy, Some(0.6));
    assert!(view.aliases.is_empty(), "champion moved on to rm-3");
    assert_eq!(
        from_events[1].aliases.keys().collect::<Vec<_>>(),
        ["staging.v1"]
    );
    assert_eq!(
        from_events[2].best_accuracy, None,
        "a failed run is not the best"
    );
    assert_eq!(from_events[3].aliases["champion"].artifact_id, artifacts[3]);
    assert_eq!(
        from_events[3].latest_run.as_ref().unwrap().status,
        "running"
    );

    // Recomputed from SQL: the same documents.
    assert_eq!(p.read_model().rebuild().await.unwrap(), 4);
    assert_eq!(views(p, &model_ids).await, from_events);
    // What the rebuild reflects is skipped.
    for e in &events {
        assert_eq!(p.read_model().apply(e).await.unwrap(), Applied::Skipped);
    }

    // From nothing, the events reversed and each twice: the same again.
    p.documents()
        .delete(
            strata::platform::read_model::MODEL_VIEWS,
            bson::doc! {},
            true,
        )
        .await
        .unwrap();
    for e in events.iter().rev().chain(events.iter()) {
        p.read_model().apply(e).await.unwrap();
    }
    assert_eq!(views(p, &model_ids).await, from_events);
    assert_eq!(p.read_model().get("rm-none").await.unwrap(), None);

    // The query side over HTTP.
    let (status, body) = http_get(p, "/v1/models/rm-3/view").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model_id"], "rm-3");
    assert_eq!(body["run_count"], 1);
    assert_eq!(body["aliases"]["champion"]["artifact_id"], artifacts[3]);
    assert_eq!(body["latest_run"]["status"], "running");
    let (status, body) = http_get(p, "/v1/models/rm-none/view").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body.to_string().contains("no view of model `rm-none`"),
        "{body}"
    );
    bus.close().await;
}

run_cases!(
    embedded, setup_embedded();
    committed_changes_each_publish_one_event,
    rolled_back_changes_leave_no_event,
    concurrent_writers_each_get_exactly_one_published_event,
    concurrent_relays_publish_each_event_once,
    a_crash_between_commit_and_publish_loses_nothing,
    a_crash_between_publish_and_mark_sent_republishes_with_the_same_id,
    a_failed_publication_is_retried_by_a_later_pass,
    the_relay_loop_wakes_on_a_local_commit,
    the_read_model_from_events_equals_the_rebuild,
);

run_cases!(
    full, setup_full();
    committed_changes_each_publish_one_event,
    rolled_back_changes_leave_no_event,
    concurrent_writers_each_get_exactly_one_published_event,
    concurrent_relays_publish_each_event_once,
    a_crash_between_commit_and_publish_loses_nothing,
    a_crash_between_publish_and_mark_sent_republishes_with_the_same_id,
    a_failed_publication_is_retried_by_a_later_pass,
    the_relay_loop_wakes_on_a_local_commit,
    the_read_model_from_events_equals_the_rebuild,
);
