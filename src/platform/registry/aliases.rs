//! Model aliases: `model_name@alias` (e.g. `fraud-detector@champion`)
//! points to one artifact of that model, and every move is audited.
//!
//! Contracts:
//! - An alias only points to an artifact produced by a run of the same
//!   model (`model_name`); an artifact of another model is a conflict (the
//!   request is well formed; the artifact it names does not fit).
//! - `model_name` is a name of 1 to 255 characters, the alias one of 1 to
//!   100 characters without `@`, `moved_by` a name of 1 to 100 characters
//!   and `reason` text of at most 1024 characters, all without control
//!   characters ([`crate::platform::names`]).
//! - A move updates (or creates) the alias and appends one `alias_history`
//!   row in the same transaction: the pointer and its audit trail never
//!   disagree.
//! - The same transaction writes the move's `alias.moved` event into the
//!   outbox ([`crate::platform::outbox`]), under the `model_id` of the run
//!   the alias now points into.
//! - Moving an alias to the artifact it already points to changes nothing
//!   and records nothing.
//! - On PostgreSQL the alias row is locked (`SELECT ... FOR UPDATE`) for the
//!   move, so concurrent moves serialise and each history row's
//!   `from_artifact_id` is the artifact the alias really left. Two concurrent
//!   first moves of a new alias may race on its primary key: the loser gets
//!   a conflict and may retry. SQLite serialises writers itself.

use std::fmt;
use std::str::FromStr;

use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionSession, TransactionTrait,
};
use serde::Serialize;

use super::{MODEL_NAME_MAX, db_err};
use crate::engines::relational::{begin_write, lock_key};
use crate::error::{Error, Result};
use crate::platform::entities::{alias_history, model_alias, model_artifact, training_run};
use crate::platform::names::{check_name, check_optional_text};
use crate::platform::now;
use crate::platform::records::{Alias, AliasChange};

/// The longest alias, in characters.
pub const ALIAS_MAX: usize = 100;
/// The longest `moved_by`, in characters.
pub const MOVED_BY_MAX: usize = 100;
/// The longest `reason` of a move, in characters.
pub const REASON_MAX: usize = 1024;

/// A parsed `model_name@alias`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct AliasRef {
    /// The model, e.g. `fraud-detector`.
    pub model_name: String,
    /// The alias, e.g. `champion`.
    pub alias: String,
}

impl AliasRef {
    /// Builds a reference, validating both parts: names of at most 255 and
    /// 100 characters, and the alias without `@`.
    pub fn new(model_name: impl Into<String>, alias: impl Into<String>) -> Result<AliasRef> {
        let r = AliasRef {
            model_name: model_name.into(),
            alias: alias.into(),
        };
        check_name("model_name", &r.model_name, MODEL_NAME_MAX)?;
        check_name("alias", &r.alias, ALIAS_MAX)?;
        if r.alias.contains('@') {
            return Err(Error::invalid("an alias must not contain `@`").with_field("alias"));
        }
        Ok(r)
    }
}

impl FromStr for AliasRef {
    type Err = Error;

    /// Parses `model_name@alias`, splitting at the last `@`.
    fn from_str(s: &str) -> Result<AliasRef> {
        let (model, alias) = s.rsplit_once('@').ok_or_else(|| {
            Error::invalid(format!(
                "`{s}` is not an alias reference: expected `model_name@alias`"
            ))
            .with_field("alias")
        })?;
        AliasRef::new(model, alias)
    }
}

impl fmt::Display for AliasRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.model_name, self.alias)
    }
}

/// What a move did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasMove {
    /// The alias as it now is.
    pub alias: Alias,
    /// The audit row written; `None` when the alias already pointed there.
    pub history: Option<AliasChange>,
}

