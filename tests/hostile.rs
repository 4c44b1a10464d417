//! The real `strata serve` treated badly: many clients writing at once
//! over HTTP on every write route, the process killed in the middle of a
//! saga (at each step, in a compensation, and at a random moment under
//! load) and started again, and an engine paused or refusing connections
//! while requests come in. After each, every engine must agree: no run row
//! without its config, no config of a model that was removed, no saga
//! left open, each registration counted exactly once.
//!
//! Each case runs on the embedded profile and, with `STRATA_TEST_FULL=1`,
//! on the full profile, in a world of its own (temp data dir; its own
//! PostgreSQL database, MongoDB database and Redis key prefix), removed
//! afterwards. Cases that pause a shared service run on the full profile
//! only, one at a time (see `common::outage`). Figures (operations,
//! answers by status, latencies) are printed on stderr; run with
//! `--nocapture` to see them for passing tests too.
//!
//! `STRATA_HOSTILE_SEED=N` replays the random choices of a run (the seed
//! is printed); timing still differs from run to run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use common::outage::{self, Gate, Paused};
use common::serve::{Answer, Server, Stack, call, eventually, run_on};

/// Prints a line of figures past the test harness's capture.
fn report(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn seed() -> u64 {
    let seed = std::env::var("STRATA_HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
    report(&format!("hostile: seed {seed} (STRATA_HOSTILE_SEED)"));
    seed
}

fn embedded() -> Option<Stack> {
    Some(Stack::embedded())
}

async fn full() -> Option<Stack> {
    Stack::full("hostile").await
}

/// Sagas that give up quickly and are taken over quickly: what a test
/// needs to see a restart finish a saga within seconds.
const FAST_SAGAS: &[(&str, &str)] = &[
    ("STRATA_SAGAS__LEASE", "1s"),
    ("STRATA_SAGAS__SWEEP_INTERVAL", "200ms"),
    ("STRATA_SAGAS__RETRY__MAX_ELAPSED", "500ms"),
    ("STRATA_LOG", "warn,strata::platform::sagas=info"),
];

const DATASET: &str = "fraud-train-v1";

async fn create_dataset(server: &Server, name: &str) {
    let answer = server
        .call("POST", "/v1/datasets", Some(&json!({"name": name})))
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
}

/// The registration of `model_id` every test sends: identical each time,
/// so that sending it again is a retry.
fn registration(model_id: &str, framework: &str) -> Value {
    json!({
        "dataset": DATASET,
        "model_id": model_id,
        "model_name": format!("{model_id}-model"),
        "framework": framework,
        "tags": {"team": "hostile"},
        "started_at": "2026-01-01T00:00:00Z",
        "config": {"layers": [64, 32], "optimizer": "adam"},
    })
}

/// The sagas of `model_id`, newest first.
async fn sagas_of(server: &Server, model_id: &str) -> Vec<Value> {
    let answer = server
        .call("GET", &format!("/v1/sagas?subject={model_id}"), None)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body.as_array().cloned().expect("a list of sagas")
}

fn is_final(saga: &Value) -> bool {
    matches!(saga["state"].as_str(), Some("completed" | "compensated"))
}

/// Waits until the saga `id` has ended and returns it.
async fn ended(server: &Server, id: &str, limit: Duration) -> Value {
    eventually(&format!("saga {id} ends"), limit, || async {
        let answer = server.call("GET", &format!("/v1/sagas/{id}"), None).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        is_final(&answer.body).then_some(answer.body)
    })
    .await
}

/// Waits until no saga is open.
async fn no_open_sagas(server: &Server, limit: Duration) {
    eventually("every saga ends", limit, || async {
        let answer = server.call("GET", "/v1/sagas?open=true", None).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer
            .body
            .as_array()
            .expect("a list of sagas")
            .is_empty()
            .then_some(())
    })
    .await;
}

/// The registration count of `framework` as the registration saga sees
/// it: registers a probe model and reads the count its saga recorded
/// (one more than before). Works on either profile, through the API only.
async fn registrations_through_probe(server: &Server, framework: &str) -> i64 {
    let probe = format!("probe-{framework}");
    let answer = server
        .call("POST", "/v1/runs", Some(&registration(&probe, framework)))
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let saga = sagas_of(server, &probe)
        .await
        .into_iter()
        .find(|s| s["kind"] == "register_run" && s["state"] == "completed")
        .expect("the probe's completed registration");
    let count = saga["result"]["framework_runs"]
        .as_i64()
        .expect("framework_runs");
    let removed = server
        .call("DELETE", &format!("/v1/runs/{probe}"), None)
        .await;
    assert_eq!(removed.status, 204, "{:?}", removed.body);
    count - 1
}

/// What the model `model_id` is across engines once its sagas ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// Run row and config, agreeing on the framework.
    Whole { framework: String },
    /// Nothing in the relational or the document engine.
    Gone,
}

/// Reads `model_id` through the API and fails on anything partial: a run
/// without its config, a config of a run that is gone, an answer
/// degraded, a config whose framework or name differs from its run's.
async fn found(server: &Server, model_id: &str) -> Found {
    let info = server
        .call("GET", &format!("/v1/models/{model_id}"), None)
        .await;
    let config = server
        .call("GET", &format!("/v1/models/{model_id}/config"), None)
        .await;
    match (info.status, config.status) {
        (200, 200) => {
            assert_eq!(info.body["degraded"], false, "{:?}", info.body);
            let run = &info.body["run"];
            let config = &info.body["config"];
            assert_eq!(run["framework"], config["framework"], "{:?}", info.body);
            assert_eq!(run["model_name"], config["model_name"], "{:?}", info.body);
            Found::Whole {
                framework: run["framework"].as_str().expect("framework").to_owned(),
            }
        }
        (404, 404) => Found::Gone,
        (200, 404) => panic!("{model_id}: a run row without its config: {:?}", info.body),
        (404, 200) => panic!(
            "{model_id}: a config without its run row: {:?}",
            config.body
        ),
        other => panic!(
            "{model_id}: unexpected answers {other:?}: {:?} {:?}",
            info.body, config.body
        ),
    }
}

/// Model ids that have a run row, and those that have a config, read
/// from the stores themselves (`strata sql`, `strata docs`). On the
/// embedded profile no server may be running.
async fn stored_models(stack: &Stack) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let rows = stack
        .sql("SELECT model_id, framework FROM training_runs")
        .await
        .into_iter()
        .map(|r| {
            (
                r["model_id"].as_str().expect("model_id").to_owned(),
                r["framework"].as_str().expect("framework").to_owned(),
            )
        })
        .collect();
    let configs = stack
        .docs_find("model_configs", &json!({}))
        .await
        .into_iter()
        .map(|d| {
            (
                d["model_id"].as_str().expect("model_id").to_owned(),
                d["framework"].as_str().expect("framework").to_owned(),
            )
        })
        .collect();
    (rows, configs)
}

