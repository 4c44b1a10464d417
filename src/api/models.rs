//! `/v1/models`: a model seen across engines, and its flexible config
//! document.
//!
//! Client JSON reaches the document engine only as values: strata builds
//! every filter and update itself (`platform::configs`), and a config body
//! is stored as a document whose keys, at any depth, may not start with `$`
//! or contain `.` ([`configs::check_config_keys`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use bson::{Bson, Document};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::engines::document::FindOptions;
use crate::error::Error;
use crate::platform::{configs, hybrid};

/// Filters of `GET /v1/models`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ModelQuery {
    /// Only configs of this framework.
    pub framework: Option<String>,
    /// Only configs whose `metrics.accuracy` is at least this.
    pub min_accuracy: Option<f64>,
}

/// New metrics for a config: `{"metrics": {"f1": 0.91}}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsPatch {
    /// Metric names (letters, digits, `_`) and values; others stay.
    pub metrics: BTreeMap<String, f64>,
}

fn to_json(doc: Document) -> serde_json::Value {
    Bson::Document(doc).into_relaxed_extjson()
}

fn no_config(model_id: &str) -> Error {
    Error::not_found(format!("model `{model_id}` has no config")).with_field("model_id")
}

/// Everything strata knows of one model: the training run with its
/// dataset (relational), the config document, and the model's counters
/// (key-value).
#[utoipa::path(get, path = "/v1/models/{model_id}", tag = "models",
    params(("model_id" = String, Path, description = "The model's id")),
    responses(
        (status = 200, description = "The model across engines", body = Object),
        (status = 404, description = "No such model", body = ErrorBody)))]
pub async fn info(
    State(state): State<ApiState>,
    ApiPath(model_id): ApiPath<String>,
) -> Result<Json<hybrid::ModelInfo>, ApiError> {
    Ok(Json(hybrid::model_info(&state.engines, &model_id).await?))
}

/// The model's config document.
#[utoipa::path(get, path = "/v1/models/{model_id}/config", tag = "models",
    params(("model_id" = String, Path, description = "The model's id")),
    responses(
        (status = 200, description = "The config", body = Object),
        (status = 404, description = "No config for this model", body = ErrorBody)))]
pub async fn get_config(
    State(state): State<ApiState>,
    ApiPath(model_id): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = configs::config_of(state.engines.documents.as_ref(), &model_id)
        .await?
        .ok_or_else(|| no_config(&model_id))?;
    Ok(Json(to_json(config)))
}

/// Creates or replaces the model's config. The body is the config as a JSON
/// object; `model_id` comes from the path (a different one in the body is
/// refused), and `model_name` and `framework` are required.
#[utoipa::path(put, path = "/v1/models/{model_id}/config", tag = "models",
    params(("model_id" = String, Path, description = "The model's id")),
    request_body(content = Object, description = "The config document"),
    responses(
        (status = 200, description = "The stored config", body = Object),
        (status = 400, description = "Not an object, a `$` key, or fails the schema", body = ErrorBody)))]
pub async fn put_config(
    State(state): State<ApiState>,
    ApiPath(model_id): ApiPath<String>,
    ApiJson(body): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Plain serde conversion: extended-JSON forms such as `{"$date": ..}`
    // stay ordinary (and, with their `$` key, refused) values.
    let mut config = bson::serialize_to_document(&body)
        .map_err(|e| Error::invalid(format!("config: {e}")).with_field("body"))?;
    match config.get("model_id") {
        None => {
            config.insert("model_id", model_id.as_str());
        }
        Some(Bson::String(id)) if *id == model_id => {}
        Some(_) => {
            return Err(Error::invalid(format!(
                "the body's `model_id` differs from the path's `{model_id}`"
            ))
            .with_field("model_id")
            .into());
        }
    }
    config.remove("_id");
    configs::check_config_keys(&config, "body")?;
    let docs = state.engines.documents.as_ref();
    docs.replace_one(
        configs::MODEL_CONFIGS,
        configs::by_model_id(&model_id),
        config,
        true,
    )
    .await?;
    let stored = configs::config_of(docs, &model_id)
        .await?
        .ok_or_else(|| no_config(&model_id))?;
    Ok(Json(to_json(stored)))
}

/// Adds or overwrites metrics of the model's config with `$set` (others
/// stay).
#[utoipa::path(patch, path = "/v1/models/{model_id}/config", tag = "models",
    params(("model_id" = String, Path, description = "The model's id")),
    request_body = MetricsPatch,
    responses(
        (status = 200, description = "The updated config", body = Object),
        (status = 400, description = "A bad metric name or value", body = ErrorBody),
        (status = 404, description = "No config for this model", body = ErrorBody)))]
pub async fn patch_metrics(
    State(state): State<ApiState>,
    ApiPath(model_id): ApiPath<String>,
    ApiJson(patch): ApiJson<MetricsPatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let docs = state.engines.documents.as_ref();
    configs::set_metrics(docs, &model_id, &patch.metrics).await?;
    let stored = configs::config_of(docs, &model_id)
        .await?
        .ok_or_else(|| no_config(&model_id))?;
    Ok(Json(to_json(stored)))
}

/// Model configs, optionally of one framework and with at least an
/// accuracy: best accuracy first when `min_accuracy` is given, else by
/// `model_id`.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    params(ModelQuery),
    responses(
        (status = 200, description = "Matching configs", body = Vec<Object>),
        (status = 400, description = "A bad filter value", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ModelQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let docs = state.engines.documents.as_ref();
    let found = match (query.min_accuracy, &query.framework) {
        (Some(min), framework) => {
            let mut found = configs::configs_with_min_accuracy(docs, min).await?;
            if let Some(framework) = framework {
                found.retain(|d| d.get_str("framework").ok() == Some(framework.as_str()));
            }
            found
        }
        (None, Some(framework)) => configs::configs_by_framework(docs, framework).await?,
        (None, None) => {
            let by_id = FindOptions::sorted(bson::doc! {"model_id": 1});
            docs.find(configs::MODEL_CONFIGS, Document::new(), by_id)
                .await?
        }
    };
    Ok(Json(found.into_iter().map(to_json).collect()))
}
