//! `/v1/runs`: register a run, search runs, get one, record how it ended,
//! remove one.
//!
//! Registering is the cross-engine register saga
//! ([`crate::platform::sagas`]): the run row, its config document and the
//! framework's registration counter, all or none. The dataset is named, and
//! a missing dataset or a taken `model_id` (in either engine) is 409. Search takes the run filter language
//! ([`crate::platform::search`]): a malformed `filter`, `order_by`,
//! `page_size` or `page_token` is 400 whose message names the position and
//! whose `field` names the parameter.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bson::Document;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::limits::{self, ModelId};
use super::sagas::{SagaStatus, accepted};
use super::{ApiState, Deadline};
use crate::error::{Error, ErrorKind};
use crate::platform::records::{self, RunStatus};
use crate::platform::registry::RunOutcome;
use crate::platform::sagas::{RegisterRun, SagaOutcome};

const DEFAULT_PAGE_SIZE: u64 = 50;

/// A training run to register (it starts as `running`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    /// The name of the dataset it trains on (must exist: 409 when not).
    #[schema(schema_with = limits::dataset_name)]
    pub dataset: String,
    /// Unique id of the run, a model id.
    #[schema(value_type = ModelId)]
    pub model_id: String,
    /// The model's name, 1 to 255 characters.
    #[schema(schema_with = limits::model_name)]
    pub model_name: String,
    /// The framework, 1 to 50 characters.
    #[schema(schema_with = limits::framework)]
    pub framework: String,
    /// Labels; keys are 1 to 255 ASCII letters, digits, `_`, `-` or `.`.
    #[serde(default)]
    #[schema(schema_with = limits::tags)]
    pub tags: BTreeMap<String, String>,
    /// When training started (RFC 3339); now when absent.
    #[serde(default, deserialize_with = "limits::deserialize_timestamp")]
    #[schema(schema_with = limits::timestamp)]
    pub started_at: Option<DateTime<Utc>>,
    /// The framework-specific configuration (layers, tokenizer, booster
    /// parameters, ...), stored as `config` of the model's config document.
    /// Keys may not start with `$`.
    #[serde(default)]
    #[schema(schema_with = limits::config_or_null)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How a run ended.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRun {
    /// `completed` (default) or `failed`.
    #[serde(default)]
    #[schema(schema_with = limits::run_end_status)]
    pub status: Option<String>,
    /// Final accuracy, in `[0, 1]`.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub accuracy: Option<f64>,
    /// Final loss.
    #[serde(default)]
    pub loss: Option<f64>,
    /// Training time in seconds (not negative).
    #[serde(default, deserialize_with = "limits::deserialize_integer")]
    #[schema(minimum = 0)]
    pub training_time_seconds: Option<i64>,
    /// When it ended (RFC 3339); now when absent.
    #[serde(default, deserialize_with = "limits::deserialize_timestamp")]
    #[schema(schema_with = limits::timestamp)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A training run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Run {
    /// Surrogate key.
    pub id: i64,
    /// Unique id of the run.
    pub model_id: String,
    /// The model's name.
    pub model_name: String,
    /// The framework.
    pub framework: String,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// The name of its dataset.
    pub dataset: String,
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
    /// Its tags, by key.
    pub tags: BTreeMap<String, String>,
}

impl Run {
    fn new(run: records::Run, dataset: String, tags: BTreeMap<String, String>) -> Run {
        Run {
            id: run.id,
            model_id: run.model_id,
            model_name: run.model_name,
            framework: run.framework,
            status: run.status.as_str().to_owned(),
            dataset,
            accuracy: run.accuracy,
            loss: run.loss,
            training_time_seconds: run.training_time_seconds,
            started_at: run.started_at,
            completed_at: run.completed_at,
            tags,
        }
    }
}

/// A model artifact of a run.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Artifact {
    /// Surrogate key (what an alias points to).
    pub id: i64,
    /// Where it is stored.
    pub uri: String,
    /// Serialization format.
    pub format: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Content checksum.
    pub checksum: String,
    /// When it was registered (UTC).
    pub created_at: DateTime<Utc>,
}

impl From<records::Artifact> for Artifact {
    fn from(a: records::Artifact) -> Artifact {
        Artifact {
            id: a.id,
            uri: a.uri,
            format: a.format,
            size_bytes: a.size_bytes,
            checksum: a.checksum,
            created_at: a.created_at,
        }
    }
}

