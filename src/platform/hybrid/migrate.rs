//! The `runs-to-docs` migration: training runs (with their dataset's name)
//! copied from the relational engine into the `training_runs_migrated`
//! collection, its verification, dual write while it is under way, and the
//! reconciliation that repairs failed second writes.
//!
//! What MUST hold:
//!
//! - The relational engine is the source of truth; a migrated document is a
//!   function of its run row ([`run_document`]) keyed by `source_id` (the
//!   run's id), unique by an index that [`runs_to_docs`] and [`reconcile`]
//!   create ([`ensure_collections`]). Copying is an upsert by `source_id`:
//!   running it again never duplicates.
//! - Runs are copied in ascending id order, in batches. After each batch the
//!   last copied id is stored as a checkpoint (`migration_checkpoints`,
//!   `_id: "runs-to-docs"`), so an interrupted migration resumes after it.
//!   The checkpoint is written only after the batch's documents, so a crash
//!   between the two re-copies (idempotently) rather than skips.
//! - [`verify`] compares counts and a stable checksum of every record's
//!   canonical fields ([`checksum`]: FNV-1a 64 over a canonical JSON array,
//!   timestamps at millisecond precision, BSON's) and lists every drifted
//!   record: missing, extra, changed.
//! - [`create_run_dual_write`] writes the run to SQL (primary), then its
//!   document. A failed second write is recorded in the document store's
//!   `dual_write_failures` collection and returned as a warning, not an
//!   error: the run exists. [`reconcile`] repairs every recorded failure
//!   *and* every drift [`verify`] finds, so a failure whose record could not
//!   be written either (the document store being down) is still repaired:
//!   the record is an audit trail and fast path, the diff against the source
//!   of truth is the guarantee.

use std::collections::BTreeMap;

use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use crate::engines::Engines;
use crate::engines::document::{DocumentStore, DocumentStoreExt, FindOptions, IndexSpec};
use crate::error::{Error, Result};
use crate::platform::entities::{dataset, training_run};
use crate::platform::registry::{self, NewRun, db_err};

/// The collection of migrated runs.
pub const MIGRATED: &str = "training_runs_migrated";
/// The collection of migration checkpoints.
pub const CHECKPOINTS: &str = "migration_checkpoints";
/// The collection recording failed second writes of the dual write.
pub const DUAL_WRITE_FAILURES: &str = "dual_write_failures";
/// The checkpoint's `_id` for this migration.
pub const CHECKPOINT_ID: &str = "runs-to-docs";

/// Largest accepted batch size.
pub const MAX_BATCH: u64 = 10_000;

/// Options of [`runs_to_docs`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrateOptions {
    /// Runs per batch (1 to [`MAX_BATCH`]).
    pub batch: u64,
    /// Ignore the checkpoint and copy from the first run.
    pub from_start: bool,
    /// Stop after this many batches, as an interruption would (tests).
    pub stop_after_batches: Option<u64>,
}

/// How far [`runs_to_docs_with_progress`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateProgress {
    /// Runs copied so far by this call.
    pub copied: u64,
    /// Runs after the checkpoint when the call began.
    pub total: u64,
}

/// What [`runs_to_docs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    /// Runs copied by this call.
    pub copied: u64,
    /// Batches written by this call.
    pub batches: u64,
    /// The checkpoint when the call began.
    pub resumed_after: Option<i64>,
    /// The checkpoint when it ended.
    pub last_id: Option<i64>,
    /// Whether every run up to the end was copied (false when stopped).
    pub complete: bool,
}

/// The stable checksum of a migrated record's canonical fields: FNV-1a 64
/// over the canonical JSON array, as 16 hex digits. Stable across builds and
/// platforms (unlike `std`'s hasher).
pub fn checksum(canonical: &serde_json::Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// The canonical fields of a run, in a fixed order.
fn canonical_of_run(run: &training_run::Model, dataset: &str) -> serde_json::Value {
    serde_json::json!([
        run.id,
        run.model_id,
        run.model_name,
        run.framework,
        run.status.as_str(),
        run.accuracy,
        run.loss,
        run.training_time_seconds,
        dataset,
        millis(run.started_at),
        run.completed_at.map(millis),
    ])
}

fn opt_f64(doc: &Document, key: &str) -> Option<f64> {
    match doc.get(key) {
        Some(Bson::Double(d)) => Some(*d),
        Some(Bson::Int32(i)) => Some(f64::from(*i)),
        Some(Bson::Int64(i)) => Some(*i as f64),
        _ => None,
    }
}

fn opt_i64(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key) {
        Some(Bson::Int32(i)) => Some(i64::from(*i)),
        Some(Bson::Int64(i)) => Some(*i),
        _ => None,
    }
}

