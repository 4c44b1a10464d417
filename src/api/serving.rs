//! Online serving over HTTP: feature views and features, predictions, and
//! the leaderboard (over [`crate::serving`]).
//!
//! A feature's type is its view's: a value of another type is 400 naming
//! the feature, and nothing of the write is stored. That is the one place,
//! with the prediction input, where a body valid by the schema can be 400:
//! JSON Schema cannot say which view a path names.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, ErrorDetail};
use super::models::{CACHE_HEADER, DEGRADED_HEADER};
use super::{ApiState, limits};
use crate::error::Error;
use crate::serving::features::{
    self, EntityFeatures, FEATURE_NAME_PATTERN, FeatureSpec, FeatureView, Freshness, MAX_BATCH,
    MAX_FEATURES, MAX_STRING,
};
use crate::serving::leaderboard::{MAX_TOP, Standing};
use crate::serving::predict::{Input, MissingPolicy, PredictRequest};

/// The longest TTL or `max_age`, in seconds (ten years).
pub const MAX_SECONDS: u64 = 10 * 365 * 24 * 3600;

// --- Feature views -----------------------------------------------------

/// A view to declare (the name is the path's).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewBody {
    /// The entity type its features describe, e.g. `user`.
    #[schema(schema_with = feature_name)]
    pub entity: String,
    /// Its features, each with a name and a type (`int`, `float`, `bool`,
    /// `string`).
    #[schema(min_items = 1, max_items = 256)]
    pub features: Vec<FeatureSpec>,
    /// How long a value stays fresh after its event time, in seconds.
    #[serde(deserialize_with = "limits::deserialize_required_integer")]
    #[schema(minimum = 1, maximum = 315_360_000)]
    pub ttl_seconds: u64,
    /// What it is for (at most 1,000 characters).
    #[serde(default)]
    #[schema(schema_with = limits::description)]
    pub description: Option<String>,
}

/// A feature view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct View {
    /// Its name.
    pub name: String,
    /// The entity type.
    pub entity: String,
    /// Its features.
    pub features: Vec<FeatureSpec>,
    /// How long a value stays fresh, in seconds.
    pub ttl_seconds: u64,
    /// What it is for.
    pub description: Option<String>,
}

impl From<FeatureView> for View {
    fn from(v: FeatureView) -> View {
        View {
            name: v.name,
            entity: v.entity,
            features: v.features,
            ttl_seconds: v.ttl.as_secs(),
            description: v.description,
        }
    }
}

/// Every feature view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ViewList {
    /// By name.
    pub views: Vec<View>,
}

fn feature_name() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(FEATURE_NAME_PATTERN))
        .min_length(Some(1))
        .max_length(Some(64))
}

/// The feature views, by name.
#[utoipa::path(get, path = "/v1/feature-views", tag = "features",
    responses((status = 200, description = "Every view", body = ViewList)))]
pub async fn list_views(State(state): State<ApiState>) -> Result<Json<ViewList>, ApiError> {
    let views = state.serving.features().views().await?;
    Ok(Json(ViewList {
        views: views.into_iter().map(View::from).collect(),
    }))
}

/// One feature view.
#[utoipa::path(get, path = "/v1/feature-views/{view}", tag = "features",
    params(("view" = inline(limits::params::ViewName), Path, description = "The view")),
    responses(
        (status = 200, description = "The view", body = View),
        (status = 400, description = "Not a view name", body = ErrorBody),
        (status = 404, description = "No such view", body = ErrorBody)))]
pub async fn get_view(
    State(state): State<ApiState>,
    ApiPath(view): ApiPath<String>,
) -> Result<Json<View>, ApiError> {
    Ok(Json(state.serving.features().view(&view).await?.into()))
}

/// Declares a feature view, or changes it. A changed TTL applies at once to
/// the values already stored, on every instance.
#[utoipa::path(put, path = "/v1/feature-views/{view}", tag = "features",
    params(("view" = inline(limits::params::ViewName), Path, description = "The view")),
    request_body = ViewBody,
    responses(
        (status = 200, description = "Declared", body = View),
        (status = 400, description = "A field outside its schema, or a feature declared twice", body = ErrorBody)))]
