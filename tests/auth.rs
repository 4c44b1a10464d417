//! Who may call the API (`strata::api::auth`, `strata token`): bearer
//! tokens and their scopes, the loopback rule without tokens, the `Host`
//! check, CORS and TLS. Router-level cases run in process on the embedded
//! engines; the rest start the real `strata` binary.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use strata::api;
use strata::config::{ApiConfig, Config, RelationalConfig};
use strata::platform::Platform;
use strata::platform::tokens::Scope;
use tower::ServiceExt;

use common::serve::{Stack, call, call_with, eventually, parse_answer};

/// Beyond the 5 s cache of verifications, with room for a busy machine.
const REVOCATION_LIMIT: Duration = Duration::from_secs(20);

struct Api {
    router: Router,
    platform: Platform,
    _dir: tempfile::TempDir,
}

async fn setup(api_config: ApiConfig) -> Api {
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
    let engines = strata::engines::Engines::open(&config)
        .await
        .expect("open engines");
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
        router: api::router(platform.clone(), serving, pipelines, scenario, &api_config),
        platform,
        _dir: dir,
    }
}

/// An answer: status, headers, body as text.
struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn kind(&self) -> String {
        self.json()["error"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Api {
    async fn ask(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = match body {
            Some(value) => {
                request = request.header("content-type", "application/json");
                Body::from(value.to_string())
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
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn as_bearer(
        &self,
        method: Method,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        let auth = format!("Bearer {token}");
        self.ask(method, uri, &[("authorization", &auth)], body)
            .await
    }

    async fn token(&self, scope: Scope) -> String {
        self.platform
            .tokens()
            .create(scope, Some("test"))
            .await
            .expect("create a token")
            .token
    }
}

#[tokio::test]
async fn without_any_token_requests_need_none() {
    let api = setup(ApiConfig::default()).await;
    let reply = api
        .ask(
            Method::POST,
            "/v1/datasets",
            &[],
            Some(json!({"name": "open"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = api.ask(Method::GET, "/v1/datasets", &[], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // A revoked token is as good as none.
    let id = {
        let new = api
            .platform
            .tokens()
            .create(Scope::Read, None)
            .await
            .expect("create");
        new.info.id
    };
    let reply = api.ask(Method::GET, "/v1/datasets", &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    api.platform.tokens().revoke(id).await.expect("revoke");
    let reply = api.ask(Method::GET, "/v1/datasets", &[], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn scopes_decide_once_a_token_exists() {
    let api = setup(ApiConfig::default()).await;
    let read = api.token(Scope::Read).await;
    let write = api.token(Scope::Write).await;
    let admin = api.token(Scope::Admin).await;
    let dataset = || Some(json!({"name": "scoped"}));

    let reply = api.ask(Method::POST, "/v1/datasets", &[], dataset()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.kind(), "unauthorized");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{:?}",
        reply.headers
    );
    let reply = api
        .as_bearer(Method::POST, "/v1/datasets", &read, dataset())
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.kind(), "forbidden");
    let reply = api
        .as_bearer(Method::POST, "/v1/datasets", &write, dataset())
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    for token in [&read, &write, &admin] {
        let reply = api
            .as_bearer(Method::GET, "/v1/datasets/scoped", token, None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    // Unauthenticated reads are refused too; the probes are not.
    let reply = api.ask(Method::GET, "/v1/datasets", &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let reply = api.ask(Method::GET, "/openapi.json", &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    for probe in ["/healthz", "/readyz"] {
        let reply = api.ask(Method::GET, probe, &[], None).await;
        assert_eq!(reply.status, StatusCode::OK, "{probe}: {}", reply.body);
    }
    // The POSTs that only read need `read`.
    let reply = api
        .as_bearer(
            Method::POST,
            "/v1/features:batch",
            &read,
            Some(json!({"view": "nope", "entities": ["a"]})),
        )
        .await;
    assert!(
        ![401, 403].contains(&reply.status.as_u16()),
        "batch with a read token: {} {}",
        reply.status,
        reply.body
    );
    let reply = api
        .as_bearer(
            Method::POST,
            "/v1/models/fd-1/predict",
            &read,
            Some(json!({"features": {"x": 1.0}})),
        )
        .await;
    assert!(
        ![401, 403].contains(&reply.status.as_u16()),
        "predict with a read token: {} {}",
        reply.status,
        reply.body
    );
    // Replaying and purging dead letters need `admin`.
    for (path, body) in [
        ("/v1/dead-letters/replay", json!({"select": {"all": true}})),
        (
            "/v1/dead-letters/purge",
            json!({"select": {"all": true}, "max": 1}),
        ),
    ] {
        let reply = api
            .as_bearer(Method::POST, path, &write, Some(body.clone()))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            reply.body
        );
        assert!(reply.body.contains("admin"), "{path}: {}", reply.body);
        let reply = api.as_bearer(Method::POST, path, &admin, Some(body)).await;
        assert!(
            ![401, 403].contains(&reply.status.as_u16()),
            "{path} with an admin token: {} {}",
            reply.status,
            reply.body
        );
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_without_being_echoed() {
    let api = setup(ApiConfig::default()).await;
    let good = api.token(Scope::Admin).await;
    // Well-formed but unknown, the good one altered, malformed, other schemes.
    let unknown = format!("strata_{}", "ab".repeat(32));
    let mut altered = good.clone();
    altered.pop();
    altered.push(if good.ends_with('0') { '1' } else { '0' });
    let malformed = "not-a-token-SECRETMARKER-42".to_owned();
    for token in [&unknown, &altered, &malformed] {
        let reply = api
            .as_bearer(Method::GET, "/v1/datasets", token, None)
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        assert_eq!(reply.kind(), "unauthorized");
        assert!(
            !reply.body.contains(token.as_str()),
            "echoed: {}",
            reply.body
        );
        let headers = format!("{:?}", reply.headers);
        assert!(!headers.contains(token.as_str()), "echoed: {headers}");
    }
    let basic = format!("Basic {good}");
    let reply = api
        .ask(
            Method::GET,
            "/v1/datasets",
            &[("authorization", &basic)],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert!(!reply.body.contains(&good), "echoed: {}", reply.body);
    // The scheme is case-insensitive.
    let lower = format!("bearer {good}");
    let reply = api
        .ask(
            Method::GET,
            "/v1/datasets",
            &[("authorization", &lower)],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn a_revoked_token_is_refused() {
    let api = setup(ApiConfig::default()).await;
    let keep = api.token(Scope::Read).await;
    let new = api
        .platform
        .tokens()
        .create(Scope::Write, Some("short-lived"))
        .await
        .expect("create");
    let reply = api
        .as_bearer(Method::GET, "/v1/datasets", &new.token, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let (info, revoked) = api
        .platform
        .tokens()
        .revoke(new.info.id)
        .await
        .expect("revoke");
    assert!(revoked && info.revoked_at.is_some());
    let (_, again) = api
        .platform
        .tokens()
        .revoke(new.info.id)
        .await
        .expect("revoke again");
    assert!(!again, "a second revocation changes nothing");
    // Revoked through the same process: refused at once.
    let reply = api
        .as_bearer(Method::GET, "/v1/datasets", &new.token, None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let reply = api
        .as_bearer(Method::GET, "/v1/datasets", &keep, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let missing = api
        .platform
        .tokens()
        .revoke(999_999)
        .await
        .expect_err("no such token");
    assert_eq!(missing.kind(), strata::ErrorKind::NotFound);
}

#[tokio::test]
async fn concurrent_creations_give_distinct_valid_tokens() {
    let api = Arc::new(setup(ApiConfig::default()).await);
    let mut tasks = Vec::new();
    for task in 0..8 {
        let api = Arc::clone(&api);
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for i in 0..5 {
                let scope = [Scope::Read, Scope::Write, Scope::Admin][(task + i) % 3];
                let new = api
                    .platform
                    .tokens()
                    .create(scope, Some(&format!("t{task}-{i}")))
                    .await
                    .expect("create concurrently");
                made.push((new.token, new.info.id, scope));
            }
            made
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    assert_eq!(all.len(), 40);
    let tokens: BTreeSet<&str> = all.iter().map(|(t, _, _)| t.as_str()).collect();
    let ids: BTreeSet<i64> = all.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(tokens.len(), 40, "tokens repeat");
    assert_eq!(ids.len(), 40, "ids repeat");
    for (token, id, scope) in &all {
        let principal = api
            .platform
            .tokens()
            .verify(token)
            .await
            .expect("verify")
            .expect("a valid token");
        assert_eq!((principal.id, principal.scope), (*id, *scope));
    }
    assert_eq!(api.platform.tokens().list().await.expect("list").len(), 40);
}

#[tokio::test]
async fn hosts_outside_the_allowed_names_are_misdirected() {
    let api = setup(ApiConfig::default()).await;
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:9", "LOCALHOST"] {
        let reply = api
            .ask(Method::GET, "/v1/datasets", &[("host", host)], None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.body);
    }
    for host in [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
    ] {
        let reply = api
            .ask(Method::GET, "/v1/datasets", &[("host", host)], None)
            .await;
        assert_eq!(
            reply.status,
            StatusCode::MISDIRECTED_REQUEST,
            "{host}: {}",
            reply.body
        );
        assert_eq!(reply.kind(), "misdirected_request");
        assert!(reply.body.contains("api.allowed_hosts"), "{}", reply.body);
    }
    // Probes are not checked.
    let reply = api
        .ask(Method::GET, "/healthz", &[("host", "10.1.2.3:8080")], None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let configured = setup(ApiConfig {
        allowed_hosts: vec!["strata.example".into()],
        ..ApiConfig::default()
    })
    .await;
    for (host, status) in [
        ("strata.example:443", StatusCode::OK),
        ("localhost", StatusCode::OK),
        ("other.example", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let reply = configured
            .ask(Method::GET, "/v1/datasets", &[("host", host)], None)
            .await;
        assert_eq!(reply.status, status, "{host}: {}", reply.body);
    }

    // Off loopback and unconfigured, nothing is checked (tokens guard it).
    let wide = setup(ApiConfig {
        listen: "0.0.0.0:8080".into(),
        allow_unauthenticated: true,
        ..ApiConfig::default()
    })
    .await;
    let reply = wide
        .ask(
            Method::GET,
            "/v1/datasets",
            &[("host", "anything.example")],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn off_loopback_requests_need_a_token_even_when_none_exists() {
    let api = setup(ApiConfig {
        listen: "0.0.0.0:8080".into(),
        ..ApiConfig::default()
    })
    .await;
    let reply = api.ask(Method::GET, "/v1/datasets", &[], None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    let reply = api.ask(Method::GET, "/healthz", &[], None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let origin = "https://app.example";
    let api = setup(ApiConfig::default()).await;
    let reply = api
        .ask(Method::GET, "/v1/datasets", &[("origin", origin)], None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply.header("access-control-allow-origin").is_none(),
        "{:?}",
        reply.headers
    );

    let api = setup(ApiConfig {
        cors_origins: vec![origin.into()],
        ..ApiConfig::default()
    })
    .await;
    let token = api.token(Scope::Read).await;
    let preflight = api
        .ask(
            Method::OPTIONS,
            "/v1/datasets",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
            None,
        )
        .await;
    assert!(preflight.status.is_success(), "{}", preflight.status);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(origin)
    );
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = preflight
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");

    let auth = format!("Bearer {token}");
    let reply = api
        .ask(
            Method::GET,
            "/v1/datasets",
            &[("origin", origin), ("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    // A refusal is readable by the allowed page too.
    let reply = api
        .ask(Method::GET, "/v1/datasets", &[("origin", origin)], None)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header("access-control-allow-origin"), Some(origin));
    // Another origin gets no CORS header.
    let reply = api
        .ask(
            Method::GET,
            "/v1/datasets",
            &[("origin", "https://evil.example"), ("authorization", &auth)],
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        reply.header("access-control-allow-origin").is_none(),
        "{:?}",
        reply.headers
    );
}

#[tokio::test]
async fn openapi_states_the_bearer_scheme_and_its_answers() {
    let api = setup(ApiConfig::default()).await;
    let doc = api
        .ask(Method::GET, "/openapi.json", &[], None)
        .await
        .json();
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["security"], json!([{"bearer": []}, {}]));
    let post = &doc["paths"]["/v1/datasets"]["post"]["responses"];
    for status in ["401", "403", "421"] {
        assert!(
            post.get(status).is_some(),
            "POST /v1/datasets lacks {status}"
        );
    }
    let healthz = &doc["paths"]["/healthz"]["get"];
    assert!(healthz["responses"].get("401").is_none());
    assert_eq!(healthz["security"], json!([{}]));
}

/// `strata --json token ...` on `stack`, which must succeed.
async fn token_cli(stack: &Stack, args: &[&str]) -> Value {
    let mut all = vec!["token"];
    all.extend_from_slice(args);
    stack.json(&all).await
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn the_token_commands_show_a_token_once_and_store_its_hash() {
    let stack = Stack::embedded();
    let created = token_cli(&stack, &["create", "--scope", "write", "--name", "ci"]).await;
    let token = created["token"].as_str().expect("the token").to_owned();
    assert!(token.starts_with("strata_") && token.len() == 71, "{token}");
    assert_eq!(created["scope"], "write");
    assert_eq!(created["name"], "ci");
    let id = created["id"].as_i64().expect("an id");

    // Plain output: the token alone on stdout.
    let out = stack.strata(&["token", "create", "--scope", "read"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(plain.starts_with("strata_") && plain.len() == 71, "{plain}");

    let hash = sha256_hex(&token);
    for listing in [
        token_cli(&stack, &["list"]).await.to_string(),
        String::from_utf8_lossy(&stack.strata(&["token", "list"]).await.stdout).into_owned(),
    ] {
        assert!(listing.contains("ci"), "{listing}");
        for secret in [&token, &plain, &hash] {
            assert!(!listing.contains(secret.as_str()), "listed: {listing}");
        }
    }
    let rows = stack.sql("SELECT * FROM api_tokens ORDER BY id").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["hash"], hash.as_str());
    let stored = Value::Array(rows).to_string();
    assert!(
        !stored.contains(&token) && !stored.contains(&plain),
        "{stored}"
    );
    assert!(!stored.contains(&token["strata_".len()..]), "{stored}");

    let revoked = token_cli(&stack, &["revoke", &id.to_string()]).await;
    assert_eq!(revoked["revoked_now"], true);
    assert!(revoked["revoked_at"].is_string());
    let again = token_cli(&stack, &["revoke", &id.to_string()]).await;
    assert_eq!(again["revoked_now"], false);
    let out = stack.strata(&["token", "revoke", "424242"]).await;
    assert_eq!(out.status.code(), Some(1), "an unknown id fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("424242"));
    let out = stack.strata(&["token", "create", "--scope", "root"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown scope is a usage error"
    );
}

#[tokio::test]
async fn a_server_sees_tokens_created_and_revoked_by_the_command() {
    let stack = Stack::embedded();
    // Logging everything, so that a token in any log line would show.
    let server = stack.serve(&[("STRATA_LOG", "debug")]).await;
    assert!(
        server.log().contains("no API tokens exist") && server.log().contains("loopback only"),
        "{}",
        server.log()
    );
    let dataset = json!({"name": "open"});
    let answer = server.call("POST", "/v1/datasets", Some(&dataset)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);

    // Created beside the running server.
    let created = token_cli(&stack, &["create", "--scope", "write"]).await;
    let token = created["token"].as_str().expect("token").to_owned();
    let id = created["id"].as_i64().expect("id");
    let auth = format!("Bearer {token}");
    eventually("the server requires tokens", REVOCATION_LIMIT, || async {
        let answer = server.call("GET", "/v1/datasets", None).await;
        (answer.status == 401).then_some(())
    })
    .await;
    let answer = call_with(
        &server.address,
        "POST",
        "/v1/datasets",
        &[("Authorization", &auth)],
        Some(&json!({"name": "closed"})),
    )
    .await
    .expect("an answer");
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    // A bad token: refused, and neither echoed nor logged.
    let wrong = format!("strata_{}", "cd".repeat(32));
    let answer = call_with(
        &server.address,
        "GET",
        "/v1/datasets",
        &[("Authorization", &format!("Bearer {wrong}"))],
        None,
    )
    .await
    .expect("an answer");
    assert_eq!(answer.status, 401);
    assert!(!answer.body.to_string().contains(&wrong));

    // Revoked beside it (another token stays, so the API stays guarded):
    // refused within the cache bound.
    token_cli(&stack, &["create", "--scope", "read"]).await;
    token_cli(&stack, &["revoke", &id.to_string()]).await;
    eventually("the revoked token is refused", REVOCATION_LIMIT, || async {
        let answer = call_with(
            &server.address,
            "GET",
            "/v1/datasets",
            &[("Authorization", &auth)],
            None,
        )
        .await
        .expect("an answer");
        (answer.status == 401).then_some(())
    })
    .await;
    let log = server.log();
    for secret in [&token, &wrong] {
        assert!(!log.contains(secret.as_str()), "logged: {log}");
    }
    server.stop().await;
}

#[tokio::test]
async fn off_loopback_without_tokens_strata_refuses_to_serve_unless_allowed() {
    let stack = Stack::embedded();
    let out = stack
        .strata(&["serve", "--listen", "0.0.0.0:0", "--no-worker"])
        .await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "api.listen",
        "--allow-unauthenticated",
        "strata token create",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(!stderr.contains("listening on"), "{stderr}");

    let server = stack
        .serve_with(
            &[
                "serve",
                "--listen",
                "0.0.0.0:0",
                "--no-worker",
                "--allow-unauthenticated",
            ],
            &[],
            "strata: listening on http://",
        )
        .await;
    assert!(
        server.log().contains("WITHOUT authentication"),
        "{}",
        server.log()
    );
    let port = server
        .address
        .rsplit(':')
        .next()
        .expect("a port")
        .to_owned();
    let answer = call(&format!("127.0.0.1:{port}"), "GET", "/v1/datasets", None)
        .await
        .expect("an answer");
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    server.stop().await;

    // With a token, an address beyond loopback is fine.
    token_cli(&stack, &["create", "--scope", "read"]).await;
    let server = stack
        .serve_with(
            &["serve", "--listen", "0.0.0.0:0", "--no-worker"],
            &[],
            "strata: listening on http://",
        )
        .await;
    let port = server.address.rsplit(':').next().expect("a port");
    let answer = call(&format!("127.0.0.1:{port}"), "GET", "/v1/datasets", None)
        .await
        .expect("an answer");
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    assert!(
        !server.log().contains("no API tokens exist"),
        "{}",
        server.log()
    );
    server.stop().await;
}

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files in
/// `dir`: (cert path, key path, the certificate in DER).
fn self_signed(dir: &std::path::Path) -> (String, String, Vec<u8>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (
        cert.to_str().expect("utf-8").to_owned(),
        key.to_str().expect("utf-8").to_owned(),
        certified.cert.der().to_vec(),
    )
}

/// GET `path` over TLS, trusting only `root`.
async fn https_get(
    address: &str,
    root: &[u8],
    path: &str,
) -> std::io::Result<common::serve::Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root.to_vec()))
        .map_err(std::io::Error::other)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let name =
        rustls::pki_types::ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let mut stream = connector.connect(name, tcp).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    // A server may close without close_notify after the answer.
    match stream.read_to_end(&mut raw).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse_answer(&raw)
}

#[tokio::test]
async fn tls_serves_https_with_the_configured_certificate() {
    let stack = Stack::embedded();
    let pem = tempfile::tempdir().expect("temp dir");
    let (cert, key, der) = self_signed(pem.path());
    let env = [
        ("STRATA_API__TLS__CERT", cert.as_str()),
        ("STRATA_API__TLS__KEY", key.as_str()),
    ];
    let server = stack
        .serve_with(
            &["serve", "--listen", "127.0.0.1:0", "--no-worker"],
            &env,
            "strata: listening on https://",
        )
        .await;
    let answer = https_get(&server.address, &der, "/healthz")
        .await
        .unwrap_or_else(|e| panic!("GET /healthz over TLS: {e}; log:\n{}", server.log()));
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let answer = https_get(&server.address, &der, "/v1/datasets")
        .await
        .expect("GET over TLS");
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // Plain HTTP to it gets no HTTP answer.
    let plain = call(&server.address, "GET", "/healthz", None).await;
    assert!(
        plain.as_ref().map_or(true, |a| a.status != 200),
        "plain HTTP was served: {plain:?}"
    );
    // A client that does not trust the certificate fails the handshake.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("another certificate");
    assert!(
        https_get(&server.address, other.cert.der(), "/healthz")
            .await
            .is_err()
    );
    server.stop().await;

    // A missing or unparseable file: exit 2 naming the key and the path.
    let missing = pem.path().join("missing.pem");
    let missing = missing.to_str().expect("utf-8");
    std::fs::write(pem.path().join("junk.pem"), "not PEM").expect("write junk");
    let junk = pem.path().join("junk.pem");
    let junk = junk.to_str().expect("utf-8");
    for (cert, key, named) in [
        (missing, key.as_str(), "api.tls.cert"),
        (cert.as_str(), junk, "api.tls.key"),
    ] {
        let out = stack
            .strata(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-worker",
                "--config",
                &write_config(pem.path(), cert, key),
            ])
            .await;
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{named}: {stderr}");
        let path = if named == "api.tls.cert" { cert } else { key };
        assert!(stderr.contains(path), "{path}: {stderr}");
    }
}

/// A configuration file setting `api.tls`, in `dir`.
fn write_config(dir: &std::path::Path, cert: &str, key: &str) -> String {
    let file = dir.join(format!("tls-{}.toml", common::unique_name("c")));
    let text = format!(
        "[api.tls]\ncert = {}\nkey = {}\n",
        toml::Value::String(cert.to_owned()),
        toml::Value::String(key.to_owned())
    );
    std::fs::write(&file, text).expect("write config");
    file.to_str().expect("utf-8").to_owned()
}

/// The token store on PostgreSQL (with `STRATA_TEST_FULL=1`): the same
/// migration and answers as on SQLite, concurrent creations included.
#[tokio::test]
async fn tokens_work_on_postgresql() {
    let Some(db) = common::TestDb::postgres("auth").await else {
        return;
    };
    let outcome = {
        use futures::FutureExt;
        std::panic::AssertUnwindSafe(async {
            let tokens = strata::platform::Tokens::open(&db.config)
                .await
                .expect("open the token store");
            assert!(!tokens.any_active().await.expect("any"));
            let mut tasks = Vec::new();
            for task in 0..8 {
                let tokens = tokens.clone();
                tasks.push(tokio::spawn(async move {
                    let mut made = Vec::new();
                    for _ in 0..3 {
                        let scope = if task % 2 == 0 {
                            Scope::Read
                        } else {
                            Scope::Admin
                        };
                        let new = tokens.create(scope, None).await.expect("create");
                        made.push((new.token, new.info.id, scope));
                    }
                    made
                }));
            }
            let mut all = Vec::new();
            for task in tasks {
                all.extend(task.await.expect("task"));
            }
            let distinct: BTreeSet<&str> = all.iter().map(|(t, _, _)| t.as_str()).collect();
            assert_eq!(distinct.len(), 24);
            for (token, id, scope) in &all {
                let principal = tokens.verify(token).await.expect("verify").expect("valid");
                assert_eq!((principal.id, principal.scope), (*id, *scope));
            }
            let (first, id, _) = &all[0];
            let (_, revoked) = tokens.revoke(*id).await.expect("revoke");
            assert!(revoked);
            assert_eq!(tokens.verify(first).await.expect("verify"), None);
            let listed = tokens.list().await.expect("list");
            assert_eq!(listed.len(), 24);
            assert_eq!(listed.iter().filter(|t| t.revoked_at.is_some()).count(), 1);
            assert!(listed.iter().any(|t| t.last_used_at.is_some()));
        })
        .catch_unwind()
        .await
    };
    db.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
