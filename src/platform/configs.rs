//! Model configs and experiments in the document engine.
//!
//! A model's configuration differs by framework (PyTorch layers, a
//! HuggingFace tokenizer, XGBoost booster parameters), so it lives as one
//! document per model in `model_configs`, linked to its training run by
//! `model_id`. Experiments live in `experiments`.
//!
//! What MUST hold:
//!
//! - [`ensure_collections`] is idempotent: `model_configs` gets a
//!   `$jsonSchema` validator (`model_id`, `model_name`, `framework` required
//!   strings; `config`, when present, an object), a unique index on
//!   `model_id` and an index on `framework`; `experiments` an index on
//!   `(model_id 1, experiment_date -1)`.
//! - strata builds every filter and update itself from typed arguments. A
//!   client's value is only ever placed as a BSON string or number under a
//!   field strata names (through `$eq` for strings), so a value such as
//!   `{"$gt": ""}` or `{"$where": ...}` is compared as text, never read as an
//!   operator. Metric names are checked: no `$`, no `.`, not empty, since
//!   they become field names.
//! - Every `model_id` written or updated here is a model id
//!   ([`MODEL_ID_PATTERN`](crate::platform::names::MODEL_ID_PATTERN)),
//!   `model_name` and `framework` are names of at most 255 and 50
//!   characters, and no key of a client's document holds a control
//!   character or nests deeper than [`MAX_CONFIG_DEPTH`] levels, so the
//!   embedded engine and MongoDB (whose limit is 100 levels) accept the
//!   same documents.

use std::collections::BTreeMap;

use bson::{Bson, Document, doc};
use serde::Serialize;

use crate::cache::Lookup;
use crate::engines::document::{
    CollectionOptions, DocumentStore, DocumentStoreExt, FindOptions, IndexSpec,
};
use crate::error::{Error, Result};
use crate::platform::names::{METRIC_NAME_PATTERN, check_model_id, check_name};
use crate::platform::registry::{FRAMEWORK_MAX, MODEL_NAME_MAX};
use crate::platform::rows::{CachedDocument, RowCaches};

pub use crate::platform::names::is_valid_metric_name;

/// The collection of model config documents.
pub const MODEL_CONFIGS: &str = "model_configs";
/// The collection of experiment documents.
pub const EXPERIMENTS: &str = "experiments";

/// The validator of `model_configs`.
pub fn model_config_validator() -> Document {
    doc! {
        "$jsonSchema": {
            "bsonType": "object",
            "required": ["model_id", "model_name", "framework"],
            "properties": {
                "model_id": {"bsonType": "string"},
                "model_name": {"bsonType": "string"},
                "framework": {"bsonType": "string"},
                "config": {"bsonType": "object"},
            }
        }
    }
}

/// Creates `model_configs` (validator, indexes) and `experiments` (index),
/// or brings existing ones to that state. Safe to call at every start.
pub async fn ensure_collections(docs: &dyn DocumentStore) -> Result<()> {
    docs.create_collection(
        MODEL_CONFIGS,
        CollectionOptions {
            validator: Some(model_config_validator()),
        },
    )
    .await?;
    docs.create_index(MODEL_CONFIGS, IndexSpec::new(doc! {"model_id": 1}).unique())
        .await?;
    docs.create_index(MODEL_CONFIGS, IndexSpec::new(doc! {"framework": 1}))
        .await?;
    docs.create_collection(EXPERIMENTS, CollectionOptions::default())
        .await?;
    docs.create_index(
        EXPERIMENTS,
        IndexSpec::new(doc! {"model_id": 1, "experiment_date": -1}),
    )
    .await?;
    Ok(())
}

/// The filter selecting the config of `model_id`: `$eq` keeps the value a
/// value whatever text it holds.
pub fn by_model_id(model_id: &str) -> Document {
    doc! {"model_id": {"$eq": model_id}}
}

/// How deep objects and arrays may nest in a client's config document,
/// counting the document itself as level 1.
pub const MAX_CONFIG_DEPTH: usize = 64;

/// The pattern every key of a client's config matches (see
/// [`check_config_keys`]).
pub const CONFIG_KEY_PATTERN: &str = r"^[^$.\x00-\x1f\x7f-\x9f][^.\x00-\x1f\x7f-\x9f]*$";

/// Whether `key` can be a key of a client's config ([`CONFIG_KEY_PATTERN`]).
pub fn is_valid_config_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('$')
        && !key.contains('.')
        && !key.contains(char::is_control)
}

