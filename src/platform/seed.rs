//! Sample data: the seed scenario's datasets, runs, artifacts and model
//! configs, and synthetic runs from a seeded generator.
//!
//! What MUST hold:
//!
//! - [`seed_scenario`] is idempotent: it adds only what is missing and
//!   never overwrites a record that exists (a run completed since, an edited
//!   config). A second call adds nothing.
//! - [`seed_synthetic`] makes sure runs `synthetic-000001` to
//!   `synthetic-N` exist, each generated from `(seed, index)` alone: the same
//!   seed gives the same runs on every machine and backend, whatever `N`,
//!   and a repeated or interrupted call converges on the same rows (upserts
//!   by `model_id`, in batches that each commit whole).
//! - Everything goes through the registry and config functions, so the
//!   sample data obeys the same validation as any client's.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::engines::Engines;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::configs;
use crate::platform::entities::{DeploymentStatus, RunStatus};
use crate::platform::registry::aliases::{self, AliasRef};
use crate::platform::registry::{self, NewArtifact, NewDataset, NewDeployment, RunUpsert};
use crate::platform::rows::RowCaches;

/// The seed of [`seed_synthetic`] when none is given.
pub const DEFAULT_SEED: u64 = 42;

/// Runs written per transaction by [`seed_synthetic`].
pub const SYNTHETIC_BATCH: u64 = 1000;

/// The largest `n` [`seed_synthetic`] accepts.
pub const MAX_SYNTHETIC: u64 = 10_000_000;

/// The alias the scenario sets: the fraud detector in production.
pub const CHAMPION: &str = "fraud-detector@champion";

/// How many records of one kind a seeding added, and how many were there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedLine {
    /// What was seeded, e.g. `datasets`.
    pub what: &'static str,
    /// Where it lives, e.g. `relational`.
    pub engine: &'static str,
    /// Records added by this call.
    pub added: u64,
    /// Records that were already there and were left as they were.
    pub present: u64,
}

/// What [`seed_scenario`] did, one line per kind of record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// One line per kind, in seeding order.
    pub lines: Vec<SeedLine>,
}

impl SeedReport {
    fn line(&mut self, what: &'static str, engine: &'static str, added: u64, present: u64) {
        self.lines.push(SeedLine {
            what,
            engine,
            added,
            present,
        });
    }

    /// Records added, over every kind.
    pub fn added(&self) -> u64 {
        self.lines.iter().map(|l| l.added).sum()
    }
}

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    // Fixed dates keep the sample identical on every call and backend.
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The scenario's datasets.
pub fn scenario_datasets() -> Vec<NewDataset> {
    vec![
        NewDataset {
            name: "fraud-train-v1".into(),
            description: Some("Credit card fraud detection dataset".into()),
            total_rows: Some(284_807),
            total_features: Some(30),
            created_by: Some("alice".into()),
        },
        NewDataset {
            name: "recommendation-train-v2".into(),
            description: Some("User-item interaction dataset".into()),
            total_rows: Some(10_000_000),
            total_features: Some(50),
            created_by: Some("bob".into()),
        },
    ]
}

/// The ids of the scenario's datasets, by name. NotFound when one is
/// missing ([`seed_scenario`] adds them).
pub async fn dataset_ids(engines: &Engines) -> Result<BTreeMap<&'static str, i64>> {
    let mut ids = BTreeMap::new();
    for name in ["fraud-train-v1", "recommendation-train-v2"] {
        ids.insert(
            name,
            registry::dataset_by_name(&engines.relational, name)
                .await?
                .id,
        );
    }
    Ok(ids)
}

/// One scenario run: `(model_id, dataset, model_name, framework, outcome,
/// started_at, tags)`, where the outcome is `(accuracy, loss, seconds)` of
/// a completed run or `None` for one still running.
type ScenarioRun = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Option<(f64, f64, i64)>,
    DateTime<Utc>,
    &'static [(&'static str, &'static str)],
);

