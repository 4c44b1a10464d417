//! The HTTP API, driven in process through the router (no sockets) on the
//! embedded engines in a temporary data dir, plus one test of the real
//! `strata serve` binary: bound on port 0, asked over TCP, stopped with
//! SIGTERM.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytesize::ByteSize;
use serde_json::{Value, json};
use tower::ServiceExt;

use sea_orm::TransactionTrait;
use strata::api;
use strata::config::{ApiConfig, Config, RelationalConfig};
use strata::engines::Engines;
use strata::platform::Platform;
use strata::platform::registry::{self, NewArtifact, NewDataset};

struct Api {
    router: Router,
    engines: Engines,
    platform: Platform,
    _dir: tempfile::TempDir,
}

async fn setup_with(api_config: ApiConfig) -> Api {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        relational: RelationalConfig {
            max_connections: 3,
            ..Default::default()
        },
        api: api_config.clone(),
        ..Default::default()
    };
    let engines = Engines::open(&config).await.expect("open engines");
    // As `strata serve` does before it listens.
    let platform = Platform::with_engines(engines.clone(), config.sagas)
        .await
        .expect("open the platform");
    let serving = strata::serving::Serving::open(&platform, &config.serving)
        .await
        .expect("open serving");
    let pipelines = strata::pipelines::Pipelines::open(&platform, &config.pipelines)
        .await
        .expect("open the pipelines");
    Api {
        router: {
            let scenario = strata::analytics::scenario::Scenario::open(
                &platform,
                &pipelines,
                &config.analytics,
            )
            .expect("open the scenario");
            api::router(platform.clone(), serving, pipelines, scenario, &api_config)
        },
        engines,
        platform,
        _dir: dir,
    }
}

async fn setup() -> Api {
    setup_with(ApiConfig::default()).await
}

