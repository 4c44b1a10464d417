//! Operations that span engines: registering a training run as a saga,
//! complete model info, and the runs-to-documents migration with its
//! verification, dual write and reconciliation ([`migrate`]).
//!
//! Everything here receives [`Engines`] and names no concrete backend, so
//! it runs the same on the embedded and the full profile.
//!
//! # The register saga (what MUST hold)
//!
//! [`register_run`] writes three things linked by one `model_id`, in order:
//!
//! 1. [`Step::SqlRun`]: the `training_runs` row (`registry::create_run`),
//!    compensated by deleting that row (its tags go with it).
//! 2. [`Step::ConfigDocument`]: the `model_configs` document, compensated by
//!    deleting the document with that `model_id`.
//! 3. [`Step::KvCounter`]: `HINCRBY counters:runs_registered FRAMEWORK 1`,
//!    compensated by the matching decrement.
//!
//! When a step fails, the compensations of the steps that succeeded run in
//! reverse order, so no engine keeps an orphan of the failed registration.
//! The failing step itself is not compensated: its most common failure is a
//! conflict on `model_id`, and deleting by that key would then delete the
//! *other* model's row or document. A write that applied but answered with
//! an error (a timeout) can therefore leave that one write behind; the
//! migration's `verify` reports such drift.
//! A compensation that fails is logged and reported in the returned error
//! (kind of the original failure), never swallowed.

use std::collections::BTreeMap;

use bson::{Bson, Document};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde::Serialize;

use crate::engines::Engines;
use crate::engines::document::DocumentStoreExt;
use crate::error::{Error, Result};
use crate::platform::configs;
use crate::platform::entities::{dataset, run_tag, training_run};
use crate::platform::registry::{self, NewRun, db_err};

pub mod migrate;

/// The KV hash counting registered runs per framework.
pub const RUNS_REGISTERED_KEY: &str = "counters:runs_registered";

/// The KV hash of a model's counters (predictions served, cache hits, ...),
/// read by [`model_info`].
pub fn model_counters_key(model_id: &str) -> String {
    format!("counters:model:{model_id}")
}

/// A step of [`register_run`], for failure injection in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Writing the SQL run row.
    SqlRun,
    /// Writing the config document.
    ConfigDocument,
    /// Bumping the KV counter.
    KvCounter,
}

impl Step {
    /// Every step, in saga order.
    pub const ALL: [Step; 3] = [Step::SqlRun, Step::ConfigDocument, Step::KvCounter];
}

/// A training run to register across engines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegisterRun {
    /// The dataset's name (must exist).
    pub dataset_name: String,
    /// Unique id linking the run row and the config document.
    pub model_id: String,
    /// The model's name.
    pub model_name: String,
    /// The framework.
    pub framework: String,
    /// The framework-specific configuration, stored as `config`.
    pub config: Document,
    /// Run tags.
    pub tags: BTreeMap<String, String>,
    /// When training started; now when `None`.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// What [`register_run`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The SQL run row.
    pub run: training_run::Model,
    /// The name of its dataset.
    pub dataset: String,
    /// The framework's registration count after the bump.
    pub framework_runs: i64,
}

/// A hook called before each step; an `Err` makes that step fail. Tests use
/// it to inject failures; [`register_run`] passes one that never fails.
pub type FaultHook<'a> = &'a (dyn Fn(Step) -> Result<()> + Send + Sync);

/// Registers a training run across the three engines as a saga (see the
/// module docs). On error nothing of it remains in any engine.
pub async fn register_run(engines: &Engines, new: RegisterRun) -> Result<Registered> {
    register_run_with_faults(engines, new, &|_| Ok(())).await
}

