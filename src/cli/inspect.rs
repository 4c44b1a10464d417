//! Inspection commands for the stores: `docs`, `kv`, `sql`, `queue`.
//!
//! The embedded document store and SQLite live in files, so these commands
//! read them directly. The embedded key-value store and broker live inside
//! the strata process that runs them: from a separate `strata` command they
//! start empty, and the commands say so.

use std::process::ExitCode;
use std::time::Duration;

use bson::{Bson, Document};
use bytes::Bytes;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output;
use crate::config::{Config, KvConfig, QueueConfig};
use crate::engines::document::FindOptions;
use crate::engines::kv::{KvStoreExt, Ttl};
use crate::engines::relational::read_only::{self, QueryLimits, QueryOutput};
use crate::engines::{self, DocumentStore};
use crate::error::{Error, ErrorKind, Result};

/// `strata docs ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DocsCommand {
    /// Find documents: `strata docs find runs '{"status":"completed"}' --sort '{"accuracy":-1}'`.
    Find {
        /// The collection.
        collection: String,
        /// A MongoDB filter as JSON (extended JSON for ObjectIds and dates).
        #[arg(default_value = "{}")]
        filter: String,
        /// Sort as JSON, `{"field": 1 | -1}`.
        #[arg(long)]
        sort: Option<String>,
        /// Projection as JSON, `{"field": 1}` or `{"field": 0}`.
        #[arg(long)]
        projection: Option<String>,
        /// Documents to skip.
        #[arg(long)]
        skip: Option<u64>,
        /// Most documents to print.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Run an aggregation pipeline: `strata docs aggregate runs '[{"$group":{"_id":"$framework"}}]'`.
    Aggregate {
        /// The collection.
        collection: String,
        /// The pipeline as a JSON array of stages.
        pipeline: String,
    },
    /// List the collections.
    Collections,
    /// List a collection's indexes.
    Indexes {
        /// The collection.
        collection: String,
    },
}

/// `strata kv ...`
#[derive(Debug, Subcommand)]
pub(crate) enum KvCommand {
    /// Print a string value.
    Get {
        /// The key.
        key: String,
    },
    /// Print every field of a hash.
    Hgetall {
        /// The key.
        key: String,
    },
    /// Print members of a sorted set with scores, by rank (inclusive,
    /// negative counts from the end).
    Zrange {
        /// The key.
        key: String,
        /// First rank.
        #[arg(default_value_t = 0, allow_negative_numbers = true)]
        start: i64,
        /// Last rank.
        #[arg(default_value_t = -1, allow_negative_numbers = true)]
        stop: i64,
        /// Highest score first.
        #[arg(long)]
        rev: bool,
    },
    /// Print a key's remaining time to live.
    Ttl {
        /// The key.
        key: String,
    },
    /// List keys matching a glob pattern (`*`, `?`, `[a-z]`).
    Keys {
        /// The pattern.
        #[arg(default_value = "*")]
        pattern: String,
    },
}

/// `strata sql ...`
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// One read-only statement, e.g. `SELECT * FROM seaql_migrations`.
    pub(crate) query: String,
    /// Stop the statement after this long (`500ms`, `10s`, `2m`).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// Print at most this many rows; the output says when it was cut.
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_rows: u64,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let duration = humantime_serde::re::humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration such as 500ms or 10s: {e}"))?;
    if duration.is_zero() {
        return Err("must be above zero".to_owned());
    }
    Ok(duration)
}

/// `strata queue ...`
#[derive(Debug, Subcommand)]
pub(crate) enum QueueCommand {
    /// Depth and consumers of queues.
    Stats {
        /// Queues to report.
        #[arg(required = true)]
        queues: Vec<String>,
    },
}

/// Parses a JSON argument into a BSON document, naming the argument.
pub(crate) fn parse_document(what: &str, text: &str) -> Result<Document> {
    match parse_bson(what, text)? {
        Bson::Document(doc) => Ok(doc),
        _ => Err(Error::invalid(format!("{what} must be a JSON object"))),
    }
}

fn parse_bson(what: &str, text: &str) -> Result<Bson> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("{what} is not valid JSON: {e}")))?;
    Bson::try_from(value).map_err(|e| Error::invalid(format!("{what}: {e}")))
}

fn to_json(doc: Document) -> serde_json::Value {
    Bson::Document(doc).into_relaxed_extjson()
}

