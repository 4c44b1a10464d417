//! Latency of the embedded key-value store.
//!
//! - `get_present/*`: `GET` of a present key among 10 000, through
//!   `Arc<dyn KvStore>` (`KvStoreExt::get`: a `Command` built and sent
//!   through `execute`, an `async_trait` call, which boxes a future), and
//!   through `EmbeddedKv::get_sync` (no future, no command). Target: ≤ 300
//!   ns median.
//! - `set/trait`, `zadd/trait`: for information. `zadd` updates members of a
//!   10 000-member sorted set, the leaderboard case.
//!
//! Async cases run on a current-thread runtime with `to_async`, which
//! drives all iterations inside one `block_on`, so the figure is the call,
//! not the runtime's entry cost.
//!
//! `cargo bench --bench kv -- get_present`

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use strata::engines::kv::embedded::{EmbeddedKv, EmbeddedKvOptions};
use strata::engines::kv::{KvStore, KvStoreExt};

const KEYS: usize = 10_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn filled_store() -> Arc<EmbeddedKv> {
    let kv = EmbeddedKv::new(EmbeddedKvOptions {
        max_memory: 256 << 20,
        ..Default::default()
    });
    let rt = runtime();
    rt.block_on(async {
        for i in 0..KEYS {
            kv.set(&format!("feature:{i}"), Bytes::from(vec![b'v'; 64]))
                .await
                .expect("set");
        }
        kv.info().await.expect("info");
    });
    Arc::new(kv)
}

fn get_present(c: &mut Criterion) {
    let rt = runtime();
    let kv = filled_store();
    let dyn_kv: Arc<dyn KvStore> = kv.clone();
    let key = "feature:4242";
    assert!(kv.get_sync(key).expect("get").is_some());

    let mut group = c.benchmark_group("get_present");
    group.bench_function("trait", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(dyn_kv.get(black_box(key)).await) })
    });
    group.bench_function("sync", |b| {
        b.iter(|| black_box(kv.get_sync(black_box(key))))
    });
    group.finish();
}

fn set(c: &mut Criterion) {
    let rt = runtime();
    let kv: Arc<dyn KvStore> = filled_store();
    let value = Bytes::from(vec![b'v'; 64]);
    let mut i = 0usize;
    c.bench_function("set/trait", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = format!("feature:{i}");
            let (kv, value) = (&kv, value.clone());
            async move { black_box(kv.set(&key, value).await) }
        })
    });
}

fn zadd(c: &mut Criterion) {
    let rt = runtime();
    let kv: Arc<dyn KvStore> = filled_store();
    rt.block_on(async {
        let members = (0..KEYS)
            .map(|i| (i as f64, format!("player:{i}")))
            .collect();
        kv.zadd("leaderboard", members).await.expect("zadd");
    });
    let mut i = 0usize;
    c.bench_function("zadd/trait", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % KEYS;
            let member = format!("player:{i}");
            let kv = &kv;
            async move { black_box(kv.zadd("leaderboard", vec![(i as f64 * 1.5, member)]).await) }
        })
    });
}

criterion_group!(benches, get_present, set, zadd);
criterion_main!(benches);
