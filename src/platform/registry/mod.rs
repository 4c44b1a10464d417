//! The model registry on the relational engine: functions over a sea-orm
//! connection (or transaction) that return typed rows and strata errors.
//!
//! Contracts, on SQLite and PostgreSQL alike:
//!
//! - Input is validated before it reaches the database, by the rules of
//!   [`crate::platform::names`]: a `model_id` that is not a model id, empty,
//!   blank or too long names, control characters in any text, unknown
//!   statuses, out-of-range metrics are
//!   [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming the
//!   field.
//! - A duplicate unique value (dataset name, run `model_id`) or a reference
//!   to a missing row is [`ErrorKind::Conflict`](crate::ErrorKind::Conflict);
//!   a missing row asked for by key is
//!   [`ErrorKind::NotFound`](crate::ErrorKind::NotFound).
//! - Functions that write more than one row take a connection that can open a
//!   transaction (a pool or an open transaction, where it nests as a
//!   savepoint) and write all or nothing.
//! - Loading runs with their dataset, tags and artifacts issues a fixed
//!   number of statements whatever the number of runs ([`runs_with_details`]).
//!
//! # Layout
//!
//! - this module: creating datasets, runs, artifacts, deployments; completing
//!   runs; bulk upserts; loading runs with their relations.
//! - [`analytics`]: top models, framework comparison, dataset statistics,
//!   window-function rankings.
//! - [`pages`]: keyset pagination of runs.
//! - [`lineage`]: dataset → runs → artifacts → deployments.
//! - [`aliases`]: `model@alias` pointers and their audited moves.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, Condition, ConnectionTrait, DbErr,
    EntityTrait, LoaderTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionSession,
    TransactionTrait,
};
use serde::Serialize;

use crate::engines::relational::begin_write;
use crate::engines::relational::map_db_err;
use crate::error::{Error, Result};
use crate::platform::entities::{
    DeploymentStatus, RunStatus, dataset, deployment, model_artifact, run_tag, training_run,
};
use crate::platform::names::{TAG_KEY_PATTERN, check_model_id, check_optional_text, check_text};
use crate::platform::now;
use crate::platform::records::{Artifact, Dataset, Run};

pub use crate::platform::names::{check_name, is_valid_tag_key};

pub mod aliases;
pub mod analytics;
pub mod lineage;
pub mod pages;
mod service;

pub use service::Registry;

/// Rows per statement in bulk writes: far below SQLite's and PostgreSQL's
/// bound-parameter limits for the widest row.
const BATCH_ROWS: usize = 500;

/// Maps a database error and names the operation.
pub(crate) fn db_err(operation: &'static str) -> impl FnOnce(DbErr) -> Error {
    move |e| map_db_err(e).with_operation(operation)
}

fn check_non_negative(field: &'static str, value: Option<i64>) -> Result<()> {
    match value {
        Some(v) if v < 0 => Err(
            Error::invalid(format!("`{field}` must not be negative, got {v}")).with_field(field),
        ),
        _ => Ok(()),
    }
}

/// The longest dataset name, in characters.
pub const DATASET_NAME_MAX: usize = 255;
/// The longest dataset description, in characters.
pub const DESCRIPTION_MAX: usize = 4096;
/// The longest `created_by`, in characters.
pub const CREATED_BY_MAX: usize = 100;
/// The longest model name, in characters.
pub const MODEL_NAME_MAX: usize = 255;
/// The longest framework name, in characters.
pub const FRAMEWORK_MAX: usize = 50;
/// The longest tag value, in characters.
pub const TAG_VALUE_MAX: usize = 1024;

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in tags {
        if !is_valid_tag_key(key) {
            return Err(Error::invalid(format!(
                "tag key `{}` must match {TAG_KEY_PATTERN}: 1 to 255 ASCII letters, digits, `_`, `-` or `.`",
                key.escape_debug()
            ))
            .with_field("tags"));
        }
        check_text("tags", value, TAG_VALUE_MAX).map_err(|e| {
            Error::invalid(format!("the value of tag `{key}`: {}", e.message())).with_field("tags")
        })?;
    }
    Ok(())
}

fn check_unit_interval(field: &'static str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(Error::invalid(format!(
            "`{field}` must be between 0 and 1, got {v}"
        ))
        .with_field(field)),
        _ => Ok(()),
    }
}

