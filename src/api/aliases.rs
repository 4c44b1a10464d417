//! `/v1/aliases/{name}`: where `model_name@alias` points, and moving it.
//!
//! `name` is `model_name@alias` (split at the last `@`; `%40` works too).
//! A move is audited in the registry's alias history in the same
//! transaction; moving an alias to where it already points records
//! nothing. A missing artifact is 404; an artifact of another model is 409.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use super::{ApiState, limits};
use crate::platform::records::{self, AliasChange};
use crate::platform::registry::aliases::AliasRef;

/// Who moves aliases when the request does not say.
const DEFAULT_MOVED_BY: &str = "api";

/// Where an alias points.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Alias {
    /// The model, e.g. `fraud-detector`.
    pub model_name: String,
    /// The alias, e.g. `champion`.
    pub alias: String,
    /// The artifact it points to.
    pub artifact_id: i64,
    /// When it last moved (UTC).
    pub updated_at: DateTime<Utc>,
}

impl From<records::Alias> for Alias {
    fn from(m: records::Alias) -> Alias {
        Alias {
            model_name: m.model_name,
            alias: m.alias,
            artifact_id: m.artifact_id,
            updated_at: m.updated_at,
        }
    }
}

/// Where to move an alias.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveAlias {
    /// The artifact to point to; it must belong to a run of the same model.
    #[serde(deserialize_with = "limits::deserialize_required_integer")]
    #[schema(minimum = 1)]
    pub artifact_id: i64,
    /// Who moves it (default `api`).
    #[serde(default)]
    #[schema(schema_with = limits::moved_by)]
    pub moved_by: Option<String>,
    /// Why, for the audit trail.
    #[serde(default)]
    #[schema(schema_with = limits::reason)]
    pub reason: Option<String>,
}

/// One audited move.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AliasHistoryEntry {
    /// Where the alias pointed before; absent for its first move.
    pub from_artifact_id: Option<i64>,
    /// Where it points now.
    pub to_artifact_id: i64,
    /// When (UTC).
    pub moved_at: DateTime<Utc>,
    /// Who moved it.
    pub moved_by: String,
    /// Why.
    pub reason: Option<String>,
}

impl From<AliasChange> for AliasHistoryEntry {
    fn from(h: AliasChange) -> AliasHistoryEntry {
        AliasHistoryEntry {
            from_artifact_id: h.from_artifact_id,
            to_artifact_id: h.to_artifact_id,
            moved_at: h.moved_at,
            moved_by: h.moved_by,
            reason: h.reason,
        }
    }
}

/// What a move did.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AliasMoved {
    /// The alias as it now is.
    pub alias: Alias,
    /// The audit entry written; absent when the alias already pointed there.
    pub moved: Option<AliasHistoryEntry>,
}

/// Where the alias points.
#[utoipa::path(get, path = "/v1/aliases/{name}", tag = "aliases",
    params(("name" = inline(limits::params::AliasName), Path, description = "`model_name@alias`")),
    responses(
        (status = 200, description = "Found", body = Alias),
        (status = 400, description = "Not `model_name@alias`", body = ErrorBody),
        (status = 404, description = "No such alias", body = ErrorBody)))]
pub async fn resolve(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Alias>, ApiError> {
    let alias: AliasRef = name.parse()?;
    let found = state.platform.registry().resolve_alias(&alias).await?;
    Ok(Json(found.into()))
}

/// Points the alias at an artifact, auditing the move.
#[utoipa::path(put, path = "/v1/aliases/{name}", tag = "aliases",
    params(("name" = inline(limits::params::AliasName), Path, description = "`model_name@alias`")),
    request_body = MoveAlias,
    responses(
        (status = 200, description = "Moved (or already there)", body = AliasMoved),
        (status = 400, description = "Not `model_name@alias`, or a field outside its schema", body = ErrorBody),
        (status = 404, description = "No such artifact", body = ErrorBody),
        (status = 409, description = "The artifact belongs to another model, or a concurrent first move won", body = ErrorBody)))]
pub async fn move_to(
    State(state): State<ApiState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<MoveAlias>,
) -> Result<Json<AliasMoved>, ApiError> {
    let alias: AliasRef = name.parse()?;
    let moved = state
        .platform
        .registry()
        .move_alias(
            &alias,
            body.artifact_id,
            body.moved_by.as_deref().unwrap_or(DEFAULT_MOVED_BY),
            body.reason.as_deref(),
        )
        .await?;
    Ok(Json(AliasMoved {
        alias: moved.alias.into(),
        moved: moved.history.map(AliasHistoryEntry::from),
    }))
}
