//! The scenario's three pipelines end to end, on both profiles: the
//! embedded engines, and with `STRATA_TEST_FULL=1` PostgreSQL + MongoDB +
//! Redis + RabbitMQ. Each case runs a worker with the scenario's handlers
//! under a prefix of its own and deletes its topology afterwards.

mod common;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bson::doc;
use chrono::{TimeZone, Utc};
use futures::FutureExt;
use serde_json::json;
use strata::analytics::alerts;
use strata::analytics::events::{self, NewEvent};
use strata::analytics::onboarding::{self, PROFILES, Signup};
use strata::analytics::scenario::Scenario;
use strata::config::{AnalyticsConfig, SagasConfig};
use strata::engines::Engines;
use strata::engines::document::{DocumentStoreExt, FindOptions};
use strata::pipelines::worker::WorkerStats;
use strata::pipelines::{DeadLetterFilter, Pipelines, PipelinesConfig, Worker};
use strata::platform::Platform;
use strata::platform::customers::NewUser;
use strata::serving::{Serving, ServingConfig};
use tokio_util::sync::CancellationToken;

use common::engines::{run_case, setup_embedded, setup_full_rabbit};

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!($backend, $setup;
            a_signup_onboards_the_user_everywhere_once,
            bad_signup_data_is_a_dead_letter_with_the_reason_and_replays_once_fixed,
            events_are_counted_once_and_kept_raw,
            recommendations_are_provisional_until_the_prediction_task_ran,
            an_error_rate_above_the_threshold_raises_one_alert,
            a_changed_event_retention_recreates_the_ttl_index,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(full, setup_full_rabbit("scenario"));

const PATIENCE: Duration = Duration::from_secs(60);

struct Stack {
    platform: Platform,
    serving: Serving,
    pipelines: Pipelines,
    scenario: Scenario,
    stats: Arc<WorkerStats>,
}

fn get(counter: &std::sync::atomic::AtomicU64) -> u64 {
    WorkerStats::get(counter)
}

/// Runs `case` with a worker of the scenario's handlers, then stops it and
/// deletes the topology, whether the case passed or not.
async fn with_stack<F, Fut>(engines: Engines, analytics: AnalyticsConfig, case: F)
where
    F: FnOnce(Arc<Stack>) -> Fut,
    Fut: Future<Output = ()>,
{
    let platform = Platform::with_engines(engines.clone(), SagasConfig::default())
        .await
        .unwrap();
    let serving = Serving::open(&platform, &ServingConfig::default())
        .await
        .unwrap();
    let config = PipelinesConfig {
        prefix: format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        ..Default::default()
    };
    let pipelines = Pipelines::open(&platform, &config).await.unwrap();
    let scenario = Scenario::open(&platform, &pipelines, &analytics).unwrap();
    let worker = scenario
        .register(&platform, &serving, &pipelines, Worker::new(&pipelines))
        .await
        .unwrap();
    worker.declare().await.unwrap();
    let stats = worker.stats();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let running = tokio::spawn(async move { worker.run(token).await.unwrap() });
    let stack = Arc::new(Stack {
        platform,
        serving,
        pipelines: pipelines.clone(),
        scenario,
        stats,
    });
    let outcome = AssertUnwindSafe(case(Arc::clone(&stack)))
        .catch_unwind()
        .await;
    stop.cancel();
    let _ = tokio::time::timeout(PATIENCE, running).await;
    pipelines.delete(&Scenario::queues(), true).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn signup(id: &str, email: &str, city: &str) -> Signup {
    Signup {
        id: Some(id.into()),
        email: email.into(),
        name: "Ada Lovelace".into(),
        city: city.into(),
        source: Some("ads".into()),
    }
}

async fn a_signup_onboards_the_user_everywhere_once(engines: Engines) {
    with_stack(engines, AnalyticsConfig::default(), |s| async move {
        let id = onboarding::submit(&s.pipelines, signup("ada", "Ada@Example.com", "munich"))
            .await
            .unwrap();
        assert_eq!(id, "ada");
        // The same signup again is skipped as a duplicate.
        onboarding::submit(&s.pipelines, signup("ada", "Ada@Example.com", "munich"))
            .await
            .unwrap();
        // Two deliveries of one message id: the second is skipped, or, when
        // both are handled at once, onboards the same user again to no effect.
        assert!(
            s.stats
                .wait_until(PATIENCE, |w| get(&w.done) + get(&w.duplicates) >= 2)
                .await,
            "onboarded"
        );
        let profile = s
            .platform
            .customers()
            .profile("ada")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(profile.email, "ada@example.com");
        assert_eq!(
            (
                profile.city.city.as_str(),
                profile.city.country_code.as_str()
            ),
            ("Munich", "DE")
        );
        assert_eq!(profile.source, "ads");
        let document = s
            .platform
            .documents()
            .find_one(PROFILES, doc! {"_id": "ada"}, FindOptions::default())
            .await
            .unwrap()
            .expect("a profile document");
        assert_eq!(document.get_str("country_code").unwrap(), "DE");
        let features = s
            .serving
            .features()
            .read(&[(onboarding::VIEW.to_owned(), "ada".to_owned())], None)
            .await
            .unwrap()
            .pop()
            .unwrap()
            .unwrap();
        assert_eq!(features.features["country"].value, Some(json!("DE")));
        assert_eq!(features.features["orders"].value, Some(json!(0)));
        // The profile was cached: the cache answers without a load.
        let cached = s
            .scenario
            .personalization
            .profiles()
            .get_or_load("ada", || async { panic!("the profile should be cached") })
            .await
            .unwrap();
        assert_eq!(cached.value.unwrap().id, "ada");
        assert_eq!(
            s.platform.customers().counts().await.unwrap().0,
            1,
            "one user"
        );
    })
    .await;
}

async fn bad_signup_data_is_a_dead_letter_with_the_reason_and_replays_once_fixed(engines: Engines) {
    with_stack(engines, AnalyticsConfig::default(), |s| async move {
        onboarding::submit(&s.pipelines, signup("bob", "not-an-email", "Munich"))
            .await
            .unwrap();
        onboarding::submit(&s.pipelines, signup("eve", "eve@example.com", "Atlantis"))
            .await
            .unwrap();
        let onboarding = DeadLetterFilter {
            queue: Some("onboarding".into()),
            ..Default::default()
        };
        let letters = s.pipelines.dead_letters();
        assert!(
            s.stats
                .wait_until(PATIENCE, |w| get(&w.recorded) >= 2)
                .await,
            "both dead-lettered"
        );
        let found = letters.list(&onboarding, 10).await.unwrap();
        assert_eq!(found.len(), 2);
        let bob = found.iter().find(|l| l.message_id == "signup-bob").unwrap();
        assert_eq!(bob.error_class, "invalid");
        assert!(
            bob.error.contains("`not-an-email` is not an email address"),
            "{}",
            bob.error
        );
        let eve = found.iter().find(|l| l.message_id == "signup-eve").unwrap();
        assert!(
            eve.error.contains("city `Atlantis` is unknown"),
            "{}",
            eve.error
        );
        assert!(
            s.platform
                .customers()
                .profile("bob")
                .await
                .unwrap()
                .is_none(),
            "nothing stored"
        );
        // Fixed, and replayed with its id and history.
        let mut payload: serde_json::Value = serde_json::from_str(&bob.payload).unwrap();
        payload["email"] = json!("bob@example.com");
        let report = s
            .pipelines
            .replay_corrected(&bob.id, &payload)
            .await
            .unwrap();
        assert_eq!(report.replayed, vec![bob.id.clone()]);
        assert!(s.stats.wait_until(PATIENCE, |w| get(&w.done) >= 1).await);
        let profile = s
            .platform
            .customers()
            .profile("bob")
            .await
            .unwrap()
            .expect("onboarded after the fix");
        assert_eq!(profile.email, "bob@example.com");
        let replayed = letters.get(&bob.id).await.unwrap().unwrap();
        assert_eq!(replayed.replays, 1);
    })
    .await;
}

fn event(id: &str, user: &str, kind: &str, product: &str, amount: Option<f64>) -> NewEvent {
    NewEvent {
        id: Some(id.into()),
        user_id: user.into(),
        kind: kind.into(),
        product_id: Some(product.into()),
        category: Some("books".into()),
        amount,
        at: Some(Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap()),
    }
}

async fn create_user(s: &Stack, id: &str) {
    s.platform
        .customers()
        .create_user(NewUser {
            id: id.into(),
            email: format!("{id}@example.com"),
            name: id.into(),
            city: "Berlin".into(),
            source: "organic".into(),
            signed_up_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        })
        .await
        .unwrap();
}

async fn events_are_counted_once_and_kept_raw(engines: Engines) {
    with_stack(engines, AnalyticsConfig::default(), |s| async move {
        create_user(&s, "cat").await;
        let batch = vec![
            event("e1", "cat", "view", "p1", None),
            event("e2", "cat", "view", "p1", None),
            event("e3", "cat", "view", "p2", None),
            event("e4", "cat", "click", "p1", None),
            event("e5", "cat", "purchase", "p2", Some(20.0)),
            event("e6", "cat", "purchase", "p2", Some(5.0)),
            event("e7", "cat", "purchase", "p1", Some(7.5)),
        ];
        let ids = events::publish(&s.pipelines, batch.clone()).await.unwrap();
        assert!(ids.iter().all(|r| r.is_ok()));
        // The whole batch again: every event is a duplicate.
        events::publish(&s.pipelines, batch).await.unwrap();
        assert!(
            s.stats
                .wait_until(PATIENCE, |w| get(&w.done) + get(&w.duplicates) >= 14)
                .await
        );
        // Each event counts once, however many of its deliveries ran.
        let day = Utc
            .with_ymd_and_hms(2026, 11, 30, 0, 0, 0)
            .unwrap()
            .date_naive();
        let summary = events::summary(s.platform.kv().as_ref(), day, 10)
            .await
            .unwrap();
        assert_eq!(summary.counts["view"], 3);
        assert_eq!(summary.counts["click"], 1);
        assert_eq!(summary.counts["purchase"], 3);
        let top = |list: &[events::ProductCount]| {
            list.iter()
                .map(|t| (t.product.clone(), t.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            top(&summary.top_purchased),
            vec![("p2".to_owned(), 2), ("p1".to_owned(), 1)]
        );
        assert_eq!(
            top(&summary.top_viewed),
            vec![("p1".to_owned(), 2), ("p2".to_owned(), 1)]
        );
        let raw = s
            .platform
            .documents()
            .count(
                strata::analytics::population::EVENTS,
                doc! {"user_id": "cat"},
            )
            .await
            .unwrap();
        assert_eq!(raw, 7);
        let profile = s
            .platform
            .customers()
            .profile("cat")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(profile.orders, 3);
        assert!((profile.revenue - 32.5).abs() < 1e-9);
        let activity = s.scenario.personalization.activity("cat").await.unwrap();
        assert_eq!(
            (activity.views, activity.clicks, activity.purchases),
            (3, 1, 3)
        );
        // Invalid events are refused whole, naming the event and field.
        let mut bad = event("e8", "cat", "purchase", "p1", None);
        bad.amount = Some(-1.0);
        let err = events::publish(
            &s.pipelines,
            vec![event("e9", "cat", "view", "p1", None), bad],
        )
        .await
        .unwrap_err();
        assert!(
            err.message().contains("event 1") && err.message().contains("amount"),
            "{err}"
        );
    })
    .await;
}

async fn recommendations_are_provisional_until_the_prediction_task_ran(engines: Engines) {
    with_stack(engines, AnalyticsConfig::default(), |s| async move {
        strata::analytics::population::seed_population(&s.platform, 120, 4000, 7, &|_| {})
            .await
            .unwrap();
        s.scenario.analytics.train().await.unwrap();
        create_user(&s, "dan").await;
        let missing = s
            .scenario
            .personalization
            .recommend("nobody")
            .await
            .unwrap_err();
        assert_eq!(missing.kind(), strata::ErrorKind::NotFound);
        let (first, _) = s.scenario.personalization.recommend("dan").await.unwrap();
        assert!(first.provisional);
        assert_eq!(first.segment, "NEW");
        assert!(!first.items.is_empty(), "the popular items stand in");
        assert!(
            s.stats.wait_until(PATIENCE, |w| get(&w.done) >= 1).await,
            "the prediction task ran"
        );
        let (second, _) = s.scenario.personalization.recommend("dan").await.unwrap();
        assert!(!second.provisional, "{second:?}");
        assert_ne!(second.segment, "NEW");
        assert!(second.churn_probability.is_some() && second.ltv.is_some());
        let (third, tier) = s.scenario.personalization.recommend("dan").await.unwrap();
        assert_eq!(third, second);
        assert_eq!(tier, strata::cache::Tier::L1, "cached once real");
    })
    .await;
}

async fn an_error_rate_above_the_threshold_raises_one_alert(engines: Engines) {
    let config = AnalyticsConfig {
        alert_error_rate: 0.2,
        alert_min_events: 10,
        ..Default::default()
    };
    with_stack(engines, config, |s| async move {
        let mut batch: Vec<NewEvent> = (0..10)
            .map(|i| event(&format!("v{i}"), "u", "view", "p1", None))
            .collect();
        for i in 0..5 {
            let mut e = event(&format!("x{i}"), "u", "error", "p1", None);
            e.product_id = None;
            batch.push(e);
        }
        // Views first, so that the errors find the day's counts in place.
        let (views, errors) = batch.split_at(10);
        events::publish(&s.pipelines, views.to_vec()).await.unwrap();
        assert!(s.stats.wait_until(PATIENCE, |w| get(&w.done) >= 10).await);
        events::publish(&s.pipelines, errors.to_vec())
            .await
            .unwrap();
        // 15 events and the one alert they raise.
        assert!(s.stats.wait_until(PATIENCE, |w| get(&w.done) >= 16).await);
        let raised = alerts::latest(s.platform.documents().as_ref(), 10)
            .await
            .unwrap();
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].kind, "error_rate");
        assert_eq!(raised[0].details["threshold"], json!(0.2));
    })
    .await;
}

async fn a_changed_event_retention_recreates_the_ttl_index(engines: Engines) {
    let documents = engines.documents.clone();
    let ttl_of = |indexes: Vec<strata::engines::document::IndexSpec>| {
        indexes
            .into_iter()
            .find(|i| i.keys == doc! {"at": 1})
            .and_then(|i| i.expire_after)
    };
    let day = Duration::from_secs(86_400);
    events::ensure_indexes(documents.as_ref(), day * 400)
        .await
        .unwrap();
    events::ensure_indexes(documents.as_ref(), day * 400)
        .await
        .unwrap();
    let events = strata::analytics::population::EVENTS;
    assert_eq!(
        ttl_of(documents.list_indexes(events).await.unwrap()),
        Some(day * 400)
    );
    events::ensure_indexes(documents.as_ref(), day * 30)
        .await
        .unwrap();
    assert_eq!(
        ttl_of(documents.list_indexes(events).await.unwrap()),
        Some(day * 30)
    );
}
