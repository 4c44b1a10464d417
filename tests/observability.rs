//! Observability of a real `strata serve`: `/metrics` parsed as Prometheus
//! would parse it (and counting what was asked), request ids accepted,
//! generated and returned, and JSON logs that carry a request's id into the
//! message it published.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::serve::{Server, Stack, eventually};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request with extra headers; the status, headers (lower-case names)
/// and body.
async fn request(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let payload = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    ));
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within a minute")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// One sample of the page.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The page, parsed strictly as the Prometheus text format (0.0.4):
/// every line is a `# HELP`, a `# TYPE` or a sample of a family whose type
/// was declared before it; names follow strata's conventions. Panics
/// naming the first line that breaks a rule.
fn parse(page: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let name_ok = |n: &str| {
        n.starts_with("strata_")
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has a name and text");
            assert!(name_ok(name), "metric name {name:?}");
            assert!(!help.trim().is_empty(), "{name} has no help");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind} of {name}"
            );
            match kind {
                "counter" => assert!(
                    name.ends_with("_total"),
                    "counter {name} must end in _total"
                ),
                "histogram" => assert!(
                    name.ends_with("_seconds"),
                    "histogram {name} is not in seconds"
                ),
                _ => assert!(!name.ends_with("_total"), "gauge {name} ends in _total"),
            }
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{name} declared twice"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line {line:?}");
        if line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        let family = types
            .keys()
            .find(|f| {
                name == **f
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name == format!("{f}{s}") && types[*f] == "histogram")
            })
            .unwrap_or_else(|| panic!("sample {name} of no declared family"));
        assert!(name_ok(family));
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (types, samples)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(samples, name, labels).iter().map(|s| s.value).sum()
}

async fn scrape(server: &Server) -> (BTreeMap<String, String>, Vec<Sample>) {
    let (status, headers, page) = request(&server.address, "GET", "/metrics", &[], None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&page)
}

/// A series' labels other than `le`.
type LabelKey = Vec<(String, String)>;

