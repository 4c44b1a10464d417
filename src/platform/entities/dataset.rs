//! `datasets`: a named training dataset. Names are unique.

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// One dataset.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "datasets")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique name, e.g. `fraud-train-v1`.
    #[sea_orm(unique)]
    pub name: String,
    /// What the data is.
    pub description: Option<String>,
    /// Number of rows, when known.
    pub total_rows: Option<i64>,
    /// Number of features, when known.
    pub total_features: Option<i32>,
    /// When it was registered (UTC).
    pub created_at: DateTimeUtc,
    /// Who registered it.
    pub created_by: Option<String>,
}

/// Relations of a dataset.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The runs trained on this dataset.
    #[sea_orm(has_many = "super::training_run::Entity")]
    TrainingRuns,
}

impl Related<super::training_run::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TrainingRuns.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
