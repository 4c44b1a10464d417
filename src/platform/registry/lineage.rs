//! Lineage: which runs trained on a dataset, which artifacts they produced,
//! and where those are deployed.
//!
//! Loaded level by level with sea-orm's loader: four statements (dataset,
//! runs, artifacts, deployments) however wide the tree is.

use sea_orm::{ConnectionTrait, EntityTrait, LoaderTrait, ModelTrait, QueryOrder};
use serde::Serialize;

use super::{dataset_by_name, db_err};
use crate::error::Result;
use crate::platform::entities::{deployment, model_artifact, training_run};
use crate::platform::records::{Artifact, Dataset, Deployment, Run};

/// A dataset and everything trained from it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetLineage {
    /// The dataset.
    pub dataset: Dataset,
    /// Its runs, by id.
    pub runs: Vec<RunLineage>,
}

/// A run and what it produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunLineage {
    /// The run.
    pub run: Run,
    /// Its artifacts, by id.
    pub artifacts: Vec<ArtifactLineage>,
}

/// An artifact and where it serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactLineage {
    /// The artifact.
    pub artifact: Artifact,
    /// Its deployments, by id.
    pub deployments: Vec<Deployment>,
}

/// The lineage tree of the dataset called `name`, or NotFound.
pub async fn dataset_lineage(db: &impl ConnectionTrait, name: &str) -> Result<DatasetLineage> {
    let dataset = dataset_by_name(db, name).await?;
    let runs = dataset
        .find_related(training_run::Entity)
        .order_by_asc(training_run::Column::Id)
        .all(db)
        .await
        .map_err(db_err("dataset_lineage"))?;
    let artifacts = runs
        .load_many(
            model_artifact::Entity::find().order_by_asc(model_artifact::Column::Id),
            db,
        )
        .await
        .map_err(db_err("dataset_lineage"))?;
    // One loader call for the artifacts of every run: flatten, load, then
    // hand the deployments back out in the same order.
    let flat: Vec<model_artifact::Model> = artifacts.iter().flatten().cloned().collect();
    let mut deployments = flat
        .load_many(
            deployment::Entity::find().order_by_asc(deployment::Column::Id),
            db,
        )
        .await
        .map_err(db_err("dataset_lineage"))?
        .into_iter();
    let runs = runs
        .into_iter()
        .zip(artifacts)
        .map(|(run, artifacts)| RunLineage {
            run: run.into(),
            artifacts: artifacts
                .into_iter()
                .map(|artifact| ArtifactLineage {
                    artifact: artifact.into(),
                    deployments: deployments
                        .next()
                        .unwrap_or_default()
                        .into_iter()
                        .map(Into::into)
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(DatasetLineage {
        dataset: dataset.into(),
        runs,
    })
}
