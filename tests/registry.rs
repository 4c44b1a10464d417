//! The model registry on SQLite and PostgreSQL: the same cases, the same
//! answers. SQLite runs always; PostgreSQL when `STRATA_TEST_FULL=1`, each
//! test in a database of its own that it drops.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{Duration, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use strata::ErrorKind;
use strata::platform::entities::{DeploymentStatus, RunStatus};
use strata::platform::registry::{
    self, NewArtifact, NewDataset, NewDeployment, NewRun, RunOutcome, RunUpsert, aliases,
    analytics, lineage, pages,
};

use common::TestDb;

fn at(minutes: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn new_dataset(name: &str) -> NewDataset {
    NewDataset {
        name: name.into(),
        description: Some(format!("{name} data")),
        total_rows: Some(1000),
        total_features: Some(30),
        created_by: Some("alice".into()),
    }
}

fn new_run(dataset_id: i64, model_id: &str, model_name: &str, framework: &str) -> NewRun {
    NewRun {
        dataset_id,
        model_id: model_id.into(),
        model_name: model_name.into(),
        framework: framework.into(),
        ..Default::default()
    }
}

fn completed(accuracy: f64, loss: f64, seconds: i64) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Completed,
        accuracy: Some(accuracy),
        loss: Some(loss),
        training_time_seconds: Some(seconds),
        completed_at: None,
    }
}

/// The seed scenario's sample data plus a few runs to group and rank.
async fn seed(db: &DatabaseConnection) -> (i64, i64) {
    let fraud = registry::create_dataset(db, new_dataset("fraud-train-v1"))
        .await
        .unwrap();
    let reco = registry::create_dataset(db, new_dataset("recommendation-train-v2"))
        .await
        .unwrap();
    let runs = [
        (
            fraud.id,
            "fraud-detector-v1",
            "fraud-detector",
            "pytorch",
            Some((0.9845, 0.042, 3600)),
        ),
        (
            fraud.id,
            "fraud-detector-v2",
            "fraud-detector",
            "tensorflow",
            Some((0.9821, 0.051, 4200)),
        ),
        (reco.id, "recommender-model", "recommender", "pytorch", None),
        (
            reco.id,
            "recommender-xgb",
            "recommender",
            "xgboost",
            Some((0.9100, 0.200, 0)),
        ),
        (
            fraud.id,
            "fraud-detector-v3",
            "fraud-detector",
            "pytorch",
            Some((0.9821, 0.047, 7200)),
        ),
    ];
    for (i, (dataset, model_id, name, framework, metrics)) in runs.into_iter().enumerate() {
        let mut run = new_run(dataset, model_id, name, framework);
        run.started_at = Some(at(i as i64));
        registry::create_run(db, run).await.unwrap();
        if let Some((accuracy, loss, seconds)) = metrics {
            registry::complete_run(db, model_id, completed(accuracy, loss, seconds))
                .await
                .unwrap();
        }
    }
    (fraud.id, reco.id)
}

async fn schema_enforces_status_and_uniqueness(db: DatabaseConnection) {
    let (fraud, _) = seed(&db).await;
    let backend = db.get_database_backend();
    let bogus = Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DbBackend::Postgres => {
                "INSERT INTO training_runs (dataset_id, model_id, model_name, framework, status, started_at) VALUES ($1, $2, $3, $4, $5, $6)"
            }
            _ => {
                "INSERT INTO training_runs (dataset_id, model_id, model_name, framework, status, started_at) VALUES (?, ?, ?, ?, ?, ?)"
            }
        },
        [
            fraud.into(),
            "bogus-status".into(),
            "m".into(),
            "pytorch".into(),
            "paused".into(),
            at(0).into(),
        ],
    );
    db.execute_raw(bogus)
        .await
        .expect_err("the CHECK constraint refuses an unknown status");

    let dup = registry::create_dataset(&db, new_dataset("fraud-train-v1"))
        .await
        .expect_err("dataset names are unique");
    assert_eq!(dup.kind(), ErrorKind::Conflict, "{dup}");

    let dup = registry::create_run(&db, new_run(fraud, "fraud-detector-v1", "x", "pytorch"))
        .await
        .expect_err("model ids are unique");
    assert_eq!(dup.kind(), ErrorKind::Conflict, "{dup}");

    let dangling = registry::create_run(&db, new_run(999_999, "orphan", "x", "pytorch"))
        .await
        .expect_err("the dataset must exist");
    assert_eq!(dangling.kind(), ErrorKind::Conflict, "{dangling}");

    let empty = registry::create_run(&db, new_run(fraud, "", "x", "pytorch"))
        .await
        .expect_err("model_id is required");
    assert_eq!(empty.kind(), ErrorKind::InvalidInput);
    assert_eq!(empty.field(), Some("model_id"));

    let mut bad_tag = new_run(fraud, "tagged", "x", "pytorch");
    bad_tag.tags.insert("has space".into(), "v".into());
    let err = registry::create_run(&db, bad_tag).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(matches!(
        registry::run_by_model_id(&db, "tagged")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    ));
}

