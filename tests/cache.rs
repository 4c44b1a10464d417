//! The three-tier cache, one suite run over each key-value engine as L2:
//! the embedded store, and Redis (with `STRATA_TEST_FULL=1`) under a key
//! prefix of each test's own.
//!
//! Time is a hand-driven clock ([`ManualClock`]) wherever freshness
//! matters; loads that must be slow wait on a [`Notify`] the test releases;
//! the backplane is awaited on its own counters, never on a sleep.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use strata::ErrorKind;
use strata::cache::{
    Backplane, BatchAnswers, CacheSettings, Clock, Invalidation, Tier, TieredCache,
};
use strata::config::KvConfig;
use strata::engines::kv::embedded::{EmbeddedKv, EmbeddedKvOptions};
use strata::engines::kv::redis::RedisKv;
use strata::engines::kv::{
    Command, KvInfo, KvStore, KvStoreExt, PubSubMessage, Reply, ScanCursor, ScanOptions, ScanPage,
    Subscription, SubscriptionFeed,
};
use strata::retry::RetryPolicy;
use tokio::sync::Notify;

use common::faulty::SwitchableKv;

/// A clock the test moves.
#[derive(Clone)]
struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(AtomicU64::new(1_700_000_000_000)))
    }
    fn clock(&self) -> Clock {
        let now = Arc::clone(&self.0);
        Arc::new(move || now.load(Ordering::SeqCst))
    }
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct Env {
    kv: Arc<dyn KvStore>,
    /// A unique cache name per test, so Redis cases never meet.
    name: String,
}

impl Env {
    fn settings() -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_secs(60),
            jitter: 0.0,
            negative_ttl: Duration::from_secs(5),
            fail_safe_max_age: Duration::from_secs(600),
            soft_timeout: Duration::from_millis(100),
            hard_timeout: Duration::from_secs(5),
            l2_timeout: Duration::from_secs(2),
            eager_refresh: 0.0,
            ..CacheSettings::default()
        }
    }

    fn cache(&self, clock: &ManualClock, settings: CacheSettings) -> TieredCache<String> {
        TieredCache::builder(&self.name)
            .settings(settings)
            .l2(Arc::clone(&self.kv))
            .clock(clock.clock())
            .build()
            .unwrap()
    }

    fn cache_on(
        &self,
        clock: &ManualClock,
        settings: CacheSettings,
        backplane: &Backplane,
    ) -> TieredCache<String> {
        TieredCache::builder(&self.name)
            .settings(settings)
            .l2(Arc::clone(&self.kv))
            .backplane(backplane)
            .clock(clock.clock())
            .build()
            .unwrap()
    }

    async fn backplane(&self) -> Backplane {
        let backplane = Backplane::start(
            Arc::clone(&self.kv),
            format!("{}:bp", self.name),
            RetryPolicy::default(),
        );
        assert!(backplane.connected(Duration::from_secs(10)).await);
        backplane
    }
}

async fn embedded() -> Option<Env> {
    let kv = EmbeddedKv::new(EmbeddedKvOptions {
        max_memory: 64 << 20,
        ..Default::default()
    });
    Some(Env {
        kv: Arc::new(kv),
        name: common::unique_name("c"),
    })
}

async fn redis() -> Option<Env> {
    let config = common::full_profile("cache")?;
    let KvConfig::Redis(mut config) = config.kv else {
        panic!("config/full.toml: kv.kind is not \"redis\"");
    };
    config.key_prefix = format!("{}:", common::unique_name("tc"));
    let kv = RedisKv::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Some(Env {
        kv: Arc::new(kv),
        name: common::unique_name("c"),
    })
}

async fn run_case<C, F>(setup: impl Future<Output = Option<Env>>, case: C)
where
    C: FnOnce(Env) -> F,
    F: Future<Output = ()>,
{
    let Some(env) = setup.await else { return };
    let kv = Arc::clone(&env.kv);
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(case(env))).await;
    let cleaned = kv.delete_pattern("*").await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    cleaned.expect("cleanup");
}