/// A run with its artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RunWithArtifacts {
    /// The run.
    #[serde(flatten)]
    pub run: Run,
    /// Its artifacts, oldest first.
    pub artifacts: Vec<Artifact>,
}

/// Search parameters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchRuns {
    /// Filter in the run search language, e.g.
    /// `framework IN ('pytorch') OR accuracy > 0.95`; empty: every run.
    #[param(schema_with = limits::filter)]
    pub filter: Option<String>,
    /// Sort keys, e.g. `accuracy DESC, model_id`; empty: `started_at DESC`.
    #[param(schema_with = limits::order_by)]
    pub order_by: Option<String>,
    /// Runs per page, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<u64>,
    /// `next_page_token` of the previous page, with the same filter and order.
    #[param(schema_with = limits::run_page_token)]
    pub page_token: Option<String>,
}

/// One page of runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RunPage {
    /// The runs, in the requested order.
    pub runs: Vec<Run>,
    /// Pass back as `page_token` for the next page; absent on the last.
    pub next_page_token: Option<String>,
}

/// Registers a training run across engines, as `running`: the run row,
/// the model's config document and the framework's registration counter,
/// all or none, as a durable saga. Sending the same request again is
/// safe: it answers with the first registration (201) or with the saga
/// still under way (202).
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = CreateRun,
    responses(
        (status = 201, description = "Registered in every engine", body = Run),
        (status = 202, description = "Still under way past the request's time; it finishes or is undone in the background: follow `Location`", body = SagaStatus),
        (status = 400, description = "Invalid input: the field named is outside its schema", body = ErrorBody),
        (status = 409, description = "The model_id is taken, has an operation in progress, or the dataset does not exist", body = ErrorBody),
        (status = 413, description = "Body over api.body_limit", body = ErrorBody),
        (status = 503, description = "An engine is unavailable; the registration was undone and nothing of it was kept", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    deadline: Deadline,
    ApiJson(body): ApiJson<CreateRun>,
) -> Result<Response, ApiError> {
    // Plain serde conversion: extended-JSON forms such as `{"$date": ..}`
    // stay ordinary (and, with their `$` key, refused) values.
    let config = body
        .config
        .as_ref()
        .map_or_else(Document::new, limits::json_object_to_document);
    let dataset = body.dataset.clone();
    let tags = body.tags.clone();
    let outcome = state
        .platform
        .sagas()
        .register_run(
            RegisterRun {
                dataset_name: body.dataset,
                model_id: body.model_id,
                model_name: body.model_name,
                framework: body.framework,
                config,
                tags: body.tags,
                started_at: body.started_at,
            },
            Some(deadline.0),
        )
        .await
        .map_err(|e| match e.kind() {
            // The registry's contract: a reference to a missing row is a
            // conflict, not a missing resource at this URL.
            ErrorKind::NotFound if e.field() == Some("name") => {
                Error::conflict(format!("no dataset named `{dataset}`")).with_field("dataset")
            }
            _ => e,
        })?;
    match outcome {
        SagaOutcome::Done(registered) => {
            // The run this registration wrote (with the tags it wrote), even
            // when another request has changed or removed it since.
            let run = Run::new(registered.run, registered.dataset, tags);
            Ok((StatusCode::CREATED, Json(run)).into_response())
        }
        SagaOutcome::Pending(saga) => Ok(accepted(saga)),
    }
}

/// Searches runs with a filter, an order and page tokens.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(SearchRuns),
    responses(
        (status = 200, description = "One page", body = RunPage),
        (status = 400, description = "Malformed filter, order_by, page_size or page_token; the message names the position", body = ErrorBody)))]
pub async fn search(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<SearchRuns>,
) -> Result<Json<RunPage>, ApiError> {
    let page = state
        .platform
        .registry()
        .search_runs(
            query.filter.as_deref().unwrap_or(""),
            query.order_by.as_deref().unwrap_or(""),
            query.page_size.unwrap_or(DEFAULT_PAGE_SIZE),
            query.page_token.as_deref(),
        )
        .await?;
    Ok(Json(RunPage {
        runs: page
            .runs
            .into_iter()
            .map(|hit| Run::new(hit.run, hit.dataset, hit.tags))
            .collect(),
        next_page_token: page.next_page_token,
    }))
}

