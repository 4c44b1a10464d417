//! The runs-to-docs migration (`strata::platform::hybrid::migrate`) with
//! verify, dual write and reconcile. (Registering and removing models,
//! sagas and model info are in `tests/sagas.rs`.)
//!
//! Every case is written once against `Engines` and runs on the embedded
//! profile (SQLite + embedded documents + embedded KV) and, with
//! `STRATA_TEST_FULL=1`, on the full profile: a fresh PostgreSQL database, a
//! fresh MongoDB database and a unique Redis key prefix, all removed when
//! the case ends, also when it fails. Failures are injected through a
//! failing `DocumentStore` decorator.

mod common;

use std::sync::{Arc, Mutex};

use bson::doc;
use strata::ErrorKind;
use strata::config::Config;
use strata::engines::document::DocumentStoreExt;
use strata::engines::document::FindOptions;
use strata::engines::{self, Engines};
use strata::platform::configs;
use strata::platform::entities::RunStatus;
use strata::platform::hybrid::migrate::{
    self, CHECKPOINTS, DUAL_WRITE_FAILURES, Drift, MIGRATED, MigrateOptions,
};
use strata::platform::registry::{self, NewDataset, NewRun, RunOutcome};

use common::faulty::{FailingDocs, with_docs};

// ---------------------------------------------------------------- set-up

use common::engines::{run_case, setup_embedded};

async fn setup_full() -> Option<common::engines::Env> {
    common::engines::setup_full("hybrid").await
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
            model_id: "lost-1".into(),
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
            migration_resumes_after_interruption_and_verifies,
            verify_lists_exactly_the_drifted_records,
            batch_size_is_checked,
            migration_reports_progress_per_batch,
            failed_second_write_is_recorded_and_reconciled,
            unrecorded_failure_is_still_repaired,
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
        strata::platform::schema::apply(&engines).await.unwrap();
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
