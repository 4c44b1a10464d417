//! `training_runs`: one training of a model on a dataset. `model_id` is
//! unique and links the run to its config document in the document engine.

use std::fmt;
use std::str::FromStr;

use sea_orm::entity::prelude::*;
use serde::Serialize;

use crate::error::Error;

/// Where a run is in its life. Stored as its lower-case name; the database
/// also refuses any other value (CHECK constraint).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Training is under way; no metrics yet.
    #[sea_orm(string_value = "running")]
    Running,
    /// Training finished; metrics are recorded.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Training stopped with an error.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl RunStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [RunStatus; 3] = [RunStatus::Running, RunStatus::Completed, RunStatus::Failed];

    /// The stored name: `running`, `completed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown run status `{s}`: expected running, completed or failed"
                ))
                .with_field("status")
            })
    }
}

/// One training run.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "training_runs")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The dataset it trained on.
    pub dataset_id: i64,
    /// Unique id shared with the run's config document.
    #[sea_orm(unique)]
    pub model_id: String,
    /// The model's name, e.g. `fraud-detector`.
    pub model_name: String,
    /// `pytorch`, `tensorflow`, `xgboost`, ...
    pub framework: String,
    /// Life-cycle state.
    pub status: RunStatus,
    /// Final accuracy, once completed.
    pub accuracy: Option<f64>,
    /// Final loss, once completed.
    pub loss: Option<f64>,
    /// Wall-clock training time, once finished.
    pub training_time_seconds: Option<i64>,
    /// When training started (UTC).
    pub started_at: DateTimeUtc,
    /// When training finished (UTC), if it has.
    pub completed_at: Option<DateTimeUtc>,
}

/// Relations of a run.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The dataset it trained on.
    #[sea_orm(
        belongs_to = "super::dataset::Entity",
        from = "Column::DatasetId",
        to = "super::dataset::Column::Id",
        on_delete = "Restrict"
    )]
    Dataset,
    /// Its tags.
    #[sea_orm(has_many = "super::run_tag::Entity")]
    RunTags,
    /// The artifacts it produced.
    #[sea_orm(has_many = "super::model_artifact::Entity")]
    ModelArtifacts,
}

impl Related<super::dataset::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Dataset.def()
    }
}

impl Related<super::run_tag::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::RunTags.def()
    }
}

impl Related<super::model_artifact::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::ModelArtifacts.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
