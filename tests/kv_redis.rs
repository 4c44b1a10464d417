//! Redis-only behaviour of the key-value adapter, beyond the shared
//! `kv_conformance` suite: connecting (refused password, unreachable or
//! silent server), redaction, the key prefix, pipelines, and a
//! subscription whose connection drops.
//!
//! The cases that need the real Redis run with `STRATA_TEST_FULL=1` (after
//! `scripts/services.sh up`); the unreachable-server cases run always.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata::ErrorKind;
use strata::config::{Config, KvConfig, RedisConfig, Secret, with_password};
use strata::engines::kv::redis::RedisKv;
use strata::engines::kv::{
    Command, KvStore, KvStoreExt, Reply, ScanCursor, ScanOptions, SubscriptionEvent,
};

/// The full profile's Redis settings, or `None` when it is not in use.
fn full_redis() -> Option<RedisConfig> {
    let config = common::full_profile("kv_redis")?;
    match config.kv {
        KvConfig::Redis(redis) => Some(redis),
        other => panic!("config/full.toml: kv is not Redis: {other:?}"),
    }
}

/// A store under a key prefix of its own, and the guard that deletes the
/// prefix's keys when the test ends.
async fn isolated(mut config: RedisConfig) -> (RedisKv, Sweep) {
    config.key_prefix = format!("{}:", common::unique_name("kvr"));
    let sweep = Sweep::new(&config);
    (RedisKv::connect(&config).await.unwrap(), sweep)
}

/// Deletes every key under a prefix when dropped, so that a test leaves
/// nothing behind even when an assertion fails (the panic unwinds through
/// the drop). Blocking and on a connection of its own: it may run while the
/// test's runtime is shutting down.
struct Sweep {
    url: String,
    /// The prefix as a SCAN pattern, glob characters escaped.
    pattern: String,
}

impl Sweep {
    fn new(config: &RedisConfig) -> Sweep {
        let mut pattern = String::new();
        for c in config.key_prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        Sweep {
            url: with_password(&config.url, config.password.as_ref()).unwrap(),
            pattern,
        }
    }

    fn sweep(&self) -> redis::RedisResult<()> {
        let client = redis::Client::open(self.url.as_str())?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(5))?;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut connection)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).exec(&mut connection)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        if let Err(e) = self.sweep() {
            eprintln!("could not delete the keys matching {}: {e}", self.pattern);
        }
    }
}

/// A loopback port where nothing listens: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn config_at(url: String, connect_timeout: Duration) -> RedisConfig {
    RedisConfig {
        url,
        password: Some(Secret::new("never-printed-0451")),
        connect_timeout,
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    }
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_with_the_target_redacted() {
    let Some(mut config) = full_redis() else {
        return;
    };
    let wrong = "wrong-password-7f3a";
    config.password = Some(Secret::new(wrong));
    let started = Instant::now();
    let err = RedisKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(started.elapsed() < config.connect_timeout, "{err}");
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains(wrong), "password leaked: {shown}");
    let url = url::Url::parse(&config.url).unwrap();
    let expected_target = format!(
        "redis at redis://default:<redacted>@{}:{}{}",
        url.host_str().unwrap(),
        url.port().unwrap(),
        url.path()
    );
    assert!(
        err.to_string().contains(&expected_target),
        "expected {expected_target:?} in {err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn missing_password_is_authentication_failed() {
    let Some(mut config) = full_redis() else {
        return;
    };
    config.password = None;
    let err = RedisKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
}

