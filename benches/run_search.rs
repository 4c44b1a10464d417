//! Run search as the API runs it (`GET /v1/runs`: `search::search_runs`
//! with the API's page size of 50), over 100,000 synthetic runs (`strata
//! seed --runs 100000`) on embedded SQLite (a file in a temp dir):
//!
//! - `default`: no filter, the default order (`started_at DESC`);
//! - `accuracy`: no filter, `order_by=accuracy DESC`;
//! - `filtered`: `framework IN ('pytorch') OR accuracy > 0.95`, default
//!   order (the query of the issue that brought the order indexes);
//!
//! each for the first page and for page 100, reached by following the page
//! tokens. Target: p99 ≤ 5 ms for each.
//!
//! Criterion reports the mean and median; every iteration's latency also
//! goes into an HDR histogram, whose p50/p99/max are printed at the end.
//!
//! `cargo bench --bench run_search`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use sea_orm::DatabaseConnection;
use strata::config::Config;
use strata::engines::Engines;
use strata::platform::{search, seed};

const RUNS: u64 = 100_000;
/// The API's default page size.
const PAGE_SIZE: u64 = 50;
/// The deep page measured, reached by following tokens.
const DEEP_PAGE: usize = 100;

/// `(name, filter, order_by)` of each search measured.
const SEARCHES: [(&str, &str, &str); 3] = [
    ("default", "", ""),
    ("accuracy", "", "accuracy DESC"),
    (
        "filtered",
        "framework IN ('pytorch') OR accuracy > 0.95",
        "",
    ),
];

/// The seed scenario plus `RUNS` synthetic runs, as `strata seed --runs
/// 100000` loads them (statistics refreshed at the end).
async fn load(engines: &Engines) {
    seed::seed_scenario(engines).await.unwrap();
    seed::seed_synthetic(engines, RUNS, seed::DEFAULT_SEED, &|_| {})
        .await
        .unwrap();
}

/// The token of page `page` (1-based) of a search.
async fn token_of_page(
    db: &DatabaseConnection,
    filter: &str,
    order_by: &str,
    page: usize,
) -> Option<String> {
    let mut token = None;
    for _ in 1..page {
        let found = search::search_runs(db, filter, order_by, PAGE_SIZE, token.as_deref())
            .await
            .unwrap();
        assert_eq!(found.runs.len() as u64, PAGE_SIZE);
        token = found.next_page_token;
    }
    token
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

    let mut group = c.benchmark_group("run_search");
    group.measurement_time(Duration::from_secs(5));
    let mut histograms = Vec::new();
    for (search_name, filter, order_by) in SEARCHES {
        for (page_name, page) in [("page_1", 1), ("page_100", DEEP_PAGE)] {
            let token = rt.block_on(token_of_page(&db, filter, order_by, page));
            let name = format!("{search_name}/{page_name}");
            let histogram = Arc::new(Mutex::new(
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap(),
            ));
            let (db, recorded) = (db.clone(), histogram.clone());
            group.bench_function(&name, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let (db, recorded, token) = (db.clone(), recorded.clone(), token.clone());
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let started = Instant::now();
                            let found = search::search_runs(
                                &db,
                                filter,
                                order_by,
                                PAGE_SIZE,
                                token.as_deref(),
                            )
                            .await
                            .unwrap();
                            let took = started.elapsed();
                            assert_eq!(found.runs.len() as u64, PAGE_SIZE);
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
    }
    group.finish();

    for (name, histogram) in histograms {
        let h = histogram.lock().unwrap();
        println!(
            "run_search/{name}: {} searches over {RUNS} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 <= 5 ms)",
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