fn check_finite(field: &'static str, value: Option<f64>) -> Result<()> {
    match value {
        Some(v) if !v.is_finite() => {
            Err(Error::invalid(format!("`{field}` must be a finite number")).with_field(field))
        }
        _ => Ok(()),
    }
}

/// A dataset to register.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewDataset {
    /// Unique name, 1 to 255 characters.
    pub name: String,
    /// What the data is (at most 4096 characters).
    pub description: Option<String>,
    /// Number of rows, when known (not negative).
    pub total_rows: Option<i64>,
    /// Number of features, when known (not negative).
    pub total_features: Option<i32>,
    /// Who registers it (at most 100 characters).
    pub created_by: Option<String>,
}

impl NewDataset {
    fn validate(&self) -> Result<()> {
        check_name("name", &self.name, DATASET_NAME_MAX)?;
        check_optional_text("description", self.description.as_deref(), DESCRIPTION_MAX)?;
        check_optional_text("created_by", self.created_by.as_deref(), CREATED_BY_MAX)?;
        check_non_negative("total_rows", self.total_rows)?;
        check_non_negative("total_features", self.total_features.map(i64::from))
    }

    fn into_active(self, created_at: DateTime<Utc>) -> dataset::ActiveModel {
        dataset::ActiveModel {
            id: NotSet,
            name: Set(self.name),
            description: Set(self.description),
            total_rows: Set(self.total_rows),
            total_features: Set(self.total_features),
            created_at: Set(created_at),
            created_by: Set(self.created_by),
        }
    }
}

/// Registers a dataset. A taken name is a conflict.
pub async fn create_dataset(db: &impl ConnectionTrait, new: NewDataset) -> Result<dataset::Model> {
    new.validate()?;
    new.into_active(now())
        .insert(db)
        .await
        .map_err(db_err("create_dataset"))
}

/// The dataset called `name`, or NotFound.
pub async fn dataset_by_name(db: &impl ConnectionTrait, name: &str) -> Result<dataset::Model> {
    dataset::Entity::find()
        .filter(dataset::Column::Name.eq(name))
        .one(db)
        .await
        .map_err(db_err("dataset_by_name"))?
        .ok_or_else(|| Error::not_found(format!("no dataset named `{name}`")).with_field("name"))
}

/// Inserts datasets, or updates the description, sizes and author of those
/// whose name exists (`ON CONFLICT (name) DO UPDATE`), all or nothing.
/// `created_at` of an existing dataset is kept. Returns how many rows were
/// inserted or updated. The same name twice in one call is invalid input
/// (PostgreSQL refuses to update one row twice in a statement).
pub async fn upsert_datasets<C>(db: &C, datasets: Vec<NewDataset>) -> Result<u64>
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut names = HashSet::new();
    for d in &datasets {
        d.validate()?;
        if !names.insert(d.name.clone()) {
            return Err(Error::invalid(format!(
                "dataset `{}` appears twice in one upsert",
                d.name
            ))
            .with_field("name"));
        }
    }
    let created_at = now();
    let txn = begin_write(db).await.map_err(db_err("upsert_datasets"))?;
    let mut affected = 0;
    let mut rows = datasets.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows
            .by_ref()
            .take(BATCH_ROWS)
            .map(|d| d.into_active(created_at))
            .collect();
        affected += dataset::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::column(dataset::Column::Name)
                    .update_columns([
                        dataset::Column::Description,
                        dataset::Column::TotalRows,
                        dataset::Column::TotalFeatures,
                        dataset::Column::CreatedBy,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_err("upsert_datasets"))?;
    }
    txn.commit().await.map_err(db_err("upsert_datasets"))?;
    Ok(affected)
}

/// A training run to start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewRun {
    /// The dataset it trains on (must exist).
    pub dataset_id: i64,
    /// Unique id shared with the config document, as
    /// [`MODEL_ID_PATTERN`](crate::platform::names::MODEL_ID_PATTERN)
    /// requires.
    pub model_id: String,
    /// The model's name, 1 to 255 characters.
    pub model_name: String,
    /// The framework, 1 to 50 characters.
    pub framework: String,
    /// Labels; keys as [`is_valid_tag_key`] requires.
    pub tags: BTreeMap<String, String>,
    /// When training started; now when `None`.
    pub started_at: Option<DateTime<Utc>>,
}