pub async fn put_view(
    State(state): State<ApiState>,
    ApiPath(view): ApiPath<String>,
    ApiJson(body): ApiJson<ViewBody>,
) -> Result<Json<View>, ApiError> {
    if !(1..=MAX_SECONDS).contains(&body.ttl_seconds) {
        return Err(Error::invalid(format!("ttl_seconds is 1 to {MAX_SECONDS}"))
            .with_field("ttl_seconds")
            .into());
    }
    let declared = FeatureView {
        name: view,
        entity: body.entity,
        features: body.features,
        ttl: Duration::from_secs(body.ttl_seconds),
        description: body.description,
    };
    Ok(Json(
        state.serving.features().put_view(declared).await?.into(),
    ))
}

// --- Features ------------------------------------------------------------

/// An entity's features to write.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFeatures {
    /// Values by feature name, each of its view's type.
    #[schema(schema_with = feature_values)]
    pub features: BTreeMap<String, Value>,
    /// When the values were observed (RFC 3339); now when absent. A value
    /// older than the one stored for its feature is ignored.
    #[serde(default, deserialize_with = "limits::deserialize_timestamp")]
    #[schema(schema_with = limits::timestamp)]
    pub event_time: Option<DateTime<Utc>>,
}

/// A feature's value as read: a number, a bool, a string, or `null`.
fn feature_value_or_null() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Number,
            Type::Boolean,
            Type::String,
            Type::Null,
        ]))
        .description(Some(
            "The value (number, bool or string); `null` when missing.",
        ))
}

fn feature_values() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(feature_name().build()))
        .additional_properties(Some(RefOr::T(Schema::AnyOf(
            AnyOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Number))
                .item(ObjectBuilder::new().schema_type(Type::Boolean))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .max_length(Some(MAX_STRING)),
                )
                .build(),
        ))))
        .min_properties(Some(1))
        .max_properties(Some(MAX_FEATURES))
        .description(Some(
            "Values by feature name: numbers, bools or strings, as the view declares.",
        ))
        .examples([json!({"sessions_7d": 12, "avg_order_value": 41.5})])
}

/// What a write did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Written {
    /// The view.
    pub view: String,
    /// The entity.
    pub entity: String,
    /// The features written.
    pub written: Vec<String>,
    /// The features not written: a value with a later event time is
    /// stored.
    pub ignored_older: Vec<String>,
    /// Whether the entity's cached predictions were invalidated on every
    /// instance.
    pub predictions_invalidated: bool,
}

/// Writes an entity's features in a view. Every value is checked against
/// the view first; a wrong type is 400 naming the feature and stores
/// nothing. The entity's cached predictions are invalidated everywhere.
#[utoipa::path(put, path = "/v1/features/{view}/{entity}", tag = "features",
    params(
        ("view" = inline(limits::params::ViewName), Path, description = "The view"),
        ("entity" = inline(limits::params::EntityId), Path, description = "The entity")),
    request_body = WriteFeatures,
    responses(
        (status = 200, description = "Written (older values ignored, and listed)", body = Written),
        (status = 400, description = "A feature the view lacks, or a value of another type", body = ErrorBody),
        (status = 404, description = "No such view", body = ErrorBody)))]
pub async fn put_features(
    State(state): State<ApiState>,
    ApiPath((view, entity)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<WriteFeatures>,
) -> Result<Response, ApiError> {
    let done = state
        .serving
        .write_features(&view, &entity, &body.features, body.event_time)
        .await?;
    let mut response = Json(Written {
        view: done.view.name,
        entity,
        written: done.outcome.written,
        ignored_older: done.outcome.ignored_older,
        predictions_invalidated: done.invalidated,
    })
    .into_response();
    if !done.invalidated {
        response.headers_mut().insert(
            HeaderName::from_static(DEGRADED_HEADER),
            HeaderValue::from_static("kv"),
        );
    }
    Ok(response)
}

/// The freshness bound of a read.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Values older than this many seconds are stale too (besides the
    /// view's TTL).
    #[param(minimum = 0, maximum = 315_360_000)]
    pub max_age: Option<f64>,
}

