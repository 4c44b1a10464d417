//! `fences`: the highest fencing token each protected resource has seen
//! (see `registry::fenced`).

use sea_orm::entity::prelude::*;

/// One protected resource.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "fences")]
pub struct Model {
    /// What is protected, e.g. `run:{model_id}`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource: String,
    /// The highest fencing token that wrote to it.
    pub fence: i64,
    /// When that token last wrote.
    pub updated_at: DateTimeUtc,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