/// [`register_run`] with a fault hook called before each step.
pub async fn register_run_with_faults(
    engines: &Engines,
    new: RegisterRun,
    fault: FaultHook<'_>,
) -> Result<Registered> {
    // Validation first: a bad request must not even start the saga.
    configs::check_config_keys(&new.config, "config")?;
    let dataset = registry::dataset_by_name(&engines.relational, &new.dataset_name).await?;
    let mut config_doc = bson::doc! {
        "model_id": new.model_id.clone(),
        "model_name": new.model_name.clone(),
        "framework": new.framework.clone(),
        "config": new.config.clone(),
        "created_at": bson::DateTime::now(),
    };
    config_doc.insert("dataset", dataset.name.clone());

    let mut done: Vec<Step> = Vec::new();
    let outcome: Result<Registered> = async {
        fault(Step::SqlRun)?;
        let run = registry::create_run(
            &engines.relational,
            NewRun {
                dataset_id: dataset.id,
                model_id: new.model_id.clone(),
                model_name: new.model_name.clone(),
                framework: new.framework.clone(),
                tags: new.tags.clone(),
                started_at: new.started_at,
            },
        )
        .await?;
        done.push(Step::SqlRun);

        fault(Step::ConfigDocument)?;
        configs::insert_config(engines.documents.as_ref(), config_doc).await?;
        done.push(Step::ConfigDocument);

        fault(Step::KvCounter)?;
        let framework_runs = engines
            .kv
            .hincr_by(RUNS_REGISTERED_KEY, &new.framework, 1)
            .await?;
        done.push(Step::KvCounter);
        Ok(Registered {
            run,
            dataset: dataset.name.clone(),
            framework_runs,
        })
    }
    .await;

    match outcome {
        Ok(registered) => Ok(registered),
        Err(error) => {
            let mut failures = Vec::new();
            for step in done.into_iter().rev() {
                if let Err(e) = compensate(engines, step, &new).await {
                    tracing::error!(model_id = %new.model_id, ?step, "compensation failed: {e}");
                    failures.push(format!("{step:?}: {e}"));
                }
            }
            if failures.is_empty() {
                Err(error.with_operation("register_run"))
            } else {
                Err(Error::new(
                    error.kind(),
                    format!(
                        "{error}; compensations failed too, leaving orphans to clean up: {}",
                        failures.join("; ")
                    ),
                )
                .with_operation("register_run"))
            }
        }
    }
}

/// Undoes one step of the saga for `new.model_id`.
async fn compensate(engines: &Engines, step: Step, new: &RegisterRun) -> Result<()> {
    match step {
        Step::SqlRun => delete_run_row(engines, &new.model_id).await,
        Step::ConfigDocument => {
            engines
                .documents
                .delete_many(configs::MODEL_CONFIGS, configs::by_model_id(&new.model_id))
                .await?;
            Ok(())
        }
        Step::KvCounter => {
            engines
                .kv
                .hincr_by(RUNS_REGISTERED_KEY, &new.framework, -1)
                .await?;
            Ok(())
        }
    }
}

/// Removes a model from every engine: its run row and tags, its config
/// document and its copy in the migrated collection. Returns whether a run
/// row was there. A run with artifacts is refused (a conflict: its
/// deployments and aliases would dangle) before anything is removed. The
/// framework's registration counter is left as it is: it counts
/// registrations made, not models kept.
pub async fn unregister_run(engines: &Engines, model_id: &str) -> Result<bool> {
    let run_id = match registry::run_details(&engines.relational, model_id).await {
        Ok(details) if !details.artifacts.is_empty() => {
            return Err(Error::conflict(format!(
                "run `{model_id}` has {} artifact(s); retire and remove them first",
                details.artifacts.len()
            ))
            .with_field("model_id")
            .with_operation("unregister_run"));
        }
        Ok(details) => Some(details.run.id),
        Err(e) if e.kind() == crate::error::ErrorKind::NotFound => None,
        Err(e) => return Err(e.with_operation("unregister_run")),
    };
    let docs = engines.documents.as_ref();
    // By the indexed source id when the run is known.
    let copy = match run_id {
        Some(id) => bson::doc! {"source_id": id},
        None => bson::doc! {"model_id": {"$eq": model_id}},
    };
    docs.delete_many(migrate::MIGRATED, copy).await?;
    docs.delete_many(configs::MODEL_CONFIGS, configs::by_model_id(model_id))
        .await?;
    delete_run_row(engines, model_id).await?;
    Ok(run_id.is_some())
}