fn max_age(seconds: Option<f64>) -> Result<Option<Duration>, Error> {
    seconds
        .map(|s| {
            if s.is_finite() && (0.0..=MAX_SECONDS as f64).contains(&s) {
                Ok(Duration::from_secs_f64(s))
            } else {
                Err(
                    Error::invalid(format!("max_age is 0 to {MAX_SECONDS} seconds"))
                        .with_field("max_age"),
                )
            }
        })
        .transpose()
}

/// One feature as read.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Feature {
    /// The value; `null` when missing.
    #[schema(schema_with = feature_value_or_null)]
    pub value: Value,
    /// `fresh`, `stale` (older than the view's TTL or `max_age`) or
    /// `missing`.
    pub status: Freshness,
    /// Seconds since its event time; `null` when missing.
    pub age_seconds: Option<f64>,
    /// Its event time.
    pub event_time: Option<DateTime<Utc>>,
}

/// One entity's features in one view.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Features {
    /// The view.
    pub view: String,
    /// The entity.
    pub entity: String,
    /// Each feature of the view, by name.
    pub features: BTreeMap<String, Feature>,
}

impl From<EntityFeatures> for Features {
    fn from(read: EntityFeatures) -> Features {
        Features {
            view: read.view,
            entity: read.entity,
            features: read
                .features
                .into_iter()
                .map(|(name, f)| {
                    (
                        name,
                        Feature {
                            value: f.value.unwrap_or(Value::Null),
                            status: f.status,
                            age_seconds: f.age.map(|a| a.as_secs_f64()),
                            event_time: f.event_time,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// An entity's features in a view, each with its age and whether it is
/// fresh, stale or missing.
#[utoipa::path(get, path = "/v1/features/{view}/{entity}", tag = "features",
    params(
        ("view" = inline(limits::params::ViewName), Path, description = "The view"),
        ("entity" = inline(limits::params::EntityId), Path, description = "The entity"),
        ReadParams),
    responses(
        (status = 200, description = "The features", body = Features),
        (status = 400, description = "Not a view name or entity id", body = ErrorBody),
        (status = 404, description = "No such view", body = ErrorBody)))]
pub async fn get_features(
    State(state): State<ApiState>,
    ApiPath((view, entity)): ApiPath<(String, String)>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Json<Features>, ApiError> {
    let max_age = max_age(params.max_age)?;
    let read = state
        .serving
        .features()
        .read(&[(view, entity)], max_age)
        .await?
        .pop()
        .ok_or_else(|| Error::internal("a feature read answered nothing"))??;
    Ok(Json(read.into()))
}

/// One (view, entity) pair of a batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// The view.
    #[schema(schema_with = feature_name)]
    pub view: String,
    /// The entity.
    #[schema(schema_with = entity_id)]
    pub entity: String,
}

fn entity_id() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(features::ENTITY_ID_PATTERN))
        .min_length(Some(1))
        .max_length(Some(crate::platform::names::MODEL_ID_MAX))
}

/// A batch read: several views of one entity, one view of many entities,
/// or any mix.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRead {
    /// The pairs, answered in order (at most 1,000).
    #[schema(min_items = 1, max_items = 1000)]
    pub items: Vec<BatchItem>,
    /// Values older than this many seconds are stale too.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub max_age: Option<f64>,
}

/// One answer of a batch: the features, or the error of that pair.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// The view.
    pub view: String,
    /// The entity.
    pub entity: String,
    /// Each feature, when the pair could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<BTreeMap<String, Feature>>,
    /// Why it could not be (an unknown view, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// The answers of a batch, in the order asked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchAnswers {
    /// One per item.
    pub results: Vec<BatchAnswer>,
}

/// `value` as a JSON answer, serialized into a buffer of about `size`
/// bytes allocated once (axum's `Json` grows its buffer from 128 bytes,
/// which dominates the cost of large answers).
fn json_sized<T: Serialize>(value: &T, size: usize) -> Result<Response, ApiError> {
    let mut buffer = Vec::with_capacity(size);
    serde_json::to_writer(&mut buffer, value)
        .map_err(|e| Error::internal(format!("an answer does not serialize: {e}")))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        buffer,
    )
        .into_response())
}

/// Reads many (view, entity) pairs in one round trip to the key-value
/// engine; each pair has its own answer or error.
#[utoipa::path(post, path = "/v1/features:batch", tag = "features",
    request_body = BatchRead,
    responses(
        (status = 200, description = "One answer per item", body = BatchAnswers),
        (status = 400, description = "A field outside its schema", body = ErrorBody)))]
