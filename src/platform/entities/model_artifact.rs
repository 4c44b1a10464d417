//! `model_artifacts`: a stored model produced by a run (weights file,
//! exported graph, ...).

use sea_orm::entity::prelude::*;
use serde::Serialize;

/// One artifact.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "model_artifacts")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The run that produced it.
    pub run_id: i64,
    /// Where it is stored, e.g. `s3://models/fraud/v2/model.pt`.
    pub uri: String,
    /// Serialization format: `torchscript`, `onnx`, `savedmodel`, ...
    pub format: String,
    /// Size in bytes (never negative).
    pub size_bytes: i64,
    /// Content checksum, e.g. `sha256:...`.
    pub checksum: String,
    /// When it was registered (UTC).
    pub created_at: DateTimeUtc,
}

/// Relations of an artifact.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The run that produced it.
    #[sea_orm(
        belongs_to = "super::training_run::Entity",
        from = "Column::RunId",
        to = "super::training_run::Column::Id",
        on_delete = "Restrict"
    )]
    TrainingRun,
    /// Where it is deployed.
    #[sea_orm(has_many = "super::deployment::Entity")]
    Deployments,
}

impl Related<super::training_run::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::TrainingRun.def()
    }
}

impl Related<super::deployment::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deployments.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