#[tokio::test]
async fn refused_port_is_unavailable_at_once() {
    let port = closed_port();
    let config = config_at(
        format!("redis://default@127.0.0.1:{port}/0"),
        Duration::from_secs(3),
    );
    let started = Instant::now();
    let err = RedisKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    // Refused is immediate: no waiting out the connect timeout.
    assert!(started.elapsed() < Duration::from_secs(2), "{err}");
    let shown = format!("{err} / {err:?}");
    assert!(!shown.contains("never-printed-0451"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
}

#[tokio::test]
async fn silent_server_is_unavailable_within_the_connect_timeout() {
    // Accepts TCP connections (the kernel's backlog does) but never answers
    // the handshake: the connect timeout has to end the wait.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let timeout = Duration::from_millis(300);
    let config = config_at(format!("redis://default@127.0.0.1:{port}/0"), timeout);
    let started = Instant::now();
    let err = RedisKv::connect(&config).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(elapsed >= timeout, "{elapsed:?}: {err}");
    assert!(elapsed < timeout * 4, "{elapsed:?}: {err}");
    drop(listener);
}

#[tokio::test]
async fn tls_urls_are_understood() {
    // `rediss://` needs the rustls build of the driver: without it the URL
    // is a Config error naming the URL's scheme. A server that answers the
    // TLS hello with plain text makes the handshake itself fail: a URL
    // pointing TLS at a plain port, which trying again will not cure, so a
    // Config error too, saying it is the TLS handshake.
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"-ERR this is not TLS\r\n").await;
        }
    });
    let config = config_at(
        format!("rediss://default@127.0.0.1:{port}/0"),
        Duration::from_secs(3),
    );
    let err = RedisKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
    server.abort();
}

#[tokio::test]
async fn zero_subscription_capacity_is_a_config_error() {
    let config = RedisConfig {
        subscription_capacity: 0,
        ..RedisConfig::default()
    };
    let err = RedisKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert_eq!(err.field(), Some("kv.subscription_capacity"), "{err}");
}