impl Api {
    /// Sends `body` (raw bytes, JSON content type when given) and returns the
    /// status and the JSON answer (`Null` for an empty body).
    async fn raw(&self, method: Method, uri: &str, body: Option<Vec<u8>>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        let body = match body {
            Some(bytes) => {
                request = request.header("content-type", "application/json");
                Body::from(bytes)
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("router is infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = content_type.starts_with("text/");
        let value = if bytes.is_empty() {
            Value::Null
        } else if text {
            // The dashboard's page and files (HTML, script, style sheet).
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{uri}: answer is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.raw(Method::GET, uri, None).await
    }

    async fn send(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        self.raw(method, uri, Some(body.to_string().into_bytes()))
            .await
    }

    async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, uri, body).await
    }

    async fn dataset(&self, name: &str) {
        let (status, body) = self.post("/v1/datasets", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Registers a run on `dataset` and, when `accuracy` is given, completes it.
    async fn run(&self, dataset: &str, model_id: &str, framework: &str, accuracy: Option<f64>) {
        let (status, body) = self
            .post(
                "/v1/runs",
                json!({
                    "dataset": dataset, "model_id": model_id,
                    "model_name": format!("{model_id}-model"), "framework": framework,
                    "tags": { "team": "risk" },
                }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if let Some(accuracy) = accuracy {
            let (status, body) = self
                .post(
                    &format!("/v1/runs/{model_id}/complete"),
                    json!({ "accuracy": accuracy, "training_time_seconds": 60 }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    }
}

/// Asserts the API's error shape and returns its `(kind, message, field)`.
fn error_of(body: &Value) -> (String, String, Option<String>) {
    let error = body
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("not an error body: {body}"));
    let allowed: BTreeSet<&str> = ["kind", "message", "field"].into();
    assert!(
        error.keys().all(|k| allowed.contains(k.as_str())),
        "unexpected keys in {body}"
    );
    (
        error["kind"].as_str().expect("kind").to_owned(),
        error["message"].as_str().expect("message").to_owned(),
        error
            .get("field")
            .and_then(Value::as_str)
            .map(str::to_owned),
    )
}

fn model_ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["model_id"].as_str().expect("model_id").to_owned())
        .collect()
}

#[tokio::test]
async fn healthz_answers_ok() {
    let api = setup().await;
    let (status, body) = api.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_200_when_every_engine_answers_and_503_when_one_does_not() {
    let api = setup().await;
    let (status, body) = api.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    let engines: Vec<_> = body["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .map(|e| (e["engine"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        engines,
        [
            ("relational", "up"),
            ("documents", "up"),
            ("kv", "up"),
            ("queue", "up")
        ]
    );

    // Closing the pool makes the relational engine unreachable.
    api.engines.relational.close_by_ref().await.expect("close");
    let (status, body) = api.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["engines"][0]["engine"], "relational");
    assert_eq!(body["engines"][0]["status"], "down");
    assert!(body["engines"][0]["error"].is_string());
    assert_eq!(body["engines"][1]["status"], "up");
}

#[tokio::test]
async fn datasets_are_created_listed_and_fetched() {
    let api = setup().await;
    let (status, created) = api
        .post(
            "/v1/datasets",
            json!({ "name": "fraud-train-v1", "description": "card transactions",
                    "total_rows": 1000, "total_features": 30, "created_by": "ana" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "fraud-train-v1");
    assert_eq!(created["total_rows"], 1000);
    assert!(created["id"].is_i64());

    let (status, fetched) = api.get("/v1/datasets/fraud-train-v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);

    api.dataset("b-set").await;
    api.dataset("a-set").await;
    let mut names = Vec::new();
    let mut uri = "/v1/datasets?page_size=2".to_owned();
    loop {
        let (status, page) = api.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let datasets = page["datasets"].as_array().expect("datasets");
        assert!(datasets.len() <= 2);
        names.extend(
            datasets
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_owned()),
        );
        match page["next_page_token"].as_str() {
            Some(token) => uri = format!("/v1/datasets?page_size=2&page_token={token}"),
            None => break,
        }
    }
    assert_eq!(names, ["a-set", "b-set", "fraud-train-v1"]);

    let (status, body) = api.get("/v1/datasets?page_size=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&body).2.as_deref(), Some("page_size"));
}

#[tokio::test]
async fn duplicate_dataset_name_is_409() {
    let api = setup().await;
    api.dataset("fraud-train-v1").await;
    let (status, body) = api
        .post("/v1/datasets", json!({ "name": "fraud-train-v1" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_of(&body).0, "conflict");
}

#[tokio::test]
async fn operator_looking_strings_are_plain_values() {
    let api = setup().await;
    let name = r#"{"$where": "sleep(1000) || true"}"#;
    let description = r#"{"$gt": ""}"#;
    let (status, created) = api
        .post(
            "/v1/datasets",
            json!({ "name": name, "description": description }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], name);
    assert_eq!(created["description"], description);

    let encoded = "%7B%22%24where%22%3A%20%22sleep(1000)%20%7C%7C%20true%22%7D";
    let (status, fetched) = api.get(&format!("/v1/datasets/{encoded}")).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["name"], name);
    assert_eq!(fetched["description"], description);

    // Another name does not match it, whatever the operator would do.
    let (status, _) = api.get("/v1/datasets/%7B%22%24gt%22%3A%20%22%22%7D").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A JSON object where a string is expected is refused, not interpreted.
    let (status, body) = api
        .post("/v1/datasets", json!({ "name": { "$gt": "" } }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).0, "invalid_input");
}

#[tokio::test]
async fn dataset_stats_count_its_runs() {
    let api = setup().await;
    api.dataset("d").await;
    api.run("d", "m1", "pytorch", Some(0.9)).await;
    api.run("d", "m2", "xgboost", None).await;
    let (status, stats) = api.get("/v1/datasets/d/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["dataset"]["name"], "d");
    assert_eq!(stats["total_runs"], 2);
    assert_eq!(stats["running"], 1);
    assert_eq!(stats["completed"], 1);
    assert_eq!(stats["best_accuracy"], 0.9);
    assert_eq!(stats["frameworks"], 2);

    let (status, body) = api.get("/v1/datasets/missing/stats").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of(&body).0, "not_found");
}

async fn seeded_runs() -> Api {
    let api = setup().await;
    api.dataset("fraud").await;
    api.run("fraud", "torch-low", "pytorch", Some(0.80)).await;
    api.run("fraud", "xgb-high", "xgboost", Some(0.97)).await;
    api.run("fraud", "xgb-low", "xgboost", Some(0.90)).await;
    api.run("fraud", "tf-high", "tensorflow", Some(0.96)).await;
    api.run("fraud", "torch-running", "pytorch", None).await;
    api
}

#[tokio::test]
async fn issue_example_filter_returns_the_matching_runs() {
    let api = seeded_runs().await;
    let (status, page) = api
        .get("/v1/runs?filter=framework%20IN%20('pytorch')%20OR%20accuracy%3E0.95")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let found: BTreeSet<String> = model_ids(&page).into_iter().collect();
    let expected: BTreeSet<String> = ["torch-low", "xgb-high", "tf-high", "torch-running"]
        .map(String::from)
        .into();
    assert_eq!(found, expected);
    assert!(page["next_page_token"].is_null());
    let run = &page["runs"][0];
    assert_eq!(run["dataset"], "fraud");
    assert_eq!(run["tags"]["team"], "risk");

    let (status, page) = api
        .get("/v1/runs?filter=accuracy%20IS%20NOT%20NULL&order_by=accuracy%20DESC")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        model_ids(&page),
        ["xgb-high", "tf-high", "xgb-low", "torch-low"]
    );
}

#[tokio::test]
async fn search_pages_follow_tokens_without_repeats() {
    let api = seeded_runs().await;
    let mut seen = Vec::new();
    let mut uri = "/v1/runs?order_by=model_id&page_size=2".to_owned();
    loop {
        let (status, page) = api.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(model_ids(&page));
        match page["next_page_token"].as_str() {
            Some(token) => {
                uri = format!("/v1/runs?order_by=model_id&page_size=2&page_token={token}")
            }
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "tf-high",
            "torch-low",
            "torch-running",
            "xgb-high",
            "xgb-low"
        ]
    );
}

#[tokio::test]
async fn malformed_filter_is_400_naming_the_position() {
    let api = seeded_runs().await;
    let (status, body) = api.get("/v1/runs?filter=accuracy%20%3E%3D").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (kind, message, field) = error_of(&body);
    assert_eq!(kind, "invalid_input");
    assert_eq!(field.as_deref(), Some("filter"));
    assert!(message.contains("at column 12"), "{message}");

    let (status, body) = api.get("/v1/runs?order_by=tags.team").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("order_by"));

    let (status, body) = api.get("/v1/runs?page_size=lots").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (kind, message, _) = error_of(&body);
    assert_eq!(kind, "invalid_input");
    assert!(message.contains("page_size"), "{message}");

    let (status, body) = api.get("/v1/runs?page_token=garbage").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("page_token"));
}

#[tokio::test]
async fn run_is_fetched_with_its_artifacts() {
    let api = seeded_runs().await;
    let run = registry::run_by_model_id(&api.engines.relational, "xgb-high")
        .await
        .expect("run");
    let artifact = registry::create_artifact(
        &api.engines.relational,
        NewArtifact {
            run_id: run.id,
            uri: "s3://models/xgb-high.json".into(),
            format: "xgboost-json".into(),
            size_bytes: 2048,
            checksum: "abc123".into(),
        },
    )
    .await
    .expect("artifact");
    // Written straight to the engine, behind the registry's back: say so
    // to the caches, as the registry's own writes do.
    api.platform.rows().model_changed("xgb-high").await;
    let (status, body) = api.get("/v1/runs/xgb-high").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model_id"], "xgb-high");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["accuracy"], 0.97);
    assert_eq!(body["dataset"], "fraud");
    assert_eq!(body["tags"], json!({ "team": "risk" }));
    assert_eq!(body["artifacts"][0]["id"], artifact.id);
    assert_eq!(body["artifacts"][0]["uri"], "s3://models/xgb-high.json");

    let (status, body) = api.get("/v1/runs/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (kind, message, field) = error_of(&body);
    assert_eq!(kind, "not_found");
    assert!(message.contains("nope"), "{message}");
    assert_eq!(field.as_deref(), Some("model_id"));
}

#[tokio::test]
async fn runs_register_and_complete_once() {
    let api = setup().await;
    api.dataset("d").await;
    let (status, run) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "d", "model_id": "m", "model_name": "fraud-detector",
                    "framework": "pytorch" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    assert_eq!(run["status"], "running");
    assert!(run["accuracy"].is_null());

    let (status, body) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "d", "model_id": "m", "model_name": "x", "framework": "y" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, body) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "missing", "model_id": "m2", "model_name": "x", "framework": "y" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("dataset"));

    let (status, body) = api
        .post("/v1/runs/m/complete", json!({ "accuracy": 1.5 }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("accuracy"));

    let (status, body) = api
        .post("/v1/runs/m/complete", json!({ "status": "paused" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("status"));

    let (status, done) = api
        .post(
            "/v1/runs/m/complete",
            json!({ "accuracy": 0.93, "loss": 0.2, "training_time_seconds": 3600 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["accuracy"], 0.93);
    assert_eq!(done["dataset"], "d");
    assert!(done["completed_at"].is_string());

    let (status, body) = api
        .post("/v1/runs/m/complete", json!({ "status": "failed" }))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, body) = api.post("/v1/runs/ghost/complete", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// `POST /v1/runs` is the register saga: the run row, the config document
/// and the framework counter together, or none of them.
#[tokio::test]
async fn runs_register_across_engines_or_not_at_all() {
    let api = setup().await;
    api.dataset("fraud-train-v1").await;
    let layers = json!([{ "type": "dense", "units": 128 }]);
    let (status, run) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "fraud-train-v1", "model_id": "fd-3", "model_name": "Fraud CNN",
                    "framework": "pytorch", "config": { "architecture": { "layers": layers } } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{run}");
    let (status, info) = api.get("/v1/models/fd-3").await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["run"]["model_id"], "fd-3");
    assert_eq!(info["config"]["config"]["architecture"]["layers"], layers);
    assert_eq!(info["config"]["dataset"], "fraud-train-v1");
    let counted = api
        .platform
        .models()
        .registrations("pytorch")
        .await
        .expect("read the counter");
    assert_eq!(counted, 1);

    // A config key that looks like an operator is refused before anything
    // is written.
    let (status, body) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "fraud-train-v1", "model_id": "fd-4", "model_name": "x",
                    "framework": "pytorch", "config": { "$where": "sleep(1000)" } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).1.contains("$where"), "{body}");
    let (status, _) = api.get("/v1/runs/fd-4").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A config stored before the run (PUT) makes the document step conflict:
    // 409, and again no run row is left behind.
    let (status, body) = api
        .send(
            Method::PUT,
            "/v1/models/fd-5/config",
            json!({ "model_name": "x", "framework": "xgboost" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "fraud-train-v1", "model_id": "fd-5", "model_name": "x",
                    "framework": "xgboost" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = api.get("/v1/runs/fd-5").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let counted = api
        .platform
        .models()
        .registrations("xgboost")
        .await
        .expect("read the counter");
    assert_eq!(counted, 0, "no registration was counted");
}

/// `DELETE /v1/runs/{model_id}` removes the model from every engine; a run
/// with artifacts is refused and kept whole.
#[tokio::test]
async fn runs_delete_removes_a_model_everywhere() {
    let api = setup().await;
    api.dataset("d").await;
    let (status, body) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "d", "model_id": "gone", "model_name": "m",
                    "framework": "pytorch", "config": { "epochs": 3 } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.send(Method::DELETE, "/v1/runs/gone", Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(api.get("/v1/runs/gone").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/v1/models/gone/config").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = api.send(Method::DELETE, "/v1/runs/gone", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("model_id"));

    api.run("d", "kept", "xgboost", Some(0.9)).await;
    let run = registry::run_by_model_id(&api.engines.relational, "kept")
        .await
        .expect("run");
    registry::create_artifact(
        &api.engines.relational,
        NewArtifact {
            run_id: run.id,
            uri: "file:///kept".into(),
            format: "onnx".into(),
            size_bytes: 1,
            checksum: "c".into(),
        },
    )
    .await
    .expect("artifact");
    let (status, body) = api.send(Method::DELETE, "/v1/runs/kept", Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(api.get("/v1/runs/kept").await.0, StatusCode::OK);
    assert_eq!(api.get("/v1/models/kept/config").await.0, StatusCode::OK);
}

#[tokio::test]
async fn aliases_resolve_and_move_with_audit() {
    let api = setup().await;
    api.dataset("d").await;
    api.run("d", "v1", "xgboost", Some(0.9)).await;
    let run = registry::run_by_model_id(&api.engines.relational, "v1")
        .await
        .expect("run");
    let artifact = registry::create_artifact(
        &api.engines.relational,
        NewArtifact {
            run_id: run.id,
            uri: "file:///m".into(),
            format: "onnx".into(),
            size_bytes: 1,
            checksum: "c".into(),
        },
    )
    .await
    .expect("artifact");

    let (status, body) = api.get("/v1/aliases/v1-model@champion").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_of(&body).0, "not_found");

    let (status, moved) = api
        .send(
            Method::PUT,
            "/v1/aliases/v1-model@champion",
            json!({ "artifact_id": artifact.id, "moved_by": "ana", "reason": "best" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["alias"]["artifact_id"], artifact.id);
    assert_eq!(moved["moved"]["moved_by"], "ana");
    assert!(moved["moved"]["from_artifact_id"].is_null());

    let (status, alias) = api.get("/v1/aliases/v1-model%40champion").await;
    assert_eq!(status, StatusCode::OK, "{alias}");
    assert_eq!(alias["model_name"], "v1-model");
    assert_eq!(alias["alias"], "champion");
    assert_eq!(alias["artifact_id"], artifact.id);

    let (status, again) = api
        .send(
            Method::PUT,
            "/v1/aliases/v1-model@champion",
            json!({ "artifact_id": artifact.id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(again["moved"].is_null());

    // Well formed, but the artifact does not fit the alias: a conflict.
    let (status, body) = api
        .send(
            Method::PUT,
            "/v1/aliases/other-model@champion",
            json!({ "artifact_id": artifact.id }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("artifact_id"));

    let (status, body) = api
        .send(
            Method::PUT,
            "/v1/aliases/v1-model@champion",
            json!({ "artifact_id": 999_999 }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = api.get("/v1/aliases/no-at-sign").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("alias"));
}

#[tokio::test]
async fn frameworks_are_compared_over_completed_runs() {
    let api = seeded_runs().await;
    let (status, body) = api.get("/v1/analytics/frameworks").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<(String, i64)> = body
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            (
                r["framework"].as_str().unwrap().to_owned(),
                r["runs"].as_i64().unwrap(),
            )
        })
        .collect();
    // Best mean accuracy first: tensorflow 0.96, xgboost 0.935, pytorch 0.80
    // (its running run does not count).
    assert_eq!(
        rows,
        [
            ("tensorflow".to_owned(), 1),
            ("xgboost".to_owned(), 2),
            ("pytorch".to_owned(), 1)
        ]
    );
    let xgb_mean = body[1]["avg_accuracy"].as_f64().unwrap();
    assert!((xgb_mean - 0.935).abs() < 1e-9, "{xgb_mean}");
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let api = setup_with(ApiConfig {
        body_limit: ByteSize::kib(1),
        ..ApiConfig::default()
    })
    .await;
    let (status, body) = api
        .post(
            "/v1/datasets",
            json!({ "name": "big", "description": "x".repeat(4096) }),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_of(&body).0, "payload_too_large");
    // Nothing was written.
    let (status, _) = api.get("/v1/datasets/big").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Under the limit is fine.
    let (status, body) = api
        .post(
            "/v1/datasets",
            json!({ "name": "small", "description": "x".repeat(100) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn unreadable_bodies_are_400_naming_the_problem() {
    let api = setup().await;
    let (status, body) = api
        .raw(Method::POST, "/v1/datasets", Some(b"{not json".to_vec()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).0, "invalid_input");

    let (status, body) = api.post("/v1/datasets", json!({ "nme": "typo" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, message, field) = error_of(&body);
    assert!(message.contains("nme"), "{message}");
    assert_eq!(field.as_deref(), Some("body"));

    let (status, body) = api
        .post("/v1/datasets", json!({ "name": "n", "total_rows": "many" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).1.contains("total_rows"), "{body}");

    let (status, body) = api.post("/v1/datasets", json!({ "name": " " })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_of(&body).2.as_deref(), Some("name"));
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_in_the_same_shape() {
    let api = setup().await;
    let (status, body) = api.get("/v2/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (kind, message, _) = error_of(&body);
    assert_eq!(kind, "not_found");
    assert!(message.contains("/v2/nothing"), "{message}");

    let (status, body) = api.raw(Method::DELETE, "/v1/datasets", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_of(&body).0, "method_not_allowed");
}

#[tokio::test]
async fn request_over_the_timeout_is_503() {
    let api = setup_with(ApiConfig {
        request_timeout: Duration::from_millis(200),
        ..ApiConfig::default()
    })
    .await;
    // An open write transaction holds SQLite's write lock, so the API's
    // insert waits (up to the busy timeout, far beyond 200 ms).
    let txn = api.engines.relational.begin().await.expect("begin");
    registry::create_dataset(
        &txn,
        NewDataset {
            name: "held".into(),
            ..Default::default()
        },
    )
    .await
    .expect("insert in the open transaction");
    let (status, body) = api.post("/v1/datasets", json!({ "name": "blocked" })).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_of(&body).0, "timeout");
    txn.rollback().await.expect("rollback");
    // Nothing of the timed-out request was written.
    let (status, _) = api.get("/v1/datasets/blocked").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A request to `path` with every `{param}` filled in, for the route checks.
fn concrete(path: &str) -> String {
    path.replace("{name}", "some-model@alias")
        .replace("{model_id}", "some-model")
        .replace("{file}", "app.js")
}

#[tokio::test]
async fn openapi_document_and_router_list_the_same_routes() {
    let api = setup().await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = api::routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_owned()))
        .collect();
    assert_eq!(documented, served);

    // Every documented route reaches a handler: whatever it answers, it is
    // not the router's own 404 or 405.
    for (method, path) in &documented {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let uri = concrete(path);
        let body = (method != Method::GET).then(|| b"{}".to_vec());
        let (status, answer) = api.raw(method.clone(), &uri, body).await;
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if status == StatusCode::NOT_FOUND {
            let (_, message, _) = error_of(&answer);
            assert!(
                !message.starts_with("no route"),
                "{method} {uri} is documented but not routed"
            );
        }
    }
    // Every error response documented refers to the shared error schema.
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

/// Reads one HTTP/1.1 answer to `GET path` from `address`.
fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serve_binds_port_zero_answers_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The defaults file sets api.listen; --listen must override it.
    std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml"),
        dir.path().join("config/default.toml"),
    )
    .expect("copy default.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STRATA_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .current_dir(dir.path())
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strata serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut address = None;
    let mut seen = String::new();
    let mut line = String::new();
    while address.is_none() {
        line.clear();
        if stderr.read_line(&mut line).expect("read stderr") == 0 {
            let _ = child.kill();
            panic!("strata serve exited before listening: {seen}");
        }
        seen.push_str(&line);
        address = line
            .trim()
            .strip_prefix("strata: listening on http://")
            .map(str::to_owned);
    }
    let address = address.unwrap();
    assert!(!address.ends_with(":0"), "{address}");

    let (status, body) = http_get(&address, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""status":"ok""#), "{body}");
    let (status, body) = http_get(
        &address,
        "/v1/runs?filter=framework%20IN%20('pytorch')%20OR%20accuracy%3E0.95",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""runs":[]"#), "{body}");
    let (status, body) = http_get(&address, "/v1/runs?filter=accuracy%20%3E");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at column"), "{body}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("read stderr");
    assert_eq!(status.code(), Some(0), "{seen}{rest}");
    assert!(rest.contains("strata: stopped"), "{rest}");
}

// ------------------------------------------------------------ /v1/models

/// Two runs and their configs: `fraud-v1` (pytorch, 0.98) and `rec-v1`
/// (xgboost, 0.91), with the model-config collection set up as serve does.
async fn with_models() -> Api {
    let api = setup().await;
    api.dataset("fraud-train-v1").await;
    api.run("fraud-train-v1", "fraud-v1", "pytorch", Some(0.98))
        .await;
    api.run("fraud-train-v1", "rec-v1", "xgboost", Some(0.91))
        .await;
    for (id, framework, accuracy) in [("fraud-v1", "pytorch", 0.98), ("rec-v1", "xgboost", 0.91)] {
        let (status, body) = api
            .send(
                Method::PUT,
                &format!("/v1/models/{id}/config"),
                json!({
                    "model_name": format!("{id}-model"), "framework": framework,
                    "config": {"layers": [64, 32]}, "metrics": {"accuracy": accuracy},
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["model_id"], id, "model_id comes from the path");
    }
    api
}

#[tokio::test]
async fn model_configs_are_put_fetched_patched_and_listed() {
    let api = with_models().await;
    let (status, config) = api.get("/v1/models/fraud-v1/config").await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["config"]["layers"], json!([64, 32]));

    let (status, patched) = api
        .send(
            Method::PATCH,
            "/v1/models/fraud-v1/config",
            json!({"metrics": {"f1": 0.95}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["metrics"]["f1"], 0.95);
    assert_eq!(patched["metrics"]["accuracy"], 0.98, "other metrics stay");

    let (_, by_framework) = api.get("/v1/models?framework=xgboost").await;
    let ids: Vec<&str> = by_framework
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["model_id"].as_str())
        .collect();
    assert_eq!(ids, ["rec-v1"]);

    let (_, accurate) = api.get("/v1/models?min_accuracy=0.9").await;
    let ids: Vec<&str> = accurate
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["model_id"].as_str())
        .collect();
    assert_eq!(ids, ["fraud-v1", "rec-v1"], "best first");
    let (_, both) = api
        .get("/v1/models?min_accuracy=0.95&framework=xgboost")
        .await;
    assert_eq!(both, json!([]));
}

#[tokio::test]
async fn model_info_gathers_every_engine() {
    let api = with_models().await;
    let (status, info) = api.get("/v1/models/fraud-v1").await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["run"]["model_id"], "fraud-v1");
    assert_eq!(info["dataset"]["name"], "fraud-train-v1");
    assert_eq!(info["config"]["framework"], "pytorch");
    assert!(info["counters"].is_object(), "{info}");

    let (status, body) = api.get("/v1/models/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["kind"], "not_found");
    let (status, _) = api.get("/v1/models/nope/config").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn model_config_input_is_only_ever_a_value() {
    let api = with_models().await;
    // An operator-looking string is stored and found as itself.
    let (status, body) = api
        .send(
            Method::PUT,
            "/v1/models/odd/config",
            json!({"model_name": "{\"$where\": \"1\"}", "framework": "{\"$gt\": \"\"}"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, found) = api
        .get("/v1/models?framework=%7B%22%24gt%22%3A%20%22%22%7D")
        .await;
    let ids: Vec<&str> = found
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["model_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["odd"],
        "matched as a plain string, not as an operator"
    );

    // A `$` key, a schema failure, bad metric names, metrics that are not
    // numbers, a config that is not an object: 400.
    let cases = [
        (
            Method::PUT,
            json!({"model_name": "m", "framework": "f", "$where": "1"}),
        ),
        (
            Method::PUT,
            json!({"model_name": "m", "framework": "f", "deep": {"a.b": 1}}),
        ),
        (Method::PUT, json!({"model_name": "m"})),
        (
            Method::PUT,
            json!({"model_name": "m", "framework": "f", "metrics": {"f1": "high"}}),
        ),
        (
            Method::PUT,
            json!({"model_name": "m", "framework": "f", "config": [1, 2]}),
        ),
        (Method::PATCH, json!({"metrics": {"a.b": 1.0}})),
        (Method::PATCH, json!({"metrics": {"$inc": 1.0}})),
        (Method::PATCH, json!({"metrics": {}})),
    ];
    for (method, body) in cases {
        let (status, answer) = api
            .send(method.clone(), "/v1/models/fraud-v1/config", body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {body}: {answer}");
    }
    // Another model's id in the body is well formed but names another
    // document: a conflict.
    let (status, answer) = api
        .send(
            Method::PUT,
            "/v1/models/fraud-v1/config",
            json!({"model_id": "other", "model_name": "m", "framework": "f"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(error_of(&answer).2.as_deref(), Some("model_id"));
    let (_, config) = api.get("/v1/models/fraud-v1/config").await;
    assert_eq!(config["framework"], "pytorch", "nothing was changed");
}

// ------------------------------------------------------- ids and names

/// Model ids that do not match the pattern, as they go into a URL path:
/// a NUL byte, too long, a leading dot, `..`, a space, a slash-free but
/// non-ASCII id.
fn bad_path_ids() -> Vec<(String, String)> {
    [
        ("a%00b".to_owned(), "a\u{0}b".to_owned()),
        ("a".repeat(256), "a".repeat(256)),
        (".hidden".to_owned(), ".hidden".to_owned()),
        ("-x".to_owned(), "-x".to_owned()),
        ("a%20b".to_owned(), "a b".to_owned()),
        ("caf%C3%A9".to_owned(), "café".to_owned()),
        ("tab%09".to_owned(), "tab\t".to_owned()),
    ]
    .into()
}

/// Asserts a 400 `invalid_input` naming `field` and the id pattern.
fn assert_refused_id(status: StatusCode, body: &Value, field: &str, what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    let (kind, message, named) = error_of(body);
    assert_eq!(kind, "invalid_input", "{what}: {body}");
    assert_eq!(named.as_deref(), Some(field), "{what}: {body}");
    assert!(
        message.contains(strata::platform::names::MODEL_ID_PATTERN),
        "{what}: {message}"
    );
}

/// Nothing of any refused request was stored, in any engine.
async fn assert_nothing_stored(api: &Api) {
    let (_, runs) = api.get("/v1/runs").await;
    assert_eq!(runs["runs"], json!([]), "no run row");
    let (_, configs) = api.get("/v1/models").await;
    assert_eq!(configs, json!([]), "no config document");
    let (_, sagas) = api.get("/v1/sagas").await;
    assert_eq!(sagas, json!([]), "no saga");
    let counted = api
        .platform
        .models()
        .registrations("pytorch")
        .await
        .expect("read the counter");
    assert_eq!(counted, 0, "no registration counted");
}

#[tokio::test]
async fn model_ids_outside_the_pattern_are_400_on_every_route_and_nothing_is_stored() {
    let api = setup().await;
    api.dataset("d").await;
    for (in_path, raw) in bad_path_ids() {
        for (method, path, body) in [
            (Method::GET, format!("/v1/runs/{in_path}"), None),
            (Method::DELETE, format!("/v1/runs/{in_path}"), None),
            (
                Method::POST,
                format!("/v1/runs/{in_path}/complete"),
                Some(json!({ "accuracy": 0.5 })),
            ),
            (Method::GET, format!("/v1/models/{in_path}"), None),
            (Method::GET, format!("/v1/models/{in_path}/config"), None),
            (
                Method::PUT,
                format!("/v1/models/{in_path}/config"),
                Some(json!({ "model_name": "m", "framework": "pytorch" })),
            ),
            (
                Method::PATCH,
                format!("/v1/models/{in_path}/config"),
                Some(json!({ "metrics": { "f1": 0.5 } })),
            ),
        ] {
            let what = format!("{method} {path}");
            let (status, answer) = api
                .raw(method, &path, body.map(|b| b.to_string().into_bytes()))
                .await;
            assert_refused_id(status, &answer, "model_id", &what);
        }
        let (status, answer) = api.get(&format!("/v1/sagas?subject={in_path}")).await;
        assert_refused_id(status, &answer, "subject", &format!("subject {raw:?}"));

        let (status, answer) = api
            .post(
                "/v1/runs",
                json!({ "dataset": "d", "model_id": raw, "model_name": "m",
                        "framework": "pytorch", "config": { "epochs": 3 } }),
            )
            .await;
        assert_refused_id(status, &answer, "model_id", &format!("POST {raw:?}"));
    }
    // Empty cannot be a path segment, but can be a body's value or a query.
    let (status, answer) = api
        .post(
            "/v1/runs",
            json!({ "dataset": "d", "model_id": "", "model_name": "m", "framework": "pytorch" }),
        )
        .await;
    assert_refused_id(status, &answer, "model_id", "POST empty");
    let (status, answer) = api.get("/v1/sagas?subject=").await;
    assert_refused_id(status, &answer, "subject", "empty subject");
    // The config's own `model_id` is held to the pattern too.
    let (status, answer) = api
        .send(
            Method::PUT,
            "/v1/models/ok-1/config",
            json!({ "model_id": "bad id", "model_name": "m", "framework": "pytorch" }),
        )
        .await;
    assert_refused_id(status, &answer, "model_id", "PUT body model_id");
    assert_nothing_stored(&api).await;

    // The longest id, and the ids the seed and the demo use, pass.
    for id in [
        "a".repeat(255),
        "synthetic-000001".to_owned(),
        "demo-fraud-detector-v3".to_owned(),
        "demo-saga-sql-run".to_owned(),
        "v1.2_final-B".to_owned(),
    ] {
        let (status, body) = api
            .post(
                "/v1/runs",
                json!({ "dataset": "d", "model_id": id, "model_name": "m", "framework": "f" }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{id}: {body}");
        assert_eq!(api.get(&format!("/v1/runs/{id}")).await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn control_characters_in_names_are_400_naming_the_field() {
    let api = setup().await;
    api.dataset("d").await;
    for bad in ["a\u{0}b", "line\nbreak", "bell\u{7}", "\u{9b}csi"] {
        for (field, body) in [
            ("name", json!({ "name": bad })),
            ("description", json!({ "name": "ok", "description": bad })),
            ("created_by", json!({ "name": "ok", "created_by": bad })),
        ] {
            let (status, answer) = api.post("/v1/datasets", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {bad:?}: {answer}");
            assert_eq!(error_of(&answer).2.as_deref(), Some(field), "{answer}");
        }
        for (field, body) in [
            (
                "model_name",
                json!({ "dataset": "d", "model_id": "m1", "model_name": bad, "framework": "f" }),
            ),
            (
                "framework",
                json!({ "dataset": "d", "model_id": "m1", "model_name": "m", "framework": bad }),
            ),
            (
                "tags",
                json!({ "dataset": "d", "model_id": "m1", "model_name": "m", "framework": "f",
                        "tags": { "team": bad } }),
            ),
            (
                "dataset",
                json!({ "dataset": bad, "model_id": "m1", "model_name": "m", "framework": "f" }),
            ),
            (
                "config",
                json!({ "dataset": "d", "model_id": "m1", "model_name": "m", "framework": "f",
                        "config": { bad: 1 } }),
            ),
        ] {
            let (status, answer) = api.post("/v1/runs", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {bad:?}: {answer}");
            assert_eq!(error_of(&answer).2.as_deref(), Some(field), "{answer}");
        }
        for (field, body) in [
            ("model_name", json!({ "model_name": bad, "framework": "f" })),
            ("framework", json!({ "model_name": "m", "framework": bad })),
            (
                "body",
                json!({ "model_name": "m", "framework": "f", bad: 1 }),
            ),
        ] {
            let (status, answer) = api.send(Method::PUT, "/v1/models/m1/config", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {bad:?}: {answer}");
            assert_eq!(error_of(&answer).2.as_deref(), Some(field), "{answer}");
        }
        for (field, body) in [
            ("moved_by", json!({ "artifact_id": 1, "moved_by": bad })),
            ("reason", json!({ "artifact_id": 1, "reason": bad })),
        ] {
            let (status, answer) = api.send(Method::PUT, "/v1/aliases/m@champion", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{field} {bad:?}: {answer}");
            assert_eq!(error_of(&answer).2.as_deref(), Some(field), "{answer}");
        }
    }
    // In paths and queries too.
    for (uri, field) in [
        ("/v1/datasets/a%00b", "name"),
        ("/v1/datasets/a%0Ab/stats", "name"),
        ("/v1/aliases/m%00@champion", "model_name"),
        ("/v1/aliases/m@champ%07ion", "alias"),
        ("/v1/models?framework=py%00torch", "framework"),
        ("/v1/datasets?page_token=a%00", "page_token"),
        ("/v1/runs?filter=model_id%20%3D%20%27a%00%27", "filter"),
    ] {
        let (status, answer) = api.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {answer}");
        assert_eq!(
            error_of(&answer).2.as_deref(),
            Some(field),
            "{uri}: {answer}"
        );
    }
    // Nothing was stored but the dataset `d`.
    let (_, page) = api.get("/v1/datasets").await;
    assert_eq!(page["datasets"].as_array().map(Vec::len), Some(1), "{page}");
    assert_nothing_stored(&api).await;
    // Blank names are refused; any other text is a name.
    let (status, answer) = api
        .post("/v1/datasets", json!({ "name": "\u{3000} " }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = api
        .post(
            "/v1/datasets",
            json!({ "name": "données d'entraînement ✓" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// Follows `$ref`s into `components.schemas`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn types_of(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Walks a request schema and lists what lacks a limit: strings without
/// `maxLength` (or `enum`), objects with fixed properties that do not say
/// what other properties may be, maps whose keys have no pattern.
fn unlimited(
    doc: &Value,
    schema: &Value,
    at: &str,
    seen: &mut BTreeSet<String>,
    out: &mut Vec<String>,
) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        // ConfigValue's strings are free-form values of a client's config,
        // bounded only by api.body_limit; its keys are held to a pattern.
        if !seen.insert(reference.to_owned()) {
            return;
        }
    }
    let schema = resolve(doc, schema);
    for key in ["anyOf", "oneOf", "allOf"] {
        for (i, part) in schema[key].as_array().into_iter().flatten().enumerate() {
            unlimited(doc, part, &format!("{at}/{key}/{i}"), seen, out);
        }
    }
    let types = types_of(schema);
    let free_form_value = types.len() >= 4;
    if types.contains(&"string")
        && !free_form_value
        && schema.get("maxLength").is_none()
        && schema.get("enum").is_none()
    {
        out.push(format!("{at}: a string without maxLength"));
    }
    if types.contains(&"object") {
        if let Some(properties) = schema["properties"].as_object() {
            if schema.get("additionalProperties").is_none() {
                out.push(format!("{at}: says nothing of other properties"));
            }
            for (name, property) in properties {
                unlimited(doc, property, &format!("{at}.{name}"), seen, out);
            }
        }
        match &schema["additionalProperties"] {
            Value::Object(_) => {
                if schema["propertyNames"]["pattern"].as_str().is_none() {
                    out.push(format!("{at}: map keys without a pattern"));
                }
                unlimited(
                    doc,
                    &schema["additionalProperties"],
                    &format!("{at}.*"),
                    seen,
                    out,
                );
            }
            Value::Bool(false) => {}
            Value::Bool(true) => out.push(format!("{at}: any property allowed")),
            _ => {
                if schema["properties"].is_null() {
                    out.push(format!("{at}: an object without properties or limits"));
                }
            }
        }
    }
    if types.contains(&"array") {
        unlimited(doc, &schema["items"], &format!("{at}[]"), seen, out);
    }
    if types.contains(&"integer")
        && schema.get("minimum").is_none()
        && schema.get("format").is_none()
    {
        out.push(format!("{at}: an integer without bounds"));
    }
}

#[tokio::test]
async fn openapi_document_states_every_limit() {
    let api = setup().await;
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let id_pattern = strata::platform::names::MODEL_ID_PATTERN;
    let mut missing = Vec::new();
    let mut model_ids = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let here = format!("{} {path}", method.to_uppercase());
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().expect("parameter name");
                // A path parameter is in the path; nothing else is.
                assert_eq!(
                    parameter["in"] == "path",
                    path.contains(&format!("{{{name}}}")),
                    "{here}: parameter {name} is in {}",
                    parameter["in"]
                );
                let schema = resolve(&doc, &parameter["schema"]);
                let at = format!("{here} parameter {name}");
                let mut seen = BTreeSet::new();
                unlimited(&doc, &parameter["schema"], &at, &mut seen, &mut missing);
                if types_of(schema).contains(&"string") && schema.get("pattern").is_none() {
                    missing.push(format!("{at}: a string without a pattern"));
                }
                if ["model_id", "subject"].contains(&name) {
                    model_ids += 1;
                    // A model id, or (predictions) a model id or an alias:
                    // then one of the choices is the model id's schema.
                    let id_schema = match schema["anyOf"].as_array() {
                        Some(choices) => choices
                            .iter()
                            .find(|c| c["pattern"] == id_pattern)
                            .unwrap_or_else(|| panic!("{at}: no choice is a model id")),
                        None => schema,
                    };
                    assert_eq!(id_schema["pattern"], id_pattern, "{at}");
                    assert_eq!(id_schema["maxLength"], 255, "{at}");
                }
            }
            if let Some(body) = operation.get("requestBody") {
                let schema = &body["content"]["application/json"]["schema"];
                let resolved = resolve(&doc, schema);
                let mut seen = BTreeSet::new();
                unlimited(
                    &doc,
                    schema,
                    &format!("{here} body"),
                    &mut seen,
                    &mut missing,
                );
                if let Some(id) = resolved["properties"].get("model_id") {
                    model_ids += 1;
                    assert_eq!(resolve(&doc, id)["pattern"], id_pattern, "{here}");
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "limits missing from the document:\n{}",
        missing.join("\n")
    );
    // Ten routes take a model id in the path (one of them a model id or
    // an alias), one in a query, two in a body.
    assert_eq!(model_ids, 13);

    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["ModelId"]["description"]
            .as_str()
            .is_some_and(|d| d.contains(id_pattern)),
        "the pattern is documented"
    );
    let deny_unknown = [
        "CreateDataset",
        "CreateRun",
        "CompleteRun",
        "MoveAlias",
        "MetricsPatch",
    ];
    for name in deny_unknown {
        assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
    }
    let create_run: BTreeSet<&str> = schemas["CreateRun"]["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        create_run,
        ["dataset", "framework", "model_id", "model_name"].into()
    );
    let complete = &schemas["CompleteRun"]["properties"];
    assert_eq!(complete["accuracy"]["minimum"], 0);
    assert_eq!(complete["accuracy"]["maximum"], 1);
    assert_eq!(complete["training_time_seconds"]["minimum"], 0);
    assert_eq!(
        complete["status"]["enum"],
        json!(["completed", "failed", null])
    );
    for (path, name, minimum, maximum) in [
        ("/v1/runs", "page_size", 1, 1000),
        ("/v1/datasets", "page_size", 1, 1000),
        ("/v1/sagas", "limit", 1, 100),
    ] {
        let parameter = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{path} {name}"));
        assert_eq!(parameter["schema"]["minimum"], minimum, "{path} {name}");
        assert_eq!(parameter["schema"]["maximum"], maximum, "{path} {name}");
    }
}

/// The walk above fails on a field without limits: fed a schema with one,
/// it names it.
#[test]
fn the_limit_walk_names_a_field_without_limits() {
    let doc = json!({ "components": { "schemas": {} } });
    let schema = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "bounded": { "type": "string", "maxLength": 10, "pattern": "^a$" },
            "unbounded": { "type": ["string", "null"] },
            "count": { "type": "integer" },
        },
    });
    let mut missing = Vec::new();
    unlimited(&doc, &schema, "body", &mut BTreeSet::new(), &mut missing);
    missing.sort();
    assert_eq!(
        missing,
        [
            "body.count: an integer without bounds",
            "body.unbounded: a string without maxLength"
        ]
    );
}