/// Checks every key of a client's config, at any depth: not empty, not
/// starting with `$` (it would read as an operator), without `.` (strata
/// addresses nested fields by dotted paths, so such a key could never be
/// reached) and without control characters (BSON cannot hold U+0000 in a
/// key); and that nothing nests deeper than [`MAX_CONFIG_DEPTH`]. The error
/// names the offending key's path under `field`.
pub fn check_config_keys(config: &Document, field: &str) -> Result<()> {
    fn document(doc: &Document, path: &str, field: &str, depth: usize) -> Result<()> {
        deep(path, field, depth)?;
        for (key, value) in doc {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if !is_valid_config_key(key) {
                return Err(Error::invalid(format!(
                    "config key `{}` must not be empty, start with `$` or contain `.` or control characters",
                    here.escape_debug()
                ))
                .with_field(field));
            }
            nested(value, &here, field, depth)?;
        }
        Ok(())
    }
    fn nested(value: &Bson, path: &str, field: &str, depth: usize) -> Result<()> {
        match value {
            Bson::Document(doc) => document(doc, path, field, depth + 1),
            Bson::Array(items) => {
                deep(path, field, depth + 1)?;
                items.iter().enumerate().try_for_each(|(i, item)| {
                    nested(item, &format!("{path}.{i}"), field, depth + 1)
                })
            }
            _ => Ok(()),
        }
    }
    fn deep(path: &str, field: &str, depth: usize) -> Result<()> {
        if depth > MAX_CONFIG_DEPTH {
            return Err(Error::invalid(format!(
                "config nests deeper than {MAX_CONFIG_DEPTH} levels at `{}`",
                path.escape_debug()
            ))
            .with_field(field));
        }
        Ok(())
    }
    document(config, "", field, 1)
}

/// Checks what every config holds: `model_id` a model id, `model_name`
/// and `framework` names; `config`, when present, an object; `metrics`,
/// when present, an object of finite numbers under metric names.
fn check_config_fields(config: &Document) -> Result<()> {
    match config.get("model_id") {
        Some(Bson::String(id)) => check_model_id("model_id", id)?,
        _ => return Err(needs_string("model_id")),
    }
    for (field, max) in [("model_name", MODEL_NAME_MAX), ("framework", FRAMEWORK_MAX)] {
        match config.get(field) {
            Some(Bson::String(value)) => check_name(field, value, max)?,
            _ => return Err(needs_string(field)),
        }
    }
    match config.get("config") {
        None | Some(Bson::Document(_)) => {}
        Some(_) => {
            return Err(Error::invalid("`config` must be an object").with_field("config"));
        }
    }
    match config.get("metrics") {
        None => {}
        Some(Bson::Document(metrics)) => {
            for (name, value) in metrics {
                let finite = match value {
                    Bson::Double(d) => d.is_finite(),
                    Bson::Int32(_) | Bson::Int64(_) => true,
                    _ => false,
                };
                if !is_valid_metric_name(name) || !finite {
                    return Err(bad_metric(name));
                }
            }
        }
        Some(_) => {
            return Err(
                Error::invalid("`metrics` must be an object of numbers by name")
                    .with_field("metrics"),
            );
        }
    }
    Ok(())
}

fn needs_string(field: &'static str) -> Error {
    Error::invalid(format!("a model config needs `{field}` as a string")).with_field(field)
}

fn bad_metric(name: &str) -> Error {
    Error::invalid(format!(
        "metric `{}` needs a name matching {METRIC_NAME_PATTERN} (1 to 64 ASCII letters, digits or `_`) and a finite number",
        name.escape_debug()
    ))
    .with_field("metrics")
}

/// Stores a new config document. It must carry `model_id`, `model_name` and
/// `framework` as strings (the validator says so too) and keys as
/// [`check_config_keys`] requires; a taken `model_id` is a conflict.
pub async fn insert_config(docs: &dyn DocumentStore, config: Document) -> Result<()> {
    check_config_keys(&config, "config")?;
    check_config_fields(&config)?;
    docs.insert_one(MODEL_CONFIGS, config).await?;
    Ok(())
}

/// The config of `model_id`, if any.
pub async fn config_of(docs: &dyn DocumentStore, model_id: &str) -> Result<Option<Document>> {
    docs.find_one(MODEL_CONFIGS, by_model_id(model_id), FindOptions::default())
        .await
}

