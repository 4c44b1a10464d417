//! Operations that span engines (`strata::platform::hybrid`): the register
//! saga and its compensations, model info, the runs-to-docs migration with
//! verify, dual write and reconcile.
//!
//! Every case is written once against `Engines` and runs on the embedded
//! profile (SQLite + embedded documents + embedded KV) and, with
//! `STRATA_TEST_FULL=1`, on the full profile: a fresh PostgreSQL database, a
//! fresh MongoDB database and a unique Redis key prefix, all removed when
//! the case ends, also when it fails. Failures are injected through the
//! saga's fault hook and through a failing `DocumentStore` decorator.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use bson::{Bson, Document, doc};
use sea_orm::ConnectionTrait;
use strata::config::Config;
use strata::engines::document::{
    CollectionOptions, DocumentStore, DocumentStoreExt, FindOptions, IndexSpec, UpdateOptions,
    UpdateResult,
};
use strata::engines::{self, Engines};
use strata::platform::configs;
use strata::platform::entities::RunStatus;
use strata::platform::hybrid::migrate::{
    self, CHECKPOINTS, DUAL_WRITE_FAILURES, Drift, MIGRATED, MigrateOptions,
};
use strata::platform::hybrid::{self, RUNS_REGISTERED_KEY, RegisterRun, Step};
use strata::platform::registry::{self, NewDataset, NewRun, RunOutcome};
use strata::{Error, ErrorKind, Result};

// ---------------------------------------------------------------- set-up

use common::engines::{run_case, setup_embedded};

async fn setup_full() -> Option<common::engines::Env> {
    common::engines::setup_full("hybrid").await
}

/// A document store whose writes to chosen collections (or all) fail.
#[derive(Debug)]
struct FailingDocs {
    inner: Arc<dyn DocumentStore>,
    failing: Mutex<HashSet<String>>,
    fail_all: bool,
}

impl FailingDocs {
    fn on(inner: Arc<dyn DocumentStore>, collections: &[&str]) -> Arc<FailingDocs> {
        Arc::new(FailingDocs {
            inner,
            failing: Mutex::new(collections.iter().map(|c| (*c).to_owned()).collect()),
            fail_all: false,
        })
    }

    fn all(inner: Arc<dyn DocumentStore>) -> Arc<FailingDocs> {
        Arc::new(FailingDocs {
            inner,
            failing: Mutex::new(HashSet::new()),
            fail_all: true,
        })
    }

