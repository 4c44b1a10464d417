//! Run search on SQLite and PostgreSQL: the same cases, the same answers;
//! property tests of the parser; and a differential test of search results
//! against a plain in-Rust evaluation of the filter over the same rows.
//! PostgreSQL cases run when `STRATA_TEST_FULL=1`, each in a database of
//! its own that it drops.

mod common;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use strata::ErrorKind;
use strata::platform::entities::RunStatus;
use strata::platform::registry::{self, NewDataset, RunUpsert};
use strata::platform::search::{
    self, CmpOp, Direction, Expr, Field, FieldType, Filter, Literal, SortKey, parse_filter,
    parse_order_by,
};

// ---------------------------------------------------------------- set-up

use common::TestDb;

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

/// A run as the tests describe it, and as the in-Rust evaluator reads it.
#[derive(Debug, Clone)]
struct Row {
    model_id: String,
    model_name: String,
    framework: String,
    status: RunStatus,
    accuracy: Option<f64>,
    loss: Option<f64>,
    time: Option<i64>,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    dataset: String,
    tags: BTreeMap<String, String>,
}

/// Replaces every run and dataset with `rows`; returns the run ids by
/// model id.
async fn load(db: &DatabaseConnection, rows: &[Row]) -> BTreeMap<String, i64> {
    for table in ["run_tags", "training_runs", "datasets"] {
        db.execute_unprepared(&format!("DELETE FROM {table}"))
            .await
            .unwrap();
    }
    let mut names: Vec<_> = rows.iter().map(|r| r.dataset.clone()).collect();
    names.sort();
    names.dedup();
    registry::upsert_datasets(
        db,
        names
            .iter()
            .map(|n| NewDataset {
                name: n.clone(),
                ..Default::default()
            })
            .collect(),
    )
    .await
    .unwrap();
    let mut dataset_ids = BTreeMap::new();
    for n in &names {
        dataset_ids.insert(
            n.clone(),
            registry::dataset_by_name(db, n).await.unwrap().id,
        );
    }
    registry::upsert_runs(
        db,
        rows.iter()
            .map(|r| RunUpsert {
                dataset_id: dataset_ids[&r.dataset],
                model_id: r.model_id.clone(),
                model_name: r.model_name.clone(),
                framework: r.framework.clone(),
                status: r.status,
                accuracy: r.accuracy,
                loss: r.loss,
                training_time_seconds: r.time,
                started_at: r.started_at,
                completed_at: r.completed_at,
                tags: r.tags.clone(),
            })
            .collect(),
    )
    .await
    .unwrap();
    registry::runs_with_details(db, None)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.run.model_id, d.run.id))
        .collect()
}

/// Every page of a search, concatenated, as model ids.
async fn all_pages(
    db: &DatabaseConnection,
    filter: &str,
    order_by: &str,
    page_size: u64,
) -> strata::Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10_000 {
        let page = search::search_runs(db, filter, order_by, page_size, token.as_deref()).await?;
        assert!(page.runs.len() as u64 <= page_size);
        ids.extend(page.runs.into_iter().map(|h| h.run.model_id));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return Ok(ids),
        }
    }
    panic!("paging did not end")
}

