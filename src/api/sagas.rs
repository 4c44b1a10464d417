//! `/v1/sagas`: operations that span engines (registering and removing a
//! model), as recorded by [`crate::platform::sagas`]. A request that starts
//! one and runs out of time answers `202 Accepted` with the saga, and its
//! `Location` names it here.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use super::{ApiState, limits};
use crate::error::Error;
use crate::platform::sagas::{Saga, StepState};

const DEFAULT_LIMIT: u64 = 20;
const MAX_LIMIT: u64 = 100;

/// One step of a saga.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SagaStep {
    /// Its name, e.g. `sql_run`, `config_document`.
    pub step: String,
    /// `done`, or `compensated` once undone.
    pub state: String,
    /// What it produced (a row id, a count), when anything.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub output: serde_json::Value,
    /// When it was last done or undone (UTC).
    pub at: DateTime<Utc>,
}

/// An operation spanning engines, as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SagaStatus {
    /// Its id.
    pub id: String,
    /// `register_run` or `unregister_run`.
    pub kind: String,
    /// The `model_id` it is about.
    pub subject: String,
    /// `running`, `compensating` (a step failed; what was done is being
    /// undone), `completed`, or `compensated` (nothing of it was kept).
    pub state: String,
    /// The steps done and undone so far.
    pub steps: Vec<SagaStep>,
    /// What it produced, once completed.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The error that ended it, or the last one it met while open.
    pub error: Option<String>,
    /// How many times it was claimed again after its first run: taken over
    /// once its driver's lease ran out, or picked up by a sweep after it
    /// was left open for a later attempt.
    pub attempts: i32,
    /// When it began (UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

impl From<Saga> for SagaStatus {
    fn from(saga: Saga) -> SagaStatus {
        SagaStatus {
            id: saga.id,
            kind: saga.kind,
            subject: saga.subject,
            state: saga.state.as_str().to_owned(),
            steps: saga
                .steps
                .into_iter()
                .map(|s| SagaStep {
                    step: s.step,
                    state: match s.state {
                        StepState::Done => "done",
                        StepState::Compensated => "compensated",
                    }
                    .to_owned(),
                    output: s.output,
                    at: s.at,
                })
                .collect(),
            result: saga.result,
            error: saga.error,
            attempts: saga.attempts,
            created_at: saga.created_at,
            updated_at: saga.updated_at,
        }
    }
}

/// `202 Accepted` with the saga still under way, and where to look it up.
pub(crate) fn accepted(saga: Box<Saga>) -> Response {
    let location = format!("/v1/sagas/{}", saga.id);
    let mut response = (StatusCode::ACCEPTED, Json(SagaStatus::from(*saga))).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Filters of `GET /v1/sagas`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListSagas {
    /// Only sagas about this `model_id`.
    #[param(schema_with = limits::model_id_query)]
    pub subject: Option<String>,
    /// Only sagas still running or compensating.
    pub open: Option<bool>,
    /// At most this many, newest first (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// The saga `id`.
#[utoipa::path(get, path = "/v1/sagas/{id}", tag = "sagas",
    params(("id" = inline(limits::params::SagaId), Path, description = "The saga's id")),
    responses(
        (status = 200, description = "Found", body = SagaStatus),
        (status = 400, description = "Not a saga id", body = ErrorBody),
        (status = 404, description = "No such saga (or ended longer ago than sagas.retention)", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SagaStatus>, ApiError> {
    limits::check_saga_id(&id)?;
    Ok(Json(state.platform.sagas().get(&id).await?.into()))
}

/// Sagas, newest first.
#[utoipa::path(get, path = "/v1/sagas", tag = "sagas", params(ListSagas),
    responses(
        (status = 200, description = "Newest first", body = Vec<SagaStatus>),
        (status = 400, description = "A bad limit, or a subject that is not a model id", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ListSagas>,
) -> Result<Json<Vec<SagaStatus>>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(Error::invalid(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        ))
        .with_field("limit")
        .into());
    }
    let sagas = state
        .platform
        .sagas()
        .list(query.subject.as_deref(), query.open.unwrap_or(false), limit)
        .await?;
    Ok(Json(sagas.into_iter().map(SagaStatus::from).collect()))
}