async fn open_sagas_in_sql(stack: &Stack) -> Vec<Value> {
    stack
        .sql(
            "SELECT id, kind, subject, state, steps FROM sagas \
             WHERE state IN ('running', 'compensating') ORDER BY id",
        )
        .await
}

/// `(saga id, subject, framework)` of every completed registration,
/// from the `sagas` table.
async fn completed_registrations(stack: &Stack) -> Vec<(String, String, String, Value)> {
    stack
        .sql(
            "SELECT id, subject, request, result FROM sagas \
             WHERE kind = 'register_run' AND state = 'completed' ORDER BY id",
        )
        .await
        .into_iter()
        .map(|row| {
            let request: Value =
                serde_json::from_str(row["request"].as_str().expect("request")).expect("JSON");
            let result: Value =
                serde_json::from_str(row["result"].as_str().expect("result")).expect("JSON");
            (
                row["id"].as_str().expect("id").to_owned(),
                row["subject"].as_str().expect("subject").to_owned(),
                request["framework"].as_str().expect("framework").to_owned(),
                result,
            )
        })
        .collect()
}

/// On the full profile: the registration hash of `framework` must hold
/// exactly one field per completed registration saga of it, named by the
/// saga, holding its model id.
async fn assert_counted_once(stack: &Stack, framework: &str) {
    let expected: BTreeMap<String, Value> = completed_registrations(stack)
        .await
        .into_iter()
        .filter(|(_, _, f, _)| f == framework)
        .map(|(id, subject, _, _)| (id, Value::String(subject)))
        .collect();
    let stored: BTreeMap<String, Value> = stack
        .kv_hgetall(&format!("counters:registrations:{framework}"))
        .await
        .into_iter()
        .collect();
    assert_eq!(
        stored, expected,
        "counters:registrations:{framework} and the completed registrations differ"
    );
}

// ------------------------------------------------------- concurrent writers

const CLIENTS: usize = 10;
const OPERATIONS_PER_CLIENT: usize = 50;
const FRAMEWORKS: [&str; 3] = ["pytorch", "xgboost", "tensorflow"];
/// Run ids every client registers, completes, removes and patches.
const SHARED_RUNS: usize = 8;
/// The feature view and the model with a scorer the clients use.
const HOSTILE_VIEW: &str = "hx_activity";
const HOSTILE_SCORER: &str = "hx-scorer";
/// Models registered before the clients start and never removed: their
/// configs are replaced and patched by every client.
const KEPT: usize = 3;
/// Configs without a run (PUT creates them), contended by every client.
const CONFIG_ONLY: usize = 4;

fn shared_id(k: usize) -> String {
    format!("hx-shared-{k}")
}

fn kept_id(k: usize) -> String {
    format!("hx-kept-{k}")
}

fn config_only_id(k: usize) -> String {
    format!("hx-cfg-{k}")
}

/// What the clients saw, by route and in detail.
#[derive(Default)]
struct Tally {
    /// Route → status → answers.
    by_route: BTreeMap<&'static str, BTreeMap<u16, u32>>,
    /// Route → latencies of its answers.
    route_latencies: BTreeMap<&'static str, Vec<Duration>>,
    /// Requests that got no answer, and 5xx answers, described.
    failures: Vec<String>,
    /// model_id → run ids answered 201 to a registration.
    registered: BTreeMap<String, BTreeSet<i64>>,
    /// Sagas a registration answered 202 with.
    accepted: BTreeSet<String>,
    /// Run ids answered 200 to `complete`.
    completed: Vec<i64>,
    /// Datasets answered 201.
    datasets: u32,
    /// Entity → the largest value whose write was answered 200 (the
    /// latest event of that entity's `n` feature).
    latest_feature: BTreeMap<String, i64>,
    /// Alias → moves answered 200 with an audit entry.
    alias_moves: BTreeMap<String, u32>,
    /// Elapsed time of each answer.
    latencies: Vec<Duration>,
}

/// One request of the workload, and what to remember of its answer.
struct Op {
    route: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
    model_id: Option<String>,
    alias: Option<String>,
    /// A feature write: the entity and the value written (its event
    /// time's offset, so the latest event holds the largest value).
    feature: Option<(String, i64)>,
}

impl Op {
    fn new(route: &'static str, method: &'static str, path: String, body: Option<Value>) -> Op {
        Op {
            route,
            method,
            path,
            body,
            model_id: None,
            alias: None,
            feature: None,
        }
    }
}

