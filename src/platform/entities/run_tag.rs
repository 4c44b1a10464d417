//! `run_tags`: free-form `key = value` labels of a run, one value per key.
//! Deleted with their run.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// One tag of one run.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "run_tags")]
pub struct Model {
    /// The tagged run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: i64,
    /// Tag name, unique per run.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// Relations of a tag.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The tagged run.
    #[sea_orm(
        belongs_to = "super::training_run::Entity",
        from = "Column::RunId",
        to = "super::training_run::Column::Id",
        on_delete = "Cascade"
    )]
    TrainingRun,
}

impl Related<super::training_run::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TrainingRun.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