/// Every histogram's buckets are cumulative and end at `+Inf` = `_count`.
fn check_histograms(types: &BTreeMap<String, String>, samples: &[Sample]) {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let mut series: BTreeMap<LabelKey, Vec<(f64, f64)>> = BTreeMap::new();
        for s in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = s.labels.get("le").expect("a bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            let key = s
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((le, s.value));
        }
        for (key, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{key:?} buckets not cumulative"
            );
            let (le, last) = *buckets.last().expect("buckets");
            assert!(le.is_infinite(), "{family}{key:?} lacks +Inf");
            let labels: Vec<(&str, &str)> =
                key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(
                last,
                value(samples, &format!("{family}_count"), &labels),
                "{family}{key:?}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_parse_and_count_what_was_asked() {
    let stack = Stack::embedded();
    let server = stack.serve(&[]).await;
    let address = server.address.clone();
    let view = json!({"entity": "user", "ttl_seconds": 3600, "features": [{"name": "sessions", "type": "int"}]});
    assert_eq!(
        request(
            &address,
            "PUT",
            "/v1/feature-views/activity",
            &[],
            Some(&view)
        )
        .await
        .0,
        200
    );
    let write = json!({"features": {"sessions": 3}});
    assert_eq!(
        request(
            &address,
            "PUT",
            "/v1/features/activity/u1",
            &[],
            Some(&write)
        )
        .await
        .0,
        200
    );
    let event = json!({"user_id": "u1", "type": "view", "product_id": "p1"});
    assert_eq!(
        request(&address, "POST", "/v1/events", &[], Some(&event))
            .await
            .0,
        202
    );

    let (_, before) = scrape(&server).await;
    let runs = |s: &[Sample], status: &str| {
        value(
            s,
            "strata_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/v1/runs"), ("status", status)],
        )
    };
    let unmatched = |s: &[Sample]| {
        value(
            s,
            "strata_http_request_duration_seconds_count",
            &[("route", "unmatched"), ("status", "404")],
        )
    };
    let fresh = |s: &[Sample]| {
        value(
            s,
            "strata_feature_reads_total",
            &[("view", "activity"), ("freshness", "fresh")],
        )
    };
    let missing = |s: &[Sample]| {
        value(
            s,
            "strata_feature_reads_total",
            &[("view", "activity"), ("freshness", "missing")],
        )
    };
    for _ in 0..3 {
        assert_eq!(request(&address, "GET", "/v1/runs", &[], None).await.0, 200);
    }
    assert_eq!(
        request(&address, "GET", "/v1/runs?page_size=0", &[], None)
            .await
            .0,
        400
    );
    for path in ["/no/such/thing", "/v1/runs/a/b/c"] {
        assert_eq!(request(&address, "GET", path, &[], None).await.0, 404);
    }
    for entity in ["u1", "u1", "u2"] {
        let path = format!("/v1/features/activity/{entity}");
        assert_eq!(request(&address, "GET", &path, &[], None).await.0, 200);
    }

    let (types, after) = scrape(&server).await;
    check_histograms(&types, &after);
    // Exactly what was asked between the two scrapes.
    assert_eq!(runs(&after, "200") - runs(&before, "200"), 3.0);
    assert_eq!(runs(&after, "400") - runs(&before, "400"), 1.0);
    assert_eq!(unmatched(&after) - unmatched(&before), 2.0);
    assert_eq!(fresh(&after) - fresh(&before), 2.0);
    assert_eq!(missing(&after) - missing(&before), 1.0);
    // No raw path ever becomes a label.
    assert!(
        after.iter().all(|s| s
            .labels
            .get("route")
            .is_none_or(|r| r == "unmatched" || r.starts_with('/') && !r.contains("no/such"))),
        "a raw path became a route label"
    );

    // The families the operations guide names, with their labels.
    for family in [
        "strata_http_request_duration_seconds",
        "strata_engine_operation_duration_seconds",
        "strata_cache_hits_total",
        "strata_cache_misses_total",
        "strata_cache_stale_served_total",
        "strata_engine_pool_connections",
        "strata_engine_circuit_state",
        "strata_feature_reads_total",
        "strata_outbox_backlog",
        "strata_engine_up",
        "strata_queue_messages_ready",
        "strata_dead_letters",
        "strata_sagas",
        "strata_feature_stale_ratio",
    ] {
        assert!(types.contains_key(family), "{family} missing from the page");
    }
    for tier in ["l1", "l2"] {
        assert!(
            !find(&after, "strata_cache_hits_total", &[("tier", tier)]).is_empty(),
            "no {tier} cache series"
        );
    }
    assert!(
        value(
            &after,
            "strata_engine_operation_duration_seconds_count",
            &[("engine", "relational")]
        ) > 0.0
    );
    assert!(
        value(
            &after,
            "strata_engine_pool_connections",
            &[("engine", "relational")]
        ) >= 1.0
    );
    assert_eq!(
        value(
            &after,
            "strata_engine_circuit_state",
            &[("engine", "kv"), ("state", "closed")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "strata_engine_up", &[]),
        4.0,
        "four engines up"
    );
    assert!(
        find(&after, "strata_scrape_errors", &[]).is_empty(),
        "nothing failed to scrape"
    );
    // The view served 2 fresh values, none stale.
    assert_eq!(
        value(
            &after,
            "strata_feature_stale_ratio",
            &[("view", "activity")]
        ),
        0.0
    );
    // The event published above is handled by this serve's worker: its
    // outcome, its handler time and its lag are counted.
    eventually(
        "the event's message is counted as done",
        Duration::from_secs(30),
        || async {
            let (_, now) = scrape(&server).await;
            (value(
                &now,
                "strata_pipeline_messages_total",
                &[("outcome", "done")],
            ) >= 1.0
                && value(&now, "strata_pipeline_consumer_lag_seconds_count", &[]) >= 1.0
                && value(&now, "strata_pipeline_handler_duration_seconds_count", &[]) >= 1.0)
                .then_some(())
        },
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn request_ids_are_taken_generated_and_returned() {
    let stack = Stack::embedded();
    let server = stack.serve(&[]).await;
    let address = server.address.clone();
    let id_of = |headers: &BTreeMap<String, String>| {
        headers.get("x-request-id").cloned().expect("x-request-id")
    };

    let (_, headers, _) = request(
        &address,
        "GET",
        "/healthz",
        &[("X-Request-Id", "job-42.a")],
        None,
    )
    .await;
    assert_eq!(id_of(&headers), "job-42.a");
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let (_, headers, _) = request(
        &address,
        "GET",
        "/healthz",
        &[("traceparent", &traceparent)],
        None,
    )
    .await;
    assert_eq!(id_of(&headers), trace);
    // X-Request-Id wins over traceparent.
    let (_, headers, _) = request(
        &address,
        "GET",
        "/healthz",
        &[("traceparent", &traceparent), ("X-Request-Id", "mine")],
        None,
    )
    .await;
    assert_eq!(id_of(&headers), "mine");
    // Unusable ids are replaced; errors carry one too.
    let long = "x".repeat(129);
    let mut generated = BTreeSet::new();
    for bad in ["has space", long.as_str(), "caf\u{e9}"] {
        let (_, headers, _) = request(
            &address,
            "GET",
            "/nowhere",
            &[("X-Request-Id", bad), ("traceparent", bad)],
            None,
        )
        .await;
        let id = id_of(&headers);
        assert_ne!(id, bad);
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        generated.insert(id);
    }
    assert_eq!(generated.len(), 3, "generated ids repeat: {generated:?}");
    server.stop().await;
}

#[tokio::test]
async fn json_logs_follow_a_request_into_the_message_it_published() {
    let stack = Stack::embedded();
    let server = stack
        .serve(&[
            ("STRATA_LOG", "info,lapin=off"),
            ("STRATA_LOG__FORMAT", "json"),
        ])
        .await;
    let event = json!({"user_id": "u7", "type": "click", "product_id": "p9"});
    let (status, headers, body) = request(
        &server.address,
        "POST",
        "/v1/events",
        &[("X-Request-Id", "req-trace-7")],
        Some(&event),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        headers.get("x-request-id").map(String::as_str),
        Some("req-trace-7")
    );

    let lines = eventually(
        "a JSON log line of the message, with the request's id",
        Duration::from_secs(30),
        || {
            let log = server.log();
            async move {
                let lines: Vec<Value> = log
                    .lines()
                    .filter(|l| l.starts_with('{'))
                    .map(|l| {
                        serde_json::from_str(l)
                            .unwrap_or_else(|e| panic!("log line {l:?} is not JSON: {e}"))
                    })
                    .collect();
                lines
                    .iter()
                    .any(|l| {
                        l["span"]["name"] == "message" && l["span"]["request_id"] == "req-trace-7"
                    })
                    .then_some(lines)
            }
        },
    )
    .await;
    let request_line = lines
        .iter()
        .find(|l| l["span"]["name"] == "request" && l["span"]["request_id"] == "req-trace-7")
        .expect("the request's own log line");
    assert_eq!(request_line["span"]["route"], "/v1/events");
    assert_eq!(request_line["fields"]["status"], 202);
    assert_eq!(request_line["level"], "INFO");
    server.stop().await;
}

/// A strata built without the `otel` feature says so when an OTLP
/// endpoint is set, rather than ignoring it.
#[cfg(not(feature = "otel"))]
#[tokio::test]
async fn an_otlp_endpoint_without_the_otel_feature_is_warned_about() {
    let stack = Stack::embedded();
    let out = stack
        .strata_with(
            &["config"],
            &[("STRATA_TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4318")],
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "telemetry.otlp_endpoint is set but this strata was built without the `otel` feature"
        ),
        "{stderr}"
    );
    // And nothing is said when none is set (here or in the standard
    // variables, which the test cannot take away from strata).
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
    {
        return;
    }
    let quiet = stack.strata(&["config"]).await;
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("otel"),
        "{quiet:?}"
    );
}
