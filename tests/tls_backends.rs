//! TLS from strata to PostgreSQL, Redis, RabbitMQ and MongoDB, against the
//! TLS listeners `scripts/services.sh` starts with its own CA
//! (`$STRATA_SERVICES_DIR/tls/ca.pem`): each engine is opened through
//! strata's configuration loader (the full profile plus `STRATA_*`
//! overrides), makes a round trip, and is shown to be on TLS (PostgreSQL
//! by `pg_stat_ssl`; the Redis, RabbitMQ and MongoDB ports used here speak
//! only TLS, which a plain connection to them shows). Without the CA the
//! same URLs fail, saying the certificate did not verify.
//!
//! Full profile only (`STRATA_TEST_FULL=1` after `scripts/services.sh up`).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bson::doc;
use bytes::Bytes;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use strata::config::{Config, DocumentsConfig, Environment, Sources};
use strata::engines::document::{DocumentStoreExt, FindOptions};
use strata::engines::queue::{ConsumeOptions, Message, QueueOptions};
use strata::engines::{self, KvStoreExt};
use strata::error::{Error, ErrorKind};

const SUITE: &str = "tls_backends";
/// PostgreSQL: plain and TLS on one port.
const PG_PORT: u16 = 55432;
/// Redis's TLS-only port.
const REDIS_TLS_PORT: u16 = 56380;
/// RabbitMQ's TLS-only listener (amqps).
const AMQPS_PORT: u16 = 55671;
/// The SecantusDB server that speaks TLS only.
const MONGO_TLS_PORT: u16 = 57018;

/// The CA of `scripts/services.sh`, or `None` when the full stack is off.
fn services_ca() -> Option<String> {
    common::full_profile(SUITE)?;
    let dir: PathBuf = std::env::var_os("STRATA_SERVICES_DIR")
        .map(Into::into)
        .unwrap_or_else(|| "/var/tmp/strata-services".into());
    let ca = dir.join("tls/ca.pem");
    assert!(
        ca.is_file(),
        "{} is missing: run `bash scripts/services.sh up` (it creates the CA and the TLS listeners)",
        ca.display()
    );
    Some(ca.to_str().expect("utf-8 path").to_owned())
}

/// The full profile, as strata loads it, with `overrides` as `STRATA_*`
/// variables on top of the process's own.
fn config_with(overrides: &[(&str, String)]) -> Config {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("STRATA_") && !overrides.iter().any(|(o, _)| o == k))
        .collect();
    vars.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    let sources = Sources {
        config_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")),
        profile: Some("full".into()),
        environment: Environment::vars(vars),
        ..Default::default()
    };
    Config::load(&sources).unwrap_or_else(|e| panic!("config: {e}"))
}

/// That `error` says a certificate did not verify.
fn assert_certificate_failure(error: &Error) {
    let text = error.to_string().to_ascii_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknownissuer"),
        "not a certificate failure: {error}"
    );
}

/// Runs `attempt` and checks it ends (in failure) within `limit`.
async fn fails_within<T, F>(limit: Duration, attempt: F) -> Error
where
    F: Future<Output = strata::Result<T>>,
{
    let started = Instant::now();
    let outcome = tokio::time::timeout(limit, attempt)
        .await
        .unwrap_or_else(|_| panic!("no answer within {limit:?}"));
    match outcome {
        Ok(_) => panic!("connected, but should not have"),
        Err(e) => {
            assert!(started.elapsed() < limit);
            // Shown with --nocapture: what an operator would read.
            eprintln!("refused as expected: {e}");
            e
        }
    }
}

// ---------------------------------------------------------------- PostgreSQL

fn pg_url(query: &str) -> String {
    format!("postgres://strata@127.0.0.1:{PG_PORT}/strata?{query}")
}