pub async fn batch(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<BatchRead>,
) -> Result<Response, ApiError> {
    if body.items.is_empty() || body.items.len() > MAX_BATCH {
        return Err(
            Error::invalid(format!("a batch has 1 to {MAX_BATCH} items"))
                .with_field("items")
                .into(),
        );
    }
    // Names that are not names are the request's error, not a pair's.
    for (i, item) in body.items.iter().enumerate() {
        features::check_feature_name("view", &item.view)
            .and_then(|()| features::check_entity_id(&item.entity))
            .map_err(|e| {
                let field = format!("items[{i}].{}", e.field().unwrap_or("view"));
                Error::invalid(e.message()).with_field(field)
            })?;
    }
    let max_age = max_age(body.max_age)?;
    let pairs: Vec<(String, String)> = body.items.into_iter().map(|i| (i.view, i.entity)).collect();
    let answers = state.serving.features().read(&pairs, max_age).await?;
    let results = pairs
        .into_iter()
        .zip(answers)
        .map(|((view, entity), answer)| match answer {
            Ok(read) => BatchAnswer {
                view,
                entity,
                features: Some(Features::from(read).features),
                error: None,
            },
            Err(e) => BatchAnswer {
                view,
                entity,
                features: None,
                error: Some(ErrorDetail {
                    kind: e.kind().as_str().to_owned(),
                    message: e.message().to_owned(),
                    field: e.field().map(str::to_owned),
                }),
            },
        })
        .collect::<Vec<_>>();
    // About 100 bytes per feature.
    let size: usize = results
        .iter()
        .map(|r| 64 + r.features.as_ref().map_or(64, |f| f.len() * 100))
        .sum();
    json_sized(&BatchAnswers { results }, size)
}

// --- Predictions -------------------------------------------------------

/// What to score: an entity (its features from the scorer's view) or an
/// explicit feature vector; exactly one.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictBody {
    /// The entity whose features to score.
    #[serde(default)]
    #[schema(schema_with = entity_id)]
    pub entity: Option<String>,
    /// The feature values to score, by name.
    #[serde(default)]
    #[schema(schema_with = feature_values)]
    pub features: Option<BTreeMap<String, Value>>,
    /// Overrides the scorer's policy for stale or missing features:
    /// `refuse` (409 naming them) or `impute` (and say so).
    #[serde(default)]
    pub on_missing: Option<MissingPolicy>,
    /// Feature values older than this many seconds are stale too.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 315_360_000)]
    pub max_age: Option<f64>,
}

/// A prediction.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PredictionBody {
    /// The model that scored (an alias resolved).
    pub model_id: String,
    /// Its scorer's version.
    pub version: i64,
    /// The score (a probability for a logistic scorer).
    pub score: f64,
    /// Whether it came from the cache.
    pub cached: bool,
    /// The tier that answered: `l1`, `l2`, `loaded` (computed now) or
    /// `stale`.
    pub tier: String,
    /// The feature values scored.
    pub features: BTreeMap<String, f64>,
    /// Features missing and imputed.
    pub imputed: Vec<String>,
    /// Features stale and used as they were.
    pub stale: Vec<String>,
}

/// Scores an entity or a feature vector with the model's scorer (from its
/// config document), through the prediction cache. `model` is a model id
/// or `model_name@alias`.
#[utoipa::path(post, path = "/v1/models/{model_id}/predict", tag = "models",
    params(("model_id" = inline(limits::params::ModelOrAlias), Path, description = "A model id or `model_name@alias`")),
    request_body = PredictBody,
    responses(
        (status = 200, description = "The prediction; `X-Strata-Cache` names the tier", body = PredictionBody),
        (status = 400, description = "Neither or both of `entity` and `features`, or a weighted feature missing from `features`", body = ErrorBody),
        (status = 404, description = "No such model, alias, config or view", body = ErrorBody),
        (status = 409, description = "The model has no usable scorer, or the entity's features are stale or missing and the policy is `refuse`", body = ErrorBody)))]
