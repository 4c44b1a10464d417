//! [`Registry`]: the registry as a service over the relational engine, as
//! the API and the command line use it. Each method is the function of the
//! same purpose in [`crate::platform::registry`], with the connection held
//! here, behind the relational engine's circuit breaker
//! ([`Layers::guard`]): once the engine is known to be down, calls fail at
//! once instead of each waiting out the pool's acquire timeout.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use super::aliases::{self, AliasMove, AliasRef};
use super::analytics::{self, DatasetStats, FrameworkStats, RankedRun, TopModel};
use super::lineage::{self, DatasetLineage};
use super::pages::{self, RunCursor, RunList};
use super::{NewDataset, RunDetails, RunOutcome};
use crate::cache::Tier;
use crate::engines::layers::Layers;
use crate::engines::relational::backend_name;
use crate::error::Result;
use crate::platform::outbox::Outbox;
use crate::platform::records::{Alias, AliasChange, Dataset, Run};
use crate::platform::rows::RowCaches;
use crate::platform::search::{self, RunPage};

/// Datasets, runs, aliases and their analytics. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    db: DatabaseConnection,
    /// The relational engine's breaker and metrics.
    relational: Arc<Layers>,
    /// Runs by id, cached.
    rows: RowCaches,
    /// Told when a write committed an event.
    outbox: Outbox,
}

impl Registry {
    pub(crate) fn new(
        db: DatabaseConnection,
        relational: Arc<Layers>,
        rows: RowCaches,
        outbox: Outbox,
    ) -> Registry {
        Registry {
            db,
            relational,
            rows,
            outbox,
        }
    }

