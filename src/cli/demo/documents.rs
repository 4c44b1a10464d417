//! Section 3: flexible documents, model configs and experiments.

use std::collections::BTreeMap;

use bson::{Bson, Document};

use super::{Out, bson_text, f4, timestamp};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::platform::Platform;

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

pub(super) async fn section(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let configs = platform.configs();
    let started = out.section(
        3,
        "Flexible documents: model configs and experiments",
        "Each framework's config has its own shape; they live side by side in one collection, \
         validated by a $jsonSchema on the fields they share.",
    )?;

    out.step("Three frameworks, three shapes, one collection (model_configs)")?;
    let mut table = output::table(&["model_id", "framework", "fields"]);
    for config in configs.list(None, None).await? {
        table.add_row(vec![
            config.get_str("model_id").unwrap_or_default().to_owned(),
            config.get_str("framework").unwrap_or_default().to_owned(),
            shape(&config),
        ]);
    }
    out.table(table)?;

    out.step("By framework: framework = 'pytorch' (index on framework)")?;
    let ids: Vec<String> = configs
        .list(Some("pytorch"), None)
        .await?
        .iter()
        .map(|c| c.get_str("model_id").unwrap_or_default().to_owned())
        .collect();
    out.line(ids.join(", "))?;

    out.step("metrics.accuracy >= 0.9, best first")?;
    let mut table = output::table(&["model_id", "framework", "accuracy"]);
    for config in configs.list(None, Some(0.9)).await? {
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
    let config = configs
        .set_metrics("fraud-detector-v1", &new_metrics)
        .await
        .map_err(|e| Error::internal(format!("the seeded config of fraud-detector-v1: {e}")))?;
    let metrics = config.get_document("metrics").cloned().unwrap_or_default();
    out.line(format!(
        "fraud-detector-v1 metrics: {}",
        bson_text(&Bson::Document(metrics))
    ))?;

    out.step("Average accuracy by framework (aggregation pipeline: $group, $sort)")?;
    let mut table = output::table(&["framework", "configs", "avg accuracy"]);
    for row in configs.average_accuracy_by_framework().await? {
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
    for e in configs.experiments("fraud-detector-v1", 5).await? {
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
