//! The relational engine on SQLite and PostgreSQL: the same migrations,
//! the same error kinds. SQLite runs always; PostgreSQL when
//! `STRATA_TEST_FULL=1`, each test in a database of its own that it drops.

mod common;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::MigratorTrait;
use strata::config::{Config, RelationalConfig, Secret};
use strata::{ErrorKind, engines, migration};

use common::TestDb;

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("one row");
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|i| i.to_string()))
        .or_else(|_| row.try_get_by_index::<i32>(0).map(|i| i.to_string()))
        .expect("a value")
}

async fn migrations_apply_once_and_data_survives_reopen(t: &TestDb) {
    {
        let db = engines::open_relational(&t.config).await.unwrap();
        assert!(
            migration::applied(&db).await.unwrap().is_empty(),
            "connecting applies nothing"
        );
        migration::migrate(&db).await.unwrap();
        let applied = migration::applied(&db).await.unwrap();
        let all: Vec<String> = migration::Migrator::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(applied, all);
        assert_eq!(applied[0], "m20261122_000001_init");
        db.execute_unprepared("CREATE TABLE kept (v TEXT)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO kept VALUES ('here')")
            .await
            .unwrap();
        db.close().await.unwrap();
    }
    let db = engines::open_relational(&t.config).await.unwrap();
    assert_eq!(
        migration::applied(&db).await.unwrap().len(),
        migration::Migrator::migrations().len()
    );
    assert_eq!(scalar(&db, "SELECT v FROM kept").await, "here");
    db.close().await.unwrap();
}

async fn constraint_violations_are_conflicts(t: &TestDb) {
    let db = engines::open_relational(&t.config).await.unwrap();
    db.execute_unprepared("CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT UNIQUE)")
        .await
        .unwrap();
    db.execute_unprepared(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id))",
    )
    .await
    .unwrap();
    let dangling = db
        .execute_unprepared("INSERT INTO child (id, parent_id) VALUES (1, 42)")
        .await
        .expect_err("a dangling reference is refused");
    let dangling = engines::relational::map_db_err(dangling);
    assert_eq!(dangling.kind(), ErrorKind::Conflict, "{dangling}");

    db.execute_unprepared("INSERT INTO parent VALUES (1, 'a')")
        .await
        .unwrap();
    let duplicate = db
        .execute_unprepared("INSERT INTO parent VALUES (2, 'a')")
        .await
        .expect_err("a duplicate unique value is refused");
    let duplicate = engines::relational::map_db_err(duplicate);
    assert_eq!(duplicate.kind(), ErrorKind::Conflict, "{duplicate}");
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM parent").await, "1");
    db.close().await.unwrap();
}

async fn concurrent_starts_migrate_once(t: &TestDb) {
    // Several processes starting at once on a fresh database: every start
    // succeeds and each migration is applied exactly once.
    let starts = (0..4).map(|_| async {
        let db = engines::open_relational(&t.config).await?;
        migration::migrate(&db).await?;
        Ok::<_, strata::Error>(db)
    });
    let dbs = futures::future::join_all(starts).await;
    for db in &dbs {
        assert!(db.is_ok(), "{:?}", db.as_ref().err());
    }
    let db = dbs.into_iter().next().unwrap().unwrap();
    let applied = migration::applied(&db).await.unwrap();
    let mut unique = applied.clone();
    unique.dedup();
    assert_eq!(applied, unique);
    assert_eq!(applied.len(), migration::Migrator::migrations().len());
}

macro_rules! relational_cases {
    ($backend:ident, $setup:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn migrations_apply_once_and_data_survives_reopen() {
                let Some(t) = $setup else { return };
                super::migrations_apply_once_and_data_survives_reopen(&t).await;
                t.cleanup().await;
            }

            #[tokio::test]
            async fn concurrent_starts_migrate_once() {
                let Some(t) = $setup else { return };
                super::concurrent_starts_migrate_once(&t).await;
                t.cleanup().await;
            }

            #[tokio::test]
            async fn constraint_violations_are_conflicts() {
                let Some(t) = $setup else { return };
                super::constraint_violations_are_conflicts(&t).await;
                t.cleanup().await;
            }
        }
    };
}

relational_cases!(sqlite, Some(TestDb::sqlite()));
relational_cases!(postgres, TestDb::postgres("relational").await);