macro_rules! cache_cases {
    ($backend:ident, $setup:expr; $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    run_case($setup, super::$case).await
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($backend:ident, $setup:expr) => {
        cache_cases!($backend, $setup;
            a_miss_loads_then_l1_then_l2_answers,
            concurrent_misses_load_once_per_process,
            a_cold_key_on_ten_instances_loads_once,
            not_found_is_remembered_briefly,
            freshness_ends_after_ttl_and_jitter_stays_in_bounds,
            an_entry_of_another_format_is_a_miss,
            a_batch_reads_l2_in_one_trip_and_loads_once,
            a_batch_gives_per_key_errors,
            set_writes_through_and_reaches_other_instances,
            invalidation_reaches_every_instance,
            a_tag_invalidates_its_entries_everywhere,
            clear_empties_every_tier,
            a_failing_load_serves_the_stale_value,
            a_slow_load_serves_stale_and_refreshes_in_the_background,
            a_load_without_fallback_is_bounded_by_the_hard_timeout,
            eager_refresh_reloads_a_hot_key_before_it_expires,
            an_invalidation_during_a_load_is_not_undone,
            l1_stays_within_its_bound,
        );
    };
}

all_cases!(embedded_l2, embedded());
all_cases!(redis_l2, redis());

fn loader(
    count: &Arc<AtomicUsize>,
    value: &str,
) -> impl FnOnce() -> std::future::Ready<strata::Result<Option<String>>> + Send + 'static {
    let count = Arc::clone(count);
    let value = value.to_owned();
    move || {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(value)))
    }
}

fn unused() -> impl FnOnce() -> std::future::Ready<strata::Result<Option<String>>> + Send + 'static
{
    || panic!("the loader must not be called")
}

async fn a_miss_loads_then_l1_then_l2_answers(env: Env) {
    let clock = ManualClock::new();
    let a = env.cache(&clock, Env::settings());
    let loads = Arc::new(AtomicUsize::new(0));
    let first = a.get_or_load("k", loader(&loads, "v1")).await.unwrap();
    assert_eq!(
        (first.value.as_deref(), first.tier),
        (Some("v1"), Tier::Loaded)
    );
    let second = a.get_or_load("k", unused()).await.unwrap();
    assert_eq!(
        (second.value.as_deref(), second.tier),
        (Some("v1"), Tier::L1)
    );
    // Another instance: its own L1 is empty, L2 has the entry.
    let b = env.cache(&clock, Env::settings());
    let third = b.get_or_load("k", unused()).await.unwrap();
    assert_eq!((third.value.as_deref(), third.tier), (Some("v1"), Tier::L2));
    let fourth = b.get_or_load("k", unused()).await.unwrap();
    assert_eq!(fourth.tier, Tier::L1);
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.loads, sa.l1_hits, sa.misses), (1, 1, 1));
    assert_eq!((sb.loads, sb.l2_hits, sb.l1_hits), (0, 1, 1));
}

async fn concurrent_misses_load_once_per_process(env: Env) {
    let clock = ManualClock::new();
    let mut settings = Env::settings();
    settings.distributed_lock = false;
    let cache = env.cache(&clock, settings);
    let loads = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let cache = cache.clone();
        let loads = Arc::clone(&loads);
        let release = Arc::clone(&release);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("hot", move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok(Some("v".to_string()))
                })
                .await
        }));
    }
    // Every caller is waiting once 49 have joined the first one's flight.
    while cache.stats().coalesced < 49 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    for task in tasks {
        let lookup = task.await.unwrap().unwrap();
        assert_eq!(lookup.value.as_deref(), Some("v"));
        assert_eq!(lookup.tier, Tier::Loaded);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().coalesced, 49);
}

