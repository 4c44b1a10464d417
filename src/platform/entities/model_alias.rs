//! `model_aliases`: a movable name for one artifact of a model, written
//! `model_name@alias` (e.g. `fraud-detector@champion`). Every move is
//! recorded in `alias_history`.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// Where one alias points now.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "model_aliases")]
pub struct Model {
    /// The model the alias belongs to.
    #[sea_orm(primary_key, auto_increment = false)]
    pub model_name: String,
    /// The alias, e.g. `champion`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub alias: String,
    /// The artifact it points to.
    pub artifact_id: i64,
    /// When it last moved (UTC).
    pub updated_at: DateTimeUtc,
}

/// Relations of an alias.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The artifact it points to.
    #[sea_orm(
        belongs_to = "super::model_artifact::Entity",
        from = "Column::ArtifactId",
        to = "super::model_artifact::Column::Id",
        on_delete = "Restrict"
    )]
    ModelArtifact,
}

impl Related<super::model_artifact::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ModelArtifact.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
