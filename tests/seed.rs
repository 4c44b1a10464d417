//! Sample data (`strata::platform::seed`): the seed scenario loads once and
//! never overwrites, and synthetic runs are a pure function of
//! `(seed, index)`, stored as generated. Each case runs on the embedded
//! profile and, with `STRATA_TEST_FULL=1`, on the full profile.

mod common;

use std::collections::BTreeMap;
use std::sync::Mutex;

use strata::ErrorKind;
use strata::engines::Engines;
use strata::platform::configs;
use strata::platform::entities::RunStatus;
use strata::platform::registry::aliases::{self, AliasRef};
use strata::platform::registry::lineage;
use strata::platform::registry::{self, RunOutcome};
use strata::platform::seed::{self, SeedReport};

use common::engines::{Env, run_case, setup_embedded};

async fn setup_full() -> Option<Env> {
    common::engines::setup_full("seed").await
}

fn added(report: &SeedReport) -> BTreeMap<&str, (u64, u64)> {
    report
        .lines
        .iter()
        .map(|l| (l.what, (l.added, l.present)))
        .collect()
}

/// The first call adds every record, the second none, and what was loaded
/// is the scenario's data, linked as it should be.
async fn scenario_loads_once(engines: Engines) {
    let first = seed::seed_scenario(&engines).await.unwrap();
    let counts = added(&first);
    assert_eq!(counts["datasets"], (2, 0));
    assert_eq!(counts["training runs"], (3, 0));
    assert_eq!(counts["artifacts + deployments"], (2, 0));
    assert_eq!(counts["aliases"], (1, 0));
    assert_eq!(counts["model configs"], (3, 0));
    assert_eq!(counts["experiments"], (2, 0));

    let second = seed::seed_scenario(&engines).await.unwrap();
    assert_eq!(second.added(), 0, "{second:?}");
    for line in &second.lines {
        assert_eq!(line.present, counts[line.what].0, "{line:?}");
    }

    let db = &engines.relational;
    let v1 = registry::run_by_model_id(db, "fraud-detector-v1")
        .await
        .unwrap();
    assert_eq!(v1.accuracy, Some(0.9845));
    assert_eq!(v1.framework, "pytorch");
    let reco = registry::run_by_model_id(db, "recommender-model")
        .await
        .unwrap();
    assert_eq!(reco.status, RunStatus::Running);
    let lineage = lineage::dataset_lineage(db, "fraud-train-v1")
        .await
        .unwrap();
    assert_eq!(lineage.runs.len(), 2);
    for run in &lineage.runs {
        assert_eq!(run.artifacts.len(), 1, "{}", run.run.model_id);
        assert_eq!(run.artifacts[0].deployments.len(), 1);
    }
    let champion = aliases::resolve_alias(db, &seed::CHAMPION.parse::<AliasRef>().unwrap())
        .await
        .unwrap();
    let v1_details = registry::run_details(db, "fraud-detector-v1")
        .await
        .unwrap();
    assert_eq!(champion.artifact_id, v1_details.artifacts[0].id);
    assert_eq!(v1_details.tags["team"], "risk");

    let docs = engines.documents.as_ref();
    let frameworks = configs::average_accuracy_by_framework(docs).await.unwrap();
    assert_eq!(frameworks.iter().map(|f| f.count).sum::<i64>(), 3);
    assert_eq!(
        configs::experiments_of(docs, "fraud-detector-v1", 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

/// Seeding again leaves records changed since as they are.
async fn seeding_never_overwrites(engines: Engines) {
    seed::seed_scenario(&engines).await.unwrap();
    let db = &engines.relational;
    registry::complete_run(
        db,
        "recommender-model",
        RunOutcome {
            status: RunStatus::Completed,
            accuracy: Some(0.91),
            loss: Some(0.3),
            training_time_seconds: Some(7200),
            completed_at: None,
        },
    )
    .await
    .unwrap();
    let docs = engines.documents.as_ref();
    configs::set_metrics(
        docs,
        "fraud-detector-v1",
        &BTreeMap::from([("accuracy".to_owned(), 0.99)]),
    )
    .await
    .unwrap();

    let again = seed::seed_scenario(&engines).await.unwrap();
    assert_eq!(again.added(), 0);
    let reco = registry::run_by_model_id(db, "recommender-model")
        .await
        .unwrap();
    assert_eq!(reco.status, RunStatus::Completed);
    assert_eq!(reco.accuracy, Some(0.91));
    let config = configs::config_of(docs, "fraud-detector-v1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        config
            .get_document("metrics")
            .unwrap()
            .get_f64("accuracy")
            .unwrap(),
        0.99
    );
}

/// Synthetic runs are stored exactly as generated, depend on the seed,
/// converge when seeded again with a larger `n`, and report progress per
/// batch.
async fn synthetic_runs_are_seeded_and_idempotent(engines: Engines) {
    seed::seed_scenario(&engines).await.unwrap();
    let db = &engines.relational;
    let ids = seed::dataset_ids(&engines).await.unwrap();
    let seen = Mutex::new(Vec::new());
    let n = seed::SYNTHETIC_BATCH + 200;
    let written = seed::seed_synthetic(&engines, n, 7, &|done| seen.lock().unwrap().push(done))
        .await
        .unwrap();
    assert_eq!(written, n);
    assert_eq!(*seen.lock().unwrap(), vec![seed::SYNTHETIC_BATCH, n]);

    let stored = registry::runs_with_details(db, None).await.unwrap();
    assert_eq!(stored.len() as u64, n + 3);
    let mut frameworks = BTreeMap::<String, u64>::new();
    for index in [1, 2, 999, 1000, 1001, n] {
        let want = seed::synthetic_run(7, index, &ids).unwrap();
        let got = stored
            .iter()
            .find(|d| d.run.model_id == want.model_id)
            .unwrap_or_else(|| panic!("{} missing", want.model_id));
        assert_eq!(got.run.framework, want.framework);
        assert_eq!(got.run.status, want.status);
        assert_eq!(got.run.accuracy, want.accuracy);
        assert_eq!(got.run.loss, want.loss);
        assert_eq!(got.run.started_at, want.started_at);
        assert_eq!(got.run.completed_at, want.completed_at);
        assert_eq!(got.tags, want.tags);
    }
    for d in &stored {
        *frameworks.entry(d.run.framework.clone()).or_default() += 1;
    }
    assert!(
        frameworks.len() >= 4,
        "frameworks are varied: {frameworks:?}"
    );

    // Another seed gives other runs; the same seed, the same ones.
    let a = seed::synthetic_run(7, 5, &ids).unwrap();
    assert_eq!(a, seed::synthetic_run(7, 5, &ids).unwrap());
    let differ = (1..=20)
        .filter(|&i| {
            seed::synthetic_run(7, i, &ids).unwrap() != seed::synthetic_run(8, i, &ids).unwrap()
        })
        .count();
    assert!(
        differ >= 15,
        "seeds 7 and 8 gave {differ} different runs of 20"
    );

    // Seeding again with a larger n adds only the new indexes.
    seed::seed_synthetic(&engines, n + 10, 7, &|_| {})
        .await
        .unwrap();
    let count = registry::runs_with_details(db, None).await.unwrap().len() as u64;
    assert_eq!(count, n + 10 + 3);

    let err = seed::seed_synthetic(&engines, seed::MAX_SYNTHETIC + 1, 7, &|_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("runs"));
}

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        run_cases!(
            $backend, $setup;
            scenario_loads_once,
            seeding_never_overwrites,
            synthetic_runs_are_seeded_and_idempotent,
        );
    };
}

all_cases!(embedded, setup_embedded());
all_cases!(full, setup_full());