fn row(
    model_id: &str,
    model_name: &str,
    framework: &str,
    status: RunStatus,
    accuracy: Option<f64>,
    dataset: &str,
    tags: &[(&str, &str)],
) -> Row {
    Row {
        model_id: model_id.into(),
        model_name: model_name.into(),
        framework: framework.into(),
        status,
        accuracy,
        loss: accuracy.map(|a| 1.0 - a),
        time: accuracy.map(|_| 3600),
        started_at: at(model_id.len() as i64),
        completed_at: accuracy.map(|_| at(100)),
        dataset: dataset.into(),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// A small registry with case, wildcard and tag corner cases.
fn fixture() -> Vec<Row> {
    use RunStatus::*;
    vec![
        row(
            "fraud-detector-v1",
            "fraud-detector",
            "pytorch",
            Completed,
            Some(0.9845),
            "fraud-train-v1",
            &[("team", "risk"), ("env", "prod")],
        ),
        row(
            "fraud-detector-v2",
            "fraud-detector",
            "tensorflow",
            Completed,
            Some(0.9821),
            "fraud-train-v1",
            &[("team", "risk")],
        ),
        row(
            "Fraud-legacy",
            "Fraud-Legacy",
            "sklearn",
            Failed,
            None,
            "fraud-train-v1",
            &[],
        ),
        row(
            "recommender-model",
            "recommender",
            "pytorch",
            Running,
            None,
            "recommendation-train-v2",
            &[("team", "growth")],
        ),
        row(
            "reco-xgb",
            "reco_100%",
            "xgboost",
            Completed,
            Some(0.91),
            "recommendation-train-v2",
            &[],
        ),
        row(
            "star",
            "a*b[1]?",
            "xgboost",
            Completed,
            Some(0.96),
            "recommendation-train-v2",
            &[("team", "Risk")],
        ),
    ]
}

async fn ids(db: &DatabaseConnection, filter: &str) -> Vec<String> {
    all_pages(db, filter, "model_id", 100)
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
}

// ---------------------------------------------------------------- cases

async fn or_and_in_with_order(db: DatabaseConnection) {
    load(&db, &fixture()).await;
    let found = all_pages(
        &db,
        "framework IN ('pytorch', 'xgboost') OR accuracy > 0.98",
        "accuracy DESC",
        100,
    )
    .await
    .unwrap();
    assert_eq!(
        found,
        [
            "fraud-detector-v1",
            "fraud-detector-v2",
            "star",
            "reco-xgb",
            "recommender-model",
        ],
        "best first; the run without accuracy last"
    );
    let asc = all_pages(&db, "framework IN ('pytorch', 'xgboost')", "accuracy", 100)
        .await
        .unwrap();
    assert_eq!(
        asc,
        ["recommender-model", "reco-xgb", "star", "fraud-detector-v1"]
    );
    assert_eq!(
        ids(
            &db,
            "framework not in ('pytorch', 'xgboost') and status = 'completed'"
        )
        .await,
        ["fraud-detector-v2"]
    );
    assert_eq!(
        ids(
            &db,
            "dataset = 'fraud-train-v1' AND NOT (status = 'failed' OR framework = 'tensorflow')"
        )
        .await,
        ["fraud-detector-v1"]
    );
}

async fn missing_values_are_unknown(db: DatabaseConnection) {
    load(&db, &fixture()).await;
    // Runs without accuracy match neither a comparison nor its negation.
    assert_eq!(ids(&db, "NOT accuracy > 0.95").await, ["reco-xgb"]);
    assert_eq!(
        ids(&db, "accuracy IS NULL").await,
        ["Fraud-legacy", "recommender-model"]
    );
    assert_eq!(
        ids(&db, "completed_at IS NOT NULL AND loss < 0.05")
            .await
            .len(),
        3
    );
    assert_eq!(
        ids(
            &db,
            "training_time_seconds >= 3600 AND training_time_seconds < 3600.5"
        )
        .await
        .len(),
        4
    );
    assert_eq!(
        ids(&db, "").await.len(),
        6,
        "an empty filter matches every run"
    );
}

async fn like_is_case_sensitive_with_escapes(db: DatabaseConnection) {
    load(&db, &fixture()).await;
    assert_eq!(
        ids(&db, "model_name LIKE 'fraud%'").await,
        ["fraud-detector-v1", "fraud-detector-v2"]
    );
    assert_eq!(ids(&db, "model_name LIKE 'Fraud%'").await, ["Fraud-legacy"]);
    assert_eq!(
        ids(&db, "model_name LIKE 'FRAUD%'").await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&db, r"model_name LIKE 'reco\_100\%'").await,
        ["reco-xgb"]
    );
    assert_eq!(ids(&db, "model_name LIKE 'reco_100%'").await, ["reco-xgb"]);
    assert_eq!(
        ids(&db, r"model_name LIKE 'reco\_1'").await,
        Vec::<String>::new()
    );
    // GLOB's own wildcards in data or pattern are plain characters.
    assert_eq!(ids(&db, "model_name LIKE 'a*b[1]?'").await, ["star"]);
    assert_eq!(ids(&db, "model_name LIKE 'a*b[_]_'").await, ["star"]);
    assert_eq!(ids(&db, "model_name LIKE 'a*b%'").await, ["star"]);
    assert_eq!(
        ids(&db, "model_name LIKE 'ab%'").await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&db, "model_id NOT LIKE '%-%'").await, ["star"]);
}

async fn tags_match_by_existence(db: DatabaseConnection) {
    load(&db, &fixture()).await;
    assert_eq!(
        ids(&db, "tags.team = 'risk'").await,
        ["fraud-detector-v1", "fraud-detector-v2"]
    );
    assert_eq!(
        ids(&db, "NOT tags.team = 'risk'").await,
        ["Fraud-legacy", "reco-xgb", "recommender-model", "star"],
        "runs without the tag are included"
    );
    assert_eq!(
        ids(&db, "tags.team IS NULL").await,
        ["Fraud-legacy", "reco-xgb"]
    );
    assert_eq!(
        ids(&db, "tags.team != 'risk'").await,
        ["recommender-model", "star"],
        "!= needs the tag"
    );
    assert_eq!(
        ids(&db, "tags.team IN ('growth', 'Risk') AND tags.env IS NULL").await,
        ["recommender-model", "star"]
    );
    assert_eq!(
        ids(&db, "tags.team LIKE 'r%' AND tags.env = 'prod'").await,
        ["fraud-detector-v1"]
    );
}