/// Deletes the run `model_id` and its tags in one transaction. Absent is
/// fine (compensations are idempotent).
async fn delete_run_row(engines: &Engines, model_id: &str) -> Result<()> {
    let db = &engines.relational;
    let txn = db.begin().await.map_err(db_err("compensate_run"))?;
    let run = training_run::Entity::find()
        .filter(training_run::Column::ModelId.eq(model_id))
        .one(&txn)
        .await
        .map_err(db_err("compensate_run"))?;
    if let Some(run) = run {
        run_tag::Entity::delete_many()
            .filter(run_tag::Column::RunId.eq(run.id))
            .exec(&txn)
            .await
            .map_err(db_err("compensate_run"))?;
        training_run::Entity::delete_by_id(run.id)
            .exec(&txn)
            .await
            .map_err(db_err("compensate_run"))?;
    }
    txn.commit().await.map_err(db_err("compensate_run"))
}

/// A KV counter's stored text as a number; `None` when it is not an
/// integer.
fn counter_value(raw: &[u8]) -> Option<i64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// How many runs of `framework` were registered ([`RUNS_REGISTERED_KEY`]);
/// 0 when none were.
pub async fn registrations(engines: &Engines, framework: &str) -> Result<i64> {
    match engines.kv.hget(RUNS_REGISTERED_KEY, framework).await? {
        None => Ok(0),
        Some(raw) => counter_value(&raw).ok_or_else(|| {
            Error::invalid(format!(
                "the registration counter of `{framework}` is not an integer"
            ))
            .with_operation("registrations")
        }),
    }
}

/// Everything strata knows of one model, gathered from every engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// The SQL run.
    pub run: training_run::Model,
    /// The dataset it trained on.
    pub dataset: dataset::Model,
    /// The config document, as relaxed extended JSON; `None` when the model
    /// has none (runs registered before configs existed).
    pub config: Option<serde_json::Value>,
    /// The model's counters from the key-value engine (absent ones are not
    /// listed).
    pub counters: BTreeMap<String, i64>,
}

/// The run with its dataset, the config document and the KV counters of
/// `model_id`, in one call. NotFound when there is no such run.
pub async fn model_info(engines: &Engines, model_id: &str) -> Result<ModelInfo> {
    let (run, dataset) = training_run::Entity::find()
        .filter(training_run::Column::ModelId.eq(model_id))
        .find_also_related(dataset::Entity)
        .one(&engines.relational)
        .await
        .map_err(db_err("model_info"))?
        .ok_or_else(|| {
            Error::not_found(format!("no model with model_id `{model_id}`")).with_field("model_id")
        })?;
    let dataset = dataset.ok_or_else(|| {
        Error::internal(format!("run `{model_id}` has no dataset")).with_operation("model_info")
    })?;
    // The other two engines are independent: ask them at once.
    let counters_key = model_counters_key(model_id);
    let (config, counters) = futures::join!(
        configs::config_of(engines.documents.as_ref(), model_id),
        engines.kv.hgetall(&counters_key),
    );
    let config = config?.map(|mut d| {
        d.remove("_id");
        Bson::Document(d).into_relaxed_extjson()
    });
    let counters = counters?
        .into_iter()
        .map(|(name, raw)| {
            counter_value(&raw)
                .map(|n| (name.clone(), n))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "counter `{name}` of `{model_id}` is not an integer"
                    ))
                    .with_operation("model_info")
                })
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    Ok(ModelInfo {
        run,
        dataset,
        config,
        counters,
    })
}
