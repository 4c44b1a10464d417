//! `/v1/models`: a model seen across engines, and its flexible config
//! document.
//!
//! Client JSON reaches the document engine only as values: strata builds
//! every filter and update itself (`platform::configs`), and a config body
//! is stored as a document whose keys, at any depth, may not start with `$`
//! or contain `.` ([`crate::platform::configs::check_config_keys`]).
//!
//! `GET /v1/models/{model_id}` answers even when the document or the
//! key-value engine cannot: the missing part is `null`, the engine is
//! listed in `unavailable`, `degraded` is true, and the response carries
//! `X-Strata-Degraded: ENGINE,...`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use bson::{Bson, Document};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa::PartialSchema;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

use super::ApiState;
use super::datasets::Dataset;
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::limits::{self, ModelId};
use crate::error::Error;
use crate::platform::configs::CONFIG_KEY_PATTERN;
use crate::platform::records;

/// The header naming the engines a degraded answer lacks.
pub const DEGRADED_HEADER: &str = "x-strata-degraded";

/// The header naming the cache tier that answered: `l1`, `l2`, `loaded` or
/// `stale` (per part when an answer has several).
pub const CACHE_HEADER: &str = "x-strata-cache";

/// Filters of `GET /v1/models`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ModelQuery {
    /// Only configs of this framework.
    #[param(schema_with = limits::framework)]
    pub framework: Option<String>,
    /// Only configs whose `metrics.accuracy` is at least this.
    pub min_accuracy: Option<f64>,
}

/// New metrics for a config: `{"metrics": {"f1": 0.91}}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsPatch {
    /// Metric names (1 to 64 ASCII letters, digits or `_`) and their
    /// values; other metrics stay.
    #[schema(schema_with = limits::metrics)]
    pub metrics: BTreeMap<String, f64>,
}

/// A model's config to store (`PUT`): three fields every config has, then
/// whatever its framework needs. `metrics`, when present, is an object of
/// numbers by metric name; every other key, at any depth, is as
/// [`ConfigObject`] requires. An `_id` is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PutModelConfig(pub serde_json::Map<String, serde_json::Value>);

impl PartialSchema for PutModelConfig {
    fn schema() -> RefOr<Schema> {
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A model's config: `model_name` and `framework`, then whatever its framework \
                 needs. Keys, at any depth, are as `ConfigObject` requires.",
            ))
            .property("model_id", RefOr::Ref(Ref::from_schema_name("ModelId")))
            .property("model_name", limits::model_name())
            .required("model_name")
            .property("framework", limits::framework())
            .required("framework")
            .property("config", RefOr::Ref(Ref::from_schema_name("ConfigObject")))
            .property("metrics", limits::metrics_stored())
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(CONFIG_KEY_PATTERN))
                    .build(),
            ))
            .additional_properties(Some(RefOr::Ref(Ref::from_schema_name("ConfigValue"))));
        object = object.examples([serde_json::json!({
            "model_name": "Fraud Detector CNN",
            "framework": "pytorch",
            "config": {"layers": [64, 32]},
            "metrics": {"accuracy": 0.98},
        })]);
        object.build().into()
    }
}

impl ToSchema for PutModelConfig {}

/// A model's config document: three fields every config has, then
/// whatever its framework needs (layers, a tokenizer, booster
/// parameters, `metrics`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelConfig {
    /// The model's id, shared with its training run. In a `PUT` body it
    /// may be left out (the path's is used) but may not differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    /// The model's name.
    pub model_name: String,
    /// Its framework.
    pub framework: String,
    /// The framework's fields. Keys, at any depth, are not empty, do not
    /// start with `$` and contain no `.`.
    #[serde(flatten)]
    #[schema(value_type = Object, additional_properties)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl ModelConfig {
    fn from_document(doc: Document) -> Result<ModelConfig, ApiError> {
        let value = Bson::Document(doc).into_relaxed_extjson();
        serde_json::from_value(value).map_err(|e| {
            Error::internal(format!("a stored config does not read as a config: {e}")).into()
        })
    }
}

/// The training run of a model.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelRun {
    /// Surrogate key.
    pub id: i64,
    /// The model's id.
    pub model_id: String,
    /// The model's name.
    pub model_name: String,
    /// The framework.
    pub framework: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// Final accuracy.
    pub accuracy: Option<f64>,
    /// Final loss.
    pub loss: Option<f64>,
    /// Training time in seconds.
    pub training_time_seconds: Option<i64>,
    /// When training started (UTC).
    pub started_at: DateTime<Utc>,
    /// When it ended (UTC).
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<records::Run> for ModelRun {
    fn from(run: records::Run) -> ModelRun {
        ModelRun {
            id: run.id,
            model_id: run.model_id,
            model_name: run.model_name,
            framework: run.framework,
            status: run.status.as_str().to_owned(),
            accuracy: run.accuracy,
            loss: run.loss,
            training_time_seconds: run.training_time_seconds,
            started_at: run.started_at,
            completed_at: run.completed_at,
        }
    }
}

