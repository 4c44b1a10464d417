//! The relational engine: SQLite (embedded default) or PostgreSQL, through
//! sea-orm. sea-orm is the abstraction here; strata adds only connection
//! set-up from configuration and the mapping of database errors into
//! strata's error kinds.
//!
//! SQLite runs in WAL mode with foreign keys enforced, in a file in the data
//! dir, so a committed transaction survives `kill -9` of the process.
//!
//! [`read_only`] runs one statement on a connection of its own that cannot
//! write, bounded in time and rows (`strata sql`).

use std::path::Path;
use std::time::{Duration, Instant};

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use crate::config::{RelationalConfig, redact_url};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;

pub mod read_only;

/// Opens a pool to the configured database. For SQLite, the data dir is
/// created when missing.
pub async fn connect(config: &RelationalConfig, data_dir: &Path) -> Result<DatabaseConnection> {
    let url = config.effective_url(data_dir)?;
    let target = redact_url(&url);
    check_tls_files(&url).map_err(|e| e.with_operation("connect").with_target(target.clone()))?;
    if config.is_sqlite()
        && let Some(parent) = sqlite_file(&url).and_then(|f| f.parent().map(Path::to_path_buf))
    {
        std::fs::create_dir_all(&parent).map_err(|e| {
            Error::from(e)
                .with_operation("connect")
                .with_target(parent.display().to_string())
        })?;
    }
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .sqlx_logging(config.log_statements)
        .sqlx_logging_level(tracing::log::LevelFilter::Info)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
        });
    // sqlx retries refused connections until the acquire timeout; bound the
    // whole attempt by the connect timeout as well so a dead server is
    // reported promptly.
    let deadline = config.connect_timeout + Duration::from_millis(500);
    // Several processes opening a fresh SQLite file at once: the one
    // switching it to WAL holds a lock that SQLite reports as busy at once,
    // without the busy timeout. It is over in moments, so only that is
    // retried, within the connect timeout.
    let policy = RetryPolicy::within(deadline)
        .with_delays(Duration::from_millis(10), Duration::from_millis(200));
    let attempts = policy.run(|_| async {
        match Database::connect(options.clone()).await {
            Ok(db) => Ok(Ok(db)),
            Err(e) if is_sqlite_busy(&e) => {
                Err(Error::new(ErrorKind::Unavailable, "the SQLite file is busy").with_source(e))
            }
            Err(e) => Ok(Err(e)),
        }
    });
    match tokio::time::timeout(deadline, attempts).await {
        Ok(Ok(Ok(db))) => Ok(db),
        Ok(Ok(Err(e))) => Err(map_db_err(e).with_operation("connect").with_target(target)),
        Ok(Err(busy)) => Err(busy.with_operation("connect").with_target(target)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("no connection within {:?}", config.connect_timeout),
        )
        .with_operation("connect")
        .with_target(target)),
    }
}

/// The certificate and key files a PostgreSQL URL names (`sslrootcert`,
/// `sslcert`, `sslkey`) must be readable: the driver reports a missing one
/// as a bare "No such file or directory" while connecting.
fn check_tls_files(url: &str) -> Result<()> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Ok(());
    };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Ok(());
    }
    for (name, value) in parsed.query_pairs() {
        // `system` asks for the system's roots, not a file.
        if matches!(&*name, "sslrootcert" | "sslcert" | "sslkey")
            && value != "system"
            && let Err(e) = std::fs::File::open(&*value)
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("relational.url: {name} `{value}` cannot be read: {e}"),
            )
            .with_field("relational.url"));
        }
    }
    Ok(())
}

/// Begins a transaction that writes: on SQLite it takes the write lock up
/// front (`BEGIN IMMEDIATE`), waiting for another writer within the busy
/// timeout. A deferred transaction that reads and then writes would instead
/// fail with `SQLITE_BUSY` at once when another connection wrote in between,
/// since SQLite cannot wait out a lock upgrade without risking deadlock.
/// Inside an open transaction it nests as a savepoint. On PostgreSQL it is
/// an ordinary transaction.
pub async fn begin_write<C>(db: &C) -> std::result::Result<C::Transaction, DbErr>
where
    C: TransactionTrait,
{
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Serialises, until `txn` ends, the write transactions that lock the same
/// `key`, including over rows that do not exist yet (which `SELECT ... FOR
/// UPDATE` cannot lock): a transaction-scoped advisory lock on PostgreSQL.
/// On SQLite a write transaction from [`begin_write`] already holds the
/// database's write lock, so there is nothing more to take.
pub async fn lock_key<C>(txn: &C, key: &str) -> std::result::Result<(), DbErr>
where
    C: ConnectionTrait,
{
    /// The advisory lock space of these keys (two-key form, apart from
    /// the migration's single-key lock).
    const SPACE: i32 = 0x5354_4b59; // "STKY"
    if txn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        [SPACE.into(), key.into()],
    ))
    .await
    .map(|_| ())
}