/// Points `alias` at `artifact_id`, recording who moved it and why. See the
/// module docs for the contracts. A missing artifact is NotFound, one of
/// another model a conflict.
pub async fn move_alias<C>(
    db: &C,
    alias: &AliasRef,
    artifact_id: i64,
    moved_by: &str,
    reason: Option<&str>,
) -> Result<AliasMove>
where
    C: ConnectionTrait + TransactionTrait,
{
    check_name("moved_by", moved_by, MOVED_BY_MAX)?;
    check_optional_text("reason", reason, REASON_MAX)?;
    let txn = begin_write(db).await.map_err(db_err("move_alias"))?;
    let (artifact, run) = model_artifact::Entity::find_by_id(artifact_id)
        .find_also_related(training_run::Entity)
        .one(&txn)
        .await
        .map_err(db_err("move_alias"))?
        .ok_or_else(|| {
            Error::not_found(format!("no model artifact {artifact_id}"))
                .with_field("artifact_id")
                .with_operation("move_alias")
        })?;
    let (run_model, to_model_id) = run.map(|r| (r.model_name, r.model_id)).unwrap_or_default();
    if run_model != alias.model_name {
        return Err(Error::conflict(format!(
            "artifact {} belongs to model `{run_model}`, not `{}`",
            artifact.id, alias.model_name
        ))
        .with_field("artifact_id")
        .with_operation("move_alias"));
    }
    // Two first moves of one alias would both find no row to lock, and
    // both insert it.
    lock_key(&txn, &format!("alias:{}@{}", alias.model_name, alias.alias))
        .await
        .map_err(db_err("move_alias"))?;
    let current = model_alias::Entity::find_by_id((alias.model_name.clone(), alias.alias.clone()))
        .lock_exclusive()
        .one(&txn)
        .await
        .map_err(db_err("move_alias"))?;
    if let Some(current) = &current
        && current.artifact_id == artifact_id
    {
        txn.commit().await.map_err(db_err("move_alias"))?;
        return Ok(AliasMove {
            alias: current.clone().into(),
            history: None,
        });
    }
    let at = now();
    let from = current.as_ref().map(|c| c.artifact_id);
    let updated = match current {
        Some(current) => {
            let mut active: model_alias::ActiveModel = current.into();
            active.artifact_id = Set(artifact_id);
            active.updated_at = Set(at);
            active.update(&txn).await
        }
        None => {
            model_alias::ActiveModel {
                model_name: Set(alias.model_name.clone()),
                alias: Set(alias.alias.clone()),
                artifact_id: Set(artifact_id),
                updated_at: Set(at),
            }
            .insert(&txn)
            .await
        }
    }
    .map_err(db_err("move_alias"))?;
    let history = alias_history::ActiveModel {
        id: NotSet,
        model_name: Set(alias.model_name.clone()),
        alias: Set(alias.alias.clone()),
        from_artifact_id: Set(from),
        to_artifact_id: Set(artifact_id),
        moved_at: Set(at),
        moved_by: Set(moved_by.to_owned()),
        reason: Set(reason.map(str::to_owned)),
    }
    .insert(&txn)
    .await
    .map_err(db_err("move_alias"))?;
    let from_model_id = match from {
        Some(from) => model_artifact::Entity::find_by_id(from)
            .find_also_related(training_run::Entity)
            .one(&txn)
            .await
            .map_err(db_err("move_alias"))?
            .and_then(|(_, run)| run)
            .map(|run| run.model_id),
        None => None,
    };
    crate::platform::outbox::enqueue(
        &txn,
        crate::platform::outbox::topics::ALIAS_MOVED,
        &to_model_id,
        serde_json::json!({
            "model_name": alias.model_name,
            "alias": alias.alias,
            "from_artifact_id": from,
            "from_model_id": from_model_id,
            "to_artifact_id": artifact_id,
            "moved_by": moved_by,
            "reason": reason,
            "moved_at": at,
        }),
    )
    .await?;
    txn.commit().await.map_err(db_err("move_alias"))?;
    Ok(AliasMove {
        alias: updated.into(),
        history: Some(history.into()),
    })
}

/// Where `alias` points, or NotFound.
pub async fn resolve_alias(
    db: &impl ConnectionTrait,
    alias: &AliasRef,
) -> Result<model_alias::Model> {
    model_alias::Entity::find_by_id((alias.model_name.clone(), alias.alias.clone()))
        .one(db)
        .await
        .map_err(db_err("resolve_alias"))?
        .ok_or_else(|| Error::not_found(format!("no alias `{alias}`")).with_field("alias"))
}

/// The `model_id` of the run whose artifact `alias` points at; `None`
/// when there is no such alias.
pub async fn model_of_alias(db: &impl ConnectionTrait, alias: &AliasRef) -> Result<Option<String>> {
    let Some(found) =
        model_alias::Entity::find_by_id((alias.model_name.clone(), alias.alias.clone()))
            .one(db)
            .await
            .map_err(db_err("model_of_alias"))?
    else {
        return Ok(None);
    };
    let run = model_artifact::Entity::find_by_id(found.artifact_id)
        .find_also_related(training_run::Entity)
        .one(db)
        .await
        .map_err(db_err("model_of_alias"))?
        .and_then(|(_, run)| run)
        .ok_or_else(|| {
            Error::internal(format!(
                "alias `{alias}` points at artifact {} of no run",
                found.artifact_id
            ))
        })?;
    Ok(Some(run.model_id))
}

/// Every move of `alias`, oldest first.
pub async fn alias_history(
    db: &impl ConnectionTrait,
    alias: &AliasRef,
) -> Result<Vec<alias_history::Model>> {
    alias_history::Entity::find()
        .filter(alias_history::Column::ModelName.eq(alias.model_name.as_str()))
        .filter(alias_history::Column::Alias.eq(alias.alias.as_str()))
        .order_by_asc(alias_history::Column::Id)
        .all(db)
        .await
        .map_err(db_err("alias_history"))
}