/// Checks a run to be created, as [`create_run`] does, without writing:
/// names and tags.
pub(crate) fn check_new_run(
    model_id: &str,
    model_name: &str,
    framework: &str,
    tags: &BTreeMap<String, String>,
) -> Result<()> {
    check_run_names(model_id, model_name, framework)?;
    check_tags(tags)
}

/// Checks the id and names of a run: `model_id` as
/// [`MODEL_ID_PATTERN`](crate::platform::names::MODEL_ID_PATTERN) requires,
/// `model_name` and `framework` as names.
pub(crate) fn check_run_names(model_id: &str, model_name: &str, framework: &str) -> Result<()> {
    check_model_id("model_id", model_id)?;
    check_name("model_name", model_name, MODEL_NAME_MAX)?;
    check_name("framework", framework, FRAMEWORK_MAX)
}

/// Starts a run: inserts it as `running` with its tags, in one transaction.
/// A taken `model_id` or a missing dataset is a conflict.
pub async fn create_run<C>(db: &C, new: NewRun) -> Result<training_run::Model>
where
    C: ConnectionTrait + TransactionTrait,
{
    check_run_names(&new.model_id, &new.model_name, &new.framework)?;
    check_tags(&new.tags)?;
    let txn = begin_write(db).await.map_err(db_err("create_run"))?;
    let run = training_run::ActiveModel {
        id: NotSet,
        dataset_id: Set(new.dataset_id),
        model_id: Set(new.model_id),
        model_name: Set(new.model_name),
        framework: Set(new.framework),
        status: Set(RunStatus::Running),
        accuracy: Set(None),
        loss: Set(None),
        training_time_seconds: Set(None),
        started_at: Set(new.started_at.map_or_else(now, |t| t.trunc_subsecs(6))),
        completed_at: Set(None),
    }
    .insert(&txn)
    .await
    .map_err(db_err("create_run"))?;
    insert_tags(&txn, run.id, new.tags, "create_run").await?;
    txn.commit().await.map_err(db_err("create_run"))?;
    Ok(run)
}

async fn insert_tags(
    db: &impl ConnectionTrait,
    run_id: i64,
    tags: BTreeMap<String, String>,
    operation: &'static str,
) -> Result<()> {
    let rows = tags.into_iter().map(|(key, value)| (run_id, key, value));
    upsert_tag_rows(db, rows.collect(), operation).await
}

/// Inserts `(run_id, key, value)` rows, replacing the value of a key a run
/// already has, in statements of at most [`BATCH_ROWS`] rows.
async fn upsert_tag_rows(
    db: &impl ConnectionTrait,
    rows: Vec<(i64, String, String)>,
    operation: &'static str,
) -> Result<()> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk =
            rows.by_ref()
                .take(BATCH_ROWS)
                .map(|(run_id, key, value)| run_tag::ActiveModel {
                    run_id: Set(run_id),
                    key: Set(key),
                    value: Set(value),
                });
        run_tag::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([run_tag::Column::RunId, run_tag::Column::Key])
                    .update_column(run_tag::Column::Value)
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await
            .map_err(db_err(operation))?;
    }
    Ok(())
}

/// Sets tags of the run with `model_id`: each key is inserted or its value
/// replaced; other tags stay. NotFound when there is no such run.
pub async fn set_run_tags<C>(db: &C, model_id: &str, tags: BTreeMap<String, String>) -> Result<()>
where
    C: ConnectionTrait + TransactionTrait,
{
    check_tags(&tags)?;
    let run = run_by_model_id(db, model_id).await?;
    let txn = begin_write(db).await.map_err(db_err("set_run_tags"))?;
    insert_tags(&txn, run.id, tags, "set_run_tags").await?;
    txn.commit().await.map_err(db_err("set_run_tags"))
}