async fn a_cold_key_on_ten_instances_loads_once(env: Env) {
    let clock = ManualClock::new();
    let loads = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let instances: Vec<_> = (0..10)
        .map(|_| env.cache(&clock, Env::settings()))
        .collect();
    let mut tasks = Vec::new();
    for cache in &instances {
        let cache = cache.clone();
        let loads = Arc::clone(&loads);
        let (started, release) = (Arc::clone(&started), Arc::clone(&release));
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("cold", move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    release.notified().await;
                    Ok(Some("loaded once".to_string()))
                })
                .await
        }));
    }
    started.notified().await;
    // The other nine are waiting on the lock (or have not reached L2 yet:
    // either way they find the value once it is there).
    while instances.iter().map(|c| c.stats().lock_waits).sum::<u64>() < 9 {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let mut tiers = HashMap::new();
    for task in tasks {
        let lookup = task.await.unwrap().unwrap();
        assert_eq!(lookup.value.as_deref(), Some("loaded once"));
        *tiers.entry(lookup.tier).or_insert(0) += 1;
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "tiers: {tiers:?}");
    assert_eq!(tiers.get(&Tier::Loaded), Some(&1));
    assert_eq!(tiers.get(&Tier::L2), Some(&9));
}

async fn not_found_is_remembered_briefly(env: Env) {
    let clock = ManualClock::new();
    let cache = env.cache(&clock, Env::settings());
    let loads = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&loads);
    let nothing = move || {
        count.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(None))
    };
    let first = cache.get_or_load("absent", nothing.clone()).await.unwrap();
    assert_eq!((first.value, first.tier), (None, Tier::Loaded));
    let second = cache.get_or_load("absent", nothing.clone()).await.unwrap();
    assert_eq!((second.value, second.tier), (None, Tier::L1));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(6));
    let third = cache
        .get_or_load("absent", loader(&loads, "now here"))
        .await
        .unwrap();
    assert_eq!(
        (third.value.as_deref(), third.tier),
        (Some("now here"), Tier::Loaded)
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2);
}

async fn freshness_ends_after_ttl_and_jitter_stays_in_bounds(env: Env) {
    let clock = ManualClock::new();
    let mut settings = Env::settings();
    settings.jitter = 0.5;
    let cache = env.cache(&clock, settings);
    let loads = Arc::new(AtomicUsize::new(0));
    for i in 0..20 {
        cache
            .get_or_load(&format!("k{i}"), loader(&loads, "v"))
            .await
            .unwrap();
    }
    // Before the TTL every entry is fresh; after TTL × 1.5 none is.
    clock.advance(Duration::from_secs(59));
    for i in 0..20 {
        let hit = cache.get_or_load(&format!("k{i}"), unused()).await.unwrap();
        assert_eq!(hit.tier, Tier::L1);
    }
    clock.advance(Duration::from_secs(32));
    for i in 0..20 {
        let again = cache
            .get_or_load(&format!("k{i}"), loader(&loads, "v2"))
            .await
            .unwrap();
        assert_eq!(
            (again.tier, again.value.as_deref()),
            (Tier::Loaded, Some("v2"))
        );
    }
    assert_eq!(loads.load(Ordering::SeqCst), 40);
}

async fn an_entry_of_another_format_is_a_miss(env: Env) {
    let clock = ManualClock::new();
    let cache = env.cache(&clock, Env::settings());
    let l2_key = format!("cache:{}:v:k", env.name);
    env.kv
        .set(&l2_key, bytes::Bytes::from_static(b"\x09not ours"))
        .await
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let lookup = cache.get_or_load("k", loader(&loads, "v")).await.unwrap();
    assert_eq!(
        (lookup.tier, lookup.value.as_deref()),
        (Tier::Loaded, Some("v"))
    );
    // It was replaced by an entry this version reads.
    let other = env.cache(&clock, Env::settings());
    assert_eq!(
        other.get_or_load("k", unused()).await.unwrap().tier,
        Tier::L2
    );
}

fn batch_loader(
    calls: &Arc<AtomicUsize>,
    asked: &Arc<std::sync::Mutex<Vec<String>>>,
) -> impl FnOnce(Vec<String>) -> std::future::Ready<strata::Result<BatchAnswers<String>>> + Send + 'static
{
    let calls = Arc::clone(calls);
    let asked = Arc::clone(asked);
    move |keys: Vec<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        asked.lock().unwrap().extend(keys.iter().cloned());
        let answers = keys
            .into_iter()
            .map(|k| {
                let value = if k.starts_with("none") {
                    None
                } else {
                    Some(format!("{k}!"))
                };
                (k, Ok(value))
            })
            .collect();
        std::future::ready(Ok(answers))
    }
}

