//! The `KvStore` conformance suite: one case per contract of
//! `strata::engines::kv`, written once against `Arc<dyn KvStore>` and run per
//! backend by `kv_conformance!`.
//!
//! Redis 7 is the reference: where a case states an exact answer or error
//! message, it is what Redis answers, and the Redis run checks it. The
//! matrices of flags (`ZADD`, `PEXPIRE`) are therefore differential: the
//! same table passes on both backends or the case fails.
//!
//! A backend's setup returns `Option<TestKv>`: `None` when the backend is not
//! configured (a real one prints one line saying it is skipped). Every case
//! names its keys and channels through `TestKv::key`, which puts them under a
//! prefix unique to the test, and `run` deletes `prefix*` when the case ends
//! (also when it fails), so a shared Redis is left as it was found. Prefixes
//! contain no glob characters, so `prefix*` selects exactly the test's keys.
//!
//! `cargo test --test kv_conformance embedded::` runs one backend.

mod common;

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use strata::ErrorKind;
use strata::config::{KvConfig, RedisConfig, with_password};
use strata::engines::kv::embedded::{EmbeddedKv, EmbeddedKvOptions};
use strata::engines::kv::redis::RedisKv;
use strata::engines::kv::{
    Command, ExpireOptions, GetExpiry, KeyType, KvInfo, KvStore, KvStoreExt, Reply, ScanCursor,
    ScanOptions, ScanPage, ScoreBound, SetOptions, Subscription, SubscriptionEvent, Ttl,
    ZAddOptions,
};

/// Which backend a test runs on, to open a second store of the same kind.
#[derive(Clone)]
enum Backend {
    Embedded,
    Redis(RedisConfig),
}

/// One test's handle on a backend: the store and the test's own namespace.
#[derive(Clone)]
struct TestKv {
    kv: Arc<dyn KvStore>,
    prefix: String,
    backend: Backend,
}

impl TestKv {
    fn new(kv: Arc<dyn KvStore>, backend: Backend) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("strata-test:{}:{n}:", std::process::id());
        TestKv {
            kv,
            prefix,
            backend,
        }
    }

    fn store(&self) -> Arc<dyn KvStore> {
        Arc::clone(&self.kv)
    }

    /// Another store of the same backend whose subscriptions buffer
    /// `capacity` messages. Embedded: a store of its own (publish on it);
    /// Redis: another client of the same server and prefix.
    async fn store_with_subscription_capacity(&self, capacity: usize) -> Arc<dyn KvStore> {
        match &self.backend {
            Backend::Embedded => Arc::new(EmbeddedKv::new(EmbeddedKvOptions {
                subscription_capacity: capacity,
                ..Default::default()
            })),
            Backend::Redis(config) => {
                let config = RedisConfig {
                    subscription_capacity: capacity,
                    ..config.clone()
                };
                Arc::new(RedisKv::connect(&config).await.unwrap())
            }
        }
    }

    /// `name` inside this test's namespace.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn keys(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|n| self.key(n)).collect()
    }

    /// Every key of this test, sorted.
    async fn all_keys(&self) -> Vec<String> {
        self.kv
            .scan_all(&format!("{}*", self.prefix))
            .await
            .unwrap()
    }

    /// Deletes everything the test wrote.
    async fn cleanup(&self) -> strata::Result<u64> {
        self.kv.delete_pattern(&format!("{}*", self.prefix)).await
    }
}

/// Runs one case, then cleans up whether it passed or not.
async fn run(t: TestKv, case: impl Future<Output = ()>) {
    let outcome = AssertUnwindSafe(case).catch_unwind().await;
    let cleaned = t.cleanup().await;
    match (outcome, cleaned) {
        (Err(panic), cleaned) => {
            if let Err(e) = cleaned {
                eprintln!("cleanup after a failed case failed too: {e}");
            }
            std::panic::resume_unwind(panic)
        }
        (Ok(()), Err(e)) => panic!("cleanup failed: {e}"),
        (Ok(()), Ok(_)) => {}
    }
}

async fn setup_embedded() -> Option<TestKv> {
    let kv = EmbeddedKv::new(EmbeddedKvOptions {
        max_memory: 64 << 20,
        ..Default::default()
    });
    Some(TestKv::new(Arc::new(kv), Backend::Embedded))
}

/// The Redis of the full profile, under a key prefix of the test's own, or
/// `None` (skipped, said once) unless `STRATA_TEST_FULL=1`.
async fn setup_redis() -> Option<TestKv> {
    let config = common::full_profile("kv_conformance")?;
    let KvConfig::Redis(mut config) = config.kv else {
        panic!("config/full.toml: kv.kind is not \"redis\"");
    };
    config.key_prefix = format!("{}:", common::unique_name("t"));
    let kv = RedisKv::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sweep = PrefixSweep::new(&config);
    Some(TestKv::new(
        Arc::new(SweptRedis { kv, _sweep: sweep }),
        Backend::Redis(config),
    ))
}

/// Deletes every key under a Redis key prefix when dropped: at the end of
/// each Redis test, passed or failed (a panic unwinds through the drop), as
/// a last line behind `run`'s own cleanup. It uses a blocking connection of
/// its own because the test's runtime may be gone by then.
struct PrefixSweep {
    url: String,
    prefix: String,
    timeout: Duration,
}

impl PrefixSweep {
    fn new(config: &RedisConfig) -> Self {
        let url = with_password(&config.url, config.password.as_ref()).expect("Redis URL");
        PrefixSweep {
            url,
            prefix: config.key_prefix.clone(),
            timeout: config.connect_timeout,
        }
    }

    fn sweep(&self) -> ::redis::RedisResult<()> {
        let client = ::redis::Client::open(self.url.as_str())?;
        let mut connection = client.get_connection_with_timeout(self.timeout)?;
        // unique_name() is [a-z0-9_] and the suffix is ':', so the prefix
        // holds no glob characters.
        let pattern = format!("{}*", self.prefix);
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)?;
            if !keys.is_empty() {
                ::redis::cmd("DEL").arg(keys).exec(&mut connection)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl Drop for PrefixSweep {
    fn drop(&mut self) {
        if let Err(e) = self.sweep() {
            eprintln!("could not delete the keys under {}: {e}", self.prefix);
        }
    }
}

/// A `RedisKv` that sweeps its prefix when the last handle on it goes.
#[derive(Debug)]
struct SweptRedis {
    kv: RedisKv,
    _sweep: PrefixSweep,
}

impl std::fmt::Debug for PrefixSweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixSweep")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl KvStore for SweptRedis {
    fn kind(&self) -> &'static str {
        self.kv.kind()
    }
    fn target(&self) -> String {
        self.kv.target()
    }
    async fn ping(&self) -> strata::Result<()> {
        self.kv.ping().await
    }
    async fn execute(&self, command: Command) -> strata::Result<Reply> {
        self.kv.execute(command).await
    }
    async fn pipeline(&self, commands: Vec<Command>) -> strata::Result<Vec<strata::Result<Reply>>> {
        self.kv.pipeline(commands).await
    }
    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> strata::Result<ScanPage> {
        self.kv.scan(cursor, options).await
    }
    async fn subscribe(&self, channels: &[String]) -> strata::Result<Subscription> {
        self.kv.subscribe(channels).await
    }
    async fn info(&self) -> strata::Result<KvInfo> {
        self.kv.info().await
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn names(scored: &[(String, f64)]) -> Vec<String> {
    scored.iter().map(|(m, _)| m.clone()).collect()
}

macro_rules! kv_cases {
    ($setup:expr; $($case:ident),* $(,)?) => {
        $(
            // Multi-threaded so that concurrency cases can actually race.
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(t) = $setup.await else { return };
                run(t.clone(), super::$case(t)).await;
            }
        )*
    };
}

macro_rules! kv_conformance {
    ($backend:ident, $setup:expr) => {
        mod $backend {
            use super::*;
            kv_cases!($setup;
                get_missing_is_none,
                set_then_get,
                set_if_absent_writes_only_when_missing,
                set_if_present_writes_only_when_existing,
                set_with_ttl_expires,
                expired_key_is_gone_for_every_command,
                set_clears_ttl_unless_keep_ttl,
                expire_ttl_persist,
                expire_on_missing_key_is_false,
                mset_then_mget,
                mget_answers_nil_for_other_types,
                del_and_exists_count,
                type_reports_the_value_kind,
                set_overwrites_any_type,
                incr_counts_from_zero,
                incr_on_non_integer_fails_and_keeps_value,
                incr_overflow_fails_and_keeps_value,
                incr_keeps_ttl,
                incr_by_float_adds,
                incr_by_float_rejects_nan_and_infinity,
                hash_set_get_and_getall_sorted,
                hdel_of_last_field_deletes_key,
                hincr_by_counts_and_rejects_non_integer,
                zadd_counts_new_members,
                zadd_rejects_nan,
                zincr_by_adds_to_score,
                zrank_and_zrevrank,
                zrange_accepts_negative_indexes,
                zrange_ties_order_by_member,
                zrangebyscore_exclusive_bounds_and_limit,
                zremrangebyscore_removes_range,
                zrem_of_last_member_deletes_key,
                wrong_type_for_string_commands,
                wrong_type_for_hash_commands,
                wrong_type_for_zset_commands,
                scan_matches_glob_patterns,
                delete_pattern_deletes_only_matches,
                pipeline_answers_in_order_with_failure_in_middle,
                pipeline_isolates_a_command_refused_before_sending,
                compare_and_delete_needs_matching_value,
                publish_reaches_subscriber,
                dropped_subscription_stops_counting,
                concurrent_incr_is_atomic,
                set_get_answers_the_value_before,
                set_get_on_another_type_fails_and_writes_nothing,
                set_refuses_an_expiry_of_zero_or_out_of_range,
                getdel_answers_and_deletes,
                getex_sets_removes_or_keeps_the_expiry,
                msetnx_writes_all_or_none,
                append_and_strlen,
                expire_condition_matrix_matches_redis,
                expire_refuses_flags_and_deadlines_like_redis,
                hash_field_commands,
                hkeys_and_hvals_are_sorted_for_large_hashes,
                hincr_by_float_adds_and_refuses_like_redis,
                zadd_refuses_flag_combinations_like_redis,
                zadd_condition_matrix_matches_redis,
                zcount_counts_within_bounds,
                zrevrangebyscore_descends_with_limit,
                scan_pages_until_the_cursor_is_zero,
                scan_filters_by_type,
                scan_returns_every_key_present_throughout,
                scan_refuses_count_zero_and_unreadable_cursors,
                delete_pattern_deletes_page_by_page,
                pipeline_carries_the_newer_commands,
                slow_subscriber_is_told_how_many_it_missed,
                concurrent_msetnx_writes_one_whole_set,
                lock_acquire_takes_a_free_lock_and_counts_fences,
                lock_acquire_changes_nothing_when_it_fails,
                lock_extend_needs_the_token,
                concurrent_lock_holders_never_overlap,
                rate_limit_allows_the_burst_then_refuses,
                rate_limit_refuses_what_it_cannot_limit,
                concurrent_rate_limit_allows_exactly_the_limit,
                zadd_best_keeps_the_best_score_and_its_earliest_time,
                zadd_best_changes_nothing_when_it_fails,
                concurrent_zadd_best_keeps_the_best,
                hset_if_newer_writes_unless_older,
                hset_if_newer_changes_nothing_when_it_fails,
                concurrent_hset_if_newer_keeps_the_latest,
                pipeline_carries_the_atomic_commands,
            );
        }
    };
}

kv_conformance!(embedded, setup_embedded());
kv_conformance!(redis, setup_redis());

// ---------------------------------------------------------------------------
// Strings and keys

async fn get_missing_is_none(t: TestKv) {
    let kv = t.store();
    assert_eq!(kv.get(&t.key("nope")).await.unwrap(), None);
    assert_eq!(kv.del(&[t.key("nope")]).await.unwrap(), 0);
}

async fn set_then_get(t: TestKv) {
    let kv = t.store();
    let k = t.key("greeting");
    kv.set(&k, b("hello")).await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("hello")));
    kv.set(&k, b("again")).await.unwrap();
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("again")));
}

async fn set_if_absent_writes_only_when_missing(t: TestKv) {
    let kv = t.store();
    let k = t.key("lock");
    let nx = SetOptions::default().if_absent();
    assert!(kv.set_with(&k, b("first"), nx).await.unwrap());
    assert!(!kv.set_with(&k, b("second"), nx).await.unwrap());
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("first")));
}

async fn set_if_present_writes_only_when_existing(t: TestKv) {
    let kv = t.store();
    let k = t.key("xx");
    let xx = SetOptions::default().if_present();
    assert!(!kv.set_with(&k, b("ghost"), xx).await.unwrap());
    assert_eq!(kv.get(&k).await.unwrap(), None);
    kv.set(&k, b("one")).await.unwrap();
    assert!(kv.set_with(&k, b("two"), xx).await.unwrap());
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("two")));
}

async fn set_with_ttl_expires(t: TestKv) {
    let kv = t.store();
    let k = t.key("short");
    kv.set_with(&k, b("v"), SetOptions::ttl(Duration::from_millis(50)))
        .await
        .unwrap();
    match kv.ttl(&k).await.unwrap() {
        Ttl::Expires(left) => assert!(left <= Duration::from_millis(50), "{left:?}"),
        other => panic!("expected an expiry, got {other:?}"),
    }
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("v")));
    // Letting the TTL pass is what this case is about.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(kv.get(&k).await.unwrap(), None);
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Missing);
}

async fn expired_key_is_gone_for_every_command(t: TestKv) {
    let kv = t.store();
    let (s, h, z) = (t.key("s"), t.key("h"), t.key("z"));
    kv.set(&s, b("41")).await.unwrap();
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    kv.zadd(&z, vec![(1.0, "m".into())]).await.unwrap();
    for key in [&s, &h, &z] {
        assert!(kv.expire(key, Duration::from_millis(40)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        kv.exists(&[s.clone(), h.clone(), z.clone()]).await.unwrap(),
        0
    );
    assert_eq!(kv.key_type(&s).await.unwrap(), KeyType::None);
    assert!(kv.hgetall(&h).await.unwrap().is_empty());
    assert_eq!(kv.zcard(&z).await.unwrap(), 0);
    assert!(!kv.persist(&s).await.unwrap());
    assert!(!kv.compare_and_delete(&s, b("41")).await.unwrap());
    // Writes start from nothing, and the new key has no expiry.
    assert_eq!(kv.incr(&s).await.unwrap(), 1);
    assert_eq!(kv.ttl(&s).await.unwrap(), Ttl::Persistent);
    assert!(
        kv.set_with(&h, b("x"), SetOptions::default().if_absent())
            .await
            .unwrap()
    );
    assert_eq!(t.all_keys().await, vec![h.clone(), s.clone()]);
}

async fn set_clears_ttl_unless_keep_ttl(t: TestKv) {
    let kv = t.store();
    let k = t.key("k");
    let ttl = SetOptions::ttl(Duration::from_secs(100));
    kv.set_with(&k, b("1"), ttl).await.unwrap();
    let keep = SetOptions {
        keep_ttl: true,
        ..Default::default()
    };
    kv.set_with(&k, b("2"), keep).await.unwrap();
    assert!(matches!(kv.ttl(&k).await.unwrap(), Ttl::Expires(d) if d > Duration::from_secs(90)));
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("2")));
    kv.set(&k, b("3")).await.unwrap();
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
}

async fn expire_ttl_persist(t: TestKv) {
    let kv = t.store();
    let k = t.key("k");
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Missing);
    kv.set(&k, b("v")).await.unwrap();
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
    assert!(!kv.persist(&k).await.unwrap());
    assert!(kv.expire(&k, Duration::from_secs(10)).await.unwrap());
    match kv.ttl(&k).await.unwrap() {
        Ttl::Expires(left) => {
            assert!(left <= Duration::from_secs(10), "{left:?}");
            assert!(left > Duration::from_secs(9), "{left:?}");
        }
        other => panic!("expected an expiry, got {other:?}"),
    }
    assert!(kv.persist(&k).await.unwrap());
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("v")));
}

async fn expire_on_missing_key_is_false(t: TestKv) {
    let kv = t.store();
    let k = t.key("missing");
    assert!(!kv.expire(&k, Duration::from_secs(1)).await.unwrap());
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Missing);
}

