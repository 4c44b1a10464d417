//! Registering a model: the saga `register_run`.
//!
//! Three steps, linked by one `model_id`:
//!
//! 1. `sql_run`: the `training_runs` row with its tags, recorded done in
//!    the same SQL transaction. Undone by deleting that row (by its id).
//! 2. `config_document`: the `model_configs` document, under an `_id` the
//!    saga chose when it began, so that a retry finds its own document and
//!    the compensation deletes exactly it. A document of *another* saga
//!    with the same `model_id` is a conflict.
//! 3. `registration_counter`: the field named by the saga's id in the hash
//!    `counters:registrations:FRAMEWORK`, so the framework's count of
//!    registrations ([`registrations`]) is the hash's length: setting the
//!    field twice counts once, and undoing removes this saga's field only.
//!
//! A failed registration is undone; one whose driver died is taken over and
//! finished (or, after repeated take-overs, undone).
//!
//! The `run.registered` event is written into the outbox in the transaction
//! that records the saga completed, not with the run row: a registration
//! that is undone never announces itself.

use std::collections::BTreeMap;

use bson::{Bson, Document, oid::ObjectId};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Begun, Kind, Progress, Saga, SagaOutcome, SagaState, Sagas, request_hash};
use crate::engines::kv::KvStoreExt;
use crate::engines::relational::begin_write;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::entities::{run_tag, saga, training_run};
use crate::platform::records::{Run, RunStatus};
use crate::platform::registry::{self, NewRun, db_err};
use crate::platform::{configs, now};

/// The saga's kind, as stored.
pub const KIND: &str = "register_run";

/// Its steps, in order.
pub const STEPS: &[&str] = &["sql_run", "config_document", "registration_counter"];

/// The KV hash whose fields are the registrations of `framework` (one per
/// completed registration saga, named by its id).
pub fn registrations_key(framework: &str) -> String {
    format!("counters:registrations:{framework}")
}

/// How many models of `framework` were registered: the length of
/// [`registrations_key`]. 0 when none were.
pub async fn registrations(kv: &dyn crate::engines::KvStore, framework: &str) -> Result<i64> {
    let n = kv.hlen(&registrations_key(framework)).await?;
    Ok(i64::try_from(n).unwrap_or(i64::MAX))
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
    pub started_at: Option<DateTime<Utc>>,
}

/// What a registration wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    /// The run as stored now; as it was registered when another request
    /// has removed it since.
    pub run: Run,
    /// The name of its dataset.
    pub dataset: String,
    /// The framework's registration count once this one was counted.
    pub framework_runs: i64,
    /// The saga that registered it.
    pub saga_id: String,
}

/// All a process needs to drive the saga, as stored in its row.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    dataset_id: i64,
    dataset: String,
    model_id: String,
    model_name: String,
    framework: String,
    /// The config as canonical extended JSON (types survive the trip).
    config: serde_json::Value,
    tags: BTreeMap<String, String>,
    started_at: DateTime<Utc>,
    /// The `_id` of the config document, chosen before it is written.
    config_id: String,
}

impl Request {
    fn config_oid(&self) -> Result<ObjectId> {
        ObjectId::parse_str(&self.config_id)
            .map_err(|e| Error::internal(format!("a saga's config id is unreadable: {e}")))
    }

    fn config_document(&self) -> Result<Document> {
        let config = match Bson::try_from(self.config.clone()) {
            Ok(Bson::Document(doc)) => doc,
            Ok(_) | Err(_) => {
                return Err(Error::internal("a saga's config is not a document"));
            }
        };
        Ok(bson::doc! {
            "_id": self.config_oid()?,
            "model_id": self.model_id.clone(),
            "model_name": self.model_name.clone(),
            "framework": self.framework.clone(),
            "config": config,
            "created_at": bson::DateTime::from_millis(self.started_at.timestamp_millis()),
            "dataset": self.dataset.clone(),
        })
    }
}