    fn check(&self, collection: &str) -> Result<()> {
        if self.fail_all || self.failing.lock().unwrap().contains(collection) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("injected failure writing to {collection}"),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl DocumentStore for FailingDocs {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn target(&self) -> String {
        self.inner.target()
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
    async fn create_collection(&self, c: &str, o: CollectionOptions) -> Result<()> {
        self.inner.create_collection(c, o).await
    }
    async fn list_collections(&self) -> Result<Vec<String>> {
        self.inner.list_collections().await
    }
    async fn drop_collection(&self, c: &str) -> Result<()> {
        self.inner.drop_collection(c).await
    }
    async fn drop_database(&self) -> Result<()> {
        self.inner.drop_database().await
    }
    async fn insert_many(&self, c: &str, d: Vec<Document>) -> Result<Vec<Bson>> {
        self.check(c)?;
        self.inner.insert_many(c, d).await
    }
    async fn find(&self, c: &str, f: Document, o: FindOptions) -> Result<Vec<Document>> {
        self.inner.find(c, f, o).await
    }
    async fn count(&self, c: &str, f: Document) -> Result<u64> {
        self.inner.count(c, f).await
    }
    async fn update(
        &self,
        c: &str,
        f: Document,
        u: Document,
        o: UpdateOptions,
    ) -> Result<UpdateResult> {
        self.check(c)?;
        self.inner.update(c, f, u, o).await
    }
    async fn replace_one(
        &self,
        c: &str,
        f: Document,
        r: Document,
        u: bool,
    ) -> Result<UpdateResult> {
        self.check(c)?;
        self.inner.replace_one(c, f, r, u).await
    }
    async fn delete(&self, c: &str, f: Document, m: bool) -> Result<u64> {
        self.inner.delete(c, f, m).await
    }
    async fn aggregate(&self, c: &str, p: Vec<Document>) -> Result<Vec<Document>> {
        self.inner.aggregate(c, p).await
    }
    async fn create_index(&self, c: &str, i: IndexSpec) -> Result<String> {
        self.inner.create_index(c, i).await
    }
    async fn list_indexes(&self, c: &str) -> Result<Vec<IndexSpec>> {
        self.inner.list_indexes(c).await
    }
    async fn drop_index(&self, c: &str, n: &str) -> Result<()> {
        self.inner.drop_index(c, n).await
    }
}

fn with_docs(engines: &Engines, docs: Arc<dyn DocumentStore>) -> Engines {
    Engines {
        documents: docs,
        ..engines.clone()
    }
}

// ---------------------------------------------------------------- helpers

async fn datasets(engines: &Engines) -> (i64, i64) {
    let mut ids = Vec::new();
    for name in ["fraud-train-v1", "recommendation-train-v2"] {
        let d = registry::create_dataset(
            &engines.relational,
            NewDataset {
                name: name.into(),
                total_rows: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        ids.push(d.id);
    }
    configs::ensure_collections(engines.documents.as_ref())
        .await
        .unwrap();
    (ids[0], ids[1])
}

fn request(model_id: &str, framework: &str) -> RegisterRun {
    RegisterRun {
        dataset_name: "fraud-train-v1".into(),
        model_id: model_id.into(),
        model_name: "fraud-detector".into(),
        framework: framework.into(),
        config: doc! {"training": {"optimizer": "adam", "epochs": 50}},
        tags: BTreeMap::from([("team".into(), "risk".into())]),
        started_at: None,
    }
}

async fn framework_count(engines: &Engines, framework: &str) -> Option<String> {
    engines
        .kv
        .hget(RUNS_REGISTERED_KEY, framework)
        .await
        .unwrap()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
}

/// Asserts that no engine holds anything of `model_id`.
async fn assert_no_trace(engines: &Engines, model_id: &str) {
    let run = registry::run_by_model_id(&engines.relational, model_id).await;
    assert_eq!(run.unwrap_err().kind(), ErrorKind::NotFound, "run row left");
    assert!(
        configs::config_of(engines.documents.as_ref(), model_id)
            .await
            .unwrap()
            .is_none(),
        "config document left"
    );
    let tags: Vec<_> = engines
        .relational
        .query_all_raw(sea_orm::Statement::from_string(
            engines.relational.get_database_backend(),
            "SELECT run_id FROM run_tags",
        ))
        .await
        .unwrap();
    assert!(tags.len() <= 1, "only the kept run's tag may remain");
}

/// Runs with varied outcomes on both datasets; returns their model ids.
async fn seed_runs(engines: &Engines, n: usize) -> Vec<String> {
    let (fraud, reco) = datasets(engines).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let model_id = format!("run-{i:03}");
        registry::create_run(
            &engines.relational,
            NewRun {
                dataset_id: if i % 2 == 0 { fraud } else { reco },
                model_id: model_id.clone(),
                model_name: format!("model-{}", i % 3),
                framework: ["pytorch", "xgboost", "tensorflow"][i % 3].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        if i % 3 != 2 {
            registry::complete_run(
                &engines.relational,
                &model_id,
                RunOutcome {
                    status: RunStatus::Completed,
                    accuracy: Some(0.8 + i as f64 / 100.0),
                    loss: Some(0.1),
                    training_time_seconds: Some(60 * i as i64),
                    completed_at: None,
                },
            )
            .await
            .unwrap();
        }
        ids.push(model_id);
    }
    ids
}

fn options(batch: u64) -> MigrateOptions {
    MigrateOptions {
        batch,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- unregister

/// `unregister_run` removes the row, tags, config and migrated copy, and
/// leaves the registration counter; a run with artifacts is refused with
/// nothing removed; an unknown model is `false`, not an error.
async fn unregister_removes_a_model_from_every_engine(engines: Engines) {
    datasets(&engines).await;
    configs::ensure_collections(engines.documents.as_ref())
        .await
        .unwrap();
    hybrid::register_run(&engines, request("fd-1", "pytorch"))
        .await
        .unwrap();
    hybrid::register_run(&engines, request("fd-2", "pytorch"))
        .await
        .unwrap();
    migrate::runs_to_docs(
        &engines,
        MigrateOptions {
            batch: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();

    assert!(hybrid::unregister_run(&engines, "fd-1").await.unwrap());
    assert_no_trace(&engines, "fd-1").await;
    let copies = engines
        .documents
        .count(MIGRATED, doc! {"model_id": "fd-1"})
        .await
        .unwrap();
    assert_eq!(copies, 0, "migrated copy left");
    assert_eq!(
        framework_count(&engines, "pytorch").await.as_deref(),
        Some("2"),
        "the counter counts registrations made"
    );
    let report = migrate::verify(&engines).await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(!hybrid::unregister_run(&engines, "fd-1").await.unwrap());

    let run = registry::run_by_model_id(&engines.relational, "fd-2")
        .await
        .unwrap();
    registry::create_artifact(
        &engines.relational,
        registry::NewArtifact {
            run_id: run.id,
            uri: "file:///fd-2".into(),
            format: "onnx".into(),
            size_bytes: 1,
            checksum: "c".into(),
        },
    )
    .await
    .unwrap();
    let err = hybrid::unregister_run(&engines, "fd-2").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("artifact"), "{err}");
    assert!(
        configs::config_of(engines.documents.as_ref(), "fd-2")
            .await
            .unwrap()
            .is_some(),
        "nothing removed on refusal"
    );
    assert_eq!(
        engines
            .documents
            .count(MIGRATED, doc! {"model_id": "fd-2"})
            .await
            .unwrap(),
        1
    );
}

// ---------------------------------------------------------------- saga

async fn register_writes_every_engine_linked_by_model_id(engines: Engines) {
    datasets(&engines).await;
    let registered = hybrid::register_run(&engines, request("fd-1", "pytorch"))
        .await
        .unwrap();
    assert_eq!(registered.run.model_id, "fd-1");
    assert_eq!(registered.framework_runs, 1);
    let run = registry::run_by_model_id(&engines.relational, "fd-1")
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Running);
    let config = configs::config_of(engines.documents.as_ref(), "fd-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(config.get_str("framework").unwrap(), "pytorch");
    assert_eq!(config.get_str("dataset").unwrap(), "fraud-train-v1");
    assert_eq!(
        config
            .get_document("config")
            .unwrap()
            .get_document("training")
            .unwrap()
            .get_str("optimizer")
            .unwrap(),
        "adam"
    );
    assert_eq!(
        framework_count(&engines, "pytorch").await.as_deref(),
        Some("1")
    );

    // The same model_id again: a conflict, and the first stays whole.
    let err = hybrid::register_run(&engines, request("fd-1", "pytorch"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(
        configs::config_of(engines.documents.as_ref(), "fd-1")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        framework_count(&engines, "pytorch").await.as_deref(),
        Some("1")
    );

    let missing = RegisterRun {
        dataset_name: "no-such-dataset".into(),
        ..request("fd-2", "pytorch")
    };
    let err = hybrid::register_run(&engines, missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_no_trace(&engines, "fd-2").await;
}

async fn a_failure_at_each_step_leaves_no_orphan(engines: Engines) {
    datasets(&engines).await;
    // One registration that succeeds, to show compensations touch only
    // the failed one.
    hybrid::register_run(&engines, request("kept", "pytorch"))
        .await
        .unwrap();
    for step in Step::ALL {
        let model_id = format!("failed-at-{step:?}").to_lowercase();
        let fail = move |s: Step| {
            if s == step {
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("injected at {s:?}"),
                ))
            } else {
                Ok(())
            }
        };
        let err = hybrid::register_run_with_faults(&engines, request(&model_id, "pytorch"), &fail)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{step:?}: {err}");
        assert!(err.to_string().contains("injected"), "{err}");
        assert_no_trace(&engines, &model_id).await;
        assert_eq!(
            framework_count(&engines, "pytorch").await.as_deref(),
            Some("1"),
            "the counter is back after a failure at {step:?}"
        );
    }
    let kept = hybrid::model_info(&engines, "kept").await.unwrap();
    assert_eq!(kept.run.model_id, "kept");
    assert!(kept.config.is_some());
}

async fn a_failing_document_store_compensates_the_run_row(engines: Engines) {
    datasets(&engines).await;
    let broken = with_docs(
        &engines,
        FailingDocs::on(Arc::clone(&engines.documents), &[configs::MODEL_CONFIGS]),
    );
    let err = hybrid::register_run(&broken, request("doc-down", "xgboost"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_no_trace(&engines, "doc-down").await;
    assert_eq!(framework_count(&engines, "xgboost").await, None);
}

// ---------------------------------------------------------------- model info

async fn model_info_gathers_every_engine(engines: Engines) {
    datasets(&engines).await;
    hybrid::register_run(&engines, request("info-1", "pytorch"))
        .await
        .unwrap();
    let key = hybrid::model_counters_key("info-1");
    engines.kv.hincr_by(&key, "predictions", 42).await.unwrap();
    engines.kv.hincr_by(&key, "cache_hits", 7).await.unwrap();
    let info = hybrid::model_info(&engines, "info-1").await.unwrap();
    assert_eq!(info.run.model_id, "info-1");
    assert_eq!(info.dataset.name, "fraud-train-v1");
    let config = info.config.unwrap();
    assert_eq!(config["framework"], "pytorch");
    assert_eq!(config["config"]["training"]["epochs"], 50);
    assert_eq!(
        info.counters,
        BTreeMap::from([("cache_hits".into(), 7), ("predictions".into(), 42)])
    );

    let err = hybrid::model_info(&engines, "nobody").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.field(), Some("model_id"));
}

// ---------------------------------------------------------------- migration

async fn migration_resumes_after_interruption_and_verifies(engines: Engines) {
    let ids = seed_runs(&engines, 7).await;
    let before = migrate::verify(&engines).await.unwrap();
    assert_eq!((before.sql_count, before.doc_count), (7, 0));
    assert_eq!(before.drift.len(), 7);

    let stopped = migrate::runs_to_docs(
        &engines,
        MigrateOptions {
            stop_after_batches: Some(1),
            ..options(3)
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (stopped.copied, stopped.batches, stopped.complete),
        (3, 1, false)
    );
    let checkpoint = migrate::checkpoint(engines.documents.as_ref())
        .await
        .unwrap();
    assert_eq!(checkpoint, stopped.last_id);
    let partial = migrate::verify(&engines).await.unwrap();
    let missing: Vec<_> = partial
        .drift
        .iter()
        .map(|d| match d {
            Drift::Missing { model_id, .. } => model_id.clone(),
            other => panic!("only missing records expected, got {other:?}"),
        })
        .collect();
    assert_eq!(missing, ids[3..]);

    let resumed = migrate::runs_to_docs(&engines, options(3)).await.unwrap();
    assert_eq!(resumed.resumed_after, checkpoint);
    assert_eq!((resumed.copied, resumed.complete), (4, true));
    let clean = migrate::verify(&engines).await.unwrap();
    assert!(clean.is_clean(), "{clean:?}");
    assert_eq!(clean.doc_count, 7);

    // Idempotent: again copies nothing, from the start rewrites in place.
    let again = migrate::runs_to_docs(&engines, options(3)).await.unwrap();
    assert_eq!(again.copied, 0);
    let redo = migrate::runs_to_docs(
        &engines,
        MigrateOptions {
            from_start: true,
            ..options(100)
        },
    )
    .await
    .unwrap();
    assert_eq!(redo.copied, 7);
    assert_eq!(engines.documents.count(MIGRATED, doc! {}).await.unwrap(), 7);
    assert!(migrate::verify(&engines).await.unwrap().is_clean());

    let doc = engines
        .documents
        .find_one(
            MIGRATED,
            doc! {"model_id": "run-000"},
            FindOptions::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doc.get_str("dataset").unwrap(), "fraud-train-v1");
    assert_eq!(doc.get_str("status").unwrap(), "completed");
    assert_eq!(
        doc.get_document("metrics")
            .unwrap()
            .get_f64("accuracy")
            .unwrap(),
        0.8
    );
    let checkpoints = engines.documents.count(CHECKPOINTS, doc! {}).await.unwrap();
    assert_eq!(checkpoints, 1);
}

async fn verify_lists_exactly_the_drifted_records(engines: Engines) {
    seed_runs(&engines, 5).await;
    migrate::runs_to_docs(&engines, options(2)).await.unwrap();
    assert!(migrate::verify(&engines).await.unwrap().is_clean());

    let docs = engines.documents.as_ref();
    docs.update_one(
        MIGRATED,
        doc! {"model_id": "run-001"},
        doc! {"$set": {"metrics.accuracy": 0.5}},
        false,
    )
    .await
    .unwrap();
    let report = migrate::verify(&engines).await.unwrap();
    assert_eq!(report.drift.len(), 1, "{report:?}");
    assert!(matches!(
        &report.drift[0],
        Drift::Changed { model_id, expected, found, .. } if model_id == "run-001" && expected != found
    ));

    // A field outside the canonical ones is not drift.
    docs.update_one(
        MIGRATED,
        doc! {"model_id": "run-002"},
        doc! {"$set": {"custom_metadata.note": "free-form"}},
        false,
    )
    .await
    .unwrap();
    assert_eq!(migrate::verify(&engines).await.unwrap().drift.len(), 1);

    docs.delete_one(MIGRATED, doc! {"model_id": "run-003"})
        .await
        .unwrap();
    docs.insert_one(
        MIGRATED,
        doc! {"source_id": 999_999_i64, "model_id": "ghost"},
    )
    .await
    .unwrap();
    let report = migrate::verify(&engines).await.unwrap();
    assert_eq!((report.sql_count, report.doc_count), (5, 5));
    assert!(!report.is_clean());
    let kinds: Vec<_> = report
        .drift
        .iter()
        .map(|d| match d {
            Drift::Missing { model_id, .. } => format!("missing {model_id}"),
            Drift::Changed { model_id, .. } => format!("changed {model_id}"),
            Drift::Extra { source_id, .. } => format!("extra {source_id:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["missing run-003", "changed run-001", "extra Some(999999)"]
    );

    let repaired = migrate::reconcile(&engines).await.unwrap();
    assert_eq!(repaired.removed, 1);
    assert!(migrate::verify(&engines).await.unwrap().is_clean());
}

/// Progress is told before the first batch and after each one, ending at
/// the total.
async fn migration_reports_progress_per_batch(engines: Engines) {
    seed_runs(&engines, 5).await;
    let seen = Mutex::new(Vec::new());
    let report = migrate::runs_to_docs_with_progress(&engines, options(2), &|p| {
        seen.lock().unwrap().push((p.copied, p.total));
    })
    .await
    .unwrap();
    assert_eq!(report.copied, 5);
    assert_eq!(*seen.lock().unwrap(), vec![(0, 5), (2, 5), (4, 5), (5, 5)]);
}

async fn batch_size_is_checked(engines: Engines) {
    for batch in [0, migrate::MAX_BATCH + 1] {
        let err = migrate::runs_to_docs(&engines, options(batch))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some("batch"));
    }
}

// ---------------------------------------------------------------- dual write

async fn failed_second_write_is_recorded_and_reconciled(engines: Engines) {
    seed_runs(&engines, 3).await;
    migrate::runs_to_docs(&engines, options(10)).await.unwrap();
    let (fraud, _) = (
        registry::dataset_by_name(&engines.relational, "fraud-train-v1")
            .await
            .unwrap()
            .id,
        (),
    );
    let new = |model_id: &str| NewRun {
        dataset_id: fraud,
        model_id: model_id.into(),
        model_name: "dual".into(),
        framework: "pytorch".into(),
        ..Default::default()
    };
    let ok = migrate::create_run_dual_write(&engines, new("dual-ok"))
        .await
        .unwrap();
    assert_eq!(ok.document_error, None);
    assert!(migrate::verify(&engines).await.unwrap().is_clean());

    let broken = with_docs(
        &engines,
        FailingDocs::on(Arc::clone(&engines.documents), &[MIGRATED]),
    );
    let failed = migrate::create_run_dual_write(&broken, new("dual-failed"))
        .await
        .unwrap();
    assert!(failed.document_error.is_some());
    let records = engines
        .documents
        .find(DUAL_WRITE_FAILURES, doc! {}, FindOptions::default())
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].get_str("model_id").unwrap(), "dual-failed");
    let drift = migrate::verify(&engines).await.unwrap().drift;
    assert!(matches!(&drift[..], [Drift::Missing { model_id, .. }] if model_id == "dual-failed"));

    let report = migrate::reconcile(&engines).await.unwrap();
    assert_eq!((report.recorded, report.repaired), (1, 1));
    assert!(migrate::verify(&engines).await.unwrap().is_clean());
    assert_eq!(
        engines
            .documents
            .count(DUAL_WRITE_FAILURES, doc! {})
            .await
            .unwrap(),
        0
    );
}

async fn unrecorded_failure_is_still_repaired(engines: Engines) {
    seed_runs(&engines, 2).await;
    migrate::runs_to_docs(&engines, options(10)).await.unwrap();
    let fraud = registry::dataset_by_name(&engines.relational, "fraud-train-v1")
        .await
        .unwrap()
        .id;
    let down = with_docs(&engines, FailingDocs::all(Arc::clone(&engines.documents)));
    let failed = migrate::create_run_dual_write(
        &down,
        NewRun {
            dataset_id: fraud,
            model_id: "lost?".into(),
            model_name: "dual".into(),
            framework: "pytorch".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let text = failed.document_error.unwrap();
    assert!(text.contains("recording it failed too"), "{text}");
    assert_eq!(
        engines
            .documents
            .count(DUAL_WRITE_FAILURES, doc! {})
            .await
            .unwrap(),
        0
    );
    let report = migrate::reconcile(&engines).await.unwrap();
    assert_eq!((report.recorded, report.repaired), (0, 1));
    assert!(migrate::verify(&engines).await.unwrap().is_clean());
}

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!(
            $backend, $setup;
            register_writes_every_engine_linked_by_model_id,
            a_failure_at_each_step_leaves_no_orphan,
            a_failing_document_store_compensates_the_run_row,
            model_info_gathers_every_engine,
            migration_resumes_after_interruption_and_verifies,
            verify_lists_exactly_the_drifted_records,
            batch_size_is_checked,
            migration_reports_progress_per_batch,
            failed_second_write_is_recorded_and_reconciled,
            unrecorded_failure_is_still_repaired,
            unregister_removes_a_model_from_every_engine,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(full, setup_full());

// ---------------------------------------------------------------- CLI

/// `strata ARGS` on the embedded profile in `dir` (config copied from the
/// repository), with a clean `STRATA_*` environment.
fn strata(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STRATA_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .args(args)
        .output()
        .expect("run strata")
}

/// `migrate runs-to-docs`, `verify` (0 clean, 1 with the drift listed,
/// `--json`), `reconcile`, and exit 2 for a bad `--batch`.
#[tokio::test]
async fn cli_migrate_on_the_embedded_profile() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::copy(
        repo.join("config/default.toml"),
        dir.path().join("config/default.toml"),
    )
    .unwrap();
    let config = Config {
        data_dir: dir.path().join("data"),
        ..Default::default()
    };
    {
        let engines = Engines::open(&config).await.unwrap();
        seed_runs(&engines, 5).await;
        engines.relational.close().await.unwrap();
    }

    let out = strata(dir.path(), &["migrate", "runs-to-docs", "--batch", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = strata(dir.path(), &["migrate", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let out = strata(dir.path(), &["migrate", "runs-to-docs", "--batch", "2"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("copied 5 runs in 3 batches"), "{text}");
    let out = strata(dir.path(), &["migrate", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    {
        let docs = engines::open_documents(&config).await.unwrap();
        docs.update_one(
            MIGRATED,
            doc! {"model_id": "run-004"},
            doc! {"$set": {"status": "failed"}},
            false,
        )
        .await
        .unwrap();
    }
    let out = strata(dir.path(), &["migrate", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed") && text.contains("run-004"),
        "{text}"
    );
    let out = strata(dir.path(), &["--json", "migrate", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], false);
    assert_eq!(report["drift"].as_array().unwrap().len(), 1);
    assert_eq!(report["drift"][0]["drift"], "changed");
    assert_eq!(report["drift"][0]["model_id"], "run-004");

    let out = strata(dir.path(), &["migrate", "reconcile"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = strata(dir.path(), &["migrate", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