fn scenario_runs() -> [ScenarioRun; 3] {
    [
        (
            "fraud-detector-v1",
            "fraud-train-v1",
            "fraud-detector",
            "pytorch",
            Some((0.9845, 0.042, 3600)),
            at(1, 12, 9),
            &[("team", "risk"), ("stage", "baseline")],
        ),
        (
            "fraud-detector-v2",
            "fraud-train-v1",
            "fraud-detector",
            "tensorflow",
            Some((0.9821, 0.051, 4200)),
            at(2, 3, 9),
            &[("team", "risk"), ("stage", "challenger")],
        ),
        (
            "recommender-model",
            "recommendation-train-v2",
            "recommender",
            "pytorch",
            None,
            at(3, 2, 9),
            &[("team", "personalization")],
        ),
    ]
}

/// One scenario artifact: `(model_id, uri, format, size, checksum,
/// environment it is deployed to)`.
type ScenarioArtifact = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    &'static str,
    &'static str,
);

const SCENARIO_ARTIFACTS: [ScenarioArtifact; 2] = [
    (
        "fraud-detector-v1",
        "s3://strata-models/fraud-detector/v1/model.pt",
        "torchscript",
        48_234_112,
        "sha256:5d41402abc4b2a76b9719d911017c592",
        "production",
    ),
    (
        "fraud-detector-v2",
        "s3://strata-models/fraud-detector/v2/saved_model.zip",
        "savedmodel",
        61_440_000,
        "sha256:7d793037a0760186574b0282f2f435e7",
        "staging",
    ),
];