#[tokio::test]
async fn postgres_verify_full_with_the_ca_is_on_tls() {
    let Some(ca) = services_ca() else { return };
    let config = config_with(&[(
        "STRATA_RELATIONAL__URL",
        pg_url(&format!("sslmode=verify-full&sslrootcert={ca}")),
    )]);
    let db = engines::open_relational(&config)
        .await
        .unwrap_or_else(|e| panic!("open PostgreSQL over TLS: {e}"));
    // One transaction: one connection, whose own TLS state is read, and a
    // temporary table that goes with it.
    let txn = db.begin().await.unwrap();
    let value = common::unique_name("tls");
    txn.execute_unprepared("CREATE TEMP TABLE tls_probe (v text) ON COMMIT DROP")
        .await
        .unwrap();
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO tls_probe (v) VALUES ($1)",
        [value.clone().into()],
    ))
    .await
    .unwrap();
    let row = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT v FROM tls_probe",
        ))
        .await
        .unwrap()
        .expect("the row written");
    assert_eq!(row.try_get::<String>("", "v").unwrap(), value);
    let ssl = txn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .expect("pg_stat_ssl has a row per backend");
    assert!(
        ssl.try_get::<bool>("", "ssl").unwrap(),
        "the connection is not encrypted"
    );
    let version: String = ssl.try_get("", "version").unwrap();
    assert!(version.starts_with("TLS"), "{version}");
    txn.commit().await.unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn postgres_verify_full_without_the_ca_fails_on_the_certificate() {
    let Some(_ca) = services_ca() else { return };
    let config = config_with(&[
        ("STRATA_RELATIONAL__URL", pg_url("sslmode=verify-full")),
        ("STRATA_RELATIONAL__CONNECT_TIMEOUT", "3s".into()),
    ]);
    let e = fails_within(Duration::from_secs(10), engines::open_relational(&config)).await;
    assert_certificate_failure(&e);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn postgres_with_a_missing_root_cert_names_the_file() {
    let Some(_ca) = services_ca() else { return };
    let missing = "/nonexistent/strata-tls-test/ca.pem";
    let config = config_with(&[
        (
            "STRATA_RELATIONAL__URL",
            pg_url(&format!("sslmode=verify-full&sslrootcert={missing}")),
        ),
        ("STRATA_RELATIONAL__CONNECT_TIMEOUT", "3s".into()),
    ]);
    let e = fails_within(Duration::from_secs(10), engines::open_relational(&config)).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string()
            .contains(&format!("sslrootcert `{missing}` cannot be read")),
        "{e}"
    );
}

// --------------------------------------------------------------------- Redis

fn rediss_url() -> String {
    format!("rediss://default@127.0.0.1:{REDIS_TLS_PORT}/0")
}

#[tokio::test]
async fn redis_over_tls_with_the_ca_round_trips() {
    let Some(ca) = services_ca() else { return };
    let prefix = format!("{}:", common::unique_name("tls"));
    let config = config_with(&[
        ("STRATA_KV__URL", rediss_url()),
        ("STRATA_KV__TLS_CA_FILE", ca),
        ("STRATA_KV__KEY_PREFIX", prefix),
    ]);
    let kv = engines::open_kv(&config)
        .await
        .unwrap_or_else(|e| panic!("open Redis over TLS: {e}"));
    kv.set("k", Bytes::from_static(b"over tls")).await.unwrap();
    let read = kv.get("k").await;
    let removed = kv.delete_pattern("*").await;
    assert_eq!(read.unwrap().as_deref(), Some(&b"over tls"[..]));
    assert_eq!(removed.unwrap(), 1);
}

#[tokio::test]
async fn redis_tls_port_refuses_plain_connections() {
    let Some(_ca) = services_ca() else { return };
    let config = config_with(&[
        (
            "STRATA_KV__URL",
            format!("redis://default@127.0.0.1:{REDIS_TLS_PORT}/0"),
        ),
        ("STRATA_KV__CONNECT_TIMEOUT", "2s".into()),
    ]);
    fails_within(Duration::from_secs(10), engines::open_kv(&config)).await;
}

#[tokio::test]
async fn redis_over_tls_without_the_ca_fails_on_the_certificate() {
    let Some(_ca) = services_ca() else { return };
    let config = config_with(&[
        ("STRATA_KV__URL", rediss_url()),
        ("STRATA_KV__CONNECT_TIMEOUT", "3s".into()),
    ]);
    let e = fails_within(Duration::from_secs(10), engines::open_kv(&config)).await;
    assert_certificate_failure(&e);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn redis_ca_file_errors_name_the_key() {
    let Some(ca) = services_ca() else { return };
    let missing = "/nonexistent/strata-tls-test/ca.pem";
    let config = config_with(&[
        ("STRATA_KV__URL", rediss_url()),
        ("STRATA_KV__TLS_CA_FILE", missing.into()),
    ]);
    let e = fails_within(Duration::from_secs(5), engines::open_kv(&config)).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains("kv.tls_ca_file") && e.to_string().contains(missing),
        "{e}"
    );

    // A CA for a URL without TLS is a mistake, not a silent plain link.
    let config = config_with(&[
        ("STRATA_KV__URL", "redis://default@127.0.0.1:56379/0".into()),
        ("STRATA_KV__TLS_CA_FILE", ca),
    ]);
    let e = fails_within(Duration::from_secs(5), engines::open_kv(&config)).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("kv.tls_ca_file"), "{e}");
}