    /// The relational backend's name: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        backend_name(&self.db)
    }

    /// Registers a dataset; a taken name is a conflict.
    pub async fn create_dataset(&self, new: NewDataset) -> Result<Dataset> {
        self.relational
            .guard("create_dataset", super::create_dataset(&self.db, new))
            .await
            .map(Dataset::from)
    }

    /// The dataset called `name`, or NotFound.
    pub async fn dataset(&self, name: &str) -> Result<Dataset> {
        self.relational
            .guard("dataset", super::dataset_by_name(&self.db, name))
            .await
            .map(Dataset::from)
    }

    /// Datasets by name after `after`, at most `page_size`, and whether
    /// more follow.
    pub async fn datasets(
        &self,
        after: Option<&str>,
        page_size: u64,
    ) -> Result<(Vec<Dataset>, bool)> {
        self.relational
            .guard("datasets", super::list_datasets(&self.db, after, page_size))
            .await
            .map(|(page, more)| (page.into_iter().map(Dataset::from).collect(), more))
    }

    /// A dataset with its training statistics.
    pub async fn dataset_statistics(&self, name: &str) -> Result<(Dataset, DatasetStats)> {
        self.relational
            .guard(
                "dataset_statistics",
                analytics::dataset_statistics(&self.db, name),
            )
            .await
            .map(|(dataset, stats)| (dataset.into(), stats))
    }

    /// A dataset with its runs, their artifacts and deployments.
    pub async fn lineage(&self, name: &str) -> Result<DatasetLineage> {
        self.relational
            .guard("lineage", lineage::dataset_lineage(&self.db, name))
            .await
    }

    /// The run `model_id` with its dataset, tags and artifacts.
    pub async fn run(&self, model_id: &str) -> Result<RunDetails> {
        self.run_cached(model_id).await.map(|(run, _)| run)
    }

    /// [`Registry::run`] through the `runs` cache, with the tier that
    /// answered.
    pub async fn run_cached(&self, model_id: &str) -> Result<(RunDetails, Tier)> {
        let (db, relational, id) = (
            self.db.clone(),
            Arc::clone(&self.relational),
            model_id.to_owned(),
        );
        let lookup = self
            .rows
            .run(model_id, move || async move {
                relational
                    .guard("run", super::find_run_details(&db, &id))
                    .await
            })
            .await?;
        let details = lookup.value.ok_or_else(|| super::no_run(model_id))?;
        Ok((details, lookup.tier))
    }

    /// Records how the running run `model_id` ended.
    pub async fn complete_run(&self, model_id: &str, outcome: RunOutcome) -> Result<Run> {
        let run = self
            .relational
            .guard(
                "complete_run",
                super::complete_run(&self.db, model_id, outcome),
            )
            .await
            .map(Run::from)?;
        self.outbox.committed().await;
        self.rows.model_changed(model_id).await;
        Ok(run)
    }

    /// One page of runs matching a filter of the run search language.
    pub async fn search_runs(
        &self,
        filter: &str,
        order_by: &str,
        page_size: u64,
        page_token: Option<&str>,
    ) -> Result<RunPage> {
        self.relational
            .guard(
                "search_runs",
                search::search_runs(&self.db, filter, order_by, page_size, page_token),
            )
            .await
    }

    /// Runs by `(started_at, id)` after a cursor: keyset pages.
    pub async fn runs_page(&self, after: Option<RunCursor>, limit: u64) -> Result<RunList> {
        self.relational
            .guard("runs_page", pages::list_runs(&self.db, after, limit))
            .await
    }

    /// The best `n` completed runs by accuracy, with their dataset.
    pub async fn top_models(&self, n: u64) -> Result<Vec<TopModel>> {
        self.relational
            .guard("top_models", analytics::top_models_by_accuracy(&self.db, n))
            .await
    }

    /// Runs and accuracy per framework.
    pub async fn framework_comparison(&self) -> Result<Vec<FrameworkStats>> {
        self.relational
            .guard(
                "framework_comparison",
                analytics::framework_comparison(&self.db),
            )
            .await
    }

    /// Every completed run with an accuracy: `(model_id, accuracy,
    /// completed_at)`.
    pub async fn completed_accuracies(
        &self,
    ) -> Result<Vec<(String, f64, chrono::DateTime<chrono::Utc>)>> {
        self.relational
            .guard(
                "completed_accuracies",
                super::completed_accuracies(&self.db),
            )
            .await
    }

    /// Sets tags of the run `model_id` as the holder of a lock with
    /// fencing token `fence`: Conflict, writing nothing, when a newer token
    /// already wrote to this run ([`super::set_run_tags_fenced`]).
    pub async fn set_run_tags_fenced(
        &self,
        model_id: &str,
        tags: std::collections::BTreeMap<String, String>,
        fence: u64,
    ) -> Result<()> {
        self.relational
            .guard(
                "set_run_tags_fenced",
                super::set_run_tags_fenced(&self.db, model_id, tags, fence),
            )
            .await?;
        self.rows.model_changed(model_id).await;
        Ok(())
    }

    /// Completed runs ranked overall and within their framework.
    pub async fn rank_runs(&self) -> Result<Vec<RankedRun>> {
        self.relational
            .guard("rank_runs", analytics::rank_runs(&self.db))
            .await
    }

    /// Where `model@alias` points now, or NotFound.
    pub async fn resolve_alias(&self, alias: &AliasRef) -> Result<Alias> {
        self.relational
            .guard("resolve_alias", aliases::resolve_alias(&self.db, alias))
            .await
            .map(Alias::from)
    }

    /// The `model_id` of the run whose artifact `model@alias` points at,
    /// through the `aliases` cache, with the tier that answered; NotFound
    /// when there is no such alias.
    pub async fn model_of_alias(&self, alias: &AliasRef) -> Result<(String, Tier)> {
        let (db, relational, key) = (self.db.clone(), Arc::clone(&self.relational), alias.clone());
        let lookup = self
            .rows
            .alias(&alias.to_string(), move || async move {
                relational
                    .guard("model_of_alias", aliases::model_of_alias(&db, &key))
                    .await
            })
            .await?;
        let model_id = lookup.value.ok_or_else(|| {
            crate::Error::not_found(format!("no alias `{alias}`")).with_field("alias")
        })?;
        Ok((model_id, lookup.tier))
    }

    /// Points `model@alias` at an artifact of that model, recording the
    /// move.
    pub async fn move_alias(
        &self,
        alias: &AliasRef,
        artifact_id: i64,
        moved_by: &str,
        reason: Option<&str>,
    ) -> Result<AliasMove> {
        let moved = self
            .relational
            .guard(
                "move_alias",
                aliases::move_alias(&self.db, alias, artifact_id, moved_by, reason),
            )
            .await?;
        if moved.history.is_some() {
            self.outbox.committed().await;
        }
        self.rows.alias_moved(&alias.to_string()).await;
        Ok(moved)
    }

    /// Every move of `model@alias`, oldest first.
    pub async fn alias_history(&self, alias: &AliasRef) -> Result<Vec<AliasChange>> {
        self.relational
            .guard("alias_history", aliases::alias_history(&self.db, alias))
            .await
            .map(|moves| moves.into_iter().map(AliasChange::from).collect())
    }
}