#[tokio::test]
async fn sqlite_file_in_data_dir_with_wal_and_foreign_keys() {
    let t = TestDb::sqlite();
    let db = engines::open_relational(&t.config).await.unwrap();
    assert!(
        t.config.data_dir.join("strata.db").is_file(),
        "created with its directory"
    );
    assert_eq!(scalar(&db, "PRAGMA journal_mode").await, "wal");
    assert_eq!(scalar(&db, "PRAGMA foreign_keys").await, "1");
    assert_eq!(db.get_database_backend(), DbBackend::Sqlite);
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable_within_the_connect_timeout() {
    // Port 1 on loopback refuses connections at once.
    let config = Config {
        relational: RelationalConfig {
            url: Some("postgres://strata@127.0.0.1:1/strata".into()),
            connect_timeout: std::time::Duration::from_secs(2),
            acquire_timeout: std::time::Duration::from_secs(2),
            min_connections: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = engines::open_relational(&config)
        .await
        .expect_err("nothing listens");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        matches!(err.kind(), ErrorKind::Unavailable | ErrorKind::Timeout),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("127.0.0.1:1"),
        "names the target: {err}"
    );
}

#[tokio::test]
async fn wrong_postgres_password_is_an_authentication_failure_without_the_secret() {
    let Some(mut config) = common::full_profile("relational") else {
        return;
    };
    config.relational.password = Some(Secret::new("not-the-password"));
    config.relational.min_connections = 0;
    let err = engines::open_relational(&config)
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1"), "names the target: {text}");
    assert!(
        !text.contains("not-the-password"),
        "leaks the password: {text}"
    );
}

/// With PostgreSQL refusing connections (a gate in front of it, closed),
/// the pool waits out `relational.acquire_timeout` on each query (sqlx
/// retries a refused connection until that deadline), so the platform's
/// relational circuit breaker is what fails calls at once: after
/// `layers.breaker.failures` slow failures, calls fail in the time it takes
/// to refuse them, saying when to try again, and once PostgreSQL is back a
/// probe closes the circuit.
#[tokio::test]
async fn postgres_refusing_connections_opens_the_relational_breaker() {
    use strata::platform::Platform;

    let Some(stack) = common::serve::Stack::full("relational").await else {
        return;
    };
    let mut config = stack.full_config().expect("the full profile");
    let url = url::Url::parse(config.relational.url.as_deref().expect("a URL")).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let gate = common::outage::Gate::open(&upstream).await;
    let mut gated = url.clone();
    gated.set_port(Some(gate.port())).unwrap();
    config.relational.url = Some(gated.to_string());
    config.relational.min_connections = 0;
    let acquire_timeout = std::time::Duration::from_secs(2);
    config.relational.acquire_timeout = acquire_timeout;
    config.layers.breaker.failures = 2;
    config.layers.breaker.cooldown = std::time::Duration::from_millis(200);
    let platform = Platform::open(&config).await.unwrap();
    let registry = platform.registry();
    let missing = registry.dataset("no-such-dataset").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");

    gate.close().await;
    for attempt in 0..2 {
        let e = registry.dataset("no-such-dataset").await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unavailable),
            "attempt {attempt}: {e}"
        );
    }
    assert_eq!(
        platform.health().breaker("relational").map(|b| b.as_str()),
        Some("open")
    );
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let e = registry.dataset("no-such-dataset").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.to_string().contains("circuit open"), "{e}");
        assert!(e.retry_after().is_some(), "{e}");
    }
    assert!(
        started.elapsed() < acquire_timeout,
        "five calls on an open circuit took {:?}",
        started.elapsed()
    );

    // Back: once the cooldown has passed, a probe goes through and closes
    // the circuit. Each failed probe doubles the cooldown (up to 30 s), so
    // the loop is bounded by what the breaker promises, not by a guess.
    gate.reopen().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match registry.dataset("no-such-dataset").await {
            Err(e) if e.kind() == ErrorKind::NotFound => break,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "never recovered: {e}");
                tokio::time::sleep(
                    e.retry_after()
                        .unwrap_or(std::time::Duration::from_millis(50)),
                )
                .await;
            }
            Ok(d) => panic!("no such dataset, yet {d:?}"),
        }
    }
    assert_eq!(
        platform.health().breaker("relational").map(|b| b.as_str()),
        Some("closed")
    );
    platform
        .close(std::time::Duration::from_secs(1))
        .await
        .unwrap();
    stack.cleanup().await;
}
