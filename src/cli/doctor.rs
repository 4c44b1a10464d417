//! `strata doctor`: one row per engine, checked concurrently, each bounded
//! by its connect timeout so that a dead service cannot hang the command.
//!
//! The doctor never writes: it creates no database or directory, changes
//! no database file and applies no schema (SQLite itself may leave its
//! `-wal` and `-shm` companions beside a WAL database it opened). On SQLite it reads through a read-only connection;
//! the embedded document store is inspected (its manifest read, its lock
//! probed), not opened. The relational row says whether the schema is
//! current, has migrations pending or is missing (`strata migrate schema`
//! applies it, as `serve`, `demo`, `seed` and every `migrate` do).

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use super::output;
use crate::config::{Config, DocumentsConfig, KvConfig, QueueConfig, redact_url};
use crate::engines;
use crate::engines::document::embedded::{DirectoryState, EmbeddedDocumentStore};
use crate::engines::relational::read_only::{self, QueryLimits};
use crate::error::{Error, ErrorKind, Result};
use crate::migration;

/// The outcome of checking one engine.
struct Row {
    engine: &'static str,
    kind: String,
    target: String,
    outcome: Result<Duration>,
    /// What else was learnt (the schema's state, a store not created yet).
    note: Option<String>,
    /// The relational schema, on the relational row.
    schema: Option<Schema>,
}

/// The relational schema as the doctor found it.
struct Schema {
    /// Migrations applied, by name.
    applied: Vec<String>,
    /// Migrations this strata has that are not applied, oldest first.
    pending: Vec<String>,
    /// No strata schema at all (no database, or no migration table).
    missing: bool,
}

impl Schema {
    /// No strata schema: every migration pending.
    fn missing() -> Schema {
        Schema {
            applied: Vec::new(),
            pending: migration::known(),
            missing: true,
        }
    }

    fn status(&self) -> &'static str {
        if self.missing {
            "missing"
        } else if self.pending.is_empty() {
            "current"
        } else {
            "pending"
        }
    }

    fn describe(&self) -> String {
        match self.status() {
            "missing" => "schema missing (`strata migrate schema` applies it)".into(),
            "current" => format!("schema current ({} migrations)", self.applied.len()),
            _ => format!(
                "schema has {} pending migration(s) (`strata migrate schema` applies them): {}",
                self.pending.len(),
                self.pending.join(", ")
            ),
        }
    }
}

pub(crate) async fn run(config: &Config, json: bool) -> Result<ExitCode> {
    let (relational, documents, kv, queue) = tokio::join!(
        check_relational(config),
        check_documents(config),
        check_kv(config),
        check_queue(config)
    );
    let rows = [relational, documents, kv, queue];
    let healthy = rows.iter().all(|r| r.outcome.is_ok());
    if json {
        let items: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut item = match &r.outcome {
                    // No round trip was made to a database not created yet.
                    Ok(rtt) if rtt.is_zero() => json!({
                        "engine": r.engine, "kind": r.kind, "target": r.target,
                        "status": "healthy", "rtt_ms": null,
                    }),
                    Ok(rtt) => json!({
                        "engine": r.engine, "kind": r.kind, "target": r.target,
                        "status": "healthy", "rtt_ms": rtt.as_secs_f64() * 1000.0,
                    }),
                    Err(e) => json!({
                        "engine": r.engine, "kind": r.kind, "target": r.target,
                        "status": status_word(e), "error": e.to_string(),
                    }),
                };
                if let Some(note) = &r.note {
                    item["note"] = json!(note);
                }
                if let Some(schema) = &r.schema {
                    item["schema"] = json!({
                        "status": schema.status(),
                        "applied": schema.applied,
                        "pending": schema.pending,
                    });
                }
                item
            })
            .collect();
        output::print_json(&json!(items))?;
    } else {
        let mut table = output::table(&["engine", "kind", "target", "status", "round trip"]);
        for r in &rows {
            let (mut status, rtt) = match &r.outcome {
                Ok(rtt) if rtt.is_zero() => ("healthy".to_owned(), "-".to_owned()),
                Ok(rtt) => ("healthy".to_owned(), format_rtt(*rtt)),
                Err(e) => (format!("{}: {}", status_word(e), e), "-".to_owned()),
            };
            for extra in [r.note.clone(), r.schema.as_ref().map(Schema::describe)]
                .into_iter()
                .flatten()
            {
                status.push_str("; ");
                status.push_str(&extra);
            }
            table.add_row(vec![
                r.engine.to_owned(),
                r.kind.clone(),
                r.target.clone(),
                status,
                rtt,
            ]);
        }
        println!("{table}");
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status_word(e: &Error) -> &'static str {
    match e.kind() {
        ErrorKind::Unavailable | ErrorKind::Timeout => "unavailable",
        ErrorKind::AuthenticationFailed => "authentication failed",
        ErrorKind::Unsupported | ErrorKind::Config => "misconfigured",
        _ => "failed",
    }
}

fn format_rtt(rtt: Duration) -> String {
    if rtt < Duration::from_millis(1) {
        format!("{} µs", rtt.as_micros())
    } else {
        format!("{:.1} ms", rtt.as_secs_f64() * 1000.0)
    }
}

/// Runs `check` (open + ping) within `timeout`; the round trip is the ping's.
async fn bounded<T, F>(timeout: Duration, check: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    match tokio::time::timeout(timeout, check).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("no answer within {timeout:?}"),
        )),
    }
}

