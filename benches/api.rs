//! `GET /v1/runs/{model_id}` through the API's router (in process, the
//! whole axum stack but the socket) on the embedded profile, over 10,000
//! runs with tags on SQLite in a temp dir. Target: p99 ≤ 5 ms.
//!
//! Criterion reports the mean and median; every request's latency also goes
//! into an HDR histogram, whose p50/p99/max are printed at the end.
//!
//! `cargo bench --bench api`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use strata::api;
use strata::config::Config;
use strata::engines::Engines;
use strata::platform::entities::RunStatus;
use strata::platform::registry::{self, NewDataset, RunUpsert};
use tower::ServiceExt;

const RUNS: u64 = 10_000;

async fn load(engines: &Engines) {
    let db = &engines.relational;
    let dataset = registry::create_dataset(
        db,
        NewDataset {
            name: "fraud-train-v1".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let runs = (0..RUNS)
        .map(|i| RunUpsert {
            dataset_id: dataset.id,
            model_id: format!("run-{i:06}"),
            model_name: format!("model-{}", i % 200),
            framework: ["pytorch", "xgboost", "sklearn"][(i % 3) as usize].into(),
            status: RunStatus::Completed,
            accuracy: Some(0.5 + (i % 500) as f64 / 1000.0),
            loss: Some(0.1),
            training_time_seconds: Some(600),
            started_at: start + chrono::Duration::seconds(i as i64),
            completed_at: Some(start + chrono::Duration::seconds(i as i64 + 600)),
            tags: if i % 10 == 0 {
                BTreeMap::from([("team".to_owned(), "risk".to_owned())])
            } else {
                BTreeMap::new()
            },
        })
        .collect();
    registry::upsert_runs(db, runs).await.unwrap();
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
        load(&engines).await;
        let router = api::router(engines.clone(), &config.api);
        (engines, router)
    });

    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
    ));
    let mut group = c.benchmark_group("api");
    group.measurement_time(Duration::from_secs(10));
    let recorded = histogram.clone();
    group.bench_function("get_run", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (router, recorded) = (router.clone(), recorded.clone());
            async move {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    // Stride through the runs so that no one row stays hot.
                    let uri = format!("/v1/runs/run-{:06}", (i * 7919) % RUNS);
                    let request = Request::get(uri).body(Body::empty()).unwrap();
                    let started = Instant::now();
                    let response = router.clone().oneshot(request).await.unwrap();
                    let status = response.status();
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    let took = started.elapsed();
                    assert_eq!(status, StatusCode::OK);
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

    let h = histogram.lock().unwrap();
    println!(
        "api/get_run: {} requests over {RUNS} runs, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 <= 5 ms)",
        h.len(),
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
    );
    rt.block_on(async { engines.relational.close().await.unwrap() });
}

criterion_group!(benches, bench);
criterion_main!(benches);