/// Everything strata knows of one model, from every engine.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelInfo {
    /// The training run (relational).
    pub run: ModelRun,
    /// The dataset it trained on (relational).
    pub dataset: Dataset,
    /// The config document (documents); `null` when the model has none or
    /// when the document engine is unavailable (see `unavailable`).
    pub config: Option<ModelConfig>,
    /// The model's counters (key-value), by name; `null` when the
    /// key-value engine is unavailable.
    pub counters: Option<BTreeMap<String, i64>>,
    /// Whether a part is missing because its engine could not answer.
    pub degraded: bool,
    /// The engines that could not answer: `documents`, `kv`.
    pub unavailable: Vec<String>,
}

/// Everything strata knows of one model: the training run with its
/// dataset (relational), the config document, and the model's counters
/// (key-value). Degraded rather than failed when the document or the
/// key-value engine cannot answer.
#[utoipa::path(get, path = "/v1/models/{model_id}", tag = "models",
    params(("model_id" = ModelId, Path, description = "The model's id")),
    responses(
        (status = 200, description = "The model across engines; `X-Strata-Degraded` names the engines a degraded answer lacks, `X-Strata-Cache` the tier that answered for the run and the config (`run=l1,config=l2`: `l1`, `l2`, `loaded` or `stale`)", body = ModelInfo),
        (status = 400, description = "Not a model id", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 503, description = "The relational engine is unavailable", body = ErrorBody)))]
pub async fn info(State(state): State<ApiState>, model_id: ModelId) -> Result<Response, ApiError> {
    let info = state.platform.models().info(model_id.as_str()).await?;
    let config = match info.config {
        Some(value) => Some(serde_json::from_value(value).map_err(|e| {
            ApiError::from(Error::internal(format!(
                "a stored config does not read as a config: {e}"
            )))
        })?),
        None => None,
    };
    let unavailable: Vec<String> = info.unavailable.iter().map(|e| (*e).to_owned()).collect();
    let header = unavailable.join(",");
    let body = ModelInfo {
        run: info.run.into(),
        dataset: info.dataset.into(),
        config,
        counters: info.counters,
        degraded: !unavailable.is_empty(),
        unavailable,
    };
    let mut response = Json(body).into_response();
    let served = match info.served_by.config {
        Some(config) => format!("run={},config={config}", info.served_by.run),
        None => format!("run={}", info.served_by.run),
    };
    if let Ok(value) = HeaderValue::from_str(&served) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(CACHE_HEADER), value);
    }
    if !header.is_empty()
        && let Ok(value) = HeaderValue::from_str(&header)
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(DEGRADED_HEADER), value);
    }
    Ok(response)
}

/// A model's run metrics.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ViewMetrics {
    /// Accuracy in `[0, 1]`.
    pub accuracy: Option<f64>,
    /// Loss.
    pub loss: Option<f64>,
    /// Training time in seconds.
    pub training_time_seconds: Option<i64>,
}

/// The run the model's newest event described.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ViewRun {
    /// The run's id.
    pub run_id: i64,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// Its metrics, once ended.
    pub metrics: ViewMetrics,
    /// When it started (UTC).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (UTC).
    pub completed_at: Option<DateTime<Utc>>,
}

/// Where an alias pointing into the model points.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ViewAlias {
    /// The artifact.
    pub artifact_id: i64,
    /// When it was moved there (UTC).
    pub moved_at: Option<DateTime<Utc>>,
}

/// A model as the read model shows it: kept from the outbox's events,
/// eventually consistent with the registry (see `docs/outbox.md`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelView {
    /// The model's id.
    pub model_id: String,
    /// Its name.
    pub model_name: Option<String>,
    /// Distinct runs seen under this model id.
    pub run_count: u64,
    /// Its latest run.
    pub latest_run: Option<ViewRun>,
    /// The best accuracy of its completed runs.
    pub best_accuracy: Option<f64>,
    /// The aliases pointing into it, by alias name.
    pub aliases: BTreeMap<String, ViewAlias>,
    /// The highest event sequence it reflects.
    pub last_seq: i64,
}

impl From<crate::platform::read_model::ModelView> for ModelView {
    fn from(v: crate::platform::read_model::ModelView) -> Self {
        ModelView {
            model_id: v.model_id,
            model_name: v.model_name,
            run_count: v.run_count,
            latest_run: v.latest_run.map(|r| ViewRun {
                run_id: r.run_id,
                status: r.status,
                metrics: ViewMetrics {
                    accuracy: r.metrics.accuracy,
                    loss: r.metrics.loss,
                    training_time_seconds: r.metrics.training_time_seconds,
                },
                started_at: r.started_at,
                completed_at: r.completed_at,
            }),
            best_accuracy: v.best_accuracy,
            aliases: v
                .aliases
                .into_iter()
                .map(|(name, a)| {
                    (
                        name,
                        ViewAlias {
                            artifact_id: a.artifact_id,
                            moved_at: a.moved_at,
                        },
                    )
                })
                .collect(),
            last_seq: v.last_seq,
        }
    }
}

