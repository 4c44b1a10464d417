//! The models' read model (the query side of CQRS): one document per
//! `model_id` in the document collection `model_views`, kept from the
//! outbox's events ([`ReadModel::apply`]) and recomputable from the
//! relational engine at any time ([`ReadModel::rebuild`]).
//!
//! # What MUST hold
//!
//! Events arrive at least once and in any order (see
//! [`crate::platform::outbox`]), so applying is idempotent and
//! order-robust, field by field, by the events' `seq`:
//!
//! - `run_count` is the size of the set of run ids the events named: the
//!   same event twice counts its run once.
//! - `latest_run` is replaced only by an event whose `seq` is above the one
//!   it reflects: a late `run.registered` never hides the `run.completed`
//!   that followed it.
//! - `best_accuracy` is the maximum over completed runs: any order gives it.
//! - Each alias keeps the `seq` of the move it reflects, also once it moved
//!   to another model (the entry stays, without an artifact, so that a late
//!   older move cannot bring it back).
//! - A rebuilt document records the outbox's highest `seq` at the rebuild
//!   (`floor_seq`): events at or below it are already reflected and are
//!   skipped.
//!
//! So the same events in any order, each any number of times, give the
//! same document, and it equals the one [`ReadModel::rebuild`] computes
//! from SQL. (Runs written outside the register saga and the registry's
//! completion, such as bulk loads and seeding, send no event: a rebuild
//! picks them up. Removing a model sends none either: its document stays
//! until the next rebuild.)
//!
//! Concurrent applies of one model's events (several consumers) do not lose
//! updates: each document carries a `version`, and a write replaces it only
//! at the version it read, else reads again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bson::{Document, doc};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    AccessMode, DatabaseConnection, DbBackend, EntityTrait, IsolationLevel, QueryOrder,
    QuerySelect, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::engines::document::{DocumentStore, DocumentStoreExt, FindOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::platform::entities::{RunStatus, model_alias, model_artifact, outbox, training_run};
use crate::platform::outbox::{OutboxEvent, topics};
use crate::platform::registry::db_err;

/// The collection of the read model's documents.
pub const MODEL_VIEWS: &str = "model_views";

/// A model as the read model shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelView {
    /// The model (the `_id` of its document).
    pub model_id: String,
    /// Its name, once an event or the rebuild named it.
    pub model_name: Option<String>,
    /// Distinct runs seen under this model id.
    pub run_count: u64,
    /// The run the newest event described.
    pub latest_run: Option<LatestRun>,
    /// The best accuracy of its completed runs.
    pub best_accuracy: Option<f64>,
    /// The aliases pointing into it now, by alias name.
    pub aliases: BTreeMap<String, AliasView>,
    /// The highest `seq` reflected (the rebuild's, or an event's).
    pub last_seq: i64,
}

/// A model's latest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestRun {
    /// The run's id.
    pub run_id: i64,
    /// `running`, `completed` or `failed`.
    pub status: String,
    /// Its metrics, once ended.
    pub metrics: RunMetrics,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A run's final metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// Accuracy in `[0, 1]`.
    pub accuracy: Option<f64>,
    /// Loss.
    pub loss: Option<f64>,
    /// Training time in seconds.
    pub training_time_seconds: Option<i64>,
}

/// Where an alias of the model points.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AliasView {
    /// The artifact.
    pub artifact_id: i64,
    /// When it was moved there.
    pub moved_at: Option<DateTime<Utc>>,
}

/// What [`ReadModel::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event changed the model's document (or documents: an alias
    /// move also touches the model the alias left).
    Applied,
    /// The document already reflected it (a duplicate, or superseded by a
    /// newer event or a rebuild); nothing was written.
    Skipped,
}