async fn text_and_time_compare_bytewise(db: DatabaseConnection) {
    load(&db, &fixture()).await;
    // Upper case sorts before lower case, byte-wise, on both backends.
    assert_eq!(
        all_pages(&db, "", "model_name, model_id", 100)
            .await
            .unwrap(),
        [
            "Fraud-legacy",
            "star",
            "fraud-detector-v1",
            "fraud-detector-v2",
            "reco-xgb",
            "recommender-model",
        ]
    );
    assert_eq!(ids(&db, "model_name < 'a'").await, ["Fraud-legacy"]);
    assert_eq!(
        ids(&db, "started_at >= '2026-11-01T12:17:00Z'").await,
        [
            "fraud-detector-v1",
            "fraud-detector-v2",
            "recommender-model"
        ]
    );
    assert_eq!(
        ids(&db, "started_at < '2026-11-01T13:05:00+01:00'").await,
        ["star"],
        "offsets convert to UTC"
    );
}

async fn pages_are_stable_and_tokens_checked(db: DatabaseConnection) {
    let rows = fixture();
    load(&db, &rows).await;
    for order in [
        "accuracy DESC",
        "dataset, accuracy",
        "status DESC, completed_at",
        "",
    ] {
        let whole = all_pages(&db, "", order, 100).await.unwrap();
        for size in 1..=5 {
            assert_eq!(
                all_pages(&db, "", order, size).await.unwrap(),
                whole,
                "{order} by {size}"
            );
        }
    }
    let first = search::search_runs(&db, "", "accuracy DESC", 2, None)
        .await
        .unwrap();
    let token = first.next_page_token.clone().unwrap();
    // A run added ahead of the cursor does not shift the next page.
    registry::create_run(
        &db,
        registry::NewRun {
            dataset_id: registry::dataset_by_name(&db, "fraud-train-v1")
                .await
                .unwrap()
                .id,
            model_id: "late".into(),
            model_name: "late".into(),
            framework: "jax".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let second = search::search_runs(&db, "", "accuracy DESC", 2, Some(&token))
        .await
        .unwrap();
    let second: Vec<_> = second
        .runs
        .iter()
        .map(|h| h.run.model_id.as_str())
        .collect();
    assert_eq!(second, ["star", "reco-xgb"]);

    let other_filter = search::search_runs(&db, "accuracy > 0", "accuracy DESC", 2, Some(&token))
        .await
        .unwrap_err();
    assert_eq!(other_filter.kind(), ErrorKind::InvalidInput);
    assert_eq!(other_filter.field(), Some("page_token"));
    let other_order = search::search_runs(&db, "", "loss DESC", 2, Some(&token))
        .await
        .unwrap_err();
    assert_eq!(other_order.field(), Some("page_token"));
    let mut garbled = token.clone();
    garbled.insert(3, '!');
    let err = search::search_runs(&db, "", "accuracy DESC", 2, Some(&garbled))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // The same filter written differently is the same filter.
    search::search_runs(&db, "", " accuracy   desc ", 2, Some(&token))
        .await
        .unwrap();

    let hit = &first.runs[0];
    assert_eq!(hit.dataset, "fraud-train-v1");
    assert_eq!(hit.tags.get("env").map(String::as_str), Some("prod"));
}

async fn errors_name_position_and_expectation(db: DatabaseConnection) {
    load(&db, &fixture()).await;
    let err = |filter: &'static str| {
        let db = db.clone();
        async move {
            let e = search::search_runs(&db, filter, "", 10, None)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{filter}: {e}");
            assert_eq!(e.field(), Some("filter"));
            e.message().to_owned()
        }
    };
    assert_eq!(
        err("framework = ").await,
        "filter: at column 13: expected a value after `=`, found end of input"
    );
    let unknown = err("acuracy > 0.9").await;
    assert!(
        unknown.starts_with("filter: at column 1: unknown field `acuracy`"),
        "{unknown}"
    );
    assert!(
        unknown.contains("accuracy") && unknown.contains("tags.KEY"),
        "{unknown}"
    );
    assert_eq!(
        err("accuracy > 'x'").await,
        "filter: at column 12: `accuracy` holds numbers; expected numbers, found string 'x'"
    );
    assert!(
        err("framework = 'a' framework")
            .await
            .contains("column 17: expected `AND`, `OR` or end of input")
    );
    assert!(
        err("framework IN ('a' 'b')")
            .await
            .contains("expected `,` or `)` in the `IN` list")
    );
    assert!(
        err("framework ~ 'a'")
            .await
            .contains("column 11: unexpected character `~`")
    );
    let e = search::search_runs(&db, "", "accuracy DESC, nope", 10, None)
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("order_by"));
    assert!(
        e.message()
            .starts_with("order_by: at column 16: unknown field `nope`"),
        "{e}"
    );
    let e = search::search_runs(&db, "", "", 0, None).await.unwrap_err();
    assert_eq!(e.field(), Some("page_size"));
}

// ---------------------------------------------------------------- query plans

/// Runs seeded for the query-plan case: the issue's embedded-profile size.
const PLAN_RUNS: u64 = 10_000;

/// The filter of the issue: broad, so that reading in order and filtering
/// beats collecting and sorting the matches.
const TYPICAL_FILTER: &str = "framework IN ('pytorch') OR accuracy > 0.95";