async fn a_batch_reads_l2_in_one_trip_and_loads_once(env: Env) {
    let clock = ManualClock::new();
    let a = env.cache(&clock, Env::settings());
    let b = env.cache(&clock, Env::settings());
    let loads = Arc::new(AtomicUsize::new(0));
    // k0 in a's L1; k1 in L2 only (loaded through b); k2..k4 nowhere.
    a.get_or_load("k0", loader(&loads, "k0!")).await.unwrap();
    b.get_or_load("k1", loader(&loads, "k1!")).await.unwrap();
    let keys: Vec<String> = ["k0", "k1", "k2", "none3", "k4", "k2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let answers = a
        .get_or_load_many(&keys, batch_loader(&calls, &asked))
        .await;
    let got: Vec<(String, Option<String>, Tier)> = answers
        .into_iter()
        .map(|(k, r)| {
            let r = r.unwrap();
            (k, r.value, r.tier)
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("k0".into(), Some("k0!".into()), Tier::L1),
            ("k1".into(), Some("k1!".into()), Tier::L2),
            ("k2".into(), Some("k2!".into()), Tier::Loaded),
            ("none3".into(), None, Tier::Loaded),
            ("k4".into(), Some("k4!".into()), Tier::Loaded),
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        *asked.lock().unwrap(),
        vec!["k2".to_string(), "none3".into(), "k4".into()]
    );
    // All of them are cached now, "not found" included.
    let again = a
        .get_or_load_many(&keys, |_| async { panic!("no load") })
        .await;
    assert!(
        again
            .iter()
            .all(|(_, r)| r.as_ref().unwrap().tier == Tier::L1)
    );
}

async fn a_batch_gives_per_key_errors(env: Env) {
    let clock = ManualClock::new();
    let cache = env.cache(&clock, Env::settings());
    let keys: Vec<String> = ["good", "bad", "forgotten"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let answers = cache
        .get_or_load_many(&keys, |_| async {
            let mut answers: BatchAnswers<String> = HashMap::new();
            answers.insert("good".into(), Ok(Some("g".into())));
            answers.insert("bad".into(), Err(strata::Error::invalid("bad key")));
            Ok(answers)
        })
        .await;
    assert_eq!(answers[0].1.as_ref().unwrap().value.as_deref(), Some("g"));
    assert_eq!(
        answers[1].1.as_ref().unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        answers[2].1.as_ref().unwrap_err().kind(),
        ErrorKind::Internal
    );
    // A failing loader fails each missing key, not the batch.
    let failed = cache
        .get_or_load_many(&keys, |_| async {
            Err(strata::Error::new(ErrorKind::Unavailable, "down"))
        })
        .await;
    assert_eq!(failed[0].1.as_ref().unwrap().tier, Tier::L1);
    assert_eq!(
        failed[1].1.as_ref().unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(
        failed[2].1.as_ref().unwrap_err().kind(),
        ErrorKind::Unavailable
    );
}

/// Waits until `backplane` has received `n` messages from other instances.
async fn received(backplane: &Backplane, n: u64) {
    assert!(
        backplane
            .wait_until(|s| s.received >= n, Duration::from_secs(10))
            .await,
        "the invalidation reached the other instance"
    );
}

async fn set_writes_through_and_reaches_other_instances(env: Env) {
    let clock = ManualClock::new();
    let (bp_a, bp_b) = (env.backplane().await, env.backplane().await);
    let a = env.cache_on(&clock, Env::settings(), &bp_a);
    let b = env.cache_on(&clock, Env::settings(), &bp_b);
    let loads = Arc::new(AtomicUsize::new(0));
    b.get_or_load("k", loader(&loads, "old")).await.unwrap();
    assert_eq!(b.get_or_load("k", unused()).await.unwrap().tier, Tier::L1);
    assert!(a.set("k", "new".into(), &[]).await.unwrap());
    received(&bp_b, 1).await;
    let seen = b.get_or_load("k", unused()).await.unwrap();
    assert_eq!((seen.value.as_deref(), seen.tier), (Some("new"), Tier::L2));
    assert_eq!(b.stats().backplane_messages, 1);
}

async fn invalidation_reaches_every_instance(env: Env) {
    let clock = ManualClock::new();
    let (bp_a, bp_b) = (env.backplane().await, env.backplane().await);
    let a = env.cache_on(&clock, Env::settings(), &bp_a);
    let b = env.cache_on(&clock, Env::settings(), &bp_b);
    let loads = Arc::new(AtomicUsize::new(0));
    a.get_or_load("k", loader(&loads, "v1")).await.unwrap();
    b.get_or_load("k", unused()).await.unwrap();
    assert!(a.invalidate("k").await);
    received(&bp_b, 1).await;
    let after = b.get_or_load("k", loader(&loads, "v2")).await.unwrap();
    assert_eq!(
        (after.value.as_deref(), after.tier),
        (Some("v2"), Tier::Loaded)
    );
    assert_eq!(loads.load(Ordering::SeqCst), 2);
    // a's own L1 dropped it at once, and L2 now has v2.
    assert_eq!(
        a.get_or_load("k", unused()).await.unwrap().value.as_deref(),
        Some("v2")
    );
}

async fn a_tag_invalidates_its_entries_everywhere(env: Env) {
    let clock = ManualClock::new();
    let (bp_a, bp_b) = (env.backplane().await, env.backplane().await);
    let a = env.cache_on(&clock, Env::settings(), &bp_a);
    let b = env.cache_on(&clock, Env::settings(), &bp_b);
    let loads = Arc::new(AtomicUsize::new(0));
    let user1 = vec!["user:1".to_string()];
    a.get_or_load_tagged("p1", &user1, loader(&loads, "x"))
        .await
        .unwrap();
    a.get_or_load_tagged("p2", &user1, loader(&loads, "y"))
        .await
        .unwrap();
    a.get_or_load_tagged("p3", &["user:2".to_string()], loader(&loads, "z"))
        .await
        .unwrap();
    for key in ["p1", "p2", "p3"] {
        assert_eq!(b.get_or_load(key, unused()).await.unwrap().tier, Tier::L2);
    }
    assert!(a.invalidate_tag("user:1").await);
    received(&bp_b, 1).await;
    // Gone from b's L1 and from L2: b loads it again.
    let p1 = b.get_or_load("p1", loader(&loads, "x2")).await.unwrap();
    assert_eq!(
        (p1.tier, p1.value.as_deref()),
        (Tier::Loaded, Some("x2")),
        "b: p1"
    );
    let p2 = a.get_or_load("p2", loader(&loads, "y2")).await.unwrap();
    assert_eq!(
        (p2.tier, p2.value.as_deref()),
        (Tier::Loaded, Some("y2")),
        "a: p2"
    );
    for (cache, name) in [(&a, "a"), (&b, "b")] {
        let p3 = cache.get_or_load("p3", unused()).await.unwrap();
        assert_eq!(p3.tier, Tier::L1, "{name}: p3 keeps its entry");
    }
}

async fn clear_empties_every_tier(env: Env) {
    let clock = ManualClock::new();
    let (bp_a, bp_b) = (env.backplane().await, env.backplane().await);
    let a = env.cache_on(&clock, Env::settings(), &bp_a);
    let b = env.cache_on(&clock, Env::settings(), &bp_b);
    let loads = Arc::new(AtomicUsize::new(0));
    for i in 0..5 {
        a.get_or_load(&format!("k{i}"), loader(&loads, "v"))
            .await
            .unwrap();
        b.get_or_load(&format!("k{i}"), unused()).await.unwrap();
    }
    assert!(a.clear().await);
    received(&bp_b, 1).await;
    assert!(
        env.kv
            .scan_all(&format!("cache:{}:v:*", env.name))
            .await
            .unwrap()
            .is_empty()
    );
    let again = b.get_or_load("k0", loader(&loads, "w")).await.unwrap();
    assert_eq!(again.tier, Tier::Loaded);
}

async fn a_failing_load_serves_the_stale_value(env: Env) {
    let clock = ManualClock::new();
    let cache = env.cache(&clock, Env::settings());
    let loads = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load("k", loader(&loads, "good"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(120));
    let stale = cache
        .get_or_load("k", || async {
            Err(strata::Error::new(
                ErrorKind::Unavailable,
                "the source is down",
            ))
        })
        .await
        .unwrap();
    assert_eq!(
        (stale.value.as_deref(), stale.tier),
        (Some("good"), Tier::Stale)
    );
    assert!(stale.degraded);
    assert_eq!(stale.age, Duration::from_secs(120));
    // Another instance finds the stale entry in L2 the same way.
    let other = env.cache(&clock, Env::settings());
    let stale = other
        .get_or_load("k", || async {
            Err(strata::Error::new(ErrorKind::Unavailable, "down"))
        })
        .await
        .unwrap();
    assert_eq!(stale.tier, Tier::Stale);
    // Past the fail-safe age, the error is the answer.
    clock.advance(Duration::from_secs(600));
    let err = cache
        .get_or_load("k", || async {
            Err(strata::Error::new(ErrorKind::Unavailable, "still down"))
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(cache.stats().stale_served, 1);
}

async fn a_slow_load_serves_stale_and_refreshes_in_the_background(env: Env) {
    let clock = ManualClock::new();
    let cache = env.cache(&clock, Env::settings());
    let loads = Arc::new(AtomicUsize::new(0));
    cache.get_or_load("k", loader(&loads, "old")).await.unwrap();
    clock.advance(Duration::from_secs(61));
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let slow = cache
        .get_or_load("k", move || async move {
            gate.notified().await;
            Ok(Some("new".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(
        (slow.value.as_deref(), slow.tier),
        (Some("old"), Tier::Stale)
    );
    release.notify_one();
    // The load went on: this lookup joins it, or finds its result in L1.
    let after = cache.get_or_load("k", unused()).await.unwrap();
    assert_eq!(after.value.as_deref(), Some("new"));
    assert!(matches!(after.tier, Tier::Loaded | Tier::L1), "{after:?}");
}

async fn a_load_without_fallback_is_bounded_by_the_hard_timeout(env: Env) {
    let clock = ManualClock::new();
    let mut settings = Env::settings();
    settings.hard_timeout = Duration::from_millis(300);
    settings.soft_timeout = Duration::from_millis(50);
    let cache = env.cache(&clock, settings);
    let started = std::time::Instant::now();
    let err = cache
        .get_or_load("never", std::future::pending)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

async fn eager_refresh_reloads_a_hot_key_before_it_expires(env: Env) {
    let clock = ManualClock::new();
    let mut settings = Env::settings();
    settings.eager_refresh = 0.5;
    let cache = env.cache(&clock, settings);
    let loads = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load("hot", loader(&loads, "v1"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(40));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let hit = cache
        .get_or_load("hot", move || async move {
            let _ = tx.send(());
            Ok(Some("v2".to_string()))
        })
        .await
        .unwrap();
    // Answered at once from L1, the refresh runs behind it.
    assert_eq!((hit.value.as_deref(), hit.tier), (Some("v1"), Tier::L1));
    rx.await.expect("the refresh ran");
    // Past the first load's freshness (60 s), the refreshed entry (loaded
    // at 40 s) still answers, not yet old enough to be refreshed itself.
    clock.advance(Duration::from_secs(25));
    // (joining the refresh if it is still storing its result).
    let later = cache.get_or_load("hot", unused()).await.unwrap();
    assert_eq!(later.value.as_deref(), Some("v2"));
    assert!(matches!(later.tier, Tier::L1 | Tier::Loaded), "{later:?}");
    assert_eq!(cache.stats().eager_refreshes, 1);
}

async fn an_invalidation_during_a_load_is_not_undone(env: Env) {
    let clock = ManualClock::new();
    let cache = env.cache(&clock, Env::settings());
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (s, r) = (Arc::clone(&started), Arc::clone(&release));
    let reader = cache.clone();
    let load = tokio::spawn(async move {
        reader
            .get_or_load("row", move || async move {
                s.notify_one();
                r.notified().await;
                Ok(Some("read before the update".to_string()))
            })
            .await
    });
    started.notified().await;
    assert!(cache.invalidate("row").await);
    release.notify_one();
    let answered = load.await.unwrap();
    // The slow reader may get the old value (or a stale fallback), but it
    // is not stored: the next lookup loads again.
    assert!(answered.is_ok() || answered.is_err());
    let loads = Arc::new(AtomicUsize::new(0));
    let next = cache
        .get_or_load("row", loader(&loads, "after the update"))
        .await
        .unwrap();
    assert_eq!(
        (next.value.as_deref(), next.tier),
        (Some("after the update"), Tier::Loaded)
    );
}

async fn l1_stays_within_its_bound(env: Env) {
    let clock = ManualClock::new();
    let mut settings = Env::settings();
    settings.l1_capacity = bytesize::ByteSize::kib(16);
    let cache = env.cache(&clock, settings);
    let loads = Arc::new(AtomicUsize::new(0));
    let big = "x".repeat(500);
    for i in 0..200 {
        cache
            .get_or_load(&format!("k{i}"), loader(&loads, &big))
            .await
            .unwrap();
    }
    let stats = cache.stats();
    assert!(stats.l1_bytes <= 16 * 1024, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    // Evicted entries come back from L2, not from the loader.
    let back = cache.get_or_load("k0", unused()).await.unwrap();
    assert_eq!(back.tier, Tier::L2);
}

// --- Not per backend -------------------------------------------------------

#[tokio::test]
async fn l2_down_serves_from_l1_and_the_loader_degraded() {
    let inner: Arc<dyn KvStore> = Arc::new(EmbeddedKv::new(EmbeddedKvOptions::default()));
    let kv = SwitchableKv::new(inner);
    let clock = ManualClock::new();
    let cache: TieredCache<String> = TieredCache::builder("down")
        .settings(Env::settings())
        .l2(kv.clone())
        .clock(clock.clock())
        .build()
        .unwrap();
    kv.set_down(true);
    let loads = Arc::new(AtomicUsize::new(0));
    let first = cache.get_or_load("k", loader(&loads, "v")).await.unwrap();
    assert_eq!((first.tier, first.degraded), (Tier::Loaded, true));
    let second = cache.get_or_load("k", unused()).await.unwrap();
    assert_eq!(second.tier, Tier::L1);
    let batch = cache
        .get_or_load_many(
            &["k".to_string(), "j".to_string()],
            batch_loader(&loads, &Default::default()),
        )
        .await;
    assert_eq!(batch[1].1.as_ref().unwrap().tier, Tier::Loaded);
    assert!(batch[1].1.as_ref().unwrap().degraded);
    assert!(cache.stats().l2_errors >= 3, "{:?}", cache.stats());
    // An invalidation with L2 down says it did not reach everywhere.
    assert!(!cache.invalidate("k").await);
}

/// An embedded store whose subscriptions the test feeds, lags and ends.
#[derive(Debug)]
struct FedKv {
    inner: Arc<dyn KvStore>,
    feeds: std::sync::Mutex<Vec<SubscriptionFeed>>,
    subscribed: Notify,
}

#[async_trait::async_trait]
impl KvStore for FedKv {
    fn kind(&self) -> &'static str {
        "embedded"
    }
    fn target(&self) -> String {
        "fed".into()
    }
    async fn ping(&self) -> strata::Result<()> {
        Ok(())
    }
    async fn execute(&self, command: Command) -> strata::Result<Reply> {
        self.inner.execute(command).await
    }
    async fn pipeline(&self, commands: Vec<Command>) -> strata::Result<Vec<strata::Result<Reply>>> {
        self.inner.pipeline(commands).await
    }
    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> strata::Result<ScanPage> {
        self.inner.scan(cursor, options).await
    }
    async fn subscribe(&self, _channels: &[String]) -> strata::Result<Subscription> {
        let (feed, subscription) = Subscription::channel(1, None);
        self.feeds.lock().unwrap().push(feed);
        self.subscribed.notify_one();
        Ok(subscription)
    }
    async fn info(&self) -> strata::Result<KvInfo> {
        self.inner.info().await
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_lagging_or_dropped_subscription_clears_l1_and_resubscribes() {
    let kv = Arc::new(FedKv {
        inner: Arc::new(EmbeddedKv::new(EmbeddedKvOptions::default())),
        feeds: Default::default(),
        subscribed: Notify::new(),
    });
    let backplane = Backplane::start(kv.clone(), "bp", RetryPolicy::default());
    assert!(backplane.connected(Duration::from_secs(5)).await);
    let clock = ManualClock::new();
    let cache: TieredCache<String> = TieredCache::builder("reset")
        .settings(Env::settings())
        .backplane(&backplane)
        .clock(clock.clock())
        .build()
        .unwrap();
    let loads = Arc::new(AtomicUsize::new(0));
    let fill = |cache: &TieredCache<String>| {
        let cache = cache.clone();
        let loads = Arc::clone(&loads);
        async move {
            cache.get_or_load("k", loader(&loads, "v")).await.unwrap();
            assert_eq!(cache.stats().l1_entries, 1);
        }
    };
    fill(&cache).await;
    // Lag: three messages into a buffer of one, before the reader runs
    // (one thread: it cannot run meanwhile).
    {
        let feeds = kv.feeds.lock().unwrap();
        for i in 0..3 {
            let message = PubSubMessage {
                channel: "bp".into(),
                payload: bytes::Bytes::from(format!(
                    r#"{{"from":"other","cache":"none","op":"key","arg":"{i}"}}"#
                )),
            };
            assert!(feeds[0].push(message));
        }
    }
    assert!(
        backplane
            .wait_until(|s| s.resets >= 1, Duration::from_secs(5))
            .await
    );
    assert_eq!(cache.stats().l1_entries, 0, "lagged: L1 cleared");
    assert_eq!(cache.stats().backplane_resets, 1);
    // Dropped: the subscription ends with an error; the backplane clears
    // L1, subscribes again and clears once more.
    fill(&cache).await;
    let feed = kv.feeds.lock().unwrap().remove(0);
    feed.fail(strata::Error::new(
        ErrorKind::Unavailable,
        "connection reset",
    ));
    assert!(
        backplane
            .wait_until(|s| s.resets >= 3 && s.connected, Duration::from_secs(5))
            .await,
        "{:?}",
        backplane.status()
    );
    assert_eq!(cache.stats().l1_entries, 0, "dropped: L1 cleared");
    assert_eq!(kv.feeds.lock().unwrap().len(), 1, "subscribed again");
}

#[test]
fn settings_that_make_no_sense_are_refused_by_name() {
    let s = CacheSettings {
        jitter: 2.0,
        ..Default::default()
    };
    let err = TieredCache::<String>::builder("x")
        .settings(s)
        .build()
        .unwrap_err();
    assert!(err.message().contains("cache.jitter"), "{err}");
    let s = CacheSettings {
        soft_timeout: Duration::from_secs(10),
        hard_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let err = TieredCache::<String>::builder("x")
        .settings(s)
        .build()
        .unwrap_err();
    assert!(err.message().contains("soft_timeout"), "{err}");
}

#[test]
fn invalidations_serialize_compactly() {
    let text = serde_json::to_string(&Invalidation::Key("k".into())).unwrap();
    assert_eq!(text, r#"{"op":"key","arg":"k"}"#);
}

/// A value whose serialization fails.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to serialize"))
    }
}

#[tokio::test]
async fn a_value_that_does_not_encode_is_that_keys_error_not_a_panic() {
    let cache: TieredCache<Unencodable> = TieredCache::builder("unencodable")
        .settings(Env::settings())
        .l2(Arc::new(EmbeddedKv::new(EmbeddedKvOptions::default())))
        .build()
        .unwrap();
    let keys = vec!["a".to_string()];
    let answers = cache
        .get_or_load_many(&keys, |keys| async move {
            Ok(keys
                .into_iter()
                .map(|k| (k, Ok(Some(Unencodable))))
                .collect())
        })
        .await;
    let err = answers[0].1.as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    let single = cache
        .get_or_load("b", || async { Ok(Some(Unencodable)) })
        .await
        .unwrap_err();
    assert_eq!(single.kind(), ErrorKind::Internal, "{single}");
}