/// [`set_run_tags`] by the holder of a lock with fencing token `fence`
/// (see `serving::locks`): refused with Conflict, writing nothing, when a
/// newer token has already written to this run. The check and the write
/// are one transaction, serialised per run.
pub async fn set_run_tags_fenced<C>(
    db: &C,
    model_id: &str,
    tags: BTreeMap<String, String>,
    fence: u64,
) -> Result<()>
where
    C: ConnectionTrait + TransactionTrait,
{
    use crate::platform::entities::fence;
    const OP: &str = "set_run_tags_fenced";
    check_tags(&tags)?;
    let token = i64::try_from(fence)
        .map_err(|_| Error::invalid("a fencing token above 2^63 - 1").with_field("fence"))?;
    let run = run_by_model_id(db, model_id).await?;
    let resource = format!("run:{model_id}");
    let txn = begin_write(db).await.map_err(db_err(OP))?;
    crate::engines::relational::lock_key(&txn, &resource)
        .await
        .map_err(db_err(OP))?;
    let seen = fence::Entity::find_by_id(resource.clone())
        .one(&txn)
        .await
        .map_err(db_err(OP))?;
    match &seen {
        Some(seen) if seen.fence > token => {
            return Err(Error::conflict(format!(
                "fencing token {token} is older than token {} that already wrote to `{resource}`: \
                 the lock was lost and taken by another holder",
                seen.fence
            ))
            .with_field("fence"));
        }
        _ => {}
    }
    let row = fence::ActiveModel {
        resource: Set(resource),
        fence: Set(token),
        updated_at: Set(now()),
    };
    if seen.is_some() {
        row.update(&txn).await.map_err(db_err(OP))?;
    } else {
        row.insert(&txn).await.map_err(db_err(OP))?;
    }
    insert_tags(&txn, run.id, tags, OP).await?;
    txn.commit().await.map_err(db_err(OP))
}

/// The run with `model_id`, or NotFound.
pub async fn run_by_model_id(
    db: &impl ConnectionTrait,
    model_id: &str,
) -> Result<training_run::Model> {
    training_run::Entity::find()
        .filter(training_run::Column::ModelId.eq(model_id))
        .one(db)
        .await
        .map_err(db_err("run_by_model_id"))?
        .ok_or_else(|| {
            Error::not_found(format!("no training run with model_id `{model_id}`"))
                .with_field("model_id")
        })
}

/// How a run ended, and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// `Completed` or `Failed`; `Running` is invalid input.
    pub status: RunStatus,
    /// Final accuracy, in `[0, 1]`.
    pub accuracy: Option<f64>,
    /// Final loss, finite.
    pub loss: Option<f64>,
    /// Training time in seconds (not negative).
    pub training_time_seconds: Option<i64>,
    /// When it ended; now when `None`.
    pub completed_at: Option<DateTime<Utc>>,
}

/// Records how the running run `model_id` ended, and writes its
/// `run.completed` event in the same transaction (see
/// [`crate::platform::outbox`]). Only a `running` run can end: ending it
/// twice is a conflict (checked in the `UPDATE`'s `WHERE`, so two
/// concurrent completions cannot both succeed); an unknown run is NotFound.
/// Either way nothing is written.
pub async fn complete_run<C>(
    db: &C,
    model_id: &str,
    outcome: RunOutcome,
) -> Result<training_run::Model>
where
    C: ConnectionTrait + TransactionTrait,
{
    if outcome.status == RunStatus::Running {
        return Err(
            Error::invalid("a run ends as `completed` or `failed`, not `running`")
                .with_field("status"),
        );
    }
    check_unit_interval("accuracy", outcome.accuracy)?;
    check_finite("loss", outcome.loss)?;
    check_non_negative("training_time_seconds", outcome.training_time_seconds)?;
    let completed_at = outcome
        .completed_at
        .map_or_else(now, |t| t.trunc_subsecs(6));
    let txn = begin_write(db).await.map_err(db_err("complete_run"))?;
    let result = training_run::Entity::update_many()
        .col_expr(
            training_run::Column::Status,
            sea_orm::sea_query::Expr::value(outcome.status),
        )
        .col_expr(
            training_run::Column::Accuracy,
            sea_orm::sea_query::Expr::value(outcome.accuracy),
        )
        .col_expr(
            training_run::Column::Loss,
            sea_orm::sea_query::Expr::value(outcome.loss),
        )
        .col_expr(
            training_run::Column::TrainingTimeSeconds,
            sea_orm::sea_query::Expr::value(outcome.training_time_seconds),
        )
        .col_expr(
            training_run::Column::CompletedAt,
            sea_orm::sea_query::Expr::value(Some(completed_at)),
        )
        .filter(training_run::Column::ModelId.eq(model_id))
        .filter(training_run::Column::Status.eq(RunStatus::Running))
        .exec(&txn)
        .await
        .map_err(db_err("complete_run"))?;
    let run = run_by_model_id(&txn, model_id).await?;
    if result.rows_affected == 0 {
        return Err(Error::conflict(format!(
            "training run `{model_id}` already ended as `{}`",
            run.status
        ))
        .with_operation("complete_run"));
    }
    crate::platform::outbox::enqueue(
        &txn,
        crate::platform::outbox::topics::RUN_COMPLETED,
        &run.model_id,
        completed_event(&run),
    )
    .await?;
    txn.commit().await.map_err(db_err("complete_run"))?;
    Ok(run)
}

