//! `strata dlq`: the dead letters of the pipelines: list, show, replay,
//! purge (the same as `/v1/dead-letters` over HTTP).
//!
//! The dead letters live in the document engine. On the embedded profile a
//! running `strata serve` holds that engine's files, and the broker lives
//! inside it: use the HTTP routes there (`POST /v1/dead-letters/replay`).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use super::output;
use crate::config::{Config, QueueConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::pipelines::{DeadLetter, DeadLetterFilter, DeadLetters, Pipelines};
use crate::platform::Platform;

/// What to do with the dead letters.
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// Dead letters matching a filter, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
    /// One dead letter with its payload, headers and history.
    Show {
        /// Its id (from `strata dlq list`).
        id: String,
    },
    /// Puts dead letters back on their original route, with their message
    /// id (one processed meanwhile is skipped) and history.
    Replay {
        /// One dead letter by id; or give a filter.
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Every dead letter when no filter narrows it.
        #[arg(long)]
        all: bool,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        /// At most this many a second (0: as fast as the broker confirms).
        #[arg(long, default_value_t = 50)]
        rate: u32,
        /// Only list what would be replayed.
        #[arg(long)]
        dry_run: bool,
        /// A corrected payload (a JSON object) for the one dead letter ID:
        /// fixes data its handler refused, keeping its id and history.
        #[arg(long, value_name = "JSON", requires = "id", conflicts_with_all = ["dry_run", "all"])]
        payload: Option<String>,
    },
    /// Deletes dead letters matching a filter, the oldest first, never more
    /// than `--max`.
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        /// Every dead letter when no filter narrows it.
        #[arg(long)]
        all: bool,
        /// The most to delete.
        #[arg(long, value_name = "N")]
        max: u64,
    },
}

/// Which dead letters.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Only this queue's (e.g. `onboarding`).
    #[arg(long, value_name = "QUEUE")]
    queue: Option<String>,
    /// Only those whose error or error class contains TEXT (any case).
    #[arg(long, value_name = "TEXT")]
    error: Option<String>,
    /// Only those that died since T: a time (`2026-12-01T10:00:00Z`) or an
    /// age (`2h`, `3days`).
    #[arg(long, value_name = "T", value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
}

impl FilterArgs {
    fn filter(self, ids: Option<Vec<String>>) -> DeadLetterFilter {
        DeadLetterFilter {
            queue: self.queue,
            error: self.error,
            since: self.since,
            ids,
        }
    }

    fn narrows(&self) -> bool {
        self.queue.is_some() || self.error.is_some() || self.since.is_some()
    }
}

fn parse_since(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let age = humantime_serde::re::humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time nor an age like `2h` or `3days`")
    })?;
    let age = chrono::Duration::from_std(age).map_err(|_| format!("`{text}` is too long ago"))?;
    Ok(Utc::now() - age)
}

pub(crate) async fn run(config: &Config, command: DlqCommand, json: bool) -> Result<ExitCode> {
    let platform = Platform::open(config).await?;
    // Only a replay needs the broker (and declares the exchanges).
    let letters = &DeadLetters::new(platform.documents(), config.pipelines.dead_letter_retention);
    match command {
        DlqCommand::List { filter, limit } => {
            let filter = filter.filter(None);
            let total = letters.count(&filter).await?;
            let found = letters.list(&filter, limit).await?;
            if json {
                output::print_json(&serde_json::json!({"total": total, "items": found}))?;
            } else {
                let mut table = output::table(&[
                    "id", "queue", "class", "attempts", "dead at", "replays", "error",
                ]);
                for l in &found {
                    table.add_row(vec![
                        l.id.clone(),
                        l.queue.clone(),
                        l.error_class.clone(),
                        l.attempts.to_string(),
                        l.dead_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                        l.replays.to_string(),
                        l.error.clone(),
                    ]);
                }
                println!("{table}");
                println!("{} of {total} dead letters", found.len());
            }
        }
        DlqCommand::Show { id } => {
            let Some(letter) = letters.get(&id).await? else {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no dead letter `{id}`"),
                ));
            };
            if json {
                output::print_json(&to_json(&letter)?)?;
            } else {
                print_letter(&letter);
            }
        }
        DlqCommand::Replay {
            id,
            filter,
            all,
            limit,
            rate,
            dry_run,
            payload,
        } => {
            if matches!(config.queue, QueueConfig::Embedded(_)) && !dry_run {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "the embedded broker lives inside `strata serve`; replay through it: \
                     POST /v1/dead-letters/replay (see docs/pipelines.md)",
                ));
            }
            let narrowed = id.is_some() || filter.narrows();
            if !narrowed && !all {
                return Err(Error::invalid(
                    "say which dead letters: an ID, --queue, --error or --since, or --all",
                ));
            }
            let pipelines = Pipelines::open(&platform, &config.pipelines).await?;
            let report = match (payload, &id) {
                (Some(text), Some(one)) => {
                    let value: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| Error::invalid(format!("--payload is not valid JSON: {e}")))?;
                    if !value.is_object() {
                        return Err(Error::invalid("--payload must be a JSON object"));
                    }
                    pipelines.replay_corrected(one, &value).await?
                }
                _ => {
                    let filter = filter.filter(id.map(|id| vec![id]));
                    pipelines.replay(&filter, limit, rate, dry_run).await?
                }
            };
            if json {
                output::print_json(
                    &serde_json::to_value(&report).map_err(|e| Error::internal(e.to_string()))?,
                )?;
            } else {
                let verb = if dry_run { "would replay" } else { "replayed" };
                println!("{verb} {}", report.replayed.len());
                for id in &report.replayed {
                    println!("  {id}");
                }
                for failure in &report.failed {
                    println!("failed {}: {}", failure.id, failure.reason);
                }
            }
            if !report.failed.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        DlqCommand::Purge { filter, all, max } => {
            if !filter.narrows() && !all {
                return Err(Error::invalid(
                    "say which dead letters: --queue, --error or --since, or --all",
                ));
            }
            let deleted = letters.purge(&filter.filter(None), max).await?;
            if json {
                output::print_json(&serde_json::json!({"deleted": deleted}))?;
            } else {
                println!("deleted {deleted} dead letters");
            }
        }
    }
    platform.close(config.api.request_timeout).await?;
    Ok(ExitCode::SUCCESS)
}

fn to_json(letter: &DeadLetter) -> Result<serde_json::Value> {
    serde_json::to_value(letter)
        .map_err(|e| Error::internal(format!("cannot render a dead letter: {e}")))
}

fn print_letter(l: &DeadLetter) {
    println!("id:          {}", l.id);
    println!("queue:       {}", l.queue);
    println!("message id:  {}", l.message_id);
    println!(
        "route:       {} / {}",
        if l.exchange.is_empty() {
            "(default)"
        } else {
            &l.exchange
        },
        l.routing_key
    );
    println!("error:       {} ({})", l.error, l.error_class);
    println!("attempts:    {}", l.attempts);
    println!("dead at:     {}", l.dead_at.to_rfc3339());
    println!("replays:     {}", l.replays);
    println!("history:");
    for a in &l.history {
        let delay = a
            .delay_ms
            .map(|d| format!(", retried after {d} ms"))
            .unwrap_or_default();
        println!(
            "  #{} {} {}: {}{delay}",
            a.attempt,
            a.at.to_rfc3339(),
            a.outcome,
            a.error
        );
    }
    println!("payload ({}):", l.payload_encoding);
    println!("{}", l.payload);
}