async fn mset_then_mget(t: TestKv) {
    let kv = t.store();
    let [a, bk, c] = [t.key("a"), t.key("b"), t.key("c")];
    kv.mset(vec![(a.clone(), b("1")), (bk.clone(), b("2"))])
        .await
        .unwrap();
    let got = kv.mget(&[a, c, bk]).await.unwrap();
    assert_eq!(got, vec![Some(b("1")), None, Some(b("2"))]);
}

async fn mget_answers_nil_for_other_types(t: TestKv) {
    let kv = t.store();
    let (s, h) = (t.key("s"), t.key("h"));
    kv.set(&s, b("v")).await.unwrap();
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    assert_eq!(kv.mget(&[h, s]).await.unwrap(), vec![None, Some(b("v"))]);
}

async fn del_and_exists_count(t: TestKv) {
    let kv = t.store();
    let keys = t.keys(&["a", "b", "c"]);
    kv.set(&keys[0], b("1")).await.unwrap();
    kv.hset(&keys[1], vec![("f".into(), b("v"))]).await.unwrap();
    assert_eq!(kv.exists(&keys).await.unwrap(), 2);
    // A key named twice counts twice (Redis's EXISTS).
    assert_eq!(
        kv.exists(&[keys[0].clone(), keys[0].clone()])
            .await
            .unwrap(),
        2
    );
    assert_eq!(kv.del(&keys).await.unwrap(), 2);
    assert_eq!(kv.exists(&keys).await.unwrap(), 0);
    assert_eq!(kv.del(&keys).await.unwrap(), 0);
}

async fn type_reports_the_value_kind(t: TestKv) {
    let kv = t.store();
    let (s, h, z) = (t.key("s"), t.key("h"), t.key("z"));
    kv.set(&s, b("v")).await.unwrap();
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    kv.zadd(&z, vec![(1.0, "m".into())]).await.unwrap();
    assert_eq!(kv.key_type(&s).await.unwrap(), KeyType::String);
    assert_eq!(kv.key_type(&h).await.unwrap(), KeyType::Hash);
    assert_eq!(kv.key_type(&z).await.unwrap(), KeyType::ZSet);
    assert_eq!(kv.key_type(&t.key("none")).await.unwrap(), KeyType::None);
}

async fn set_overwrites_any_type(t: TestKv) {
    let kv = t.store();
    let k = t.key("k");
    kv.zadd(&k, vec![(1.0, "m".into())]).await.unwrap();
    kv.set(&k, b("now a string")).await.unwrap();
    assert_eq!(kv.key_type(&k).await.unwrap(), KeyType::String);
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("now a string")));
}

async fn incr_counts_from_zero(t: TestKv) {
    let kv = t.store();
    let k = t.key("n");
    assert_eq!(kv.incr(&k).await.unwrap(), 1);
    assert_eq!(kv.incr_by(&k, 41).await.unwrap(), 42);
    assert_eq!(kv.incr_by(&k, -50).await.unwrap(), -8);
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("-8")));
    kv.set(&k, b("100")).await.unwrap();
    assert_eq!(kv.incr(&k).await.unwrap(), 101);
}

async fn incr_on_non_integer_fails_and_keeps_value(t: TestKv) {
    let kv = t.store();
    let k = t.key("n");
    for bad in ["abc", "1.5", " 1", "01", "+1", ""] {
        kv.set(&k, b(bad)).await.unwrap();
        let err = kv.incr(&k).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        assert_eq!(kv.get(&k).await.unwrap(), Some(b(bad)));
    }
}

async fn incr_overflow_fails_and_keeps_value(t: TestKv) {
    let kv = t.store();
    let k = t.key("n");
    kv.set(&k, b(&i64::MAX.to_string())).await.unwrap();
    let err = kv.incr(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.get(&k).await.unwrap(), Some(b(&i64::MAX.to_string())));
    kv.set(&k, b("99999999999999999999")).await.unwrap();
    let err = kv.incr(&k).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

async fn incr_keeps_ttl(t: TestKv) {
    let kv = t.store();
    let k = t.key("n");
    kv.set_with(&k, b("1"), SetOptions::ttl(Duration::from_secs(100)))
        .await
        .unwrap();
    kv.incr(&k).await.unwrap();
    kv.incr_by_float(&k, 0.5).await.unwrap();
    assert!(matches!(kv.ttl(&k).await.unwrap(), Ttl::Expires(d) if d > Duration::from_secs(90)));
}

async fn incr_by_float_adds(t: TestKv) {
    let kv = t.store();
    let k = t.key("f");
    assert_eq!(kv.incr_by_float(&k, 2.5).await.unwrap(), 2.5);
    assert_eq!(kv.incr_by_float(&k, 1.25).await.unwrap(), 3.75);
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("3.75")));
    assert_eq!(kv.incr_by_float(&k, 0.25).await.unwrap(), 4.0);
    // Stored without a fraction or exponent, so INCR can read it again.
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("4")));
    assert_eq!(kv.incr(&k).await.unwrap(), 5);
    kv.set(&k, b("abc")).await.unwrap();
    let err = kv.incr_by_float(&k, 1.0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("abc")));
}

async fn incr_by_float_rejects_nan_and_infinity(t: TestKv) {
    let kv = t.store();
    let k = t.key("f");
    kv.set(&k, b("1.5")).await.unwrap();
    for delta in [f64::INFINITY, f64::NEG_INFINITY] {
        let err = kv.incr_by_float(&k, delta).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(kv.get(&k).await.unwrap(), Some(b("1.5")));
    }
    // A finite sum beyond f64::MAX differs by design: Redis adds in `long
    // double` and stores it, the embedded engine refuses it. Each side is
    // checked in its own backend's tests (docs/engines.md lists it).
}

// ---------------------------------------------------------------------------
// Hashes

async fn hash_set_get_and_getall_sorted(t: TestKv) {
    let kv = t.store();
    let k = t.key("user");
    let added = kv
        .hset(&k, vec![("name".into(), b("ada")), ("age".into(), b("36"))])
        .await
        .unwrap();
    assert_eq!(added, 2);
    let added = kv
        .hset(
            &k,
            vec![("age".into(), b("37")), ("city".into(), b("london"))],
        )
        .await
        .unwrap();
    assert_eq!(added, 1, "only `city` is new");
    assert_eq!(kv.hget(&k, "age").await.unwrap(), Some(b("37")));
    assert_eq!(kv.hget(&k, "zip").await.unwrap(), None);
    assert_eq!(
        kv.hmget(&k, &["name".into(), "zip".into()]).await.unwrap(),
        vec![Some(b("ada")), None]
    );
    let all = kv.hgetall(&k).await.unwrap();
    let fields: Vec<&str> = all.keys().map(String::as_str).collect();
    assert_eq!(fields, ["age", "city", "name"]);
    assert_eq!(all["city"], b("london"));
    assert_eq!(kv.hlen(&k).await.unwrap(), 3);
    assert!(kv.hgetall(&t.key("nobody")).await.unwrap().is_empty());
    assert_eq!(kv.hlen(&t.key("nobody")).await.unwrap(), 0);
}

async fn hdel_of_last_field_deletes_key(t: TestKv) {
    let kv = t.store();
    let k = t.key("h");
    kv.hset(&k, vec![("a".into(), b("1")), ("b".into(), b("2"))])
        .await
        .unwrap();
    assert_eq!(kv.hdel(&k, &["a".into(), "zz".into()]).await.unwrap(), 1);
    assert_eq!(kv.exists(std::slice::from_ref(&k)).await.unwrap(), 1);
    assert_eq!(kv.hdel(&k, &["b".into()]).await.unwrap(), 1);
    assert_eq!(kv.exists(std::slice::from_ref(&k)).await.unwrap(), 0);
    assert_eq!(kv.key_type(&k).await.unwrap(), KeyType::None);
    assert_eq!(kv.hdel(&k, &["b".into()]).await.unwrap(), 0);
    assert_eq!(kv.exists(&[k]).await.unwrap(), 0);
}

async fn hincr_by_counts_and_rejects_non_integer(t: TestKv) {
    let kv = t.store();
    let k = t.key("h");
    assert_eq!(kv.hincr_by(&k, "views", 5).await.unwrap(), 5);
    assert_eq!(kv.hincr_by(&k, "views", -2).await.unwrap(), 3);
    assert_eq!(kv.hget(&k, "views").await.unwrap(), Some(b("3")));
    kv.hset(&k, vec![("name".into(), b("ada"))]).await.unwrap();
    let err = kv.hincr_by(&k, "name", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.hget(&k, "name").await.unwrap(), Some(b("ada")));
    kv.hset(&k, vec![("big".into(), b(&i64::MAX.to_string()))])
        .await
        .unwrap();
    let err = kv.hincr_by(&k, "big", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

// ---------------------------------------------------------------------------
// Sorted sets

async fn zadd_counts_new_members(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    let added = kv
        .zadd(&k, vec![(10.0, "ada".into()), (20.0, "bob".into())])
        .await
        .unwrap();
    assert_eq!(added, 2);
    let added = kv
        .zadd(&k, vec![(30.0, "ada".into()), (5.0, "cy".into())])
        .await
        .unwrap();
    assert_eq!(added, 1, "ada is updated, not added");
    assert_eq!(kv.zscore(&k, "ada").await.unwrap(), Some(30.0));
    assert_eq!(kv.zscore(&k, "nobody").await.unwrap(), None);
    assert_eq!(kv.zcard(&k).await.unwrap(), 3);
    assert_eq!(kv.zcard(&t.key("none")).await.unwrap(), 0);
}

async fn zadd_rejects_nan(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    kv.zadd(&k, vec![(1.0, "a".into())]).await.unwrap();
    let err = kv
        .zadd(&k, vec![(2.0, "b".into()), (f64::NAN, "c".into())])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.zcard(&k).await.unwrap(), 1, "nothing was added");
}

async fn zincr_by_adds_to_score(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    assert_eq!(kv.zincr_by(&k, 2.5, "ada").await.unwrap(), 2.5);
    assert_eq!(kv.zincr_by(&k, -1.0, "ada").await.unwrap(), 1.5);
    assert_eq!(kv.zscore(&k, "ada").await.unwrap(), Some(1.5));
    kv.zadd(&k, vec![(f64::INFINITY, "top".into())])
        .await
        .unwrap();
    let err = kv.zincr_by(&k, f64::NEG_INFINITY, "top").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.zscore(&k, "top").await.unwrap(), Some(f64::INFINITY));
}

async fn zrank_and_zrevrank(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    kv.zadd(
        &k,
        vec![(1.0, "a".into()), (2.0, "b".into()), (3.0, "c".into())],
    )
    .await
    .unwrap();
    assert_eq!(kv.zrank(&k, "a").await.unwrap(), Some(0));
    assert_eq!(kv.zrank(&k, "c").await.unwrap(), Some(2));
    assert_eq!(kv.zrevrank(&k, "c").await.unwrap(), Some(0));
    assert_eq!(kv.zrevrank(&k, "a").await.unwrap(), Some(2));
    assert_eq!(kv.zrank(&k, "zz").await.unwrap(), None);
    assert_eq!(kv.zrank(&t.key("none"), "a").await.unwrap(), None);
}

async fn zrange_accepts_negative_indexes(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    let members: Vec<(f64, String)> = (1..=5).map(|i| (i as f64, format!("m{i}"))).collect();
    kv.zadd(&k, members).await.unwrap();
    let all = kv.zrange(&k, 0, -1).await.unwrap();
    assert_eq!(names(&all), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(all[0].1, 1.0);
    assert_eq!(names(&kv.zrange(&k, -2, -1).await.unwrap()), ["m4", "m5"]);
    assert_eq!(names(&kv.zrange(&k, 1, 2).await.unwrap()), ["m2", "m3"]);
    assert_eq!(names(&kv.zrange(&k, -100, 0).await.unwrap()), ["m1"]);
    assert_eq!(names(&kv.zrange(&k, 3, 100).await.unwrap()), ["m4", "m5"]);
    assert!(kv.zrange(&k, 3, 1).await.unwrap().is_empty());
    assert!(kv.zrange(&k, 5, 10).await.unwrap().is_empty());
    let top = kv.zrevrange(&k, 0, 1).await.unwrap();
    assert_eq!(top, vec![("m5".to_string(), 5.0), ("m4".to_string(), 4.0)]);
    assert_eq!(names(&kv.zrevrange(&k, -1, -1).await.unwrap()), ["m1"]);
    assert!(kv.zrange(&t.key("none"), 0, -1).await.unwrap().is_empty());
}

async fn zrange_ties_order_by_member(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    kv.zadd(
        &k,
        vec![
            (1.0, "b".into()),
            (1.0, "B".into()),
            (1.0, "a".into()),
            (0.0, "z".into()),
            (1.0, "ab".into()),
        ],
    )
    .await
    .unwrap();
    // Bytewise: uppercase before lowercase, prefix before longer.
    assert_eq!(
        names(&kv.zrange(&k, 0, -1).await.unwrap()),
        ["z", "B", "a", "ab", "b"]
    );
    assert_eq!(
        names(&kv.zrevrange(&k, 0, -1).await.unwrap()),
        ["b", "ab", "a", "B", "z"]
    );
    assert_eq!(kv.zrank(&k, "ab").await.unwrap(), Some(3));
}

async fn zrangebyscore_exclusive_bounds_and_limit(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    let members: Vec<(f64, String)> = (1..=6).map(|i| (i as f64, format!("m{i}"))).collect();
    kv.zadd(&k, members).await.unwrap();
    use ScoreBound::*;
    let got = kv
        .zrangebyscore(&k, Inclusive(2.0), Inclusive(4.0), None)
        .await
        .unwrap();
    assert_eq!(names(&got), ["m2", "m3", "m4"]);
    let got = kv
        .zrangebyscore(&k, Exclusive(2.0), Exclusive(5.0), None)
        .await
        .unwrap();
    assert_eq!(names(&got), ["m3", "m4"]);
    let got = kv
        .zrangebyscore(&k, NegInfinity, Exclusive(3.0), None)
        .await
        .unwrap();
    assert_eq!(names(&got), ["m1", "m2"]);
    let got = kv
        .zrangebyscore(&k, Exclusive(1.0), PosInfinity, Some((1, 2)))
        .await
        .unwrap();
    assert_eq!(got, vec![("m3".to_string(), 3.0), ("m4".to_string(), 4.0)]);
    let got = kv
        .zrangebyscore(&k, Inclusive(5.0), Inclusive(2.0), None)
        .await
        .unwrap();
    assert!(got.is_empty(), "min above max is empty");
    let got = kv
        .zrangebyscore(&k, NegInfinity, PosInfinity, Some((10, 5)))
        .await
        .unwrap();
    assert!(got.is_empty(), "offset past the end is empty");
}

async fn zremrangebyscore_removes_range(t: TestKv) {
    let kv = t.store();
    let k = t.key("window");
    let members: Vec<(f64, String)> = (1..=5).map(|i| (i as f64, format!("m{i}"))).collect();
    kv.zadd(&k, members).await.unwrap();
    let removed = kv
        .zremrangebyscore(&k, ScoreBound::NegInfinity, ScoreBound::Exclusive(3.0))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(
        names(&kv.zrange(&k, 0, -1).await.unwrap()),
        ["m3", "m4", "m5"]
    );
    let removed = kv
        .zremrangebyscore(&k, ScoreBound::NegInfinity, ScoreBound::PosInfinity)
        .await
        .unwrap();
    assert_eq!(removed, 3);
    assert_eq!(kv.exists(&[k]).await.unwrap(), 0, "emptied set is deleted");
}

async fn zrem_of_last_member_deletes_key(t: TestKv) {
    let kv = t.store();
    let k = t.key("board");
    kv.zadd(&k, vec![(1.0, "a".into()), (2.0, "b".into())])
        .await
        .unwrap();
    assert_eq!(kv.zrem(&k, &["a".into(), "nope".into()]).await.unwrap(), 1);
    assert_eq!(kv.zcard(&k).await.unwrap(), 1);
    assert_eq!(kv.zrem(&k, &["b".into()]).await.unwrap(), 1);
    assert_eq!(kv.exists(std::slice::from_ref(&k)).await.unwrap(), 0);
    assert_eq!(kv.key_type(&k).await.unwrap(), KeyType::None);
}

// ---------------------------------------------------------------------------
// Wrong types

fn assert_wrong_type<T: std::fmt::Debug>(result: strata::Result<T>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.kind(), ErrorKind::WrongType, "{what}: {e}"),
        Ok(v) => panic!("{what}: expected WRONGTYPE, got {v:?}"),
    }
}

