//! `/healthz` (the process answers; touches no engine, so it stays cheap)
//! and `/readyz` (every engine answers a ping within the ping timeout: 200
//! when all do, 503 naming those that do not, with each engine's status
//! either way).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiState;

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
    /// The engines that did not answer, by name (empty when ready).
    pub down: Vec<String>,
    /// One entry per engine: relational, documents, kv, queue.
    pub engines: Vec<EngineStatus>,
}

/// How one engine answered its ping.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EngineStatus {
    /// `relational`, `documents`, `kv` or `queue`.
    pub engine: String,
    /// Its kind: `sqlite`, `postgres`, `embedded`, `mongodb`, `redis`,
    /// `rabbitmq`.
    pub kind: String,
    /// `up` or `down`.
    pub status: String,
    /// Round trip of the ping in milliseconds, when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Why it is down (kind and message; no credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its circuit breaker: `closed`, `open` (calls fail at once) or
    /// `half_open` (a probe is due); absent when the engines run without
    /// layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit: Option<String>,
}

/// Every engine is reachable.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every engine answered", body = Readiness),
        (status = 503, description = "An engine did not answer", body = Readiness)))]
pub async fn readyz(State(state): State<ApiState>) -> (StatusCode, Json<Readiness>) {
    let health = state.platform.health();
    let checked = health.check(state.ping_timeout).await;
    let statuses: Vec<EngineStatus> = checked
        .into_iter()
        .map(|h| {
            let circuit = health.breaker(h.engine).map(|b| b.as_str().to_owned());
            (h, circuit)
        })
        .map(|(h, circuit)| match h.outcome {
            Ok(rtt) => EngineStatus {
                engine: h.engine.to_owned(),
                kind: h.kind.to_owned(),
                status: "up".to_owned(),
                rtt_ms: Some(rtt.as_secs_f64() * 1000.0),
                error: None,
                circuit,
            },
            Err(e) => {
                tracing::warn!(engine = h.engine, "readiness ping failed: {e}");
                EngineStatus {
                    engine: h.engine.to_owned(),
                    kind: h.kind.to_owned(),
                    status: "down".to_owned(),
                    rtt_ms: None,
                    error: Some(format!("{}: {}", e.kind(), e.message())),
                    circuit,
                }
            }
        })
        .collect();
    let down: Vec<String> = statuses
        .iter()
        .filter(|s| s.status != "up")
        .map(|s| s.engine.clone())
        .collect();
    let code = if down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Readiness {
            status: if down.is_empty() {
                "ready"
            } else {
                "unavailable"
            }
            .to_owned(),
            down,
            engines: statuses,
        }),
    )
}

/// The answer of `/v1/cache`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CacheReport {
    /// This instance's end of the backplane that carries invalidations
    /// between instances.
    pub backplane: crate::cache::BackplaneStatus,
    /// Each cache's counters since this process started, by name.
    pub caches: Vec<crate::cache::CacheStats>,
}

/// The counters of this instance's caches (hits per tier, loads, stale
/// serves, L2 errors, backplane messages and resets).
#[utoipa::path(get, path = "/v1/cache", tag = "health",
    responses((status = 200, description = "This instance's caches", body = CacheReport)))]
pub async fn cache(State(state): State<ApiState>) -> Json<CacheReport> {
    let caches = state.platform.caches();
    Json(CacheReport {
        backplane: caches.backplane().status(),
        caches: caches.stats(),
    })
}
