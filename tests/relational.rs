//! The relational engine on SQLite: the file lives in the data dir, runs in
//! WAL mode with foreign keys enforced, and migrations apply idempotently.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use strata::config::{Config, RelationalConfig};
use strata::engines;
use strata::migration;

fn config_in(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.join("nested/data"),
        relational: RelationalConfig {
            max_connections: 3,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn scalar(db: &sea_orm::DatabaseConnection, sql: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, sql))
        .await
        .expect("query")
        .expect("one row");
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|i| i.to_string()))
        .expect("a value")
}

#[tokio::test]
async fn sqlite_file_in_data_dir_with_wal_and_foreign_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    let db = engines::open_relational(&config).await.unwrap();
    assert!(
        config.data_dir.join("strata.db").is_file(),
        "created with its directory"
    );
    assert_eq!(scalar(&db, "PRAGMA journal_mode").await, "wal");
    assert_eq!(scalar(&db, "PRAGMA foreign_keys").await, "1");

    db.execute_unprepared("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        .await
        .unwrap();
    db.execute_unprepared(
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id))",
    )
    .await
    .unwrap();
    let err = db
        .execute_unprepared("INSERT INTO child (id, parent_id) VALUES (1, 42)")
        .await
        .expect_err("a dangling reference is refused");
    let err = engines::relational::map_db_err(err);
    assert_eq!(err.kind(), strata::ErrorKind::Conflict, "{err}");
}

#[tokio::test]
async fn migrations_apply_once_and_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    {
        let db = engines::open_relational(&config).await.unwrap();
        migration::migrate(&db).await.unwrap();
        let applied = migration::applied(&db).await.unwrap();
        assert_eq!(applied, vec!["m20261122_000001_init".to_owned()]);
        db.execute_unprepared("CREATE TABLE kept (v TEXT); INSERT INTO kept VALUES ('here')")
            .await
            .unwrap();
        db.close().await.unwrap();
    }
    let db = engines::open_relational(&config).await.unwrap();
    assert_eq!(migration::applied(&db).await.unwrap().len(), 1);
    assert_eq!(scalar(&db, "SELECT v FROM kept").await, "here");
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
        matches!(
            err.kind(),
            strata::ErrorKind::Unavailable | strata::ErrorKind::Timeout
        ),
        "{err}"
    );
    assert!(err.is_retryable());
    assert!(
        err.to_string().contains("127.0.0.1:1"),
        "names the target: {err}"
    );
}
