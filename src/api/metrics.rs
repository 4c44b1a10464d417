//! `GET /metrics`: the process's metrics in the Prometheus text format
//! (see [`crate::metrics`] for the names), and the middleware that
//! observes every request ([`observe`]): its request id, its span, its
//! latency.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::{ApiError, ApiState};
use crate::error::Error;
use crate::metrics::Scrape;

/// The header carrying the request id, accepted and returned.
pub const REQUEST_ID: &str = "x-request-id";

/// The request id of a request: its `X-Request-Id` when that is 1 to 128
/// visible ASCII characters, else the trace id of its W3C `traceparent`,
/// else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(id) = header(REQUEST_ID)
        .map(str::trim)
        .filter(|id| crate::trace::is_valid(id))
    {
        return id.to_owned();
    }
    if let Some(trace) = header("traceparent").and_then(crate::trace::trace_id_of) {
        return trace.to_ascii_lowercase();
    }
    crate::trace::generate()
}

/// Runs each request inside its span (`request`, with the request id, the
/// method and the route template; the child of the request's W3C
/// `traceparent` in exported traces), answers with `X-Request-Id`, and
/// records the request's latency by method, route and status. A request
/// no route matched is counted under the route `unmatched`, so that the
/// series stay bounded whatever paths clients send.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let id = request_id(request.headers());
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    // Exported traces (the `otel` feature) continue the caller's.
    {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        crate::telemetry::adopt_parent(&span, header("traceparent"), header("tracestate"));
    }
    let mut response = crate::trace::scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "answered"
        );
    });
    crate::metrics::global().http_request(&method, &route, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    response
}

/// The process's metrics: requests, engine operations, caches per tier,
/// pools, breakers, feature freshness, pipelines, the outbox backlog, queue
/// depths, dead letters and sagas. A part that cannot be read (its engine
/// is down) is left out and named by `strata_scrape_errors{part}`, so the
/// page still answers.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "The metrics, in the Prometheus text format (version 0.0.4)", content_type = "text/plain", body = String),
        (status = 500, description = "The page could not be rendered", body = super::ErrorBody)))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let scrape = collect(&state).await;
    match crate::metrics::global().render(&scrape) {
        Ok(page) => (
            StatusCode::OK,
            [(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            )],
            page,
        )
            .into_response(),
        Err(e) => ApiError::from(Error::internal(format!("cannot render the metrics: {e}")))
            .into_response(),
    }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Vec<(&'static str, String)> {
    pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect()
}

