//! Section 2: the registry's relational queries.

use std::collections::BTreeMap;

use super::{Out, f4, opt, timestamp};
use crate::cli::output;
use crate::error::Result;
use crate::platform::Platform;
use crate::platform::registry::aliases::AliasRef;
use crate::platform::seed;

pub(super) async fn section(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let registry = platform.registry();
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
    for m in registry.top_models(5).await? {
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
    for f in registry.framework_comparison().await? {
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
    let (dataset, stats) = registry.dataset_statistics("fraud-train-v1").await?;
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
    for r in registry.rank_runs().await?.into_iter().take(10) {
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
    let first = registry.runs_page(None, 2).await?;
    let second = match first.next {
        Some(cursor) => registry.runs_page(Some(cursor), 2).await?.runs,
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
    let lineage = registry.lineage("fraud-train-v1").await?;
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
    let target = registry.resolve_alias(&alias).await?;
    let artifact = |id: i64| match artifacts.get(&id) {
        Some(what) => format!("artifact #{id} ({what})"),
        None => format!("artifact #{id}"),
    };
    out.line(format!("{alias} -> {}", artifact(target.artifact_id)))?;
    for h in registry.alias_history(&alias).await? {
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
