//! `strata seed`: the seed scenario's sample data, synthetic runs, and a
//! synthetic customer population with its events.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::output;
use crate::analytics::population;
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
    /// Also make sure synthetic customers `u-000001` to `u-N` exist, with
    /// addresses in the reference cities (at most 1,000,000).
    #[arg(long, default_value_t = 0, value_name = "N")]
    users: u64,
    /// Events (views, clicks, purchases) generated for those customers
    /// over the year before 2026-12-01 (at most 20,000,000): purchases
    /// become orders, every event a document of `events`. Needs --users.
    #[arg(long, default_value_t = 0, value_name = "M")]
    events: u64,
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
    population::check_bounds(args.users, args.events)?;
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
    let population = if args.users > 0 {
        let bar = output::progress_bar_of(args.events, !json, "events");
        let seeded =
            population::seed_population(&platform, args.users, args.events, args.seed, &|done| {
                bar.set_position(done);
            })
            .await;
        bar.finish_and_clear();
        Some(seeded?)
    } else {
        None
    };
    if json {
        output::print_json(&json!({
            "scenario": report,
            "synthetic_runs": synthetic,
            "population": population,
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
        if let Some(p) = &population {
            println!(
                "customers: {} (u-000001 to {}, {} added); events: {} ({} added, {} orders added), seed {}",
                p.users,
                population::user_id(p.users),
                p.users_added,
                p.events,
                p.events_added,
                p.orders_added,
                args.seed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
