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
        migration::migrate(&db).await.unwrap();
        let applied = migration::applied(&db).await.unwrap();
        assert_eq!(
            applied,
            vec![
                "m20261122_000001_init".to_owned(),
                "m20261122_000002_registry".to_owned(),
                "m20261201_000003_run_order_indexes".to_owned(),
            ]
        );
        db.execute_unprepared("CREATE TABLE kept (v TEXT)")
            .await
            .unwrap();
        db.execute_unprepared("INSERT INTO kept VALUES ('here')")
            .await
            .unwrap();
        db.close().await.unwrap();
    }
    let db = engines::open_relational(&t.config).await.unwrap();
    assert_eq!(migration::applied(&db).await.unwrap().len(), 3);
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
    let starts = (0..4).map(|_| engines::open_relational(&t.config));
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