impl Sagas {
    /// Registers a training run across the three engines (see the module
    /// docs), waiting for the saga until `deadline` (to its end when
    /// `None`).
    ///
    /// Before anything is written the request is checked: names, tags and
    /// config keys, and that the dataset exists (NotFound naming `name`
    /// when not). A `model_id` that is taken is a conflict, unless the run
    /// was registered by a request identical to this one: then this is a
    /// retry, answered with the first registration. An identical request
    /// still under way is answered with its saga.
    pub async fn register_run(
        &self,
        new: RegisterRun,
        deadline: Option<Instant>,
    ) -> Result<SagaOutcome<Registered>> {
        let fail = |e: Error| e.with_operation(KIND);
        self.inner.relational.refuse_if_open(KIND).map_err(fail)?;
        configs::check_config_keys(&new.config, "config").map_err(fail)?;
        registry::check_new_run(&new.model_id, &new.model_name, &new.framework, &new.tags)
            .map_err(fail)?;
        crate::platform::names::check_name(
            "dataset",
            &new.dataset_name,
            registry::DATASET_NAME_MAX,
        )
        .map_err(fail)?;
        let db = &self.inner.db;
        let dataset = registry::dataset_by_name(db, &new.dataset_name)
            .await
            .map_err(fail)?;
        let config_json = Bson::Document(new.config.clone()).into_canonical_extjson();
        let hash = request_hash(&serde_json::json!({
            "dataset": new.dataset_name,
            "model_id": new.model_id,
            "model_name": new.model_name,
            "framework": new.framework,
            "config": config_json,
            "tags": new.tags,
            "started_at": new.started_at.map(|t| t.trunc_subsecs(6)),
        }));

        if let Some(open) = self.open_saga(&new.model_id).await? {
            return if open.kind == KIND && open.request_hash == hash {
                Ok(SagaOutcome::Pending(Box::new(Saga::from_row(&open)?)))
            } else {
                Err(fail(in_progress(&open)))
            };
        }
        if let Some(existing) = self.existing_run(&new.model_id).await? {
            return self.replay(existing, &hash).await.map_err(fail);
        }
        let request = Request {
            dataset_id: dataset.id,
            dataset: dataset.name,
            model_id: new.model_id.clone(),
            model_name: new.model_name,
            framework: new.framework,
            config: config_json,
            tags: new.tags,
            started_at: new.started_at.map_or_else(now, |t| t.trunc_subsecs(6)),
            config_id: ObjectId::new().to_hex(),
        };
        let request = serde_json::to_value(&request)
            .map_err(|e| Error::internal(format!("cannot record the request: {e}")))?;
        match self
            .begin(Kind::Register, &new.model_id, &request, &hash)
            .await
            .map_err(fail)?
        {
            Begun::New(row) => match self.run_until(row, deadline).await {
                Ok(SagaOutcome::Done(result)) => {
                    Ok(SagaOutcome::Done(self.registered(&result).await?))
                }
                Ok(SagaOutcome::Pending(saga)) => Ok(SagaOutcome::Pending(saga)),
                // An identical request may have registered the model while
                // this one was checked: then this is its retry.
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    match self.existing_run(&new.model_id).await? {
                        Some(existing) => self.replay(existing, &hash).await.map_err(fail),
                        None => Err(fail(e)),
                    }
                }
                Err(e) => Err(fail(e)),
            },
            Begun::Open(open) if open.kind == KIND && open.request_hash == hash => {
                Ok(SagaOutcome::Pending(Box::new(Saga::from_row(&open)?)))
            }
            Begun::Open(open) => Err(fail(in_progress(&open))),
        }
    }

    async fn existing_run(&self, model_id: &str) -> Result<Option<training_run::Model>> {
        training_run::Entity::find()
            .filter(training_run::Column::ModelId.eq(model_id))
            .one(&self.inner.db)
            .await
            .map_err(db_err(KIND))
    }

    /// The answer for a `model_id` that is taken: the first registration
    /// when this request is a retry of it, else a conflict.
    async fn replay(
        &self,
        run: training_run::Model,
        hash: &str,
    ) -> Result<SagaOutcome<Registered>> {
        let taken = || {
            Error::conflict(format!(
                "a training run with model_id `{}` exists",
                run.model_id
            ))
            .with_field("model_id")
        };
        let Some(first) = self.last_completed(Kind::Register, &run.model_id).await? else {
            return Err(taken());
        };
        let saga = Saga::from_row(&first)?;
        let same_run = saga
            .result
            .as_ref()
            .and_then(|r| r.get("run_id"))
            .and_then(serde_json::Value::as_i64)
            == Some(run.id);
        if first.request_hash != hash || !same_run {
            return Err(taken());
        }
        let mut registered = self
            .registered(saga.result.as_ref().unwrap_or(&serde_json::Value::Null))
            .await?;
        registered.saga_id = saga.id;
        Ok(SagaOutcome::Done(registered))
    }

    /// The registration a completed saga's result describes, with the run
    /// as it is stored now, or as it was registered when another request
    /// has removed it since (the registration did happen).
    async fn registered(&self, result: &serde_json::Value) -> Result<Registered> {
        let field = |name: &str| result.get(name).cloned().unwrap_or_default();
        let run_id = field("run_id").as_i64().ok_or_else(|| {
            Error::internal("a completed registration without its run id").with_operation(KIND)
        })?;
        let stored = training_run::Entity::find_by_id(run_id)
            .one(&self.inner.db)
            .await
            .map_err(db_err(KIND))?;
        let run = match stored {
            Some(run) => Run::from(run),
            None => as_registered(run_id, result).ok_or_else(|| {
                Error::not_found(format!("the registered run #{run_id} was removed since"))
                    .with_operation(KIND)
            })?,
        };
        Ok(Registered {
            run,
            dataset: field("dataset").as_str().unwrap_or_default().to_owned(),
            framework_runs: field("framework_runs").as_i64().unwrap_or_default(),
            saga_id: field("saga_id").as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// The conflict of an operation on a subject that has another one open.
pub(super) fn in_progress(open: &crate::platform::entities::saga::Model) -> Error {
    Error::conflict(format!(
        "`{}` has an operation in progress: {} (saga {}, {})",
        open.subject, open.kind, open.id, open.state
    ))
    .with_field("model_id")
}

pub(super) async fn apply(sagas: &Sagas, step: &'static str, run: &mut Progress) -> Result<()> {
    let request: Request = run.request()?;
    match step {
        "sql_run" => {
            let txn = begin_write(&sagas.inner.db)
                .await
                .map_err(db_err("sql_run"))?;
            let created = registry::create_run(
                &txn,
                NewRun {
                    dataset_id: request.dataset_id,
                    model_id: request.model_id.clone(),
                    model_name: request.model_name.clone(),
                    framework: request.framework.clone(),
                    tags: request.tags.clone(),
                    started_at: Some(request.started_at),
                },
            )
            .await?;
            run.done_in(&txn, step, serde_json::json!({"run_id": created.id}))
                .await?;
            txn.commit().await.map_err(db_err("sql_run"))
        }
        "config_document" => {
            let docs = sagas.inner.docs.as_ref();
            let document = request.config_document()?;
            if let Err(e) = configs::insert_config(docs, document).await {
                // Our own document, from an attempt whose answer was lost,
                // is success; any other holder of the model_id is not.
                if e.kind() != ErrorKind::Conflict {
                    return Err(e);
                }
                let ours = bson::doc! {"_id": request.config_oid()?};
                if docs.count(configs::MODEL_CONFIGS, ours).await? == 0 {
                    return Err(e);
                }
            }
            run.done(step, serde_json::json!({"config_id": request.config_id}))
                .await
        }
        "registration_counter" => {
            let kv = sagas.inner.kv.as_ref();
            let key = registrations_key(&request.framework);
            kv.hset(
                &key,
                vec![(run.id().to_owned(), Bytes::from(request.model_id.clone()))],
            )
            .await?;
            let count = registrations(kv, &request.framework).await?;
            run.done(step, serde_json::json!({"framework_runs": count}))
                .await
        }
        other => Err(unknown_step(other)),
    }
}

pub(super) async fn compensate(
    sagas: &Sagas,
    step: &'static str,
    run: &mut Progress,
) -> Result<()> {
    let request: Request = run.request()?;
    match step {
        "registration_counter" => {
            sagas
                .inner
                .kv
                .hdel(
                    &registrations_key(&request.framework),
                    &[run.id().to_owned()],
                )
                .await?;
            run.compensated_if_done(step).await
        }
        "config_document" => {
            let ours = bson::doc! {"_id": request.config_oid()?};
            sagas
                .inner
                .docs
                .delete(configs::MODEL_CONFIGS, ours, false)
                .await?;
            run.compensated_if_done(step).await
        }
        "sql_run" => {
            // Recorded with its write: nothing to undo unless recorded.
            let Some(run_id) = run
                .output(step)
                .and_then(|o| o.get("run_id"))
                .and_then(serde_json::Value::as_i64)
            else {
                return Ok(());
            };
            let txn = begin_write(&sagas.inner.db)
                .await
                .map_err(db_err("sql_run"))?;
            run_tag::Entity::delete_many()
                .filter(run_tag::Column::RunId.eq(run_id))
                .exec(&txn)
                .await
                .map_err(db_err("sql_run"))?;
            training_run::Entity::delete_by_id(run_id)
                .exec(&txn)
                .await
                .map_err(db_err("sql_run"))?;
            run.compensated_in(&txn, step).await?;
            txn.commit().await.map_err(db_err("sql_run"))
        }
        other => Err(unknown_step(other)),
    }
}

/// Removes the config documents and registration counter fields that
/// registrations undone within `window` may have left behind, and returns
/// how many there were.
///
/// A document write whose answer was lost (a timeout, the document engine
/// going down mid-request) may still be applied by the server after the
/// compensation has deleted by the document's `_id` and found nothing: the
/// deletion cannot wait for a write that is no longer anyone's. So every
/// registration undone after its run row was written (the only ones that
/// can have tried the document) has its document's `_id` deleted again by
/// each sweep while it is younger than `window`. The `_id` was chosen by
/// that saga alone, so this never touches another registration's document.
/// The counter field is named by the saga's id, and a driver that lost its
/// lease mid-`HSET` can set it after the undo in the same way: it is
/// deleted again too.
pub(super) async fn remove_late_writes(sagas: &Sagas, window: std::time::Duration) -> Result<u64> {
    let since = now()
        - chrono::Duration::from_std(window).unwrap_or_else(|_| chrono::Duration::minutes(10));
    let rows = saga::Entity::find()
        .filter(saga::Column::Kind.eq(KIND))
        .filter(saga::Column::State.eq(SagaState::Compensated.as_str()))
        .filter(saga::Column::UpdatedAt.gte(since))
        .order_by_desc(saga::Column::UpdatedAt)
        .limit(1000)
        .all(&sagas.inner.db)
        .await
        .map_err(db_err("late_writes"))?;
    let mut ids = Vec::new();
    let mut subjects = Vec::new();
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        match tried_writes(&row) {
            Ok(Some((id, framework))) => {
                ids.push(Bson::ObjectId(id));
                subjects.push(row.subject);
                fields.entry(framework).or_default().push(row.id);
            }
            Ok(None) => {}
            // One unreadable record does not keep the others from being
            // checked; it is reported each sweep until it ages out.
            Err(e) => tracing::warn!(saga = %row.id, "{e}"),
        }
    }
    if ids.is_empty() {
        return Ok(0);
    }
    // The two engines are swept independently: one that is down does not
    // keep the other's late writes in place; its error is reported after.
    let removed = sagas
        .inner
        .docs
        .delete(
            configs::MODEL_CONFIGS,
            bson::doc! {"_id": {"$in": ids}},
            true,
        )
        .await;
    let mut counted = 0;
    let mut kv_failed = None;
    for (framework, sagas_undone) in &fields {
        match sagas
            .inner
            .kv
            .hdel(&registrations_key(framework), sagas_undone)
            .await
        {
            Ok(n) => counted += n,
            Err(e) => kv_failed = kv_failed.or(Some(e)),
        }
    }
    if counted > 0 {
        tracing::warn!(
            counted,
            "removed registration counts set after their registration was undone"
        );
    }
    let removed = removed?;
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed config documents written after their registration was undone"
        );
        // A read may have cached one meanwhile (which is not known).
        for subject in &subjects {
            sagas.inner.rows.model_changed(subject).await;
        }
    }
    match kv_failed {
        Some(e) => Err(e),
        None => Ok(removed + counted),
    }
}