fn opt_str<'a>(doc: &'a Document, key: &str) -> Option<&'a str> {
    match doc.get(key) {
        Some(Bson::String(s)) => Some(s),
        _ => None,
    }
}

fn opt_millis(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key) {
        Some(Bson::DateTime(d)) => Some(d.timestamp_millis()),
        _ => None,
    }
}

/// The canonical fields read back from a migrated document. Missing or
/// mistyped fields read as null, so they show as a changed checksum.
fn canonical_of_doc(doc: &Document) -> serde_json::Value {
    let metrics = match doc.get("metrics") {
        Some(Bson::Document(m)) => m.clone(),
        _ => Document::new(),
    };
    serde_json::json!([
        opt_i64(doc, "source_id"),
        opt_str(doc, "model_id"),
        opt_str(doc, "model_name"),
        opt_str(doc, "framework"),
        opt_str(doc, "status"),
        opt_f64(&metrics, "accuracy"),
        opt_f64(&metrics, "loss"),
        opt_i64(doc, "training_time_seconds"),
        opt_str(doc, "dataset"),
        opt_millis(doc, "started_at"),
        opt_millis(doc, "completed_at"),
    ])
}

fn bson_opt<T: Into<Bson>>(value: Option<T>) -> Bson {
    value.map_or(Bson::Null, Into::into)
}

/// The migrated document of a run: its fields, `metrics.{accuracy,loss}`,
/// the dataset's name, and room for flexible fields (`tags`,
/// `custom_metadata`) that the relational schema does not have.
pub fn run_document(run: &training_run::Model, dataset: &str) -> Document {
    doc! {
        "source_id": run.id,
        "model_id": run.model_id.clone(),
        "model_name": run.model_name.clone(),
        "framework": run.framework.clone(),
        "status": run.status.as_str(),
        "metrics": {"accuracy": bson_opt(run.accuracy), "loss": bson_opt(run.loss)},
        "training_time_seconds": bson_opt(run.training_time_seconds),
        "dataset": dataset,
        "started_at": bson::DateTime::from_millis(millis(run.started_at)),
        "completed_at": bson_opt(run.completed_at.map(|t| bson::DateTime::from_millis(millis(t)))),
        "migrated_at": bson::DateTime::now(),
        "tags": [],
        "custom_metadata": {},
    }
}

/// Upserts the document of one run, keyed by `source_id`.
async fn upsert_run(
    docs: &dyn DocumentStore,
    run: &training_run::Model,
    dataset: &str,
) -> Result<()> {
    docs.replace_one(
        MIGRATED,
        doc! {"source_id": run.id},
        run_document(run, dataset),
        true,
    )
    .await?;
    Ok(())
}

/// Creates the unique index on `source_id` of [`MIGRATED`] and the index
/// on `source_id` of [`DUAL_WRITE_FAILURES`]. Idempotent. Without the
/// first, every upsert by `source_id` scans the collection, which makes a
/// migration quadratic.
pub async fn ensure_collections(docs: &dyn DocumentStore) -> Result<()> {
    docs.create_index(MIGRATED, IndexSpec::new(doc! {"source_id": 1}).unique())
        .await?;
    docs.create_index(DUAL_WRITE_FAILURES, IndexSpec::new(doc! {"source_id": 1}))
        .await?;
    Ok(())
}

/// The stored checkpoint: the last migrated run id.
pub async fn checkpoint(docs: &dyn DocumentStore) -> Result<Option<i64>> {
    let found = docs
        .find_one(
            CHECKPOINTS,
            doc! {"_id": CHECKPOINT_ID},
            FindOptions::default(),
        )
        .await?;
    Ok(found.as_ref().and_then(|d| opt_i64(d, "last_id")))
}

async fn store_checkpoint(docs: &dyn DocumentStore, last_id: i64) -> Result<()> {
    docs.replace_one(
        CHECKPOINTS,
        doc! {"_id": CHECKPOINT_ID},
        doc! {"last_id": last_id, "updated_at": bson::DateTime::now()},
        true,
    )
    .await?;
    Ok(())
}