#[tokio::test]
async fn zero_pool_size_is_a_config_error() {
    let config = RedisConfig {
        pool_size: 0,
        ..RedisConfig::default()
    };
    let err = RedisKv::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[tokio::test]
async fn kind_target_and_debug_never_show_the_password() {
    let Some(config) = full_redis() else {
        return;
    };
    let password = config.password.clone().expect("the full profile sets one");
    let (kv, _sweep) = isolated(config.clone()).await;
    assert_eq!(kv.kind(), "redis");
    kv.ping().await.unwrap();
    for shown in [kv.target(), format!("{kv:?}")] {
        assert!(!shown.contains(password.expose()), "{shown}");
    }
    assert!(kv.target().contains("<redacted>"), "{}", kv.target());
    assert!(format!("{kv:?}").contains(kv.key_prefix()));
}

#[tokio::test]
async fn open_kv_opens_redis_from_configuration() {
    let Some(redis) = full_redis() else {
        return;
    };
    let config = Config {
        kv: KvConfig::Redis(redis),
        ..Config::default()
    };
    let kv = strata::engines::open_kv(&config).await.unwrap();
    assert_eq!(kv.kind(), "redis");
    kv.ping().await.unwrap();
}

/// A documented difference: Redis adds in `long double`, so a finite sum
/// beyond f64::MAX is stored (the embedded engine refuses it); strata reads
/// the stored value back as infinity, since f64 cannot hold it.
#[tokio::test]
async fn redis_stores_an_incr_by_float_beyond_f64_max() {
    let Some(config) = full_redis() else {
        return;
    };
    let (kv, _sweep) = isolated(config).await;
    kv.set("f", Bytes::from(f64::MAX.to_string()))
        .await
        .unwrap();
    let sum = kv.incr_by_float("f", f64::MAX).await.unwrap();
    assert!(sum.is_infinite() && sum > 0.0, "{sum}");
    let stored = kv.get("f").await.unwrap().expect("stored");
    assert!(stored.len() > 300, "a 309-digit decimal: {stored:?}");
}

/// The same for a hash field: stored in `long double`, read back as
/// infinity.
#[tokio::test]
async fn redis_stores_an_hincr_by_float_beyond_f64_max() {
    let Some(config) = full_redis() else {
        return;
    };
    let (kv, _sweep) = isolated(config).await;
    let max = Bytes::from(f64::MAX.to_string());
    kv.hset("h", vec![("f".into(), max)]).await.unwrap();
    let sum = kv.hincr_by_float("h", "f", f64::MAX).await.unwrap();
    assert!(sum.is_infinite() && sum > 0.0, "{sum}");
    let stored = kv.hget("h", "f").await.unwrap().expect("stored");
    assert!(stored.len() > 300, "a 309-digit decimal: {stored:?}");
}

#[tokio::test]
async fn pipeline_of_a_thousand_incrs_answers_each_in_order() {
    let Some(config) = full_redis() else {
        return;
    };
    let (kv, _sweep) = isolated(config).await;
    let commands: Vec<Command> = (0..1000)
        .map(|_| Command::IncrBy {
            key: "counter".into(),
            delta: 1,
        })
        .collect();
    let results = kv.pipeline(commands).await.unwrap();
    let values: Vec<i64> = results
        .into_iter()
        .map(|r| match r.unwrap() {
            Reply::Int(n) => n,
            other => panic!("{other:?}"),
        })
        .collect();
    // Counting up one by one in reply order shows the commands ran in
    // order, on one connection, each exactly once.
    assert_eq!(values, (1..=1000).collect::<Vec<i64>>());
    assert_eq!(kv.get("counter").await.unwrap(), Some(Bytes::from("1000")));
    assert!(kv.pipeline(Vec::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn prefix_is_literal_even_with_glob_characters() {
    let Some(config) = full_redis() else {
        return;
    };
    let base = common::unique_name("kvr");
    let with_glob = RedisConfig {
        key_prefix: format!("{base}*:"),
        ..config.clone()
    };
    let plain = RedisConfig {
        key_prefix: format!("{base}zz:"),
        ..config
    };
    let _sweeps = (Sweep::new(&with_glob), Sweep::new(&plain));
    let globbed = RedisKv::connect(&with_glob).await.unwrap();
    let other = RedisKv::connect(&plain).await.unwrap();
    other.set("k", Bytes::from("other's")).await.unwrap();
    // Unescaped, `{base}*:*` would also match `{base}zz:k`.
    assert!(globbed.scan_all("*").await.unwrap().is_empty());
    assert_eq!(globbed.get("k").await.unwrap(), None);
    globbed.set("k", Bytes::from("mine")).await.unwrap();
    assert_eq!(globbed.scan_all("*").await.unwrap(), ["k"]);
    assert_eq!(other.get("k").await.unwrap(), Some(Bytes::from("other's")));
    assert_eq!(globbed.delete_pattern("*").await.unwrap(), 1);
    assert_eq!(other.delete_pattern("*").await.unwrap(), 1);
}

/// Every key the atomic commands touch (the lock and its fence counter,
/// the sorted set and its times, the limiter's state) lives under the
/// prefix, as Redis itself lists them.
#[tokio::test]
async fn atomic_commands_keep_every_key_under_the_prefix() {
    let Some(config) = full_redis() else {
        return;
    };
    let (kv, _sweep) = isolated(config.clone()).await;
    let prefix = kv.key_prefix().to_owned();
    let ttl = Duration::from_secs(30);
    assert_eq!(
        kv.lock_acquire("lock", "t", ttl, "fence").await.unwrap(),
        Some(1)
    );
    assert!(kv.lock_extend("lock", "t", ttl).await.unwrap());
    assert!(kv.rate_limit("rate", 5, ttl, 1).await.unwrap().allowed);
    assert!(kv.zadd_best("board", "m", 1.0, "at", 1).await.unwrap());
    let fields = vec![("f".to_owned(), Bytes::from("v"), 1)];
    assert_eq!(kv.hset_if_newer("h", fields, "t:").await.unwrap(), [true]);

    let url = with_password(&config.url, config.password.as_ref()).unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut raw = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    // The prefix is [a-z0-9_] and ':', no glob character.
    let mut stored = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .query(&mut raw)
            .unwrap();
        stored.extend(keys);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    stored.sort();
    stored.dedup();
    let names = ["at", "board", "fence", "h", "lock", "rate"];
    let want: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
    assert_eq!(stored, want);
    assert_eq!(kv.scan_all("*").await.unwrap(), names);
    assert!(
        kv.compare_and_delete("lock", Bytes::from("t"))
            .await
            .unwrap()
    );
    let exists: u64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}lock"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn subscription_channels_come_back_without_the_prefix() {
    let Some(config) = full_redis() else {
        return;
    };
    let (kv, _sweep) = isolated(config).await;
    let kv = Arc::new(kv);
    let mut sub = kv.subscribe(&["events".to_string()]).await.unwrap();
    assert_eq!(kv.publish("events", Bytes::from("x")).await.unwrap(), 1);
    let event = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message within 5 s")
        .expect("subscription open")
        .expect("subscription not lost");
    let SubscriptionEvent::Message(message) = event else {
        panic!("expected a message, got {event:?}");
    };
    assert_eq!(message.channel, "events");
    // A store with another prefix publishes to another channel.
    let Some(config) = full_redis() else {
        return;
    };
    let (stranger, _stranger_sweep) = isolated(config).await;
    assert_eq!(
        stranger.publish("events", Bytes::from("y")).await.unwrap(),
        0
    );
    assert!(kv.subscribe(&[]).await.is_err());
}

/// A TCP proxy to Redis whose open connections can be cut, as a restart or
/// a network failure would.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<u64>,
    /// Proxied connections still open.
    open: Arc<std::sync::atomic::AtomicUsize>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&open);
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                let upstream = upstream.clone();
                let counter = Arc::clone(&counter);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        counter.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cuts.changed() => {}
                    }
                    // Both sockets are closed when dropped, here.
                    drop((inbound, outbound));
                    counter.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Proxy {
            port,
            cut,
            open,
            accepting,
        }
    }

    /// Closes every connection open now and returns once they are closed;
    /// new ones are still accepted.
    async fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "proxied connections did not close"
            );
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