/// Whether `error` is SQLite's `SQLITE_BUSY` (primary result code 5,
/// "database is locked"), whatever its extended code.
fn is_sqlite_busy(error: &DbErr) -> bool {
    let (DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
    | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))) = error
    else {
        return false;
    };
    e.as_database_error()
        .filter(|db| {
            db.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                .is_some()
        })
        .and_then(|db| db.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// The file of a `sqlite://PATH?...` URL; `None` for in-memory databases.
fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(Path::new(path))
    }
}

/// Runs `SELECT 1` and returns the round-trip time.
pub async fn ping(db: &DatabaseConnection) -> Result<Duration> {
    let started = Instant::now();
    db.execute_unprepared("SELECT 1")
        .await
        .map_err(|e| map_db_err(e).with_operation("ping"))?;
    Ok(started.elapsed())
}

/// The backend's name: `"sqlite"` or `"postgres"`.
pub fn backend_name(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Sqlite => "sqlite",
        DbBackend::Postgres => "postgres",
        _ => "other",
    }
}

/// The use of the relational engine's connection pool.
pub fn pool_use(db: &DatabaseConnection) -> Option<crate::engines::PoolUse> {
    let (open, idle, max) = match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        _ => return None,
    };
    Some(crate::engines::PoolUse {
        open: u64::from(open),
        idle: u64::try_from(idle).unwrap_or(u64::MAX),
        max: u64::from(max),
    })
}

/// Maps a sea-orm error into strata's kinds: unique and foreign-key
/// violations are conflicts, connection failures are unavailable (retry may
/// help), refused credentials are authentication failures.
pub fn map_db_err(error: DbErr) -> Error {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    let kind = match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            if lower.contains("invalid peer certificate") {
                // The server's certificate does not verify against the
                // trusted roots (`sslrootcert`): retrying will not help.
                ErrorKind::Config
            } else if lower.contains("password authentication failed")
                || lower.contains("authentication failed")
            {
                ErrorKind::AuthenticationFailed
            } else if lower.contains("timed out") || lower.contains("timeout") {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unavailable
            }
        }
        DbErr::RecordNotFound(_) => ErrorKind::NotFound,
        _ if lower.contains("password authentication failed") => ErrorKind::AuthenticationFailed,
        _ if lower.contains("unique constraint")
            || lower.contains("duplicate key")
            || lower.contains("foreign key constraint") =>
        {
            ErrorKind::Conflict
        }
        _ if lower.contains("syntax error") || lower.contains("no such table") => {
            ErrorKind::InvalidInput
        }
        _ if lower.contains("readonly")
            || lower.contains("read-only")
            || lower.contains("read only")
            || lower.contains("attempt to write") =>
        {
            ErrorKind::InvalidInput
        }
        _ if lower.contains("connection refused") || lower.contains("pool timed out") => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Internal,
    };
    Error::new(kind, text).with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_of_url() {
        assert_eq!(
            sqlite_file("sqlite:///tmp/x/strata.db?mode=rwc"),
            Some(Path::new("/tmp/x/strata.db"))
        );
        assert_eq!(
            sqlite_file("sqlite://./data/strata.db"),
            Some(Path::new("./data/strata.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    /// A write while another connection holds the write lock is SQLITE_BUSY
    /// (with no busy timeout to wait it out); other errors are not.
    #[tokio::test]
    async fn a_locked_sqlite_file_is_busy_and_other_errors_are_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut options = ConnectOptions::new(url);
        options
            .max_connections(2)
            .map_sqlx_sqlite_opts(|o| o.busy_timeout(Duration::ZERO));
        let db = Database::connect(options).await.expect("connect");
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .expect("create");
        let holder = db.begin().await.expect("begin");
        holder
            .execute_unprepared("INSERT INTO t VALUES (1)")
            .await
            .expect("take the write lock");
        let busy = db
            .execute_unprepared("INSERT INTO t VALUES (2)")
            .await
            .expect_err("the file is locked");
        assert!(is_sqlite_busy(&busy), "{busy:?}");
        holder.rollback().await.expect("rollback");

        let syntax = db
            .execute_unprepared("INSERT INTO nowhere VALUES (1)")
            .await
            .expect_err("no such table");
        assert!(!is_sqlite_busy(&syntax), "{syntax:?}");
    }
}