/// The `_id` of the config document an undone registration may have
/// written, and its framework (whose counter it may have set): `None` when
/// it was undone before its run row was written (it tried neither).
fn tried_writes(row: &saga::Model) -> Result<Option<(ObjectId, String)>> {
    let saga = Saga::from_row(row)?;
    if !saga.steps.iter().any(|s| s.step == "sql_run") {
        return Ok(None);
    }
    let request: Request = serde_json::from_str(&row.request)
        .map_err(|e| Error::internal(format!("saga {}: unreadable request: {e}", row.id)))?;
    Ok(Some((request.config_oid()?, request.framework)))
}

/// The `run.registered` event of a completed registration, from its
/// result: `(topic, model_id, data)`.
pub(super) fn event(result: &serde_json::Value) -> (&'static str, String, serde_json::Value) {
    let field = |name: &str| result.get(name).cloned().unwrap_or_default();
    let model_id = field("model_id").as_str().unwrap_or_default().to_owned();
    let data = serde_json::json!({
        "run_id": field("run_id"),
        "model_name": field("model_name"),
        "framework": field("framework"),
        "dataset": field("dataset"),
        "dataset_id": field("dataset_id"),
        "status": "running",
        "started_at": field("started_at"),
        "saga_id": field("saga_id"),
    });
    (
        crate::platform::outbox::topics::RUN_REGISTERED,
        model_id,
        data,
    )
}

