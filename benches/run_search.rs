//! Run search over 100,000 runs on embedded SQLite (a file in a temp dir):
//! a filter with `OR` and `IN`, `order_by accuracy DESC`, 50 runs a page.
//! Target: p99 ≤ 100 ms.
//!
//! Criterion reports the mean and median; every iteration's latency also
//! goes into an HDR histogram, whose p50/p99/max are printed at the end.
//!
//! `cargo bench --bench run_search`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use sea_orm::DatabaseConnection;
use strata::config::Config;
use strata::engines;
use strata::platform::entities::RunStatus;
use strata::platform::registry::{self, NewDataset, RunUpsert};
use strata::platform::search;

const RUNS: u64 = 100_000;
const FILTER: &str = "framework IN ('pytorch', 'xgboost') OR accuracy > 0.95";
const ORDER_BY: &str = "accuracy DESC";
const PAGE_SIZE: u64 = 50;

/// xorshift64*: a seeded generator, so every run of the bench loads the
/// same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

async fn load(db: &DatabaseConnection) {
    let datasets = ["fraud-train-v1", "recommendation-train-v2", "churn-v3"];
    registry::upsert_datasets(
        db,
        datasets
            .iter()
            .map(|name| NewDataset {
                name: (*name).into(),
                ..Default::default()
            })
            .collect(),
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for name in datasets {
        ids.push(registry::dataset_by_name(db, name).await.unwrap().id);
    }
    let frameworks = ["pytorch", "tensorflow", "xgboost", "sklearn", "jax"];
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut rng = Rng(0x5eed);
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..RUNS {
        let status = match rng.below(10) {
            0 => RunStatus::Running,
            1 => RunStatus::Failed,
            _ => RunStatus::Completed,
        };
        let done = status == RunStatus::Completed;
        let started_at = start + chrono::Duration::seconds(i as i64 * 60);
        batch.push(RunUpsert {
            dataset_id: ids[rng.below(ids.len() as u64) as usize],
            model_id: format!("run-{i:06}"),
            model_name: format!("model-{}", rng.below(200)),
            framework: frameworks[rng.below(frameworks.len() as u64) as usize].into(),
            status,
            accuracy: done.then(|| 0.5 + rng.unit() * 0.5),
            loss: done.then(|| rng.unit()),
            training_time_seconds: done.then(|| rng.below(36_000) as i64),
            started_at,
            completed_at: done.then(|| started_at + chrono::Duration::seconds(3600)),
            tags: Default::default(),
        });
        if batch.len() == 10_000 {
            registry::upsert_runs(db, std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    registry::upsert_runs(db, batch).await.unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = rt.block_on(async {
        let db = engines::open_relational(&config).await.unwrap();
        load(&db).await;
        db
    });

    // The first page, and a page deep in the results (reached by token).
    let deep_token = rt.block_on(async {
        let mut token = None;
        for _ in 0..100 {
            let page = search::search_runs(&db, FILTER, ORDER_BY, PAGE_SIZE, token.as_deref())
                .await
                .unwrap();
            assert_eq!(page.runs.len() as u64, PAGE_SIZE);
            token = page.next_page_token;
        }
        token
    });

    let mut group = c.benchmark_group("run_search");
    group.measurement_time(Duration::from_secs(10));
    let mut histograms = Vec::new();
    for (name, token) in [("first_page", None), ("page_101", deep_token)] {
        let histogram = Arc::new(Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
        ));
        let (db, recorded) = (db.clone(), histogram.clone());
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (db, recorded, token) = (db.clone(), recorded.clone(), token.clone());
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        let page =
                            search::search_runs(&db, FILTER, ORDER_BY, PAGE_SIZE, token.as_deref())
                                .await
                                .unwrap();
                        let took = started.elapsed();
                        assert_eq!(page.runs.len() as u64, PAGE_SIZE);
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
        histograms.push((name, histogram));
    }
    group.finish();

    for (name, histogram) in histograms {
        let h = histogram.lock().unwrap();
        println!(
            "run_search/{name}: {} searches over {RUNS} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 100 ms)",
            h.len(),
            h.value_at_quantile(0.50) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
        );
    }
    rt.block_on(async { db.close().await.unwrap() });
}

criterion_group!(benches, bench);
criterion_main!(benches);