async fn check_relational(config: &Config) -> Row {
    let url = config
        .relational
        .effective_url(&config.data_dir)
        .map(|u| redact_url(&u))
        .unwrap_or_else(|e| e.to_string());
    let kind = if config.relational.is_sqlite() {
        "sqlite"
    } else {
        "postgres"
    };
    let timeout = config.relational.connect_timeout + Duration::from_secs(1);
    let limits = QueryLimits {
        timeout,
        max_rows: 10_000,
    };
    let read =
        |sql: &'static str| read_only::query(&config.relational, &config.data_dir, sql, limits);
    // One statement both checks the connection and reads the schema.
    let outcome = bounded(timeout, async {
        let started = Instant::now();
        match read("SELECT version FROM seaql_migrations").await {
            Ok(out) => {
                let applied: Vec<String> = out
                    .rows
                    .iter()
                    .filter_map(|row| row["version"].as_str().map(str::to_owned))
                    .collect();
                let pending = migration::known()
                    .into_iter()
                    .filter(|name| !applied.contains(name))
                    .collect();
                let schema = Schema {
                    applied,
                    pending,
                    missing: false,
                };
                Ok((Some(started.elapsed()), schema))
            }
            // Connected, but no migration table: a database strata never
            // migrated.
            Err(e) if e.kind() == ErrorKind::InvalidInput => {
                Ok((Some(started.elapsed()), Schema::missing()))
            }
            // SQLite: no data directory or no database file yet. Nothing
            // is created to check it.
            Err(e)
                if config.relational.is_sqlite()
                    && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Config) =>
            {
                Ok((None, Schema::missing()))
            }
            Err(e) => Err(e),
        }
    })
    .await;
    let (outcome, note, schema) = match outcome {
        Ok((Some(rtt), schema)) => (Ok(rtt), None, Some(schema)),
        Ok((None, schema)) => (
            Ok(Duration::ZERO),
            Some("no database yet (serve, seed, demo or migrate creates it)".to_owned()),
            Some(schema),
        ),
        Err(e) => (Err(e), None, None),
    };
    Row {
        engine: "relational",
        kind: kind.into(),
        target: url,
        outcome,
        note,
        schema,
    }
}

async fn check_documents(config: &Config) -> Row {
    let (kind, target, timeout) = match &config.documents {
        DocumentsConfig::Embedded(_) => (
            "embedded",
            config.documents_dir().display().to_string(),
            Duration::from_secs(30),
        ),
        DocumentsConfig::Mongodb(m) => (
            "mongodb",
            redact_url(&m.url),
            m.connect_timeout.max(m.server_selection_timeout) + Duration::from_secs(1),
        ),
    };
    let mut note = None;
    let outcome = match &config.documents {
        // Opening would create the directory, or replay and rewrite the
        // files: the doctor only looks at them.
        DocumentsConfig::Embedded(_) => {
            let dir = config.documents_dir();
            let started = Instant::now();
            let inspected =
                tokio::task::spawn_blocking(move || EmbeddedDocumentStore::inspect(&dir))
                    .await
                    .map_err(|e| {
                        Error::internal(format!("inspecting the document store panicked: {e}"))
                    })
                    .and_then(|state| state);
            inspected.map(|state| {
                note = match state {
                    DirectoryState::Absent => {
                        Some("no store yet (created on first use)".to_owned())
                    }
                    DirectoryState::InUse => {
                        Some("in use by a running strata process".to_owned())
                    }
                    DirectoryState::Idle { .. } => None,
                    DirectoryState::Unmanifested => Some(
                        "files without a manifest: an older format, rewritten on the next open, or a lost manifest, refused then"
                            .to_owned(),
                    ),
                };
                started.elapsed()
            })
        }
        DocumentsConfig::Mongodb(_) => {
            bounded(timeout, async {
                let store = engines::open_documents(config).await?;
                let started = Instant::now();
                store.ping().await?;
                Ok(started.elapsed())
            })
            .await
        }
    };
    Row {
        engine: "documents",
        kind: kind.into(),
        target,
        outcome,
        note,
        schema: None,
    }
}

async fn check_kv(config: &Config) -> Row {
    let (kind, target, timeout) = match &config.kv {
        KvConfig::Embedded(e) => (
            "embedded",
            format!("in-process, max {}", e.max_memory),
            Duration::from_secs(5),
        ),
        KvConfig::Redis(r) => (
            "redis",
            redact_url(&r.url),
            r.connect_timeout + Duration::from_secs(1),
        ),
    };
    let outcome = bounded(timeout, async {
        let kv = engines::open_kv(config).await?;
        let started = Instant::now();
        kv.ping().await?;
        Ok(started.elapsed())
    })
    .await;
    Row {
        engine: "kv",
        kind: kind.into(),
        target,
        outcome,
        note: None,
        schema: None,
    }
}

async fn check_queue(config: &Config) -> Row {
    let (kind, target, timeout) = match &config.queue {
        QueueConfig::Embedded(_) => ("embedded", "in-process".to_owned(), Duration::from_secs(5)),
        QueueConfig::Rabbitmq(r) => (
            "rabbitmq",
            redact_url(&r.url),
            r.connect_timeout + Duration::from_secs(1),
        ),
    };
    let outcome = bounded(timeout, async {
        let broker = engines::open_queue(config).await?;
        let started = Instant::now();
        broker.ping().await?;
        Ok(started.elapsed())
    })
    .await;
    Row {
        engine: "queue",
        kind: kind.into(),
        target,
        outcome,
        note: None,
        schema: None,
    }
}
