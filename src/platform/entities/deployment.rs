//! `deployments`: an artifact serving in an environment with a share of
//! the traffic.

use std::fmt;
use std::str::FromStr;

use sea_orm::entity::prelude::*;
use serde::Serialize;

use crate::error::Error;

/// Where a deployment is in its life. Stored as its lower-case name; the
/// database also refuses any other value (CHECK constraint).
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
pub enum DeploymentStatus {
    /// Created, not serving yet.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Serving its traffic weight.
    #[sea_orm(string_value = "active")]
    Active,
    /// No longer serving.
    #[sea_orm(string_value = "retired")]
    Retired,
}

impl DeploymentStatus {
    /// The stored name: `pending`, `active` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::Active => "active",
            DeploymentStatus::Retired => "retired",
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeploymentStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        [
            DeploymentStatus::Pending,
            DeploymentStatus::Active,
            DeploymentStatus::Retired,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown deployment status `{s}`: expected pending, active or retired"
            ))
            .with_field("status")
        })
    }
}

/// One deployment.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The artifact being served.
    pub artifact_id: i64,
    /// `staging`, `production`, ...
    pub environment: String,
    /// Life-cycle state.
    pub status: DeploymentStatus,
    /// Share of the environment's traffic, in `[0, 1]`.
    pub traffic_weight: f64,
    /// When it started serving (UTC).
    pub deployed_at: Option<DateTimeUtc>,
    /// When it stopped serving (UTC).
    pub retired_at: Option<DateTimeUtc>,
}

/// Relations of a deployment.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The artifact being served.
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