/// `PLAN_RUNS` synthetic runs, loaded as `strata seed --runs` loads them
/// (the scenario's datasets, the generator's runs in batches, then the
/// planner statistics refreshed), without the document engine.
async fn load_synthetic(db: &DatabaseConnection) {
    use strata::platform::seed;

    registry::upsert_datasets(db, seed::scenario_datasets())
        .await
        .unwrap();
    let mut dataset_ids = BTreeMap::new();
    for name in ["fraud-train-v1", "recommendation-train-v2"] {
        dataset_ids.insert(name, registry::dataset_by_name(db, name).await.unwrap().id);
    }
    let mut next = 1;
    while next <= PLAN_RUNS {
        let end = (next + seed::SYNTHETIC_BATCH - 1).min(PLAN_RUNS);
        let batch = (next..=end)
            .map(|i| seed::synthetic_run(seed::DEFAULT_SEED, i, &dataset_ids).unwrap())
            .collect();
        registry::upsert_runs(db, batch).await.unwrap();
        next = end + 1;
    }
    strata::migration::refresh_statistics(db).await.unwrap();
}

/// Whether the planner has statistics on `training_runs`.
async fn has_statistics(db: &DatabaseConnection) -> bool {
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "SELECT 1 AS x FROM pg_stat_user_tables \
             WHERE relname = 'training_runs' AND last_analyze IS NOT NULL"
        }
        _ => "SELECT 1 AS x FROM sqlite_stat1 WHERE tbl = 'training_runs'",
    };
    db.query_one_raw(sea_orm::Statement::from_string(
        db.get_database_backend(),
        sql,
    ))
    .await
    .unwrap()
    .is_some()
}

/// The plan of `stmt`, one line per step: SQLite's `EXPLAIN QUERY PLAN`
/// details, PostgreSQL's `EXPLAIN` text.
async fn explain(db: &DatabaseConnection, stmt: &sea_orm::Statement) -> Vec<String> {
    let backend = db.get_database_backend();
    let (prefix, column) = match backend {
        sea_orm::DbBackend::Postgres => ("EXPLAIN", "QUERY PLAN"),
        _ => ("EXPLAIN QUERY PLAN", "detail"),
    };
    let explained = sea_orm::Statement {
        sql: format!("{prefix} {}", stmt.sql),
        ..stmt.clone()
    };
    db.query_all_raw(explained)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", stmt.sql))
        .iter()
        .map(|row| row.try_get::<String>("", column).unwrap())
        .collect()
}

/// The plan nodes of a PostgreSQL `EXPLAIN`, e.g. `Index Scan Backward
/// using idx_training_runs_started_at on training_runs`.
fn pg_nodes(plan: &[String]) -> Vec<String> {
    plan.iter()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("->").unwrap_or(line).trim_start();
            line.split_once("  (cost=").map(|(node, _)| node.to_owned())
        })
        .collect()
}

/// What a page's plan must show, or what it shows instead: it is read off
/// an index in order, with no sort at all, and a page after a token starts
/// the scan at the token (no step reads a table or index from its start).
fn check_plan(
    backend: sea_orm::DbBackend,
    plan: &[String],
    after_token: bool,
) -> Result<(), &'static str> {
    let fail = |failed: bool, why| if failed { Err(why) } else { Ok(()) };
    match backend {
        sea_orm::DbBackend::Postgres => {
            let nodes = pg_nodes(plan);
            fail(
                nodes.iter().any(|n| n.ends_with("Sort")),
                "a sort of the matches",
            )?;
            fail(
                !nodes.iter().any(|n| n.starts_with("Index Scan")),
                "no index scan",
            )?;
            fail(
                after_token
                    && !plan
                        .iter()
                        .any(|l| l.trim_start().starts_with("Index Cond:")),
                "the scan does not start at the token",
            )
        }
        _ => {
            fail(
                plan.iter().any(|l| l.contains("TEMP B-TREE")),
                "a sort of the matches",
            )?;
            fail(
                after_token && plan.iter().any(|l| l.starts_with("SCAN ")),
                "the scan does not start at the token",
            )
        }
    }
}

/// Every order search offers, over the issue's data, is read off an index
/// (no sort of the matches), for the first page and for a page after a
/// token, with and without a typical filter. The SQL is the search's own
/// (`plan_page`, as `search_runs` runs it), explained with its bound values.
///
/// The plans come from the planners' own choice, with statistics refreshed
/// as seeding refreshes them, not from settings that forbid sorting: this
/// checks what a server would do, and that the statistics refresh works.
async fn every_order_is_read_off_an_index(db: DatabaseConnection) {
    let backend = db.get_database_backend();
    load_synthetic(&db).await;
    assert!(has_statistics(&db).await, "statistics were not refreshed");
    // The default order, then every field in both directions.
    let mut orders = vec![String::new()];
    for field in Field::COLUMNS {
        // PostgreSQL does not carry the order of the dataset names read
        // first through the join to their runs, so it sorts each dataset's
        // runs (see docs/engines.md). SQLite does, from the same indexes.
        if field == Field::Dataset && backend == sea_orm::DbBackend::Postgres {
            continue;
        }
        for direction in ["ASC", "DESC"] {
            orders.push(format!("{field} {direction}"));
        }
    }
    // Keys after a unique one change nothing: its index serves.
    orders.push("model_id DESC, accuracy".to_owned());

    for order in &orders {
        for filter in ["", TYPICAL_FILTER] {
            let context = format!("order_by `{order}`, filter `{filter}`");
            // The first page, and the third, after a token (for a nullable
            // key, both statements: the values, then the missing ones).
            let mut token = None;
            for page in 1..=3 {
                let plan = search::plan_page(backend, filter, order, 50, token.as_deref())
                    .unwrap_or_else(|e| panic!("{context}: {e}"));
                if page != 2 {
                    for stmt in plan.statements() {
                        let steps = explain(&db, &stmt).await;
                        if let Err(why) = check_plan(backend, &steps, token.is_some()) {
                            panic!(
                                "{context}, page {page}: {why}\n{}\n{}",
                                steps.join("\n"),
                                stmt.sql
                            );
                        }
                    }
                }
                let found = search::search_runs(&db, filter, order, 50, token.as_deref())
                    .await
                    .unwrap();
                assert_eq!(found.runs.len(), 50, "{context}");
                token = found.next_page_token;
            }
        }
    }
}