#[tokio::test]
async fn a_cut_connection_fails_one_command_then_is_replaced() {
    let Some(mut config) = full_redis() else {
        return;
    };
    let real = url::Url::parse(&config.url).unwrap();
    let upstream = format!("{}:{}", real.host_str().unwrap(), real.port().unwrap());
    let proxy = Proxy::start(upstream).await;
    config.key_prefix = format!("{}:", common::unique_name("kvr"));
    // Straight to Redis: the proxy needs the runtime the sweep blocks.
    let _sweep = Sweep::new(&config);
    config.url = format!("redis://default@127.0.0.1:{}/0", proxy.port);
    // One connection, so the cut one is the one the next command gets.
    config.pool_size = 1;
    let kv = RedisKv::connect(&config).await.unwrap();
    kv.set("k", Bytes::from("v")).await.unwrap();
    proxy.cut_all().await;
    let mut failures = 0;
    let mut answer = None;
    for _ in 0..3 {
        match kv.get("k").await {
            Ok(value) => {
                answer = Some(value);
                break;
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(e.is_retryable());
                failures += 1;
            }
        }
    }
    assert_eq!(answer, Some(Some(Bytes::from("v"))));
    // The cut connection fails the one command that finds it dead, and is
    // then dropped by the pool rather than handed out again.
    assert_eq!(failures, 1);
}

#[tokio::test]
async fn info_reports_the_server() {
    let Some(config) = full_redis() else {
        return;
    };
    let (kv, _sweep) = isolated(config).await;
    kv.set("k", Bytes::from("v")).await.unwrap();
    let info = kv.info().await.unwrap();
    assert!(info.keys >= 1, "{info:?}");
    assert!(info.used_memory > 0, "{info:?}");
}

