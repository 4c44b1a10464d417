//! Reads through the API's router (in process, the whole axum stack but the
//! socket) on the embedded profile, over the seed scenario plus 10,000
//! synthetic runs (`strata seed --runs 10000`) on SQLite in a temp dir:
//!
//! - `get_run`: `GET /v1/runs/{model_id}` (run, dataset, tags, artifacts);
//! - `get_model`: `GET /v1/models/{model_id}` (the run and dataset from
//!   SQLite, the config document and the KV counters, in one call), every
//!   run having a config and counters.
//!
//! Target: p99 ≤ 5 ms. Criterion reports the mean and median; every
//! request's latency also goes into an HDR histogram, whose p50/p99/max are
//! printed at the end.
//!
//! `cargo bench --bench api`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use strata::api;
use strata::config::Config;
use strata::engines::{Engines, KvStoreExt};
use strata::platform::hybrid::model_counters_key;
use strata::platform::{Platform, configs, seed};
use tower::ServiceExt;

const RUNS: u64 = 10_000;

async fn load(engines: &Engines) {
    seed::seed_scenario(engines).await.unwrap();
    seed::seed_synthetic(engines, RUNS, seed::DEFAULT_SEED, &|_| {})
        .await
        .unwrap();
    for i in 1..=RUNS {
        let model_id = seed::synthetic_model_id(i);
        configs::insert_config(
            engines.documents.as_ref(),
            bson::doc! {
                "model_id": &model_id,
                "model_name": "fraud-detector",
                "framework": "pytorch",
                "config": {"training": {"optimizer": "adam", "learning_rate": 0.001, "epochs": 20}},
                "metrics": {"accuracy": 0.95},
            },
        )
        .await
        .unwrap();
        let counters = model_counters_key(&model_id);
        engines
            .kv
            .hincr_by(&counters, "predictions_served", i as i64)
            .await
            .unwrap();
    }
}

/// Benchmarks `GET uri_of(i)`, striding through the runs so that no one row
/// stays hot, and records every latency.
fn bench_get(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    router: &Router,
    name: &'static str,
    uri_of: fn(u64) -> String,
) -> (&'static str, Histogram<u64>) {
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let mut group = c.benchmark_group("api");
    group.measurement_time(Duration::from_secs(10));
    let recorded = histogram.clone();
    group.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (router, recorded) = (router.clone(), recorded.clone());
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let uri = uri_of(1 + (i * 7919) % RUNS);
                    let request = Request::get(uri).body(Body::empty()).unwrap();
                    let started = Instant::now();
                    let response = router.clone().oneshot(request).await.unwrap();
                    let status = response.status();
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    let took = started.elapsed();
                    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
                    assert!(!body.is_empty());
                    total += took;
                    recorded
                        .lock()
                        .unwrap()
                        .saturating_record(took.as_micros() as u64);
                }
                total
            }
        })
    });
    group.finish();
    let h = histogram.lock().unwrap().clone();
    (name, h)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let (engines, router) = rt.block_on(async {
        let engines = Engines::open(&config).await.unwrap();
        let platform = Platform::with_engines(engines.clone(), config.sagas)
            .await
            .unwrap();
        load(&engines).await;
        let serving = strata::serving::Serving::open(&platform, &config.serving)
            .await
            .unwrap();
        let pipelines = strata::pipelines::Pipelines::open(&platform, &config.pipelines)
            .await
            .unwrap();
        let scenario =
            strata::analytics::scenario::Scenario::open(&platform, &pipelines, &config.analytics)
                .unwrap();
        let router = api::router(platform, serving, pipelines, scenario, &config.api);
        (engines, router)
    });

    let results = [
        bench_get(c, &rt, &router, "get_run", |i| {
            format!("/v1/runs/{}", seed::synthetic_model_id(i))
        }),
        bench_get(c, &rt, &router, "get_model", |i| {
            format!("/v1/models/{}", seed::synthetic_model_id(i))
        }),
    ];
    for (name, h) in results {
        println!(
            "api/{name}: {} requests over {RUNS} runs, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 <= 5 ms)",
            h.len(),
            h.value_at_quantile(0.50) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
        );
    }
    rt.block_on(async { engines.relational.close().await.unwrap() });
}

criterion_group!(benches, bench);
criterion_main!(benches);
