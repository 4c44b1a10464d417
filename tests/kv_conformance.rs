//! The `KvStore` conformance suite: one case per contract of
//! `strata::engines::kv`, written once against `Arc<dyn KvStore>` and run per
//! backend by `kv_conformance!`.
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
    Command, KeyType, KvInfo, KvStore, Reply, ScoreBound, SetOptions, Subscription, Ttl,
};

/// One test's handle on a backend: the store and the test's own namespace.
#[derive(Clone)]
struct TestKv {
    kv: Arc<dyn KvStore>,
    prefix: String,
}

impl TestKv {
    fn new(kv: Arc<dyn KvStore>) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("strata-test:{}:{n}:", std::process::id());
        TestKv { kv, prefix }
    }

    fn store(&self) -> Arc<dyn KvStore> {
        Arc::clone(&self.kv)
    }

    /// `name` inside this test's namespace.
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn keys(&self, names: &[&str]) -> Vec<String> {
        names.iter().map(|n| self.key(n)).collect()
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
    });
    Some(TestKv::new(Arc::new(kv)))
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
    Some(TestKv::new(Arc::new(SweptRedis { kv, _sweep: sweep })))
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
    async fn scan(&self, pattern: &str) -> strata::Result<Vec<String>> {
        self.kv.scan(pattern).await
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
                compare_and_delete_needs_matching_value,
                publish_reaches_subscriber,
                dropped_subscription_stops_counting,
                concurrent_incr_is_atomic,
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
    assert_eq!(
        kv.scan(&format!("{}*", t.prefix)).await.unwrap(),
        vec![h.clone(), s.clone()]
    );
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
        async move { kv.scan(&pattern).await.unwrap() }
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
    assert_eq!(
        kv.scan(&format!("{}*", t.prefix)).await.unwrap(),
        t.keys(&["keep:a"])
    );
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

async fn publish_reaches_subscriber(t: TestKv) {
    let kv = t.store();
    let channel = t.key("news");
    let mut sub = kv.subscribe(std::slice::from_ref(&channel)).await.unwrap();
    assert_eq!(kv.publish(&channel, b("hello")).await.unwrap(), 1);
    let message = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message within 5 s")
        .expect("subscription open");
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
    assert_eq!(second.next().await.unwrap().payload, b("1"));
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
// Embedded only: memory bound, eviction and admission.

mod embedded_only {
    use super::*;

    fn store(max_memory: u64) -> EmbeddedKv {
        EmbeddedKv::new(EmbeddedKvOptions { max_memory })
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
        let resident = kv.scan("old:*").await.unwrap();
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