macro_rules! search_cases {
    ($backend:ident, $setup:expr) => {
        mod $backend {
            use super::*;

            search_cases!(@cases $setup;
                or_and_in_with_order,
                missing_values_are_unknown,
                like_is_case_sensitive_with_escapes,
                tags_match_by_existence,
                text_and_time_compare_bytewise,
                pages_are_stable_and_tokens_checked,
                errors_name_position_and_expectation,
                every_order_is_read_off_an_index,
            );

            /// Search results equal the in-Rust evaluation on generated rows
            /// and filters.
            #[test]
            fn differential_against_in_rust_evaluation() {
                let rt = tokio::runtime::Runtime::new().unwrap();
                let Some(t) = rt.block_on(async { $setup }) else { return };
                let db = rt.block_on(t.open());
                let cases = if t.is_postgres() { 24 } else { 96 };
                super::differential(&rt, &db, cases);
                rt.block_on(async {
                    db.close().await.unwrap();
                    t.cleanup().await;
                });
            }
        }
    };
    (@cases $setup:expr; $($case:ident),* $(,)?) => {
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
    };
}

search_cases!(sqlite, Some(TestDb::sqlite()));
search_cases!(postgres, TestDb::postgres("run_search").await);

// ---------------------------------------------------------------- in-Rust evaluation

#[derive(Debug, Clone)]
enum V {
    Text(String),
    Num(f64),
    Time(DateTime<Utc>),
}

fn value_of(row: &Row, field: &Field) -> Option<V> {
    let text = |s: &str| Some(V::Text(s.to_owned()));
    match field {
        Field::ModelId => text(&row.model_id),
        Field::ModelName => text(&row.model_name),
        Field::Framework => text(&row.framework),
        Field::Status => text(row.status.as_str()),
        Field::Dataset => text(&row.dataset),
        Field::Accuracy => row.accuracy.map(V::Num),
        Field::Loss => row.loss.map(V::Num),
        Field::TrainingTimeSeconds => row.time.map(|t| V::Num(t as f64)),
        Field::StartedAt => Some(V::Time(row.started_at)),
        Field::CompletedAt => row.completed_at.map(V::Time),
        Field::Tag(k) => row.tags.get(k).map(|v| V::Text(v.clone())),
    }
}

fn cmp_values(a: &V, b: &V) -> Ordering {
    match (a, b) {
        (V::Text(a), V::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        (V::Num(a), V::Num(b)) => a.partial_cmp(b).unwrap(),
        (V::Time(a), V::Time(b)) => a.cmp(b),
        _ => panic!("mismatched types {a:?} {b:?}"),
    }
}

fn literal(l: &Literal) -> V {
    match l {
        Literal::Text(s) => V::Text(s.clone()),
        Literal::Number(n) => V::Num(*n),
        Literal::Timestamp(t) => V::Time(*t),
    }
}

/// SQL `LIKE` with `\` escapes, over characters.
fn like_matches(text: &str, pattern: &str) -> bool {
    enum P {
        Any,
        One,
        Lit(char),
    }
    let mut parts = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        parts.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Lit(chars.next().unwrap_or('\\')),
            c => P::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // matches[i][j]: text[i..] matches parts[j..]
    let mut m = vec![vec![false; parts.len() + 1]; text.len() + 1];
    m[text.len()][parts.len()] = true;
    for i in (0..=text.len()).rev() {
        for j in (0..parts.len()).rev() {
            m[i][j] = match parts[j] {
                P::Any => m[i][j + 1] || (i < text.len() && m[i + 1][j]),
                P::One => i < text.len() && m[i + 1][j + 1],
                P::Lit(c) => i < text.len() && text[i] == c && m[i + 1][j + 1],
            };
        }
    }
    m[0][0]
}

/// The predicate on a present value.
fn holds(expr: &Expr, v: &V) -> bool {
    match expr {
        Expr::Compare { op, value, .. } => {
            let o = cmp_values(v, &literal(value));
            match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
            }
        }
        Expr::In {
            values, negated, ..
        } => {
            values
                .iter()
                .any(|l| cmp_values(v, &literal(l)) == Ordering::Equal)
                != *negated
        }
        Expr::Like {
            pattern, negated, ..
        } => match v {
            V::Text(s) => like_matches(s, pattern) != *negated,
            _ => panic!("LIKE on {v:?}"),
        },
        other => panic!("not a value predicate: {other:?}"),
    }
}