async fn wrong_type_for_string_commands(t: TestKv) {
    let kv = t.store();
    let (h, z) = (t.key("h"), t.key("z"));
    kv.hset(&h, vec![("f".into(), b("1"))]).await.unwrap();
    kv.zadd(&z, vec![(1.0, "m".into())]).await.unwrap();
    for k in [&h, &z] {
        assert_wrong_type(kv.get(k).await, "get");
        assert_wrong_type(kv.incr(k).await, "incr");
        assert_wrong_type(kv.incr_by_float(k, 1.0).await, "incrbyfloat");
        assert_wrong_type(kv.compare_and_delete(k, b("1")).await, "compare_and_delete");
        assert_wrong_type(kv.getdel(k).await, "getdel");
        assert_wrong_type(kv.getex(k, GetExpiry::Persist).await, "getex");
        assert_wrong_type(kv.append(k, b("x")).await, "append");
        assert_wrong_type(kv.strlen(k).await, "strlen");
        assert_wrong_type(
            kv.set_get(k, b("x"), SetOptions::default()).await,
            "set get",
        );
    }
    assert_eq!(kv.hget(&h, "f").await.unwrap(), Some(b("1")));
    assert_eq!(kv.zscore(&z, "m").await.unwrap(), Some(1.0));
}

async fn wrong_type_for_hash_commands(t: TestKv) {
    let kv = t.store();
    let (s, z) = (t.key("s"), t.key("z"));
    kv.set(&s, b("v")).await.unwrap();
    kv.zadd(&z, vec![(1.0, "m".into())]).await.unwrap();
    for k in [&s, &z] {
        assert_wrong_type(kv.hset(k, vec![("f".into(), b("v"))]).await, "hset");
        assert_wrong_type(kv.hget(k, "f").await, "hget");
        assert_wrong_type(kv.hmget(k, &["f".into()]).await, "hmget");
        assert_wrong_type(kv.hgetall(k).await, "hgetall");
        assert_wrong_type(kv.hdel(k, &["f".into()]).await, "hdel");
        assert_wrong_type(kv.hincr_by(k, "f", 1).await, "hincrby");
        assert_wrong_type(kv.hlen(k).await, "hlen");
        assert_wrong_type(kv.hsetnx(k, "f", b("v")).await, "hsetnx");
        assert_wrong_type(kv.hkeys(k).await, "hkeys");
        assert_wrong_type(kv.hvals(k).await, "hvals");
        assert_wrong_type(kv.hexists(k, "f").await, "hexists");
        assert_wrong_type(kv.hstrlen(k, "f").await, "hstrlen");
        assert_wrong_type(kv.hincr_by_float(k, "f", 1.0).await, "hincrbyfloat");
    }
    assert_eq!(kv.get(&s).await.unwrap(), Some(b("v")));
    assert_eq!(kv.zcard(&z).await.unwrap(), 1);
}

async fn wrong_type_for_zset_commands(t: TestKv) {
    let kv = t.store();
    let (s, h) = (t.key("s"), t.key("h"));
    kv.set(&s, b("v")).await.unwrap();
    kv.hset(&h, vec![("f".into(), b("1"))]).await.unwrap();
    use ScoreBound::*;
    for k in [&s, &h] {
        assert_wrong_type(kv.zadd(k, vec![(1.0, "m".into())]).await, "zadd");
        assert_wrong_type(kv.zincr_by(k, 1.0, "m").await, "zincrby");
        assert_wrong_type(kv.zscore(k, "m").await, "zscore");
        assert_wrong_type(kv.zrank(k, "m").await, "zrank");
        assert_wrong_type(kv.zrevrank(k, "m").await, "zrevrank");
        assert_wrong_type(kv.zrange(k, 0, -1).await, "zrange");
        assert_wrong_type(
            kv.zrangebyscore(k, NegInfinity, PosInfinity, None).await,
            "zrangebyscore",
        );
        assert_wrong_type(
            kv.zremrangebyscore(k, NegInfinity, PosInfinity).await,
            "zremrangebyscore",
        );
        assert_wrong_type(kv.zrem(k, &["m".into()]).await, "zrem");
        assert_wrong_type(kv.zcard(k).await, "zcard");
        assert_wrong_type(kv.zcount(k, NegInfinity, PosInfinity).await, "zcount");
        assert_wrong_type(
            kv.zrevrangebyscore(k, PosInfinity, NegInfinity, None).await,
            "zrevrangebyscore",
        );
        assert_wrong_type(
            kv.zadd_incr(k, 1.0, "m", ZAddOptions::default()).await,
            "zadd incr",
        );
    }
    assert_eq!(kv.get(&s).await.unwrap(), Some(b("v")));
    assert_eq!(kv.hget(&h, "f").await.unwrap(), Some(b("1")));
}

// ---------------------------------------------------------------------------
// Scan, delete_pattern, pipeline, compare_and_delete

async fn scan_matches_glob_patterns(t: TestKv) {
    let kv = t.store();
    for name in ["user:1", "user:2", "user:10", "user:x", "order:1", "u*r"] {
        kv.set(&t.key(name), b("v")).await.unwrap();
    }
    let p = &t.prefix;
    let scan = |pattern: String| {
        let kv = kv.clone();
        async move { kv.scan_all(&pattern).await.unwrap() }
    };
    assert_eq!(
        scan(format!("{p}user:*")).await,
        t.keys(&["user:1", "user:10", "user:2", "user:x"])
    );
    assert_eq!(
        scan(format!("{p}user:?")).await,
        t.keys(&["user:1", "user:2", "user:x"])
    );
    assert_eq!(
        scan(format!("{p}user:[0-9]")).await,
        t.keys(&["user:1", "user:2"])
    );
    assert_eq!(scan(format!("{p}user:[^0-9]")).await, t.keys(&["user:x"]));
    assert_eq!(
        scan(format!("{p}user:[12]*")).await,
        t.keys(&["user:1", "user:10", "user:2"])
    );
    assert_eq!(scan(format!(r"{p}u\*r")).await, t.keys(&["u*r"]));
    assert_eq!(
        scan(format!("{p}*:1")).await,
        t.keys(&["order:1", "user:1"])
    );
    assert!(scan(format!("{p}nothing*")).await.is_empty());
    assert_eq!(scan(format!("{p}*")).await.len(), 6);
}

async fn delete_pattern_deletes_only_matches(t: TestKv) {
    let kv = t.store();
    for name in ["cache:a", "cache:b", "keep:a"] {
        kv.set(&t.key(name), b("v")).await.unwrap();
    }
    kv.hset(&t.key("cache:h"), vec![("f".into(), b("v"))])
        .await
        .unwrap();
    let deleted = kv
        .delete_pattern(&format!("{}cache:*", t.prefix))
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(t.all_keys().await, t.keys(&["keep:a"]));
}

async fn pipeline_answers_in_order_with_failure_in_middle(t: TestKv) {
    let kv = t.store();
    let (n, s) = (t.key("n"), t.key("s"));
    let results = kv
        .pipeline(vec![
            Command::Set {
                key: s.clone(),
                value: b("text"),
                options: SetOptions::default(),
            },
            Command::IncrBy {
                key: n.clone(),
                delta: 5,
            },
            Command::IncrBy {
                key: s.clone(),
                delta: 1,
            },
            Command::HGet {
                key: s.clone(),
                field: "f".into(),
            },
            Command::IncrBy {
                key: n.clone(),
                delta: 1,
            },
            Command::Get { key: s.clone() },
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(results[0].as_ref().unwrap(), &Reply::Bool(true));
    assert_eq!(results[1].as_ref().unwrap(), &Reply::Int(5));
    assert_eq!(
        results[2].as_ref().unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        results[3].as_ref().unwrap_err().kind(),
        ErrorKind::WrongType
    );
    assert_eq!(results[4].as_ref().unwrap(), &Reply::Int(6));
    assert_eq!(results[5].as_ref().unwrap(), &Reply::Value(Some(b("text"))));
}

/// A command refused before it reaches the store (here an expiry Redis
/// could not be sent) gets its own error in a pipeline; the others run.
async fn pipeline_isolates_a_command_refused_before_sending(t: TestKv) {
    let kv = t.store();
    let (n, k) = (t.key("n"), t.key("k"));
    let too_far = Command::Expire {
        key: k.clone(),
        ttl: Duration::MAX,
        options: ExpireOptions::default(),
    };
    let incr = Command::IncrBy {
        key: n.clone(),
        delta: 1,
    };
    let results = kv
        .pipeline(vec![incr.clone(), too_far.clone(), incr])
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap(), &Reply::Int(1));
    let err = results[1].as_ref().unwrap_err();
    assert_invalid(err, "ERR invalid expire time in 'pexpire' command");
    assert_eq!(err.operation(), Some("pexpire"));
    assert_eq!(results[2].as_ref().unwrap(), &Reply::Int(2));
    // Nothing to send at all.
    let results = kv.pipeline(vec![too_far]).await.unwrap();
    assert_eq!(results.len(), 1);
    assert!(results[0].is_err());
}

async fn compare_and_delete_needs_matching_value(t: TestKv) {
    let kv = t.store();
    let k = t.key("lock");
    kv.set(&k, b("token-1")).await.unwrap();
    assert!(!kv.compare_and_delete(&k, b("token-2")).await.unwrap());
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("token-1")));
    assert!(kv.compare_and_delete(&k, b("token-1")).await.unwrap());
    assert_eq!(kv.get(&k).await.unwrap(), None);
    assert!(!kv.compare_and_delete(&k, b("token-1")).await.unwrap());
}

// ---------------------------------------------------------------------------
// Publish/subscribe

/// The next event within five seconds, from a subscription that is still
/// open.
async fn next_event(sub: &mut Subscription) -> SubscriptionEvent {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("an event within 5 s")
        .expect("subscription open")
        .expect("subscription not lost")
}

/// The next event, which must be a message.
async fn next_message(sub: &mut Subscription) -> strata::engines::kv::PubSubMessage {
    match next_event(sub).await {
        SubscriptionEvent::Message(message) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn publish_reaches_subscriber(t: TestKv) {
    let kv = t.store();
    let channel = t.key("news");
    let mut sub = kv.subscribe(std::slice::from_ref(&channel)).await.unwrap();
    assert_eq!(kv.publish(&channel, b("hello")).await.unwrap(), 1);
    let message = next_message(&mut sub).await;
    assert_eq!(message.channel, channel);
    assert_eq!(message.payload, b("hello"));
    assert_eq!(kv.publish(&t.key("other"), b("x")).await.unwrap(), 0);
}

async fn dropped_subscription_stops_counting(t: TestKv) {
    let kv = t.store();
    let channel = t.key("news");
    let first = kv.subscribe(std::slice::from_ref(&channel)).await.unwrap();
    let mut second = kv.subscribe(std::slice::from_ref(&channel)).await.unwrap();
    assert_eq!(kv.publish(&channel, b("1")).await.unwrap(), 2);
    drop(first);
    // Unsubscribing is asynchronous on a real server: poll until it lands.
    let mut reached = u64::MAX;
    for _ in 0..100 {
        reached = kv.publish(&channel, b("2")).await.unwrap();
        if reached == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reached, 1);
    assert_eq!(next_message(&mut second).await.payload, b("1"));
    drop(second);
    let mut reached = u64::MAX;
    for _ in 0..100 {
        reached = kv.publish(&channel, b("3")).await.unwrap();
        if reached == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reached, 0);
}

// ---------------------------------------------------------------------------
// Helpers for exact answers

/// `err` is `InvalidInput` with exactly Redis's `message`.
fn assert_invalid(err: &strata::Error, message: &str) {
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.message(), message, "{err}");
}

/// Whether `ttl` is an expiry within `low..=high`.
fn expires_within(ttl: Ttl, low: Duration, high: Duration) -> bool {
    matches!(ttl, Ttl::Expires(left) if left >= low && left <= high)
}

// ---------------------------------------------------------------------------
// SET ... GET, GETDEL, GETEX, MSETNX, APPEND, STRLEN

async fn set_get_answers_the_value_before(t: TestKv) {
    let kv = t.store();
    let k = t.key("k");
    let plain = SetOptions::default();
    assert_eq!(kv.set_get(&k, b("1"), plain).await.unwrap(), None);
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("1")));
    assert_eq!(kv.set_get(&k, b("2"), plain).await.unwrap(), Some(b("1")));
    // NX on a present key answers its value and does not write.
    let nx = SetOptions::default().if_absent();
    assert_eq!(kv.set_get(&k, b("3"), nx).await.unwrap(), Some(b("2")));
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("2")));
    // XX on a missing key answers nil and creates nothing; NX writes.
    let missing = t.key("missing");
    let xx = SetOptions::default().if_present();
    assert_eq!(kv.set_get(&missing, b("x"), xx).await.unwrap(), None);
    assert_eq!(kv.exists(std::slice::from_ref(&missing)).await.unwrap(), 0);
    assert_eq!(kv.set_get(&missing, b("x"), nx).await.unwrap(), None);
    assert_eq!(kv.get(&missing).await.unwrap(), Some(b("x")));
    // An expiry, then KEEPTTL keeps it, then a plain SET GET clears it.
    let ttl = SetOptions::ttl(Duration::from_secs(100));
    assert_eq!(kv.set_get(&k, b("4"), ttl).await.unwrap(), Some(b("2")));
    let keep = SetOptions::default().keep_ttl();
    assert_eq!(kv.set_get(&k, b("5"), keep).await.unwrap(), Some(b("4")));
    let ttl = kv.ttl(&k).await.unwrap();
    assert!(
        expires_within(ttl, Duration::from_secs(90), Duration::from_secs(100)),
        "{ttl:?}"
    );
    assert_eq!(kv.set_get(&k, b("6"), plain).await.unwrap(), Some(b("5")));
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
}

async fn set_get_on_another_type_fails_and_writes_nothing(t: TestKv) {
    let kv = t.store();
    let h = t.key("h");
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    for options in [
        SetOptions::default(),
        SetOptions::default().if_absent(),
        SetOptions::default().if_present(),
        SetOptions::default().keep_ttl(),
    ] {
        assert_wrong_type(kv.set_get(&h, b("s"), options).await, "set ... get");
    }
    // The expiry is judged first: Redis parses it before the lookup.
    let err = kv
        .set_get(&h, b("s"), SetOptions::ttl(Duration::ZERO))
        .await
        .unwrap_err();
    assert_invalid(&err, "ERR invalid expire time in 'set' command");
    assert_eq!(kv.key_type(&h).await.unwrap(), KeyType::Hash);
    assert_eq!(kv.hget(&h, "f").await.unwrap(), Some(b("v")));
}

async fn set_refuses_an_expiry_of_zero_or_out_of_range(t: TestKv) {
    let kv = t.store();
    let k = t.key("k");
    kv.set(&k, b("v")).await.unwrap();
    for ttl in [
        Duration::ZERO,
        // Below a millisecond is `PX 0`.
        Duration::from_micros(999),
        // Past i64::MAX milliseconds of Unix time.
        Duration::from_millis(i64::MAX as u64),
        Duration::MAX,
    ] {
        let err = kv
            .set_with(&k, b("w"), SetOptions::ttl(ttl))
            .await
            .unwrap_err();
        assert_invalid(&err, "ERR invalid expire time in 'set' command");
    }
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("v")));
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
}

async fn getdel_answers_and_deletes(t: TestKv) {
    let kv = t.store();
    let (k, h) = (t.key("k"), t.key("h"));
    kv.set_with(&k, b("v"), SetOptions::ttl(Duration::from_secs(100)))
        .await
        .unwrap();
    assert_eq!(kv.getdel(&k).await.unwrap(), Some(b("v")));
    assert_eq!(kv.exists(std::slice::from_ref(&k)).await.unwrap(), 0);
    assert_eq!(kv.getdel(&k).await.unwrap(), None);
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    assert_wrong_type(kv.getdel(&h).await, "getdel");
    assert_eq!(kv.key_type(&h).await.unwrap(), KeyType::Hash);
}