/// The run `model_id`, with its dataset's name, tags and artifacts.
#[utoipa::path(get, path = "/v1/runs/{model_id}", tag = "runs",
    params(("model_id" = ModelId, Path, description = "The run's model_id")),
    responses(
        (status = 200, description = "Found; `X-Strata-Cache` names the cache tier that answered (`l1`, `l2`, `loaded`, `stale`)", body = RunWithArtifacts),
        (status = 400, description = "Not a model id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    model_id: ModelId,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let (details, tier) = state
        .platform
        .registry()
        .run_cached(model_id.as_str())
        .await?;
    let mut response = Json(RunWithArtifacts {
        run: Run::new(details.run, details.dataset.name, details.tags),
        artifacts: details.artifacts.into_iter().map(Artifact::from).collect(),
    })
    .into_response();
    response.headers_mut().insert(
        axum::http::HeaderName::from_static(super::models::CACHE_HEADER),
        axum::http::HeaderValue::from_static(tier.as_str()),
    );
    Ok(response)
}

/// Removes the model `model_id` from every engine, as a durable saga: the
/// run row and tags, then its config document and its migrated copy. A
/// run with artifacts is refused (409) and nothing is removed.
#[utoipa::path(delete, path = "/v1/runs/{model_id}", tag = "runs",
    params(("model_id" = ModelId, Path, description = "The run's model_id")),
    responses(
        (status = 204, description = "Removed from every engine"),
        (status = 202, description = "The run row is gone or going; the rest is removed in the background: follow `Location`", body = SagaStatus),
        (status = 400, description = "Not a model id", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run has artifacts, or another operation on it is in progress", body = ErrorBody),
        (status = 503, description = "An engine is unavailable before anything was removed; nothing was removed", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    deadline: Deadline,
    ModelId(model_id): ModelId,
) -> Result<Response, ApiError> {
    match state
        .platform
        .sagas()
        .unregister_run(&model_id, Some(deadline.0))
        .await?
    {
        SagaOutcome::Done(true) => {
            // Off the leaderboard too; a failure leaves an entry the next
            // rebuild will not bring back, so say so.
            if let Err(e) = state.serving.leaderboard().remove(&model_id).await {
                tracing::warn!(model_id, "a removed model stays on the leaderboard: {e}");
                let mut response = StatusCode::NO_CONTENT.into_response();
                response.headers_mut().insert(
                    axum::http::HeaderName::from_static(super::models::DEGRADED_HEADER),
                    axum::http::HeaderValue::from_static("kv"),
                );
                return Ok(response);
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        SagaOutcome::Done(false) => Err(Error::not_found(format!(
            "no training run with model_id `{model_id}`"
        ))
        .with_field("model_id")
        .into()),
        SagaOutcome::Pending(saga) => Ok(accepted(saga)),
    }
}

/// Records how the running run `model_id` ended, with its metrics.
#[utoipa::path(post, path = "/v1/runs/{model_id}/complete", tag = "runs",
    params(("model_id" = ModelId, Path, description = "The run's model_id")),
    request_body = CompleteRun,
    responses(
        (status = 200, description = "Recorded, and its accuracy put on the leaderboard (`X-Strata-Degraded: kv` when the leaderboard could not take it; it is rebuilt from the runs at the next start)", body = Run),
        (status = 400, description = "Not a model id, or a field outside its schema", body = ErrorBody),
        (status = 404, description = "No such run", body = ErrorBody),
        (status = 409, description = "The run already ended", body = ErrorBody)))]
pub async fn complete(
    State(state): State<ApiState>,
    ModelId(model_id): ModelId,
    ApiJson(body): ApiJson<CompleteRun>,
) -> Result<Response, ApiError> {
    let registry = state.platform.registry();
    let status = match body.status.as_deref() {
        None => RunStatus::Completed,
        Some(s) => s.parse::<RunStatus>()?,
    };
    // Through serving: the accuracy goes on the leaderboard too.
    let completed = state
        .serving
        .complete_run(
            &model_id,
            RunOutcome {
                status,
                accuracy: body.accuracy,
                loss: body.loss,
                training_time_seconds: body.training_time_seconds,
                completed_at: body.completed_at,
            },
        )
        .await?;
    // The stored row, as every other read of a run shows it.
    let details = registry.run(&completed.run.model_id).await?;
    let mut response =
        Json(Run::new(details.run, details.dataset.name, details.tags)).into_response();
    if !completed.ranked {
        response.headers_mut().insert(
            axum::http::HeaderName::from_static(super::models::DEGRADED_HEADER),
            axum::http::HeaderValue::from_static("kv"),
        );
    }
    Ok(response)
}
