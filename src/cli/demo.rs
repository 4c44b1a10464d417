//! `strata demo`: the main job. On whatever engines are configured it loads
//! the sample data, then walks through every capability in titled sections
//! with readable tables, and ends with where each kind of data lives.
//!
//! What MUST hold:
//!
//! - It runs again and again on the same engines: the sample data is
//!   seeded idempotently, and what the demo registers itself (the
//!   `demo-`-prefixed models) is removed from every engine before it ends,
//!   and before it starts in case an earlier demo was interrupted.
//! - Its output on fresh engines is the same on every profile, once the
//!   `engines:` line, ids (`#12`), timestamps and timings (`1.2 ms`) are set
//!   aside: the snapshot test runs it on the embedded and on the full
//!   profile against one snapshot. So everything else it prints is
//!   deterministic: fixed sample data, total orders, rounded numbers.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use bson::{Bson, Document, doc};
use comfy_table::Table;

use super::output;
use super::seed::report_table;
use crate::engines::Engines;
use crate::engines::relational::backend_name;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::entities::RunStatus;
use crate::platform::hybrid::migrate::{self, Drift, MigrateOptions};
use crate::platform::hybrid::{self, RUNS_REGISTERED_KEY, RegisterRun, Step};
use crate::platform::registry::aliases::{self, AliasRef};
use crate::platform::registry::pages::list_runs;
use crate::platform::registry::{self, RunOutcome, analytics, lineage};
use crate::platform::{configs, search, seed};

/// The width tables wrap to: the output is the same on every terminal.
const WIDTH: u16 = 110;

/// The model the demo registers across engines (and removes at the end).
pub const DEMO_MODEL: &str = "demo-fraud-detector-v3";

/// The model id the saga section tries, one per failing step.
fn saga_model(step: Step) -> String {
    format!("demo-saga-{}", step_name(step))
}

fn step_name(step: Step) -> &'static str {
    match step {
        Step::SqlRun => "run-row",
        Step::ConfigDocument => "config-document",
        Step::KvCounter => "kv-counter",
    }
}

/// Writes to `out`, mapping I/O errors (a closed pipe) into strata's.
struct Out<'a> {
    out: &'a mut dyn Write,
}

impl Out<'_> {
    fn line(&mut self, text: impl AsRef<str>) -> Result<()> {
        writeln!(self.out, "{}", text.as_ref())
            .map_err(|e| Error::new(ErrorKind::Internal, format!("cannot write output: {e}")))
    }

    /// Prints a table, wrapped to [`WIDTH`] columns whatever the terminal.
    fn table(&mut self, mut table: Table) -> Result<()> {
        table.set_width(WIDTH);
        self.line(table.to_string())
    }

    fn section(&mut self, number: u32, title: &str, what: &str) -> Result<Instant> {
        self.line("")?;
        let heading = format!("{number}. {title}");
        self.line(&heading)?;
        self.line("=".repeat(heading.chars().count()))?;
        self.line(what)?;
        Ok(Instant::now())
    }

    fn step(&mut self, title: &str) -> Result<()> {
        self.line("")?;
        self.line(format!("-- {title}"))
    }

    fn took(&mut self, started: Instant) -> Result<()> {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.line(format!("(section took {ms:.1} ms)"))
    }
}

fn f4(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"))
}

fn opt<T: ToString>(x: Option<T>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| x.to_string())
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A BSON value as compact text (relaxed extended JSON).
fn bson_text(value: &Bson) -> String {
    value.clone().into_relaxed_extjson().to_string()
}

/// Runs the demo on `engines`, writing to `out`.
pub async fn run_demo(engines: &Engines, out: &mut dyn Write) -> Result<()> {
    let mut out = Out { out };
    out.line("strata demo: the data plane of an ML platform, on the configured engines")?;
    out.line(format!(
        "engines: relational={}, documents={}, kv={}, queue={}",
        backend_name(&engines.relational),
        engines.documents.kind(),
        engines.kv.kind(),
        engines.queue.kind(),
    ))?;
    remove_demo_models(engines).await?;

    let started = out.section(
        1,
        "Sample data",
        "The seed scenario, loaded idempotently: what exists is left as it is.",
    )?;
    let report = seed::seed_scenario(engines).await?;
    out.table(report_table(&report))?;
    out.took(started)?;

    relational(engines, &mut out).await?;
    documents(engines, &mut out).await?;
    across_engines(engines, &mut out).await?;
    saga(engines, &mut out).await?;
    migration(engines, &mut out).await?;
    run_search(engines, &mut out).await?;

    remove_demo_models(engines).await?;
    out.line("")?;
    out.line(format!(
        "Removed {DEMO_MODEL} from every engine again; the sample data stays."
    ))?;
    routing(&mut out)
}

