//! `/v1/dead-letters`: the messages the pipelines gave up on, to query,
//! replay or purge (over [`crate::pipelines::dead_letters`]).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use super::{ApiState, limits};
use crate::error::{Error, ErrorKind};
use crate::pipelines::dead_letters::MAX_LIST;
use crate::pipelines::{DeadLetter, DeadLetterFilter, ReplayReport};

/// The longest text filter or id accepted.
const MAX_TEXT: usize = 200;

/// A query of dead letters.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this queue's (its name without the prefix, e.g. `onboarding`).
    #[param(schema_with = limits::dead_letter_text)]
    pub queue: Option<String>,
    /// Only those whose error or error class contains this text
    /// (case-insensitive).
    #[param(schema_with = limits::dead_letter_text)]
    pub error: Option<String>,
    /// Only those that died at or after this time (RFC 3339).
    #[serde(default, deserialize_with = "limits::deserialize_timestamp")]
    #[param(schema_with = limits::timestamp)]
    pub since: Option<DateTime<Utc>>,
    /// At most this many, newest first (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// Dead letters, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// How many match in all.
    pub total: u64,
    /// The newest of them, up to the limit.
    pub items: Vec<DeadLetter>,
}

/// Which dead letters to replay or purge. The fields narrow together;
/// `all: true` with none selects every dead letter, and an empty selection
/// selects none.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// Only this queue's.
    #[schema(schema_with = limits::dead_letter_text)]
    pub queue: Option<String>,
    /// Only those whose error or class contains this text.
    #[schema(schema_with = limits::dead_letter_text)]
    pub error: Option<String>,
    /// Only those that died at or after this time.
    #[serde(default, deserialize_with = "limits::deserialize_timestamp")]
    #[schema(schema_with = limits::timestamp)]
    pub since: Option<DateTime<Utc>>,
    /// Only these ids.
    #[schema(schema_with = limits::dead_letter_ids)]
    pub ids: Option<Vec<String>>,
    /// Every dead letter, when no other field narrows it.
    #[serde(default)]
    pub all: bool,
}

/// A replay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// Which dead letters.
    pub select: Selection,
    /// At most this many (1 to 1000, default 100), oldest last.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "limits::deserialize_integer")]
    pub limit: Option<u64>,
    /// At most this many a second (0: as fast as the broker confirms).
    #[schema(minimum = 0, maximum = 100000)]
    #[serde(default, deserialize_with = "limits::deserialize_required_integer")]
    pub per_second: u32,
    /// Only say which would be replayed.
    #[serde(default)]
    pub dry_run: bool,
    /// A corrected payload (a JSON object) for the one dead letter named
    /// by `select.ids`; the message keeps its id and history.
    #[schema(value_type = Option<limits::ConfigObject>)]
    pub payload: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A purge.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    /// Which dead letters.
    pub select: Selection,
    /// Never delete more than this (the oldest first).
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(deserialize_with = "limits::deserialize_required_integer")]
    pub max: u64,
}

/// What a purge deleted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Purged {
    /// Dead letters deleted.
    pub deleted: u64,
}