/// The next request of client `client`: every write route, with ids
/// shared by all clients and ids of its own.
fn next_op(
    rng: &mut ChaCha8Rng,
    client: usize,
    n: usize,
    own: &[String],
    artifacts: [i64; 2],
) -> Op {
    let shared = |rng: &mut ChaCha8Rng| shared_id(rng.random_range(0..SHARED_RUNS));
    let own_or_shared = |rng: &mut ChaCha8Rng| match own.len() {
        0 => shared(rng),
        len if rng.random_bool(0.4) => own[rng.random_range(0..len)].clone(),
        _ => shared(rng),
    };
    let metrics = |rng: &mut ChaCha8Rng| json!({"metrics": {"accuracy": rng.random_range(0.5..1.0), "f1": rng.random_range(0.5..1.0)}});
    match rng.random_range(0..80) {
        // Features of a few shared entities, written out of order: each
        // value is its event time's offset, so the latest event holds the
        // largest value.
        66..72 => {
            let entity = format!("hx-u{}", rng.random_range(0..4));
            let offset: i64 = rng.random_range(0..100_000);
            let at = chrono::DateTime::from_timestamp(1_767_225_600 + offset, 0).expect("a time");
            let body = json!({"features": {"n": offset}, "event_time": at.to_rfc3339()});
            let mut op = Op::new(
                "PUT /v1/features/{view}/{entity}",
                "PUT",
                format!("/v1/features/{HOSTILE_VIEW}/{entity}"),
                Some(body),
            );
            op.feature = Some((entity, offset));
            op
        }
        72..76 => Op::new(
            "POST /v1/models/{id}/predict",
            "POST",
            format!("/v1/models/{HOSTILE_SCORER}/predict"),
            Some(
                json!({"entity": format!("hx-u{}", rng.random_range(0..4)), "on_missing": "impute"}),
            ),
        ),
        76..80 => Op::new(
            "GET /v1/features/{view}/{entity}",
            "GET",
            format!("/v1/features/{HOSTILE_VIEW}/hx-u{}", rng.random_range(0..4)),
            None,
        ),
        // Registrations of shared ids: the same request as every other
        // client's (a retry), or now and then a rival one (a conflict).
        0..10 => {
            let k = rng.random_range(0..SHARED_RUNS);
            let id = shared_id(k);
            let mut body = registration(&id, FRAMEWORKS[k % FRAMEWORKS.len()]);
            if rng.random_bool(0.25) {
                body["model_name"] = json!(format!("rival-{client}"));
            }
            let mut op = Op::new("POST /v1/runs", "POST", "/v1/runs".into(), Some(body));
            op.model_id = Some(id);
            op
        }
        // A model of its own, sometimes on a dataset that does not exist.
        10..20 => {
            let id = format!("hx-c{client}-{n}");
            let mut body = registration(&id, FRAMEWORKS[n % FRAMEWORKS.len()]);
            if rng.random_bool(0.2) {
                body["dataset"] = json!("no-such-dataset");
            }
            let mut op = Op::new("POST /v1/runs", "POST", "/v1/runs".into(), Some(body));
            op.model_id = Some(id);
            op
        }
        20..30 => {
            let id = match rng.random_range(0..5) {
                0 => kept_id(rng.random_range(0..KEPT)),
                _ => own_or_shared(rng),
            };
            let body = json!({
                "status": if rng.random_bool(0.8) { "completed" } else { "failed" },
                "accuracy": rng.random_range(0.5..1.0),
                "loss": rng.random_range(0.0..1.0),
                "training_time_seconds": rng.random_range(1..10_000),
            });
            Op::new(
                "POST /v1/runs/{id}/complete",
                "POST",
                format!("/v1/runs/{id}/complete"),
                Some(body),
            )
        }
        30..40 => {
            // Now and then a run with artifacts: refused, nothing removed.
            let id = match rng.random_range(0..20) {
                0 => "fraud-detector-v1".to_owned(),
                _ => own_or_shared(rng),
            };
            Op::new(
                "DELETE /v1/runs/{id}",
                "DELETE",
                format!("/v1/runs/{id}"),
                None,
            )
        }
        40..48 => {
            let (id, name, framework) = if rng.random_bool(0.6) {
                let k = rng.random_range(0..CONFIG_ONLY);
                (config_only_id(k), format!("cfg-{k}"), "sklearn".to_owned())
            } else {
                // Kept models keep their name and framework: the config
                // changes, the model stays whole.
                let k = rng.random_range(0..KEPT);
                let id = kept_id(k);
                let name = format!("{id}-model");
                (id, name, FRAMEWORKS[k % FRAMEWORKS.len()].to_owned())
            };
            let body = json!({
                "model_name": name,
                "framework": framework,
                "config": {"layers": [rng.random_range(1..512)], "writer": client},
                "metrics": {"accuracy": rng.random_range(0.5..1.0)},
            });
            Op::new(
                "PUT /v1/models/{id}/config",
                "PUT",
                format!("/v1/models/{id}/config"),
                Some(body),
            )
        }
        48..56 => {
            let id = match rng.random_range(0..4) {
                0 => config_only_id(rng.random_range(0..CONFIG_ONLY)),
                1 => kept_id(rng.random_range(0..KEPT)),
                _ => own_or_shared(rng),
            };
            Op::new(
                "PATCH /v1/models/{id}/config",
                "PATCH",
                format!("/v1/models/{id}/config"),
                Some(metrics(rng)),
            )
        }
        56..62 => {
            let (alias, artifact) = match rng.random_range(0..10) {
                // An artifact that does not exist: 404, nothing moved.
                0 => ("champion".to_owned(), 999_999),
                // First moves racing each other.
                1..4 => (
                    format!("challenger-{}", rng.random_range(0..3)),
                    artifacts[rng.random_range(0..2)],
                ),
                _ => ("champion".to_owned(), artifacts[rng.random_range(0..2)]),
            };
            let mut op = Op::new(
                "PUT /v1/aliases/{name}",
                "PUT",
                format!("/v1/aliases/fraud-detector@{alias}"),
                Some(json!({"artifact_id": artifact, "moved_by": format!("client-{client}")})),
            );
            op.alias = Some(alias);
            op
        }
        _ => {
            let name = if rng.random_bool(0.5) {
                format!("hx-ds-shared-{}", rng.random_range(0..3))
            } else {
                format!("hx-ds-c{client}-{n}")
            };
            Op::new(
                "POST /v1/datasets",
                "POST",
                "/v1/datasets".into(),
                Some(json!({"name": name, "total_rows": 1000})),
            )
        }
    }
}

