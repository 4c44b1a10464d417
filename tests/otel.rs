//! Traces exported to an OpenTelemetry collector (the `otel` feature):
//! a real `strata serve` built with it posts its spans, as OTLP/HTTP
//! protobuf, to a collector played by this test; the request's W3C
//! `traceparent` is the parent of its `request` span, the message it
//! published is handled in a `message` span that is the request span's
//! child, and both carry the request id. The SDK's batch delay is set far
//! beyond the test, so the spans can only arrive through the flush at
//! shutdown (SIGTERM).
//!
//! `cargo test --features otel --test otel`

#![cfg(feature = "otel")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use common::serve::{Stack, call_with, eventually};
use serde_json::json;
use strata::telemetry::{ExportedSpan, decode_export_request};

/// What the collector received: each POST /v1/traces body.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Bytes>>>);

impl Received {
    /// Every span of every export so far (each body must decode).
    fn spans(&self) -> Vec<ExportedSpan> {
        let bodies = self.0.lock().expect("collector lock").clone();
        bodies
            .iter()
            .flat_map(|body| {
                decode_export_request(body)
                    .unwrap_or_else(|e| panic!("the collector got a body it cannot read: {e}"))
            })
            .collect()
    }
}

async fn export(State(received): State<Received>, body: Bytes) -> StatusCode {
    received.0.lock().expect("collector lock").push(body);
    // An empty ExportTraceServiceResponse: everything accepted.
    StatusCode::OK
}

/// A collector on 127.0.0.1 (any port): its base URL and what it got.
async fn collector() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let address = listener.local_addr().expect("collector address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("collector serves");
    });
    (format!("http://{address}"), received)
}

fn attribute<'a>(span: &'a ExportedSpan, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn spans_reach_the_collector_in_the_callers_trace() {
    let (endpoint, received) = collector().await;
    let stack = Stack::embedded();
    let server = stack
        .serve(&[
            ("STRATA_LOG", "info,lapin=off"),
            ("STRATA_TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("STRATA_TELEMETRY__SERVICE_NAME", "strata-otel-test"),
            // Nothing is exported on the SDK's timer while the test runs:
            // what arrives was flushed at shutdown.
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ])
        .await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{caller}-01");
    let event = json!({"user_id": "u7", "type": "click", "product_id": "p9"});
    let answer = call_with(
        &server.address,
        "POST",
        "/v1/events",
        &[
            ("traceparent", &traceparent),
            ("X-Request-Id", "otel-req-1"),
        ],
        Some(&event),
    )
    .await
    .expect("an answer");
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.header("x-request-id"), Some("otel-req-1"));

    // The worker in this serve handled the event's message.
    eventually("the message settled", Duration::from_secs(30), || {
        let log = server.log();
        async move {
            log.lines()
                .any(|l| l.contains("message settled") && l.contains("otel-req-1"))
                .then_some(())
        }
    })
    .await;
    assert!(
        received.spans().is_empty(),
        "spans were exported before the shutdown, though the batch delay is 10 minutes"
    );
    server.stop().await;

    let spans = eventually(
        "the request and message spans at the collector",
        Duration::from_secs(10),
        || {
            let spans = received.spans();
            async move {
                let has = |name: &str| spans.iter().any(|s| s.name == name);
                (has("request") && has("message")).then_some(spans)
            }
        },
    )
    .await;
    let request = spans
        .iter()
        .find(|s| s.name == "request" && attribute(s, "request_id") == Some("otel-req-1"))
        .unwrap_or_else(|| panic!("no request span with the request id: {spans:#?}"));
    assert_eq!(request.trace_id, trace, "{request:#?}");
    assert_eq!(request.parent_span_id, caller, "{request:#?}");
    assert_eq!(attribute(request, "method"), Some("POST"));
    assert_eq!(attribute(request, "route"), Some("/v1/events"));
    assert_eq!(request.service_name.as_deref(), Some("strata-otel-test"));

    let message = spans
        .iter()
        .find(|s| s.name == "message" && attribute(s, "request_id") == Some("otel-req-1"))
        .unwrap_or_else(|| panic!("no message span with the request id: {spans:#?}"));
    assert_eq!(message.trace_id, trace, "{message:#?}");
    assert_eq!(
        message.parent_span_id, request.span_id,
        "the message span is the publishing request's child: {message:#?}"
    );
}

#[tokio::test]
async fn an_unusable_endpoint_is_refused_at_startup() {
    let stack = Stack::embedded();
    let out = stack
        .strata_with(
            &["config"],
            &[(
                "STRATA_TELEMETRY__OTLP_ENDPOINT",
                "https://collector.invalid:4318",
            )],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("telemetry.otlp_endpoint") && stderr.contains("http://"),
        "{stderr}"
    );
}