// ------------------------------------------------------------------ RabbitMQ

fn amqps_url() -> String {
    format!("amqps://strata@127.0.0.1:{AMQPS_PORT}/strata")
}

#[tokio::test]
async fn rabbitmq_over_tls_with_the_ca_publishes_and_consumes() {
    let Some(ca) = services_ca() else { return };
    let config = config_with(&[
        ("STRATA_QUEUE__URL", amqps_url()),
        ("STRATA_QUEUE__TLS_CA_FILE", ca),
    ]);
    let broker = engines::open_queue(&config)
        .await
        .unwrap_or_else(|e| panic!("open RabbitMQ over TLS: {e}"));
    let queue = common::unique_name("tls");
    broker
        .declare_queue(
            &queue,
            QueueOptions {
                durable: false,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let outcome = async {
        let published = broker
            .publish("", &queue, Message::new("over tls"))
            .await
            .unwrap();
        assert!(published.routed);
        let mut consumer = broker
            .consume(&queue, ConsumeOptions::default())
            .await
            .unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a delivery within 10 s")
            .expect("the consumer is open")
            .unwrap();
        assert_eq!(&delivery.message.body[..], b"over tls");
        delivery.ack().await.unwrap();
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    broker.delete_queue(&queue).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn rabbitmq_tls_port_refuses_plain_connections() {
    let Some(_ca) = services_ca() else { return };
    let config = config_with(&[
        (
            "STRATA_QUEUE__URL",
            format!("amqp://strata@127.0.0.1:{AMQPS_PORT}/strata"),
        ),
        ("STRATA_QUEUE__CONNECT_TIMEOUT", "2s".into()),
    ]);
    fails_within(Duration::from_secs(10), engines::open_queue(&config)).await;
}

#[tokio::test]
async fn rabbitmq_over_tls_without_the_ca_fails_on_the_certificate() {
    let Some(_ca) = services_ca() else { return };
    let config = config_with(&[
        ("STRATA_QUEUE__URL", amqps_url()),
        ("STRATA_QUEUE__CONNECT_TIMEOUT", "3s".into()),
    ]);
    let e = fails_within(Duration::from_secs(10), engines::open_queue(&config)).await;
    assert_certificate_failure(&e);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn rabbitmq_ca_file_errors_name_the_key() {
    let Some(ca) = services_ca() else { return };
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "no certificate here\n").unwrap();
    let not_pem = not_pem.to_str().unwrap().to_owned();
    let config = config_with(&[
        ("STRATA_QUEUE__URL", amqps_url()),
        ("STRATA_QUEUE__TLS_CA_FILE", not_pem.clone()),
    ]);
    let e = fails_within(Duration::from_secs(5), engines::open_queue(&config)).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains("queue.tls_ca_file") && e.to_string().contains(&not_pem),
        "{e}"
    );

    let config = config_with(&[
        (
            "STRATA_QUEUE__URL",
            "amqp://strata@127.0.0.1:55672/strata".into(),
        ),
        ("STRATA_QUEUE__TLS_CA_FILE", ca),
    ]);
    let e = fails_within(Duration::from_secs(5), engines::open_queue(&config)).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("queue.tls_ca_file"), "{e}");
}

// ------------------------------------------------------------------- MongoDB

fn mongo_tls_url(query: &str) -> String {
    format!("mongodb://strata@127.0.0.1:{MONGO_TLS_PORT}/?authSource=admin{query}")
}

#[tokio::test]
async fn mongodb_over_tls_with_the_ca_round_trips() {
    let Some(ca) = services_ca() else { return };
    let database = common::unique_name("tls");
    let config = config_with(&[
        (
            "STRATA_DOCUMENTS__URL",
            mongo_tls_url(&format!("&tls=true&tlsCAFile={ca}")),
        ),
        ("STRATA_DOCUMENTS__DATABASE", database),
    ]);
    assert!(matches!(config.documents, DocumentsConfig::Mongodb(_)));
    let documents = engines::open_documents(&config)
        .await
        .unwrap_or_else(|e| panic!("open MongoDB over TLS: {e}"));
    let outcome = async {
        documents
            .insert_one("probe", doc! {"_id": 1, "v": "over tls"})
            .await
            .unwrap();
        let found = documents
            .find_one("probe", doc! {"_id": 1}, FindOptions::default())
            .await
            .unwrap()
            .expect("the document written");
        assert_eq!(found.get_str("v").unwrap(), "over tls");
    };
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    documents.drop_database().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn mongodb_tls_port_refuses_plain_connections() {
    let Some(_ca) = services_ca() else { return };
    let config = config_with(&[
        ("STRATA_DOCUMENTS__URL", mongo_tls_url("")),
        ("STRATA_DOCUMENTS__SERVER_SELECTION_TIMEOUT", "2s".into()),
        ("STRATA_DOCUMENTS__CONNECT_TIMEOUT", "2s".into()),
    ]);
    fails_within(Duration::from_secs(10), engines::open_documents(&config)).await;
}

#[tokio::test]
async fn mongodb_over_tls_without_the_ca_fails_on_the_certificate() {
    let Some(_ca) = services_ca() else { return };
    let config = config_with(&[
        ("STRATA_DOCUMENTS__URL", mongo_tls_url("&tls=true")),
        ("STRATA_DOCUMENTS__SERVER_SELECTION_TIMEOUT", "2s".into()),
        ("STRATA_DOCUMENTS__CONNECT_TIMEOUT", "2s".into()),
    ]);
    let e = fails_within(Duration::from_secs(10), engines::open_documents(&config)).await;
    assert_certificate_failure(&e);
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
}

#[tokio::test]
async fn mongodb_with_a_missing_ca_file_names_the_file() {
    let Some(_ca) = services_ca() else { return };
    let missing = "/nonexistent/strata-tls-test/ca.pem";
    let config = config_with(&[
        (
            "STRATA_DOCUMENTS__URL",
            mongo_tls_url(&format!("&tls=true&tlsCAFile={missing}")),
        ),
        ("STRATA_DOCUMENTS__SERVER_SELECTION_TIMEOUT", "2s".into()),
        ("STRATA_DOCUMENTS__CONNECT_TIMEOUT", "2s".into()),
    ]);
    let e = fails_within(Duration::from_secs(10), engines::open_documents(&config)).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains(missing), "{e}");
}

// ----------------------------------------------------------------------- CLI

/// `strata --profile full --json doctor` with every engine on TLS.
fn doctor(env: &[(&str, String)]) -> (std::process::Output, serde_json::Value) {
    let data = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    for (key, _) in std::env::vars() {
        if key.starts_with("STRATA_") {
            command.env_remove(key);
        }
    }
    let out = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(["--profile", "full", "--json", "--data-dir"])
        .arg(data.path())
        .arg("doctor")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run strata doctor");
    let rows = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "strata doctor printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, rows)
}

fn all_on_tls(ca: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "STRATA_RELATIONAL__URL",
            pg_url(&format!("sslmode=verify-full&sslrootcert={ca}")),
        ),
        (
            "STRATA_DOCUMENTS__URL",
            mongo_tls_url(&format!("&tls=true&tlsCAFile={ca}")),
        ),
        ("STRATA_KV__URL", rediss_url()),
        ("STRATA_KV__TLS_CA_FILE", ca.to_owned()),
        ("STRATA_QUEUE__URL", amqps_url()),
        ("STRATA_QUEUE__TLS_CA_FILE", ca.to_owned()),
    ]
}

#[test]
fn doctor_reaches_every_engine_over_tls() {
    let Some(ca) = services_ca() else { return };
    let (out, rows) = doctor(&all_on_tls(&ca));
    let rows = rows.as_array().expect("one row per engine");
    assert_eq!(rows.len(), 4, "{rows:?}");
    for row in rows {
        assert_eq!(row["status"], "healthy", "{row}");
    }
    assert!(out.status.success(), "{rows:?}");
}

#[test]
fn doctor_names_a_missing_kv_ca_file() {
    let Some(ca) = services_ca() else { return };
    let missing = "/nonexistent/strata-tls-test/ca.pem";
    let mut env = all_on_tls(&ca);
    env.retain(|(k, _)| *k != "STRATA_KV__TLS_CA_FILE");
    env.push(("STRATA_KV__TLS_CA_FILE", missing.into()));
    let (out, rows) = doctor(&env);
    assert!(!out.status.success());
    let kv = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["engine"] == "kv"))
        .expect("a kv row");
    assert_eq!(kv["status"], "misconfigured", "{kv}");
    let error = kv["error"].as_str().expect("an error");
    assert!(
        error.contains("kv.tls_ca_file") && error.contains(missing),
        "{error}"
    );
}