async fn getex_sets_removes_or_keeps_the_expiry(t: TestKv) {
    let kv = t.store();
    let (k, h, missing) = (t.key("k"), t.key("h"), t.key("missing"));
    let secs = Duration::from_secs;
    kv.set_with(&k, b("v"), SetOptions::ttl(secs(100)))
        .await
        .unwrap();
    assert_eq!(
        kv.getex(&k, GetExpiry::Unchanged).await.unwrap(),
        Some(b("v"))
    );
    let ttl = kv.ttl(&k).await.unwrap();
    assert!(expires_within(ttl, secs(90), secs(100)), "{ttl:?}");
    assert_eq!(
        kv.getex(&k, GetExpiry::After(secs(10))).await.unwrap(),
        Some(b("v"))
    );
    let ttl = kv.ttl(&k).await.unwrap();
    assert!(expires_within(ttl, secs(9), secs(10)), "{ttl:?}");
    assert_eq!(
        kv.getex(&k, GetExpiry::Persist).await.unwrap(),
        Some(b("v"))
    );
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
    // PX 0 is refused (unlike PEXPIRE 0) and changes nothing.
    let err = kv
        .getex(&k, GetExpiry::After(Duration::ZERO))
        .await
        .unwrap_err();
    assert_invalid(&err, "ERR invalid expire time in 'getex' command");
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("v")));
    // The key is looked up first: a missing key answers nil whatever the
    // expiry, another type is WRONGTYPE whatever the expiry.
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    for expiry in [
        GetExpiry::Unchanged,
        GetExpiry::After(secs(10)),
        GetExpiry::After(Duration::ZERO),
        GetExpiry::Persist,
    ] {
        assert_eq!(
            kv.getex(&missing, expiry).await.unwrap(),
            None,
            "{expiry:?}"
        );
        assert_wrong_type(kv.getex(&h, expiry).await, "getex");
    }
    assert_eq!(kv.exists(&[missing]).await.unwrap(), 0);
}

async fn msetnx_writes_all_or_none(t: TestKv) {
    let kv = t.store();
    let [a, bk, c, h] = [t.key("a"), t.key("b"), t.key("c"), t.key("h")];
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    // One key exists (of another type): nothing is written.
    let blocked = vec![(a.clone(), b("1")), (h.clone(), b("2"))];
    assert!(!kv.msetnx(blocked).await.unwrap());
    assert_eq!(kv.exists(std::slice::from_ref(&a)).await.unwrap(), 0);
    assert_eq!(kv.key_type(&h).await.unwrap(), KeyType::Hash);
    let fresh = vec![(a.clone(), b("1")), (bk.clone(), b("2"))];
    assert!(kv.msetnx(fresh).await.unwrap());
    assert_eq!(
        kv.mget(&[a.clone(), bk.clone()]).await.unwrap(),
        vec![Some(b("1")), Some(b("2"))]
    );
    assert!(!kv.msetnx(vec![(a.clone(), b("x"))]).await.unwrap());
    assert_eq!(kv.get(&a).await.unwrap(), Some(b("1")));
    // A key named twice ends with its last value.
    let twice = vec![(c.clone(), b("first")), (c.clone(), b("last"))];
    assert!(kv.msetnx(twice).await.unwrap());
    assert_eq!(kv.get(&c).await.unwrap(), Some(b("last")));
    let err = kv.msetnx(Vec::new()).await.unwrap_err();
    assert_invalid(&err, "ERR wrong number of arguments for 'msetnx' command");
}

async fn append_and_strlen(t: TestKv) {
    let kv = t.store();
    let (k, n, h) = (t.key("k"), t.key("n"), t.key("h"));
    assert_eq!(kv.strlen(&k).await.unwrap(), 0);
    assert_eq!(kv.append(&k, b("ab")).await.unwrap(), 2);
    assert!(kv.expire(&k, Duration::from_secs(100)).await.unwrap());
    assert_eq!(kv.append(&k, b("cd")).await.unwrap(), 4);
    assert_eq!(kv.get(&k).await.unwrap(), Some(b("abcd")));
    assert_eq!(kv.strlen(&k).await.unwrap(), 4);
    let ttl = kv.ttl(&k).await.unwrap();
    assert!(
        expires_within(ttl, Duration::from_secs(90), Duration::from_secs(100)),
        "APPEND keeps the expiry: {ttl:?}"
    );
    // A counter is a string: its length is its digits, and appending digits
    // leaves a number INCR reads.
    kv.incr_by(&n, 12345).await.unwrap();
    assert_eq!(kv.strlen(&n).await.unwrap(), 5);
    assert_eq!(kv.append(&n, b("6")).await.unwrap(), 6);
    assert_eq!(kv.incr(&n).await.unwrap(), 123457);
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    assert_wrong_type(kv.append(&h, b("x")).await, "append");
    assert_wrong_type(kv.strlen(&h).await, "strlen");
}

// ---------------------------------------------------------------------------
// PEXPIRE with NX XX GT LT

/// A key's expiry state, to compare after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Gone,
    Persistent,
    /// Expires within this many seconds (rounded up).
    Secs(u64),
}

async fn expiry_of(kv: &Arc<dyn KvStore>, key: &str) -> Expiry {
    match kv.ttl(key).await.unwrap() {
        Ttl::Missing => Expiry::Gone,
        Ttl::Persistent => Expiry::Persistent,
        Ttl::Expires(left) => Expiry::Secs(left.as_millis().div_ceil(1000) as u64),
    }
}

fn expire_flags(flags: &str) -> ExpireOptions {
    let mut options = ExpireOptions::default();
    for flag in flags.split_whitespace() {
        match flag {
            "nx" => options.nx = true,
            "xx" => options.xx = true,
            "gt" => options.gt = true,
            "lt" => options.lt = true,
            other => panic!("not a PEXPIRE flag: {other}"),
        }
    }
    options
}

/// The conditions of PEXPIRE, row by row: the key's state before, the
/// flags, the new TTL in seconds, then Redis's answer and the state after.
async fn expire_condition_matrix_matches_redis(t: TestKv) {
    use Expiry::*;
    let kv = t.store();
    let rows: &[(Expiry, &str, u64, bool, Expiry)] = &[
        (Persistent, "", 50, true, Secs(50)),
        (Persistent, "nx", 50, true, Secs(50)),
        (Persistent, "xx", 50, false, Persistent),
        // No expiry counts as an infinite one: GT never applies, LT does.
        (Persistent, "gt", 50, false, Persistent),
        (Persistent, "lt", 50, true, Secs(50)),
        (Persistent, "xx gt", 50, false, Persistent),
        (Persistent, "xx lt", 50, false, Persistent),
        (Secs(100), "", 50, true, Secs(50)),
        (Secs(100), "nx", 50, false, Secs(100)),
        (Secs(100), "xx", 50, true, Secs(50)),
        (Secs(100), "gt", 50, false, Secs(100)),
        (Secs(100), "gt", 200, true, Secs(200)),
        (Secs(100), "lt", 50, true, Secs(50)),
        (Secs(100), "lt", 200, false, Secs(100)),
        (Secs(100), "xx gt", 200, true, Secs(200)),
        (Secs(100), "xx lt", 200, false, Secs(100)),
        (Secs(100), "xx lt", 50, true, Secs(50)),
        // Zero deletes the key wherever the conditions let it apply.
        (Persistent, "", 0, true, Gone),
        (Persistent, "nx", 0, true, Gone),
        (Persistent, "xx", 0, false, Persistent),
        (Persistent, "gt", 0, false, Persistent),
        (Persistent, "lt", 0, true, Gone),
        (Secs(100), "", 0, true, Gone),
        (Secs(100), "nx", 0, false, Secs(100)),
        (Secs(100), "xx", 0, true, Gone),
        (Secs(100), "gt", 0, false, Secs(100)),
        (Secs(100), "lt", 0, true, Gone),
        // A missing key is never given an expiry.
        (Gone, "", 50, false, Gone),
        (Gone, "nx", 50, false, Gone),
        (Gone, "lt", 50, false, Gone),
        (Gone, "", 0, false, Gone),
    ];
    for (i, &(before, flags, ttl, answer, after)) in rows.iter().enumerate() {
        let k = t.key(&format!("row{i}"));
        match before {
            Persistent => kv.set(&k, b("v")).await.unwrap(),
            Secs(s) => {
                kv.set_with(&k, b("v"), SetOptions::ttl(Duration::from_secs(s)))
                    .await
                    .unwrap();
            }
            Gone => {}
        }
        let what = format!("row {i}: {before:?}, PEXPIRE {ttl}s {flags:?}");
        let got = kv
            .expire_with(&k, Duration::from_secs(ttl), expire_flags(flags))
            .await
            .unwrap();
        assert_eq!(got, answer, "{what}");
        assert_eq!(expiry_of(&kv, &k).await, after, "{what}");
    }
}

async fn expire_refuses_flags_and_deadlines_like_redis(t: TestKv) {
    let kv = t.store();
    let (k, missing) = (t.key("k"), t.key("missing"));
    kv.set(&k, b("v")).await.unwrap();
    let nx_other = "ERR NX and XX, GT or LT options at the same time are not compatible";
    let gt_lt = "ERR GT and LT options at the same time are not compatible";
    let too_far = "ERR invalid expire time in 'pexpire' command";
    let beyond = Duration::from_millis(i64::MAX as u64);
    for (flags, message) in [
        ("nx xx", nx_other),
        ("nx gt", nx_other),
        ("nx lt", nx_other),
        ("nx xx gt lt", nx_other),
        ("gt lt", gt_lt),
        ("xx gt lt", gt_lt),
    ] {
        // Judged first: before the key and before the time.
        for (key, ttl) in [(&k, Duration::from_secs(10)), (&missing, beyond)] {
            let err = kv
                .expire_with(key, ttl, expire_flags(flags))
                .await
                .unwrap_err();
            assert_invalid(&err, message);
        }
    }
    // A deadline past i64::MAX milliseconds of Unix time is refused, even
    // for a missing key (Redis checks it before the lookup).
    for key in [&k, &missing] {
        for ttl in [beyond, Duration::MAX] {
            let err = kv.expire(key, ttl).await.unwrap_err();
            assert_invalid(&err, too_far);
        }
    }
    assert_eq!(kv.ttl(&k).await.unwrap(), Ttl::Persistent);
    // Far but in range (about 3,200 years) is kept as given.
    let far = Duration::from_millis(100_000_000_000_000);
    assert!(kv.expire(&k, far).await.unwrap());
    let ttl = kv.ttl(&k).await.unwrap();
    assert!(
        expires_within(ttl, far - Duration::from_secs(60), far),
        "{ttl:?}"
    );
}

// ---------------------------------------------------------------------------
// HSETNX HKEYS HVALS HEXISTS HSTRLEN HINCRBYFLOAT

async fn hash_field_commands(t: TestKv) {
    let kv = t.store();
    let (k, missing) = (t.key("h"), t.key("missing"));
    assert!(kv.hsetnx(&k, "b", b("2")).await.unwrap());
    assert!(!kv.hsetnx(&k, "b", b("changed")).await.unwrap());
    assert_eq!(kv.hget(&k, "b").await.unwrap(), Some(b("2")));
    kv.hset(
        &k,
        vec![
            ("a".into(), b("zz")),
            ("C".into(), b("")),
            ("ab".into(), b("10")),
        ],
    )
    .await
    .unwrap();
    // Sorted bytewise on both backends.
    assert_eq!(kv.hkeys(&k).await.unwrap(), ["C", "a", "ab", "b"]);
    assert_eq!(
        kv.hvals(&k).await.unwrap(),
        vec![b(""), b("10"), b("2"), b("zz")]
    );
    assert!(kv.hexists(&k, "a").await.unwrap());
    assert!(!kv.hexists(&k, "zzz").await.unwrap());
    assert_eq!(kv.hstrlen(&k, "a").await.unwrap(), 2);
    assert_eq!(kv.hstrlen(&k, "C").await.unwrap(), 0);
    assert_eq!(kv.hstrlen(&k, "nope").await.unwrap(), 0);
    assert!(kv.hkeys(&missing).await.unwrap().is_empty());
    assert!(kv.hvals(&missing).await.unwrap().is_empty());
    assert!(!kv.hexists(&missing, "f").await.unwrap());
    assert_eq!(kv.hstrlen(&missing, "f").await.unwrap(), 0);
    assert!(kv.hsetnx(&missing, "f", b("v")).await.unwrap());
    assert_eq!(kv.key_type(&missing).await.unwrap(), KeyType::Hash);
}

async fn hkeys_and_hvals_are_sorted_for_large_hashes(t: TestKv) {
    let kv = t.store();
    let k = t.key("big");
    // Past Redis's listpack limit (128 fields), where its order is its
    // hash table's.
    let fields: Vec<(String, Bytes)> = (0..300)
        .map(|i| (format!("f{}", (i * 7919) % 300), b(&format!("v{i}"))))
        .collect();
    kv.hset(&k, fields.clone()).await.unwrap();
    let mut names: Vec<String> = fields.iter().map(|(f, _)| f.clone()).collect();
    names.sort();
    let mut values: Vec<Bytes> = fields.into_iter().map(|(_, v)| v).collect();
    values.sort();
    assert_eq!(kv.hkeys(&k).await.unwrap(), names);
    assert_eq!(kv.hvals(&k).await.unwrap(), values);
}

async fn hincr_by_float_adds_and_refuses_like_redis(t: TestKv) {
    let kv = t.store();
    let (k, s, missing) = (t.key("h"), t.key("s"), t.key("missing"));
    assert_eq!(kv.hincr_by_float(&k, "f", 2.5).await.unwrap(), 2.5);
    assert_eq!(kv.hincr_by_float(&k, "f", 1.25).await.unwrap(), 3.75);
    assert_eq!(kv.hget(&k, "f").await.unwrap(), Some(b("3.75")));
    assert_eq!(kv.hincr_by_float(&k, "f", 0.25).await.unwrap(), 4.0);
    // Stored without a fraction, so HINCRBY reads it again.
    assert_eq!(kv.hget(&k, "f").await.unwrap(), Some(b("4")));
    assert_eq!(kv.hincr_by(&k, "f", 1).await.unwrap(), 5);
    kv.hset(&k, vec![("name".into(), b("ada")), ("sp".into(), b(" 1"))])
        .await
        .unwrap();
    for field in ["name", "sp"] {
        let err = kv.hincr_by_float(&k, field, 1.0).await.unwrap_err();
        assert_invalid(&err, "ERR hash value is not a float");
    }
    let err = kv.hincr_by_float(&k, "f", f64::NAN).await.unwrap_err();
    assert_invalid(&err, "ERR value is not a valid float");
    kv.set(&s, b("v")).await.unwrap();
    // The increment is judged before the key: nothing is created, and a
    // key of another type gets the same answer.
    for key in [&k, &missing, &s] {
        for delta in [f64::INFINITY, f64::NEG_INFINITY] {
            let err = kv.hincr_by_float(key, "f", delta).await.unwrap_err();
            assert_invalid(&err, "ERR value is NaN or Infinity");
        }
    }
    assert_eq!(kv.hget(&k, "f").await.unwrap(), Some(b("5")));
    assert_eq!(kv.exists(&[missing]).await.unwrap(), 0);
    assert_wrong_type(kv.hincr_by_float(&s, "f", 1.0).await, "hincrbyfloat");
}

// ---------------------------------------------------------------------------
// ZADD flags, ZCOUNT, ZREVRANGEBYSCORE

fn zadd_flags(flags: &str) -> ZAddOptions {
    let mut options = ZAddOptions::default();
    for flag in flags.split_whitespace() {
        match flag {
            "nx" => options.nx = true,
            "xx" => options.xx = true,
            "gt" => options.gt = true,
            "lt" => options.lt = true,
            "ch" => options.ch = true,
            "incr" => options.incr = true,
            other => panic!("not a ZADD flag: {other}"),
        }
    }
    options
}

fn zadd_command(key: &str, members: &[(f64, &str)], flags: &str) -> Command {
    Command::ZAdd {
        key: key.into(),
        members: members.iter().map(|(s, m)| (*s, (*m).to_owned())).collect(),
        options: zadd_flags(flags),
    }
}