/// Copies runs after the checkpoint into [`MIGRATED`] in batches, storing
/// the checkpoint after each batch. Idempotent and resumable.
pub async fn runs_to_docs(engines: &Engines, options: MigrateOptions) -> Result<MigrateReport> {
    runs_to_docs_with_progress(engines, options, &|_| {}).await
}

/// [`runs_to_docs`], telling `progress` how far it is: once before the
/// first batch (nothing copied yet) and after each batch.
pub async fn runs_to_docs_with_progress(
    engines: &Engines,
    options: MigrateOptions,
    progress: &(dyn Fn(MigrateProgress) + Send + Sync),
) -> Result<MigrateReport> {
    if options.batch == 0 || options.batch > MAX_BATCH {
        return Err(Error::invalid(format!(
            "`batch` must be between 1 and {MAX_BATCH}, got {}",
            options.batch
        ))
        .with_field("batch"));
    }
    let docs = engines.documents.as_ref();
    let db = &engines.relational;
    ensure_collections(docs).await?;
    let resumed_after = if options.from_start {
        None
    } else {
        checkpoint(docs).await?
    };
    let after = resumed_after.unwrap_or(0);
    let remaining = training_run::Entity::find()
        .filter(training_run::Column::Id.gt(after))
        .count_rows(db)
        .await?;
    progress(MigrateProgress {
        copied: 0,
        total: remaining,
    });
    let mut report = MigrateReport {
        resumed_after,
        last_id: resumed_after,
        ..Default::default()
    };
    let mut last = after;
    loop {
        if options
            .stop_after_batches
            .is_some_and(|n| report.batches >= n)
        {
            return Ok(report);
        }
        let rows = training_run::Entity::find()
            .filter(training_run::Column::Id.gt(last))
            .find_also_related(dataset::Entity)
            .order_by_asc(training_run::Column::Id)
            .limit(options.batch)
            .all(db)
            .await
            .map_err(db_err("runs_to_docs"))?;
        if rows.is_empty() {
            break;
        }
        let n = rows.len() as u64;
        for (run, dataset) in &rows {
            let name = dataset.as_ref().map_or("", |d| d.name.as_str());
            upsert_run(docs, run, name).await?;
            last = run.id;
        }
        store_checkpoint(docs, last).await?;
        report.copied += n;
        report.batches += 1;
        report.last_id = Some(last);
        progress(MigrateProgress {
            copied: report.copied,
            total: remaining,
        });
        if n < options.batch {
            break;
        }
    }
    report.complete = true;
    Ok(report)
}

/// Counting rows through sea-orm's paginator, mapped to strata errors.
trait CountRows {
    async fn count_rows(self, db: &sea_orm::DatabaseConnection) -> Result<u64>;
}

impl CountRows for sea_orm::Select<training_run::Entity> {
    async fn count_rows(self, db: &sea_orm::DatabaseConnection) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        self.count(db).await.map_err(db_err("runs_to_docs"))
    }
}

/// How one record drifted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "drift", rename_all = "lowercase")]
pub enum Drift {
    /// A run with no document.
    Missing {
        /// The run's id.
        source_id: i64,
        /// The run's model_id.
        model_id: String,
    },
    /// A document with no run (or without a usable `source_id`).
    Extra {
        /// Its `source_id`, when it has one.
        source_id: Option<i64>,
        /// Its `_id`, as relaxed extended JSON text.
        document_id: String,
    },
    /// A document whose canonical fields differ from its run's.
    Changed {
        /// The run's id.
        source_id: i64,
        /// The run's model_id.
        model_id: String,
        /// Checksum of the run.
        expected: String,
        /// Checksum of the document.
        found: String,
    },
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Runs in the relational engine.
    pub sql_count: u64,
    /// Documents in [`MIGRATED`].
    pub doc_count: u64,
    /// Every drifted record, missing first, by source id.
    pub drift: Vec<Drift>,
}

impl VerifyReport {
    /// Whether the two sides agree.
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty() && self.sql_count == self.doc_count
    }
}

/// Rows read per statement while verifying.
const VERIFY_PAGE: u64 = 1000;

