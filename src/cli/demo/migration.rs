//! Section 6: the runs-to-documents migration, verified and reconciled.

use super::{DEMO_MODEL, Out};
use crate::error::Result;
use crate::platform::Platform;
use crate::platform::hybrid::migrate::{Drift, MigrateOptions};
use crate::platform::records::RunStatus;
use crate::platform::registry::RunOutcome;

/// Verifies the migration and prints the counts.
async fn verify_counts(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let verified = platform.migration().verify().await?;
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

pub(super) async fn section(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        6,
        "Migration: training runs into documents, verified",
        "runs-to-docs copies runs with their dataset name into training_runs_migrated \
         (upsert by source id, checkpointed); verify compares counts and per-record checksums.",
    )?;
    let report = platform
        .migration()
        .runs_to_docs(
            MigrateOptions {
                batch: 500,
                ..Default::default()
            },
            &|_| {},
        )
        .await?;
    out.line(format!(
        "runs-to-docs: copied {} runs in {} batch(es); complete: {}",
        report.copied, report.batches, report.complete
    ))?;
    verify_counts(platform, out).await?;

    out.step(&format!(
        "{DEMO_MODEL} completes in SQL only: verify lists the drift"
    ))?;
    platform
        .registry()
        .complete_run(
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
    let verified = platform.migration().verify().await?;
    for drift in &verified.drift {
        out.line(format!("verify: {}", drift_line(drift)))?;
    }
    let repaired = platform.migration().reconcile().await?;
    out.line(format!(
        "reconcile: {} document(s) rewritten from their runs, {} removed",
        repaired.repaired, repaired.removed
    ))?;
    verify_counts(platform, out).await?;
    out.took(started)
}