/// Configs of one framework, by `model_id`.
pub async fn configs_by_framework(
    docs: &dyn DocumentStore,
    framework: &str,
) -> Result<Vec<Document>> {
    docs.find(
        MODEL_CONFIGS,
        doc! {"framework": {"$eq": framework}},
        FindOptions::sorted(doc! {"model_id": 1}),
    )
    .await
}

/// Configs whose `metrics.accuracy` is at least `min`, best first (ties by
/// `model_id`). A non-finite `min` is invalid input.
pub async fn configs_with_min_accuracy(
    docs: &dyn DocumentStore,
    min: f64,
) -> Result<Vec<Document>> {
    if !min.is_finite() {
        return Err(
            Error::invalid("`min_accuracy` must be a finite number").with_field("min_accuracy")
        );
    }
    docs.find(
        MODEL_CONFIGS,
        doc! {"metrics.accuracy": {"$gte": min}},
        FindOptions::sorted(doc! {"metrics.accuracy": -1, "model_id": 1}),
    )
    .await
}

/// Adds or overwrites metrics of `model_id` with `$set` on `metrics.NAME`
/// (other metrics stay; no schema change needed) and stamps `updated_at`.
/// NotFound when there is no such config.
pub async fn set_metrics(
    docs: &dyn DocumentStore,
    model_id: &str,
    metrics: &BTreeMap<String, f64>,
) -> Result<()> {
    check_model_id("model_id", model_id)?;
    if metrics.is_empty() {
        return Err(Error::invalid("no metrics to set").with_field("metrics"));
    }
    let mut set = Document::new();
    for (name, value) in metrics {
        if !is_valid_metric_name(name) || !value.is_finite() {
            return Err(bad_metric(name));
        }
        set.insert(format!("metrics.{name}"), *value);
    }
    set.insert("updated_at", bson::DateTime::now());
    let result = docs
        .update_one(
            MODEL_CONFIGS,
            by_model_id(model_id),
            doc! {"$set": set},
            false,
        )
        .await?;
    if result.matched == 0 {
        return Err(
            Error::not_found(format!("no model config with model_id `{model_id}`"))
                .with_field("model_id"),
        );
    }
    Ok(())
}

/// Records an experiment of `model_id` in [`EXPERIMENTS`]: its date, its
/// parameters (stored as given, as a value) and metrics (names checked as
/// for [`set_metrics`]). Returns the experiment's `_id`.
pub async fn add_experiment(
    docs: &dyn DocumentStore,
    model_id: &str,
    experiment_date: chrono::DateTime<chrono::Utc>,
    params: Document,
    metrics: &BTreeMap<String, f64>,
) -> Result<Bson> {
    check_model_id("model_id", model_id)?;
    check_config_keys(&params, "params")?;
    let mut m = Document::new();
    for (name, value) in metrics {
        if !is_valid_metric_name(name) || !value.is_finite() {
            return Err(bad_metric(name));
        }
        m.insert(name.clone(), *value);
    }
    docs.insert_one(
        EXPERIMENTS,
        doc! {
            "model_id": model_id,
            "experiment_date": bson::DateTime::from_millis(experiment_date.timestamp_millis()),
            "params": params,
            "metrics": m,
        },
    )
    .await
}

/// The latest `limit` experiments of `model_id`, newest first: the order
/// of the `(model_id 1, experiment_date -1)` index.
pub async fn experiments_of(
    docs: &dyn DocumentStore,
    model_id: &str,
    limit: u64,
) -> Result<Vec<Document>> {
    docs.find(
        EXPERIMENTS,
        by_model_id(model_id),
        FindOptions::sorted(doc! {"experiment_date": -1, "_id": 1}).limit(limit),
    )
    .await
}

/// One row of [`average_accuracy_by_framework`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameworkAccuracy {
    /// The framework.
    pub framework: String,
    /// Mean of `metrics.accuracy` over its configs that have one.
    pub avg_accuracy: Option<f64>,
    /// Number of configs of the framework.
    pub count: i64,
}

