//! Model configs in the document engine (`strata::platform::configs`), one
//! case per contract, written once against `Arc<dyn DocumentStore>` and run
//! on the embedded store and, with `STRATA_TEST_FULL=1`, on MongoDB in a
//! fresh database dropped afterwards (also when the case fails).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bson::{Bson, doc};
use strata::ErrorKind;
use strata::engines::document::{DocumentStore, DocumentStoreExt, FindOptions};
use strata::platform::configs::{self, EXPERIMENTS, MODEL_CONFIGS};

use common::documents::{Backend, run_case};

async fn setup_embedded() -> Option<Backend> {
    common::documents::embedded().await
}

async fn setup_mongodb() -> Option<Backend> {
    common::documents::mongodb("configs").await
}

async fn seeded(store: &Arc<dyn DocumentStore>) {
    configs::ensure_collections(store.as_ref()).await.unwrap();
    for config in configs::seed_configs() {
        configs::insert_config(store.as_ref(), config)
            .await
            .unwrap();
    }
}

fn ids(docs: &[bson::Document]) -> Vec<String> {
    docs.iter()
        .map(|d| d.get_str("model_id").unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------- cases

async fn ensure_collections_is_idempotent_and_indexes(store: Arc<dyn DocumentStore>) {
    configs::ensure_collections(store.as_ref()).await.unwrap();
    configs::ensure_collections(store.as_ref()).await.unwrap();
    let names: Vec<_> = store.list_collections().await.unwrap();
    assert!(names.contains(&MODEL_CONFIGS.to_owned()), "{names:?}");
    assert!(names.contains(&EXPERIMENTS.to_owned()), "{names:?}");
    let indexes = store.list_indexes(MODEL_CONFIGS).await.unwrap();
    let model_id = indexes
        .iter()
        .find(|i| i.keys == doc! {"model_id": 1})
        .expect("model_id index");
    assert!(model_id.unique);
    assert!(
        indexes
            .iter()
            .any(|i| i.keys == doc! {"framework": 1} && !i.unique)
    );
    let exp = store.list_indexes(EXPERIMENTS).await.unwrap();
    assert!(
        exp.iter()
            .any(|i| i.keys == doc! {"model_id": 1, "experiment_date": -1}),
        "{exp:?}"
    );
}

async fn validator_rejects_missing_or_mistyped_fields(store: Arc<dyn DocumentStore>) {
    configs::ensure_collections(store.as_ref()).await.unwrap();
    // Straight to the store, past strata's own checks: the validator itself
    // must refuse.
    let missing = store
        .insert_one(MODEL_CONFIGS, doc! {"model_id": "m", "framework": "x"})
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::InvalidInput, "{missing}");
    let mistyped = store
        .insert_one(
            MODEL_CONFIGS,
            doc! {"model_id": 7, "model_name": "n", "framework": "x"},
        )
        .await
        .unwrap_err();
    assert_eq!(mistyped.kind(), ErrorKind::InvalidInput, "{mistyped}");
    let config_not_object = store
        .insert_one(
            MODEL_CONFIGS,
            doc! {"model_id": "m", "model_name": "n", "framework": "x", "config": "flat"},
        )
        .await
        .unwrap_err();
    assert_eq!(config_not_object.kind(), ErrorKind::InvalidInput);
    assert_eq!(store.count(MODEL_CONFIGS, doc! {}).await.unwrap(), 0);

    let err = configs::insert_config(store.as_ref(), doc! {"model_id": "m", "model_name": ""})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("model_name"));
}

async fn duplicate_model_id_is_a_conflict(store: Arc<dyn DocumentStore>) {
    seeded(&store).await;
    let again = configs::seed_configs().remove(0);
    let err = configs::insert_config(store.as_ref(), again)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(store.count(MODEL_CONFIGS, doc! {}).await.unwrap(), 3);
}