async fn zadd_refuses_flag_combinations_like_redis(t: TestKv) {
    let kv = t.store();
    let (z, s) = (t.key("z"), t.key("s"));
    kv.zadd(&z, vec![(1.0, "a".into())]).await.unwrap();
    kv.set(&s, b("v")).await.unwrap();
    let nx_xx = "ERR XX and NX options at the same time are not compatible";
    let gt_lt_nx = "ERR GT, LT, and/or NX options at the same time are not compatible";
    let incr_one = "ERR INCR option supports a single increment-element pair";
    let arity = "ERR wrong number of arguments for 'zadd' command";
    let syntax = "ERR syntax error";
    let not_float = "ERR value is not a valid float";
    let one: &[(f64, &str)] = &[(1.0, "a")];
    let two: &[(f64, &str)] = &[(1.0, "a"), (2.0, "b")];
    let nan: &[(f64, &str)] = &[(f64::NAN, "a")];
    let none: &[(f64, &str)] = &[];
    let cases = [
        ("nx xx", one, nx_xx),
        ("nx xx gt lt", one, nx_xx),
        ("gt lt", one, gt_lt_nx),
        ("nx gt", one, gt_lt_nx),
        ("nx lt", one, gt_lt_nx),
        ("incr", two, incr_one),
        ("gt lt incr", two, gt_lt_nx),
        // Flags before scores...
        ("nx xx", nan, nx_xx),
        ("", nan, not_float),
        ("incr", nan, not_float),
        // ...and the argument count before flags.
        ("", none, arity),
        ("nx", none, arity),
        ("nx xx", none, syntax),
        ("gt ch", none, syntax),
    ];
    for (flags, members, message) in cases {
        // All of it before the key's type.
        for key in [&z, &s] {
            let err = kv
                .execute(zadd_command(key, members, flags))
                .await
                .unwrap_err();
            assert_eq!(err.message(), message, "ZADD {flags} {members:?}: {err}");
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        }
    }
    assert_eq!(kv.zrange(&z, 0, -1).await.unwrap(), [("a".to_owned(), 1.0)]);
    assert_eq!(kv.get(&s).await.unwrap(), Some(b("v")));
    assert_wrong_type(kv.execute(zadd_command(&s, one, "xx gt ch")).await, "zadd");
}

/// ZADD's conditions, row by row, on a set holding `a` at 5: the flags and
/// pairs, Redis's reply, then `a`'s and `b`'s scores after.
async fn zadd_condition_matrix_matches_redis(t: TestKv) {
    let kv = t.store();
    type Row<'a> = (&'a str, &'a [(f64, &'a str)], Reply, f64, Option<f64>);
    let added = Reply::Int;
    let score = |s: Option<f64>| Reply::Score(s);
    let rows: &[Row] = &[
        ("", &[(7.0, "a"), (1.0, "b")], added(1), 7.0, Some(1.0)),
        ("ch", &[(7.0, "a"), (1.0, "b")], added(2), 7.0, Some(1.0)),
        // The same score is no change.
        ("ch", &[(5.0, "a")], added(0), 5.0, None),
        ("nx", &[(7.0, "a"), (1.0, "b")], added(1), 5.0, Some(1.0)),
        ("nx ch", &[(7.0, "a"), (1.0, "b")], added(1), 5.0, Some(1.0)),
        ("xx", &[(7.0, "a"), (1.0, "b")], added(0), 7.0, None),
        ("xx ch", &[(7.0, "a"), (1.0, "b")], added(1), 7.0, None),
        ("gt ch", &[(7.0, "a")], added(1), 7.0, None),
        ("gt ch", &[(3.0, "a")], added(0), 5.0, None),
        ("gt ch", &[(5.0, "a")], added(0), 5.0, None),
        // GT and LT never stop a new member.
        ("gt", &[(3.0, "a"), (1.0, "b")], added(1), 5.0, Some(1.0)),
        ("lt ch", &[(3.0, "a"), (9.0, "b")], added(2), 3.0, Some(9.0)),
        ("lt ch", &[(7.0, "a")], added(0), 5.0, None),
        ("xx gt ch", &[(7.0, "a"), (1.0, "b")], added(1), 7.0, None),
        ("xx lt ch", &[(7.0, "a"), (1.0, "b")], added(0), 5.0, None),
        ("incr", &[(2.0, "a")], score(Some(7.0)), 7.0, None),
        ("incr", &[(2.0, "b")], score(Some(2.0)), 5.0, Some(2.0)),
        ("incr", &[(0.0, "a")], score(Some(5.0)), 5.0, None),
        ("incr nx", &[(2.0, "a")], score(None), 5.0, None),
        ("incr nx", &[(2.0, "b")], score(Some(2.0)), 5.0, Some(2.0)),
        ("incr xx", &[(2.0, "b")], score(None), 5.0, None),
        ("incr gt", &[(-1.0, "a")], score(None), 5.0, None),
        ("incr gt", &[(1.0, "a")], score(Some(6.0)), 6.0, None),
        ("incr lt", &[(0.0, "a")], score(None), 5.0, None),
        ("incr lt ch", &[(-2.0, "a")], score(Some(3.0)), 3.0, None),
    ];
    for (i, (flags, members, reply, a, bs)) in rows.iter().enumerate() {
        let k = t.key(&format!("row{i}"));
        kv.zadd(&k, vec![(5.0, "a".into())]).await.unwrap();
        let what = format!("row {i}: ZADD {flags} {members:?}");
        let got = kv.execute(zadd_command(&k, members, flags)).await.unwrap();
        assert_eq!(&got, reply, "{what}");
        assert_eq!(kv.zscore(&k, "a").await.unwrap(), Some(*a), "{what}");
        assert_eq!(kv.zscore(&k, "b").await.unwrap(), *bs, "{what}");
    }
    // XX on a missing key creates nothing.
    let missing = t.key("missing");
    for (flags, reply) in [("xx", added(0)), ("xx incr", score(None))] {
        let got = kv
            .execute(zadd_command(&missing, &[(1.0, "a")], flags))
            .await
            .unwrap();
        assert_eq!(got, reply, "{flags}");
        assert_eq!(kv.exists(std::slice::from_ref(&missing)).await.unwrap(), 0);
    }
    // INCR into NaN fails and changes nothing.
    let top = t.key("top");
    kv.zadd(&top, vec![(f64::INFINITY, "m".into())])
        .await
        .unwrap();
    let err = kv
        .zadd_incr(&top, f64::NEG_INFINITY, "m", ZAddOptions::default())
        .await
        .unwrap_err();
    assert_invalid(&err, "ERR resulting score is not a number (NaN)");
    assert_eq!(kv.zscore(&top, "m").await.unwrap(), Some(f64::INFINITY));
    // The typed helpers.
    let k = t.key("typed");
    let ch = zadd_flags("ch");
    let two = vec![(1.0, "a".to_owned()), (2.0, "b".to_owned())];
    assert_eq!(kv.zadd_with(&k, two, ch).await.unwrap(), 2);
    let xx = zadd_flags("xx");
    assert_eq!(kv.zadd_incr(&k, 2.5, "a", xx).await.unwrap(), Some(3.5));
    assert_eq!(kv.zadd_incr(&k, 2.5, "c", xx).await.unwrap(), None);
    let err = kv
        .zadd_with(&k, vec![(1.0, "d".into())], zadd_flags("incr"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.zcard(&k).await.unwrap(), 2, "zadd_with sent nothing");
}

