//! The dashboard and `/v1/ops`: through the router (no sockets) on the
//! embedded engines, and in a real browser (headless Chromium, through
//! `scripts/dashboard-test.sh`) when `/usr/bin/chromium` (or `$CHROMIUM`)
//! exists; without it that test says so and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tower::ServiceExt;

use strata::api;
use strata::config::{ApiConfig, Config, RelationalConfig};
use strata::engines::Engines;
use strata::platform::Platform;

struct Api {
    router: Router,
    _dir: tempfile::TempDir,
}

/// The API over fresh embedded engines; `docs_down` makes every read of
/// the document engine fail (its pings still answer).
async fn setup(docs_down: bool) -> Api {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        relational: RelationalConfig {
            max_connections: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut engines = Engines::open(&config).await.expect("open engines");
    if docs_down {
        engines = common::faulty::with_docs(
            &engines,
            common::faulty::FailingDocs::reads_too(engines.documents.clone()),
        );
    }
    let platform = Platform::with_engines(engines, config.sagas)
        .await
        .expect("open the platform");
    let serving = strata::serving::Serving::open(&platform, &config.serving)
        .await
        .expect("open serving");
    let pipelines = strata::pipelines::Pipelines::open(&platform, &config.pipelines)
        .await
        .expect("open the pipelines");
    let scenario =
        strata::analytics::scenario::Scenario::open(&platform, &pipelines, &config.analytics)
            .expect("open the scenario");
    Api {
        router: api::router(
            platform,
            serving,
            pipelines,
            scenario,
            &ApiConfig::default(),
        ),
        _dir: dir,
    }
}

impl Api {
    async fn request(&self, method: Method, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("router is infallible")
    }

    async fn get(&self, uri: &str) -> Response {
        self.request(Method::GET, uri, &[]).await
    }

    async fn put(&self, uri: &str, body: Value) -> StatusCode {
        let request = Request::builder()
            .method(Method::PUT)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let response = self.router.clone().oneshot(request).await.expect("router");
        response.status()
    }
}

async fn text_of(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

fn header_of(response: &Response, name: header::HeaderName) -> &str {
    response
        .headers()
        .get(&name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("a text header")
}

fn assert_strict_headers(response: &Response, what: &str) {
    let csp = header_of(response, header::CONTENT_SECURITY_POLICY);
    assert!(csp.starts_with("default-src 'self'"), "{what}: {csp}");
    assert!(csp.contains("script-src 'self';"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert_eq!(
        header_of(response, header::X_CONTENT_TYPE_OPTIONS),
        "nosniff",
        "{what}"
    );
    assert_eq!(
        header_of(response, header::CACHE_CONTROL),
        "no-cache",
        "{what}"
    );
}

#[tokio::test]
async fn the_page_is_html_with_a_strict_policy_and_no_inline_script() {
    let api = setup(false).await;
    let response = api.get("/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header_of(&response, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    assert_strict_headers(&response, "/");
    let html = text_of(response).await;
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        html.contains(r#"<script src="/assets/app.js" defer></script>"#),
        "{html}"
    );
    assert!(html.contains(r#"href="/assets/style.css""#), "{html}");
    // Every script is a file: no inline code, no inline handlers.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains(" onclick=") && !html.contains(" onload="));
    assert!(
        !html.contains("style=\""),
        "inline styles are refused by the CSP"
    );
    for page in [
        "overview",
        "runs",
        "features",
        "queues",
        "dead-letters",
        "sagas",
    ] {
        assert!(html.contains(&format!("href=\"#/{page}\"")), "{page}");
        assert!(html.contains(&format!("data-page=\"{page}\"")), "{page}");
    }
}

#[tokio::test]
async fn assets_have_their_content_types_and_revalidate_by_etag() {
    let api = setup(false).await;
    for (file, content_type, starts) in [
        ("app.js", "text/javascript; charset=utf-8", "// The strata"),
        ("style.css", "text/css; charset=utf-8", "/* The strata"),
    ] {
        let uri = format!("/assets/{file}");
        let response = api.get(&uri).await;
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
        assert_strict_headers(&response, file);
        let etag = header_of(&response, header::ETAG).to_owned();
        assert!(text_of(response).await.starts_with(starts), "{file}");

        let again = api
            .request(Method::GET, &uri, &[("if-none-match", &etag)])
            .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{file}");
        assert_eq!(header_of(&again, header::ETAG), etag);
        assert!(text_of(again).await.is_empty());

        let changed = api
            .request(Method::GET, &uri, &[("if-none-match", "\"0000\"")])
            .await;
        assert_eq!(changed.status(), StatusCode::OK, "{file}");
    }
    // The script talks to the API only (connect-src 'self').
    let script = text_of(api.get("/assets/app.js").await).await;
    assert!(!script.contains("http://") || script.contains("http://www.w3.org/2000/svg"));
    assert!(!script.contains("eval("));
}

#[tokio::test]
async fn an_unknown_asset_is_404_in_the_api_shape() {
    let api = setup(false).await;
    for uri in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/..%2Fmain.rs",
    ] {
        let response = api.get(uri).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(
            header_of(&response, header::CONTENT_TYPE),
            "application/json",
            "{uri}"
        );
        let body: Value = serde_json::from_str(&text_of(response).await).expect("JSON");
        assert_eq!(body["error"]["kind"], "not_found", "{uri}: {body}");
        assert_eq!(body["error"]["field"], "file", "{uri}: {body}");
    }
}

async fn ops(api: &Api) -> Value {
    let response = api.get("/v1/ops").await;
    assert_eq!(response.status(), StatusCode::OK);
    serde_json::from_str(&text_of(response).await).expect("JSON")
}

#[tokio::test]
async fn ops_reports_every_part_in_the_documented_shape() {
    let api = setup(false).await;
    let status = api
        .put(
            "/v1/feature-views/ops_view",
            json!({"entity": "user", "features": [{"name": "n", "type": "int"}], "ttl_seconds": 60}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        api.put("/v1/features/ops_view/u-1", json!({"features": {"n": 1}}))
            .await,
        StatusCode::OK
    );
    for entity in ["u-1", "u-1", "u-2"] {
        let read = api.get(&format!("/v1/features/ops_view/{entity}")).await;
        assert_eq!(read.status(), StatusCode::OK);
    }

    let snapshot = ops(&api).await;
    assert_eq!(snapshot["status"], "ok", "{snapshot}");
    assert_eq!(snapshot["unavailable"], json!([]));
    assert!(
        snapshot["taken_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let engines: Vec<&str> = snapshot["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .map(|e| {
            assert_eq!(e["status"], "up", "{e}");
            assert!(e["rtt_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{e}");
            e["engine"].as_str().expect("engine")
        })
        .collect();
    assert_eq!(engines, ["relational", "documents", "kv", "queue"]);
    let view_cache = snapshot["caches"]
        .as_array()
        .expect("caches")
        .iter()
        .find(|c| c["name"] == "feature_views")
        .expect("the feature views' cache");
    for counter in ["l1_hits", "l2_hits", "misses", "stale_served", "l1_entries"] {
        assert!(view_cache[counter].is_u64(), "{counter}: {view_cache}");
    }
    // No worker runs here, so no queue is declared: each says so, and that
    // is not a fault.
    let queues: Vec<&str> = snapshot["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .map(|q| q["queue"].as_str().expect("queue"))
        .collect();
    assert_eq!(
        queues,
        strata::ops::known_queues()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert!(queues.contains(&"onboarding"), "{queues:?}");
    assert_eq!(snapshot["dead_letters"]["total"], 0);
    assert_eq!(
        snapshot["dead_letters"]["by_queue"]
            .as_array()
            .unwrap()
            .len(),
        queues.len()
    );
    assert_eq!(snapshot["outbox_backlog"], 0);
    let states: Vec<&str> = snapshot["sagas"]
        .as_array()
        .expect("sagas")
        .iter()
        .map(|s| s["state"].as_str().expect("state"))
        .collect();
    assert_eq!(
        states,
        ["running", "compensating", "completed", "compensated"]
    );
    let view = snapshot["feature_views"]
        .as_array()
        .expect("views")
        .iter()
        .find(|v| v["view"] == "ops_view")
        .expect("the view declared");
    assert_eq!(
        *view,
        json!({
            "view": "ops_view", "entity": "user", "features": 1, "ttl_seconds": 60,
            "fresh_reads": 2, "stale_reads": 0, "missing_reads": 1, "stale_share": 0.0,
        })
    );

    // The document's schema names every field the answer has.
    let doc: Value =
        serde_json::from_str(&text_of(api.get("/openapi.json").await).await).expect("JSON");
    let reference =
        doc["paths"]["/v1/ops"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            ["$ref"]
            .as_str()
            .expect("a $ref");
    assert_eq!(reference, "#/components/schemas/OpsSnapshot");
    let schema = &doc["components"]["schemas"]["OpsSnapshot"];
    let mut documented: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let mut answered: Vec<&String> = snapshot.as_object().unwrap().keys().collect();
    documented.sort();
    answered.sort();
    assert_eq!(documented, answered);
    assert_eq!(
        schema["properties"]["status"]["$ref"],
        "#/components/schemas/OpsStatus"
    );
    assert_eq!(
        doc["components"]["schemas"]["OpsStatus"]["enum"],
        json!(["ok", "degraded"])
    );
}

#[tokio::test]
async fn ops_reports_a_part_it_cannot_gather_as_unavailable() {
    let api = setup(true).await;
    let snapshot = ops(&api).await;
    assert_eq!(snapshot["status"], "degraded", "{snapshot}");
    let parts: Vec<&str> = snapshot["unavailable"]
        .as_array()
        .expect("unavailable")
        .iter()
        .map(|u| {
            assert!(
                u["error"].as_str().unwrap().starts_with("unavailable: "),
                "{u}"
            );
            u["part"].as_str().expect("part")
        })
        .collect();
    assert_eq!(parts, ["dead_letters", "feature_views"]);
    assert_eq!(snapshot["dead_letters"], Value::Null);
    assert_eq!(snapshot["feature_views"], Value::Null);
    // The parts of the other engines are still there.
    assert_eq!(snapshot["outbox_backlog"], 0);
    assert!(snapshot["sagas"].is_array());
    assert_eq!(snapshot["engines"].as_array().unwrap().len(), 4);
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

#[test]
fn every_page_renders_the_seeded_data_in_chromium() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "skipped: no Chromium at /usr/bin/chromium (or $CHROMIUM); \
             scripts/dashboard-test.sh installs it"
        );
        return;
    };
    let artifacts = tempfile::tempdir().expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(root.join("scripts/dashboard-test.sh"))
        .arg(artifacts.path())
        .env("STRATA_BIN", env!("CARGO_BIN_EXE_strata"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run scripts/dashboard-test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/dashboard-test.sh failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every page passed"), "{stdout}");
    for page in [
        "overview",
        "runs",
        "runs-search",
        "runs-bad-filter",
        "features",
        "queues",
        "dead-letters",
        "sagas",
    ] {
        let png = std::fs::read(artifacts.path().join(format!("{page}.png")))
            .unwrap_or_else(|e| panic!("{page}.png: {e}"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{page}.png is a PNG");
        let html = std::fs::read_to_string(artifacts.path().join(format!("{page}.html")))
            .unwrap_or_else(|e| panic!("{page}.html: {e}"));
        assert!(html.contains("strata"), "{page}.html");
    }
}
