//! The `otel` feature: the OpenTelemetry layer, its OTLP/HTTP exporter
//! and its HTTP client, and W3C trace context in and out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use super::{TRACEPARENT, configured_endpoint};
use crate::config::{TelemetryConfig, redact_url};
use crate::error::{Error, ErrorKind, Result};

/// How long one export may take (connect, send, answer); the SDK gives
/// the last export at shutdown 5 seconds in all.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(4);

/// The largest collector answer read (it is a small status message).
const MAX_ANSWER: usize = 1 << 20;

/// Whether an exporter was set up: without one, trace context is neither
/// read nor stamped.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The tracer provider, to shut down (export what is left) when the
/// command ends.
#[derive(Debug, Default)]
pub struct Exporter {
    provider: Option<SdkTracerProvider>,
}

impl Exporter {
    /// Exports the spans still batched and stops the exporter (off the
    /// runtime's threads: the SDK waits for its exporting thread, which
    /// sends on this runtime).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        EXPORTING.store(false, Ordering::Relaxed);
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!("the last traces may not have been exported: {e}");
            }
            Err(e) => tracing::warn!("the trace exporter did not stop cleanly: {e}"),
        }
    }
}

/// The layer exporting strata's spans (INFO and above, whatever
/// `STRATA_LOG` says of logs) to the configured endpoint, or none when no
/// endpoint is set. Must be called on strata's runtime: exports run on it.
pub fn layer<S>(config: &TelemetryConfig) -> Result<(Option<impl Layer<S>>, Exporter)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some((endpoint, source)) = configured_endpoint(config) else {
        return Ok((None, Exporter::default()));
    };
    check_endpoint(&endpoint, source)?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::internal("traces are exported from a tokio runtime, and none runs"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client { runtime })
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "cannot export traces to `{}` ({source}): {e}",
                    redact_url(&endpoint)
                ),
            )
            .with_field(source)
        })?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("strata"))
        .with_filter(Targets::new().with_target("strata", tracing::Level::INFO));
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((
        Some(layer),
        Exporter {
            provider: Some(provider),
        },
    ))
}

/// With the `otel` feature, an endpoint is used, not warned about.
pub fn warn_if_unsupported(_config: &TelemetryConfig) {}

/// An `http://HOST[:PORT]/...` URL: the exporter's client speaks plain
/// HTTP/1.1 (to a collector or agent nearby).
fn check_endpoint(endpoint: &str, source: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "`{}` ({source}) cannot receive traces: {why}",
                redact_url(endpoint)
            ),
        )
        .with_field(source))
    };
    match url::Url::parse(endpoint) {
        Ok(url) if url.scheme() == "http" && url.host().is_some() => Ok(()),
        Ok(url) if url.scheme() == "https" => bad(
            "strata exports over plain http:// only (to a collector or agent on the host or \
             its network); put TLS between that collector and the backend",
        ),
        Ok(_) => bad("give an http://HOST:PORT URL (OTLP/HTTP, port 4318 by convention)"),
        Err(e) => bad(&format!("not a URL ({e})")),
    }
}

/// Makes the W3C `traceparent` (and `tracestate`) given with a request
/// or a message the parent of `span`, which must not have been entered
/// yet. Nothing happens without an exporter or with an invalid header.
pub fn adopt_parent(span: &tracing::Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = Carrier {
        traceparent: Some(traceparent.to_owned()),
        tracestate: tracestate.map(str::to_owned),
    };
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid()
        && let Err(e) = span.set_parent(parent)
    {
        tracing::debug!("the trace context of the span was not set: {e}");
    }
}

/// The W3C `traceparent` of the current span, to stamp on a message, when
/// an exporter is set up and the span is exported.
pub fn current_traceparent() -> Option<String> {
    if !EXPORTING.load(Ordering::Relaxed) {
        return None;
    }
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = Carrier::default();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.traceparent
}

/// The two W3C headers, for the propagator.
#[derive(Debug, Default)]
struct Carrier {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

const TRACESTATE: &str = "tracestate";

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent.as_deref(),
            TRACESTATE => self.tracestate.as_deref(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT, TRACESTATE]
    }
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The exporter's HTTP client: one HTTP/1.1 connection per export, on
/// hyper, run on strata's runtime. The SDK's batch processor calls it
/// from its own thread (no runtime there), and waits for the task.
#[derive(Debug)]
struct Client {
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(
        &self,
        request: Request<Bytes>,
    ) -> std::result::Result<Response<Bytes>, HttpError> {
        self.runtime
            .spawn(async move {
                let endpoint = redact_url(&request.uri().to_string());
                let answer = match tokio::time::timeout(EXPORT_TIMEOUT, exchange(request)).await {
                    Ok(answer) => answer,
                    Err(_) => Err(HttpError::from(format!(
                        "the collector did not answer within {EXPORT_TIMEOUT:?}"
                    ))),
                };
                // The SDK drops a failed batch without a word: say it.
                match &answer {
                    Ok(response) if !response.status().is_success() => tracing::warn!(
                        "traces were not exported: {endpoint} answered {}",
                        response.status()
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("traces were not exported to {endpoint}: {e}"),
                }
                answer
            })
            .await?
    }
}

/// Sends `request` (to an absolute `http://` URL) on a new connection and
/// reads the answer.
async fn exchange(request: Request<Bytes>) -> std::result::Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let host = parts
        .uri
        .host()
        .ok_or("the endpoint names no host")?
        .to_owned();
    let port = parts.uri.port_u16();
    let host_header = match port {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()?;
    parts.uri = path;
    parts
        .headers
        .insert(hyper::header::HOST, host_header.parse()?);
    let address = host.trim_start_matches('[').trim_end_matches(']');
    let stream = tokio::net::TcpStream::connect((address, port.unwrap_or(80))).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Ends once `sender` is dropped and the answer read.
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_ANSWER).collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// A span as an OTLP export request carries it, for tests: ids in
/// lower-case hex, attributes as text.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    /// The `service.name` of its resource.
    pub service_name: Option<String>,
    /// Its name (`request`, `message`).
    pub name: String,
    /// Its trace id (32 hex digits).
    pub trace_id: String,
    /// Its own id (16 hex digits).
    pub span_id: String,
    /// Its parent's id, empty for a root span.
    pub parent_span_id: String,
    /// Its attributes (the span's fields), in order.
    pub attributes: Vec<(String, String)>,
}

/// The spans of an OTLP/HTTP protobuf trace export request (for the
/// feature's test, which plays the collector).
#[doc(hidden)]
pub fn decode_export_request(body: &[u8]) -> Result<Vec<ExportedSpan>> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use prost::Message;

    let request = ExportTraceServiceRequest::decode(body).map_err(|e| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("not an OTLP trace export: {e}"),
        )
    })?;
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let text = |value: Option<&AnyValue>| match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    let pairs = |attributes: &[KeyValue]| {
        attributes
            .iter()
            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
            .collect::<Vec<_>>()
    };
    let mut spans = Vec::new();
    for resource in &request.resource_spans {
        let service_name = resource.resource.as_ref().and_then(|r| {
            pairs(&r.attributes)
                .into_iter()
                .find_map(|(k, v)| (k == "service.name").then_some(v))
        });
        for scope in &resource.scope_spans {
            for span in &scope.spans {
                spans.push(ExportedSpan {
                    service_name: service_name.clone(),
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: pairs(&span.attributes),
                });
            }
        }
    }
    Ok(spans)
}