/// Three-valued evaluation: `None` is SQL's unknown.
fn eval(row: &Row, expr: &Expr) -> Option<bool> {
    match expr {
        Expr::And(ops) => {
            let r: Vec<_> = ops.iter().map(|e| eval(row, e)).collect();
            if r.contains(&Some(false)) {
                Some(false)
            } else if r.contains(&None) {
                None
            } else {
                Some(true)
            }
        }
        Expr::Or(ops) => {
            let r: Vec<_> = ops.iter().map(|e| eval(row, e)).collect();
            if r.contains(&Some(true)) {
                Some(true)
            } else if r.contains(&None) {
                None
            } else {
                Some(false)
            }
        }
        Expr::Not(e) => eval(row, e).map(|b| !b),
        Expr::IsNull { field, negated } => Some(value_of(row, field).is_none() != *negated),
        Expr::Compare { field, .. } | Expr::In { field, .. } | Expr::Like { field, .. } => {
            let v = value_of(row, field);
            match field {
                Field::Tag(_) => Some(v.is_some_and(|v| holds(expr, &v))),
                _ => v.map(|v| holds(expr, &v)),
            }
        }
    }
}

/// The expected order: keys with missing values smallest, then id in the
/// last key's direction.
fn expected(
    rows: &[Row],
    ids: &BTreeMap<String, i64>,
    filter: &Filter,
    order: &[SortKey],
) -> Vec<String> {
    let mut hits: Vec<&Row> = rows
        .iter()
        .filter(|r| filter.0.as_ref().is_none_or(|e| eval(r, e) == Some(true)))
        .collect();
    let mut order = order.to_vec();
    if order.is_empty() {
        order.push(SortKey {
            field: Field::StartedAt,
            direction: Direction::Desc,
        });
    }
    let last = order.last().map(|k| k.direction).unwrap();
    hits.sort_by(|a, b| {
        for key in &order {
            let o = match (value_of(a, &key.field), value_of(b, &key.field)) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => cmp_values(&x, &y),
            };
            let o = if key.direction == Direction::Desc {
                o.reverse()
            } else {
                o
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        let o = ids[&a.model_id].cmp(&ids[&b.model_id]);
        if last == Direction::Desc {
            o.reverse()
        } else {
            o
        }
    });
    hits.into_iter().map(|r| r.model_id.clone()).collect()
}

// ---------------------------------------------------------------- generators

const NAMES: [&str; 6] = ["fraud-a", "Fraud-b", "fraud_c", "reco%1", "a*b", "b[1]?"];
const FRAMEWORKS: [&str; 3] = ["pytorch", "tensorflow", "xgboost"];
const NUMBERS: [f64; 5] = [0.0, 0.5, 0.9, 0.95, 0.99];
const SECONDS: [i64; 3] = [0, 60, 3600];
const DATASETS: [&str; 2] = ["fraud-train-v1", "reco-train"];
const TAG_KEYS: [&str; 2] = ["team", "env"];
const TAG_VALUES: [&str; 3] = ["risk", "Risk", "prod"];
const PATTERNS: [&str; 9] = [
    "fraud%",
    "Fraud%",
    "%a%",
    "_raud%",
    r"reco\%_",
    "a*b",
    "b[1]_",
    "%",
    r"fraud\_c",
];

fn rows_strategy() -> impl Strategy<Value = Vec<Row>> {
    let row = (
        0..NAMES.len(),
        0..FRAMEWORKS.len(),
        0..3usize,
        proptest::option::of(0..NUMBERS.len()),
        proptest::option::of(0..NUMBERS.len()),
        proptest::option::of(0..SECONDS.len()),
        0..4i64,
        proptest::option::of(0..4i64),
        0..DATASETS.len(),
        proptest::collection::btree_map(0..TAG_KEYS.len(), 0..TAG_VALUES.len(), 0..=2),
    );
    proptest::collection::vec(row, 0..16).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (n, f, s, a, l, t, st, ct, d, tags))| Row {
                model_id: format!("run-{i:02}"),
                model_name: NAMES[n].into(),
                framework: FRAMEWORKS[f].into(),
                status: RunStatus::ALL[s],
                accuracy: a.map(|a| NUMBERS[a]),
                loss: l.map(|l| NUMBERS[l]),
                time: t.map(|t| SECONDS[t]),
                started_at: at(st),
                completed_at: ct.map(at),
                dataset: DATASETS[d].into(),
                tags: tags
                    .into_iter()
                    .map(|(k, v)| (TAG_KEYS[k].to_owned(), TAG_VALUES[v].to_owned()))
                    .collect(),
            })
            .collect()
    })
}

