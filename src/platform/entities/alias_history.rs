//! `alias_history`: the audit trail of alias moves, one row per move,
//! never updated.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// One move of one alias.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "alias_history")]
pub struct Model {
    /// Surrogate key; increases with each move.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The model the alias belongs to.
    pub model_name: String,
    /// The alias that moved.
    pub alias: String,
    /// Where it pointed before; `None` when the alias was created.
    pub from_artifact_id: Option<i64>,
    /// Where it points after the move.
    pub to_artifact_id: i64,
    /// When it moved (UTC).
    pub moved_at: DateTimeUtc,
    /// Who moved it.
    pub moved_by: String,
    /// Why, if given.
    pub reason: Option<String>,
}

/// An audit row has no navigable relations; its artifact ids are plain
/// references (foreign keys in the schema).
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