/// Average accuracy per framework, best first (ties by name), with an
/// aggregation pipeline (`$group` + `$sort`).
pub async fn average_accuracy_by_framework(
    docs: &dyn DocumentStore,
) -> Result<Vec<FrameworkAccuracy>> {
    let pipeline = vec![
        doc! {"$group": {
            "_id": "$framework",
            "avg_accuracy": {"$avg": "$metrics.accuracy"},
            "count": {"$sum": 1},
        }},
        doc! {"$sort": {"avg_accuracy": -1, "_id": 1}},
    ];
    let rows = docs.aggregate(MODEL_CONFIGS, pipeline).await?;
    rows.into_iter()
        .map(|row| {
            let framework = match row.get("_id") {
                Some(Bson::String(s)) => s.clone(),
                other => {
                    return Err(Error::internal(format!(
                        "framework group key is not a string: {other:?}"
                    )));
                }
            };
            let avg_accuracy = match row.get("avg_accuracy") {
                Some(Bson::Double(d)) => Some(*d),
                Some(Bson::Int32(i)) => Some(f64::from(*i)),
                Some(Bson::Int64(i)) => Some(*i as f64),
                _ => None,
            };
            let count = match row.get("count") {
                Some(Bson::Int32(i)) => i64::from(*i),
                Some(Bson::Int64(i)) => *i,
                Some(Bson::Double(d)) => *d as i64,
                _ => 0,
            };
            Ok(FrameworkAccuracy {
                framework,
                avg_accuracy,
                count,
            })
        })
        .collect()
}

/// The seed scenario's three configs, each shaped by its framework: a
/// PyTorch CNN (layers, training, preprocessing), a HuggingFace BERT
/// classifier (tokenizer, fine-tuning, deployment) and an XGBoost model
/// (booster parameters, feature engineering).
pub fn seed_configs() -> Vec<Document> {
    let now = bson::DateTime::now();
    vec![
        doc! {
            "model_id": "fraud-detector-v1",
            "model_name": "Fraud Detector CNN",
            "framework": "pytorch",
            "created_at": now,
            "config": {
                "architecture": {"layers": [
                    {"type": "conv2d", "filters": 32, "kernel_size": 3},
                    {"type": "maxpool", "pool_size": 2},
                    {"type": "dense", "units": 128, "activation": "relu"},
                    {"type": "dense", "units": 1, "activation": "sigmoid"},
                ]},
                "training": {"optimizer": "adam", "learning_rate": 0.001, "batch_size": 32, "epochs": 50},
                "data_preprocessing": {"normalization": "minmax", "augmentation": ["rotation", "flip"]},
            },
            "metrics": {"accuracy": 0.9845, "precision": 0.9712, "recall": 0.9834},
        },
        doc! {
            "model_id": "sentiment-analyzer-v2",
            "model_name": "BERT Sentiment Classifier",
            "framework": "huggingface",
            "created_at": now,
            "config": {
                "base_model": "bert-base-uncased",
                "tokenizer": {"max_length": 512, "padding": "max_length", "truncation": true},
                "fine_tuning": {"learning_rate": 2e-5, "warmup_steps": 500, "weight_decay": 0.01, "num_train_epochs": 3},
                "task": "text-classification",
                "num_labels": 3,
            },
            "metrics": {"accuracy": 0.9234, "f1_macro": 0.9187},
            "deployment": {"quantization": "int8", "onnx_export": true, "serving_framework": "triton"},
        },
        doc! {
            "model_id": "churn-predictor-v3",
            "model_name": "Customer Churn XGBoost",
            "framework": "xgboost",
            "created_at": now,
            "config": {
                "booster": "gbtree",
                "objective": "binary:logistic",
                "eval_metric": "auc",
                "max_depth": 6,
                "learning_rate": 0.3,
                "n_estimators": 100,
                "feature_importance_type": "gain",
            },
            "feature_engineering": {
                "categorical_encoding": "target_encoding",
                "missing_value_strategy": "median_imputation",
                "feature_selection": {"method": "recursive_feature_elimination", "n_features": 50},
            },
            "metrics": {"auc_roc": 0.8934, "accuracy": 0.8456, "precision": 0.8234, "recall": 0.8678},
        },
    ]
}

/// Model configs and experiments as a service over the document engine, as
/// the API and the command line use them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ModelConfigs {
    docs: std::sync::Arc<dyn DocumentStore>,
    /// Configs by model id, cached.
    rows: RowCaches,
}

impl ModelConfigs {
    pub(crate) fn new(docs: std::sync::Arc<dyn DocumentStore>, rows: RowCaches) -> ModelConfigs {
        ModelConfigs { docs, rows }
    }

