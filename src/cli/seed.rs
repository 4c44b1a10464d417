//! `strata seed`: the seed scenario's sample data, and synthetic runs.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::output;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::platform::seed::{self, DEFAULT_SEED, MAX_SYNTHETIC, SeedReport};

/// Options of `strata seed`.
#[derive(Debug, Args)]
pub(crate) struct SeedArgs {
    /// Also make sure synthetic runs `synthetic-000001` to `synthetic-N`
    /// exist (upserts: running it again adds none).
    #[arg(long, default_value_t = 0, value_name = "N")]
    runs: u64,
    /// Seed of the synthetic-run generator: the same seed gives the same
    /// runs on every machine.
    #[arg(long, default_value_t = DEFAULT_SEED, value_name = "SEED")]
    seed: u64,
}

/// Prints what a seeding added and found.
pub(crate) fn report_table(report: &SeedReport) -> comfy_table::Table {
    let mut table = output::table(&["data", "engine", "added", "already there"]);
    for line in &report.lines {
        table.add_row(vec![
            line.what.to_owned(),
            line.engine.to_owned(),
            line.added.to_string(),
            line.present.to_string(),
        ]);
    }
    table
}

pub(crate) async fn run(config: &Config, args: SeedArgs, json: bool) -> Result<ExitCode> {
    // Checked before connecting: bad input answers 2 at once.
    if args.runs > MAX_SYNTHETIC {
        return Err(Error::invalid(format!(
            "--runs must be at most {MAX_SYNTHETIC}, got {}",
            args.runs
        ))
        .with_field("runs"));
    }
    let platform = Platform::open(config).await?;
    let report = platform.seeder().scenario().await?;
    let bar = output::progress_bar(args.runs, !json);
    let synthetic = platform
        .seeder()
        .synthetic(args.runs, args.seed, &|done| {
            bar.set_position(done);
        })
        .await;
    bar.finish_and_clear();
    let synthetic = synthetic?;
    if json {
        output::print_json(&json!({
            "scenario": report,
            "synthetic_runs": synthetic,
            "seed": args.seed,
        }))?;
    } else {
        println!("{}", report_table(&report));
        if synthetic > 0 {
            println!(
                "synthetic runs: {synthetic} (synthetic-000001 to {}, seed {})",
                seed::synthetic_model_id(synthetic),
                args.seed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
