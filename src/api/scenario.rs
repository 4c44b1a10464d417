//! The scenario's pipelines over HTTP: user onboarding (`POST /v1/users`),
//! behaviour events (`POST /v1/events`), recommendations
//! (`GET /v1/users/{id}/recommendations`), and what the events consumer
//! keeps (`GET /v1/analytics/today`, `GET /v1/alerts`).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::models::CACHE_HEADER;
use crate::analytics::alerts::{self, Alert};
use crate::analytics::events::{self, DaySummary, NewEvent};
use crate::analytics::onboarding::{self, Signup};
use crate::analytics::personalize::Recommendations;
use crate::error::{Error, ErrorKind};

/// A signup taken.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    /// The user's id.
    pub id: String,
    /// `accepted`: onboarding runs in the background; a signup it cannot
    /// take ends in the dead letters of queue `onboarding`, with why.
    pub status: String,
}

/// Takes a signup; onboarding runs in the background.
#[utoipa::path(post, path = "/v1/users", tag = "pipelines",
    request_body = Signup,
    responses(
        (status = 202, description = "Taken by the broker; onboarding follows", body = Accepted),
        (status = 400, description = "A field outside its schema", body = ErrorBody),
        (status = 503, description = "The broker did not confirm it; it may not have been kept", body = ErrorBody)))]
pub async fn signup(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<Signup>,
) -> Result<Response, ApiError> {
    let id = onboarding::submit(&state.pipelines, body).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id,
            status: "accepted".into(),
        }),
    )
        .into_response())
}

/// A batch of events.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// The events.
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<NewEvent>,
}

/// Events to take: one, or a batch.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EventsBody {
    /// A batch of 1 to 1000 events.
    Batch(EventBatch),
    /// One event.
    One(NewEvent),
}

/// What became of the events.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventsAccepted {
    /// Events the broker took.
    pub accepted: usize,
    /// Their ids, in the order sent.
    pub ids: Vec<String>,
}

/// Takes behaviour events (views, clicks, purchases, errors) onto the
/// topic exchange as `event.<type>`. Either every event is checked and
/// taken, or the answer says which were not.
#[utoipa::path(post, path = "/v1/events", tag = "pipelines",
    request_body = EventsBody,
    responses(
        (status = 202, description = "Every event taken by the broker", body = EventsAccepted),
        (status = 400, description = "An event is invalid (named); none was taken", body = ErrorBody),
        (status = 503, description = "The broker did not confirm some; the message says how many were taken", body = ErrorBody)))]
pub async fn ingest(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<EventsBody>,
) -> Result<Response, ApiError> {
    let batch = match body {
        EventsBody::Batch(batch) => batch.events,
        EventsBody::One(event) => vec![event],
    };
    let results = events::publish(&state.pipelines, batch).await?;
    let total = results.len();
    let mut ids = Vec::with_capacity(total);
    let mut failure = None;
    for result in results {
        match result {
            Ok(id) => ids.push(id),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "{} of {total} events were taken ({}); the others may not have been kept: {e}",
                ids.len(),
                ids.join(", ")
            ),
        )
        .into());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(EventsAccepted {
            accepted: ids.len(),
            ids,
        }),
    )
        .into_response())
}

/// Recommendations for a user: through the cache, from their profile,
/// events and predictions; `provisional` (the popular items) until their
/// first prediction has run, which this request queues.
#[utoipa::path(get, path = "/v1/users/{user_id}/recommendations", tag = "pipelines",
    params(("user_id" = String, Path, description = "The user", pattern = r"^[A-Za-z0-9._-]{1,64}$", max_length = 64)),
    responses(
        (status = 200, description = "The recommendations; `X-Strata-Cache` names the tier", body = Recommendations),
        (status = 400, description = "Not a user id", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody)))]
pub async fn recommendations(
    State(state): State<ApiState>,
    ApiPath(user): ApiPath<String>,
) -> Result<Response, ApiError> {
    if !onboarding::is_user_id(&user) {
        return Err(Error::invalid(format!("`{user}` is not a user id"))
            .with_field("user_id")
            .into());
    }
    let (answer, tier) = state.scenario.personalization.recommend(&user).await?;
    let mut response = Json(answer).into_response();
    if let Ok(value) = HeaderValue::from_str(tier.as_str()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(CACHE_HEADER), value);
    }
    Ok(response)
}

/// A day to summarize.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DayQuery {
    /// The day (`YYYY-MM-DD`, UTC); today when absent.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", max_length = 10)]
    pub day: Option<NaiveDate>,
    /// Products per leaderboard (1 to 100, default 10).
    #[param(minimum = 1, maximum = 100)]
    pub top: Option<usize>,
}

/// A day's event counters and top products, kept by the events consumer.
#[utoipa::path(get, path = "/v1/analytics/today", tag = "analytics",
    params(DayQuery),
    responses(
        (status = 200, description = "Counters and leaderboards", body = DaySummary),
        (status = 400, description = "A parameter out of range", body = ErrorBody)))]
pub async fn today(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<DayQuery>,
) -> Result<Json<DaySummary>, ApiError> {
    let top = query.top.unwrap_or(10);
    if !(1..=100).contains(&top) {
        return Err(Error::invalid("`top` must be 1 to 100")
            .with_field("top")
            .into());
    }
    let day = query
        .day
        .unwrap_or_else(|| crate::platform::now().date_naive());
    Ok(Json(
        events::summary(state.platform.kv().as_ref(), day, top).await?,
    ))
}

/// How many alerts.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// At most this many, newest first (1 to 1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// The latest alerts (error rate, queue depth).
#[utoipa::path(get, path = "/v1/alerts", tag = "pipelines",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts, newest first", body = Vec<Alert>),
        (status = 400, description = "A parameter out of range", body = ErrorBody)))]
pub async fn list_alerts(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<AlertsQuery>,
) -> Result<Json<Vec<Alert>>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("`limit` must be 1 to 1000")
            .with_field("limit")
            .into());
    }
    Ok(Json(
        alerts::latest(state.platform.documents().as_ref(), limit).await?,
    ))
}