/// A subscription whose connection is cut ends with `Unavailable` (after
/// what it had buffered), then `None`: the caller learns it may have missed
/// messages and can subscribe again, which works at once.
#[tokio::test]
async fn a_subscription_whose_connection_drops_ends_with_unavailable() {
    let Some(mut config) = full_redis() else {
        return;
    };
    let real = url::Url::parse(&config.url).unwrap();
    let upstream = format!("{}:{}", real.host_str().unwrap(), real.port().unwrap());
    let proxy = Proxy::start(upstream).await;
    config.key_prefix = format!("{}:", common::unique_name("kvr"));
    let _sweep = Sweep::new(&config);
    config.url = format!("redis://default@127.0.0.1:{}/0", proxy.port);
    let kv = RedisKv::connect(&config).await.unwrap();
    let channel = ["events".to_string()];
    let mut sub = kv.subscribe(&channel).await.unwrap();
    assert_eq!(
        kv.publish("events", Bytes::from("before")).await.unwrap(),
        1
    );
    proxy.cut_all().await;
    let mut events = Vec::new();
    let end = loop {
        let next = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("the loss is reported within 5 s");
        match next {
            Some(Ok(event)) => events.push(event),
            Some(Err(e)) => break e,
            None => panic!("ended without saying the connection was lost"),
        }
    };
    assert_eq!(end.kind(), ErrorKind::Unavailable, "{end}");
    assert!(end.is_retryable());
    assert!(sub.next().await.is_none(), "nothing after the error");
    // The message published before the cut was either read first or lost
    // with the connection; nothing else came.
    assert!(events.len() <= 1, "{events:?}");
    // Subscribing again works (a new connection through the proxy).
    let mut again = kv.subscribe(&channel).await.unwrap();
    let mut reached = kv.publish("events", Bytes::from("after")).await;
    if reached.is_err() {
        // The publishing connection was cut too: it fails once, then is
        // replaced.
        reached = kv.publish("events", Bytes::from("after")).await;
    }
    assert_eq!(reached.unwrap(), 1);
    let event = tokio::time::timeout(Duration::from_secs(5), again.next())
        .await
        .expect("a message within 5 s")
        .expect("open")
        .expect("not lost");
    assert!(
        matches!(&event, SubscriptionEvent::Message(m) if m.payload == "after"),
        "{event:?}"
    );
}

/// Redis's cursors are its own numbers; the adapter refuses what is not
/// one before sending it.
#[tokio::test]
async fn scan_cursors_are_redis_numbers() {
    let Some(config) = full_redis() else {
        return;
    };
    let (kv, _sweep) = isolated(config).await;
    kv.set("k", Bytes::from("v")).await.unwrap();
    let page = kv
        .scan(&ScanCursor::start(), &ScanOptions::default().count(1))
        .await
        .unwrap();
    assert!(page.cursor.as_str().bytes().all(|c| c.is_ascii_digit()));
    let err = kv
        .scan(&ScanCursor::new("k6b"), &ScanOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.message(), "ERR invalid cursor");
}

#[tokio::test]
async fn a_refused_connection_fails_at_once_not_after_the_connect_timeout() {
    let Some(mut config) = full_redis() else {
        return;
    };
    let real = url::Url::parse(&config.url).unwrap();
    let upstream = format!("{}:{}", real.host_str().unwrap(), real.port().unwrap());
    let gate = common::outage::Gate::open(&upstream).await;
    config.key_prefix = format!("{}:", common::unique_name("kvr"));
    let _sweep = Sweep::new(&config);
    config.url = format!("redis://default@127.0.0.1:{}/0", gate.port());
    // Were a refusal waited out, three commands would take 90 s.
    let connect_timeout = Duration::from_secs(30);
    config.connect_timeout = connect_timeout;
    config.pool_size = 1;
    let kv = RedisKv::connect(&config).await.unwrap();
    kv.set("k", Bytes::from("v")).await.unwrap();

    gate.close().await;
    let started = Instant::now();
    for attempt in 0..3 {
        let e = kv.get("k").await.expect_err("the gate refuses connections");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "attempt {attempt}: {e}");
    }
    assert!(
        started.elapsed() < connect_timeout / 3,
        "three commands against refused connections took {:?}",
        started.elapsed()
    );

    gate.reopen().await;
    assert_eq!(kv.get("k").await.unwrap(), Some(Bytes::from("v")));
}
