//! Removing a model from every engine: the saga `unregister_run`.
//!
//! 1. `sql_run`: the run row and its tags, in one SQL transaction that also
//!    records the step; a run with artifacts is refused there (a conflict:
//!    its deployments and aliases would dangle) and the saga ends with
//!    nothing removed.
//! 2. `config_document`: the model's config document.
//! 3. `migrated_copy`: its copy in the runs-to-documents collection.
//!
//! Removals cannot be undone, and need not be: once the row is gone, the
//! saga only rolls forward, retrying the document removals until they are
//! done, also in another process after this one died. The framework's
//! registration count is left as it is: it counts registrations made, not
//! models kept.

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::register::in_progress;
use super::{Begun, Kind, Progress, Saga, SagaOutcome, Sagas, request_hash};
use crate::engines::relational::begin_write;
use crate::error::{Error, Result};
use crate::platform::configs;
use crate::platform::entities::{model_artifact, run_tag, training_run};
use crate::platform::hybrid::migrate;
use crate::platform::registry::db_err;

/// The saga's kind, as stored.
pub const KIND: &str = "unregister_run";

/// Its steps, in order.
pub const STEPS: &[&str] = &["sql_run", "config_document", "migrated_copy"];

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    model_id: String,
}

impl Sagas {
    /// Removes the model `model_id` from every engine (see the module
    /// docs), waiting for the saga until `deadline` (to its end when
    /// `None`). Answers whether a run row was removed. A run with
    /// artifacts is a conflict, and nothing is removed.
    pub async fn unregister_run(
        &self,
        model_id: &str,
        deadline: Option<Instant>,
    ) -> Result<SagaOutcome<bool>> {
        let fail = |e: Error| e.with_operation(KIND);
        crate::platform::names::check_model_id("model_id", model_id).map_err(fail)?;
        self.inner.relational.refuse_if_open(KIND).map_err(fail)?;
        let db = &self.inner.db;
        let run = training_run::Entity::find()
            .filter(training_run::Column::ModelId.eq(model_id))
            .one(db)
            .await
            .map_err(db_err(KIND))?;
        match &run {
            Some(run) => refuse_with_artifacts(db, run).await.map_err(fail)?,
            None => {
                // A registration under way has no row yet, but the model
                // is taken: say so rather than "not found".
                if let Some(open) = self.open_saga(model_id).await? {
                    return if open.kind == KIND {
                        Ok(SagaOutcome::Pending(Box::new(Saga::from_row(&open)?)))
                    } else {
                        Err(fail(in_progress(&open)))
                    };
                }
                // Nothing to remove anywhere: no saga needed.
                if !self.leftovers(model_id).await? {
                    return Ok(SagaOutcome::Done(false));
                }
            }
        }
        let request = serde_json::json!(Request {
            model_id: model_id.to_owned()
        });
        let hash = request_hash(&request);
        match self
            .begin(Kind::Unregister, model_id, &request, &hash)
            .await
            .map_err(fail)?
        {
            Begun::New(row) => match self.run_until(row, deadline).await.map_err(fail)? {
                SagaOutcome::Done(result) => Ok(SagaOutcome::Done(
                    result
                        .get("deleted")
                        .and_then(serde_json::Value::as_bool)
                        .unwrap_or(false),
                )),
                SagaOutcome::Pending(saga) => Ok(SagaOutcome::Pending(saga)),
            },
            // Removing twice at once: the second waits on the first.
            Begun::Open(open) if open.kind == KIND => {
                Ok(SagaOutcome::Pending(Box::new(Saga::from_row(&open)?)))
            }
            Begun::Open(open) => Err(fail(in_progress(&open))),
        }
    }

    /// Whether documents of `model_id` remain without its run row.
    async fn leftovers(&self, model_id: &str) -> Result<bool> {
        let docs = self.inner.docs.as_ref();
        let config = docs
            .count(configs::MODEL_CONFIGS, configs::by_model_id(model_id))
            .await?;
        let copy = docs
            .count(
                migrate::MIGRATED,
                bson::doc! {"model_id": {"$eq": model_id}},
            )
            .await?;
        Ok(config + copy > 0)
    }
}

async fn refuse_with_artifacts(
    db: &impl sea_orm::ConnectionTrait,
    run: &training_run::Model,
) -> Result<()> {
    let artifacts = model_artifact::Entity::find()
        .filter(model_artifact::Column::RunId.eq(run.id))
        .count(db)
        .await
        .map_err(db_err(KIND))?;
    if artifacts > 0 {
        return Err(Error::conflict(format!(
            "run `{}` has {artifacts} artifact(s); retire and remove them first",
            run.model_id
        ))
        .with_field("model_id"));
    }
    Ok(())
}

pub(super) async fn apply(sagas: &Sagas, step: &'static str, run: &mut Progress) -> Result<()> {
    let request: Request = run.request()?;
    let model_id = request.model_id.as_str();
    match step {
        "sql_run" => {
            let txn = begin_write(&sagas.inner.db).await.map_err(db_err(KIND))?;
            let found = training_run::Entity::find()
                .filter(training_run::Column::ModelId.eq(model_id))
                .one(&txn)
                .await
                .map_err(db_err(KIND))?;
            let output = match found {
                Some(row) => {
                    // Checked again under the write lock: an artifact
                    // added since the request was checked still refuses.
                    refuse_with_artifacts(&txn, &row).await?;
                    run_tag::Entity::delete_many()
                        .filter(run_tag::Column::RunId.eq(row.id))
                        .exec(&txn)
                        .await
                        .map_err(db_err(KIND))?;
                    training_run::Entity::delete_by_id(row.id)
                        .exec(&txn)
                        .await
                        .map_err(db_err(KIND))?;
                    serde_json::json!({"run_id": row.id, "deleted": true})
                }
                None => serde_json::json!({"deleted": false}),
            };
            run.done_in(&txn, step, output).await?;
            txn.commit().await.map_err(db_err(KIND))
        }
        "config_document" => {
            sagas
                .inner
                .docs
                .delete(configs::MODEL_CONFIGS, configs::by_model_id(model_id), true)
                .await?;
            run.done(step, serde_json::Value::Null).await
        }
        "migrated_copy" => {
            // By the indexed source id when the run was known.
            let copy = match run
                .output("sql_run")
                .and_then(|o| o.get("run_id"))
                .and_then(serde_json::Value::as_i64)
            {
                Some(id) => bson::doc! {"source_id": id},
                None => bson::doc! {"model_id": {"$eq": model_id}},
            };
            sagas
                .inner
                .docs
                .delete(migrate::MIGRATED, copy, true)
                .await?;
            run.done(step, serde_json::Value::Null).await
        }
        other => Err(Error::internal(format!("`{KIND}` has no step `{other}`"))),
    }
}

pub(super) fn result(run: &Progress) -> serde_json::Value {
    let sql = run.output("sql_run").cloned().unwrap_or_default();
    serde_json::json!({
        "deleted": sql.get("deleted").cloned().unwrap_or(serde_json::Value::Bool(false)),
        "run_id": sql.get("run_id").cloned().unwrap_or_default(),
    })
}
