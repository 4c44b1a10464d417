//! Traces exported to an OpenTelemetry collector: the `request` span of
//! every API request and the `message` span of every message a worker
//! handles, with their fields (`request_id`, method, route; queue, message
//! id, request id) as attributes, over OTLP/HTTP with protobuf.
//!
//! Built only with the `otel` feature (`cargo build --features otel`), and
//! active only when an endpoint is configured (`telemetry.otlp_endpoint`,
//! else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`). A strata built without the feature warns
//! at startup when one is set ([`warn_if_unsupported`]), so that an
//! endpoint is never ignored silently.
//!
//! Context crosses processes the W3C way: a request's `traceparent` (and
//! `tracestate`) becomes the parent of its `request` span
//! ([`adopt_parent`]); the publisher stamps the current span's
//! `traceparent` on each message ([`current_traceparent`]), and the
//! worker's `message` span becomes its child. Without an active exporter
//! these functions do nothing.
//!
//! The spans are batched by the SDK on its own thread; strata's HTTP client
//! for the exporter (hyper 1) runs each export on strata's tokio runtime.
//! [`Exporter::shutdown`] exports what is left when the command ends (after
//! a `serve` or `worker` stopped on SIGTERM).

use crate::config::TelemetryConfig;

/// The message header carrying the W3C trace context of the span that
/// published the message (the same format as the HTTP header).
pub const TRACEPARENT: &str = "traceparent";

/// The standard variable naming the collector's base URL.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The standard variable naming the full URL traces are posted to.
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// Where traces would go, and what said so: the configuration key or one
/// of the standard variables (an empty value counts as unset).
pub fn configured_endpoint(config: &TelemetryConfig) -> Option<(String, &'static str)> {
    let base = |url: &str| format!("{}/v1/traces", url.trim().trim_end_matches('/'));
    if let Some(url) = config
        .otlp_endpoint
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        return Some((base(url), "telemetry.otlp_endpoint"));
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(url) = var(TRACES_ENDPOINT_VAR) {
        return Some((url.trim().to_owned(), TRACES_ENDPOINT_VAR));
    }
    var(ENDPOINT_VAR).map(|url| (base(&url), ENDPOINT_VAR))
}

#[cfg(feature = "otel")]
mod otel;

#[cfg(feature = "otel")]
pub use otel::{
    ExportedSpan, Exporter, adopt_parent, current_traceparent, decode_export_request, layer,
    warn_if_unsupported,
};

/// Without the `otel` feature: nothing to shut down.
#[cfg(not(feature = "otel"))]
#[derive(Debug, Default)]
pub struct Exporter;

#[cfg(not(feature = "otel"))]
impl Exporter {
    /// Nothing was exported.
    pub async fn shutdown(self) {}
}

/// Without the `otel` feature: no layer (see [`warn_if_unsupported`]).
#[cfg(not(feature = "otel"))]
pub fn layer(
    _config: &TelemetryConfig,
) -> crate::error::Result<(Option<tracing_subscriber::layer::Identity>, Exporter)> {
    Ok((None, Exporter))
}

/// Without the `otel` feature, an endpoint that is set is warned about
/// (logs are set up by then): traces are not exported.
#[cfg(not(feature = "otel"))]
pub fn warn_if_unsupported(config: &TelemetryConfig) {
    if let Some((_, source)) = configured_endpoint(config) {
        tracing::warn!(
            "{source} is set but this strata was built without the `otel` feature; traces are not exported (build with `cargo build --release --features otel`)"
        );
    }
}

/// Without the `otel` feature: nothing to adopt.
#[cfg(not(feature = "otel"))]
#[inline]
pub fn adopt_parent(_span: &tracing::Span, _traceparent: Option<&str>, _tracestate: Option<&str>) {}

/// Without the `otel` feature: no trace context to stamp.
#[cfg(not(feature = "otel"))]
#[inline]
pub fn current_traceparent() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_endpoint_is_a_base_url() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:4318/".into()),
            ..Default::default()
        };
        assert_eq!(
            configured_endpoint(&config),
            Some((
                "http://127.0.0.1:4318/v1/traces".to_owned(),
                "telemetry.otlp_endpoint"
            ))
        );
    }
}
