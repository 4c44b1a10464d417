//! Online serving over HTTP, through the router in process on the embedded
//! profile: features, predictions, the leaderboard, rate limits, and the
//! headers that say which cache tier answered.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use strata::api;
use strata::config::{ApiConfig, Config, RelationalConfig};
use strata::engines::Engines;
use strata::platform::Platform;
use strata::serving::ratelimit::{Limit, RateLimitsConfig};
use strata::serving::{Serving, ServingConfig};
use tower::ServiceExt;

struct Api {
    router: Router,
    _dir: tempfile::TempDir,
}

async fn setup(serving: ServingConfig) -> Api {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        relational: RelationalConfig {
            max_connections: 3,
            ..Default::default()
        },
        serving,
        ..Default::default()
    };
    let engines = Engines::open(&config).await.expect("engines");
    let platform = Platform::with_engines(engines, config.sagas)
        .await
        .expect("platform");
    let serving = Serving::open(&platform, &config.serving)
        .await
        .expect("serving");
    let pipelines = strata::pipelines::Pipelines::open(&platform, &config.pipelines)
        .await
        .expect("pipelines");
    Api {
        router: {
            let scenario = strata::analytics::scenario::Scenario::open(
                &platform,
                &pipelines,
                &config.analytics,
            )
            .expect("scenario");
            api::router(
                platform,
                serving,
                pipelines,
                scenario,
                &ApiConfig::default(),
            )
        },
        _dir: dir,
    }
}

impl Api {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn ok(&self, method: Method, uri: &str, body: Option<Value>) -> Value {
        let (status, body, _) = self.call(method.clone(), uri, body).await;
        assert!(status.is_success(), "{method} {uri}: {status} {body}");
        body
    }
}

fn view() -> Value {
    json!({"entity": "user", "ttl_seconds": 3600, "description": "activity",
        "features": [{"name": "sessions_7d", "type": "int"}, {"name": "premium", "type": "bool"},
                     {"name": "country", "type": "string"}]})
}