/// Records one answer; returns the model id a registration created.
fn record(
    tally: &Mutex<Tally>,
    op: &Op,
    outcome: std::io::Result<Answer>,
    took: Duration,
) -> Option<String> {
    let mut tally = tally.lock().expect("tally lock");
    tally.latencies.push(took);
    tally
        .route_latencies
        .entry(op.route)
        .or_default()
        .push(took);
    let answer = match outcome {
        Ok(answer) => answer,
        Err(e) => {
            tally
                .failures
                .push(format!("{} {}: no answer: {e}", op.method, op.path));
            return None;
        }
    };
    *tally
        .by_route
        .entry(op.route)
        .or_default()
        .entry(answer.status)
        .or_default() += 1;
    if answer.status >= 500 || answer.status < 200 || (300..400).contains(&answer.status) {
        tally.failures.push(format!(
            "{} {} {}: {} {:?}",
            op.method,
            op.path,
            op.body.as_ref().map(Value::to_string).unwrap_or_default(),
            answer.status,
            answer.body
        ));
        return None;
    }
    if answer.status >= 400 {
        // Every refusal in the API's one error shape.
        assert!(
            answer.body["error"]["kind"].is_string(),
            "{} {}: {} without the error shape: {:?}",
            op.method,
            op.path,
            answer.status,
            answer.body
        );
        return None;
    }
    match (op.route, answer.status) {
        ("POST /v1/runs", 201) => {
            let model_id = op.model_id.clone().expect("a registration names its model");
            assert_eq!(
                answer.body["model_id"],
                json!(model_id),
                "{:?}",
                answer.body
            );
            let run_id = answer.body["id"].as_i64().expect("run id");
            tally
                .registered
                .entry(model_id.clone())
                .or_default()
                .insert(run_id);
            return Some(model_id);
        }
        ("POST /v1/runs", 202) => {
            let saga = answer.body["id"].as_str().expect("saga id").to_owned();
            tally.accepted.insert(saga);
        }
        ("POST /v1/runs/{id}/complete", 200) => {
            let run_id = answer.body["id"].as_i64().expect("run id");
            tally.completed.push(run_id);
        }
        ("POST /v1/datasets", 201) => tally.datasets += 1,
        ("PUT /v1/features/{view}/{entity}", 200) => {
            let (entity, value) = op
                .feature
                .clone()
                .expect("a feature write names its entity");
            let latest = tally.latest_feature.entry(entity).or_insert(value);
            *latest = (*latest).max(value);
        }
        ("PUT /v1/aliases/{name}", 200) if !answer.body["moved"].is_null() => {
            let alias = op.alias.clone().expect("an alias move names its alias");
            *tally.alias_moves.entry(alias).or_default() += 1;
        }
        _ => {}
    }
    None
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

async fn concurrent_writers_over_http(stack: Arc<Stack>) {
    let _services = outage::shared().await;
    let seed = seed();
    let seeded = stack.strata(&["seed"]).await;
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let server = stack.serve(&[]).await;
    let mut artifacts = [0; 2];
    for (i, model_id) in ["fraud-detector-v1", "fraud-detector-v2"]
        .iter()
        .enumerate()
    {
        let run = server
            .call("GET", &format!("/v1/runs/{model_id}"), None)
            .await;
        assert_eq!(run.status, 200, "{:?}", run.body);
        artifacts[i] = run.body["artifacts"][0]["id"]
            .as_i64()
            .expect("a seeded artifact");
    }
    for k in 0..KEPT {
        let id = kept_id(k);
        let answer = server
            .call(
                "POST",
                "/v1/runs",
                Some(&registration(&id, FRAMEWORKS[k % FRAMEWORKS.len()])),
            )
            .await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }
    let view = json!({"entity": "user", "ttl_seconds": 315_360_000,
        "features": [{"name": "n", "type": "int"}]});
    let answer = server
        .call(
            "PUT",
            &format!("/v1/feature-views/{HOSTILE_VIEW}"),
            Some(&view),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let scorer = json!({"model_name": "hx", "framework": "sklearn",
        "scorer": {"type": "linear", "version": 1, "view": HOSTILE_VIEW, "weights": {"n": 1.0}}});
    let answer = server
        .call(
            "PUT",
            &format!("/v1/models/{HOSTILE_SCORER}/config"),
            Some(&scorer),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let moves_before: BTreeMap<String, i64> = stack
        .sql(
            "SELECT alias, COUNT(*) AS n FROM alias_history \
             WHERE model_name = 'fraud-detector' GROUP BY alias",
        )
        .await
        .into_iter()
        .map(|r| {
            (
                r["alias"].as_str().expect("alias").to_owned(),
                r["n"].as_i64().expect("count"),
            )
        })
        .collect();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|client| {
        let tally = Arc::clone(&tally);
        let address = server.address.clone();
        tokio::spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(client as u64));
            let mut own = Vec::new();
            for n in 0..OPERATIONS_PER_CLIENT {
                let op = next_op(&mut rng, client, n, &own, artifacts);
                let sent = Instant::now();
                let outcome = call(&address, op.method, &op.path, op.body.as_ref()).await;
                if let Some(model_id) = record(&tally, &op, outcome, sent.elapsed())
                    && model_id.starts_with("hx-c")
                {
                    own.push(model_id);
                }
            }
        })
    });
    for client in futures::future::join_all(clients).await {
        client.expect("a client panicked");
    }
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock().expect("tally lock"));

    // The figures first: they are wanted whether the checks pass or not.
    let operations: u32 = tally.by_route.values().flat_map(|s| s.values()).sum();
    let mut latencies = tally.latencies.clone();
    latencies.sort();
    report(&format!(
        "hostile[{}]: {} clients, {} operations answered ({} unanswered) in {:.2?}: {:.0} ops/s; \
         latency p50 {:.1?} p99 {:.1?} max {:.1?}",
        stack.profile(),
        CLIENTS,
        operations,
        tally
            .failures
            .iter()
            .filter(|f| f.contains("no answer"))
            .count(),
        elapsed,
        f64::from(operations) / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
    ));
    for (route, statuses) in &tally.by_route {
        let mut took = tally
            .route_latencies
            .get(route)
            .cloned()
            .unwrap_or_default();
        took.sort();
        report(&format!(
            "hostile[{}]:   {route:<30} {statuses:?} p50 {:.1?} p99 {:.1?}",
            stack.profile(),
            percentile(&took, 0.5),
            percentile(&took, 0.99),
        ));
    }
    assert!(
        operations as usize >= CLIENTS * OPERATIONS_PER_CLIENT,
        "every request is answered"
    );
    assert!(
        tally.failures.is_empty(),
        "{} requests failed (no answer, or 5xx):\n{}\nserver log:\n{}",
        tally.failures.len(),
        tally.failures.join("\n"),
        server.log()
    );
    for route in [
        "POST /v1/datasets",
        "POST /v1/runs",
        "POST /v1/runs/{id}/complete",
        "DELETE /v1/runs/{id}",
        "PUT /v1/aliases/{name}",
        "PUT /v1/models/{id}/config",
        "PATCH /v1/models/{id}/config",
        "PUT /v1/features/{view}/{entity}",
        "POST /v1/models/{id}/predict",
    ] {
        let ok: u32 = tally
            .by_route
            .get(route)
            .map(|s| s.iter().filter(|(st, _)| **st < 300).map(|(_, n)| n).sum())
            .unwrap_or(0);
        assert!(ok > 0, "{route} never succeeded: {:?}", tally.by_route);
    }

    // Out-of-order feature writes: each entity holds its latest event, and
    // a prediction scores exactly that.
    for (entity, latest) in &tally.latest_feature {
        let read = server
            .call(
                "GET",
                &format!("/v1/features/{HOSTILE_VIEW}/{entity}"),
                None,
            )
            .await;
        assert_eq!(
            read.body["features"]["n"]["value"],
            json!(latest),
            "{entity}: {:?}",
            read.body
        );
        let predicted = server
            .call(
                "POST",
                &format!("/v1/models/{HOSTILE_SCORER}/predict"),
                Some(&json!({"entity": entity})),
            )
            .await;
        assert_eq!(
            predicted.body["score"],
            json!(*latest as f64),
            "{entity}: {:?}",
            predicted.body
        );
    }

    // Every saga ends; those answered 202 are looked up.
    no_open_sagas(&server, Duration::from_secs(60)).await;
    let mut registered = tally.registered.clone();
    for id in &tally.accepted {
        let saga = ended(&server, id, Duration::from_secs(5)).await;
        if saga["state"] == "completed" {
            let run_id = saga["result"]["run_id"].as_i64().expect("run id");
            let subject = saga["subject"].as_str().expect("subject").to_owned();
            registered.entry(subject).or_default().insert(run_id);
        }
    }

    // Each model across engines, through the API: whole or gone.
    let mut whole = 0;
    let mut gone = 0;
    let mut ids: BTreeSet<String> = (0..SHARED_RUNS).map(shared_id).collect();
    ids.extend((0..KEPT).map(kept_id));
    ids.extend(tally.registered.keys().cloned());
    for id in &ids {
        match found(&server, id).await {
            Found::Whole { .. } => whole += 1,
            Found::Gone => gone += 1,
        }
    }
    for k in 0..KEPT {
        assert!(
            matches!(found(&server, &kept_id(k)).await, Found::Whole { .. }),
            "a kept model stays whole"
        );
    }
    for k in 0..CONFIG_ONLY {
        let id = config_only_id(k);
        let info = server.call("GET", &format!("/v1/models/{id}"), None).await;
        assert_eq!(info.status, 404, "{id} never had a run: {:?}", info.body);
    }

    // Every completed registration was answered as one (201, or 202 and
    // then completed), and every such answer is a completed saga.
    let sagas = completed_registrations(&stack).await;
    let mut by_saga: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (_, subject, _, result) in &sagas {
        let run_id = result["run_id"].as_i64().expect("run id");
        by_saga.entry(subject.clone()).or_default().insert(run_id);
    }
    for k in 0..KEPT {
        by_saga.remove(&kept_id(k));
    }
    assert_eq!(
        by_saga, registered,
        "completed registration sagas (left) and registrations answered as done (right) differ"
    );

    // The registration counters: one per completed registration saga.
    let mut expected_by_framework: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, _, framework, _) in &sagas {
        let framework = FRAMEWORKS
            .iter()
            .find(|f| *f == framework)
            .expect("a workload framework");
        *expected_by_framework.entry(framework).or_default() += 1;
    }
    for framework in FRAMEWORKS {
        let counted = registrations_through_probe(&server, framework).await;
        let expected = expected_by_framework.get(framework).copied().unwrap_or(0);
        assert_eq!(
            counted, expected,
            "registrations of {framework}: counted {counted}, completed sagas {expected}"
        );
        if stack.is_full() {
            assert_counted_once(&stack, framework).await;
        }
    }

    // A run completed once: a second `complete` is refused.
    let distinct: BTreeSet<i64> = tally.completed.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        tally.completed.len(),
        "a run was completed twice: {:?}",
        tally.completed
    );
    server.stop().await;

    // The stores themselves, with no server running.
    assert!(open_sagas_in_sql(&stack).await.is_empty());
    let (rows, configs) = stored_models(&stack).await;
    for (id, framework) in rows.iter().filter(|(id, _)| id.starts_with("hx-")) {
        assert_eq!(
            configs.get(id),
            Some(framework),
            "run row {id} without its config"
        );
    }
    for id in configs.keys().filter(|id| id.starts_with("hx-")) {
        assert!(
            rows.contains_key(id) || id.starts_with("hx-cfg-") || id == HOSTILE_SCORER,
            "config {id} of a model that was removed"
        );
    }
    let datasets = stack
        .sql("SELECT COUNT(*) AS n FROM datasets WHERE name LIKE 'hx-ds-%'")
        .await;
    assert_eq!(datasets[0]["n"], json!(tally.datasets));
    // Alias moves: one audit entry per move answered, in one chain.
    for alias in ["champion", "challenger-0", "challenger-1", "challenger-2"] {
        let history = stack
            .sql(&format!(
                "SELECT from_artifact_id, to_artifact_id FROM alias_history \
                 WHERE model_name = 'fraud-detector' AND alias = '{alias}' ORDER BY id"
            ))
            .await;
        let before = moves_before.get(alias).copied().unwrap_or(0);
        let answered = i64::from(tally.alias_moves.get(alias).copied().unwrap_or(0));
        assert_eq!(
            history.len() as i64,
            before + answered,
            "{alias}: audit entries vs moves answered"
        );
        for pair in history.windows(2) {
            assert_eq!(
                pair[1]["from_artifact_id"], pair[0]["to_artifact_id"],
                "{alias}: a move lost in the audit chain: {history:?}"
            );
        }
        let current = stack
            .sql(&format!(
                "SELECT artifact_id FROM model_aliases \
                 WHERE model_name = 'fraud-detector' AND alias = '{alias}'"
            ))
            .await;
        match history.last() {
            Some(last) => assert_eq!(current[0]["artifact_id"], last["to_artifact_id"]),
            None => assert!(current.is_empty()),
        }
    }
    let counts = stack
        .sql("SELECT kind, state, COUNT(*) AS n FROM sagas GROUP BY kind, state ORDER BY kind, state")
        .await;
    report(&format!(
        "hostile[{}]: models whole {whole}, gone {gone}; sagas {}",
        stack.profile(),
        counts
            .iter()
            .map(|r| format!("{} {} {}", r["kind"], r["state"], r["n"]))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // Why registrations were undone, for people.
    for saga in stack
        .sql("SELECT subject, error FROM sagas WHERE state = 'compensated' ORDER BY id")
        .await
    {
        report(&format!(
            "hostile[{}]:   undone: {} ({})",
            stack.profile(),
            saga["subject"],
            saga["error"]
        ));
    }
}

mod concurrent_writers {
    use super::*;

    #[tokio::test]
    async fn embedded() {
        run_on(super::embedded(), concurrent_writers_over_http).await;
    }

    #[tokio::test]
    async fn full() {
        run_on(super::full().await, concurrent_writers_over_http).await;
    }
}

// ------------------------------------------------- kill -9 mid-saga, restart

/// A process stopped at one exact place of a saga by a failpoint.
struct KillCase {
    /// `STRATA_FAILPOINTS` of the process that dies.
    failpoints: &'static str,
    /// The failpoint that aborts it.
    aborts_at: &'static str,
    /// The saga that dies: `register_run` or `unregister_run`.
    kind: &'static str,
    /// Its state in the `sagas` table after the death.
    state_at_death: &'static str,
    /// Its steps recorded then, `(step, done|compensated)`.
    steps_at_death: &'static [(&'static str, &'static str)],
    /// How the next process ends it.
    ends: &'static str,
}

const REGISTER_SQL_RUN: KillCase = KillCase {
    failpoints: "saga.register_run.sql_run.apply=abort",
    aborts_at: "saga.register_run.sql_run.apply",
    kind: "register_run",
    state_at_death: "running",
    steps_at_death: &[],
    ends: "completed",
};

const REGISTER_CONFIG_DOCUMENT: KillCase = KillCase {
    failpoints: "saga.register_run.config_document.apply=abort",
    aborts_at: "saga.register_run.config_document.apply",
    kind: "register_run",
    state_at_death: "running",
    steps_at_death: &[("sql_run", "done")],
    ends: "completed",
};

const REGISTER_COUNTER: KillCase = KillCase {
    failpoints: "saga.register_run.registration_counter.apply=abort",
    aborts_at: "saga.register_run.registration_counter.apply",
    kind: "register_run",
    state_at_death: "running",
    steps_at_death: &[("sql_run", "done"), ("config_document", "done")],
    ends: "completed",
};

/// The counter step fails; the process dies undoing the config document.
const COMPENSATING_CONFIG_DOCUMENT: KillCase = KillCase {
    failpoints: "saga.register_run.registration_counter.apply=error;\
                 saga.register_run.config_document.compensate=abort",
    aborts_at: "saga.register_run.config_document.compensate",
    kind: "register_run",
    state_at_death: "compensating",
    steps_at_death: &[("sql_run", "done"), ("config_document", "done")],
    ends: "compensated",
};

/// The config step fails; the process dies undoing the run row.
const COMPENSATING_SQL_RUN: KillCase = KillCase {
    failpoints: "saga.register_run.config_document.apply=error;\
                 saga.register_run.sql_run.compensate=abort",
    aborts_at: "saga.register_run.sql_run.compensate",
    kind: "register_run",
    state_at_death: "compensating",
    steps_at_death: &[("sql_run", "done")],
    ends: "compensated",
};

/// A removal dies after the run row went, before the config did.
const UNREGISTER_CONFIG_DOCUMENT: KillCase = KillCase {
    failpoints: "saga.unregister_run.config_document.apply=abort",
    aborts_at: "saga.unregister_run.config_document.apply",
    kind: "unregister_run",
    state_at_death: "running",
    steps_at_death: &[("sql_run", "done")],
    ends: "completed",
};

async fn killed_mid_saga_then_restarted(stack: Arc<Stack>, case: KillCase) {
    let _services = outage::shared().await;
    let model_id = "hx-killed";
    let mut env = FAST_SAGAS.to_vec();
    env.push(("STRATA_FAILPOINTS", case.failpoints));
    let mut doomed = stack.serve(&env).await;
    create_dataset(&doomed, DATASET).await;
    let request = registration(model_id, "pytorch");
    let (method, path, body) = if case.kind == "unregister_run" {
        let answer = doomed.call("POST", "/v1/runs", Some(&request)).await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        ("DELETE", format!("/v1/runs/{model_id}"), None)
    } else {
        ("POST", "/v1/runs".to_owned(), Some(&request))
    };
    let cut = call(&doomed.address, method, &path, body).await;
    assert!(
        cut.is_err(),
        "the client gets no answer from a process that died: {cut:?}"
    );
    let status = doomed.exited(Duration::from_secs(30)).await;
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(6), "aborted (SIGABRT): {status:?}");
    }
    assert!(
        doomed
            .log()
            .contains(&format!("failpoint {}: aborting", case.aborts_at)),
        "{}",
        doomed.log()
    );

    // What the dead process left.
    let left = stack
        .sql(&format!(
            "SELECT id, state, steps, attempts FROM sagas \
             WHERE subject = '{model_id}' AND kind = '{}'",
            case.kind
        ))
        .await;
    assert_eq!(left.len(), 1, "{left:?}");
    let saga_id = left[0]["id"].as_str().expect("saga id").to_owned();
    assert_eq!(left[0]["state"], case.state_at_death, "{left:?}");
    let steps: Vec<Value> =
        serde_json::from_str(left[0]["steps"].as_str().expect("steps")).expect("JSON steps");
    let recorded: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| {
            (
                s["step"].as_str().expect("step"),
                s["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(recorded, case.steps_at_death, "{left:?}");
    let (rows, configs) = stored_models(&stack).await;
    let row_left = rows.contains_key(model_id);
    let config_left = configs.contains_key(model_id);
    report(&format!(
        "hostile[{}]: killed at {}: saga {} {} with steps {recorded:?}; run row {}, config {}",
        stack.profile(),
        case.aborts_at,
        saga_id,
        case.state_at_death,
        if row_left { "present" } else { "absent" },
        if config_left { "present" } else { "absent" },
    ));
    // A step on the relational engine is recorded with its write.
    let sql_run_done = case.steps_at_death.contains(&("sql_run", "done"));
    assert_eq!(
        row_left,
        sql_run_done != (case.kind == "unregister_run"),
        "the run row is there exactly when the saga says"
    );

    // The next process, without failpoints, ends the saga.
    let restarted = Instant::now();
    let server = stack.serve(FAST_SAGAS).await;
    let saga = ended(&server, &saga_id, Duration::from_secs(60)).await;
    report(&format!(
        "hostile[{}]:   restarted: saga {} after {:.2?}, attempts {}",
        stack.profile(),
        saga["state"],
        restarted.elapsed(),
        saga["attempts"]
    ));
    assert_eq!(saga["state"], case.ends, "{saga:?}\n{}", server.log());
    assert!(saga["attempts"].as_i64() >= Some(1), "taken over: {saga:?}");
    no_open_sagas(&server, Duration::from_secs(30)).await;

    let whole = case.kind == "register_run" && case.ends == "completed";
    let expected = if whole {
        Found::Whole {
            framework: "pytorch".into(),
        }
    } else {
        Found::Gone
    };
    assert_eq!(found(&server, model_id).await, expected);
    if whole {
        let info = server
            .call("GET", &format!("/v1/models/{model_id}"), None)
            .await;
        assert_eq!(info.body["config"]["config"], request["config"]);
        assert_eq!(info.body["run"]["model_name"], request["model_name"]);
    }
    // Counted exactly once when registered, not at all when undone. On
    // the embedded profile the counter lives in the process: the restart
    // began it empty, and only the steps done since count.
    let counted = match case.kind {
        "register_run" if whole => 1,
        _ => 0,
    };
    if stack.is_full() {
        assert_counted_once(&stack, "pytorch").await;
        let hash = stack.kv_hgetall("counters:registrations:pytorch").await;
        let ours = hash.values().filter(|v| *v == model_id).count();
        let registrations = usize::from(case.kind == "unregister_run") + counted;
        assert_eq!(ours, registrations, "{hash:?}");
    } else if case.kind == "register_run" {
        assert_eq!(
            registrations_through_probe(&server, "pytorch").await,
            i64::try_from(counted).expect("a small count")
        );
    }
    // The identical request again: a retry of the first registration when
    // it was kept, a fresh registration when it was undone.
    if case.kind == "register_run" {
        let again = server.call("POST", "/v1/runs", Some(&request)).await;
        assert_eq!(again.status, 201, "{:?}", again.body);
        if whole {
            let run_id = saga["result"]["run_id"].as_i64().expect("run id");
            assert_eq!(again.body["id"], run_id, "a retry, not a second run");
        }
    }
    server.stop().await;
    assert!(open_sagas_in_sql(&stack).await.is_empty());
    let (rows, configs) = stored_models(&stack).await;
    assert_eq!(
        rows.contains_key(model_id),
        configs.contains_key(model_id),
        "{rows:?} {configs:?}"
    );
}

macro_rules! kill_cases {
    ($($name:ident: $case:expr),* $(,)?) => {
        mod killed_mid_saga {
            use super::*;

            mod embedded {
                use super::*;
                $(
                    #[tokio::test]
                    async fn $name() {
                        run_on(super::super::embedded(), |stack| {
                            killed_mid_saga_then_restarted(stack, $case)
                        })
                        .await;
                    }
                )*
            }

            mod full {
                use super::*;
                $(
                    #[tokio::test]
                    async fn $name() {
                        run_on(super::super::full().await, |stack| {
                            killed_mid_saga_then_restarted(stack, $case)
                        })
                        .await;
                    }
                )*
            }
        }
    };
}

kill_cases!(
    register_at_sql_run: REGISTER_SQL_RUN,
    register_at_config_document: REGISTER_CONFIG_DOCUMENT,
    register_at_registration_counter: REGISTER_COUNTER,
    compensating_config_document: COMPENSATING_CONFIG_DOCUMENT,
    compensating_sql_run: COMPENSATING_SQL_RUN,
    unregister_at_config_document: UNREGISTER_CONFIG_DOCUMENT,
);

// ------------------------------------------- kill -9 under load, restart

const LOAD_CLIENTS: usize = 8;
/// Each client's cap, should the kill never come.
const LOAD_REQUESTS_PER_CLIENT: usize = 200;

/// What one client's request got.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// An answer with this status.
    Status(u16),
    /// No answer: the process died first.
    Cut,
}

async fn killed_under_load_then_restarted(stack: Arc<Stack>) {
    let _services = outage::shared().await;
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    // Killed once this many requests were answered: somewhere in the
    // middle of the load.
    let kill_after = rng.random_range(40..160usize);
    let mut server = stack.serve(FAST_SAGAS).await;
    create_dataset(&server, DATASET).await;

    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reached = Arc::new(tokio::sync::Notify::new());
    let clients = (0..LOAD_CLIENTS).map(|client| {
        let address = server.address.clone();
        let answered = Arc::clone(&answered);
        let reached = Arc::clone(&reached);
        tokio::spawn(async move {
            // (model_id, framework, registration, removal)
            let mut tried: Vec<(String, &'static str, Outcome, Option<Outcome>)> = Vec::new();
            for n in 0..LOAD_REQUESTS_PER_CLIENT {
                // Every third request removes the client's last model.
                let removal = n % 3 == 2
                    && tried
                        .last()
                        .is_some_and(|t| t.2 == Outcome::Status(201) && t.3.is_none());
                let outcome = if removal {
                    let (model_id, ..) = tried.last().expect("a model to remove");
                    call(&address, "DELETE", &format!("/v1/runs/{model_id}"), None).await
                } else {
                    let model_id = format!("hx-load-{client}-{n}");
                    let framework = FRAMEWORKS[n % FRAMEWORKS.len()];
                    tried.push((model_id.clone(), framework, Outcome::Cut, None));
                    call(
                        &address,
                        "POST",
                        "/v1/runs",
                        Some(&registration(&model_id, framework)),
                    )
                    .await
                };
                let outcome = match outcome {
                    Ok(answer) => {
                        assert!(
                            answer.status < 500,
                            "{} before the kill: {:?}",
                            answer.status,
                            answer.body
                        );
                        Outcome::Status(answer.status)
                    }
                    Err(_) => Outcome::Cut,
                };
                let last = tried.last_mut().expect("a model tried");
                if removal {
                    last.3 = Some(outcome.clone());
                } else {
                    last.2 = outcome.clone();
                }
                if outcome == Outcome::Cut {
                    break;
                }
                let n = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if n >= kill_after {
                    reached.notify_one();
                }
            }
            tried
        })
    });
    let clients = futures::future::join_all(clients);
    let killer = async {
        reached.notified().await;
        let status = server.sigkill().await;
        let at = answered.load(std::sync::atomic::Ordering::SeqCst);
        (status, at)
    };
    let (tried, (status, answered_at_kill)) = tokio::join!(clients, killer);
    let tried: Vec<_> = tried
        .into_iter()
        .flat_map(|t| t.expect("a client panicked"))
        .collect();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    }
    let cut = tried
        .iter()
        .filter(|t| t.2 == Outcome::Cut || t.3 == Some(Outcome::Cut))
        .count();
    let open_at_death = open_sagas_in_sql(&stack).await;
    report(&format!(
        "hostile[{}]: SIGKILL after {answered_at_kill} answers (aimed at {kill_after}): \
         {} models tried, {cut} requests cut, {} sagas open at death: {}",
        stack.profile(),
        tried.len(),
        open_at_death.len(),
        open_at_death
            .iter()
            .map(|s| format!("{} {} {}", s["kind"], s["state"], s["steps"]))
            .collect::<Vec<_>>()
            .join("; ")
    ));

    let restarted = Instant::now();
    let server = stack.serve(FAST_SAGAS).await;
    no_open_sagas(&server, Duration::from_secs(60)).await;
    let recovery = restarted.elapsed();
    let mut whole = 0;
    let mut gone = 0;
    for (model_id, framework, registration, removal) in &tried {
        let now = found(&server, model_id).await;
        match (&now, registration, removal) {
            // Acknowledged and not removed: it survives the kill, whole.
            (_, Outcome::Status(201), None) => assert_eq!(
                now,
                Found::Whole {
                    framework: (*framework).to_owned()
                },
                "{model_id} was registered (201) and is not whole after a restart"
            ),
            // Removal acknowledged: gone for good.
            (_, _, Some(Outcome::Status(204))) => {
                assert_eq!(now, Found::Gone, "{model_id} was removed (204)")
            }
            // Refused: nothing of it.
            (_, Outcome::Status(status), None) if *status >= 400 => {
                assert_eq!(now, Found::Gone, "{model_id} was refused ({status})")
            }
            // Cut off: either, but whole or nothing.
            _ => {}
        }
        match now {
            Found::Whole { .. } => whole += 1,
            Found::Gone => gone += 1,
        }
    }
    report(&format!(
        "hostile[{}]:   restarted: every saga ended within {recovery:.2?}; \
         {whole} models whole, {gone} gone",
        stack.profile()
    ));
    if stack.is_full() {
        for framework in FRAMEWORKS {
            assert_counted_once(&stack, framework).await;
        }
    }
    server.stop().await;
    assert!(open_sagas_in_sql(&stack).await.is_empty());
    let (rows, configs) = stored_models(&stack).await;
    let rows: BTreeSet<&String> = rows.keys().collect();
    let configs: BTreeSet<&String> = configs.keys().collect();
    assert_eq!(rows, configs, "run rows and configs differ");
}

mod killed_under_load {
    use super::*;

    #[tokio::test]
    async fn embedded() {
        run_on(super::embedded(), killed_under_load_then_restarted).await;
    }

    #[tokio::test]
    async fn full() {
        run_on(super::full().await, killed_under_load_then_restarted).await;
    }
}

// ------------------------------------------------ an engine down or hung

/// How an engine stops answering.
enum Outage {
    /// The shared service is paused (SIGSTOP): connections open, nothing
    /// answers.
    Paused(&'static str),
    /// The process's connections go through a gate that is closed:
    /// refused, and the open ones dropped.
    Refused(Gate),
}

/// One request timed.
async fn timed(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (Answer, Duration) {
    let sent = Instant::now();
    let answer = server.call(method, path, body).await;
    (answer, sent.elapsed())
}

/// With `engine` (`kv` or `documents`) not answering: model info is
/// degraded, not failed; a registration answers truthfully (503 and
/// nothing kept, or 202 with its saga); once the engine is back the saga
/// ends and every engine agrees. Prints the latencies seen.
async fn engine_outage(stack: Arc<Stack>, engine: &'static str, outage: &str) {
    let config = stack.full_config().expect("the full profile");
    let gate = match outage {
        "refused" => {
            let strata::config::KvConfig::Redis(redis) = &config.kv else {
                panic!("the full profile's kv is Redis");
            };
            let upstream = url::Url::parse(&redis.url).expect("kv.url");
            let upstream = format!(
                "{}:{}",
                upstream.host_str().expect("host"),
                upstream.port().expect("port")
            );
            Some(Gate::open(&upstream).await)
        }
        _ => None,
    };
    let gated_url = gate
        .as_ref()
        .map(|g| format!("redis://default@127.0.0.1:{}/0", g.port()));
    let mut env = vec![
        ("STRATA_SAGAS__SWEEP_INTERVAL", "500ms"),
        ("STRATA_LOG", "warn,strata::platform::sagas=info"),
    ];
    if let Some(url) = &gated_url {
        env.push(("STRATA_KV__URL", url));
    }
    let server = stack.serve(&env).await;
    create_dataset(&server, DATASET).await;
    let before = "hx-before";
    let answer = server
        .call("POST", "/v1/runs", Some(&registration(before, "pytorch")))
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let (_, healthy) = timed(&server, "GET", &format!("/v1/models/{before}"), None).await;
    // `before` was read while healthy, so its run and config are cached;
    // `cold` never was.
    let cold = "hx-cold";
    let answer = server
        .call("POST", "/v1/runs", Some(&registration(cold, "pytorch")))
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);

    let down = match gate {
        Some(gate) => {
            gate.close().await;
            Outage::Refused(gate)
        }
        None => Outage::Paused(match engine {
            "kv" => "redis",
            _ => "mongo",
        }),
    };
    let paused = match &down {
        Outage::Paused(service) => Some(Paused::pause(service)),
        Outage::Refused(_) => None,
    };
    let what = format!("{engine} {outage}");

    let (warm, _) = timed(&server, "GET", &format!("/v1/models/{before}"), None).await;
    let (info, info_took) = timed(&server, "GET", &format!("/v1/models/{cold}"), None).await;
    let (info_again, info_again_took) =
        timed(&server, "GET", &format!("/v1/models/{cold}"), None).await;
    let during = "hx-during";
    let request = registration(during, "pytorch");
    let (registered, register_took) = timed(&server, "POST", "/v1/runs", Some(&request)).await;
    let (ready, ready_took) = timed(&server, "GET", "/readyz", None).await;
    let (runs, runs_took) = timed(&server, "GET", "/v1/runs?page_size=5", None).await;

    drop(paused);
    if let Outage::Refused(gate) = &down {
        gate.reopen().await;
    }
    let resumed = Instant::now();

    report(&format!(
        "hostile[full]: {what}: GET /v1/models/ID {} in {info_took:.2?} (again {} in \
         {info_again_took:.2?}; {healthy:.2?} when healthy), header {:?}; \
         POST /v1/runs {} in {register_took:.2?}; GET /readyz {} in {ready_took:.2?}; \
         GET /v1/runs {} in {runs_took:.2?}",
        info.status,
        info_again.status,
        info.header("x-strata-degraded"),
        registered.status,
        ready.status,
        runs.status,
    ));
    report(&format!(
        "hostile[full]:   {what}: POST /v1/runs answered {:?}",
        registered.body
    ));

    // Model info of a model read before: its config comes from the cache,
    // complete; its counters are always read live.
    assert_eq!(warm.status, 200, "{what}: {:?}", warm.body);
    if engine == "documents" {
        assert_eq!(
            warm.header("x-strata-degraded"),
            None,
            "{what}: {:?}",
            warm.headers
        );
        assert!(warm.body["config"].is_object(), "{:?}", warm.body);
        assert_eq!(warm.header("x-strata-cache"), Some("run=l1,config=l1"));
    } else {
        assert_eq!(warm.header("x-strata-degraded"), Some(engine));
    }
    // Model info of one never read: the run and what the other engine
    // holds, degraded.
    for answer in [&info, &info_again] {
        assert_eq!(answer.status, 200, "{what}: {:?}", answer.body);
        assert_eq!(
            answer.header("x-strata-degraded"),
            Some(engine),
            "{what}: {:?}",
            answer.headers
        );
        assert_eq!(answer.body["degraded"], true);
        assert_eq!(answer.body["unavailable"], json!([engine]));
        let missing = if engine == "kv" { "counters" } else { "config" };
        assert!(answer.body[missing].is_null(), "{:?}", answer.body);
        assert_eq!(answer.body["run"]["model_id"], cold);
    }
    // A relational-only read is not held up by the other engine.
    assert_eq!(runs.status, 200, "{:?}", runs.body);
    // The registration: never 201 (it cannot have been counted), never a
    // 500; a 503 must mean nothing was kept, a 202 names its saga.
    let saga_id = match registered.status {
        202 => registered.body["id"].as_str().expect("saga id").to_owned(),
        503 => {
            let sagas = sagas_of(&server, during).await;
            assert!(
                sagas.iter().all(is_final) || sagas.is_empty(),
                "{what}: a 503 while the saga is still open: {sagas:?}"
            );
            match sagas.first() {
                Some(saga) => saga["id"].as_str().expect("saga id").to_owned(),
                None => String::new(),
            }
        }
        other => panic!(
            "{what}: POST /v1/runs answered {other}: {:?}",
            registered.body
        ),
    };
    if !saga_id.is_empty() {
        let saga = ended(&server, &saga_id, Duration::from_secs(60)).await;
        report(&format!(
            "hostile[full]:   {what}: the saga ended {} {:.2?} after the engine came back",
            saga["state"],
            resumed.elapsed()
        ));
        if registered.status == 503 {
            assert_eq!(
                saga["state"], "compensated",
                "a 503 keeps nothing: {saga:?}"
            );
        }
    }
    no_open_sagas(&server, Duration::from_secs(60)).await;
    // Engines agree, whichever way it ended.
    let now = found(&server, during).await;
    assert_counted_once(&stack, "pytorch").await;
    let hash = stack.kv_hgetall("counters:registrations:pytorch").await;
    let counted = hash.values().filter(|v| *v == during).count();
    assert_eq!(
        counted,
        usize::from(now != Found::Gone),
        "{what}: {now:?} but counted {counted} times"
    );
    let (info, took) = timed(&server, "GET", &format!("/v1/models/{before}"), None).await;
    assert_eq!(info.status, 200);
    assert_eq!(info.body["degraded"], false, "{what}: {:?}", info.body);
    report(&format!(
        "hostile[full]:   {what}: {during} is {now:?}; model info whole again in {took:.2?}"
    ));
    server.stop().await;
}

mod engine_down {
    use super::*;

    #[tokio::test]
    async fn redis_paused() {
        run_on(super::full().await, |stack| async move {
            let _services = outage::exclusive().await;
            engine_outage(stack, "kv", "paused").await;
        })
        .await;
    }

    #[tokio::test]
    async fn redis_refused() {
        run_on(super::full().await, |stack| async move {
            // Only this test's process goes through the gate.
            let _services = outage::shared().await;
            engine_outage(stack, "kv", "refused").await;
        })
        .await;
    }

    #[tokio::test]
    async fn mongodb_paused() {
        run_on(super::full().await, |stack| async move {
            let _services = outage::exclusive().await;
            engine_outage(stack, "documents", "paused").await;
        })
        .await;
    }
}