async fn complete_run_records_metrics_once(db: DatabaseConnection) {
    let (fraud, _) = seed(&db).await;
    let mut run = new_run(fraud, "to-complete", "fraud-detector", "pytorch");
    run.tags = BTreeMap::from([("team".into(), "risk".into())]);
    let started = registry::create_run(&db, run).await.unwrap();
    assert_eq!(started.status, RunStatus::Running);
    assert_eq!(started.accuracy, None);

    let done = registry::complete_run(&db, "to-complete", completed(0.97, 0.08, 1800))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Completed);
    assert_eq!(done.accuracy, Some(0.97));
    assert_eq!(done.loss, Some(0.08));
    assert_eq!(done.training_time_seconds, Some(1800));
    assert!(done.completed_at.is_some_and(|t| t >= started.started_at));

    let again = registry::complete_run(&db, "to-complete", completed(0.5, 1.0, 1))
        .await
        .expect_err("a run ends once");
    assert_eq!(again.kind(), ErrorKind::Conflict, "{again}");
    let stored = registry::run_by_model_id(&db, "to-complete").await.unwrap();
    assert_eq!(
        stored.accuracy,
        Some(0.97),
        "the second completion changed nothing"
    );

    let missing = registry::complete_run(&db, "no-such-run", completed(0.5, 1.0, 1))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");

    let mut running = completed(0.5, 1.0, 1);
    running.status = RunStatus::Running;
    let err = registry::complete_run(&db, "recommender-model", running)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = registry::complete_run(&db, "recommender-model", completed(1.5, 1.0, 1))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("accuracy"), "{err}");
}

async fn top_models_join_dataset_and_rate_per_hour(db: DatabaseConnection) {
    seed(&db).await;
    let top = analytics::top_models_by_accuracy(&db, 3).await.unwrap();
    let ids: Vec<_> = top.iter().map(|m| m.model_id.as_str()).collect();
    // v2 and v3 tie on accuracy; the older run (lower id) comes first.
    assert_eq!(
        ids,
        [
            "fraud-detector-v1",
            "fraud-detector-v2",
            "fraud-detector-v3"
        ]
    );
    assert_eq!(top[0].dataset_name, "fraud-train-v1");
    assert_eq!(top[0].framework, "pytorch");
    assert_eq!(top[0].training_time_seconds, Some(3600));
    let per_hour = top[0].accuracy_per_hour.unwrap();
    assert!((per_hour - 0.9845).abs() < 1e-12, "{per_hour}");
    let per_hour = top[2].accuracy_per_hour.unwrap();
    assert!((per_hour - 0.9821 / 2.0).abs() < 1e-12, "{per_hour}");

    let all = analytics::top_models_by_accuracy(&db, 10).await.unwrap();
    assert_eq!(all.len(), 4, "the running run has no accuracy");
    let xgb = all.last().unwrap();
    assert_eq!(xgb.model_id, "recommender-xgb");
    assert_eq!(xgb.dataset_name, "recommendation-train-v2");
    assert_eq!(
        xgb.accuracy_per_hour, None,
        "zero training time has no rate"
    );
}

async fn framework_comparison_groups_completed_runs(db: DatabaseConnection) {
    seed(&db).await;
    let stats = analytics::framework_comparison(&db).await.unwrap();
    let frameworks: Vec<_> = stats.iter().map(|s| s.framework.as_str()).collect();
    assert_eq!(frameworks, ["pytorch", "tensorflow", "xgboost"]);
    let pytorch = &stats[0];
    assert_eq!(pytorch.runs, 2, "the running pytorch run is not counted");
    assert!((pytorch.avg_accuracy.unwrap() - (0.9845 + 0.9821) / 2.0).abs() < 1e-12);
    assert_eq!(pytorch.avg_training_time_seconds, Some(5400.0));
    assert_eq!(stats[1].runs, 1);
    assert_eq!(stats[1].avg_training_time_seconds, Some(4200.0));
}

