//! `strata doctor`: one row per engine, checked concurrently, each bounded
//! by its connect timeout so that a dead service cannot hang the command.

use std::future::Future;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::json;

use super::output;
use crate::config::{Config, DocumentsConfig, KvConfig, QueueConfig, redact_url};
use crate::engines;
use crate::error::{Error, ErrorKind, Result};

/// The outcome of checking one engine.
struct Row {
    engine: &'static str,
    kind: String,
    target: String,
    outcome: Result<Duration>,
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
            .map(|r| match &r.outcome {
                Ok(rtt) => json!({
                    "engine": r.engine, "kind": r.kind, "target": r.target,
                    "status": "healthy", "rtt_ms": rtt.as_secs_f64() * 1000.0,
                }),
                Err(e) => json!({
                    "engine": r.engine, "kind": r.kind, "target": r.target,
                    "status": status_word(e), "error": e.to_string(),
                }),
            })
            .collect();
        output::print_json(&json!(items))?;
    } else {
        let mut table = output::table(&["engine", "kind", "target", "status", "round trip"]);
        for r in &rows {
            let (status, rtt) = match &r.outcome {
                Ok(rtt) => ("healthy".to_owned(), format_rtt(*rtt)),
                Err(e) => (format!("{}: {}", status_word(e), e), "-".to_owned()),
            };
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
async fn bounded<F>(timeout: Duration, check: F) -> Result<Duration>
where
    F: Future<Output = Result<Duration>>,
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
    let outcome = bounded(timeout, async {
        let db = engines::open_relational(config).await?;
        engines::relational::ping(&db).await
    })
    .await;
    Row {
        engine: "relational",
        kind: kind.into(),
        target: url,
        outcome,
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
    let outcome = bounded(timeout, async {
        let store = engines::open_documents(config).await?;
        let started = Instant::now();
        store.ping().await?;
        Ok(started.elapsed())
    })
    .await;
    Row {
        engine: "documents",
        kind: kind.into(),
        target,
        outcome,
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
    }
}
