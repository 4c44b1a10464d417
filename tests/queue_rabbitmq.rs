//! The RabbitMQ adapter beyond the conformance suite: refused credentials,
//! an unreachable broker, redaction, publisher nacks, channel errors that
//! must not leak into later operations, and recovery after the broker closes
//! this adapter's connection.
//!
//! Cases that need the broker run with `STRATA_TEST_FULL=1` (after
//! `scripts/services.sh up`). The recovery case closes only its own
//! connection, found by its `connection_name`, with `rabbitmqctl`; it never
//! restarts the shared broker.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::ErrorKind;
use strata::config::{QueueConfig, RabbitConfig, Secret};
use strata::engines::queue::rabbitmq::RabbitBroker;
use strata::engines::queue::{Broker, ConsumeOptions, Message, QueueOptions};

const WRONG_PASSWORD: &str = "not-the-password-7f3a";

fn full_rabbit() -> Option<RabbitConfig> {
    let config = common::full_profile("queue_rabbitmq")?;
    match config.queue {
        QueueConfig::Rabbitmq(rabbit) => Some(rabbit),
        other => panic!("config/full.toml: queue must be rabbitmq, is {other:?}"),
    }
}

async fn connect(config: &RabbitConfig) -> RabbitBroker {
    RabbitBroker::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A queue name no other test or run uses.
fn queue_name(prefix: &str) -> String {
    common::unique_name(&format!("strata_rabbit_{prefix}"))
}

/// Deletes `queue` when dropped, on a connection of its own, so a failing
/// case leaves nothing on the shared broker.
struct QueueGuard {
    config: RabbitConfig,
    queue: String,
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        let (config, queue) = (self.config.clone(), self.queue.clone());
        // The test's runtime may be unwinding; clean up on a thread and
        // runtime of our own.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(broker) = RabbitBroker::connect(&config).await {
                    let _ = broker.delete_queue(&queue).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_and_redacted() {
    let Some(mut config) = full_rabbit() else {
        return;
    };
    config.password = Some(Secret::new(WRONG_PASSWORD));
    let started = Instant::now();
    let err = RabbitBroker::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(!err.is_retryable());
    assert!(
        started.elapsed() < config.connect_timeout,
        "refused credentials are not retried"
    );
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(WRONG_PASSWORD), "password leaked: {shown}");
    assert!(shown.contains("rabbitmq"), "names the engine: {err}");
    let target = err.target().expect("a target");
    assert!(target.starts_with("amqp://strata:"), "{target}");
    assert!(
        target.contains("redacted") && target.contains("55672"),
        "{target}"
    );
}

#[tokio::test]
async fn unreachable_port_is_unavailable_within_the_timeout() {
    // A port that nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let config = RabbitConfig {
        url: format!("amqp://strata@127.0.0.1:{port}/strata"),
        password: Some(Secret::new("secret-pw")),
        connect_timeout: Duration::from_millis(800),
        ..RabbitConfig::default()
    };
    let started = Instant::now();
    let err = RabbitBroker::connect(&config).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(
        took < config.connect_timeout + Duration::from_millis(500),
        "gave up in {took:?}"
    );
    assert!(!format!("{err} {err:?}").contains("secret-pw"));
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[tokio::test]
async fn non_amqp_url_is_a_config_error() {
    let config = RabbitConfig {
        url: "http://strata@127.0.0.1:55672/strata".into(),
        password: Some(Secret::new("secret-pw")),
        ..RabbitConfig::default()
    };
    let err = RabbitBroker::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(!err.to_string().contains("secret-pw"), "{err}");
}

#[tokio::test]
async fn kind_target_and_debug_hide_the_password() {
    let Some(config) = full_rabbit() else {
        return;
    };
    let password = config
        .password
        .as_ref()
        .expect("a password")
        .expose()
        .to_owned();
    let broker = connect(&config).await;
    assert_eq!(broker.kind(), "rabbitmq");
    assert!(!broker.target().contains(&password), "{}", broker.target());
    assert!(broker.target().contains("127.0.0.1:55672"));
    let debug = format!("{broker:?}");
    assert!(!debug.contains(&password), "{debug}");
    broker.ping().await.unwrap();
}

#[tokio::test]
async fn channel_errors_do_not_reach_later_operations() {
    let Some(config) = full_rabbit() else {
        return;
    };
    let broker = connect(&config).await;
    let queue = queue_name("channel_error");
    let _guard = QueueGuard {
        config: config.clone(),
        queue: queue.clone(),
    };
    broker
        .declare_queue(&queue, QueueOptions::default())
        .await
        .unwrap();
    // Each of these closes the channel it ran on (406, 404, 404).
    let conflict = broker
        .declare_queue(
            &queue,
            QueueOptions {
                durable: true,
                ..QueueOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(conflict.kind(), ErrorKind::Conflict, "{conflict}");
    let missing = broker.queue_info(&queue_name("absent")).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let no_exchange = broker
        .publish(&queue_name("absent_exchange"), "k", Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(no_exchange.kind(), ErrorKind::NotFound, "{no_exchange}");
    // Later operations of every kind still work.
    assert!(
        broker
            .publish("", &queue, Message::new("after"))
            .await
            .unwrap()
            .routed
    );
    assert_eq!(broker.queue_info(&queue).await.unwrap().messages, 1);
    let delivery = broker.get(&queue).await.unwrap().expect("the message");
    assert_eq!(&delivery.message.body[..], b"after");
    delivery.ack().await.unwrap();
    broker.delete_queue(&queue).await.unwrap();
}

#[tokio::test]
async fn dropped_get_delivery_is_requeued() {
    let Some(config) = full_rabbit() else {
        return;
    };
    let broker = connect(&config).await;
    let queue = queue_name("dropped_get");
    let _guard = QueueGuard {
        config: config.clone(),
        queue: queue.clone(),
    };
    broker
        .declare_queue(&queue, QueueOptions::default())
        .await
        .unwrap();
    broker.publish("", &queue, Message::new("m")).await.unwrap();
    let first = broker.get(&queue).await.unwrap().expect("the message");
    assert!(!first.redelivered);
    drop(first);
    // The channel closes asynchronously; the message comes back.
    let again = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(delivery) = broker.get(&queue).await.unwrap() {
                break delivery;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the message is requeued");
    assert!(again.redelivered);
    again.ack().await.unwrap();
    broker.delete_queue(&queue).await.unwrap();
}

#[tokio::test]
async fn publisher_nack_is_an_error() {
    let Some(config) = full_rabbit() else {
        return;
    };
    let broker = connect(&config).await;
    let queue = queue_name("nack");
    let _guard = QueueGuard {
        config: config.clone(),
        queue: queue.clone(),
    };
    // `x-overflow = reject-publish` (outside QueueOptions) makes RabbitMQ
    // nack what does not fit; declare it with lapin directly.
    declare_reject_publish_queue(&config, &queue).await;
    assert!(
        broker
            .publish("", &queue, Message::new("fits"))
            .await
            .unwrap()
            .routed
    );
    let err = broker
        .publish("", &queue, Message::new("overflows"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("nack"), "{err}");
    // The channel stays usable and the queue holds only what fit.
    assert_eq!(broker.queue_info(&queue).await.unwrap().messages, 1);
    broker.delete_queue(&queue).await.unwrap();
}

async fn declare_reject_publish_queue(config: &RabbitConfig, queue: &str) {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let url = strata::config::with_password(&config.url, config.password.as_ref()).unwrap();
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::default(), arguments)
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

/// `rabbitmqctl` of scripts/services.sh, or `None` when it is not here.
fn rabbitmqctl(args: &[&str]) -> Option<std::process::Output> {
    let ctl = "/usr/lib/rabbitmq/bin/rabbitmqctl";
    if !std::path::Path::new(ctl).exists() {
        return None;
    }
    let state = std::env::var("STRATA_SERVICES_DIR").unwrap_or("/var/tmp/strata-services".into());
    let output = Command::new(ctl)
        .args(["-n", "strata@localhost"])
        .args(args)
        .env("HOME", format!("{state}/rabbitmq"))
        .env("ERL_EPMD_PORT", "54369")
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .output()
        .ok()?;
    Some(output)
}

/// Closes, from the broker's side, the one connection named `name`.
/// `false` when rabbitmqctl is not available.
fn close_connection_named(name: &str) -> bool {
    let Some(listed) = rabbitmqctl(&[
        "list_connections",
        "pid",
        "client_properties",
        "--no-table-headers",
        "-q",
    ]) else {
        return false;
    };
    assert!(listed.status.success(), "{listed:?}");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    // One line per connection: its pid (`<node.x.y.z>`), a tab, its client
    // properties, where our `connection_name` appears quoted.
    let ours: Vec<&str> = listed
        .lines()
        .filter(|line| line.contains(&format!("\"{name}\"")))
        .filter_map(|line| line.split('\t').next())
        .collect();
    assert_eq!(ours.len(), 1, "exactly our connection in:\n{listed}");
    let closed =
        rabbitmqctl(&["close_connection", ours[0], "strata recovery test"]).expect("rabbitmqctl");
    assert!(closed.status.success(), "{closed:?}");
    true
}

#[tokio::test]
async fn operations_recover_after_the_broker_closes_the_connection() {
    let Some(config) = full_rabbit() else {
        return;
    };
    let broker = Arc::new(connect(&config).await);
    let queue = queue_name("recovery");
    let _guard = QueueGuard {
        config: config.clone(),
        queue: queue.clone(),
    };
    broker
        .declare_queue(
            &queue,
            QueueOptions {
                durable: true,
                ..QueueOptions::default()
            },
        )
        .await
        .unwrap();
    broker
        .publish("", &queue, Message::new("held").persistent())
        .await
        .unwrap();
    let mut consumer = broker
        .consume(
            &queue,
            ConsumeOptions {
                prefetch: 1,
                consumer_tag: None,
            },
        )
        .await
        .unwrap();
    let held = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("a delivery")
        .expect("open")
        .unwrap();
    assert!(!held.redelivered);

    if !close_connection_named(broker.connection_name()) {
        eprintln!("queue_rabbitmq: rabbitmqctl not found; recovery case skipped");
        return;
    }

    // The consumer sees the loss, then ends.
    let lost = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("the stream reacts in time")
        .expect("an error before the end")
        .unwrap_err();
    assert_eq!(lost.kind(), ErrorKind::Unavailable, "{lost}");
    let end = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("the stream ends in time");
    assert!(end.is_none());
    // The unsettled delivery went back to the queue with the connection.
    let err = held.ack().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    // The next operations reconnect by themselves.
    assert!(
        broker
            .publish("", &queue, Message::new("after"))
            .await
            .unwrap()
            .routed
    );
    assert_eq!(broker.queue_info(&queue).await.unwrap().messages, 2);
    let mut again = broker
        .consume(&queue, ConsumeOptions::default())
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), again.next())
            .await
            .expect("a delivery")
            .expect("open")
            .unwrap();
        bodies.push((
            String::from_utf8_lossy(&delivery.message.body).into_owned(),
            delivery.redelivered,
        ));
        delivery.ack().await.unwrap();
    }
    assert_eq!(
        bodies,
        [("held".to_owned(), true), ("after".to_owned(), false)]
    );
    drop(again);
    broker.delete_queue(&queue).await.unwrap();
}

#[tokio::test]
async fn amqps_against_a_plain_listener_fails_cleanly() {
    // Exercises the TLS stack (rustls with ring): a TLS hello to a port that
    // answers in plain AMQP must fail as a configuration error, at once.
    let Some(config) = full_rabbit() else {
        return;
    };
    let config = RabbitConfig {
        url: config.url.replacen("amqp://", "amqps://", 1),
        connect_timeout: Duration::from_secs(2),
        ..config
    };
    let started = Instant::now();
    let err = RabbitBroker::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
    assert!(
        started.elapsed() < config.connect_timeout,
        "a TLS mismatch is not retried"
    );
}

#[tokio::test]
async fn missing_vhost_is_a_config_error() {
    let Some(config) = full_rabbit() else {
        return;
    };
    let base = config.url.rsplit_once('/').expect("a vhost path").0;
    let url = format!("{base}/strata_no_such_vhost");
    assert_ne!(url, config.url);
    let config = RabbitConfig { url, ..config };
    let started = Instant::now();
    let err = RabbitBroker::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("strata_no_such_vhost"), "{err}");
    assert!(started.elapsed() < config.connect_timeout, "not retried");
}

/// With `queue_type = "quorum"`, the durable queues of the pipelines are
/// quorum queues (a classic redeclaration is refused), their priorities are
/// left out, and a message waiting in a delay tier comes back to its work
/// queue by per-message TTL and dead-lettering; a temporary queue stays
/// classic.
#[tokio::test]
async fn quorum_queue_type_declares_quorum_queues() {
    use strata::config::QueueType;
    use strata::pipelines::config::PipelinesConfig;
    use strata::pipelines::topology::{QueueSpec, Topology};

    let Some(classic_config) = full_rabbit() else {
        return;
    };
    let quorum_config = RabbitConfig {
        queue_type: QueueType::Quorum,
        ..classic_config.clone()
    };
    let quorum = connect(&quorum_config).await;
    let classic = connect(&classic_config).await;
    let prefix = queue_name("quorum");
    let topology = Topology::new(&PipelinesConfig {
        prefix: prefix.clone(),
        ..PipelinesConfig::default()
    });
    let spec = QueueSpec::tasks("work");
    let temporary = format!("{prefix}.temporary");
    let outcome = async {
        topology.declare_exchanges(&quorum).await.unwrap();
        topology.declare_queue(&quorum, &spec, 2).await.unwrap();
        let work = topology.queue("work");
        let err = classic
            .declare_queue(&work, topology.work_queue_options("work"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        // RabbitMQ names the first argument that differs: the queue type,
        // or the dead-letter strategy a quorum queue declares.
        assert!(
            ["x-queue-type", "x-dead-letter-strategy"]
                .iter()
                .any(|arg| err.to_string().contains(arg)),
            "{err}"
        );

        // A retry waits in a delay tier, then is dead-lettered back.
        quorum
            .publish(
                "",
                &topology.delay("work", 0),
                Message::new("later")
                    .with_expiration(Duration::from_millis(100))
                    .persistent(),
            )
            .await
            .unwrap();
        let back = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(delivery) = quorum.get(&work).await.unwrap() {
                    break delivery;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the delayed message reaches the work queue");
        assert_eq!(&back.message.body[..], b"later");
        back.ack().await.unwrap();

        // Temporary queues stay classic: a classic broker redeclares it.
        let options = QueueOptions {
            auto_delete: true,
            ..QueueOptions::default()
        };
        quorum
            .declare_queue(&temporary, options.clone())
            .await
            .unwrap();
        classic.declare_queue(&temporary, options).await.unwrap();
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    classic.delete_queue(&temporary).await.unwrap();
    topology
        .delete(&classic, std::slice::from_ref(&spec), 2, true)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