fn field_strategy() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(Field::ModelId),
        Just(Field::ModelName),
        Just(Field::Framework),
        Just(Field::Status),
        Just(Field::Accuracy),
        Just(Field::Loss),
        Just(Field::TrainingTimeSeconds),
        Just(Field::StartedAt),
        Just(Field::CompletedAt),
        Just(Field::Dataset),
        (0..TAG_KEYS.len()).prop_map(|k| Field::Tag(TAG_KEYS[k].into())),
    ]
}

/// A literal of `field`'s type, from the same small domains as the rows so
/// that predicates hit.
fn literal_strategy(field: &Field) -> BoxedStrategy<Literal> {
    let text = |options: &'static [&'static str]| {
        proptest::sample::select(options)
            .prop_map(|s| Literal::Text(s.to_owned()))
            .boxed()
    };
    match field {
        Field::ModelId => (0..16usize)
            .prop_map(|i| Literal::Text(format!("run-{i:02}")))
            .boxed(),
        Field::ModelName => text(&NAMES),
        Field::Framework => text(&FRAMEWORKS),
        Field::Status => text(&["running", "completed", "failed"]),
        Field::Dataset => text(&DATASETS),
        Field::Tag(_) => text(&TAG_VALUES),
        Field::Accuracy | Field::Loss => prop_oneof![
            proptest::sample::select(&NUMBERS[..]).prop_map(Literal::Number),
            (-10i32..110).prop_map(|n| Literal::Number(f64::from(n) / 100.0)),
        ]
        .boxed(),
        Field::TrainingTimeSeconds => prop_oneof![
            proptest::sample::select(&SECONDS[..]).prop_map(|s| Literal::Number(s as f64)),
            (-5i32..4000).prop_map(|n| Literal::Number(f64::from(n) / 2.0)),
        ]
        .boxed(),
        Field::StartedAt | Field::CompletedAt => (-1i64..6)
            .prop_map(|m| Literal::Timestamp(at(m) + Duration::seconds(m % 2 * 30)))
            .boxed(),
    }
}

fn predicate_strategy() -> impl Strategy<Value = Expr> {
    field_strategy().prop_flat_map(|field| {
        let lit = literal_strategy(&field);
        let text = field.field_type() == FieldType::Text;
        let ops = proptest::sample::select(vec![
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ]);
        let f1 = field.clone();
        let f2 = field.clone();
        let f3 = field.clone();
        let f4 = field.clone();
        let compare = (ops, lit.clone()).prop_map(move |(op, value)| Expr::Compare {
            field: f1.clone(),
            op,
            value,
        });
        let is_in = (proptest::collection::vec(lit, 1..4), any::<bool>()).prop_map(
            move |(values, negated)| Expr::In {
                field: f2.clone(),
                values,
                negated,
            },
        );
        let is_null = any::<bool>().prop_map(move |negated| Expr::IsNull {
            field: f3.clone(),
            negated,
        });
        let like = (proptest::sample::select(&PATTERNS[..]), any::<bool>()).prop_map(
            move |(pattern, negated)| Expr::Like {
                field: f4.clone(),
                pattern: pattern.to_owned(),
                negated,
            },
        );
        if text {
            prop_oneof![3 => compare, 2 => is_in, 1 => is_null, 2 => like].boxed()
        } else {
            prop_oneof![3 => compare, 2 => is_in, 1 => is_null].boxed()
        }
    })
}

fn expr_strategy() -> impl Strategy<Value = Expr> {
    predicate_strategy().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn order_strategy() -> impl Strategy<Value = Vec<SortKey>> {
    proptest::collection::vec(
        (
            proptest::sample::select(Field::COLUMNS.to_vec()),
            prop_oneof![Just(Direction::Asc), Just(Direction::Desc)],
        ),
        0..3,
    )
    .prop_map(|keys| {
        let mut out: Vec<SortKey> = Vec::new();
        for (field, direction) in keys {
            if !out.iter().any(|k| k.field == field) {
                out.push(SortKey { field, direction });
            }
        }
        out
    })
}

fn differential(rt: &tokio::runtime::Runtime, db: &DatabaseConnection, cases: u32) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        rows_strategy(),
        proptest::collection::vec(
            (
                proptest::option::of(expr_strategy()),
                order_strategy(),
                1u64..6,
            ),
            1..4,
        ),
    );
    runner
        .run(&strategy, |(rows, searches)| {
            rt.block_on(async {
                let ids = load(db, &rows).await;
                for (expr, order, page_size) in searches {
                    let filter = Filter(expr);
                    let order_text: Vec<String> = order.iter().map(ToString::to_string).collect();
                    let order_text = order_text.join(", ");
                    let got = all_pages(db, &filter.to_string(), &order_text, page_size)
                        .await
                        .map_err(|e| TestCaseError::fail(format!("{filter}: {e}")))?;
                    let want = expected(&rows, &ids, &filter, &order);
                    prop_assert_eq!(got, want, "filter `{}` order `{}`", filter, order_text);
                }
                Ok(())
            })
        })
        .unwrap();
}

// ---------------------------------------------------------------- parser properties