pub async fn predict(
    State(state): State<ApiState>,
    ApiPath(model): ApiPath<String>,
    ApiJson(body): ApiJson<PredictBody>,
) -> Result<Response, ApiError> {
    let input = match (body.entity, body.features) {
        (Some(entity), None) => {
            features::check_entity_id(&entity)?;
            Input::Entity(entity)
        }
        (None, Some(features)) => Input::Features(features),
        _ => {
            return Err(
                Error::invalid("give exactly one of `entity` and `features`")
                    .with_field("entity")
                    .into(),
            );
        }
    };
    let prediction = state
        .serving
        .predictions()
        .predict(PredictRequest {
            model,
            input,
            on_missing: body.on_missing,
            max_age: max_age(body.max_age)?,
        })
        .await?;
    let tier = prediction.tier.as_str();
    let mut response = Json(PredictionBody {
        model_id: prediction.model_id,
        version: prediction.version,
        score: prediction.score,
        cached: prediction.cached,
        tier: tier.to_owned(),
        features: prediction.features,
        imputed: prediction.imputed,
        stale: prediction.stale,
    })
    .into_response();
    response.headers_mut().insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static(tier),
    );
    Ok(response)
}

// --- Leaderboard -------------------------------------------------------

/// How many to list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TopParams {
    /// How many, best first (1 to 1,000; 10 when absent).
    #[param(minimum = 1, maximum = 1000)]
    pub top: Option<u64>,
}

/// One place.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Place {
    /// 1 for the best.
    pub rank: u64,
    /// The model.
    pub model_id: String,
    /// Its best accuracy.
    pub score: f64,
    /// When it first reached it.
    pub reached_at: Option<DateTime<Utc>>,
}

impl From<Standing> for Place {
    fn from(s: Standing) -> Place {
        Place {
            rank: s.rank,
            model_id: s.model_id,
            score: s.score,
            reached_at: s.reached_at,
        }
    }
}

/// The best models.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Board {
    /// Best first; equal scores by who reached them first.
    pub leaders: Vec<Place>,
}

/// The models with the best accuracy, best first; ties go to who reached
/// the score first.
#[utoipa::path(get, path = "/v1/leaderboard", tag = "models",
    params(TopParams),
    responses(
        (status = 200, description = "The leaders", body = Board),
        (status = 400, description = "`top` out of range", body = ErrorBody)))]
pub async fn leaderboard(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<TopParams>,
) -> Result<Json<Board>, ApiError> {
    let top = params.top.unwrap_or(10);
    if top == 0 || top > MAX_TOP {
        return Err(Error::invalid(format!("top is 1 to {MAX_TOP}"))
            .with_field("top")
            .into());
    }
    let leaders = state.serving.leaderboard().top(top).await?;
    Ok(Json(Board {
        leaders: leaders.into_iter().map(Place::from).collect(),
    }))
}

/// How many neighbours to list.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AroundParams {
    /// Models on each side (0 to 500; 2 when absent).
    #[param(minimum = 0, maximum = 500)]
    pub around: Option<u64>,
}

/// A model's place and its neighbours.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Standings {
    /// The model's place.
    pub standing: Place,
    /// It and up to `around` models on each side, in order.
    pub around: Vec<Place>,
}

/// A model's rank on the leaderboard, and the models around it.
#[utoipa::path(get, path = "/v1/leaderboard/{model_id}", tag = "models",
    params(("model_id" = limits::ModelId, Path, description = "The model's id"), AroundParams),
    responses(
        (status = 200, description = "Its place", body = Standings),
        (status = 400, description = "Not a model id, or `around` out of range", body = ErrorBody),
        (status = 404, description = "Not on the leaderboard", body = ErrorBody)))]
pub async fn standing(
    State(state): State<ApiState>,
    model_id: limits::ModelId,
    ApiQuery(params): ApiQuery<AroundParams>,
) -> Result<Json<Standings>, ApiError> {
    let around = params.around.unwrap_or(2);
    if around > MAX_TOP / 2 {
        return Err(Error::invalid(format!("around is 0 to {}", MAX_TOP / 2))
            .with_field("around")
            .into());
    }
    let (me, window) = state
        .serving
        .leaderboard()
        .around(model_id.as_str(), around)
        .await?;
    Ok(Json(Standings {
        standing: me.into(),
        around: window.into_iter().map(Place::from).collect(),
    }))
}