#[tokio::test]
async fn features_round_trip_with_their_freshness() {
    let api = setup(ServingConfig::default()).await;
    let declared = api
        .ok(Method::PUT, "/v1/feature-views/user_activity", Some(view()))
        .await;
    assert_eq!(declared["ttl_seconds"], 3600);
    let listed = api.ok(Method::GET, "/v1/feature-views", None).await;
    assert_eq!(listed["views"][0]["name"], "user_activity");

    let written = api
        .ok(
            Method::PUT,
            "/v1/features/user_activity/u1",
            Some(json!({"features": {"sessions_7d": 4, "premium": true}})),
        )
        .await;
    assert_eq!(written["written"], json!(["premium", "sessions_7d"]));
    let old = json!({"features": {"country": "FR"}, "event_time": "2020-01-01T00:00:00Z"});
    api.ok(Method::PUT, "/v1/features/user_activity/u1", Some(old))
        .await;
    let read = api
        .ok(Method::GET, "/v1/features/user_activity/u1", None)
        .await;
    assert_eq!(read["features"]["sessions_7d"]["value"], 4);
    assert_eq!(read["features"]["sessions_7d"]["status"], "fresh");
    assert_eq!(read["features"]["country"]["status"], "stale");
    let strict = api
        .ok(Method::GET, "/v1/features/user_activity/u1?max_age=0", None)
        .await;
    assert_eq!(strict["features"]["premium"]["status"], "stale");
    let missing = api
        .ok(Method::GET, "/v1/features/user_activity/nobody", None)
        .await;
    assert_eq!(missing["features"]["premium"]["status"], "missing");

    // A wrong type: 400 naming the feature; nothing of the write is kept.
    let (status, body, _) = api
        .call(
            Method::PUT,
            "/v1/features/user_activity/u2",
            Some(json!({"features": {"sessions_7d": 1, "premium": "yes"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "premium");
    let read = api
        .ok(Method::GET, "/v1/features/user_activity/u2", None)
        .await;
    assert_eq!(read["features"]["sessions_7d"]["status"], "missing");

    let batch = api
        .ok(
            Method::POST,
            "/v1/features:batch",
            Some(json!({"items": [
            {"view": "user_activity", "entity": "u1"}, {"view": "ghost", "entity": "u1"}]})),
        )
        .await;
    assert_eq!(batch["results"][0]["features"]["sessions_7d"]["value"], 4);
    assert_eq!(batch["results"][1]["error"]["kind"], "not_found");
    let (status, _, _) = api.call(Method::GET, "/v1/features/ghost/u1", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body, _) = api
        .call(Method::GET, "/v1/features/user_activity/bad%20id", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn a_prediction_says_whether_it_was_cached() {
    let api = setup(ServingConfig::default()).await;
    api.ok(Method::PUT, "/v1/feature-views/user_activity", Some(view()))
        .await;
    api.ok(
        Method::PUT,
        "/v1/models/churn-1/config",
        Some(json!({"model_name": "churn", "framework": "sklearn",
        "scorer": {"type": "linear", "version": 1, "view": "user_activity", "bias": 0.5,
                   "weights": {"sessions_7d": 2.0, "premium": -1.0}}})),
    )
    .await;
    api.ok(
        Method::PUT,
        "/v1/features/user_activity/u1",
        Some(json!({"features": {"sessions_7d": 3, "premium": true}})),
    )
    .await;
    let predict = || {
        api.call(
            Method::POST,
            "/v1/models/churn-1/predict",
            Some(json!({"entity": "u1"})),
        )
    };
    let (status, first, headers) = predict().await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        (first["score"].clone(), first["cached"].clone()),
        (json!(5.5), json!(false))
    );
    assert_eq!(headers["x-strata-cache"], "loaded");
    let (_, second, headers) = predict().await;
    assert_eq!(second["cached"], true);
    assert_eq!(headers["x-strata-cache"], "l1");
    api.ok(
        Method::PUT,
        "/v1/features/user_activity/u1",
        Some(json!({"features": {"sessions_7d": 3}})),
    )
    .await;
    let (_, third, _) = predict().await;
    assert_eq!(third["cached"], false);
    // An explicit vector; neither or both inputs is 400.
    let explicit = api
        .ok(
            Method::POST,
            "/v1/models/churn-1/predict",
            Some(json!({"features": {"sessions_7d": 1, "premium": false}})),
        )
        .await;
    assert_eq!(explicit["score"], 2.5);
    let (status, _, _) = api
        .call(Method::POST, "/v1/models/churn-1/predict", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Missing features, refused (409) or imputed.
    let (status, body, _) = api
        .call(
            Method::POST,
            "/v1/models/churn-1/predict",
            Some(json!({"entity": "nobody"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let imputed = api
        .ok(
            Method::POST,
            "/v1/models/churn-1/predict",
            Some(json!({"entity": "nobody", "on_missing": "impute"})),
        )
        .await;
    assert_eq!(imputed["imputed"], json!(["premium", "sessions_7d"]));
    assert_eq!(imputed["score"], 0.5);
    // Counted in the model's info... which needs a run; the config alone
    // shows in /config with its scorer.
    let config = api.ok(Method::GET, "/v1/models/churn-1/config", None).await;
    assert_eq!(config["scorer"]["version"], 1);
}

#[tokio::test]
async fn the_leaderboard_ranks_completed_runs() {
    let api = setup(ServingConfig::default()).await;
    api.ok(Method::POST, "/v1/datasets", Some(json!({"name": "d"})))
        .await;
    for (id, accuracy) in [("m1", 0.8), ("m2", 0.95), ("m3", 0.9)] {
        api.ok(
            Method::POST,
            "/v1/runs",
            Some(json!({"dataset": "d", "model_id": id, "model_name": id, "framework": "xgboost"})),
        )
        .await;
        api.ok(
            Method::POST,
            &format!("/v1/runs/{id}/complete"),
            Some(json!({"accuracy": accuracy})),
        )
        .await;
    }
    let board = api.ok(Method::GET, "/v1/leaderboard?top=2", None).await;
    let ids: Vec<&str> = board["leaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["m2", "m3"]);
    let standing = api
        .ok(Method::GET, "/v1/leaderboard/m1?around=1", None)
        .await;
    assert_eq!(standing["standing"]["rank"], 3);
    assert_eq!(standing["around"].as_array().unwrap().len(), 2);
    let (status, _, _) = api.call(Method::GET, "/v1/leaderboard?top=0", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A removed model leaves the board.
    let (status, _, _) = api.call(Method::DELETE, "/v1/runs/m2", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let board = api.ok(Method::GET, "/v1/leaderboard", None).await;
    assert_eq!(board["leaders"][0]["model_id"], "m3");
    // The model info now reads through the cache.
    let (_, _, headers) = api.call(Method::GET, "/v1/models/m1", None).await;
    let (_, _, again) = api.call(Method::GET, "/v1/models/m1", None).await;
    assert_ne!(headers["x-strata-cache"], again["x-strata-cache"]);
    assert_eq!(again["x-strata-cache"], "run=l1,config=l1");
}

#[tokio::test]
async fn a_client_past_its_limit_gets_429_with_retry_after() {
    let limits = ServingConfig {
        rate_limits: RateLimitsConfig {
            read: Some(Limit {
                requests: 3,
                per: std::time::Duration::from_secs(60),
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api = setup(limits).await;
    for remaining in ["2", "1", "0"] {
        let (status, _, headers) = api.call(Method::GET, "/v1/feature-views", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["ratelimit-remaining"], remaining);
        assert_eq!(headers["ratelimit-limit"], "3");
    }
    let (status, body, headers) = api.call(Method::GET, "/v1/leaderboard", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["kind"], "rate_limited");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Another client (a token of its own), writes and probes go through.
    let request = Request::get("/v1/feature-views")
        .header("authorization", "Bearer other")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        api.router.clone().oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
    let (status, _, _) = api
        .call(Method::PUT, "/v1/feature-views/v", Some(view()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = api.call(Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}