/// A character a filter may hold: anything but the control characters other
/// than tab, line feed and carriage return (which are refused, see
/// `control_characters_are_refused`).
const QUERY_CHAR: &str = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]";

/// Up to `max` characters a filter may hold.
fn query_text(max: usize) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(&format!("{QUERY_CHAR}{{0,{max}}}")).expect("a regex")
}

/// Any well-typed AST, with arbitrary text, numbers, timestamps and tag
/// keys (not just the differential test's small domains).
fn wide_literal(field: &Field) -> BoxedStrategy<Literal> {
    match field.field_type() {
        FieldType::Text if *field == Field::Status => {
            proptest::sample::select(&["running", "completed", "failed"][..])
                .prop_map(|s| Literal::Text(s.into()))
                .boxed()
        }
        FieldType::Text => query_text(12).prop_map(Literal::Text).boxed(),
        FieldType::Number | FieldType::Integer => prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()
                && f.abs() < 1e30
                && (f.abs() > 1e-30 || *f == 0.0)),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
        ]
        .prop_map(Literal::Number)
        .boxed(),
        FieldType::Timestamp => (0i64..4_102_444_800_000_000)
            .prop_map(|us| Literal::Timestamp(DateTime::from_timestamp_micros(us).unwrap()))
            .boxed(),
    }
}

fn wide_expr() -> impl Strategy<Value = Expr> {
    let field = prop_oneof![
        proptest::sample::select(Field::COLUMNS.to_vec()),
        "[A-Za-z0-9_.-]{1,8}".prop_map(Field::Tag),
    ];
    let leaf = field.prop_flat_map(|field| {
        let lit = wide_literal(&field);
        let text = field.field_type() == FieldType::Text && field != Field::Status;
        let (f1, f2, f3, f4) = (field.clone(), field.clone(), field.clone(), field.clone());
        let compare = (
            proptest::sample::select(vec![
                CmpOp::Eq,
                CmpOp::Ne,
                CmpOp::Lt,
                CmpOp::Le,
                CmpOp::Gt,
                CmpOp::Ge,
            ]),
            lit.clone(),
        )
            .prop_map(move |(op, value)| Expr::Compare {
                field: f1.clone(),
                op,
                value,
            });
        let is_in = (proptest::collection::vec(lit, 1..4), any::<bool>()).prop_map(
            move |(values, negated)| Expr::In {
                field: f2.clone(),
                values,
                negated,
            },
        );
        let is_null = any::<bool>().prop_map(move |negated| Expr::IsNull {
            field: f3.clone(),
            negated,
        });
        let like = (query_text(10), any::<bool>()).prop_map(move |(mut pattern, negated)| {
            if pattern.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1 {
                pattern.push('x');
            }
            Expr::Like {
                field: f4.clone(),
                pattern,
                negated,
            }
        });
        if text {
            prop_oneof![compare, is_in, is_null, like].boxed()
        } else {
            prop_oneof![compare, is_in, is_null].boxed()
        }
    });
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

/// Fragments of filter syntax, to reach deep into the parser.
fn fragments() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(vec![
                "accuracy",
                "tags.team",
                "framework",
                "started_at",
                "status",
                "(",
                ")",
                ",",
                "=",
                "!=",
                "<",
                "<=",
                ">",
                ">=",
                "<>",
                "AND",
                "or",
                "NOT",
                "IN",
                "LIKE",
                "IS",
                "NULL",
                "'x'",
                "'it''s'",
                "'",
                "0.5",
                "-1",
                "1e5",
                "1.",
                "'2026-11-01T12:00:00Z'",
                "!",
                "\\",
                "tags.",
                "DESC",
            ])
            .prop_map(str::to_owned),
            ".{0,3}",
        ],
        0..14,
    )
    .prop_map(|parts| parts.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn printing_then_parsing_gives_the_same_ast(expr in wide_expr()) {
        let text = expr.to_string();
        let parsed = parse_filter(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(parsed.0, Some(expr), "{}", text);
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_text(text in ".{0,64}") {
        let _ = parse_filter(&text);
        let _ = parse_order_by(&text);
    }

    #[test]
    fn the_parser_never_panics_on_near_miss_syntax(text in fragments()) {
        if let Err(e) = parse_filter(&text) {
            prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
            prop_assert!(e.message().starts_with("filter: at column "), "{}", e.message());
        }
        let _ = parse_order_by(&text);
    }

    #[test]
    fn control_characters_are_refused(
        before in query_text(8),
        control in "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f]",
    ) {
        let text = format!("model_id = '{before}{control}'");
        let e = parse_filter(&text).expect_err("a control character");
        prop_assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let column = "model_id = '".chars().count() + before.chars().count() + 1;
        prop_assert!(
            e.message().starts_with(&format!("filter: at column {column}: control character")),
            "{}",
            e.message()
        );
    }

    #[test]
    fn order_by_prints_and_parses_back(order in order_strategy()) {
        let text: Vec<String> = order.iter().map(ToString::to_string).collect();
        prop_assert_eq!(parse_order_by(&text.join(", ")).unwrap(), order);
    }
}