pub(crate) async fn docs(config: &Config, command: DocsCommand, json: bool) -> Result<ExitCode> {
    // Parse every argument before touching the store.
    match command {
        DocsCommand::Find {
            collection,
            filter,
            sort,
            projection,
            skip,
            limit,
        } => {
            let filter = parse_document("FILTER", &filter)?;
            let mut options = FindOptions::default().limit(limit);
            options.sort = sort
                .as_deref()
                .map(|s| parse_document("--sort", s))
                .transpose()?;
            options.projection = projection
                .as_deref()
                .map(|p| parse_document("--projection", p))
                .transpose()?;
            options.skip = skip;
            let store = engines::open_documents(config).await?;
            let found = store.find(&collection, filter, options).await?;
            print_documents(found, json)
        }
        DocsCommand::Aggregate {
            collection,
            pipeline,
        } => {
            let stages = match parse_bson("PIPELINE", &pipeline)? {
                Bson::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, stage)| match stage {
                        Bson::Document(d) => Ok(d),
                        _ => Err(Error::invalid(format!(
                            "PIPELINE stage {i} must be a JSON object"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?,
                _ => return Err(Error::invalid("PIPELINE must be a JSON array of stages")),
            };
            let store = engines::open_documents(config).await?;
            let out = store.aggregate(&collection, stages).await?;
            print_documents(out, json)
        }
        DocsCommand::Collections => {
            let store = engines::open_documents(config).await?;
            let names = store.list_collections().await?;
            if json {
                output::print_json(&json!(names))?;
            } else {
                names.iter().for_each(|n| println!("{n}"));
            }
            Ok(ExitCode::SUCCESS)
        }
        DocsCommand::Indexes { collection } => {
            let store = engines::open_documents(config).await?;
            print_indexes(store.as_ref(), &collection, json).await
        }
    }
}

fn print_documents(docs: Vec<Document>, json: bool) -> Result<ExitCode> {
    if json {
        let items: Vec<_> = docs.into_iter().map(to_json).collect();
        output::print_json(&json!(items))?;
    } else {
        for doc in docs {
            println!("{}", to_json(doc));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn print_indexes(
    store: &dyn DocumentStore,
    collection: &str,
    json: bool,
) -> Result<ExitCode> {
    let indexes = store.list_indexes(collection).await?;
    if json {
        let items: Vec<_> = indexes
            .iter()
            .map(|i| json!({"name": i.effective_name(), "keys": to_json(i.keys.clone()), "unique": i.unique}))
            .collect();
        output::print_json(&json!(items))?;
    } else {
        let mut table = output::table(&["name", "keys", "unique"]);
        for i in &indexes {
            table.add_row(vec![
                i.effective_name(),
                to_json(i.keys.clone()).to_string(),
                i.unique.to_string(),
            ]);
        }
        println!("{table}");
    }
    Ok(ExitCode::SUCCESS)
}

fn note_in_process(what: &str) {
    eprintln!(
        "note: the embedded {what} lives inside the strata process that runs it; \
         this command sees only its own, empty one"
    );
}

fn show_bytes(value: &Bytes) -> serde_json::Value {
    match std::str::from_utf8(value) {
        Ok(s) => json!(s),
        Err(_) => Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: value.to_vec(),
        })
        .into_relaxed_extjson(),
    }
}

pub(crate) async fn kv(config: &Config, command: KvCommand, json: bool) -> Result<ExitCode> {
    if matches!(config.kv, KvConfig::Embedded(_)) {
        note_in_process("key-value store");
    }
    let kv = engines::open_kv(config).await?;
    let value = match command {
        KvCommand::Get { key } => match kv.get(&key).await? {
            Some(v) => show_bytes(&v),
            None => serde_json::Value::Null,
        },
        KvCommand::Hgetall { key } => {
            let hash = kv.hgetall(&key).await?;
            let map: serde_json::Map<String, serde_json::Value> = hash
                .iter()
                .map(|(k, v)| (k.clone(), show_bytes(v)))
                .collect();
            serde_json::Value::Object(map)
        }
        KvCommand::Zrange {
            key,
            start,
            stop,
            rev,
        } => {
            let members = if rev {
                kv.zrevrange(&key, start, stop).await?
            } else {
                kv.zrange(&key, start, stop).await?
            };
            json!(
                members
                    .iter()
                    .map(|(m, s)| json!({"member": m, "score": s}))
                    .collect::<Vec<_>>()
            )
        }
        KvCommand::Ttl { key } => match kv.ttl(&key).await? {
            Ttl::Missing => json!({"key": key, "ttl": "missing", "pttl": -2}),
            Ttl::Persistent => json!({"key": key, "ttl": "persistent", "pttl": -1}),
            Ttl::Expires(d) => {
                json!({"key": key, "ttl": format!("{d:?}"), "pttl": d.as_millis() as u64})
            }
        },
        KvCommand::Keys { pattern } => json!(kv.scan_all(&pattern).await?),
    };
    if json {
        output::print_json(&value)?;
    } else {
        print_plain(&value);
    }
    Ok(ExitCode::SUCCESS)
}

/// Human output: strings bare, nil as `(nil)`, lists one item a line.
fn print_plain(value: &serde_json::Value) {
    match value {
        serde_json::Value::Null => println!("(nil)"),
        serde_json::Value::String(s) => println!("{s}"),
        serde_json::Value::Array(items) if items.is_empty() => println!("(empty)"),
        serde_json::Value::Array(items) => items.iter().for_each(|item| match item {
            serde_json::Value::String(s) => println!("{s}"),
            serde_json::Value::Object(o) if o.contains_key("member") => println!(
                "{}\t{}",
                o.get("member").and_then(|m| m.as_str()).unwrap_or_default(),
                o.get("score").cloned().unwrap_or_default()
            ),
            other => println!("{other}"),
        }),
        serde_json::Value::Object(map) if map.contains_key("pttl") => println!(
            "{}",
            map.get("ttl").and_then(|t| t.as_str()).unwrap_or_default()
        ),
        serde_json::Value::Object(map) if map.is_empty() => println!("(empty)"),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) => println!("{k}\t{s}"),
                    other => println!("{k}\t{other}"),
                }
            }
        }
        other => println!("{other}"),
    }
}