/// The `data` of a `run.completed` event.
fn completed_event(run: &training_run::Model) -> serde_json::Value {
    serde_json::json!({
        "run_id": run.id,
        "model_name": run.model_name,
        "framework": run.framework,
        "status": run.status.to_string(),
        "metrics": {
            "accuracy": run.accuracy,
            "loss": run.loss,
            "training_time_seconds": run.training_time_seconds,
        },
        "started_at": run.started_at,
        "completed_at": run.completed_at,
    })
}

/// A run written whole, for bulk loads and migrations.
#[derive(Debug, Clone, PartialEq)]
pub struct RunUpsert {
    /// The dataset (must exist).
    pub dataset_id: i64,
    /// Unique id, as
    /// [`MODEL_ID_PATTERN`](crate::platform::names::MODEL_ID_PATTERN)
    /// requires; the conflict key.
    pub model_id: String,
    /// The model's name.
    pub model_name: String,
    /// The framework.
    pub framework: String,
    /// Life-cycle state.
    pub status: RunStatus,
    /// Accuracy in `[0, 1]`.
    pub accuracy: Option<f64>,
    /// Loss, finite.
    pub loss: Option<f64>,
    /// Training time in seconds.
    pub training_time_seconds: Option<i64>,
    /// When training started.
    pub started_at: DateTime<Utc>,
    /// When training ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// Tags to set: each inserted or its value replaced; other tags of the
    /// run stay.
    pub tags: BTreeMap<String, String>,
}

impl RunUpsert {
    fn validate(&self) -> Result<()> {
        check_run_names(&self.model_id, &self.model_name, &self.framework)?;
        check_tags(&self.tags)?;
        check_unit_interval("accuracy", self.accuracy)?;
        check_finite("loss", self.loss)?;
        check_non_negative("training_time_seconds", self.training_time_seconds)
    }

    fn into_active(self) -> training_run::ActiveModel {
        training_run::ActiveModel {
            id: NotSet,
            dataset_id: Set(self.dataset_id),
            model_id: Set(self.model_id),
            model_name: Set(self.model_name),
            framework: Set(self.framework),
            status: Set(self.status),
            accuracy: Set(self.accuracy),
            loss: Set(self.loss),
            training_time_seconds: Set(self.training_time_seconds),
            started_at: Set(self.started_at.trunc_subsecs(6)),
            completed_at: Set(self.completed_at.map(|t| t.trunc_subsecs(6))),
        }
    }
}