/// Loads the seed scenario, adding only what is missing: the datasets
/// `fraud-train-v1` and `recommendation-train-v2`; the runs
/// `fraud-detector-v1` (pytorch), `fraud-detector-v2` (tensorflow) and
/// `recommender-model` (still running) with tags; an artifact and a
/// deployment for each fraud detector, and the alias
/// `fraud-detector@champion` on the first; the three flexible configs
/// ([`configs::seed_configs`]) and two experiments of `fraud-detector-v1`.
pub async fn seed_scenario(engines: &Engines) -> Result<SeedReport> {
    let db = &engines.relational;
    let mut report = SeedReport::default();

    let mut missing = Vec::new();
    for dataset in scenario_datasets() {
        match registry::dataset_by_name(db, &dataset.name).await {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => missing.push(dataset),
            Err(e) => return Err(e),
        }
    }
    let added = missing.len() as u64;
    registry::upsert_datasets(db, missing).await?;
    report.line("datasets", "relational", added, 2 - added);
    let ids = dataset_ids(engines).await?;

    let mut missing = Vec::new();
    for (model_id, dataset, model_name, framework, outcome, started_at, tags) in scenario_runs() {
        match registry::run_by_model_id(db, model_id).await {
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let dataset_id = ids.get(dataset).copied().ok_or_else(|| {
            Error::internal(format!("dataset `{dataset}` was not seeded")).with_operation("seed")
        })?;
        missing.push(RunUpsert {
            dataset_id,
            model_id: model_id.into(),
            model_name: model_name.into(),
            framework: framework.into(),
            status: if outcome.is_some() {
                RunStatus::Completed
            } else {
                RunStatus::Running
            },
            accuracy: outcome.map(|o| o.0),
            loss: outcome.map(|o| o.1),
            training_time_seconds: outcome.map(|o| o.2),
            started_at,
            completed_at: outcome.map(|o| started_at + Duration::seconds(o.2)),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
    }
    let added = missing.len() as u64;
    registry::upsert_runs(db, missing).await?;
    report.line("training runs", "relational", added, 3 - added);

    let mut added = 0;
    let mut champion = None;
    for (model_id, uri, format, size_bytes, checksum, environment) in SCENARIO_ARTIFACTS {
        let details = registry::run_details(db, model_id).await?;
        let existing = details.artifacts.iter().find(|a| a.uri == uri);
        let artifact_id = match existing {
            Some(artifact) => artifact.id,
            None => {
                // The artifact and its deployment go in together, so a
                // second call never deploys the same artifact twice.
                let txn = crate::engines::relational::begin_write(db)
                    .await
                    .map_err(registry::db_err("seed"))?;
                let artifact = registry::create_artifact(
                    &txn,
                    NewArtifact {
                        run_id: details.run.id,
                        uri: uri.into(),
                        format: format.into(),
                        size_bytes,
                        checksum: checksum.into(),
                    },
                )
                .await?;
                registry::create_deployment(
                    &txn,
                    NewDeployment {
                        artifact_id: artifact.id,
                        environment: environment.into(),
                        status: DeploymentStatus::Active,
                        traffic_weight: 1.0,
                    },
                )
                .await?;
                txn.commit().await.map_err(registry::db_err("seed"))?;
                added += 1;
                artifact.id
            }
        };
        if environment == "production" {
            champion = Some(artifact_id);
        }
    }
    report.line("artifacts + deployments", "relational", added, 2 - added);

    let alias: AliasRef = CHAMPION.parse()?;
    let added = match aliases::resolve_alias(db, &alias).await {
        Ok(_) => 0,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let artifact_id = champion.ok_or_else(|| {
                Error::internal("the scenario has no production artifact").with_operation("seed")
            })?;
            aliases::move_alias(
                db,
                &alias,
                artifact_id,
                "strata seed",
                Some("best accuracy on fraud-train-v1"),
            )
            .await?;
            1
        }
        Err(e) => return Err(e),
    };
    report.line("aliases", "relational", added, 1 - added);

    let mut added = 0;
    let all = configs::seed_configs();
    let total = all.len() as u64;
    for config in all {
        match configs::insert_config(engines.documents.as_ref(), config).await {
            Ok(()) => added += 1,
            Err(e) if e.kind() == ErrorKind::Conflict => {}
            Err(e) => return Err(e),
        }
    }
    report.line("model configs", "documents", added, total - added);

    // Two experiments of the first fraud detector, unless it has some.
    let docs = engines.documents.as_ref();
    let existing = configs::experiments_of(docs, "fraud-detector-v1", 2)
        .await?
        .len() as u64;
    let added = if existing == 0 {
        for (date, lr, accuracy) in [
            (at(1, 10, 14), 0.01, 0.9712),
            (at(1, 11, 16), 0.001, 0.9845),
        ] {
            configs::add_experiment(
                docs,
                "fraud-detector-v1",
                date,
                bson::doc! {"learning_rate": lr, "batch_size": 32, "epochs": 50},
                &BTreeMap::from([("accuracy".to_owned(), accuracy)]),
            )
            .await?;
        }
        2
    } else {
        0
    };
    report.line("experiments", "documents", added, existing);
    Ok(report)
}

/// The families synthetic runs are drawn from: `(model_name, dataset,
/// team)`.
const FAMILIES: [(&str, &str, &str); 3] = [
    ("fraud-detector", "fraud-train-v1", "risk"),
    ("recommender", "recommendation-train-v2", "personalization"),
    ("ranker", "recommendation-train-v2", "search"),
];

/// Frameworks with their weights (out of 100).
const FRAMEWORKS: [(&str, u32); 5] = [
    ("pytorch", 35),
    ("xgboost", 25),
    ("tensorflow", 20),
    ("sklearn", 15),
    ("jax", 5),
];

/// The `model_id` of synthetic run `index` (1-based).
pub fn synthetic_model_id(index: u64) -> String {
    format!("synthetic-{index:06}")
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Synthetic run `index` (1-based) of `seed`, on the datasets named in
/// `dataset_ids` (by name: `fraud-train-v1` and `recommendation-train-v2`).
/// Depends on `(seed, index)` and those ids only.
pub fn synthetic_run(
    seed: u64,
    index: u64,
    dataset_ids: &BTreeMap<&str, i64>,
) -> Result<RunUpsert> {
    // One stream per run: the golden-ratio step spreads neighbouring
    // indexes over the seed space before ChaCha expands them.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (model_name, dataset, team) = FAMILIES[rng.random_range(0..FAMILIES.len())];
    let dataset_id = *dataset_ids.get(dataset).ok_or_else(|| {
        Error::internal(format!("dataset `{dataset}` was not seeded")).with_operation("seed")
    })?;
    let mut pick = rng.random_range(0..100u32);
    let mut framework = FRAMEWORKS[0].0;
    for (name, weight) in FRAMEWORKS {
        if pick < weight {
            framework = name;
            break;
        }
        pick -= weight;
    }
    let status = match rng.random_range(0..100u32) {
        0..80 => RunStatus::Completed,
        80..92 => RunStatus::Failed,
        _ => RunStatus::Running,
    };
    let started_at = at(1, 1, 0)
        + Duration::minutes(i64::try_from(index).unwrap_or(i64::MAX / 120) * 17)
        + Duration::seconds(rng.random_range(0..600));
    let seconds = rng.random_range(300..14_400i64);
    let accuracy = round4(rng.random_range(0.80..0.995));
    let loss = round4((1.0 - accuracy) * rng.random_range(0.8..1.6));
    let (accuracy, loss, training_time_seconds, completed_at) = match status {
        RunStatus::Completed => (
            Some(accuracy),
            Some(loss),
            Some(seconds),
            Some(started_at + Duration::seconds(seconds)),
        ),
        RunStatus::Failed => (
            None,
            None,
            Some(seconds / 4),
            Some(started_at + Duration::seconds(seconds / 4)),
        ),
        RunStatus::Running => (None, None, None, None),
    };
    Ok(RunUpsert {
        dataset_id,
        model_id: synthetic_model_id(index),
        model_name: model_name.into(),
        framework: framework.into(),
        status,
        accuracy,
        loss,
        training_time_seconds,
        started_at,
        completed_at,
        tags: BTreeMap::from([
            ("team".to_owned(), team.to_owned()),
            ("source".to_owned(), "synthetic".to_owned()),
        ]),
    })
}

/// Makes sure synthetic runs 1 to `n` of `seed` exist (see the module
/// docs), in batches of [`SYNTHETIC_BATCH`]; `progress` hears the number
/// of runs written so far after each batch, and the planner statistics are
/// refreshed at the end ([`crate::migration::refresh_statistics`]). Needs
/// the scenario's datasets ([`seed_scenario`]). Returns `n`.
pub async fn seed_synthetic(
    engines: &Engines,
    n: u64,
    seed: u64,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<u64> {
    if n > MAX_SYNTHETIC {
        return Err(
            Error::invalid(format!("at most {MAX_SYNTHETIC} synthetic runs, got {n}"))
                .with_field("runs"),
        );
    }
    let db = &engines.relational;
    let dataset_ids = dataset_ids(engines).await?;
    let mut done = 0;
    while done < n {
        let end = (done + SYNTHETIC_BATCH).min(n);
        let batch = (done + 1..=end)
            .map(|i| synthetic_run(seed, i, &dataset_ids))
            .collect::<Result<Vec<_>>>()?;
        registry::upsert_runs(db, batch).await?;
        done = end;
        progress(done);
    }
    // A bulk load is what leaves the planner's statistics furthest behind:
    // without them, SQLite sorts every match rather than read a page off
    // an index.
    crate::migration::refresh_statistics(db).await?;
    Ok(n)
}

/// The sample data as a service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Seeder {
    engines: Engines,
    /// Emptied after seeding: rows changed in bulk.
    rows: RowCaches,
}

impl Seeder {
    pub(crate) fn new(engines: Engines, rows: RowCaches) -> Seeder {
        Seeder { engines, rows }
    }

    /// The seed scenario, added where missing ([`seed_scenario`]).
    pub async fn scenario(&self) -> Result<SeedReport> {
        let report = seed_scenario(&self.engines).await;
        self.rows.clear().await;
        report
    }

    /// Synthetic runs 1 to `n` of `seed` ([`seed_synthetic`]).
    pub async fn synthetic(
        &self,
        n: u64,
        seed: u64,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64> {
        let added = seed_synthetic(&self.engines, n, seed, progress).await;
        self.rows.clear().await;
        added
    }
}
