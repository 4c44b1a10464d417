//! `strata bench`'s baselines against the real services: `KvStore` GET
//! beside `redis-benchmark`, sea-orm beside `pgbench -S`. Runs with
//! `STRATA_TEST_FULL=1` (after `scripts/services.sh up`), in a PostgreSQL
//! database and under a Redis key prefix of its own, both removed at the
//! end.

mod common;

use std::time::Duration;

use strata::bench::baseline;
use strata::bench::model::Comparison;
use strata::config::KvConfig;
use strata::engines::kv::KvStoreExt;

const CLIENTS: usize = 4;
const ROUNDS: usize = 2;
const PHASE: Duration = Duration::from_secs(1);

fn assert_measured(c: &Comparison, password: &str) {
    assert_eq!(c.strata_rounds.len(), ROUNDS, "{c:#?}");
    assert_eq!(c.baseline_rounds.len(), ROUNDS, "{c:#?}");
    for side in c.strata_rounds.iter().chain(&c.baseline_rounds) {
        assert!(side.requests > 0, "{c:#?}");
        assert!(side.throughput > 0.0, "{c:#?}");
    }
    for r in [c.throughput_ratio, c.p50_ratio, c.p99_ratio] {
        assert!(r.is_finite() && r > 0.0, "{c:#?}");
    }
    assert_eq!(c.clients, CLIENTS);
    assert!(
        password.is_empty() || !c.command.contains(password),
        "{}",
        c.command
    );
    eprintln!(
        "{}: {}\n  throughput ×{:.2}, p50 ×{:.2}, p99 ×{:.2}\n  strata {:?}\n  tool {:?}",
        c.title,
        c.command,
        c.throughput_ratio,
        c.p50_ratio,
        c.p99_ratio,
        c.strata_rounds,
        c.baseline_rounds
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_baselines_measure_both_sides() {
    let Some(db) = common::TestDb::postgres("bench_baseline").await else {
        return;
    };
    let mut config = db.config.clone();

    // Redis, under a key prefix of its own.
    let KvConfig::Redis(mut redis) = config.kv.clone() else {
        panic!("the full profile's key-value store is Redis");
    };
    redis.key_prefix = format!("{}:", common::unique_name("bench_baseline"));
    config.kv = KvConfig::Redis(redis.clone());
    let kv = strata::engines::open_kv(&config).await.expect("open Redis");
    let redis_get = baseline::redis_get(kv.clone(), &redis, CLIENTS, ROUNDS, PHASE).await;
    let left = kv.scan_all("*").await.expect("scan the test's prefix");
    assert!(left.is_empty(), "keys left behind: {left:?}");
    let redis_password = redis.password.as_ref().map_or("", |p| p.expose());
    assert_measured(&redis_get.expect("redis-get"), redis_password);

    // PostgreSQL, in the test's database; a pool with room for every client.
    config.relational.max_connections = CLIENTS as u32 + 1;
    let pool = strata::engines::open_relational(&config)
        .await
        .expect("open the test database");
    let url = config.relational.url.clone().expect("a postgres URL");
    let password = config.relational.password.as_ref().map(|p| p.expose());
    let pgbench = baseline::pgbench_select(&pool, &url, password, CLIENTS, ROUNDS, PHASE).await;
    pool.close().await.expect("close the pool");
    db.cleanup().await;
    let pgbench = pgbench.expect("pgbench-select");
    assert_measured(&pgbench, password.unwrap_or(""));
    assert!(
        pgbench.command.contains("pgbench -S -M prepared"),
        "{}",
        pgbench.command
    );
}
