//! Run search over 100,000 synthetic runs (`strata seed --runs 100000`) on
//! embedded SQLite (a file in a temp dir):
//! a filter with `OR` and `IN`, `order_by accuracy DESC`, 50 runs a page.
//! Target: p99 ≤ 100 ms.
//!
//! Criterion reports the mean and median; every iteration's latency also
//! goes into an HDR histogram, whose p50/p99/max are printed at the end.
//!
//! `cargo bench --bench run_search`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use strata::config::Config;
use strata::engines::Engines;
use strata::platform::{search, seed};

const RUNS: u64 = 100_000;
const FILTER: &str = "framework IN ('pytorch', 'xgboost') OR accuracy > 0.95";
const ORDER_BY: &str = "accuracy DESC";
const PAGE_SIZE: u64 = 50;

/// The seed scenario plus `RUNS` synthetic runs, as `strata seed --runs
/// 100000` loads them.
async fn load(engines: &Engines) {
    seed::seed_scenario(engines).await.unwrap();
    seed::seed_synthetic(engines, RUNS, seed::DEFAULT_SEED, &|_| {})
        .await
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let db = rt.block_on(async {
        let engines = Engines::open(&config).await.unwrap();
        strata::platform::schema::apply(&engines).await.unwrap();
        load(&engines).await;
        engines.relational
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