/// Inserts runs, or overwrites every column but the id of those whose
/// `model_id` exists (`ON CONFLICT (model_id) DO UPDATE`), and sets their
/// tags, all or nothing. Returns how many run rows were inserted or
/// updated. The same `model_id` twice in one call is invalid input. Per
/// batch of 500 runs: one upsert, and when the batch has tags, one query of
/// the run ids and the tag upserts.
pub async fn upsert_runs<C>(db: &C, runs: Vec<RunUpsert>) -> Result<u64>
where
    C: ConnectionTrait + TransactionTrait,
{
    let mut ids = HashSet::new();
    for r in &runs {
        r.validate()?;
        if !ids.insert(r.model_id.clone()) {
            return Err(Error::invalid(format!(
                "model_id `{}` appears twice in one upsert",
                r.model_id
            ))
            .with_field("model_id"));
        }
    }
    let txn = begin_write(db).await.map_err(db_err("upsert_runs"))?;
    let mut affected = 0;
    let mut rows = runs.into_iter().peekable();
    while rows.peek().is_some() {
        let mut tags: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        let chunk: Vec<_> = rows
            .by_ref()
            .take(BATCH_ROWS)
            .map(|mut run| {
                let run_tags = std::mem::take(&mut run.tags);
                if !run_tags.is_empty() {
                    tags.push((run.model_id.clone(), run_tags));
                }
                run.into_active()
            })
            .collect();
        affected += training_run::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::column(training_run::Column::ModelId)
                    .update_columns([
                        training_run::Column::DatasetId,
                        training_run::Column::ModelName,
                        training_run::Column::Framework,
                        training_run::Column::Status,
                        training_run::Column::Accuracy,
                        training_run::Column::Loss,
                        training_run::Column::TrainingTimeSeconds,
                        training_run::Column::StartedAt,
                        training_run::Column::CompletedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(db_err("upsert_runs"))?;
        upsert_tags_of(&txn, tags).await?;
    }
    txn.commit().await.map_err(db_err("upsert_runs"))?;
    Ok(affected)
}

/// Sets tags of runs named by `model_id`: one query for their ids, one
/// upsert of every tag.
async fn upsert_tags_of(
    db: &impl ConnectionTrait,
    tags: Vec<(String, BTreeMap<String, String>)>,
) -> Result<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let ids: HashMap<String, i64> = training_run::Entity::find()
        .select_only()
        .column(training_run::Column::ModelId)
        .column(training_run::Column::Id)
        .filter(training_run::Column::ModelId.is_in(tags.iter().map(|(id, _)| id.as_str())))
        .into_tuple::<(String, i64)>()
        .all(db)
        .await
        .map_err(db_err("upsert_runs"))?
        .into_iter()
        .collect();
    let mut rows = Vec::new();
    for (model_id, run_tags) in tags {
        let run_id = *ids.get(&model_id).ok_or_else(|| {
            Error::internal(format!("run `{model_id}` vanished while its tags were set"))
                .with_operation("upsert_runs")
        })?;
        rows.extend(
            run_tags
                .into_iter()
                .map(|(key, value)| (run_id, key, value)),
        );
    }
    upsert_tag_rows(db, rows, "upsert_runs").await
}

/// A model artifact to register.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewArtifact {
    /// The run that produced it (must exist).
    pub run_id: i64,
    /// Where it is stored.
    pub uri: String,
    /// Serialization format, 1 to 50 characters.
    pub format: String,
    /// Size in bytes (not negative).
    pub size_bytes: i64,
    /// Content checksum, 1 to 128 characters.
    pub checksum: String,
}

/// Registers an artifact. A missing run is a conflict.
pub async fn create_artifact(
    db: &impl ConnectionTrait,
    new: NewArtifact,
) -> Result<model_artifact::Model> {
    check_name("uri", &new.uri, 4096)?;
    check_name("format", &new.format, 50)?;
    check_name("checksum", &new.checksum, 128)?;
    check_non_negative("size_bytes", Some(new.size_bytes))?;
    model_artifact::ActiveModel {
        id: NotSet,
        run_id: Set(new.run_id),
        uri: Set(new.uri),
        format: Set(new.format),
        size_bytes: Set(new.size_bytes),
        checksum: Set(new.checksum),
        created_at: Set(now()),
    }
    .insert(db)
    .await
    .map_err(db_err("create_artifact"))
}

/// A deployment to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    /// The artifact to serve (must exist).
    pub artifact_id: i64,
    /// Environment, 1 to 50 characters.
    pub environment: String,
    /// Initial state; `active` sets `deployed_at` to now.
    pub status: DeploymentStatus,
    /// Share of the environment's traffic, in `[0, 1]`.
    pub traffic_weight: f64,
}

/// Records a deployment. A missing artifact is a conflict.
pub async fn create_deployment(
    db: &impl ConnectionTrait,
    new: NewDeployment,
) -> Result<deployment::Model> {
    check_name("environment", &new.environment, 50)?;
    check_unit_interval("traffic_weight", Some(new.traffic_weight))?;
    let at = now();
    deployment::ActiveModel {
        id: NotSet,
        artifact_id: Set(new.artifact_id),
        environment: Set(new.environment),
        status: Set(new.status),
        traffic_weight: Set(new.traffic_weight),
        deployed_at: Set((new.status != DeploymentStatus::Pending).then_some(at)),
        retired_at: Set((new.status == DeploymentStatus::Retired).then_some(at)),
    }
    .insert(db)
    .await
    .map_err(db_err("create_deployment"))
}

/// A run with its dataset, tags and artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunDetails {
    /// The run.
    pub run: Run,
    /// Its dataset.
    pub dataset: Dataset,
    /// Its tags, by key.
    pub tags: BTreeMap<String, String>,
    /// Its artifacts, oldest first.
    pub artifacts: Vec<Artifact>,
}