pub(crate) async fn sql(config: &Config, args: SqlArgs, json: bool) -> Result<ExitCode> {
    let limits = QueryLimits {
        timeout: args.timeout,
        max_rows: args.max_rows,
    };
    let QueryOutput { rows, truncated } =
        read_only::query(&config.relational, &config.data_dir, &args.query, limits).await?;
    let cut_note = format!(
        "output cut at --max-rows {}: the query has more rows",
        args.max_rows
    );
    if json {
        output::print_json(&json!(rows))?;
        if truncated {
            eprintln!("note: {cut_note}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let columns: Vec<String> = rows
        .first()
        .and_then(|r| r.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    if columns.is_empty() {
        println!("(0 rows)");
        return Ok(ExitCode::SUCCESS);
    }
    let header: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut table = output::table(&header);
    for row in &rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match row.get(c) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => "NULL".to_owned(),
                Some(other) => other.to_string(),
            })
            .collect();
        table.add_row(cells);
    }
    println!("{table}");
    if truncated {
        println!("({} rows shown; {cut_note})", rows.len());
    } else {
        println!("({} rows)", rows.len());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn queue(config: &Config, command: QueueCommand, json: bool) -> Result<ExitCode> {
    if matches!(config.queue, QueueConfig::Embedded(_)) {
        note_in_process("broker");
    }
    let broker = engines::open_queue(config).await?;
    let QueueCommand::Stats { queues } = command;
    let mut rows = Vec::new();
    for name in &queues {
        rows.push(match broker.queue_info(name).await {
            Ok(info) => {
                json!({"queue": info.name, "messages": info.messages, "consumers": info.consumers})
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                json!({"queue": name, "messages": null, "consumers": null, "error": "not found"})
            }
            Err(e) => return Err(e),
        });
    }
    if json {
        output::print_json(&json!(rows))?;
    } else {
        let mut table = output::table(&["queue", "ready", "consumers"]);
        for row in &rows {
            let cell = |k: &str| match row.get(k) {
                Some(serde_json::Value::Null) | None => "not found".to_owned(),
                Some(v) => v.to_string(),
            };
            table.add_row(vec![
                row["queue"].as_str().unwrap_or_default().to_owned(),
                cell("messages"),
                cell("consumers"),
            ]);
        }
        println!("{table}");
    }
    Ok(ExitCode::SUCCESS)
}