/// The control characters the text filters refuse (tab, line feed and
/// carriage return are allowed), as their schema's pattern says.
fn is_control(c: char) -> bool {
    matches!(c, '\0'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

fn check_text(name: &str, value: &Option<String>) -> Result<(), ApiError> {
    if let Some(text) = value
        && (text.is_empty() || text.chars().count() > MAX_TEXT || text.chars().any(is_control))
    {
        return Err(Error::invalid(format!(
            "`{name}` must be 1 to {MAX_TEXT} characters without control characters"
        ))
        .with_field(name)
        .into());
    }
    Ok(())
}

impl Selection {
    /// The filter; `None` when nothing is selected (no field, and not
    /// `all`): a replay or purge of nothing.
    fn filter(self) -> Result<Option<DeadLetterFilter>, ApiError> {
        check_text("queue", &self.queue)?;
        check_text("error", &self.error)?;
        if let Some(ids) = &self.ids {
            if ids.is_empty() || ids.len() > MAX_LIST as usize {
                return Err(Error::invalid("`ids` must list 1 to 1000 ids")
                    .with_field("ids")
                    .into());
            }
            for id in ids {
                limits::check_dead_letter_id(id).map_err(|e| e.with_field("ids"))?;
            }
        }
        let narrowed = self.queue.is_some()
            || self.error.is_some()
            || self.since.is_some()
            || self.ids.is_some();
        if !narrowed && !self.all {
            return Ok(None);
        }
        Ok(Some(DeadLetterFilter {
            queue: self.queue,
            error: self.error,
            since: self.since,
            ids: self.ids,
        }))
    }
}

/// Dead letters matching a query, newest first.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "pipelines",
    params(ListQuery),
    responses(
        (status = 200, description = "The dead letters", body = DeadLetterPage),
        (status = 400, description = "A parameter out of range", body = ErrorBody),
        (status = 503, description = "The document engine is unavailable", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    check_text("queue", &query.queue)?;
    check_text("error", &query.error)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Error::invalid("`limit` must be 1 to 1000")
            .with_field("limit")
            .into());
    }
    let filter = DeadLetterFilter {
        queue: query.queue,
        error: query.error,
        since: query.since,
        ids: None,
    };
    let letters = state.pipelines.dead_letters();
    Ok(Json(DeadLetterPage {
        total: letters.count(&filter).await?,
        items: letters.list(&filter, limit).await?,
    }))
}

/// One dead letter, with its payload, headers and history.
#[utoipa::path(get, path = "/v1/dead-letters/{id}", tag = "pipelines",
    params(("id" = inline(limits::params::DeadLetterId), Path, description = "The dead letter's id")),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetter),
        (status = 400, description = "Not a dead letter id", body = ErrorBody),
        (status = 404, description = "No such dead letter", body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeadLetter>, ApiError> {
    limits::check_dead_letter_id(&id)?;
    match state.pipelines.dead_letters().get(&id).await? {
        Some(letter) => Ok(Json(letter)),
        None => Err(Error::new(ErrorKind::NotFound, format!("no dead letter `{id}`")).into()),
    }
}

/// Puts dead letters back on their original route, with their id (a
/// message processed meanwhile is skipped) and history.
#[utoipa::path(post, path = "/v1/dead-letters/replay", tag = "pipelines",
    request_body = ReplayBody,
    responses(
        (status = 200, description = "What was replayed, and what could not be", body = ReplayReport),
        (status = 400, description = "A field out of range", body = ErrorBody),
        (status = 503, description = "The broker or the document engine is unavailable", body = ErrorBody)))]
pub async fn replay(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<Json<ReplayReport>, ApiError> {
    let limit = body.limit.unwrap_or(100);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(Error::invalid("`limit` must be 1 to 1000")
            .with_field("limit")
            .into());
    }
    if body.per_second > 100_000 {
        return Err(Error::invalid("`per_second` must be 0 to 100000")
            .with_field("per_second")
            .into());
    }
    let Some(filter) = body.select.filter()? else {
        if body.payload.is_some() {
            return Err(Error::invalid(
                "a corrected `payload` replays exactly one dead letter: name it alone in `select.ids`",
            )
            .with_field("payload")
            .into());
        }
        return Ok(Json(ReplayReport {
            dry_run: body.dry_run,
            ..Default::default()
        }));
    };
    if let Some(payload) = body.payload {
        let one = match filter.ids.as_deref() {
            Some([id])
                if filter.queue.is_none() && filter.error.is_none() && filter.since.is_none() =>
            {
                id.clone()
            }
            _ => {
                return Err(Error::invalid(
                    "a corrected `payload` replays exactly one dead letter: name it alone in `select.ids`",
                )
                .with_field("payload")
                .into());
            }
        };
        if body.dry_run {
            return Err(Error::invalid("`payload` and `dry_run` do not go together")
                .with_field("dry_run")
                .into());
        }
        return Ok(Json(
            state
                .pipelines
                .replay_corrected(&one, &serde_json::Value::Object(payload))
                .await?,
        ));
    }
    Ok(Json(
        state
            .pipelines
            .replay(&filter, limit, body.per_second, body.dry_run)
            .await?,
    ))
}

/// Deletes dead letters, never more than `max`.
#[utoipa::path(post, path = "/v1/dead-letters/purge", tag = "pipelines",
    request_body = PurgeBody,
    responses(
        (status = 200, description = "How many were deleted", body = Purged),
        (status = 400, description = "A field out of range", body = ErrorBody),
        (status = 503, description = "The document engine is unavailable", body = ErrorBody)))]
pub async fn purge(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<PurgeBody>,
) -> Result<Json<Purged>, ApiError> {
    if body.max > 1_000_000 {
        return Err(Error::invalid("`max` must be 0 to 1000000")
            .with_field("max")
            .into());
    }
    let deleted = match body.select.filter()? {
        Some(filter) => {
            state
                .pipelines
                .dead_letters()
                .purge(&filter, body.max)
                .await?
        }
        None => 0,
    };
    Ok(Json(Purged { deleted }))
}
