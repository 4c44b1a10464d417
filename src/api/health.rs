//! `/healthz` (the process answers) and `/readyz` (every engine answers a
//! ping within the ping timeout: 200 when all do, 503 when any does not,
//! with each engine's status either way).

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;
use crate::engines::relational;
use crate::error::{Error, ErrorKind, Result};

/// The answer of `/healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when every engine answered, else `unavailable`.
    pub status: String,
    /// One entry per engine: relational, documents, kv, queue.
    pub engines: Vec<EngineStatus>,
}

/// How one engine answered its ping.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EngineStatus {
    /// `relational`, `documents`, `kv` or `queue`.
    pub engine: String,
    /// `up` or `down`.
    pub status: String,
    /// Round trip of the ping in milliseconds, when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Why it is down (kind and message; no credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every engine is reachable.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every engine answered", body = Readiness),
        (status = 503, description = "An engine did not answer", body = Readiness)))]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    let engines = &state.engines;
    let timeout = state.ping_timeout;
    let (rel, docs, kv, queue) = tokio::join!(
        ping(timeout, relational::ping(&engines.relational)),
        ping(timeout, async {
            let started = Instant::now();
            engines.documents.ping().await?;
            Ok(started.elapsed())
        }),
        ping(timeout, async {
            let started = Instant::now();
            engines.kv.ping().await?;
            Ok(started.elapsed())
        }),
        ping(timeout, async {
            let started = Instant::now();
            engines.queue.ping().await?;
            Ok(started.elapsed())
        }),
    );
    let statuses: Vec<EngineStatus> = [
        ("relational", rel),
        ("documents", docs),
        ("kv", kv),
        ("queue", queue),
    ]
    .into_iter()
    .map(|(engine, outcome)| match outcome {
        Ok(rtt) => EngineStatus {
            engine: engine.to_owned(),
            status: "up".to_owned(),
            rtt_ms: Some(rtt.as_secs_f64() * 1000.0),
            error: None,
        },
        Err(e) => {
            tracing::warn!(engine, "readiness ping failed: {e}");
            EngineStatus {
                engine: engine.to_owned(),
                status: "down".to_owned(),
                rtt_ms: None,
                error: Some(format!("{}: {}", e.kind(), e.message())),
            }
        }
    })
    .collect();
    let ready = statuses.iter().all(|s| s.status == "up");
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Readiness {
            status: if ready { "ready" } else { "unavailable" }.to_owned(),
            engines: statuses,
        }),
    )
}

/// Bounds one ping, so that a dead engine cannot hang readiness.
async fn ping(
    timeout: Duration,
    check: impl Future<Output = Result<Duration>>,
) -> Result<Duration> {
    tokio::time::timeout(timeout, check)
        .await
        .unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Timeout,
                format!("no answer within {timeout:?}"),
            ))
        })
}