pub(super) fn result(run: &Progress) -> Result<serde_json::Value> {
    let request: Request = run.request()?;
    let output = |step: &str, field: &str| {
        run.output(step)
            .and_then(|o| o.get(field))
            .cloned()
            .unwrap_or_default()
    };
    Ok(serde_json::json!({
        "run_id": output("sql_run", "run_id"),
        "dataset": request.dataset,
        "dataset_id": request.dataset_id,
        "model_id": request.model_id,
        "model_name": request.model_name,
        "framework": request.framework,
        "started_at": request.started_at,
        "framework_runs": output("registration_counter", "framework_runs"),
        "saga_id": run.id(),
    }))
}

/// The run as a completed registration wrote it, from the saga's result
/// (`None` for a result recorded without the run's fields).
fn as_registered(run_id: i64, result: &serde_json::Value) -> Option<Run> {
    let text = |name: &str| result.get(name)?.as_str().map(str::to_owned);
    Some(Run {
        id: run_id,
        dataset_id: result.get("dataset_id")?.as_i64()?,
        model_id: text("model_id")?,
        model_name: text("model_name")?,
        framework: text("framework")?,
        status: RunStatus::Running,
        accuracy: None,
        loss: None,
        training_time_seconds: None,
        started_at: serde_json::from_value(result.get("started_at")?.clone()).ok()?,
        completed_at: None,
    })
}

fn unknown_step(step: &str) -> Error {
    Error::internal(format!("`{KIND}` has no step `{step}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_describes_the_run_as_registered() {
        let started_at = Utc::now().trunc_subsecs(6);
        let result = serde_json::json!({
            "run_id": 19,
            "dataset": "fraud-train-v1",
            "dataset_id": 3,
            "model_id": "fd-19",
            "model_name": "fraud-detector",
            "framework": "xgboost",
            "started_at": started_at,
            "framework_runs": 4,
            "saga_id": "s",
        });
        let run = as_registered(19, &result).expect("a run");
        assert_eq!(
            run,
            Run {
                id: 19,
                dataset_id: 3,
                model_id: "fd-19".into(),
                model_name: "fraud-detector".into(),
                framework: "xgboost".into(),
                status: RunStatus::Running,
                accuracy: None,
                loss: None,
                training_time_seconds: None,
                started_at,
                completed_at: None,
            }
        );
        // A result recorded without the run's fields describes no run.
        let older = serde_json::json!({"run_id": 19, "dataset": "d", "saga_id": "s"});
        assert_eq!(as_registered(19, &older), None);
    }
}