async fn three_shapes_live_side_by_side(store: Arc<dyn DocumentStore>) {
    seeded(&store).await;
    let pytorch = configs::config_of(store.as_ref(), "fraud-detector-v1")
        .await
        .unwrap()
        .unwrap();
    let layers = pytorch
        .get_document("config")
        .unwrap()
        .get_document("architecture")
        .unwrap()
        .get_array("layers")
        .unwrap();
    assert_eq!(layers.len(), 4);
    let bert = configs::config_of(store.as_ref(), "sentiment-analyzer-v2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        bert.get_document("config")
            .unwrap()
            .get_document("tokenizer")
            .unwrap()
            .get_i32("max_length")
            .unwrap(),
        512
    );
    assert!(
        bert.get_document("deployment")
            .unwrap()
            .get_bool("onnx_export")
            .unwrap()
    );
    let xgb = configs::config_of(store.as_ref(), "churn-predictor-v3")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        xgb.get_document("config")
            .unwrap()
            .get_str("booster")
            .unwrap(),
        "gbtree"
    );
    assert!(xgb.get_document("feature_engineering").is_ok());
    assert!(pytorch.get("feature_engineering").is_none());
}

async fn by_framework(store: Arc<dyn DocumentStore>) {
    seeded(&store).await;
    let found = configs::configs_by_framework(store.as_ref(), "pytorch")
        .await
        .unwrap();
    assert_eq!(ids(&found), ["fraud-detector-v1"]);
    let none = configs::configs_by_framework(store.as_ref(), "jax")
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn min_accuracy_sorted_descending(store: Arc<dyn DocumentStore>) {
    seeded(&store).await;
    let found = configs::configs_with_min_accuracy(store.as_ref(), 0.9)
        .await
        .unwrap();
    assert_eq!(ids(&found), ["fraud-detector-v1", "sentiment-analyzer-v2"]);
    let all = configs::configs_with_min_accuracy(store.as_ref(), 0.0)
        .await
        .unwrap();
    assert_eq!(
        ids(&all),
        [
            "fraud-detector-v1",
            "sentiment-analyzer-v2",
            "churn-predictor-v3"
        ]
    );
    let err = configs::configs_with_min_accuracy(store.as_ref(), f64::NAN)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

async fn set_metrics_adds_fields_without_migration(store: Arc<dyn DocumentStore>) {
    seeded(&store).await;
    let metrics = BTreeMap::from([
        ("inference_latency_ms".to_owned(), 15.3),
        ("model_size_mb".to_owned(), 245.6),
    ]);
    configs::set_metrics(store.as_ref(), "fraud-detector-v1", &metrics)
        .await
        .unwrap();
    let doc = configs::config_of(store.as_ref(), "fraud-detector-v1")
        .await
        .unwrap()
        .unwrap();
    let m = doc.get_document("metrics").unwrap();
    assert_eq!(m.get_f64("inference_latency_ms").unwrap(), 15.3);
    assert_eq!(m.get_f64("model_size_mb").unwrap(), 245.6);
    assert_eq!(m.get_f64("accuracy").unwrap(), 0.9845, "old metrics stay");
    assert!(matches!(doc.get("updated_at"), Some(Bson::DateTime(_))));

    let missing = configs::set_metrics(store.as_ref(), "nope", &metrics)
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    for bad in ["$where", "a.b", ""] {
        let metrics = BTreeMap::from([(bad.to_owned(), 1.0)]);
        let err = configs::set_metrics(store.as_ref(), "fraud-detector-v1", &metrics)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}

async fn average_accuracy_by_framework(store: Arc<dyn DocumentStore>) {
    seeded(&store).await;
    let mut extra = configs::seed_configs().remove(0);
    extra.insert("model_id", "fraud-detector-v9");
    extra.insert("metrics", doc! {"accuracy": 0.9645});
    configs::insert_config(store.as_ref(), extra).await.unwrap();
    let rows = configs::average_accuracy_by_framework(store.as_ref())
        .await
        .unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| (r.framework.as_str(), r.count))
        .collect();
    assert_eq!(got, [("pytorch", 2), ("huggingface", 1), ("xgboost", 1)]);
    assert!((rows[0].avg_accuracy.unwrap() - 0.9745).abs() < 1e-9);
    assert!((rows[2].avg_accuracy.unwrap() - 0.8456).abs() < 1e-9);
}

async fn operator_text_in_values_stays_a_value(store: Arc<dyn DocumentStore>) {
    seeded(&store).await;
    for hostile in [
        r#"{"$gt": ""}"#,
        r#"{"$where": "sleep(1000)"}"#,
        "$gt",
        r#"{"$ne": null}"#,
    ] {
        let by_fw = configs::configs_by_framework(store.as_ref(), hostile)
            .await
            .unwrap();
        assert!(by_fw.is_empty(), "{hostile} matched {by_fw:?}");
        assert!(
            configs::config_of(store.as_ref(), hostile)
                .await
                .unwrap()
                .is_none()
        );
    }
    // Operator text is no model id: refused before the store is asked.
    let mut refused = configs::seed_configs().remove(2);
    refused.insert("model_id", r#"{"$gt": ""}"#);
    let err = configs::insert_config(store.as_ref(), refused)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), strata::ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("model_id"));
    // Stored as a value, it is found as that value and nothing else.
    let mut odd = configs::seed_configs().remove(2);
    odd.insert("model_id", "odd-model");
    odd.insert("framework", "$where");
    odd.insert("model_name", r#"{"$gt": ""}"#);
    configs::insert_config(store.as_ref(), odd).await.unwrap();
    let found = configs::configs_by_framework(store.as_ref(), "$where")
        .await
        .unwrap();
    assert_eq!(ids(&found), ["odd-model"]);
    let all = store
        .find(MODEL_CONFIGS, doc! {}, FindOptions::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
}

async fn experiments_newest_first_per_model(store: Arc<dyn DocumentStore>) {
    use chrono::{TimeZone, Utc};
    configs::ensure_collections(store.as_ref()).await.unwrap();
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 12, 0, 0).unwrap();
    for (model, d, lr) in [
        ("m1", 3, 0.1),
        ("m1", 5, 0.01),
        ("m2", 9, 0.5),
        ("m1", 4, 0.05),
    ] {
        let metrics = BTreeMap::from([("accuracy".to_owned(), lr * 2.0)]);
        configs::add_experiment(store.as_ref(), model, day(d), doc! {"lr": lr}, &metrics)
            .await
            .unwrap();
    }
    let latest = configs::experiments_of(store.as_ref(), "m1", 2)
        .await
        .unwrap();
    let lrs: Vec<f64> = latest
        .iter()
        .map(|e| e.get_document("params").unwrap().get_f64("lr").unwrap())
        .collect();
    assert_eq!(lrs, [0.01, 0.05]);
    assert_eq!(
        configs::experiments_of(store.as_ref(), "m2", 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let bad = BTreeMap::from([("$bad".to_owned(), 1.0)]);
    let err = configs::add_experiment(store.as_ref(), "m1", day(1), doc! {}, &bad)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!(
            $backend, $setup;
            ensure_collections_is_idempotent_and_indexes,
            validator_rejects_missing_or_mistyped_fields,
            duplicate_model_id_is_a_conflict,
            three_shapes_live_side_by_side,
            by_framework,
            min_accuracy_sorted_descending,
            set_metrics_adds_fields_without_migration,
            average_accuracy_by_framework,
            operator_text_in_values_stays_a_value,
            experiments_newest_first_per_model,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(mongodb, setup_mongodb());

/// Client config keys are checked at every depth, inside arrays too, and
/// the error names the key's path; ordinary keys pass.
#[test]
fn config_keys_are_checked_at_every_depth() {
    let fine = doc! {"training": {"optimizer": "adam", "layers": [{"units": 32}]}, "lr_1e-3": 1};
    configs::check_config_keys(&fine, "config").expect("ordinary keys");
    for (bad, path) in [
        (doc! {"$where": "1"}, "$where"),
        (doc! {"a": {"b": {"$gt": ""}}}, "a.b.$gt"),
        (doc! {"layers": [{"units": 1}, {"x.y": 2}]}, "layers.1.x.y"),
        (doc! {"a": {"": 1}}, "a."),
    ] {
        let err = configs::check_config_keys(&bad, "config").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some("config"));
        assert!(err.to_string().contains(&format!("`{path}`")), "{err}");
    }
}
