//! Online serving (features, predictions, leaderboard) on both profiles:
//! one case list run on the embedded engines and, with
//! `STRATA_TEST_FULL=1`, on PostgreSQL + MongoDB + Redis.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bson::doc;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use strata::ErrorKind;
use strata::cache::Tier;
use strata::config::SagasConfig;
use strata::engines::Engines;
use strata::engines::kv::{
    Command, KvInfo, KvStore, Reply, ScanCursor, ScanOptions, ScanPage, Subscription,
};
use strata::platform::Platform;
use strata::platform::registry::aliases::AliasRef;
use strata::platform::registry::{self, NewArtifact, NewDataset, NewRun, RunOutcome};
use strata::serving::features::{FeatureSpec, FeatureType, FeatureView, Freshness};
use strata::serving::predict::{Input, MissingPolicy, PredictRequest};
use strata::serving::ratelimit::{Group, Limit, RateLimitsConfig};
use strata::serving::{Serving, ServingConfig};

use common::engines::{run_case, setup_embedded, setup_full};

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!($backend, $setup;
            a_rate_limit_allows_its_burst_then_refuses_with_a_wait,
            concurrent_clients_never_get_more_than_the_limit,
            contending_holders_never_run_at_once_and_fences_grow,
            a_dead_holders_lock_is_free_after_its_ttl,
            a_paused_holders_late_write_is_refused_by_its_fence,
            features_come_back_fresh_then_stale_and_a_new_ttl_applies_at_once,
            an_older_event_never_overwrites_a_newer_one,
            a_wrong_type_names_the_feature_and_stores_nothing,
            concurrent_writers_keep_the_latest_event_per_feature,
            a_batch_is_one_round_trip_whatever_its_size,
            a_prediction_is_computed_then_cached_then_invalidated_by_a_feature_write,
            stale_or_missing_features_are_refused_or_imputed_as_asked,
            a_new_scorer_version_never_meets_an_old_prediction,
            an_alias_predicts_with_the_model_it_points_at,
            the_leaderboard_keeps_each_best_score_and_breaks_ties_by_time,
            the_leaderboard_is_rebuilt_from_the_runs,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(full, setup_full("serving"));

/// A dataset and one running run of `model_name` per id.
async fn runs(
    db: &sea_orm::DatabaseConnection,
    model_name: &str,
    model_ids: &[&str],
) -> Vec<strata::platform::entities::training_run::Model> {
    let dataset = registry::create_dataset(
        db,
        NewDataset {
            name: "d".into(),
            description: None,
            total_rows: None,
            total_features: None,
            created_by: None,
        },
    )
    .await
    .unwrap();
    let mut created = Vec::new();
    for model_id in model_ids {
        let run = registry::create_run(
            db,
            NewRun {
                dataset_id: dataset.id,
                model_id: (*model_id).into(),
                model_name: model_name.into(),
                framework: "xgboost".into(),
                tags: BTreeMap::new(),
                started_at: None,
            },
        )
        .await
        .unwrap();
        created.push(run);
    }
    created
}

async fn open(engines: &Engines) -> (Platform, Serving) {
    let platform = Platform::with_engines(engines.clone(), SagasConfig::default())
        .await
        .expect("platform");
    let serving = Serving::open(&platform, &ServingConfig::default())
        .await
        .expect("serving");
    (platform, serving)
}

fn activity(ttl: Duration) -> FeatureView {
    FeatureView {
        name: "user_activity".into(),
        entity: "user".into(),
        features: vec![
            FeatureSpec {
                name: "sessions_7d".into(),
                kind: FeatureType::Int,
            },
            FeatureSpec {
                name: "avg_order_value".into(),
                kind: FeatureType::Float,
            },
            FeatureSpec {
                name: "is_premium".into(),
                kind: FeatureType::Bool,
            },
            FeatureSpec {
                name: "country".into(),
                kind: FeatureType::String,
            },
        ],
        ttl,
        description: None,
    }
}

fn values(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

async fn read_one(
    serving: &Serving,
    view: &str,
    entity: &str,
    max_age: Option<Duration>,
) -> BTreeMap<String, (Option<Value>, Freshness)> {
    let read = serving
        .features()
        .read(&[(view.into(), entity.into())], max_age)
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap();
    read.features
        .into_iter()
        .map(|(k, f)| (k, (f.value, f.status)))
        .collect()
}

async fn features_come_back_fresh_then_stale_and_a_new_ttl_applies_at_once(engines: Engines) {
    let (_, serving) = open(&engines).await;
    serving
        .features()
        .put_view(activity(Duration::from_secs(3600)))
        .await
        .unwrap();
    let two_hours_ago = Utc::now() - TimeDelta::hours(2);
    serving
        .write_features(
            "user_activity",
            "u1",
            &values(&[("sessions_7d", json!(3))]),
            Some(two_hours_ago),
        )
        .await
        .unwrap();
    serving
        .write_features(
            "user_activity",
            "u1",
            &values(&[("avg_order_value", json!(41.5))]),
            None,
        )
        .await
        .unwrap();
    let read = read_one(&serving, "user_activity", "u1", None).await;
    assert_eq!(
        read["sessions_7d"],
        (Some(json!(3)), Freshness::Stale),
        "older than the 1 h TTL"
    );
    assert_eq!(
        read["avg_order_value"],
        (Some(json!(41.5)), Freshness::Fresh)
    );
    assert_eq!(read["is_premium"], (None, Freshness::Missing));
    // A request's max_age makes even a new value stale.
    let strict = read_one(&serving, "user_activity", "u1", Some(Duration::ZERO)).await;
    assert_eq!(strict["avg_order_value"].1, Freshness::Stale);
    // A longer TTL applies at once to what is stored.
    serving
        .features()
        .put_view(activity(Duration::from_secs(3 * 3600)))
        .await
        .unwrap();
    let read = read_one(&serving, "user_activity", "u1", None).await;
    assert_eq!(read["sessions_7d"], (Some(json!(3)), Freshness::Fresh));
}

async fn an_older_event_never_overwrites_a_newer_one(engines: Engines) {
    let (_, serving) = open(&engines).await;
    serving
        .features()
        .put_view(activity(Duration::from_secs(3600)))
        .await
        .unwrap();
    let now = Utc::now();
    let newer = serving
        .write_features(
            "user_activity",
            "u1",
            &values(&[("sessions_7d", json!(9)), ("country", json!("FR"))]),
            Some(now),
        )
        .await
        .unwrap();
    assert_eq!(newer.outcome.written.len(), 2);
    let older = serving
        .write_features(
            "user_activity",
            "u1",
            &values(&[("sessions_7d", json!(1)), ("is_premium", json!(true))]),
            Some(now - TimeDelta::minutes(5)),
        )
        .await
        .unwrap();
    assert_eq!(older.outcome.ignored_older, vec!["sessions_7d".to_string()]);
    assert_eq!(older.outcome.written, vec!["is_premium".to_string()]);
    let read = read_one(&serving, "user_activity", "u1", None).await;
    assert_eq!(read["sessions_7d"].0, Some(json!(9)));
    assert_eq!(read["is_premium"].0, Some(json!(true)));
}

async fn a_wrong_type_names_the_feature_and_stores_nothing(engines: Engines) {
    let (_, serving) = open(&engines).await;
    serving
        .features()
        .put_view(activity(Duration::from_secs(3600)))
        .await
        .unwrap();
    for (bad, value) in [
        ("sessions_7d", json!(1.5)),
        ("is_premium", json!("yes")),
        ("country", json!(3)),
        ("nope", json!(1)),
    ] {
        let err = serving
            .write_features(
                "user_activity",
                "u2",
                &values(&[("avg_order_value", json!(10.0)), (bad, value)]),
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(err.field(), Some(bad), "{err}");
    }
    let read = read_one(&serving, "user_activity", "u2", None).await;
    assert!(
        read.values()
            .all(|(v, s)| v.is_none() && *s == Freshness::Missing),
        "{read:?}"
    );
    let err = serving
        .write_features("nope", "u2", &values(&[("a", json!(1))]), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

async fn concurrent_writers_keep_the_latest_event_per_feature(engines: Engines) {
    let (_, serving) = open(&engines).await;
    serving
        .features()
        .put_view(activity(Duration::from_secs(3600)))
        .await
        .unwrap();
    let base = Utc::now() - TimeDelta::minutes(30);
    let mut tasks = Vec::new();
    for writer in 0..8i64 {
        let serving = serving.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40i64 {
                // Event times interleave across writers and arrive out of
                // order within each.
                let t = (i * 7919 + writer * 104_729) % 320;
                let at = base + TimeDelta::seconds(t);
                serving
                    .write_features(
                        "user_activity",
                        "hot",
                        &values(&[("sessions_7d", json!(t))]),
                        Some(at),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    let mut latest = 0;
    for writer in 0..8i64 {
        for i in 0..40i64 {
            latest = latest.max((i * 7919 + writer * 104_729) % 320);
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let read = read_one(&serving, "user_activity", "hot", None).await;
    assert_eq!(read["sessions_7d"].0, Some(json!(latest)));
}

/// Counts the key-value calls made through it.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn KvStore>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl KvStore for Counting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn target(&self) -> String {
        self.inner.target()
    }
    async fn ping(&self) -> strata::Result<()> {
        self.inner.ping().await
    }
    async fn execute(&self, command: Command) -> strata::Result<Reply> {
        if !matches!(command, Command::Publish { .. }) {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.execute(command).await
    }
    async fn pipeline(&self, commands: Vec<Command>) -> strata::Result<Vec<strata::Result<Reply>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.pipeline(commands).await
    }
    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> strata::Result<ScanPage> {
        self.inner.scan(cursor, options).await
    }
    async fn subscribe(&self, channels: &[String]) -> strata::Result<Subscription> {
        self.inner.subscribe(channels).await
    }
    async fn info(&self) -> strata::Result<KvInfo> {
        self.inner.info().await
    }
}

async fn a_batch_is_one_round_trip_whatever_its_size(engines: Engines) {
    let counting = Arc::new(Counting {
        inner: engines.kv.clone(),
        calls: AtomicUsize::new(0),
    });
    let engines = Engines {
        kv: counting.clone(),
        ..engines
    };
    let (_, serving) = open(&engines).await;
    let mut profile = activity(Duration::from_secs(3600));
    profile.name = "user_profile".into();
    serving
        .features()
        .put_view(activity(Duration::from_secs(3600)))
        .await
        .unwrap();
    serving.features().put_view(profile).await.unwrap();
    for i in 0..100 {
        serving
            .write_features(
                "user_activity",
                &format!("u{i}"),
                &values(&[("sessions_7d", json!(i))]),
                None,
            )
            .await
            .unwrap();
    }
    serving
        .write_features(
            "user_profile",
            "u7",
            &values(&[("country", json!("DE"))]),
            None,
        )
        .await
        .unwrap();
    // Warm the views' cache, then count.
    serving
        .features()
        .read(
            &[
                ("user_activity".into(), "u0".into()),
                ("user_profile".into(), "u0".into()),
            ],
            None,
        )
        .await
        .unwrap();
    for pairs in [
        vec![
            ("user_activity".to_string(), "u7".to_string()),
            ("user_profile".to_string(), "u7".to_string()),
        ],
        (0..100)
            .map(|i| ("user_activity".to_string(), format!("u{i}")))
            .collect(),
    ] {
        let before = counting.calls.load(Ordering::SeqCst);
        let answers = serving.features().read(&pairs, None).await.unwrap();
        assert_eq!(
            counting.calls.load(Ordering::SeqCst) - before,
            1,
            "{} pairs",
            pairs.len()
        );
        assert_eq!(answers.len(), pairs.len());
    }
    let answers = serving
        .features()
        .read(
            &(0..100)
                .map(|i| ("user_activity".to_string(), format!("u{i}")))
                .collect::<Vec<_>>(),
            None,
        )
        .await
        .unwrap();
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.entity, format!("u{i}"));
        assert_eq!(answer.features["sessions_7d"].value, Some(json!(i)));
    }
    // A pair of an unknown view fails alone.
    let mixed = serving
        .features()
        .read(
            &[
                ("user_profile".into(), "u7".into()),
                ("ghost".into(), "u7".into()),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        mixed[0].as_ref().unwrap().features["country"].value,
        Some(json!("DE"))
    );
    assert_eq!(mixed[1].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
}

async fn put_scorer(platform: &Platform, model_id: &str, version: i64, scorer: bson::Document) {
    let mut scorer = scorer;
    scorer.insert("version", version);
    platform
        .configs()
        .put(
            model_id,
            doc! {"model_name": "churn", "framework": "sklearn", "scorer": scorer},
        )
        .await
        .expect("config with a scorer");
}

fn logistic() -> bson::Document {
    doc! {
        "type": "logistic",
        "view": "user_activity",
        "bias": -1.0,
        "weights": {"sessions_7d": 0.5, "is_premium": 1.0},
    }
}

async fn predict(
    serving: &Serving,
    model: &str,
    input: Input,
    on_missing: Option<MissingPolicy>,
) -> strata::Result<strata::serving::predict::Prediction> {
    serving
        .predictions()
        .predict(PredictRequest {
            model: model.into(),
            input,
            on_missing,
            max_age: None,
        })
        .await
}

async fn a_prediction_is_computed_then_cached_then_invalidated_by_a_feature_write(
    engines: Engines,
) {
    let (platform, serving) = open(&engines).await;
    serving
        .features()
        .put_view(activity(Duration::from_secs(3600)))
        .await
        .unwrap();
    put_scorer(&platform, "churn-v1", 1, logistic()).await;
    // An explicit vector: arithmetic, not a constant.
    let given = values(&[("sessions_7d", json!(4)), ("is_premium", json!(true))]);
    let first = predict(&serving, "churn-v1", Input::Features(given.clone()), None)
        .await
        .unwrap();
    let expected = 1.0 / (1.0 + (-(-1.0 + 0.5 * 4.0 + 1.0f64)).exp());
    assert!((first.score - expected).abs() < 1e-12, "{first:?}");
    assert_eq!((first.cached, first.tier), (false, Tier::Loaded));
    let second = predict(&serving, "churn-v1", Input::Features(given), None)
        .await
        .unwrap();
    assert_eq!(
        (second.cached, second.tier, second.score),
        (true, Tier::L1, first.score)
    );
    // By entity.
    serving
        .write_features(
            "user_activity",
            "u1",
            &values(&[("sessions_7d", json!(2)), ("is_premium", json!(false))]),
            None,
        )
        .await
        .unwrap();
    let by_entity = predict(&serving, "churn-v1", Input::Entity("u1".into()), None)
        .await
        .unwrap();
    assert!(!by_entity.cached);
    assert!(
        (by_entity.score - 0.5).abs() < 1e-12,
        "σ(0) = 0.5: {by_entity:?}"
    );
    assert!(
        predict(&serving, "churn-v1", Input::Entity("u1".into()), None)
            .await
            .unwrap()
            .cached
    );
    // Writing the entity's features (even the same values) invalidates.
    let written = serving
        .write_features(
            "user_activity",
            "u1",
            &values(&[("sessions_7d", json!(2))]),
            None,
        )
        .await
        .unwrap();
    assert!(written.invalidated);
    let after = predict(&serving, "churn-v1", Input::Entity("u1".into()), None)
        .await
        .unwrap();
    assert_eq!((after.cached, after.tier), (false, Tier::Loaded));
    // Counted in the model's counters (off the request path).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let counters =
            strata::engines::KvStoreExt::hgetall(engines.kv.as_ref(), "counters:model:churn-v1")
                .await
                .unwrap();
        if counters.get("predictions").map(|v| v.as_ref()) == Some(b"5".as_slice()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "counted: {counters:?}"
        );
        tokio::task::yield_now().await;
    }
}

async fn stale_or_missing_features_are_refused_or_imputed_as_asked(engines: Engines) {
    let (platform, serving) = open(&engines).await;
    serving
        .features()
        .put_view(activity(Duration::from_secs(60)))
        .await
        .unwrap();
    let mut scorer = logistic();
    scorer.insert("impute", doc! {"is_premium": 0.0});
    put_scorer(&platform, "churn-v1", 1, scorer).await;
    serving
        .write_features(
            "user_activity",
            "u9",
            &values(&[("sessions_7d", json!(2))]),
            Some(Utc::now() - TimeDelta::hours(1)),
        )
        .await
        .unwrap();
    let refused = predict(&serving, "churn-v1", Input::Entity("u9".into()), None)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Conflict);
    assert!(
        refused.message().contains("sessions_7d (stale)"),
        "{refused}"
    );
    assert!(
        refused.message().contains("is_premium (missing)"),
        "{refused}"
    );
    let imputed = predict(
        &serving,
        "churn-v1",
        Input::Entity("u9".into()),
        Some(MissingPolicy::Impute),
    )
    .await
    .unwrap();
    assert_eq!(imputed.stale, vec!["sessions_7d".to_string()]);
    assert_eq!(imputed.imputed, vec!["is_premium".to_string()]);
    assert_eq!(imputed.features["is_premium"], 0.0);
    // An explicit vector missing a weighted feature is the caller's error.
    let err = predict(
        &serving,
        "churn-v1",
        Input::Features(values(&[("sessions_7d", json!(1))])),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // No scorer: Conflict naming it; no config: NotFound.
    platform
        .configs()
        .put(
            "plain",
            doc! {"model_name": "plain", "framework": "sklearn"},
        )
        .await
        .unwrap();
    let err = predict(&serving, "plain", Input::Entity("u9".into()), None)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::Conflict, Some("scorer"))
    );
    let err = predict(&serving, "ghost", Input::Entity("u9".into()), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

async fn a_new_scorer_version_never_meets_an_old_prediction(engines: Engines) {
    let (platform, serving) = open(&engines).await;
    serving
        .features()
        .put_view(activity(Duration::from_secs(3600)))
        .await
        .unwrap();
    put_scorer(&platform, "churn-v1", 1, logistic()).await;
    let x = values(&[("sessions_7d", json!(4)), ("is_premium", json!(false))]);
    let v1 = predict(&serving, "churn-v1", Input::Features(x.clone()), None)
        .await
        .unwrap();
    assert!(
        predict(&serving, "churn-v1", Input::Features(x.clone()), None)
            .await
            .unwrap()
            .cached
    );
    let mut changed = logistic();
    changed.insert("bias", 0.0);
    put_scorer(&platform, "churn-v1", 2, changed).await;
    let v2 = predict(&serving, "churn-v1", Input::Features(x), None)
        .await
        .unwrap();
    assert_eq!((v2.version, v2.cached), (2, false));
    assert_ne!(v1.score, v2.score);
}

async fn an_alias_predicts_with_the_model_it_points_at(engines: Engines) {
    let (platform, serving) = open(&engines).await;
    let db = &engines.relational;
    let mut artifacts = Vec::new();
    for run in runs(db, "fraud-detector", &["fraud-a", "fraud-b"]).await {
        artifacts.push(
            registry::create_artifact(
                db,
                NewArtifact {
                    run_id: run.id,
                    uri: format!("s3://m/{}", run.model_id),
                    format: "json".into(),
                    size_bytes: 1,
                    checksum: "c".into(),
                },
            )
            .await
            .unwrap(),
        );
    }
    put_scorer(
        &platform,
        "fraud-a",
        1,
        doc! {"type": "linear", "weights": {"x": 1.0}, "bias": 0.0},
    )
    .await;
    put_scorer(
        &platform,
        "fraud-b",
        1,
        doc! {"type": "linear", "weights": {"x": 2.0}, "bias": 0.0},
    )
    .await;
    let alias: AliasRef = "fraud-detector@champion".parse().unwrap();
    platform
        .registry()
        .move_alias(&alias, artifacts[0].id, "test", None)
        .await
        .unwrap();
    let x = || Input::Features(values(&[("x", json!(3))]));
    let a = predict(&serving, "fraud-detector@champion", x(), None)
        .await
        .unwrap();
    assert_eq!((a.model_id.as_str(), a.score), ("fraud-a", 3.0));
    platform
        .registry()
        .move_alias(&alias, artifacts[1].id, "test", None)
        .await
        .unwrap();
    let b = predict(&serving, "fraud-detector@champion", x(), None)
        .await
        .unwrap();
    assert_eq!((b.model_id.as_str(), b.score), ("fraud-b", 6.0));
    let err = predict(&serving, "fraud-detector@ghost", x(), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

async fn the_leaderboard_keeps_each_best_score_and_breaks_ties_by_time(engines: Engines) {
    let (_, serving) = open(&engines).await;
    let board = serving.leaderboard();
    let t0 = Utc::now() - TimeDelta::hours(1);
    let at = |m: i64| t0 + TimeDelta::minutes(m);
    board.submit("m-a", 0.90, at(1)).await.unwrap();
    board.submit("m-b", 0.95, at(5)).await.unwrap();
    board.submit("m-c", 0.95, at(2)).await.unwrap();
    board.submit("m-d", 0.80, at(3)).await.unwrap();
    // A worse later score keeps the best.
    assert!(!board.submit("m-b", 0.70, at(9)).await.unwrap());
    // Reaching the same score later keeps the earlier time.
    board.submit("m-c", 0.95, at(30)).await.unwrap();
    let top = board.top(3).await.unwrap();
    let order: Vec<(&str, u64)> = top.iter().map(|s| (s.model_id.as_str(), s.rank)).collect();
    assert_eq!(order, vec![("m-c", 1), ("m-b", 2), ("m-a", 3)]);
    let (me, around) = board.around("m-a", 1).await.unwrap();
    assert_eq!(me.rank, 3);
    let names: Vec<&str> = around.iter().map(|s| s.model_id.as_str()).collect();
    assert_eq!(names, vec!["m-b", "m-a", "m-d"]);
    assert_eq!(
        board.around("ghost", 1).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        board.top(0).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

async fn the_leaderboard_is_rebuilt_from_the_runs(engines: Engines) {
    let (_, serving) = open(&engines).await;
    let db = &engines.relational;
    runs(db, "m", &["r1", "r2", "r3"]).await;
    for (model_id, accuracy) in [("r1", 0.7), ("r2", 0.9), ("r3", 0.8)] {
        // Through serving: completing a run ranks it.
        let done = serving
            .complete_run(
                model_id,
                RunOutcome {
                    status: strata::platform::records::RunStatus::Completed,
                    accuracy: Some(accuracy),
                    loss: None,
                    training_time_seconds: None,
                    completed_at: None,
                },
            )
            .await
            .unwrap();
        assert!(done.ranked);
    }
    let ranked: Vec<String> = serving
        .leaderboard()
        .top(10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.model_id)
        .collect();
    assert_eq!(ranked, vec!["r2", "r3", "r1"]);
    // Lost (the embedded key-value engine is memory only): rebuilt.
    strata::engines::KvStoreExt::delete_pattern(engines.kv.as_ref(), "leaderboard:*")
        .await
        .unwrap();
    assert!(serving.ensure_leaderboard().await.unwrap());
    let rebuilt: Vec<String> = serving
        .leaderboard()
        .top(10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.model_id)
        .collect();
    assert_eq!(rebuilt, ranked);
    assert!(!serving.ensure_leaderboard().await.unwrap());
}

async fn open_limited(engines: &Engines, requests: u32, per: Duration) -> Serving {
    let platform = Platform::with_engines(engines.clone(), SagasConfig::default())
        .await
        .expect("platform");
    let config = ServingConfig {
        rate_limits: RateLimitsConfig {
            read: Some(Limit { requests, per }),
            ..Default::default()
        },
        ..Default::default()
    };
    Serving::open(&platform, &config).await.expect("serving")
}

async fn a_rate_limit_allows_its_burst_then_refuses_with_a_wait(engines: Engines) {
    let serving = open_limited(&engines, 5, Duration::from_secs(60)).await;
    let limiter = serving.rate_limiter();
    for i in 0..5u32 {
        let d = limiter
            .check(Group::Read, "client-a")
            .await
            .unwrap()
            .unwrap();
        assert!(d.reply.allowed, "request {i}");
        assert_eq!(d.reply.remaining, 4 - i);
    }
    let refused = limiter
        .check(Group::Read, "client-a")
        .await
        .unwrap()
        .unwrap();
    assert!(!refused.reply.allowed);
    assert!(
        refused.reply.retry_after > Duration::ZERO
            && refused.reply.retry_after <= Duration::from_secs(12),
        "{refused:?}"
    );
    // Another client, and another group, are not affected.
    assert!(
        limiter
            .check(Group::Read, "client-b")
            .await
            .unwrap()
            .unwrap()
            .reply
            .allowed
    );
    assert!(
        limiter
            .check(Group::Write, "client-a")
            .await
            .unwrap()
            .is_none(),
        "write is not limited"
    );
}

async fn concurrent_clients_never_get_more_than_the_limit(engines: Engines) {
    let serving = open_limited(&engines, 50, Duration::from_secs(3600)).await;
    let allowed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (limiter, allowed) = (serving.rate_limiter().clone(), Arc::clone(&allowed));
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                if limiter
                    .check(Group::Read, "shared")
                    .await
                    .unwrap()
                    .unwrap()
                    .reply
                    .allowed
                {
                    allowed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(allowed.load(Ordering::SeqCst), 50);
}

async fn contending_holders_never_run_at_once_and_fences_grow(engines: Engines) {
    let (_, serving) = open(&engines).await;
    let inside = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (locks, inside, fences) = (
            serving.locks().clone(),
            Arc::clone(&inside),
            Arc::clone(&fences),
        );
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 15 {
                let Some(lease) = locks.acquire("job", Duration::from_secs(30)).await.unwrap()
                else {
                    tokio::task::yield_now().await;
                    continue;
                };
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                fences.lock().unwrap().push(lease.fence);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(locks.release(lease).await.unwrap());
                done += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let fences = fences.lock().unwrap().clone();
    assert_eq!(fences.len(), 120);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences grow in the order the lock was held"
    );
}

/// Takes `name`, waiting for it to come free (its holder's TTL to run
/// out): the event waited on is the lock's release by the store.
async fn acquire_when_free(
    serving: &Serving,
    name: &str,
    ttl: Duration,
) -> strata::serving::locks::Lease {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(lease) = serving.locks().acquire(name, ttl).await.unwrap() {
            return lease;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lock never came free"
        );
        tokio::task::yield_now().await;
    }
}

async fn a_dead_holders_lock_is_free_after_its_ttl(engines: Engines) {
    let (_, serving) = open(&engines).await;
    let dead = serving
        .locks()
        .acquire("job", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    // Its holder "dies": never releases. Meanwhile the lock is taken...
    assert!(
        serving
            .locks()
            .acquire("job", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    // ...and a stranger cannot release or extend it.
    let mut forged = dead.clone();
    forged.token = "not-the-holder".into();
    assert!(!serving.locks().release(forged.clone()).await.unwrap());
    assert!(
        !serving
            .locks()
            .extend(&mut forged, Duration::from_secs(60))
            .await
            .unwrap()
    );
    let next = acquire_when_free(&serving, "job", Duration::from_secs(5)).await;
    assert!(next.fence > dead.fence);
    // The dead holder's release, come late, frees nothing.
    assert!(!serving.locks().release(dead).await.unwrap());
    assert!(
        serving
            .locks()
            .acquire("job", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    assert!(serving.locks().release(next).await.unwrap());
}

async fn a_paused_holders_late_write_is_refused_by_its_fence(engines: Engines) {
    let (platform, serving) = open(&engines).await;
    let db = &engines.relational;
    runs(db, "m", &["fenced"]).await;
    // The job under its lock: tags written with its fence.
    let tags = |v: &str| BTreeMap::from([("owner".to_string(), v.to_string())]);
    let first = serving
        .tag_run_exclusively("fenced", tags("one"), Duration::from_secs(5))
        .await
        .unwrap();
    // A holder takes the lock, then pauses past its TTL...
    let paused = serving
        .locks()
        .acquire("tag:fenced", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    assert!(paused.fence > first);
    // ...another takes it over and writes.
    let successor = acquire_when_free(&serving, "tag:fenced", Duration::from_secs(5)).await;
    platform
        .registry()
        .set_run_tags_fenced("fenced", tags("successor"), successor.fence)
        .await
        .unwrap();
    // The paused one wakes up and writes with its older token: refused.
    let late = platform
        .registry()
        .set_run_tags_fenced("fenced", tags("paused"), paused.fence)
        .await
        .unwrap_err();
    assert_eq!(
        (late.kind(), late.field()),
        (ErrorKind::Conflict, Some("fence")),
        "{late}"
    );
    let run = platform.registry().run("fenced").await.unwrap();
    assert_eq!(run.tags["owner"], "successor");
    // While the lock is held, the job does not run.
    let busy = serving
        .tag_run_exclusively("fenced", tags("x"), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(busy.kind(), ErrorKind::Conflict);
    assert!(serving.locks().release(successor).await.unwrap());
}
