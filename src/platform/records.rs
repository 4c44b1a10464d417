//! The records the platform's services hand out: plain data owned by the
//! platform, so that callers (the HTTP API, the command line) never see how
//! an engine stores them. Each is built from the relational engine's row of
//! the same name (`From` the sea-orm model in [`super::entities`]); the
//! rows stay inside the platform.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::entities::{
    alias_history, dataset, deployment, model_alias, model_artifact, training_run,
};

pub use super::entities::RunStatus;
pub use super::entities::deployment::DeploymentStatus;

/// Declares a record with the fields of a row, and its `From` the row.
macro_rules! record {
    ($(#[$meta:meta])* $name:ident from $row:path { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl From<$row> for $name {
            fn from(row: $row) -> $name {
                $name { $($field: row.$field,)* }
            }
        }
    };
}

record! {
    /// A dataset runs train on.
    Dataset from dataset::Model {
        /// Its id.
        id: i64,
        /// Its unique name.
        name: String,
        /// What it holds.
        description: Option<String>,
        /// Rows, when known.
        total_rows: Option<i64>,
        /// Features, when known.
        total_features: Option<i32>,
        /// When it was registered (UTC).
        created_at: DateTime<Utc>,
        /// Who registered it.
        created_by: Option<String>,
    }
}

record! {
    /// One training run of a model.
    Run from training_run::Model {
        /// Its id.
        id: i64,
        /// The dataset it trained on.
        dataset_id: i64,
        /// The model's id, shared with its config document and counters.
        model_id: String,
        /// The model's name.
        model_name: String,
        /// `pytorch`, `tensorflow`, `xgboost`, ...
        framework: String,
        /// Where it stands.
        status: RunStatus,
        /// Final accuracy, once completed.
        accuracy: Option<f64>,
        /// Final loss, once completed.
        loss: Option<f64>,
        /// Wall-clock training time, once finished.
        training_time_seconds: Option<i64>,
        /// When training started (UTC).
        started_at: DateTime<Utc>,
        /// When training finished (UTC), if it has.
        completed_at: Option<DateTime<Utc>>,
    }
}

record! {
    /// A file a run produced.
    Artifact from model_artifact::Model {
        /// Its id.
        id: i64,
        /// The run that produced it.
        run_id: i64,
        /// Where it is stored.
        uri: String,
        /// Its format (`onnx`, `pt`, ...).
        format: String,
        /// Its size.
        size_bytes: i64,
        /// Its checksum.
        checksum: String,
        /// When it was recorded (UTC).
        created_at: DateTime<Utc>,
    }
}

record! {
    /// Where `model@alias` points.
    Alias from model_alias::Model {
        /// The model's name.
        model_name: String,
        /// The alias (`production`, `staging`, ...).
        alias: String,
        /// The artifact it points at.
        artifact_id: i64,
        /// When it last moved (UTC).
        updated_at: DateTime<Utc>,
    }
}

record! {
    /// One move of an alias.
    AliasChange from alias_history::Model {
        /// Its id.
        id: i64,
        /// The model's name.
        model_name: String,
        /// The alias.
        alias: String,
        /// Where it pointed before, if anywhere.
        from_artifact_id: Option<i64>,
        /// Where it points since.
        to_artifact_id: i64,
        /// When (UTC).
        moved_at: DateTime<Utc>,
        /// Who moved it.
        moved_by: String,
        /// Why.
        reason: Option<String>,
    }
}

record! {
    /// An artifact served in an environment.
    Deployment from deployment::Model {
        /// Its id.
        id: i64,
        /// The artifact being served.
        artifact_id: i64,
        /// `staging`, `production`, ...
        environment: String,
        /// Where it stands.
        status: DeploymentStatus,
        /// Share of the environment's traffic, in `[0, 1]`.
        traffic_weight: f64,
        /// When it started serving (UTC).
        deployed_at: Option<DateTime<Utc>>,
        /// When it stopped serving (UTC).
        retired_at: Option<DateTime<Utc>>,
    }
}