/// Runs (all, or those of `dataset_id`) with their dataset, tags and
/// artifacts, by id. Always three statements, however many runs: the runs
/// joined to their datasets, then one `IN (...)` query each for tags and
/// artifacts (sea-orm's loader).
pub async fn runs_with_details(
    db: &impl ConnectionTrait,
    dataset_id: Option<i64>,
) -> Result<Vec<RunDetails>> {
    let filter = match dataset_id {
        Some(id) => Condition::all().add(training_run::Column::DatasetId.eq(id)),
        None => Condition::all(),
    };
    load_details(db, filter).await
}

/// The run `model_id` with its dataset, tags and artifacts (the same three
/// statements as [`runs_with_details`]). NotFound when there is no such run.
pub async fn run_details(db: &impl ConnectionTrait, model_id: &str) -> Result<RunDetails> {
    find_run_details(db, model_id)
        .await?
        .ok_or_else(|| no_run(model_id))
}

/// [`run_details`], `None` when there is no such run.
pub async fn find_run_details(
    db: &impl ConnectionTrait,
    model_id: &str,
) -> Result<Option<RunDetails>> {
    let filter = Condition::all().add(training_run::Column::ModelId.eq(model_id));
    Ok(load_details(db, filter).await?.pop())
}

/// Every completed run with an accuracy: `(model_id, accuracy,
/// completed_at)` (what the leaderboard is rebuilt from).
pub async fn completed_accuracies(
    db: &impl ConnectionTrait,
) -> Result<Vec<(String, f64, DateTime<Utc>)>> {
    let rows = training_run::Entity::find()
        .filter(training_run::Column::Status.eq(RunStatus::Completed))
        .filter(training_run::Column::Accuracy.is_not_null())
        .order_by_asc(training_run::Column::Id)
        .all(db)
        .await
        .map_err(db_err("completed_accuracies"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some((
                r.model_id,
                r.accuracy?,
                r.completed_at.unwrap_or(r.started_at),
            ))
        })
        .collect())
}

/// NotFound naming the missing run.
pub(crate) fn no_run(model_id: &str) -> Error {
    Error::not_found(format!("no training run with model_id `{model_id}`")).with_field("model_id")
}

/// Runs matching `filter`, by id, with their dataset, tags and artifacts.
async fn load_details(db: &impl ConnectionTrait, filter: Condition) -> Result<Vec<RunDetails>> {
    let rows = training_run::Entity::find()
        .find_also_related(dataset::Entity)
        .filter(filter)
        .order_by_asc(training_run::Column::Id)
        .all(db)
        .await
        .map_err(db_err("runs_with_details"))?;
    let mut runs = Vec::with_capacity(rows.len());
    let mut datasets = Vec::with_capacity(rows.len());
    for (run, dataset) in rows {
        // The foreign key is NOT NULL and enforced; a run without its
        // dataset means the database is not in the state the schema says.
        let dataset = dataset.ok_or_else(|| {
            Error::internal(format!("training run {} has no dataset", run.id))
                .with_operation("runs_with_details")
        })?;
        runs.push(run);
        datasets.push(dataset);
    }
    let tags = runs
        .load_many(
            run_tag::Entity::find().order_by_asc(run_tag::Column::Key),
            db,
        )
        .await
        .map_err(db_err("runs_with_details"))?;
    let artifacts = runs
        .load_many(
            model_artifact::Entity::find().order_by_asc(model_artifact::Column::Id),
            db,
        )
        .await
        .map_err(db_err("runs_with_details"))?;
    Ok(runs
        .into_iter()
        .zip(datasets)
        .zip(tags.into_iter().zip(artifacts))
        .map(|((run, dataset), (tags, artifacts))| RunDetails {
            run: run.into(),
            dataset: dataset.into(),
            tags: tags.into_iter().map(|t| (t.key, t.value)).collect(),
            artifacts: artifacts.into_iter().map(Into::into).collect(),
        })
        .collect())
}

/// Datasets by name, at most `limit`, after the name `after` (keyset
/// paging), and whether more follow.
pub async fn list_datasets(
    db: &impl ConnectionTrait,
    after: Option<&str>,
    limit: u64,
) -> Result<(Vec<dataset::Model>, bool)> {
    let mut select = dataset::Entity::find()
        .order_by_asc(dataset::Column::Name)
        // One more than asked tells whether a next page exists.
        .limit(limit.saturating_add(1));
    if let Some(after) = after {
        select = select.filter(dataset::Column::Name.gt(after));
    }
    let mut rows = select.all(db).await.map_err(db_err("list_datasets"))?;
    let more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok((rows, more))
}