/// Every run's (model_id, checksum), by id. Read in keyset pages; held in
/// memory (about 100 bytes a run).
async fn run_checksums(engines: &Engines) -> Result<BTreeMap<i64, (String, String)>> {
    let mut out = BTreeMap::new();
    let mut last = 0i64;
    loop {
        let rows = training_run::Entity::find()
            .filter(training_run::Column::Id.gt(last))
            .find_also_related(dataset::Entity)
            .order_by_asc(training_run::Column::Id)
            .limit(VERIFY_PAGE)
            .all(&engines.relational)
            .await
            .map_err(db_err("verify"))?;
        let Some((tail, _)) = rows.last() else { break };
        last = tail.id;
        for (run, dataset) in rows {
            let name = dataset.as_ref().map_or("", |d| d.name.as_str());
            let sum = checksum(&canonical_of_run(&run, name));
            out.insert(run.id, (run.model_id, sum));
        }
    }
    Ok(out)
}

/// Compares the runs with their documents: counts, and per record the
/// checksum of the canonical fields. Lists every drifted record.
pub async fn verify(engines: &Engines) -> Result<VerifyReport> {
    let runs = run_checksums(engines).await?;
    let mut report = VerifyReport {
        sql_count: runs.len() as u64,
        ..Default::default()
    };
    let mut seen = BTreeMap::new();
    let mut extra = Vec::new();
    let mut changed = Vec::new();
    // In `_id` order, one page at a time: the documents are never all held.
    let mut pages = engines
        .documents
        .find_batches(MIGRATED, doc! {}, VERIFY_PAGE);
    while let Some(page) = pages.try_next().await? {
        report.doc_count += page.len() as u64;
        for doc in &page {
            let source_id = opt_i64(doc, "source_id");
            let document_id = doc
                .get("_id")
                .cloned()
                .unwrap_or(Bson::Null)
                .into_relaxed_extjson()
                .to_string();
            match source_id.and_then(|id| runs.get(&id).map(|r| (id, r))) {
                // A second document for the same run (a later `_id`) is
                // extra too.
                Some((id, (model_id, expected))) if !seen.contains_key(&id) => {
                    seen.insert(id, ());
                    let found = checksum(&canonical_of_doc(doc));
                    if &found != expected {
                        changed.push(Drift::Changed {
                            source_id: id,
                            model_id: model_id.clone(),
                            expected: expected.clone(),
                            found,
                        });
                    }
                }
                _ => extra.push((source_id, document_id)),
            }
        }
    }
    for (id, (model_id, _)) in &runs {
        if !seen.contains_key(id) {
            report.drift.push(Drift::Missing {
                source_id: *id,
                model_id: model_id.clone(),
            });
        }
    }
    // By source id, as documented (the walk went in `_id` order).
    changed.sort_by_key(|d| match d {
        Drift::Changed { source_id, .. } => *source_id,
        _ => 0,
    });
    extra.sort();
    report.drift.extend(changed);
    report.drift.extend(
        extra
            .into_iter()
            .map(|(source_id, document_id)| Drift::Extra {
                source_id,
                document_id,
            }),
    );
    Ok(report)
}

/// What [`create_run_dual_write`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct DualWrite {
    /// The run, written to the relational engine.
    pub run: training_run::Model,
    /// The second write's error, when it failed (and was recorded, or its
    /// record failed too: both are in the text).
    pub document_error: Option<String>,
}

/// Starts a run during the migration: the SQL row first (the primary; its
/// failure is the call's error), then its document in [`MIGRATED`]. A
/// failed document write is recorded in [`DUAL_WRITE_FAILURES`] and
/// reported in [`DualWrite::document_error`]; [`reconcile`] repairs it.
pub async fn create_run_dual_write(engines: &Engines, new: NewRun) -> Result<DualWrite> {
    let dataset_id = new.dataset_id;
    let run = registry::create_run(&engines.relational, new).await?;
    let docs = engines.documents.as_ref();
    // From here on the run exists: any failure is the second write's, to
    // record and reconcile, not the call's error.
    let second = async {
        let dataset = dataset::Entity::find_by_id(dataset_id)
            .one(&engines.relational)
            .await
            .map_err(db_err("create_run_dual_write"))?
            .map(|d| d.name)
            .unwrap_or_default();
        upsert_run(docs, &run, &dataset).await
    };
    let Err(error) = second.await else {
        return Ok(DualWrite {
            run,
            document_error: None,
        });
    };
    tracing::warn!(model_id = %run.model_id, "dual write to documents failed: {error}");
    let record = doc! {
        "source_id": run.id,
        "model_id": run.model_id.clone(),
        "collection": MIGRATED,
        "error": error.to_string(),
        "failed_at": bson::DateTime::now(),
    };
    let text = match docs
        .replace_one(
            DUAL_WRITE_FAILURES,
            doc! {"source_id": run.id},
            record,
            true,
        )
        .await
    {
        Ok(_) => error.to_string(),
        Err(record_error) => {
            tracing::error!(
                model_id = %run.model_id,
                "could not record the failed dual write either (reconcile's diff will find it): {record_error}"
            );
            format!("{error}; recording it failed too: {record_error}")
        }
    };
    Ok(DualWrite {
        run,
        document_error: Some(text),
    })
}