async fn dataset_statistics_aggregate_one_dataset(db: DatabaseConnection) {
    let (fraud, _) = seed(&db).await;
    registry::create_run(&db, new_run(fraud, "failing", "fraud-detector", "jax"))
        .await
        .unwrap();
    registry::complete_run(
        &db,
        "failing",
        RunOutcome {
            status: RunStatus::Failed,
            accuracy: None,
            loss: None,
            training_time_seconds: Some(60),
            completed_at: None,
        },
    )
    .await
    .unwrap();
    let (dataset, stats) = analytics::dataset_statistics(&db, "fraud-train-v1")
        .await
        .unwrap();
    assert_eq!(dataset.name, "fraud-train-v1");
    assert_eq!(stats.total_runs, 4);
    assert_eq!((stats.running, stats.completed, stats.failed), (0, 3, 1));
    assert_eq!(stats.best_accuracy, Some(0.9845));
    assert_eq!(stats.min_loss, Some(0.042));
    assert_eq!(stats.total_training_seconds, Some(3600 + 4200 + 7200 + 60));
    assert_eq!(stats.frameworks, 3);
    let avg = stats.avg_accuracy.unwrap();
    assert!((avg - (0.9845 + 0.9821 + 0.9821) / 3.0).abs() < 1e-12);

    registry::create_dataset(&db, new_dataset("empty"))
        .await
        .unwrap();
    let (_, empty) = analytics::dataset_statistics(&db, "empty").await.unwrap();
    assert_eq!(empty.total_runs, 0);
    assert_eq!((empty.running, empty.completed, empty.failed), (0, 0, 0));
    assert_eq!(empty.best_accuracy, None);
    assert_eq!(empty.total_training_seconds, None);

    let missing = analytics::dataset_statistics(&db, "nope")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

async fn rank_runs_with_window_functions(db: DatabaseConnection) {
    seed(&db).await;
    let ranked = analytics::rank_runs(&db).await.unwrap();
    let rows: Vec<_> = ranked
        .iter()
        .map(|r| (r.model_id.as_str(), r.overall_rank, r.framework_rank))
        .collect();
    assert_eq!(
        rows,
        [
            ("fraud-detector-v1", 1, 1),
            ("fraud-detector-v2", 2, 1),
            ("fraud-detector-v3", 2, 2),
            ("recommender-xgb", 4, 1),
        ],
        "ties share a rank and leave a gap"
    );
    let pct: Vec<_> = ranked.iter().map(|r| r.percentile).collect();
    // PERCENT_RANK = (rank - 1) / (rows - 1) in ascending accuracy.
    assert_eq!(pct, [1.0, 1.0 / 3.0, 1.0 / 3.0, 0.0]);
}

async fn keyset_pages_are_stable_under_inserts(db: DatabaseConnection) {
    let d = registry::create_dataset(&db, new_dataset("paged"))
        .await
        .unwrap();
    // Pairs of runs share a start time, so the id must break ties.
    for i in 0..11 {
        let mut run = new_run(d.id, &format!("run-{i:02}"), "m", "pytorch");
        run.started_at = Some(at(i / 2));
        registry::create_run(&db, run).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages_read = 0;
    loop {
        let page = pages::list_runs(&db, cursor, 4).await.unwrap();
        pages_read += 1;
        seen.extend(page.runs.iter().map(|r| r.model_id.clone()));
        if pages_read == 1 {
            // A newer run arriving between pages must not shift the rest.
            let mut late = new_run(d.id, "late", "m", "pytorch");
            late.started_at = Some(at(100));
            registry::create_run(&db, late).await.unwrap();
        }
        match page.next {
            Some(next) => {
                assert_eq!(page.runs.len(), 4);
                cursor = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages_read, 3);
    let expected: Vec<_> = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
        .iter()
        .map(|i| format!("run-{i:02}"))
        .collect();
    assert_eq!(
        seen, expected,
        "newest first, ties by id, no repeats or gaps"
    );
    let err = pages::list_runs(&db, None, 0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

async fn bulk_upserts_insert_then_update(db: DatabaseConnection) {
    let batch: Vec<_> = (0..3).map(|i| new_dataset(&format!("bulk-{i}"))).collect();
    assert_eq!(registry::upsert_datasets(&db, batch).await.unwrap(), 3);
    let first = registry::dataset_by_name(&db, "bulk-1").await.unwrap();
    let mut again: Vec<_> = (0..4).map(|i| new_dataset(&format!("bulk-{i}"))).collect();
    again[1].total_rows = Some(5);
    again[1].description = Some("refreshed".into());
    assert_eq!(registry::upsert_datasets(&db, again).await.unwrap(), 4);
    let updated = registry::dataset_by_name(&db, "bulk-1").await.unwrap();
    assert_eq!(updated.id, first.id, "updated in place");
    assert_eq!(updated.total_rows, Some(5));
    assert_eq!(updated.description.as_deref(), Some("refreshed"));
    assert_eq!(updated.created_at, first.created_at, "created_at is kept");
    registry::dataset_by_name(&db, "bulk-3").await.unwrap();

    let run = |i: i64, accuracy: f64| RunUpsert {
        dataset_id: first.id,
        model_id: format!("bulk-run-{i}"),
        model_name: "bulk".into(),
        framework: "pytorch".into(),
        status: RunStatus::Completed,
        accuracy: Some(accuracy),
        loss: Some(0.1),
        training_time_seconds: Some(10),
        started_at: at(i),
        completed_at: Some(at(i + 1)),
        // Every third run is tagged: tags go in with the batch.
        tags: if i % 3 == 0 {
            BTreeMap::from([("sweep".to_owned(), format!("s{i}"))])
        } else {
            BTreeMap::new()
        },
    };
    let runs: Vec<_> = (0..1200).map(|i| run(i, 0.5)).collect();
    assert_eq!(registry::upsert_runs(&db, runs).await.unwrap(), 1200);
    let runs: Vec<_> = (1195..1205).map(|i| run(i, 0.9)).collect();
    assert_eq!(registry::upsert_runs(&db, runs).await.unwrap(), 10);
    let r = registry::run_by_model_id(&db, "bulk-run-1199")
        .await
        .unwrap();
    assert_eq!(r.accuracy, Some(0.9));
    let r = registry::run_by_model_id(&db, "bulk-run-1194")
        .await
        .unwrap();
    assert_eq!(r.accuracy, Some(0.5));
    let details = registry::runs_with_details(&db, Some(first.id))
        .await
        .unwrap();
    assert_eq!(details.len(), 1205);
    let tagged = |model_id: &str| {
        details
            .iter()
            .find(|d| d.run.model_id == model_id)
            .map(|d| d.tags.clone())
            .unwrap()
    };
    assert_eq!(tagged("bulk-run-1197")["sweep"], "s1197");
    assert_eq!(tagged("bulk-run-0")["sweep"], "s0");
    assert!(tagged("bulk-run-1").is_empty());

    let dup = registry::upsert_datasets(&db, vec![new_dataset("x"), new_dataset("x")])
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::InvalidInput);
    assert_eq!(registry::upsert_runs(&db, vec![]).await.unwrap(), 0);
    // All or nothing: a dangling dataset in the last chunk rolls back the rest.
    let mut bad: Vec<_> = (2000..2600).map(|i| run(i, 0.5)).collect();
    bad[599].dataset_id = 999_999;
    let err = registry::upsert_runs(&db, bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let missing = registry::run_by_model_id(&db, "bulk-run-2000")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

/// Dataset → run → artifact → deployment fixtures: returns artifact ids of
/// fraud-detector-v1 and -v2.
async fn artifacts_and_deployments(db: &DatabaseConnection) -> (i64, i64) {
    let v1 = registry::run_by_model_id(db, "fraud-detector-v1")
        .await
        .unwrap();
    let v2 = registry::run_by_model_id(db, "fraud-detector-v2")
        .await
        .unwrap();
    let artifact = |run_id: i64, name: &str| NewArtifact {
        run_id,
        uri: format!("s3://models/{name}/model.pt"),
        format: "torchscript".into(),
        size_bytes: 1 << 20,
        checksum: format!("sha256:{name}"),
    };
    let a1 = registry::create_artifact(db, artifact(v1.id, "v1"))
        .await
        .unwrap();
    let a1b = registry::create_artifact(db, artifact(v1.id, "v1-onnx"))
        .await
        .unwrap();
    let a2 = registry::create_artifact(db, artifact(v2.id, "v2"))
        .await
        .unwrap();
    for (artifact_id, environment, status, weight) in [
        (a1.id, "production", DeploymentStatus::Retired, 0.0),
        (a2.id, "production", DeploymentStatus::Active, 0.9),
        (a1b.id, "staging", DeploymentStatus::Active, 1.0),
        (a2.id, "staging", DeploymentStatus::Pending, 0.1),
    ] {
        registry::create_deployment(
            db,
            NewDeployment {
                artifact_id,
                environment: environment.into(),
                status,
                traffic_weight: weight,
            },
        )
        .await
        .unwrap();
    }
    (a1.id, a2.id)
}

async fn lineage_walks_dataset_to_deployments(db: DatabaseConnection) {
    seed(&db).await;
    artifacts_and_deployments(&db).await;
    let tree = lineage::dataset_lineage(&db, "fraud-train-v1")
        .await
        .unwrap();
    assert_eq!(tree.dataset.name, "fraud-train-v1");
    let shape: Vec<_> = tree
        .runs
        .iter()
        .map(|r| {
            (
                r.run.model_id.as_str(),
                r.artifacts
                    .iter()
                    .map(|a| {
                        (
                            a.artifact.checksum.as_str(),
                            a.deployments
                                .iter()
                                .map(|d| (d.environment.as_str(), d.status))
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                "fraud-detector-v1",
                vec![
                    ("sha256:v1", vec![("production", DeploymentStatus::Retired)]),
                    (
                        "sha256:v1-onnx",
                        vec![("staging", DeploymentStatus::Active)]
                    ),
                ]
            ),
            (
                "fraud-detector-v2",
                vec![(
                    "sha256:v2",
                    vec![
                        ("production", DeploymentStatus::Active),
                        ("staging", DeploymentStatus::Pending)
                    ]
                )]
            ),
            ("fraud-detector-v3", vec![]),
        ]
    );
    let deployment = &tree.runs[0].artifacts[0].deployments[0];
    assert!(deployment.deployed_at.is_some() && deployment.retired_at.is_some());
    let err = registry::create_deployment(
        &db,
        NewDeployment {
            artifact_id: tree.runs[1].artifacts[0].artifact.id,
            environment: "prod".into(),
            status: DeploymentStatus::Active,
            traffic_weight: 1.5,
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.field(), Some("traffic_weight"));
    let missing = lineage::dataset_lineage(&db, "nope").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
}

async fn alias_moves_are_audited(db: DatabaseConnection) {
    seed(&db).await;
    let (a1, a2) = artifacts_and_deployments(&db).await;
    let champion: aliases::AliasRef = "fraud-detector@champion".parse().unwrap();
    assert_eq!(champion.model_name, "fraud-detector");
    assert_eq!(champion.to_string(), "fraud-detector@champion");
    let missing = aliases::resolve_alias(&db, &champion).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);

    let created = aliases::move_alias(&db, &champion, a1, "alice", Some("first"))
        .await
        .unwrap();
    assert_eq!(created.alias.artifact_id, a1);
    let moved = aliases::move_alias(&db, &champion, a2, "bob", None)
        .await
        .unwrap();
    assert_eq!(moved.alias.artifact_id, a2);
    let same = aliases::move_alias(&db, &champion, a2, "carol", Some("noop"))
        .await
        .unwrap();
    assert!(same.history.is_none(), "no move, no history");
    assert_eq!(
        aliases::resolve_alias(&db, &champion)
            .await
            .unwrap()
            .artifact_id,
        a2
    );

    let history = aliases::alias_history(&db, &champion).await.unwrap();
    let moves: Vec<_> = history
        .iter()
        .map(|h| {
            (
                h.from_artifact_id,
                h.to_artifact_id,
                h.moved_by.as_str(),
                h.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            (None, a1, "alice", Some("first")),
            (Some(a1), a2, "bob", None)
        ]
    );
    assert!(history[0].moved_at <= history[1].moved_at);

    let other: aliases::AliasRef = "recommender@champion".parse().unwrap();
    let err = aliases::move_alias(&db, &other, a1, "alice", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(err.field(), Some("artifact_id"), "{err}");
    let err = aliases::move_alias(&db, &champion, 999_999, "alice", None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        aliases::alias_history(&db, &champion).await.unwrap().len(),
        2
    );
    assert!("no-at-sign".parse::<aliases::AliasRef>().is_err());
    assert!("@champion".parse::<aliases::AliasRef>().is_err());
}

/// Statements a fresh pool runs while `f` runs, counted by the metric
/// callback.
async fn count_statements(t: &TestDb, runs: usize) -> usize {
    let mut db = t.open().await;
    let d = registry::create_dataset(&db, new_dataset(&format!("count-{runs}")))
        .await
        .unwrap();
    for i in 0..runs {
        let mut run = new_run(d.id, &format!("count-{runs}-{i}"), "m", "pytorch");
        run.tags = BTreeMap::from([("i".into(), i.to_string()), ("team".into(), "x".into())]);
        let run = registry::create_run(&db, run).await.unwrap();
        registry::create_artifact(
            &db,
            NewArtifact {
                run_id: run.id,
                uri: format!("file:///{i}"),
                format: "onnx".into(),
                size_bytes: 1,
                checksum: "c".into(),
            },
        )
        .await
        .unwrap();
    }
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = counter.clone();
    db.set_metric_callback(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let details = registry::runs_with_details(&db, Some(d.id)).await.unwrap();
    assert_eq!(details.len(), runs);
    for (i, detail) in details.iter().enumerate() {
        assert_eq!(detail.dataset.id, d.id);
        assert_eq!(detail.tags.get("i"), Some(&i.to_string()));
        assert_eq!(detail.artifacts.len(), 1);
        assert_eq!(detail.artifacts[0].uri, format!("file:///{i}"));
    }
    let n = counter.load(Ordering::SeqCst);
    db.close().await.unwrap();
    n
}

async fn loading_details_issues_a_fixed_number_of_statements(t: &TestDb) {
    let few = count_statements(t, 3).await;
    let many = count_statements(t, 30).await;
    assert!(few > 0, "the callback saw the statements");
    assert_eq!(few, many, "statements do not grow with the number of runs");
    assert_eq!(few, 3, "runs joined to datasets, then tags, then artifacts");
}

/// Writers racing to create the same aliases: each alias is created once
/// and every move is answered and audited (on PostgreSQL a first move
/// locks a row that does not exist yet, so the creation itself must be
/// serialised).
async fn concurrent_first_moves_of_an_alias_all_succeed(db: DatabaseConnection) {
    seed(&db).await;
    let (a1, a2) = artifacts_and_deployments(&db).await;
    const ALIASES: usize = 20;
    const WRITERS: usize = 8;
    let tasks = (0..WRITERS).map(|w| {
        let db = db.clone();
        tokio::spawn(async move {
            for k in 0..ALIASES {
                let alias: aliases::AliasRef = format!("fraud-detector@race-{k}").parse().unwrap();
                let artifact = if (w + k) % 2 == 0 { a1 } else { a2 };
                aliases::move_alias(&db, &alias, artifact, &format!("w{w}"), None)
                    .await
                    .unwrap_or_else(|e| panic!("writer {w}, {alias}: {e}"));
            }
        })
    });
    for task in futures::future::join_all(tasks).await {
        task.expect("a writer panicked");
    }
    for k in 0..ALIASES {
        let alias: aliases::AliasRef = format!("fraud-detector@race-{k}").parse().unwrap();
        let current = aliases::resolve_alias(&db, &alias).await.unwrap();
        let history = aliases::alias_history(&db, &alias).await.unwrap();
        assert!(!history.is_empty(), "{alias} has no history");
        assert_eq!(history[0].from_artifact_id, None, "{alias}: one creation");
        assert!(history[1..].iter().all(|h| h.from_artifact_id.is_some()));
        assert_eq!(
            history.last().map(|h| h.to_artifact_id),
            Some(current.artifact_id),
            "{alias}: the last move is where it points"
        );
    }
}

macro_rules! registry_cases {
    ($backend:ident, $setup:expr; $($case:ident),* $(,)?; $($raw:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(t) = $setup else { return };
                    let db = t.open().await;
                    super::$case(db.clone()).await;
                    db.close().await.unwrap();
                    t.cleanup().await;
                }
            )*
            $(
                #[tokio::test]
                async fn $raw() {
                    let Some(t) = $setup else { return };
                    super::$raw(&t).await;
                    t.cleanup().await;
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        registry_cases!(
            $backend, $setup;
            schema_enforces_status_and_uniqueness,
            complete_run_records_metrics_once,
            top_models_join_dataset_and_rate_per_hour,
            framework_comparison_groups_completed_runs,
            dataset_statistics_aggregate_one_dataset,
            rank_runs_with_window_functions,
            keyset_pages_are_stable_under_inserts,
            bulk_upserts_insert_then_update,
            lineage_walks_dataset_to_deployments,
            alias_moves_are_audited,
            concurrent_first_moves_of_an_alias_all_succeed;
            loading_details_issues_a_fixed_number_of_statements,
        );
    };
}

all_cases!(sqlite, Some(TestDb::sqlite()));
all_cases!(postgres, TestDb::postgres("registry").await);