/// The state part of the page, read now: the ops snapshot (the same as
/// `/v1/ops` and the dashboard), pool use and breakers.
async fn collect(state: &ApiState) -> Scrape {
    let ops = crate::ops::snapshot(
        &state.platform,
        &state.serving,
        &state.pipelines,
        state.ping_timeout,
    )
    .await;
    let mut scrape = Scrape::new();
    scrape.gauge(
        "engine_up",
        "Whether each engine answered its ping at this scrape (1) or not (0)",
        ops.engines.iter().map(|e| {
            (
                labels([("engine", &e.engine), ("kind", &e.kind)]),
                f64::from(u8::from(e.status == "up")),
            )
        }),
    );
    scrape.gauge(
        "engine_ping_seconds",
        "Round trip of each engine's ping at this scrape, when it answered",
        ops.engines.iter().filter_map(|e| {
            e.rtt_ms
                .map(|ms| (labels([("engine", &e.engine)]), ms / 1000.0))
        }),
    );
    let caches = &ops.caches;
    scrape.counter(
        "cache_hits",
        "Cache lookups answered, by cache and tier (l1: this process's memory, l2: the key-value engine)",
        caches.iter().flat_map(|c| {
            [
                (labels([("cache", &c.name), ("tier", "l1")]), c.l1_hits),
                (labels([("cache", &c.name), ("tier", "l2")]), c.l2_hits),
            ]
        }),
    );
    scrape.counter(
        "cache_misses",
        "Cache lookups neither tier answered fresh, by cache",
        caches
            .iter()
            .map(|c| (labels([("cache", &c.name)]), c.misses)),
    );
    scrape.counter(
        "cache_stale_served",
        "Answers served past their freshness because the load failed or was slow, by cache",
        caches
            .iter()
            .map(|c| (labels([("cache", &c.name)]), c.stale_served)),
    );
    scrape.counter(
        "cache_l2_errors",
        "Reads or writes of the key-value tier that failed (serving went on without it), by cache",
        caches
            .iter()
            .map(|c| (labels([("cache", &c.name)]), c.l2_errors)),
    );
    scrape.gauge(
        "cache_l1_entries",
        "Entries in this process's memory tier, by cache",
        caches
            .iter()
            .map(|c| (labels([("cache", &c.name)]), c.l1_entries as f64)),
    );
    let health = state.platform.health();
    let pools = health.pools();
    scrape.gauge(
        "engine_pool_connections",
        "Connections of an engine's pool, by engine and state (idle, in_use)",
        pools.iter().flat_map(|(engine, pool)| {
            [
                (
                    labels([("engine", engine), ("state", "idle")]),
                    pool.idle as f64,
                ),
                (
                    labels([("engine", engine), ("state", "in_use")]),
                    pool.open.saturating_sub(pool.idle) as f64,
                ),
            ]
        }),
    );
    scrape.gauge(
        "engine_pool_max_connections",
        "The most connections an engine's pool opens, by engine",
        pools
            .iter()
            .map(|(engine, pool)| (labels([("engine", engine)]), pool.max as f64)),
    );
    scrape.gauge(
        "engine_circuit_state",
        "Where each engine's circuit breaker stands: 1 for its state (closed, open, half_open), 0 for the others",
        crate::platform::health::ENGINES.iter().flat_map(|engine| {
            let current = health.breaker(engine);
            ["closed", "open", "half_open"].into_iter().filter_map(move |s| {
                current.map(|c| {
                    (
                        labels([("engine", engine), ("state", s)]),
                        f64::from(u8::from(c.as_str() == s)),
                    )
                })
            })
        }),
    );
    let views = ops.feature_views.as_deref().unwrap_or_default();
    scrape.counter(
        "feature_reads",
        "Feature values this process served, by view and freshness (fresh, stale, missing)",
        views.iter().flat_map(|v| {
            [
                (
                    labels([("view", &v.view), ("freshness", "fresh")]),
                    v.fresh_reads,
                ),
                (
                    labels([("view", &v.view), ("freshness", "stale")]),
                    v.stale_reads,
                ),
                (
                    labels([("view", &v.view), ("freshness", "missing")]),
                    v.missing_reads,
                ),
            ]
        }),
    );
    scrape.gauge(
        "feature_stale_ratio",
        "Share of the values a view served that were stale (stale / (fresh + stale)), since the process started",
        views.iter().filter_map(|v| {
            v.stale_share
                .map(|share| (labels([("view", &v.view)]), share))
        }),
    );
    scrape.gauge(
        "queue_messages_ready",
        "Messages waiting in each pipeline queue (the consumers' lag in messages), in the broker",
        ops.queues.iter().filter_map(|q| {
            q.depth
                .map(|depth| (labels([("queue", &q.queue)]), depth as f64))
        }),
    );
    scrape.gauge(
        "queue_consumers",
        "Consumers attached to each pipeline queue, across every process",
        ops.queues.iter().filter_map(|q| {
            q.consumers
                .map(|n| (labels([("queue", &q.queue)]), n as f64))
        }),
    );
    if let Some(dead) = &ops.dead_letters {
        scrape.gauge(
            "dead_letters",
            "Dead letters kept, by the queue they died in",
            dead.by_queue
                .iter()
                .map(|q| (labels([("queue", &q.queue)]), q.count as f64)),
        );
    }
    if let Some(backlog) = ops.outbox_backlog {
        scrape.gauge(
            "outbox_backlog",
            "Outbox events written but not yet published by the relay",
            [(Vec::new(), backlog as f64)],
        );
    }
    if let Some(sagas) = &ops.sagas {
        scrape.gauge(
            "sagas",
            "Sagas kept, by state (running, compensating, completed, compensated)",
            sagas
                .iter()
                .map(|s| (labels([("state", &s.state)]), s.count as f64)),
        );
    }
    scrape.gauge(
        "scrape_errors",
        "Parts of this page that could not be read at this scrape (1 per part); their metrics are missing",
        ops.unavailable
            .iter()
            .map(|u| (labels([("part", &u.part)]), 1.0)),
    );
    scrape
}