/// What [`reconcile`] repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Recorded dual-write failures found.
    pub recorded: u64,
    /// Documents written (missing or changed runs).
    pub repaired: u64,
    /// Documents without a run, deleted.
    pub removed: u64,
}

/// Repairs the migrated collection: every recorded dual-write failure and
/// every drift [`verify`] finds (missing or changed documents rewritten from
/// their run, extra ones deleted); then clears the failure records it
/// covered. Afterwards [`verify`] is clean unless writes raced with it.
pub async fn reconcile(engines: &Engines) -> Result<ReconcileReport> {
    let docs = engines.documents.as_ref();
    ensure_collections(docs).await?;
    let mut report = ReconcileReport::default();
    let mut ids: Vec<i64> = Vec::new();
    let mut records = docs.find_batches(DUAL_WRITE_FAILURES, doc! {}, VERIFY_PAGE);
    while let Some(page) = records.try_next().await? {
        report.recorded += page.len() as u64;
        ids.extend(page.iter().filter_map(|r| opt_i64(r, "source_id")));
    }
    let drift = verify(engines).await?;
    for d in &drift.drift {
        match d {
            Drift::Missing { source_id, .. } | Drift::Changed { source_id, .. } => {
                ids.push(*source_id)
            }
            Drift::Extra { source_id, .. } => {
                // Extra documents: delete by source_id, or by the documents
                // lacking one.
                // A duplicate of a run's document is deleted with it and
                // the run rewritten below.
                let filter = match source_id {
                    Some(id) => {
                        ids.push(*id);
                        doc! {"source_id": id}
                    }
                    None => doc! {"source_id": {"$exists": false}},
                };
                report.removed += docs.delete_many(MIGRATED, filter).await?;
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let found = training_run::Entity::find_by_id(id)
            .find_also_related(dataset::Entity)
            .one(&engines.relational)
            .await
            .map_err(db_err("reconcile"))?;
        match found {
            Some((run, dataset)) => {
                let name = dataset.as_ref().map_or("", |d| d.name.as_str());
                upsert_run(docs, &run, name).await?;
                report.repaired += 1;
            }
            // The run is gone (a compensated registration): nothing to copy.
            None => {
                docs.delete_many(MIGRATED, doc! {"source_id": id}).await?;
            }
        }
        docs.delete_many(DUAL_WRITE_FAILURES, doc! {"source_id": id})
            .await?;
    }
    Ok(report)
}

/// The runs-to-documents migration as a service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Migration {
    engines: Engines,
}

impl Migration {
    pub(crate) fn new(engines: Engines) -> Migration {
        Migration { engines }
    }

    /// Copies runs after the checkpoint into [`MIGRATED`] ([`runs_to_docs`]),
    /// telling `progress` how far it is.
    pub async fn runs_to_docs(
        &self,
        options: MigrateOptions,
        progress: &(dyn Fn(MigrateProgress) + Send + Sync),
    ) -> Result<MigrateReport> {
        runs_to_docs_with_progress(&self.engines, options, progress).await
    }

    /// Compares the runs with their documents ([`verify`]).
    pub async fn verify(&self) -> Result<VerifyReport> {
        verify(&self.engines).await
    }

    /// Repairs recorded and unrecorded drift ([`reconcile`]).
    pub async fn reconcile(&self) -> Result<ReconcileReport> {
        reconcile(&self.engines).await
    }
}