async fn zcount_counts_within_bounds(t: TestKv) {
    use ScoreBound::*;
    let kv = t.store();
    let (k, s) = (t.key("z"), t.key("s"));
    let members: Vec<(f64, String)> = (1..=5).map(|i| (i as f64, format!("m{i}"))).collect();
    kv.zadd(&k, members).await.unwrap();
    assert_eq!(
        kv.zcount(&k, Inclusive(2.0), Inclusive(4.0)).await.unwrap(),
        3
    );
    assert_eq!(kv.zcount(&k, Exclusive(2.0), PosInfinity).await.unwrap(), 3);
    assert_eq!(
        kv.zcount(&k, Exclusive(2.0), Exclusive(4.0)).await.unwrap(),
        1
    );
    assert_eq!(
        kv.zcount(&k, Inclusive(5.0), Inclusive(1.0)).await.unwrap(),
        0
    );
    assert_eq!(kv.zcount(&k, NegInfinity, PosInfinity).await.unwrap(), 5);
    assert_eq!(
        kv.zcount(&t.key("none"), NegInfinity, PosInfinity)
            .await
            .unwrap(),
        0
    );
    kv.zadd(
        &k,
        vec![
            (f64::INFINITY, "top".into()),
            (f64::NEG_INFINITY, "bottom".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(kv.zcount(&k, PosInfinity, PosInfinity).await.unwrap(), 1);
    assert_eq!(kv.zcount(&k, NegInfinity, NegInfinity).await.unwrap(), 1);
    let err = kv
        .zcount(&k, Inclusive(f64::NAN), PosInfinity)
        .await
        .unwrap_err();
    assert_invalid(&err, "ERR min or max is not a float");
    kv.set(&s, b("v")).await.unwrap();
    assert_wrong_type(kv.zcount(&s, NegInfinity, PosInfinity).await, "zcount");
}

async fn zrevrangebyscore_descends_with_limit(t: TestKv) {
    use ScoreBound::*;
    let kv = t.store();
    let k = t.key("board");
    kv.zadd(
        &k,
        vec![
            (1.0, "a".into()),
            (2.0, "b".into()),
            (2.0, "c".into()),
            (3.0, "d".into()),
            (4.0, "e".into()),
            (5.0, "f".into()),
        ],
    )
    .await
    .unwrap();
    let rev = |max, min, limit| {
        let kv = kv.clone();
        let k = k.clone();
        async move { kv.zrevrangebyscore(&k, max, min, limit).await.unwrap() }
    };
    // Ties descend by member too.
    assert_eq!(
        names(&rev(PosInfinity, NegInfinity, None).await),
        ["f", "e", "d", "c", "b", "a"]
    );
    assert_eq!(
        names(&rev(Inclusive(4.0), Exclusive(1.0), None).await),
        ["e", "d", "c", "b"]
    );
    assert_eq!(
        names(&rev(Exclusive(4.0), Inclusive(2.0), None).await),
        ["d", "c", "b"]
    );
    assert_eq!(
        names(&rev(Inclusive(2.0), Inclusive(2.0), None).await),
        ["c", "b"]
    );
    assert_eq!(
        rev(PosInfinity, NegInfinity, Some((1, 2))).await,
        vec![("e".to_string(), 4.0), ("d".to_string(), 3.0)]
    );
    assert!(rev(Inclusive(2.0), Inclusive(4.0), None).await.is_empty());
    assert!(
        rev(PosInfinity, NegInfinity, Some((10, 5)))
            .await
            .is_empty()
    );
    let up = kv
        .zrangebyscore(&k, Inclusive(2.0), Inclusive(3.0), Some((1, 5)))
        .await
        .unwrap();
    assert_eq!(names(&up), ["c", "d"]);
    kv.zadd(
        &k,
        vec![
            (f64::INFINITY, "top".into()),
            (f64::NEG_INFINITY, "bottom".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(names(&rev(PosInfinity, PosInfinity, None).await), ["top"]);
    assert_eq!(
        names(&rev(Exclusive(1.0), NegInfinity, None).await),
        ["bottom"]
    );
    assert_eq!(
        names(&rev(NegInfinity, NegInfinity, None).await),
        ["bottom"]
    );
    let none = kv
        .zrevrangebyscore(&t.key("none"), PosInfinity, NegInfinity, None)
        .await
        .unwrap();
    assert!(none.is_empty());
    let err = kv
        .zrevrangebyscore(&k, Inclusive(f64::NAN), NegInfinity, None)
        .await
        .unwrap_err();
    assert_invalid(&err, "ERR min or max is not a float");
    let s = t.key("s");
    kv.set(&s, b("v")).await.unwrap();
    assert_wrong_type(
        kv.zrevrangebyscore(&s, PosInfinity, NegInfinity, None)
            .await,
        "zrevrangebyscore",
    );
}

// ---------------------------------------------------------------------------
// Paged SCAN

/// Every page of a scan; fails rather than loops forever.
async fn scan_pages(kv: &Arc<dyn KvStore>, options: &ScanOptions) -> Vec<ScanPage> {
    let mut pages = Vec::new();
    let mut cursor = ScanCursor::start();
    loop {
        assert!(pages.len() < 1_000_000, "the scan does not end");
        let page = kv.scan(&cursor, options).await.unwrap();
        let last = page.is_last();
        cursor = page.cursor.clone();
        pages.push(page);
        if last {
            return pages;
        }
    }
}

async fn scan_pages_until_the_cursor_is_zero(t: TestKv) {
    let kv = t.store();
    let names: Vec<String> = (0..50).map(|i| format!("page:{i:02}")).collect();
    let pairs = names.iter().map(|n| (t.key(n), b("v"))).collect();
    kv.mset(pairs).await.unwrap();
    kv.set(&t.key("other"), b("v")).await.unwrap();
    let options = ScanOptions::matching(format!("{}page:*", t.prefix)).count(7);
    let pages = scan_pages(&kv, &options).await;
    assert!(pages.len() > 1, "COUNT 7 over 51 keys takes several steps");
    let seen: BTreeSet<String> = pages.into_iter().flat_map(|p| p.keys).collect();
    let want: BTreeSet<String> = names.iter().map(|n| t.key(n)).collect();
    assert_eq!(seen, want);
    // The helper collects the same, sorted and once each.
    let all = kv.scan_all(&format!("{}page:*", t.prefix)).await.unwrap();
    assert_eq!(all, want.into_iter().collect::<Vec<_>>());
}

async fn scan_filters_by_type(t: TestKv) {
    let kv = t.store();
    let [s1, s2, h, z] = [t.key("s1"), t.key("s2"), t.key("h"), t.key("z")];
    kv.set(&s1, b("v")).await.unwrap();
    kv.incr(&s2).await.unwrap();
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    kv.zadd(&z, vec![(1.0, "m".into())]).await.unwrap();
    let all = format!("{}*", t.prefix);
    for (key_type, want) in [
        (KeyType::String, vec![s1.clone(), s2.clone()]),
        (KeyType::Hash, vec![h.clone()]),
        (KeyType::ZSet, vec![z.clone()]),
        (KeyType::None, vec![]),
    ] {
        let options = ScanOptions::matching(all.clone()).of_type(key_type);
        let got = kv.scan_all_with(options).await.unwrap();
        assert_eq!(got, want, "TYPE {}", key_type.as_str());
    }
}

async fn scan_returns_every_key_present_throughout(t: TestKv) {
    let kv = t.store();
    let stay: Vec<String> = (0..120).map(|i| t.key(&format!("stay:{i:03}"))).collect();
    let gone: Vec<String> = (0..60).map(|i| t.key(&format!("gone:{i:03}"))).collect();
    let pairs = stay
        .iter()
        .chain(&gone)
        .map(|k| (k.clone(), b("v")))
        .collect();
    kv.mset(pairs).await.unwrap();
    let options = ScanOptions::matching(format!("{}*", t.prefix)).count(10);
    let mut seen = BTreeSet::new();
    let mut cursor = ScanCursor::start();
    for step in 0.. {
        assert!(step < 1_000_000, "the scan does not end");
        let page = kv.scan(&cursor, &options).await.unwrap();
        let last = page.is_last();
        seen.extend(page.keys);
        if last {
            break;
        }
        cursor = page.cursor;
        // Keys come and go between steps, before and after the position.
        let added = vec![
            (t.key(&format!("new:{step:03}:a")), b("v")),
            (t.key(&format!("a-new:{step:03}")), b("v")),
            (t.key(&format!("zz-new:{step:03}")), b("v")),
        ];
        kv.mset(added).await.unwrap();
        let doomed: Vec<String> = gone.iter().skip(2 * step).take(2).cloned().collect();
        if !doomed.is_empty() {
            kv.del(&doomed).await.unwrap();
        }
    }
    let missed: Vec<&String> = stay.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(
        missed.is_empty(),
        "keys present throughout were missed: {missed:?}"
    );
    assert!(seen.iter().all(|k| k.starts_with(&t.prefix)));
}

async fn scan_refuses_count_zero_and_unreadable_cursors(t: TestKv) {
    let kv = t.store();
    kv.set(&t.key("k"), b("v")).await.unwrap();
    let err = kv
        .scan(&ScanCursor::start(), &ScanOptions::default().count(0))
        .await
        .unwrap_err();
    assert_invalid(&err, "ERR syntax error");
    for bad in ["nonsense", "", "1.5", " 7", "-"] {
        let err = kv
            .scan(&ScanCursor::new(bad), &ScanOptions::default())
            .await
            .unwrap_err();
        assert_invalid(&err, "ERR invalid cursor");
    }
}

async fn delete_pattern_deletes_page_by_page(t: TestKv) {
    let kv = t.store();
    // Several of the helper's pages of SCAN_PAGE keys.
    let doomed: Vec<(String, Bytes)> = (0..2500)
        .map(|i| (t.key(&format!("bulk:{i:04}")), b("v")))
        .collect();
    for chunk in doomed.chunks(500) {
        kv.mset(chunk.to_vec()).await.unwrap();
    }
    kv.set(&t.key("keep"), b("v")).await.unwrap();
    let deleted = kv
        .delete_pattern(&format!("{}bulk:*", t.prefix))
        .await
        .unwrap();
    assert_eq!(deleted, 2500);
    assert_eq!(t.all_keys().await, t.keys(&["keep"]));
}

async fn pipeline_carries_the_newer_commands(t: TestKv) {
    let kv = t.store();
    let (k, z, h) = (t.key("k"), t.key("z"), t.key("h"));
    let commands = vec![
        Command::SetGet {
            key: k.clone(),
            value: b("1"),
            options: SetOptions::default(),
        },
        Command::SetGet {
            key: k.clone(),
            value: b("2"),
            options: SetOptions::ttl(Duration::from_secs(100)),
        },
        Command::GetEx {
            key: k.clone(),
            expiry: GetExpiry::Persist,
        },
        Command::MSetNx {
            pairs: vec![(k.clone(), b("x"))],
        },
        Command::Append {
            key: k.clone(),
            value: b("3"),
        },
        zadd_command(&z, &[(1.0, "a")], "incr"),
        zadd_command(&z, &[(1.0, "a"), (2.0, "b")], "incr"),
        zadd_command(&z, &[(5.0, "a")], "gt ch"),
        Command::ZCount {
            key: z.clone(),
            min: ScoreBound::NegInfinity,
            max: ScoreBound::PosInfinity,
        },
        Command::HSetNx {
            key: h.clone(),
            field: "f".into(),
            value: b("v"),
        },
        Command::HKeys { key: h.clone() },
        Command::HVals { key: h.clone() },
        Command::HExists {
            key: h.clone(),
            field: "f".into(),
        },
        Command::HStrLen {
            key: h.clone(),
            field: "f".into(),
        },
        Command::HIncrByFloat {
            key: h.clone(),
            field: "n".into(),
            delta: 1.5,
        },
        Command::Expire {
            key: k.clone(),
            ttl: Duration::from_secs(10),
            options: expire_flags("nx xx"),
        },
        Command::Expire {
            key: k.clone(),
            ttl: Duration::from_secs(10),
            options: expire_flags("nx"),
        },
        Command::GetDel { key: k.clone() },
        Command::StrLen { key: k.clone() },
        Command::ZRangeByScore {
            key: z.clone(),
            min: ScoreBound::NegInfinity,
            max: ScoreBound::PosInfinity,
            rev: true,
            limit: None,
        },
    ];
    let results = kv.pipeline(commands).await.unwrap();
    let ok = |i: usize| results[i].as_ref().unwrap().clone();
    assert_eq!(ok(0), Reply::Value(None));
    assert_eq!(ok(1), Reply::Value(Some(b("1"))));
    assert_eq!(ok(2), Reply::Value(Some(b("2"))));
    assert_eq!(ok(3), Reply::Bool(false));
    assert_eq!(ok(4), Reply::Int(2));
    assert_eq!(ok(5), Reply::Score(Some(1.0)));
    let err = results[6].as_ref().unwrap_err();
    assert_invalid(
        err,
        "ERR INCR option supports a single increment-element pair",
    );
    assert_eq!(ok(7), Reply::Int(1));
    assert_eq!(ok(8), Reply::Int(1));
    assert_eq!(ok(9), Reply::Bool(true));
    assert_eq!(ok(10), Reply::Fields(vec!["f".into()]));
    assert_eq!(ok(11), Reply::Blobs(vec![b("v")]));
    assert_eq!(ok(12), Reply::Bool(true));
    assert_eq!(ok(13), Reply::Int(1));
    assert_eq!(ok(14), Reply::Float(1.5));
    let err = results[15].as_ref().unwrap_err();
    assert_invalid(
        err,
        "ERR NX and XX, GT or LT options at the same time are not compatible",
    );
    assert_eq!(ok(16), Reply::Bool(true));
    assert_eq!(ok(17), Reply::Value(Some(b("23"))));
    assert_eq!(ok(18), Reply::Int(0));
    assert_eq!(ok(19), Reply::Scored(vec![("a".into(), 5.0)]));
}

// ---------------------------------------------------------------------------
// Bounded subscriptions

/// A subscriber that reads nothing while messages pile up is told, at the
/// place of the gap, how many it lost, and then reads on. Each message
/// carries its sequence number, so every gap must be exactly announced by
/// the `Lagged` before it.
async fn slow_subscriber_is_told_how_many_it_missed(t: TestKv) {
    let capacity = 4;
    let kv = t.store_with_subscription_capacity(capacity).await;
    let channel = t.key("firehose");
    let mut sub = kv.subscribe(std::slice::from_ref(&channel)).await.unwrap();
    assert_eq!(sub.capacity(), capacity);
    // Publish until the subscription has had to drop something; nothing
    // is read meanwhile.
    let mut published = 0u64;
    while sub.dropped() == 0 {
        assert!(published < 1_000_000, "no message was ever dropped");
        let reached = kv
            .publish(&channel, b(&published.to_string()))
            .await
            .unwrap();
        assert_eq!(reached, 1, "a lagging subscriber is still reached");
        published += 1;
    }
    assert!(published > capacity as u64, "{published}");
    let (mut next, mut lagged, mut gaps) = (0u64, 0u64, 0u32);
    let mut first = None;
    while next < published {
        let event = next_event(&mut sub).await;
        first.get_or_insert_with(|| event.clone());
        match event {
            SubscriptionEvent::Lagged(n) => {
                assert!(n > 0);
                // The dropped ones are exactly the next `n`.
                next += n;
                lagged += n;
                gaps += 1;
            }
            SubscriptionEvent::Message(m) => {
                let seq: u64 = String::from_utf8_lossy(&m.payload).parse().unwrap();
                assert_eq!(seq, next, "a message was skipped without a Lagged");
                next += 1;
            }
        }
    }
    assert_eq!(next, published);
    assert!(gaps >= 1);
    assert_eq!(lagged, sub.dropped());
    assert!(
        matches!(first, Some(SubscriptionEvent::Lagged(_))),
        "the oldest were dropped, so the gap comes first: {first:?}"
    );
    // And the subscription goes on normally.
    kv.publish(&channel, b("after")).await.unwrap();
    assert_eq!(next_message(&mut sub).await.payload, b("after"));
}

async fn concurrent_msetnx_writes_one_whole_set(t: TestKv) {
    for round in 0..20 {
        let (x, y) = (t.key(&format!("x{round}")), t.key(&format!("y{round}")));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let kv = t.store();
                let pairs = vec![
                    (x.clone(), b(&i.to_string())),
                    (y.clone(), b(&i.to_string())),
                ];
                tokio::spawn(async move { kv.msetnx(pairs).await.unwrap() })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            wins += u32::from(task.await.unwrap());
        }
        assert_eq!(wins, 1, "round {round}");
        let kv = t.store();
        assert_eq!(kv.get(&x).await.unwrap(), kv.get(&y).await.unwrap());
    }
}

// ---------------------------------------------------------------------------
// Concurrency

async fn concurrent_incr_is_atomic(t: TestKv) {
    let k = t.key("counter");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let kv = t.store();
            let k = k.clone();
            tokio::spawn(async move {
                for _ in 0..1000 {
                    kv.incr(&k).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(t.store().get(&k).await.unwrap(), Some(b("8000")));
}

// ---------------------------------------------------------------------------
// Atomic commands: fenced locks, rate limits, best scores, newer-only hash
// writes

async fn lock_acquire_takes_a_free_lock_and_counts_fences(t: TestKv) {
    let kv = t.store();
    let (lock, fence) = (t.key("lock"), t.key("fence"));
    let ttl = Duration::from_secs(30);
    assert_eq!(
        kv.lock_acquire(&lock, "a", ttl, &fence).await.unwrap(),
        Some(1)
    );
    assert_eq!(kv.get(&lock).await.unwrap(), Some(b("a")));
    let left = kv.ttl(&lock).await.unwrap();
    assert!(
        expires_within(left, Duration::from_secs(25), ttl),
        "{left:?}"
    );
    // Held, by another token or by the same one: nothing changes.
    assert_eq!(
        kv.lock_acquire(&lock, "b", ttl, &fence).await.unwrap(),
        None
    );
    assert_eq!(
        kv.lock_acquire(&lock, "a", ttl, &fence).await.unwrap(),
        None
    );
    assert_eq!(kv.get(&lock).await.unwrap(), Some(b("a")));
    assert_eq!(kv.get(&fence).await.unwrap(), Some(b("1")));
    assert_eq!(kv.ttl(&fence).await.unwrap(), Ttl::Persistent);
    // Released by its token only, then taken with the next fence.
    assert!(!kv.compare_and_delete(&lock, b("b")).await.unwrap());
    assert!(kv.compare_and_delete(&lock, b("a")).await.unwrap());
    assert_eq!(
        kv.lock_acquire(&lock, "b", ttl, &fence).await.unwrap(),
        Some(2)
    );
    // Another lock on the same counter continues its numbers.
    let other = t.key("other");
    let short = Duration::from_millis(50);
    assert_eq!(
        kv.lock_acquire(&other, "c", short, &fence).await.unwrap(),
        Some(3)
    );
    // Letting the lock's ttl pass is what this step is about.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(kv.get(&other).await.unwrap(), None);
    assert_eq!(
        kv.lock_acquire(&other, "d", ttl, &fence).await.unwrap(),
        Some(4)
    );
    // A key of any type is a held lock.
    let h = t.key("h");
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    assert_eq!(kv.lock_acquire(&h, "a", ttl, &fence).await.unwrap(), None);
    assert_eq!(kv.get(&fence).await.unwrap(), Some(b("4")));
    // The counter never expires and only increases.
    assert_eq!(kv.ttl(&fence).await.unwrap(), Ttl::Persistent);
}

async fn lock_acquire_changes_nothing_when_it_fails(t: TestKv) {
    let kv = t.store();
    let (lock, fence) = (t.key("lock"), t.key("fence"));
    let ttl = Duration::from_secs(30);
    // A counter that is not an integer: refused, the lock not taken.
    kv.set(&fence, b("many")).await.unwrap();
    let err = kv.lock_acquire(&lock, "a", ttl, &fence).await.unwrap_err();
    assert_invalid(&err, "ERR value is not an integer or out of range");
    assert_eq!(err.operation(), Some("lock_acquire"));
    assert_eq!(kv.exists(std::slice::from_ref(&lock)).await.unwrap(), 0);
    assert_eq!(kv.get(&fence).await.unwrap(), Some(b("many")));
    // A counter of another type.
    let hash_fence = t.key("hash-fence");
    kv.hset(&hash_fence, vec![("f".into(), b("1"))])
        .await
        .unwrap();
    assert_wrong_type(
        kv.lock_acquire(&lock, "a", ttl, &hash_fence).await,
        "lock_acquire on a hash counter",
    );
    assert_eq!(kv.exists(std::slice::from_ref(&lock)).await.unwrap(), 0);
    // A counter at its maximum.
    kv.set(&fence, b(&i64::MAX.to_string())).await.unwrap();
    let err = kv.lock_acquire(&lock, "a", ttl, &fence).await.unwrap_err();
    assert_invalid(&err, "ERR increment or decrement would overflow");
    assert_eq!(kv.exists(std::slice::from_ref(&lock)).await.unwrap(), 0);
    // An expiry SET refuses, before the counter is looked at.
    let fresh = t.key("fresh-fence");
    for bad in [Duration::ZERO, Duration::from_micros(999)] {
        let err = kv.lock_acquire(&lock, "a", bad, &fresh).await.unwrap_err();
        assert_invalid(&err, "ERR invalid expire time in 'set' command");
    }
    assert_eq!(kv.exists(&[lock.clone(), fresh.clone()]).await.unwrap(), 0);
    // The lock and its counter must be two keys.
    let err = kv.lock_acquire(&lock, "a", ttl, &lock).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.message().contains("fence key"), "{err}");
    assert!(t.all_keys().await.iter().all(|k| *k != lock));
}

async fn lock_extend_needs_the_token(t: TestKv) {
    let kv = t.store();
    let (lock, fence) = (t.key("lock"), t.key("fence"));
    let long = Duration::from_secs(300);
    assert!(!kv.lock_extend(&lock, "a", long).await.unwrap(), "missing");
    kv.lock_acquire(&lock, "a", Duration::from_secs(10), &fence)
        .await
        .unwrap()
        .expect("free");
    assert!(!kv.lock_extend(&lock, "b", long).await.unwrap());
    let left = kv.ttl(&lock).await.unwrap();
    assert!(
        expires_within(left, Duration::ZERO, Duration::from_secs(10)),
        "{left:?}"
    );
    assert!(kv.lock_extend(&lock, "a", long).await.unwrap());
    let left = kv.ttl(&lock).await.unwrap();
    assert!(
        expires_within(left, Duration::from_secs(290), long),
        "{left:?}"
    );
    assert_eq!(kv.get(&lock).await.unwrap(), Some(b("a")));
    // As PEXPIRE: an expiry of zero deletes the lock, once the token matched.
    assert!(!kv.lock_extend(&lock, "b", Duration::ZERO).await.unwrap());
    assert!(kv.lock_extend(&lock, "a", Duration::ZERO).await.unwrap());
    assert_eq!(kv.get(&lock).await.unwrap(), None);
    // A lock key of another type.
    let h = t.key("h");
    kv.hset(&h, vec![("f".into(), b("v"))]).await.unwrap();
    assert_wrong_type(kv.lock_extend(&h, "a", long).await, "lock_extend");
    assert_eq!(kv.ttl(&h).await.unwrap(), Ttl::Persistent);
}

/// 8 tasks × 150 attempts at one lock: while a task holds it nobody else
/// does, and the fences, read in the order the lock was held, increase
/// by one each time.
async fn concurrent_lock_holders_never_overlap(t: TestKv) {
    let (lock, fence) = (t.key("lock"), t.key("fence"));
    let holders = Arc::new(AtomicU64::new(0));
    let last_fence = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let kv = t.store();
            let (lock, fence) = (lock.clone(), fence.clone());
            let (holders, last_fence) = (Arc::clone(&holders), Arc::clone(&last_fence));
            tokio::spawn(async move {
                let mut taken = 0u64;
                for attempt in 0..150 {
                    let token = format!("{task}:{attempt}");
                    let ttl = Duration::from_secs(60);
                    let Some(number) = kv.lock_acquire(&lock, &token, ttl, &fence).await.unwrap()
                    else {
                        continue;
                    };
                    assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    let previous = last_fence.swap(number, Ordering::SeqCst);
                    assert_eq!(number, previous + 1, "fences in the order held");
                    assert_eq!(kv.get(&lock).await.unwrap(), Some(b(&token)));
                    assert!(kv.lock_extend(&lock, &token, ttl).await.unwrap());
                    holders.fetch_sub(1, Ordering::SeqCst);
                    assert!(kv.compare_and_delete(&lock, b(&token)).await.unwrap());
                    taken += 1;
                }
                taken
            })
        })
        .collect();
    let mut taken = 0;
    for task in tasks {
        taken += task.await.unwrap();
    }
    assert!(taken > 0);
    let kv = t.store();
    assert_eq!(kv.get(&fence).await.unwrap(), Some(b(&taken.to_string())));
    assert_eq!(last_fence.load(Ordering::SeqCst), taken);
}

async fn rate_limit_allows_the_burst_then_refuses(t: TestKv) {
    let kv = t.store();
    let (key, other) = (t.key("rate"), t.key("other"));
    let (limit, period) = (5, Duration::from_secs(60));
    let interval = period / limit;
    // Cost 0 on a fresh key reports a full limiter and writes nothing.
    let report = kv.rate_limit(&key, limit, period, 0).await.unwrap();
    assert!(report.allowed);
    assert_eq!(report.remaining, limit);
    assert_eq!(report.retry_after, Duration::ZERO);
    assert_eq!(report.reset_after, Duration::ZERO);
    assert_eq!(kv.exists(std::slice::from_ref(&key)).await.unwrap(), 0);
    for left in (0..limit).rev() {
        let reply = kv.rate_limit(&key, limit, period, 1).await.unwrap();
        assert!(reply.allowed, "{reply:?}");
        assert_eq!(reply.remaining, left, "{reply:?}");
        assert_eq!(reply.retry_after, Duration::ZERO);
        assert!(reply.reset_after <= period, "{reply:?}");
    }
    let refused = kv.rate_limit(&key, limit, period, 1).await.unwrap();
    assert!(!refused.allowed, "{refused:?}");
    assert_eq!(refused.remaining, 0);
    assert!(
        refused.retry_after > Duration::ZERO && refused.retry_after <= interval,
        "{refused:?}"
    );
    assert!(
        refused.reset_after > period - interval && refused.reset_after <= period,
        "{refused:?}"
    );
    // The key holds the state and vanishes when the limiter is full again.
    let left = kv.ttl(&key).await.unwrap();
    assert!(expires_within(left, period - interval, period), "{left:?}");
    // A refusal consumes nothing: refused again the same way, and a report
    // still sees the limiter as it was.
    let again = kv.rate_limit(&key, limit, period, 1).await.unwrap();
    assert!(
        !again.allowed && again.retry_after <= refused.retry_after,
        "{again:?}"
    );
    let report = kv.rate_limit(&key, limit, period, 0).await.unwrap();
    assert_eq!((report.allowed, report.remaining), (true, 0), "{report:?}");
    // Another key is another limiter.
    let reply = kv.rate_limit(&other, limit, period, 1).await.unwrap();
    assert_eq!(
        (reply.allowed, reply.remaining),
        (true, limit - 1),
        "{reply:?}"
    );
    // A cost counts several requests; a refused one takes none of them.
    let costly = t.key("costly");
    let reply = kv.rate_limit(&costly, limit, period, 3).await.unwrap();
    assert_eq!((reply.allowed, reply.remaining), (true, 2), "{reply:?}");
    let reply = kv.rate_limit(&costly, limit, period, 3).await.unwrap();
    assert!(!reply.allowed, "{reply:?}");
    assert!(reply.retry_after > Duration::ZERO && reply.retry_after <= interval);
    assert_eq!(reply.remaining, 2);
    let reply = kv.rate_limit(&costly, limit, period, 2).await.unwrap();
    assert_eq!((reply.allowed, reply.remaining), (true, 0), "{reply:?}");
    // A cost of the whole limit is allowed on a fresh key.
    let whole = t.key("whole");
    let reply = kv.rate_limit(&whole, limit, period, limit).await.unwrap();
    assert_eq!((reply.allowed, reply.remaining), (true, 0), "{reply:?}");
}

async fn rate_limit_refuses_what_it_cannot_limit(t: TestKv) {
    let kv = t.store();
    let key = t.key("rate");
    let second = Duration::from_secs(1);
    let refusals = [
        (0, second, 0, "limit of 0"),
        (5, Duration::ZERO, 1, "period must be above zero"),
        (5, second, 6, "could never be allowed"),
        (2_000_000, second, 1, "below one microsecond per request"),
        (
            5,
            Duration::from_secs(200 * 365 * 86_400),
            1,
            "out of range",
        ),
    ];
    for (limit, period, cost, words) in refusals {
        let err = kv.rate_limit(&key, limit, period, cost).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.message().contains(words), "{words:?}: {err}");
        assert_eq!(err.operation(), Some("rate_limit"));
    }
    assert!(t.all_keys().await.is_empty());
    // State that is not a limiter's.
    kv.set(&key, b("soon")).await.unwrap();
    let err = kv.rate_limit(&key, 5, second, 1).await.unwrap_err();
    assert_invalid(&err, "ERR value is not an integer or out of range");
    assert_eq!(kv.get(&key).await.unwrap(), Some(b("soon")));
    let h = t.key("h");
    kv.hset(&h, vec![("f".into(), b("1"))]).await.unwrap();
    assert_wrong_type(kv.rate_limit(&h, 5, second, 1).await, "rate_limit");
}

/// 16 tasks × 40 calls against a limit of 100 per hour: exactly 100 are
/// allowed (no time passes that would let one more in).
async fn concurrent_rate_limit_allows_exactly_the_limit(t: TestKv) {
    let key = t.key("rate");
    let (limit, period) = (100, Duration::from_secs(3600));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let kv = t.store();
            let key = key.clone();
            tokio::spawn(async move {
                let mut allowed = 0u32;
                for _ in 0..40 {
                    let reply = kv.rate_limit(&key, limit, period, 1).await.unwrap();
                    if reply.allowed {
                        allowed += 1;
                    } else {
                        assert_eq!(reply.remaining, 0, "{reply:?}");
                        assert!(reply.retry_after > Duration::ZERO, "{reply:?}");
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    assert_eq!(allowed, limit);
}

async fn zadd_best_keeps_the_best_score_and_its_earliest_time(t: TestKv) {
    let kv = t.store();
    let (board, at) = (t.key("board"), t.key("at"));
    let time = |kv: &Arc<dyn KvStore>, member: &'static str| {
        let (kv, at) = (Arc::clone(kv), at.clone());
        async move { kv.hget(&at, member).await.unwrap() }
    };
    // New member.
    assert!(kv.zadd_best(&board, "ann", 10.0, &at, 100).await.unwrap());
    assert_eq!(kv.zscore(&board, "ann").await.unwrap(), Some(10.0));
    assert_eq!(time(&kv, "ann").await, Some(b("100")));
    // Lower: nothing.
    assert!(!kv.zadd_best(&board, "ann", 9.5, &at, 50).await.unwrap());
    assert_eq!(kv.zscore(&board, "ann").await.unwrap(), Some(10.0));
    assert_eq!(time(&kv, "ann").await, Some(b("100")));
    // Equal, later: nothing; equal, earlier: the earlier time.
    assert!(!kv.zadd_best(&board, "ann", 10.0, &at, 120).await.unwrap());
    assert_eq!(time(&kv, "ann").await, Some(b("100")));
    assert!(!kv.zadd_best(&board, "ann", 10.0, &at, 90).await.unwrap());
    assert_eq!(time(&kv, "ann").await, Some(b("90")));
    // Higher: the score and its time, even a later one.
    assert!(kv.zadd_best(&board, "ann", 12.5, &at, 300).await.unwrap());
    assert_eq!(kv.zscore(&board, "ann").await.unwrap(), Some(12.5));
    assert_eq!(time(&kv, "ann").await, Some(b("300")));
    // Negative times compare as integers, not as text.
    assert!(kv.zadd_best(&board, "bob", 1.0, &at, -5).await.unwrap());
    assert!(!kv.zadd_best(&board, "bob", 1.0, &at, -40).await.unwrap());
    assert_eq!(time(&kv, "bob").await, Some(b("-40")));
    assert!(!kv.zadd_best(&board, "bob", 1.0, &at, -7).await.unwrap());
    assert_eq!(time(&kv, "bob").await, Some(b("-40")));
    // Large times, beyond a double's exact integers, compare exactly.
    let big = 1_700_000_000_000_000_001_i64;
    assert!(kv.zadd_best(&board, "cy", 2.0, &at, big).await.unwrap());
    assert!(!kv.zadd_best(&board, "cy", 2.0, &at, big - 1).await.unwrap());
    assert_eq!(time(&kv, "cy").await, Some(b(&(big - 1).to_string())));
    assert!(!kv.zadd_best(&board, "cy", 2.0, &at, big).await.unwrap());
    assert_eq!(time(&kv, "cy").await, Some(b(&(big - 1).to_string())));
    // Infinite scores, and -0 tying with 0.
    assert!(
        kv.zadd_best(&board, "dee", f64::NEG_INFINITY, &at, 1)
            .await
            .unwrap()
    );
    assert!(kv.zadd_best(&board, "dee", -1e300, &at, 2).await.unwrap());
    assert!(
        kv.zadd_best(&board, "dee", f64::INFINITY, &at, 3)
            .await
            .unwrap()
    );
    assert!(
        !kv.zadd_best(&board, "dee", f64::INFINITY, &at, 4)
            .await
            .unwrap()
    );
    assert_eq!(kv.zscore(&board, "dee").await.unwrap(), Some(f64::INFINITY));
    assert!(kv.zadd_best(&board, "eve", 0.0, &at, 10).await.unwrap());
    assert!(!kv.zadd_best(&board, "eve", -0.0, &at, 5).await.unwrap());
    assert_eq!(time(&kv, "eve").await, Some(b("5")));
    // A missing time for an existing score is recorded.
    kv.zadd(&board, vec![(7.0, "fay".into())]).await.unwrap();
    assert!(!kv.zadd_best(&board, "fay", 7.0, &at, 70).await.unwrap());
    assert_eq!(time(&kv, "fay").await, Some(b("70")));
    // The ranking a caller builds: score descending, earlier time first.
    let mut ranked: Vec<(String, f64, i64)> = Vec::new();
    for (member, score) in kv.zrevrange(&board, 0, -1).await.unwrap() {
        let reached = kv.hget(&at, &member).await.unwrap().unwrap();
        let reached: i64 = std::str::from_utf8(&reached).unwrap().parse().unwrap();
        ranked.push((member, score, reached));
    }
    assert_eq!(ranked.len(), 6);
    assert_eq!(ranked[0].0, "dee");
}

async fn zadd_best_changes_nothing_when_it_fails(t: TestKv) {
    let kv = t.store();
    let (board, at) = (t.key("board"), t.key("at"));
    let (s, h) = (t.key("s"), t.key("h"));
    kv.set(&s, b("v")).await.unwrap();
    kv.hset(&h, vec![("x".into(), b("1"))]).await.unwrap();
    // NaN, as ZADD refuses it, before the types.
    let err = kv.zadd_best(&s, "m", f64::NAN, &s, 1).await.unwrap_err();
    assert_invalid(&err, "ERR value is not a valid float");
    // The sorted set of another type: the times untouched.
    assert_wrong_type(kv.zadd_best(&s, "m", 1.0, &at, 1).await, "zadd_best set");
    assert_eq!(kv.exists(std::slice::from_ref(&at)).await.unwrap(), 0);
    assert_wrong_type(kv.zadd_best(&h, "m", 1.0, &at, 1).await, "zadd_best set");
    // The times of another type: the score untouched.
    assert_wrong_type(
        kv.zadd_best(&board, "m", 1.0, &s, 1).await,
        "zadd_best times",
    );
    assert_eq!(kv.exists(std::slice::from_ref(&board)).await.unwrap(), 0);
    assert_eq!(kv.get(&s).await.unwrap(), Some(b("v")));
    // A stored time that is not an integer, when it must be compared.
    kv.zadd(&board, vec![(5.0, "m".into())]).await.unwrap();
    kv.hset(&at, vec![("m".into(), b("noon"))]).await.unwrap();
    let err = kv.zadd_best(&board, "m", 5.0, &at, 1).await.unwrap_err();
    assert_invalid(&err, "ERR the time of member 'm' is not an integer");
    assert_eq!(kv.hget(&at, "m").await.unwrap(), Some(b("noon")));
    // ... and not when the score beats it.
    assert!(kv.zadd_best(&board, "m", 6.0, &at, 1).await.unwrap());
    assert_eq!(kv.hget(&at, "m").await.unwrap(), Some(b("1")));
    // The set and the times must be two keys.
    let err = kv.zadd_best(&board, "m", 9.0, &board, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.zscore(&board, "m").await.unwrap(), Some(6.0));
}

/// 8 tasks × 200 submissions over 4 members: each member ends with the
/// highest score submitted for it, and the earliest time among the
/// submissions of that score.
async fn concurrent_zadd_best_keeps_the_best(t: TestKv) {
    let (board, at) = (t.key("board"), t.key("at"));
    let submission = |task: i64, n: i64| {
        let member = format!("m{}", n % 4);
        let score = ((task * 7 + n * 13) % 50) as f64;
        let time = 1_000 + (n * 8 + task) * 3 % 1601;
        (member, score, time)
    };
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let kv = t.store();
            let (board, at) = (board.clone(), at.clone());
            tokio::spawn(async move {
                for n in 0..200 {
                    let (member, score, time) = submission(task, n);
                    kv.zadd_best(&board, &member, score, &at, time)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut best: std::collections::BTreeMap<String, (f64, i64)> = Default::default();
    for task in 0..8 {
        for n in 0..200 {
            let (member, score, time) = submission(task, n);
            let entry = best.entry(member).or_insert((score, time));
            if score > entry.0 || (score == entry.0 && time < entry.1) {
                *entry = (score, time);
            }
        }
    }
    let kv = t.store();
    for (member, (score, time)) in best {
        assert_eq!(
            kv.zscore(&board, &member).await.unwrap(),
            Some(score),
            "{member}"
        );
        let stored = kv.hget(&at, &member).await.unwrap();
        assert_eq!(stored, Some(b(&time.to_string())), "{member}");
    }
}

async fn hset_if_newer_writes_unless_older(t: TestKv) {
    let kv = t.store();
    let h = t.key("h");
    let entry = |field: &str, value: &str, time: i64| (field.to_owned(), b(value), time);
    let written = kv
        .hset_if_newer(&h, vec![entry("a", "a1", 10), entry("b", "b1", 20)], "t:")
        .await
        .unwrap();
    assert_eq!(written, [true, true]);
    let all = kv.hgetall(&h).await.unwrap();
    let expected: Vec<(&str, Bytes)> = vec![
        ("a", b("a1")),
        ("b", b("b1")),
        ("t:a", b("10")),
        ("t:b", b("20")),
    ];
    assert_eq!(
        all.iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect::<Vec<_>>(),
        expected
    );
    // Older: refused; equal: written; newer: written. One step for all.
    let written = kv
        .hset_if_newer(
            &h,
            vec![
                entry("a", "a0", 9),
                entry("b", "b2", 20),
                entry("c", "c1", -3),
            ],
            "t:",
        )
        .await
        .unwrap();
    assert_eq!(written, [false, true, true]);
    assert_eq!(kv.hget(&h, "a").await.unwrap(), Some(b("a1")));
    assert_eq!(kv.hget(&h, "t:a").await.unwrap(), Some(b("10")));
    assert_eq!(kv.hget(&h, "b").await.unwrap(), Some(b("b2")));
    assert_eq!(kv.hget(&h, "c").await.unwrap(), Some(b("c1")));
    assert_eq!(kv.hget(&h, "t:c").await.unwrap(), Some(b("-3")));
    // Entries apply in order: a field named twice sees the first write.
    let written = kv
        .hset_if_newer(&h, vec![entry("a", "a2", 11), entry("a", "a3", 10)], "t:")
        .await
        .unwrap();
    assert_eq!(written, [true, false]);
    assert_eq!(kv.hget(&h, "a").await.unwrap(), Some(b("a2")));
    // Times compare as integers, exactly, also beyond a double's range of
    // exact integers and across signs.
    let big = i64::MAX - 1;
    let written = kv
        .hset_if_newer(
            &h,
            vec![entry("d", "d1", big), entry("d", "d0", big - 1)],
            "t:",
        )
        .await
        .unwrap();
    assert_eq!(written, [true, false]);
    let written = kv
        .hset_if_newer(&h, vec![entry("c", "c0", -20), entry("c", "c2", 0)], "t:")
        .await
        .unwrap();
    assert_eq!(written, [false, true]);
    // Another prefix is another set of times; other fields stay as they are.
    kv.hset(&h, vec![("plain".into(), b("p"))]).await.unwrap();
    let written = kv
        .hset_if_newer(&h, vec![entry("a", "x", 1)], "when/")
        .await
        .unwrap();
    assert_eq!(written, [true]);
    assert_eq!(kv.hget(&h, "when/a").await.unwrap(), Some(b("1")));
    assert_eq!(kv.hget(&h, "plain").await.unwrap(), Some(b("p")));
}

async fn hset_if_newer_changes_nothing_when_it_fails(t: TestKv) {
    let kv = t.store();
    let h = t.key("h");
    let entry = |field: &str, value: &str, time: i64| (field.to_owned(), b(value), time);
    kv.hset(
        &h,
        vec![
            ("a".into(), b("a0")),
            ("t:a".into(), b("5")),
            ("b".into(), b("b0")),
            ("t:b".into(), b("yesterday")),
        ],
    )
    .await
    .unwrap();
    let before = kv.hgetall(&h).await.unwrap();
    let err = kv
        .hset_if_newer(&h, vec![entry("a", "a1", 6), entry("b", "b1", 6)], "t:")
        .await
        .unwrap_err();
    assert_invalid(&err, "ERR the event time of field 'b' is not an integer");
    assert_eq!(err.operation(), Some("hset_if_newer"));
    assert_eq!(
        kv.hgetall(&h).await.unwrap(),
        before,
        "not even 'a' written"
    );
    // Integers as Redis reads them: no sign, spaces or leading zeros.
    for bad in ["+5", " 5", "05", "-0", "5.0", "99999999999999999999"] {
        kv.hset(&h, vec![("t:b".into(), b(bad))]).await.unwrap();
        let err = kv
            .hset_if_newer(&h, vec![entry("b", "b1", 6)], "t:")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
    // Another type.
    let s = t.key("s");
    kv.set(&s, b("v")).await.unwrap();
    assert_wrong_type(
        kv.hset_if_newer(&s, vec![entry("a", "a1", 1)], "t:").await,
        "hset_if_newer",
    );
    assert_eq!(kv.get(&s).await.unwrap(), Some(b("v")));
    // Refused before anything is read.
    let refusals = [
        (vec![], "t:", "wrong number of arguments"),
        (
            vec![entry("a", "a1", 1)],
            "",
            "time prefix must not be empty",
        ),
        (
            vec![entry("a", "a1", 1), entry("t:a", "x", 1)],
            "t:",
            "starts with the time prefix",
        ),
    ];
    for (fields, prefix, words) in refusals {
        let err = kv.hset_if_newer(&h, fields, prefix).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(err.message().contains(words), "{words:?}: {err}");
    }
    assert_eq!(kv.hget(&h, "a").await.unwrap(), Some(b("a0")));
    // A missing key: no entry written, no key left behind.
    let missing = t.key("missing");
    assert_eq!(
        kv.hset_if_newer(&missing, vec![entry("a", "a1", 1)], "t:")
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(kv.hlen(&missing).await.unwrap(), 2);
}

/// 8 tasks × 200 writes of one field, each with a distinct time: the field
/// ends with the value of the latest time, whatever order they landed in.
async fn concurrent_hset_if_newer_keeps_the_latest(t: TestKv) {
    let h = t.key("h");
    let time = |task: i64, n: i64| (n * 8 + task) * 7919 % 1601;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let kv = t.store();
            let h = h.clone();
            tokio::spawn(async move {
                for n in 0..200 {
                    let at = time(task, n);
                    let fields = vec![
                        ("f".to_owned(), b(&at.to_string()), at),
                        (format!("g{}", n % 3), b(&at.to_string()), at),
                    ];
                    kv.hset_if_newer(&h, fields, "at:").await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let latest = |pick: &dyn Fn(i64) -> bool| {
        (0..8)
            .flat_map(|task| (0..200).filter(|n| pick(*n)).map(move |n| time(task, n)))
            .max()
            .unwrap()
    };
    let kv = t.store();
    let f = latest(&|_| true);
    assert_eq!(kv.hget(&h, "f").await.unwrap(), Some(b(&f.to_string())));
    assert_eq!(kv.hget(&h, "at:f").await.unwrap(), Some(b(&f.to_string())));
    for g in 0..3 {
        let want = latest(&|n| n % 3 == g);
        let field = format!("g{g}");
        assert_eq!(
            kv.hget(&h, &field).await.unwrap(),
            Some(b(&want.to_string()))
        );
    }
}

/// The atomic commands in a pipeline (Redis: `EVAL` rather than
/// `EVALSHA`) answer as alone, and a command refused before it is sent
/// gets its own error without stopping the others.
async fn pipeline_carries_the_atomic_commands(t: TestKv) {
    let kv = t.store();
    let (lock, fence, rate) = (t.key("lock"), t.key("fence"), t.key("rate"));
    let (board, at, h) = (t.key("board"), t.key("at"), t.key("h"));
    let ttl = Duration::from_secs(30);
    let commands = vec![
        Command::LockAcquire {
            key: lock.clone(),
            token: "a".into(),
            ttl,
            fence_key: fence.clone(),
        },
        Command::LockAcquire {
            key: lock.clone(),
            token: "b".into(),
            ttl,
            fence_key: fence.clone(),
        },
        Command::LockExtend {
            key: lock.clone(),
            token: "a".into(),
            ttl,
        },
        Command::RateLimit {
            key: rate.clone(),
            limit: 0,
            period: ttl,
            cost: 1,
        },
        Command::RateLimit {
            key: rate.clone(),
            limit: 2,
            period: ttl,
            cost: 1,
        },
        Command::ZAddBest {
            key: board.clone(),
            member: "m".into(),
            score: 3.0,
            at_key: at.clone(),
            at: 7,
        },
        Command::HSetIfNewer {
            key: h.clone(),
            fields: vec![("f".into(), b("v"), 1), ("f".into(), b("w"), 0)],
            time_prefix: "t:".into(),
        },
        Command::CompareAndDelete {
            key: lock.clone(),
            expected: b("a"),
        },
    ];
    let results = kv.pipeline(commands).await.unwrap();
    let ok = |i: usize| results[i].as_ref().unwrap().clone();
    assert_eq!(ok(0), Reply::Fence(Some(1)));
    assert_eq!(ok(1), Reply::Fence(None));
    assert_eq!(ok(2), Reply::Bool(true));
    let err = results[3].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.operation(), Some("rate_limit"));
    let Reply::RateLimit(reply) = ok(4) else {
        panic!("{:?}", ok(4))
    };
    assert_eq!((reply.allowed, reply.remaining), (true, 1), "{reply:?}");
    assert_eq!(ok(5), Reply::Bool(true));
    assert_eq!(ok(6), Reply::Bools(vec![true, false]));
    assert_eq!(ok(7), Reply::Bool(true));
    assert_eq!(kv.get(&lock).await.unwrap(), None);
    assert_eq!(kv.hget(&at, "m").await.unwrap(), Some(b("7")));
}

// ---------------------------------------------------------------------------
// Embedded only: memory bound, eviction and admission.

mod embedded_only {
    use super::*;

    fn store(max_memory: u64) -> EmbeddedKv {
        EmbeddedKv::new(EmbeddedKvOptions {
            max_memory,
            ..Default::default()
        })
    }

    /// A documented difference: the embedded engine computes in f64 and
    /// refuses a sum beyond f64::MAX, leaving the value as it was; Redis adds
    /// in `long double` and stores it (see `kv_redis`).
    #[tokio::test]
    async fn incr_by_float_beyond_f64_max_is_refused() {
        let kv = store(0);
        kv.set("f", Bytes::from(f64::MAX.to_string()))
            .await
            .unwrap();
        let err = kv.incr_by_float("f", f64::MAX).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(
            kv.get("f").await.unwrap(),
            Some(Bytes::from(f64::MAX.to_string()))
        );
    }

    /// The same difference for a hash field (see `kv_redis`).
    #[tokio::test]
    async fn hincr_by_float_beyond_f64_max_is_refused() {
        let kv = store(0);
        let max = Bytes::from(f64::MAX.to_string());
        kv.hset("h", vec![("f".into(), max.clone())]).await.unwrap();
        let err = kv.hincr_by_float("h", "f", f64::MAX).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(err.message(), "ERR increment would produce NaN or Infinity");
        assert_eq!(kv.hget("h", "f").await.unwrap(), Some(max));
    }

    #[tokio::test]
    async fn kind_and_target_describe_the_store() {
        let kv = store(1 << 20);
        assert_eq!(kv.kind(), "embedded");
        assert!(kv.target().contains("1048576"), "{}", kv.target());
        kv.ping().await.unwrap();
    }

    #[tokio::test]
    async fn memory_stays_within_bound_and_evicts_least_recently_used() {
        let max = 64 * 1024;
        let kv = store(max);
        kv.set("hot", b("keep me")).await.unwrap();
        let value = Bytes::from(vec![b'x'; 200]);
        let writes = 2_000;
        for i in 0..writes {
            kv.set(&format!("fill:{i}"), value.clone()).await.unwrap();
            if i % 20 == 0 {
                // A read is a use: the hot key stays recent.
                assert_eq!(kv.get("hot").await.unwrap(), Some(b("keep me")));
            }
        }
        let info = kv.info().await.unwrap();
        assert!(info.used_memory <= max, "{info:?}");
        assert!(info.used_memory > max / 2, "{info:?}");
        assert!(info.evictions > 0, "{info:?}");
        assert!(info.keys < writes, "{info:?}");
        assert_eq!(info.max_memory, max);
        let last = format!("fill:{}", writes - 1);
        assert_eq!(kv.get(&last).await.unwrap(), Some(value.clone()));
        assert_eq!(kv.get("fill:0").await.unwrap(), None, "oldest key evicted");
        assert_eq!(kv.get("hot").await.unwrap(), Some(b("keep me")));
    }

    #[tokio::test]
    async fn fresh_set_is_always_stored() {
        let max = 16 * 1024;
        let kv = store(max);
        let value = Bytes::from(vec![b'x'; 300]);
        for i in 0..200 {
            kv.set(&format!("old:{i}"), value.clone()).await.unwrap();
        }
        kv.info().await.unwrap();
        // Make the resident keys popular: a frequency-based admission
        // filter (TinyLFU) would now refuse a newcomer.
        let resident = kv.scan_all("old:*").await.unwrap();
        assert!(!resident.is_empty());
        for _ in 0..20 {
            for key in &resident {
                kv.get(key).await.unwrap();
            }
        }
        kv.info().await.unwrap();
        for i in 0..20 {
            let key = format!("fresh:{i}");
            kv.set(&key, value.clone()).await.unwrap();
            let info = kv.info().await.unwrap();
            assert!(info.used_memory <= max, "{info:?}");
            assert_eq!(kv.get(&key).await.unwrap(), Some(value.clone()), "{key}");
        }
    }

    #[tokio::test]
    async fn growing_sorted_set_is_reweighed() {
        let kv = store(0);
        kv.zadd("board", vec![(1.0, "m0".into())]).await.unwrap();
        let before = kv.info().await.unwrap().used_memory;
        for i in 1..1000 {
            kv.zadd("board", vec![(i as f64, format!("member-{i}"))])
                .await
                .unwrap();
        }
        let grown = kv.info().await.unwrap().used_memory;
        assert!(grown > before + 999 * 8, "{before} -> {grown}");
        kv.zremrangebyscore(
            "board",
            ScoreBound::Inclusive(100.0),
            ScoreBound::PosInfinity,
        )
        .await
        .unwrap();
        let shrunk = kv.info().await.unwrap().used_memory;
        assert!(shrunk < grown / 5, "{grown} -> {shrunk}");
    }

    #[tokio::test]
    async fn oversized_value_is_refused_not_dropped() {
        let kv = store(1024);
        let err = kv
            .set("big", Bytes::from(vec![0u8; 4096]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert_eq!(kv.get("big").await.unwrap(), None);
    }

    #[tokio::test]
    async fn info_counts_live_keys_only() {
        let kv = store(0);
        kv.set("a", b("1")).await.unwrap();
        kv.set_with("b", b("2"), SetOptions::ttl(Duration::from_millis(30)))
            .await
            .unwrap();
        kv.hset("h", vec![("f".into(), b("v"))]).await.unwrap();
        let info = kv.info().await.unwrap();
        assert_eq!(info.keys, 3);
        assert!(info.used_memory > 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(kv.info().await.unwrap().keys, 2);
        kv.del(&["a".into(), "b".into(), "h".into()]).await.unwrap();
        let info = kv.info().await.unwrap();
        assert_eq!((info.keys, info.used_memory), (0, 0));
    }

    #[tokio::test]
    async fn sync_get_agrees_with_trait_get() {
        let kv = store(0);
        kv.set("k", b("v")).await.unwrap();
        kv.hset("h", vec![("f".into(), b("v"))]).await.unwrap();
        assert_eq!(kv.get_sync("k").unwrap(), Some(b("v")));
        assert_eq!(kv.get_sync("missing").unwrap(), None);
        assert_eq!(kv.get_sync("h").unwrap_err().kind(), ErrorKind::WrongType);
        let reply = kv.execute_sync(Command::Get { key: "k".into() }).unwrap();
        assert_eq!(reply, Reply::Value(Some(b("v"))));
    }

    #[tokio::test]
    async fn empty_argument_lists_are_rejected_like_redis() {
        let kv = store(0);
        let err = kv.del(&[]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        let err = kv.zadd("z", vec![]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(kv.subscribe(&[]).await.is_err());
    }

    /// The embedded cursor is the last key examined, in hex after `k`; a
    /// number it did not hand out is refused (Redis would take any number
    /// as a position in its table: a documented difference).
    #[tokio::test]
    async fn scan_cursor_is_the_last_key_examined() {
        let kv = store(0);
        for key in ["a", "b", "c"] {
            kv.set(key, b("v")).await.unwrap();
        }
        let two = ScanOptions::default().count(2);
        let page = kv.scan(&ScanCursor::start(), &two).await.unwrap();
        assert_eq!(page.keys, ["a", "b"]);
        assert_eq!(page.cursor.as_str(), "k62");
        let page = kv.scan(&page.cursor, &two).await.unwrap();
        assert_eq!(page.keys, ["c"]);
        assert!(page.is_last());
        // The position holds even once its key is gone.
        kv.del(&["b".into()]).await.unwrap();
        let page = kv.scan(&ScanCursor::new("k62"), &two).await.unwrap();
        assert_eq!(page.keys, ["c"]);
        for number in ["1", "42", "18446744073709551615"] {
            let err = kv.scan(&ScanCursor::new(number), &two).await.unwrap_err();
            assert_eq!(err.message(), "ERR invalid cursor", "{err}");
        }
    }

    /// A step examines COUNT keys whatever matches: on many keys of which
    /// none match, a step answers nothing and a cursor to go on.
    #[tokio::test]
    async fn a_scan_step_examines_at_most_count_keys() {
        let kv = store(0);
        let pairs = (0..1000).map(|i| (format!("k{i:04}"), b("v"))).collect();
        kv.mset(pairs).await.unwrap();
        let options = ScanOptions::matching("nothing*").count(10);
        let page = kv.scan(&ScanCursor::start(), &options).await.unwrap();
        assert!(page.keys.is_empty());
        assert_eq!(page.cursor, ScanCursor::new("k6b30303039"), "after k0009");
        let pages = scan_pages(&(Arc::new(kv) as Arc<dyn KvStore>), &options).await;
        assert_eq!(
            pages.len(),
            101,
            "100 full steps and the one that finds the end"
        );
    }

    #[tokio::test]
    async fn subscriptions_end_when_the_store_is_dropped() {
        let kv = store(0);
        let mut sub = kv.subscribe(&["c".to_owned()]).await.unwrap();
        kv.publish("c", b("last")).await.unwrap();
        drop(kv);
        assert_eq!(next_message(&mut sub).await.payload, b("last"));
        assert!(sub.next().await.is_none(), "ended, without an error");
    }

    #[tokio::test]
    async fn zero_ttl_is_rejected_by_set_and_deletes_with_expire() {
        let kv = store(0);
        let err = kv
            .set_with("k", b("v"), SetOptions::ttl(Duration::from_micros(500)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        kv.set("k", b("v")).await.unwrap();
        assert!(kv.expire("k", Duration::ZERO).await.unwrap());
        assert_eq!(kv.get("k").await.unwrap(), None);
    }
}
