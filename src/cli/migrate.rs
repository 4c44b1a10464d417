//! `strata migrate`: the schema, the runs-to-docs migration, its
//! verification, the reconciliation of failed dual writes, and the rebuild
//! of the models' read model. Every
//! subcommand applies the schema first.
//!
//! Exit status as for every command (0 ok, 1 failure, 2 bad input), and
//! `verify` exits 1 when it finds drift, after listing every drifted record.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::platform::hybrid::migrate::{self, Drift, MAX_BATCH, MigrateOptions};

/// `strata migrate ...`
#[derive(Debug, Subcommand)]
pub(crate) enum MigrateCommand {
    /// Apply the schema (relational migrations, document collections,
    /// validators and indexes) and list the migrations applied. `strata
    /// doctor` reports pending ones; serve, seed and demo apply them too.
    Schema,
    /// Copy training runs (with their dataset's name) into the
    /// training_runs_migrated collection; resumes after its checkpoint.
    RunsToDocs(RunsToDocsArgs),
    /// Compare runs and migrated documents (counts and per-record
    /// checksums); exit 1 and list every drifted record when they differ.
    Verify,
    /// Repair failed dual writes and every drifted record from the runs.
    Reconcile,
    /// Recompute the models' read model (the model_views collection, one
    /// document per model id, served at GET /v1/models/{model_id}/view)
    /// from the runs and aliases, replacing it whole. Run it with the
    /// consumers of the outbox's events stopped; events newer than the
    /// rebuild still apply afterwards, older ones are skipped.
    RebuildReadModel,
}

/// Arguments of `strata migrate runs-to-docs`.
#[derive(Debug, Args)]
pub(crate) struct RunsToDocsArgs {
    /// Runs per batch; the checkpoint is stored after each batch.
    #[arg(long, default_value_t = 500, value_name = "N")]
    batch: u64,
    /// Ignore the checkpoint and copy every run again (upserts, no
    /// duplicates).
    #[arg(long)]
    from_start: bool,
}

/// Runs a `strata migrate` command.
pub(crate) async fn run(config: &Config, command: MigrateCommand, json: bool) -> Result<ExitCode> {
    match command {
        MigrateCommand::Schema => {
            let platform = Platform::open_without_queue(config).await?;
            let applied = platform.applied_migrations().await?;
            if json {
                output::print_json(&json!({"applied": applied}))?;
            } else {
                println!("schema current: {} migrations applied", applied.len());
                for name in &applied {
                    println!("  {name}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::RunsToDocs(args) => {
            // Checked before connecting: bad input answers 2 at once.
            if args.batch == 0 || args.batch > MAX_BATCH {
                return Err(Error::invalid(format!(
                    "--batch must be between 1 and {MAX_BATCH}, got {}",
                    args.batch
                ))
                .with_field("batch"));
            }
            let platform = Platform::open_without_queue(config).await?;
            let bar = output::progress_bar(0, !json);
            let report = platform
                .migration()
                .runs_to_docs(
                    MigrateOptions {
                        batch: args.batch,
                        from_start: args.from_start,
                        stop_after_batches: None,
                    },
                    &|p| {
                        bar.set_length(p.total);
                        bar.set_position(p.copied);
                    },
                )
                .await;
            bar.finish_and_clear();
            let report = report?;
            if json {
                output::print_json(&json!(report))?;
            } else {
                println!(
                    "copied {} runs in {} batches into {}; checkpoint: {}",
                    report.copied,
                    report.batches,
                    migrate::MIGRATED,
                    report
                        .last_id
                        .map_or_else(|| "none".to_owned(), |id| format!("run id {id}")),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::RebuildReadModel => {
            let platform = Platform::open_without_queue(config).await?;
            let written = platform.read_model().rebuild().await?;
            if json {
                output::print_json(&json!({"models": written}))?;
            } else {
                println!(
                    "read model rebuilt: {written} models in {}",
                    crate::platform::read_model::MODEL_VIEWS
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        MigrateCommand::Verify => {
            let platform = Platform::open_without_queue(config).await?;
            let report = platform.migration().verify().await?;
            let clean = report.is_clean();
            if json {
                let mut value = json!(report);
                value["clean"] = json!(clean);
                output::print_json(&value)?;
            } else {
                println!(
                    "runs: {}, documents: {}, drifted: {}",
                    report.sql_count,
                    report.doc_count,
                    report.drift.len()
                );
                if !report.drift.is_empty() {
                    let mut table = output::table(&["drift", "source_id", "model_id", "detail"]);
                    for drift in &report.drift {
                        table.add_row(drift_row(drift));
                    }
                    println!("{table}");
                }
            }
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        MigrateCommand::Reconcile => {
            let platform = Platform::open_without_queue(config).await?;
            let report = platform.migration().reconcile().await?;
            if json {
                output::print_json(&json!(report))?;
            } else {
                println!(
                    "recorded failures: {}, documents rewritten: {}, extra documents removed: {}",
                    report.recorded, report.repaired, report.removed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn drift_row(drift: &Drift) -> Vec<String> {
    match drift {
        Drift::Missing {
            source_id,
            model_id,
        } => vec![
            "missing".into(),
            source_id.to_string(),
            model_id.clone(),
            "no document".into(),
        ],
        Drift::Changed {
            source_id,
            model_id,
            expected,
            found,
        } => vec![
            "changed".into(),
            source_id.to_string(),
            model_id.clone(),
            format!("checksum {found}, expected {expected}"),
        ],
        Drift::Extra {
            source_id,
            document_id,
        } => vec![
            "extra".into(),
            source_id.map_or_else(|| "-".to_owned(), |id| id.to_string()),
            "-".into(),
            format!("document {document_id} has no run"),
        ],
    }
}