/// Removes what a demo registers, from every engine.
async fn remove_demo_models(engines: &Engines) -> Result<()> {
    hybrid::unregister_run(engines, DEMO_MODEL).await?;
    for step in Step::ALL {
        hybrid::unregister_run(engines, &saga_model(step)).await?;
    }
    Ok(())
}

async fn relational(engines: &Engines, out: &mut Out<'_>) -> Result<()> {
    let db = &engines.relational;
    let started = out.section(
        2,
        "Registry: relational queries",
        "Datasets, runs, artifacts, deployments and aliases are rows with constraints; \
         SQL joins, groups and ranks them.",
    )?;

    out.step("Top 5 models by accuracy, with their dataset (JOIN) and accuracy per training hour")?;
    let mut table = output::table(&[
        "model_id",
        "dataset",
        "framework",
        "accuracy",
        "hours",
        "accuracy/hour",
    ]);
    for m in analytics::top_models_by_accuracy(db, 5).await? {
        table.add_row(vec![
            m.model_id,
            m.dataset_name,
            m.framework,
            format!("{:.4}", m.accuracy),
            m.training_time_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{:.2}", s as f64 / 3600.0)),
            f4(m.accuracy_per_hour),
        ]);
    }
    out.table(table)?;

    out.step("Frameworks compared (GROUP BY over completed runs)")?;
    let mut table = output::table(&["framework", "runs", "avg accuracy", "avg seconds"]);
    for f in analytics::framework_comparison(db).await? {
        table.add_row(vec![
            f.framework,
            f.runs.to_string(),
            f4(f.avg_accuracy),
            f.avg_training_time_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
        ]);
    }
    out.table(table)?;

    out.step("Training statistics of fraud-train-v1")?;
    let (dataset, stats) = analytics::dataset_statistics(db, "fraud-train-v1").await?;
    let mut table = output::table(&["statistic", "value"]);
    for (name, value) in [
        (
            "rows x features",
            format!(
                "{} x {}",
                opt(dataset.total_rows),
                opt(dataset.total_features)
            ),
        ),
        (
            "runs (running / completed / failed)",
            format!(
                "{} ({} / {} / {})",
                stats.total_runs, stats.running, stats.completed, stats.failed
            ),
        ),
        ("best accuracy", f4(stats.best_accuracy)),
        ("average accuracy", f4(stats.avg_accuracy)),
        ("lowest loss", f4(stats.min_loss)),
        (
            "training seconds in total",
            opt(stats.total_training_seconds),
        ),
        ("frameworks", stats.frameworks.to_string()),
    ] {
        table.add_row(vec![name.to_owned(), value]);
    }
    out.table(table)?;

    out.step("Ranking with window functions: RANK() overall and per framework, PERCENT_RANK()")?;
    let mut table = output::table(&[
        "model_id",
        "framework",
        "accuracy",
        "rank",
        "rank in framework",
        "percent rank",
    ]);
    for r in analytics::rank_runs(db).await?.into_iter().take(10) {
        table.add_row(vec![
            r.model_id,
            r.framework,
            format!("{:.4}", r.accuracy),
            r.overall_rank.to_string(),
            r.framework_rank.to_string(),
            format!("{:.3}", r.percentile),
        ]);
    }
    out.table(table)?;

    out.step("Keyset pagination: newest runs, 2 a page, each page after the last one's key")?;
    let first = list_runs(db, None, 2).await?;
    let second = match first.next {
        Some(cursor) => list_runs(db, Some(cursor), 2).await?.runs,
        None => Vec::new(),
    };
    let mut table = output::table(&["page", "model_id", "started_at", "status"]);
    for (page, runs) in [(1, first.runs), (2, second)] {
        for run in runs {
            table.add_row(vec![
                page.to_string(),
                run.model_id,
                timestamp(run.started_at),
                run.status.to_string(),
            ]);
        }
    }
    out.table(table)?;

    out.step("Lineage of fraud-train-v1: dataset -> run -> artifact -> deployment")?;
    let lineage = lineage::dataset_lineage(db, "fraud-train-v1").await?;
    let mut artifacts = BTreeMap::new();
    let mut table = output::table(&["run", "artifact", "format", "deployment"]);
    for run in lineage.runs {
        if run.artifacts.is_empty() {
            table.add_row(vec![
                run.run.model_id.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for artifact in run.artifacts {
            let deployments = artifact
                .deployments
                .iter()
                .map(|d| {
                    format!(
                        "{} ({}, {:.0}% of traffic)",
                        d.environment,
                        d.status,
                        d.traffic_weight * 100.0
                    )
                })
                .collect::<Vec<_>>();
            artifacts.insert(
                artifact.artifact.id,
                format!("{}, {}", run.run.model_id, artifact.artifact.uri),
            );
            table.add_row(vec![
                run.run.model_id.clone(),
                artifact.artifact.uri.clone(),
                artifact.artifact.format.clone(),
                if deployments.is_empty() {
                    "-".to_owned()
                } else {
                    deployments.join(", ")
                },
            ]);
        }
    }
    out.table(table)?;

    out.step(&format!(
        "Alias {}: where it points, and its audited moves",
        seed::CHAMPION
    ))?;
    let alias: AliasRef = seed::CHAMPION.parse()?;
    let target = aliases::resolve_alias(db, &alias).await?;
    let artifact = |id: i64| match artifacts.get(&id) {
        Some(what) => format!("artifact #{id} ({what})"),
        None => format!("artifact #{id}"),
    };
    out.line(format!("{alias} -> {}", artifact(target.artifact_id)))?;
    for h in aliases::alias_history(db, &alias).await? {
        out.line(format!(
            "moved {}: {} -> {} by {}{}",
            timestamp(h.moved_at),
            h.from_artifact_id
                .map_or_else(|| "nothing".to_owned(), |id| format!("#{id}")),
            artifact(h.to_artifact_id),
            h.moved_by,
            h.reason.map(|r| format!(": {r}")).unwrap_or_default(),
        ))?;
    }
    out.took(started)
}

/// The config's shape: its top-level fields, with a document's own fields
/// in braces.
fn shape(config: &Document) -> String {
    const COMMON: [&str; 6] = [
        "_id",
        "model_id",
        "model_name",
        "framework",
        "created_at",
        "updated_at",
    ];
    config
        .iter()
        .filter(|(k, _)| !COMMON.contains(&k.as_str()))
        .map(|(k, v)| match v {
            Bson::Document(d) => {
                let inner: Vec<&str> = d.keys().map(String::as_str).collect();
                format!("{k}{{{}}}", inner.join(", "))
            }
            _ => k.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn metric(config: &Document, name: &str) -> Option<f64> {
    match config.get_document("metrics").ok()?.get(name)? {
        Bson::Double(x) => Some(*x),
        Bson::Int32(x) => Some(f64::from(*x)),
        Bson::Int64(x) => Some(*x as f64),
        _ => None,
    }
}

async fn documents(engines: &Engines, out: &mut Out<'_>) -> Result<()> {
    let docs = engines.documents.as_ref();
    let started = out.section(
        3,
        "Flexible documents: model configs and experiments",
        "Each framework's config has its own shape; they live side by side in one collection, \
         validated by a $jsonSchema on the fields they share.",
    )?;

    out.step("Three frameworks, three shapes, one collection (model_configs)")?;
    let mut table = output::table(&["model_id", "framework", "fields"]);
    let by_id = crate::engines::document::FindOptions::sorted(doc! {"model_id": 1});
    for config in docs.find(configs::MODEL_CONFIGS, doc! {}, by_id).await? {
        table.add_row(vec![
            config.get_str("model_id").unwrap_or_default().to_owned(),
            config.get_str("framework").unwrap_or_default().to_owned(),
            shape(&config),
        ]);
    }
    out.table(table)?;

    out.step("By framework: framework = 'pytorch' (index on framework)")?;
    let ids: Vec<String> = configs::configs_by_framework(docs, "pytorch")
        .await?
        .iter()
        .map(|c| c.get_str("model_id").unwrap_or_default().to_owned())
        .collect();
    out.line(ids.join(", "))?;

    out.step("metrics.accuracy >= 0.9, best first")?;
    let mut table = output::table(&["model_id", "framework", "accuracy"]);
    for config in configs::configs_with_min_accuracy(docs, 0.9).await? {
        table.add_row(vec![
            config.get_str("model_id").unwrap_or_default().to_owned(),
            config.get_str("framework").unwrap_or_default().to_owned(),
            f4(metric(&config, "accuracy")),
        ]);
    }
    out.table(table)?;

    out.step("New metrics without a migration: $set metrics.latency_ms and metrics.size_mb")?;
    let new_metrics = BTreeMap::from([
        ("latency_ms".to_owned(), 15.3),
        ("size_mb".to_owned(), 245.6),
    ]);
    configs::set_metrics(docs, "fraud-detector-v1", &new_metrics).await?;
    let config = configs::config_of(docs, "fraud-detector-v1")
        .await?
        .ok_or_else(|| Error::internal("the seeded config of fraud-detector-v1 is gone"))?;
    let metrics = config.get_document("metrics").cloned().unwrap_or_default();
    out.line(format!(
        "fraud-detector-v1 metrics: {}",
        bson_text(&Bson::Document(metrics))
    ))?;

    out.step("Average accuracy by framework (aggregation pipeline: $group, $sort)")?;
    let mut table = output::table(&["framework", "configs", "avg accuracy"]);
    for row in configs::average_accuracy_by_framework(docs).await? {
        table.add_row(vec![
            row.framework,
            row.count.to_string(),
            f4(row.avg_accuracy),
        ]);
    }
    out.table(table)?;

    out.step(
        "Experiments of fraud-detector-v1, newest first (index model_id, experiment_date desc)",
    )?;
    let mut table = output::table(&["experiment_date", "params", "accuracy"]);
    for e in configs::experiments_of(docs, "fraud-detector-v1", 5).await? {
        let date = match e.get("experiment_date") {
            Some(Bson::DateTime(d)) => {
                chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
                    .map_or_else(|| "-".to_owned(), timestamp)
            }
            _ => "-".to_owned(),
        };
        let params = e.get("params").map(bson_text).unwrap_or_default();
        table.add_row(vec![date, params, f4(metric(&e, "accuracy"))]);
    }
    out.table(table)?;
    out.took(started)
}

fn demo_request(model_id: &str) -> RegisterRun {
    RegisterRun {
        dataset_name: "fraud-train-v1".into(),
        model_id: model_id.into(),
        model_name: "fraud-detector".into(),
        framework: "pytorch".into(),
        config: doc! {
            "hyperparameters": {
                "learning_rate": 0.001,
                "batch_size": 64,
                "epochs": 20,
                "layers": [128, 64, 32],
            }
        },
        tags: BTreeMap::from([
            ("team".to_owned(), "risk".to_owned()),
            ("source".to_owned(), "demo".to_owned()),
        ]),
        started_at: None,
    }
}

async fn across_engines(engines: &Engines, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        4,
        "One model across engines: register, then read it back whole",
        "Registering a run writes the SQL row, the config document and a KV counter, \
         linked by one model_id, as a saga.",
    )?;
    let registered = hybrid::register_run(engines, demo_request(DEMO_MODEL)).await?;
    out.line(format!(
        "relational: training_runs row #{} {} ({}, on {})",
        registered.run.id, registered.run.model_id, registered.run.status, registered.dataset
    ))?;
    out.line(format!(
        "documents:  model_configs {{model_id: {DEMO_MODEL}, config: {{hyperparameters}}}}"
    ))?;
    out.line(format!(
        "kv:         HINCRBY {RUNS_REGISTERED_KEY} pytorch -> {}",
        registered.framework_runs
    ))?;

    out.step(&format!(
        "Model info of {DEMO_MODEL}: one call, three engines"
    ))?;
    let info = hybrid::model_info(engines, DEMO_MODEL).await?;
    let mut table = output::table(&["engine", "field", "value"]);
    table.add_row(vec![
        "relational".into(),
        "run".into(),
        format!(
            "{} {} {}",
            info.run.model_name, info.run.framework, info.run.status
        ),
    ]);
    table.add_row(vec![
        "relational".into(),
        "dataset".into(),
        format!(
            "{} ({} rows, {} features)",
            info.dataset.name,
            opt(info.dataset.total_rows),
            opt(info.dataset.total_features)
        ),
    ]);
    let hyper = info
        .config
        .as_ref()
        .and_then(|c| c.get("config"))
        .and_then(|c| c.get("hyperparameters"))
        .map_or_else(|| "-".to_owned(), serde_json::Value::to_string);
    table.add_row(vec![
        "documents".into(),
        "config.hyperparameters".into(),
        hyper,
    ]);
    let counters = if info.counters.is_empty() {
        "none yet".to_owned()
    } else {
        info.counters
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    table.add_row(vec!["kv".into(), "counters".into(), counters]);
    out.table(table)?;
    out.took(started)
}

async fn saga(engines: &Engines, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        5,
        "Saga compensation: a failure at each step leaves no orphan",
        "A failure is injected before each step in turn; the steps already done are undone \
         in reverse order.",
    )?;
    let mut table = output::table(&[
        "failing step",
        "error",
        "run row left",
        "config left",
        "pytorch counter",
    ]);
    for step in Step::ALL {
        let model_id = saga_model(step);
        let before = hybrid::registrations(engines, "pytorch").await?;
        let fault = move |at: Step| {
            if at == step {
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("injected failure before the {} step", step_name(step)),
                ))
            } else {
                Ok(())
            }
        };
        let outcome =
            hybrid::register_run_with_faults(engines, demo_request(&model_id), &fault).await;
        let error = match outcome {
            Ok(_) => {
                return Err(Error::internal(format!(
                    "the saga succeeded although {} was made to fail",
                    step_name(step)
                )));
            }
            Err(e) => e.kind().to_string(),
        };
        let row_left = match registry::run_by_model_id(&engines.relational, &model_id).await {
            Ok(_) => "yes",
            Err(e) if e.kind() == ErrorKind::NotFound => "no",
            Err(e) => return Err(e),
        };
        let config_left = configs::config_of(engines.documents.as_ref(), &model_id)
            .await?
            .map_or("no", |_| "yes");
        let after = hybrid::registrations(engines, "pytorch").await?;
        table.add_row(vec![
            step_name(step).to_owned(),
            error,
            row_left.to_owned(),
            config_left.to_owned(),
            if after == before {
                "unchanged".to_owned()
            } else {
                format!("changed by {}", after - before)
            },
        ]);
    }
    out.table(table)?;
    out.took(started)
}

/// Verifies the migration and prints the counts.
async fn verify_counts(engines: &Engines, out: &mut Out<'_>) -> Result<()> {
    let verified = migrate::verify(engines).await?;
    out.line(format!(
        "verify: {} runs, {} documents, {} drifted",
        verified.sql_count,
        verified.doc_count,
        verified.drift.len()
    ))
}

fn drift_line(drift: &Drift) -> String {
    match drift {
        Drift::Missing { model_id, .. } => format!("missing: {model_id} has no document"),
        Drift::Changed { model_id, .. } => {
            format!("changed: {model_id} differs from its document (checksums differ)")
        }
        Drift::Extra { document_id, .. } => format!("extra: document {document_id} has no run"),
    }
}

async fn migration(engines: &Engines, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        6,
        "Migration: training runs into documents, verified",
        "runs-to-docs copies runs with their dataset name into training_runs_migrated \
         (upsert by source id, checkpointed); verify compares counts and per-record checksums.",
    )?;
    let report = migrate::runs_to_docs(
        engines,
        MigrateOptions {
            batch: 500,
            ..Default::default()
        },
    )
    .await?;
    out.line(format!(
        "runs-to-docs: copied {} runs in {} batch(es); complete: {}",
        report.copied, report.batches, report.complete
    ))?;
    verify_counts(engines, out).await?;

    out.step(&format!(
        "{DEMO_MODEL} completes in SQL only: verify lists the drift"
    ))?;
    registry::complete_run(
        &engines.relational,
        DEMO_MODEL,
        RunOutcome {
            status: RunStatus::Completed,
            accuracy: Some(0.9871),
            loss: Some(0.038),
            training_time_seconds: Some(3900),
            completed_at: None,
        },
    )
    .await?;
    let verified = migrate::verify(engines).await?;
    for drift in &verified.drift {
        out.line(format!("verify: {}", drift_line(drift)))?;
    }
    let repaired = migrate::reconcile(engines).await?;
    out.line(format!(
        "reconcile: {} document(s) rewritten from their runs, {} removed",
        repaired.repaired, repaired.removed
    ))?;
    verify_counts(engines, out).await?;
    out.took(started)
}

async fn run_search(engines: &Engines, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        7,
        "Run search: a filter language compiled to SQL conditions",
        "Parsed into an AST and compiled to bound parameters (never string-built SQL); \
         the same answers on SQLite and PostgreSQL. GET /v1/runs?filter=... serves it.",
    )?;
    for (filter, order_by) in [
        (
            "framework IN ('pytorch') OR accuracy > 0.95",
            "accuracy DESC, model_id",
        ),
        (
            "dataset = 'fraud-train-v1' AND NOT status = 'failed'",
            "model_id",
        ),
        (
            "tags.team = 'risk' AND model_name LIKE 'fraud%'",
            "started_at",
        ),
    ] {
        out.step(&format!("filter: {filter}   order_by: {order_by}"))?;
        let page = search::search_runs(&engines.relational, filter, order_by, 10, None).await?;
        let mut table = output::table(&[
            "model_id",
            "framework",
            "status",
            "accuracy",
            "dataset",
            "tags",
        ]);
        for hit in page.runs {
            table.add_row(vec![
                hit.run.model_id,
                hit.run.framework,
                hit.run.status.to_string(),
                f4(hit.run.accuracy),
                hit.dataset,
                hit.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
        }
        out.table(table)?;
        if page.next_page_token.is_some() {
            out.line("more runs follow: pass next_page_token as page_token")?;
        }
    }
    out.step("A malformed filter is refused, naming the position")?;
    let bad = "accuracy > AND framework = 'jax'";
    match search::search_runs(&engines.relational, bad, "", 10, None).await {
        Ok(_) => {
            return Err(Error::internal(format!(
                "the malformed filter `{bad}` was accepted"
            )));
        }
        Err(e) => out.line(format!("filter: {bad}\nerror: {} ({})", e, e.kind()))?,
    }
    out.took(started)
}

fn routing(out: &mut Out<'_>) -> Result<()> {
    out.line("")?;
    out.line("Where the data lives")?;
    out.line("====================")?;
    let mut table = output::table(&["data", "engine", "why"]);
    for (data, engine, why) in [
        (
            "datasets, training runs, artifacts, deployments, aliases and their history",
            "relational",
            "relations with constraints (foreign keys, unique model_id, status check), \
             JOINs, GROUP BY, window functions, transactions, keyset pages",
        ),
        (
            "model configs, experiments",
            "documents",
            "each framework's config has its own shape; new metrics arrive with $set, \
             no migration; aggregation pipelines",
        ),
        (
            "migrated runs, migration checkpoints, dual-write failures",
            "documents",
            "run metadata gains free-form fields next to the configs; upserts by source id",
        ),
        (
            "registration counters, per-model counters",
            "kv",
            "atomic increments in memory, read on every model view; counts, not records",
        ),
    ] {
        table.add_row(vec![data, engine, why]);
    }
    out.table(table)
}

/// `strata demo`: opens the configured engines, runs the demo to standard
/// output and closes the relational pool. `--json` is refused: the demo is
/// for people; its parts have JSON commands and routes of their own.
pub(crate) async fn run(
    config: &crate::config::Config,
    json: bool,
) -> Result<std::process::ExitCode> {
    if json {
        return Err(Error::invalid(
            "`strata demo` prints tables for people and has no --json output; \
             `strata seed --json`, `strata migrate verify --json` and the HTTP API give JSON",
        )
        .with_field("json"));
    }
    let engines = Engines::open(config).await?;
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    run_demo(&engines, &mut lock).await?;
    let _ = lock.flush();
    drop(lock);
    println!();
    println!(
        "Next: `strata serve` (listening on {}), then for example\n  curl 'http://{}/v1/runs?filter=framework%20IN%20(%27pytorch%27)%20OR%20accuracy%3E0.95'",
        config.api.listen, config.api.listen
    );
    engines
        .relational
        .close()
        .await
        .map_err(|e| crate::engines::relational::map_db_err(e).with_operation("close"))?;
    Ok(std::process::ExitCode::SUCCESS)
}