    /// The config of `model_id` (without its `_id`), or NotFound.
    pub async fn get(&self, model_id: &str) -> Result<Document> {
        self.get_cached(model_id)
            .await?
            .value
            .map(|d| std::sync::Arc::unwrap_or_clone(d.0))
            .ok_or_else(|| no_config(model_id))
    }

    /// The config of `model_id` (without its `_id`) through the `configs`
    /// cache: `None` when it has none.
    pub async fn get_cached(&self, model_id: &str) -> Result<Lookup<CachedDocument>> {
        let docs = std::sync::Arc::clone(&self.docs);
        let id = model_id.to_owned();
        self.rows
            .config(model_id, move || async move {
                Ok(config_of(docs.as_ref(), &id).await?.map(|mut d| {
                    d.remove("_id");
                    CachedDocument(std::sync::Arc::new(d))
                }))
            })
            .await
    }

    /// Creates or replaces the config of `model_id` and returns it as
    /// stored. `model_id` must be a model id, and the one in `config`
    /// absent or equal to it (another is a conflict: the document would
    /// not be the config of `model_id`); `model_name` and `framework` are
    /// required names, `config` and `metrics` objects when present, and
    /// keys as [`check_config_keys`] requires.
    pub async fn put(&self, model_id: &str, mut config: Document) -> Result<Document> {
        check_model_id("model_id", model_id)?;
        match config.get("model_id") {
            None => {
                config.insert("model_id", model_id);
            }
            Some(Bson::String(id)) if id == model_id => {}
            Some(Bson::String(id)) => {
                check_model_id("model_id", id)?;
                return Err(Error::conflict(format!(
                    "the body's `model_id` `{id}` differs from the path's `{model_id}`"
                ))
                .with_field("model_id"));
            }
            Some(_) => return Err(needs_string("model_id")),
        }
        config.remove("_id");
        check_config_keys(&config, "body")?;
        check_config_fields(&config)?;
        self.docs
            .replace_one(MODEL_CONFIGS, by_model_id(model_id), config, true)
            .await?;
        self.rows.model_changed(model_id).await;
        self.get(model_id).await
    }

    /// Adds or overwrites metrics of `model_id` ([`set_metrics`]) and
    /// returns the config as stored.
    pub async fn set_metrics(
        &self,
        model_id: &str,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<Document> {
        set_metrics(self.docs.as_ref(), model_id, metrics).await?;
        self.rows.model_changed(model_id).await;
        self.get(model_id).await
    }

    /// Configs, optionally of one framework and with at least an accuracy:
    /// best accuracy first when `min_accuracy` is given, else by
    /// `model_id`.
    pub async fn list(
        &self,
        framework: Option<&str>,
        min_accuracy: Option<f64>,
    ) -> Result<Vec<Document>> {
        if let Some(framework) = framework {
            check_name("framework", framework, FRAMEWORK_MAX)?;
        }
        let docs = self.docs.as_ref();
        let mut found = match (min_accuracy, framework) {
            (Some(min), framework) => {
                let mut found = configs_with_min_accuracy(docs, min).await?;
                if let Some(framework) = framework {
                    found.retain(|d| d.get_str("framework").ok() == Some(framework));
                }
                found
            }
            (None, Some(framework)) => configs_by_framework(docs, framework).await?,
            (None, None) => {
                docs.find(
                    MODEL_CONFIGS,
                    Document::new(),
                    FindOptions::sorted(doc! {"model_id": 1}),
                )
                .await?
            }
        };
        for d in &mut found {
            d.remove("_id");
        }
        Ok(found)
    }

    /// Records an experiment of `model_id` ([`add_experiment`]).
    pub async fn add_experiment(
        &self,
        model_id: &str,
        experiment_date: chrono::DateTime<chrono::Utc>,
        params: Document,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<Bson> {
        add_experiment(
            self.docs.as_ref(),
            model_id,
            experiment_date,
            params,
            metrics,
        )
        .await
    }

    /// The latest `limit` experiments of `model_id`, newest first.
    pub async fn experiments(&self, model_id: &str, limit: u64) -> Result<Vec<Document>> {
        experiments_of(self.docs.as_ref(), model_id, limit).await
    }

    /// Average accuracy per framework, best first.
    pub async fn average_accuracy_by_framework(&self) -> Result<Vec<FrameworkAccuracy>> {
        average_accuracy_by_framework(self.docs.as_ref()).await
    }
}

fn no_config(model_id: &str) -> Error {
    Error::not_found(format!("model `{model_id}` has no config")).with_field("model_id")
}