/// The stored document (without `_id` and `version`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct State {
    model_name: Option<String>,
    run_ids: BTreeSet<i64>,
    latest_run: Option<Latest>,
    best_accuracy: Option<f64>,
    /// By alias name, stored as a list: alias names may hold `.` or `$`,
    /// which document keys may not.
    aliases: Vec<AliasState>,
    floor_seq: i64,
    last_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Latest {
    seq: i64,
    run: LatestRun,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AliasState {
    alias: String,
    /// `None` once the alias moved into another model.
    artifact_id: Option<i64>,
    moved_at: Option<DateTime<Utc>>,
    seq: i64,
}

impl State {
    fn view(&self, model_id: &str) -> ModelView {
        ModelView {
            model_id: model_id.to_owned(),
            model_name: self.model_name.clone(),
            run_count: self.run_ids.len() as u64,
            latest_run: self.latest_run.as_ref().map(|l| l.run.clone()),
            best_accuracy: self.best_accuracy,
            aliases: self
                .aliases
                .iter()
                .filter_map(|a| {
                    a.artifact_id.map(|artifact_id| {
                        (
                            a.alias.clone(),
                            AliasView {
                                artifact_id,
                                moved_at: a.moved_at,
                            },
                        )
                    })
                })
                .collect(),
            last_seq: self.last_seq,
        }
    }

    fn name(&mut self, data: &serde_json::Value) {
        if self.model_name.is_none() {
            self.model_name = text(data, "model_name");
        }
    }

    fn point(
        &mut self,
        alias: &str,
        artifact_id: Option<i64>,
        moved_at: Option<DateTime<Utc>>,
        seq: i64,
    ) {
        let entry = AliasState {
            alias: alias.to_owned(),
            artifact_id,
            moved_at,
            seq,
        };
        match self.aliases.iter_mut().find(|a| a.alias == alias) {
            Some(current) if current.seq < seq => *current = entry,
            Some(_) => {}
            None => {
                self.aliases.push(entry);
                self.aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
            }
        }
    }

    /// Folds `event` into the document of the model `model_id` it touches.
    fn fold(&mut self, model_id: &str, event: &OutboxEvent) -> Result<()> {
        if event.seq <= self.floor_seq {
            return Ok(());
        }
        let data = &event.payload;
        match event.topic.as_str() {
            topics::RUN_REGISTERED | topics::RUN_COMPLETED => {
                let run_id = data
                    .get("run_id")
                    .and_then(serde_json::Value::as_i64)
                    .ok_or_else(|| bad(event, "`data.run_id` is not an integer"))?;
                self.name(data);
                self.run_ids.insert(run_id);
                let metrics = data
                    .get("metrics")
                    .map(|m| serde_json::from_value::<RunMetrics>(m.clone()))
                    .transpose()
                    .map_err(|e| bad(event, &format!("`data.metrics`: {e}")))?
                    .unwrap_or_default();
                let status = text(data, "status").unwrap_or_else(|| "running".into());
                if status == RunStatus::Completed.as_str()
                    && let Some(accuracy) = metrics.accuracy
                {
                    self.best_accuracy =
                        Some(self.best_accuracy.map_or(accuracy, |b| b.max(accuracy)));
                }
                if self.latest_run.as_ref().is_none_or(|l| l.seq < event.seq) {
                    self.latest_run = Some(Latest {
                        seq: event.seq,
                        run: LatestRun {
                            run_id,
                            status,
                            metrics,
                            started_at: time(data, "started_at"),
                            completed_at: time(data, "completed_at"),
                        },
                    });
                }
            }
            topics::ALIAS_MOVED => {
                let alias = text(data, "alias")
                    .ok_or_else(|| bad(event, "`data.alias` is not a string"))?;
                if model_id == event.aggregate {
                    let to = data
                        .get("to_artifact_id")
                        .and_then(serde_json::Value::as_i64)
                        .ok_or_else(|| bad(event, "`data.to_artifact_id` is not an integer"))?;
                    self.name(data);
                    self.point(&alias, Some(to), time(data, "moved_at"), event.seq);
                } else {
                    self.point(&alias, None, None, event.seq);
                }
            }
            // Topics of later versions: nothing of this document's.
            _ => return Ok(()),
        }
        self.last_seq = Ord::max(self.last_seq, event.seq);
        Ok(())
    }
}

fn text(data: &serde_json::Value, field: &str) -> Option<String> {
    data.get(field)
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
}

fn time(data: &serde_json::Value, field: &str) -> Option<DateTime<Utc>> {
    data.get(field)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn bad(event: &OutboxEvent, what: &str) -> Error {
    Error::invalid(format!("{} event {}: {what}", event.topic, event.seq))
        .with_operation("read_model")
}

/// The read model over the document engine, rebuilt from the relational
/// one. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadModel {
    db: DatabaseConnection,
    docs: Arc<dyn DocumentStore>,
}

/// Optimistic writes of one document give up after this many races.
const MAX_RACES: usize = 64;

impl ReadModel {
    pub(crate) fn new(db: DatabaseConnection, docs: Arc<dyn DocumentStore>) -> ReadModel {
        ReadModel { db, docs }
    }

    /// Applies one event to the documents it touches (see the module docs
    /// for why any order and any repetition give the same result).
    pub async fn apply(&self, event: &OutboxEvent) -> Result<Applied> {
        let mut touched = vec![event.aggregate.clone()];
        if event.topic == topics::ALIAS_MOVED
            && let Some(from) = text(&event.payload, "from_model_id")
            && from != event.aggregate
        {
            touched.push(from);
        }
        let mut outcome = Applied::Skipped;
        for model_id in touched {
            if self.apply_to(&model_id, event).await? == Applied::Applied {
                outcome = Applied::Applied;
            }
        }
        Ok(outcome)
    }

    async fn apply_to(&self, model_id: &str, event: &OutboxEvent) -> Result<Applied> {
        for _ in 0..MAX_RACES {
            let (state, version) = self.load(model_id).await?.unwrap_or_default();
            let mut next = state.clone();
            next.fold(model_id, event)?;
            if next == state {
                return Ok(Applied::Skipped);
            }
            let document = encode(model_id, &next, version + 1)?;
            if version == 0 {
                match self.docs.insert_one(MODEL_VIEWS, document).await {
                    Ok(_) => return Ok(Applied::Applied),
                    Err(e) if e.kind() == ErrorKind::Conflict => continue,
                    Err(e) => return Err(e),
                }
            }
            let written = self
                .docs
                .replace_one(
                    MODEL_VIEWS,
                    doc! {"_id": model_id, "version": version},
                    document,
                    false,
                )
                .await?;
            if written.matched == 1 {
                return Ok(Applied::Applied);
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("the view of `{model_id}` kept changing under {MAX_RACES} attempts to apply an event"),
        )
        .with_operation("read_model"))
    }

    async fn load(&self, model_id: &str) -> Result<Option<(State, i64)>> {
        let Some(mut document) = self
            .docs
            .find_one(MODEL_VIEWS, doc! {"_id": model_id}, FindOptions::default())
            .await?
        else {
            return Ok(None);
        };
        document.remove("_id");
        let version = match document.remove("version") {
            Some(bson::Bson::Int64(v)) => v,
            Some(bson::Bson::Int32(v)) => i64::from(v),
            _ => 0,
        };
        let state: State = bson::deserialize_from_document(document).map_err(|e| {
            Error::internal(format!("the view of `{model_id}` is unreadable: {e}"))
                .with_operation("read_model")
        })?;
        Ok(Some((state, version)))
    }

    /// The view of `model_id`, or `None` when no event or rebuild wrote it.
    pub async fn get(&self, model_id: &str) -> Result<Option<ModelView>> {
        Ok(self
            .load(model_id)
            .await?
            .map(|(state, _)| state.view(model_id)))
    }

    /// Recomputes every model's document from the relational engine (runs
    /// and aliases, read in one snapshot together with the outbox's highest
    /// `seq`) and replaces the collection with them. Returns how many
    /// documents it wrote. Meant to run while no consumer applies events
    /// (`strata migrate --rebuild-read-model`); events above the rebuild's
    /// `seq` still apply afterwards.
    pub async fn rebuild(&self) -> Result<u64> {
        let states = self.compute().await?;
        self.docs.delete_many(MODEL_VIEWS, doc! {}).await?;
        let mut written = 0;
        let mut batch = Vec::new();
        for (model_id, state) in &states {
            batch.push(encode(model_id, state, 1)?);
            if batch.len() == 500 {
                written += self
                    .docs
                    .insert_many(MODEL_VIEWS, std::mem::take(&mut batch))
                    .await?
                    .len();
            }
        }
        if !batch.is_empty() {
            written += self.docs.insert_many(MODEL_VIEWS, batch).await?.len();
        }
        Ok(written as u64)
    }

    async fn compute(&self) -> Result<BTreeMap<String, State>> {
        let fail = db_err("rebuild_read_model");
        let snapshot = self
            .db
            .begin_with_config(
                (self.db.get_database_backend() == DbBackend::Postgres)
                    .then_some(IsolationLevel::RepeatableRead),
                (self.db.get_database_backend() == DbBackend::Postgres)
                    .then_some(AccessMode::ReadOnly),
            )
            .await
            .map_err(db_err("rebuild_read_model"))?;
        let floor: Option<i64> = outbox::Entity::find()
            .select_only()
            .expr_as(Expr::col(outbox::Column::Id).max(), "max")
            .into_tuple::<Option<i64>>()
            .one(&snapshot)
            .await
            .map_err(db_err("rebuild_read_model"))?
            .flatten();
        let floor = floor.unwrap_or(0);
        let runs = training_run::Entity::find()
            .order_by_asc(training_run::Column::Id)
            .all(&snapshot)
            .await
            .map_err(db_err("rebuild_read_model"))?;
        let aliases = model_alias::Entity::find()
            .all(&snapshot)
            .await
            .map_err(db_err("rebuild_read_model"))?;
        let artifacts: HashMap<i64, i64> = model_artifact::Entity::find()
            .all(&snapshot)
            .await
            .map_err(db_err("rebuild_read_model"))?
            .into_iter()
            .map(|a| (a.id, a.run_id))
            .collect();
        snapshot.commit().await.map_err(fail)?;
        let mut states: BTreeMap<String, State> = BTreeMap::new();
        let mut model_of_run = HashMap::new();
        for run in runs {
            model_of_run.insert(run.id, run.model_id.clone());
            let state = states.entry(run.model_id.clone()).or_default();
            state.model_name = Some(run.model_name.clone());
            state.run_ids.insert(run.id);
            if run.status == RunStatus::Completed
                && let Some(accuracy) = run.accuracy
            {
                state.best_accuracy =
                    Some(state.best_accuracy.map_or(accuracy, |b| b.max(accuracy)));
            }
            state.latest_run = Some(Latest {
                seq: floor,
                run: LatestRun {
                    run_id: run.id,
                    status: run.status.as_str().to_owned(),
                    metrics: RunMetrics {
                        accuracy: run.accuracy,
                        loss: run.loss,
                        training_time_seconds: run.training_time_seconds,
                    },
                    started_at: Some(run.started_at),
                    completed_at: run.completed_at,
                },
            });
            state.floor_seq = floor;
            state.last_seq = floor;
        }
        for alias in aliases {
            let Some(model_id) = artifacts
                .get(&alias.artifact_id)
                .and_then(|run_id| model_of_run.get(run_id))
            else {
                continue;
            };
            if let Some(state) = states.get_mut(model_id) {
                state.point(
                    &alias.alias,
                    Some(alias.artifact_id),
                    Some(alias.updated_at),
                    floor,
                );
            }
        }
        Ok(states)
    }
}

fn encode(model_id: &str, state: &State, version: i64) -> Result<Document> {
    let mut document = bson::serialize_to_document(state).map_err(|e| {
        Error::internal(format!("the view of `{model_id}` does not encode: {e}"))
            .with_operation("read_model")
    })?;
    document.insert("_id", model_id);
    document.insert("version", version);
    Ok(document)
}