/// The model's read-model view: its run count, latest run, best accuracy
/// and aliases, as the outbox's events (or the last rebuild) left them.
#[utoipa::path(get, path = "/v1/models/{model_id}/view", tag = "models",
    params(("model_id" = ModelId, Path, description = "The model's id")),
    responses(
        (status = 200, description = "The model's view", body = ModelView),
        (status = 400, description = "Not a model id", body = ErrorBody),
        (status = 404, description = "No view of this model yet: no event about it was applied and no rebuild saw it", body = ErrorBody)))]
pub async fn view(
    State(state): State<ApiState>,
    model_id: ModelId,
) -> Result<Json<ModelView>, ApiError> {
    let view = state
        .platform
        .read_model()
        .get(model_id.as_str())
        .await?
        .ok_or_else(|| {
            Error::not_found(format!(
                "no view of model `{}` yet: no event about it was applied and no rebuild saw it",
                model_id.as_str()
            ))
            .with_field("model_id")
        })?;
    Ok(Json(view.into()))
}

/// The model's config document.
#[utoipa::path(get, path = "/v1/models/{model_id}/config", tag = "models",
    params(("model_id" = ModelId, Path, description = "The model's id")),
    responses(
        (status = 200, description = "The config", body = ModelConfig),
        (status = 400, description = "Not a model id", body = ErrorBody),
        (status = 404, description = "No config for this model", body = ErrorBody)))]
pub async fn get_config(
    State(state): State<ApiState>,
    model_id: ModelId,
) -> Result<Json<ModelConfig>, ApiError> {
    let config = state.platform.configs().get(model_id.as_str()).await?;
    Ok(Json(ModelConfig::from_document(config)?))
}

/// Creates or replaces the model's config. `model_id` comes from the path
/// (a different one in the body is a conflict); `model_name` and
/// `framework` are required.
#[utoipa::path(put, path = "/v1/models/{model_id}/config", tag = "models",
    params(("model_id" = ModelId, Path, description = "The model's id")),
    request_body = PutModelConfig,
    responses(
        (status = 200, description = "The stored config", body = ModelConfig),
        (status = 400, description = "Not a model id, a missing field, or a key or value outside the schema", body = ErrorBody),
        (status = 409, description = "The body's `model_id` differs from the path's", body = ErrorBody),
        (status = 413, description = "Body over api.body_limit", body = ErrorBody)))]
pub async fn put_config(
    State(state): State<ApiState>,
    model_id: ModelId,
    ApiJson(body): ApiJson<PutModelConfig>,
) -> Result<Json<ModelConfig>, ApiError> {
    // Value for value: extended-JSON forms such as `{"$date": ..}` stay
    // ordinary (and, with their `$` key, refused) values.
    let config = limits::json_object_to_document(&body.0);
    let stored = state
        .platform
        .configs()
        .put(model_id.as_str(), config)
        .await?;
    Ok(Json(ModelConfig::from_document(stored)?))
}

/// Adds or overwrites metrics of the model's config with `$set` (others
/// stay).
#[utoipa::path(patch, path = "/v1/models/{model_id}/config", tag = "models",
    params(("model_id" = ModelId, Path, description = "The model's id")),
    request_body = MetricsPatch,
    responses(
        (status = 200, description = "The updated config", body = ModelConfig),
        (status = 400, description = "Not a model id, or a bad metric name or value", body = ErrorBody),
        (status = 404, description = "No config for this model", body = ErrorBody)))]
pub async fn patch_metrics(
    State(state): State<ApiState>,
    model_id: ModelId,
    ApiJson(patch): ApiJson<MetricsPatch>,
) -> Result<Json<ModelConfig>, ApiError> {
    let stored = state
        .platform
        .configs()
        .set_metrics(model_id.as_str(), &patch.metrics)
        .await?;
    Ok(Json(ModelConfig::from_document(stored)?))
}

/// Model configs, optionally of one framework and with at least an
/// accuracy: best accuracy first when `min_accuracy` is given, else by
/// `model_id`.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    params(ModelQuery),
    responses(
        (status = 200, description = "Matching configs", body = Vec<ModelConfig>),
        (status = 400, description = "A bad filter value", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ModelQuery>,
) -> Result<Json<Vec<ModelConfig>>, ApiError> {
    let found = state
        .platform
        .configs()
        .list(query.framework.as_deref(), query.min_accuracy)
        .await?;
    Ok(Json(
        found
            .into_iter()
            .map(ModelConfig::from_document)
            .collect::<Result<_, _>>()?,
    ))
}
