//! One read-only statement, bounded in time and rows: what `strata sql`
//! runs. It has a connection of its own, opened so that nothing it runs
//! can write, whatever the statement says:
//!
//! - **SQLite** is opened read-only (`SQLITE_OPEN_READONLY`, never
//!   creating anything): a write, a writing `PRAGMA`, or an `ATTACH` of a
//!   file that does not exist fails, and no file is created. A missing
//!   data dir or database file is reported as such, before SQLite is asked.
//!   The statement is first prepared by SQLite itself: anything but blanks
//!   and comments after the first statement is refused (so `SELECT ';'` is
//!   one statement and `SELECT 1; SELECT 2` two), and so is a statement
//!   SQLite does not call read-only (`sqlite3_stmt_readonly`). The time
//!   bound is a progress handler that interrupts the statement.
//! - **PostgreSQL** sessions start with `default_transaction_read_only`
//!   on, the statement runs in a `READ ONLY` transaction with a local
//!   `statement_timeout`, and it goes through the extended query protocol,
//!   where the server itself refuses several commands in one statement.
//!
//! Rows are fetched one by one and the fetch stops at the row bound, so a
//! huge result costs no memory; the output says it was cut.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sea_orm::sqlx::{self, AssertSqlSafe, ConnectOptions, Connection, Executor};
use sea_orm::{FromQueryResult, JsonValue, QueryResult};
use serde_json::json;
use tracing::log::LevelFilter;

use super::sqlite_file;
use crate::config::{RelationalConfig, redact_url, scrub};
use crate::error::{Error, ErrorKind, Result};

/// The bounds of one query.
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    /// The statement is stopped after this long.
    pub timeout: Duration,
    /// At most this many rows are fetched.
    pub max_rows: u64,
}

/// What a query returned.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryOutput {
    /// The rows, each a JSON object with its columns in order.
    pub rows: Vec<serde_json::Value>,
    /// Whether more rows were left unfetched at the row bound.
    pub truncated: bool,
}

/// Runs `sql`, one read-only statement, on the configured database.
///
/// # Errors
///
/// `InvalidInput` for a statement SQLite or PostgreSQL refuses (a syntax
/// error, an unknown table, more than one statement, one that would
/// write); `Timeout` when it ran over `limits.timeout`; `Config` when the
/// data dir does not exist, `NotFound` when it holds no database;
/// `Unavailable` or `AuthenticationFailed` when the server cannot be used.
pub async fn query(
    config: &RelationalConfig,
    data_dir: &Path,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryOutput> {
    if sql.trim().is_empty() {
        return Err(Error::invalid("QUERY is empty").with_operation("sql"));
    }
    let url = config.effective_url(data_dir)?;
    let target = redact_url(&url);
    // The database's own bounds come first; this one also covers waiting
    // for a connection or a lock, where they may not reach.
    let bound = limits.timeout + config.connect_timeout + Duration::from_secs(1);
    let outcome = if config.is_sqlite() {
        tokio::time::timeout(bound, sqlite(config, &url, sql, limits)).await
    } else {
        tokio::time::timeout(bound, postgres(config, &url, sql, limits)).await
    };
    let result = outcome.unwrap_or_else(|_| Err(over_time(limits.timeout)));
    result.map_err(|e| {
        let message = scrub(e.message(), &url);
        let mut mapped = Error::new(e.kind(), message)
            .with_operation("sql")
            .with_target(target.clone());
        if let Some(field) = e.field() {
            mapped = mapped.with_field(field.to_owned());
        }
        mapped.with_source(e)
    })
}

fn over_time(timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "the query ran longer than its time bound (--timeout {}) and was stopped",
            humantime_serde::re::humantime::format_duration(timeout)
        ),
    )
}

/// Statements are logged as the pool's are (`relational.log_statements`,
/// `--log-sql`); a statement running over the time bound is reported as an
/// error, not also as sqlx's slow-statement warning.
fn statement_log_level(config: &RelationalConfig) -> LevelFilter {
    if config.log_statements {
        LevelFilter::Info
    } else {
        LevelFilter::Off
    }
}

fn too_many_statements() -> Error {
    Error::invalid("QUERY must be a single statement; a second one follows the first")
}

// ------------------------------------------------------------------ SQLite

async fn sqlite(
    config: &RelationalConfig,
    url: &str,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryOutput> {
    if let Some(file) = sqlite_file(url) {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the data dir {} does not exist", dir.display()),
            )
            .with_field("data_dir"));
        }
        if !file.is_file() {
            return Err(Error::not_found(format!(
                "no database at {}: nothing has been stored yet (`strata seed` or `strata serve` create it)",
                file.display()
            )));
        }
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(limits.timeout)
        .log_statements(statement_log_level(config))
        .log_slow_statements(LevelFilter::Off, Duration::MAX);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .map_err(unavailable)?;
    let fired = Arc::new(AtomicBool::new(false));
    {
        let mut handle = connection.lock_handle().await.map_err(unavailable)?;
        let raw = handle.as_raw_handle();
        // SAFETY: the handle is locked out of sqlx's worker for this block,
        // so nothing else uses the connection, and it stays open.
        unsafe { check_statement(raw.as_ptr(), sql)? };
        let deadline = Instant::now() + limits.timeout;
        let fired = Arc::clone(&fired);
        // SQLite calls this every 1000 virtual-machine steps; `false`
        // interrupts the statement (SQLITE_INTERRUPT).
        handle.set_progress_handler(1000, move || {
            let go_on = Instant::now() < deadline;
            if !go_on {
                fired.store(true, Ordering::Relaxed);
            }
            go_on
        });
    }
    let mut rows = Vec::new();
    let mut truncated = false;
    {
        // The user's statement is the point here; the read-only connection
        // is what keeps it harmless.
        let mut stream = sqlx::query(AssertSqlSafe(sql)).fetch(&mut connection);
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| sqlite_error(e, limits.timeout, fired.load(Ordering::Relaxed)))?
        {
            if rows.len() as u64 >= limits.max_rows {
                truncated = true;
                break;
            }
            rows.push(sqlite_row(row));
        }
    }
    connection.close().await.map_err(unavailable)?;
    Ok(QueryOutput { rows, truncated })
}

/// Prepares the first statement of `sql` with SQLite's own parser and
/// refuses a syntax error, an empty query, anything but blanks and comments
/// after the first statement, and a statement that is not read-only.
///
/// # Safety
///
/// `db` must be an open connection that nothing else uses meanwhile.
unsafe fn check_statement(db: *mut libsqlite3_sys::sqlite3, sql: &str) -> Result<()> {
    let (statement, rest) = unsafe { prepare(db, sql)? };
    let Some(statement) = statement else {
        return Err(Error::invalid(
            "QUERY holds no statement, only blanks or comments",
        ));
    };
    // SAFETY: a statement just prepared on `db`, finalized once, here.
    let read_only = unsafe {
        let read_only = libsqlite3_sys::sqlite3_stmt_readonly(statement) != 0;
        libsqlite3_sys::sqlite3_finalize(statement);
        read_only
    };
    // What follows may only be empty statements (`;`) and comments.
    let mut rest = rest;
    while !rest.trim().is_empty() {
        match unsafe { prepare(db, rest) } {
            Ok((None, next)) if next.len() < rest.len() => rest = next,
            Ok((None, _)) => break,
            Ok((Some(second), _)) => {
                // SAFETY: as above.
                unsafe { libsqlite3_sys::sqlite3_finalize(second) };
                return Err(too_many_statements());
            }
            Err(_) => return Err(too_many_statements()),
        }
    }
    if !read_only {
        return Err(Error::invalid(
            "strata sql runs read-only statements only; this one would write",
        ));
    }
    Ok(())
}

/// `sqlite3_prepare_v2` of the first statement in `sql`: the statement
/// (`None` when there is only blank text or comments) and the text after it.
///
/// # Safety
///
/// As [`check_statement`]; the caller finalizes the statement.
unsafe fn prepare(
    db: *mut libsqlite3_sys::sqlite3,
    sql: &str,
) -> Result<(Option<*mut libsqlite3_sys::sqlite3_stmt>, &str)> {
    let length = std::os::raw::c_int::try_from(sql.len())
        .map_err(|_| Error::invalid("QUERY is too long"))?;
    let mut statement = std::ptr::null_mut();
    let mut tail = std::ptr::null();
    // SAFETY: `sql` outlives the call and `length` is its length in bytes;
    // SQLite reads no further and points `tail` into it.
    let code = unsafe {
        libsqlite3_sys::sqlite3_prepare_v2(
            db,
            sql.as_ptr().cast(),
            length,
            &mut statement,
            &mut tail,
        )
    };
    if code != libsqlite3_sys::SQLITE_OK {
        // SAFETY: SQLite keeps the message valid until the next call on `db`.
        let message = unsafe { std::ffi::CStr::from_ptr(libsqlite3_sys::sqlite3_errmsg(db)) }
            .to_string_lossy()
            .into_owned();
        return Err(Error::invalid(message));
    }
    let consumed = if tail.is_null() {
        sql.len()
    } else {
        // SAFETY: `tail` points into `sql` or just past its end.
        usize::try_from(unsafe { tail.cast::<u8>().offset_from(sql.as_ptr()) }).unwrap_or(sql.len())
    };
    let rest = sql.get(consumed..).unwrap_or("");
    Ok(((!statement.is_null()).then_some(statement), rest))
}

/// Maps an error of the SQLite statement: an interrupt once the deadline
/// has passed is the time bound; any other database error is the query's.
fn sqlite_error(error: sqlx::Error, timeout: Duration, deadline_passed: bool) -> Error {
    match &error {
        sqlx::Error::Database(db) => {
            let interrupted = db.code().and_then(|c| c.parse::<i32>().ok())
                == Some(libsqlite3_sys::SQLITE_INTERRUPT);
            if interrupted && deadline_passed {
                return over_time(timeout).with_source(error);
            }
            Error::invalid(db.message().to_owned()).with_source(error)
        }
        _ => unavailable(error),
    }
}

/// The connection itself failed: not the query's doing.
fn unavailable(error: sqlx::Error) -> Error {
    Error::new(ErrorKind::Unavailable, error.to_string()).with_source(error)
}

/// A row as a JSON object. SQLite types each value, not each column, so
/// each value is read by its own storage class.
fn sqlite_row(row: SqliteRow) -> serde_json::Value {
    let result = QueryResult::from(row);
    let object: serde_json::Map<String, serde_json::Value> = result
        .column_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| (name, sqlite_value(&result, i)))
        .collect();
    serde_json::Value::Object(object)
}

fn sqlite_value(row: &QueryResult, index: usize) -> serde_json::Value {
    if let Ok(v) = row.try_get_by_index::<Option<i64>>(index) {
        return json!(v);
    }
    if let Ok(v) = row.try_get_by_index::<Option<f64>>(index) {
        return json!(v);
    }
    if let Ok(v) = row.try_get_by_index::<Option<String>>(index) {
        return json!(v);
    }
    match row.try_get_by_index::<Option<Vec<u8>>>(index) {
        Ok(Some(bytes)) => bson::Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes,
        })
        .into_relaxed_extjson(),
        _ => serde_json::Value::Null,
    }
}

// -------------------------------------------------------------- PostgreSQL

async fn postgres(
    config: &RelationalConfig,
    url: &str,
    sql: &str,
    limits: QueryLimits,
) -> Result<QueryOutput> {
    let millis = limits.timeout.as_millis().max(1);
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| Error::new(ErrorKind::Config, e.to_string()))?
        .application_name("strata sql")
        .options([("default_transaction_read_only", "on")])
        .log_statements(statement_log_level(config))
        .log_slow_statements(LevelFilter::Off, Duration::MAX);
    let mut connection =
        match tokio::time::timeout(config.connect_timeout, PgConnection::connect_with(&options))
            .await
        {
            Ok(connected) => connected.map_err(postgres_error)?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no connection within {:?}", config.connect_timeout),
                ));
            }
        };
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN READ ONLY; SET LOCAL statement_timeout = {millis}"
    )))
    .execute(&mut connection)
    .await
    .map_err(postgres_error)?;
    let mut rows = Vec::new();
    let mut truncated = false;
    {
        // `sqlx::query` goes through the extended protocol (Parse, Bind,
        // Execute), which takes exactly one command.
        // The user's statement is the point here; the read-only connection
        // is what keeps it harmless.
        let mut stream = sqlx::query(AssertSqlSafe(sql)).fetch(&mut connection);
        while let Some(row) = stream.try_next().await.map_err(|e| {
            let mapped = postgres_error(e);
            match mapped.kind() {
                ErrorKind::Timeout => over_time(limits.timeout),
                _ => mapped,
            }
        })? {
            if rows.len() as u64 >= limits.max_rows {
                truncated = true;
                break;
            }
            rows.push(
                JsonValue::from_query_result(&QueryResult::from(row), "")
                    .map_err(|e| Error::internal(format!("cannot read a row: {e}")))?,
            );
        }
    }
    if truncated {
        // The rest of the result is not wanted; closing the socket ends the
        // transaction and the statement without reading it.
        connection.close_hard().await.map_err(postgres_error)?;
    } else {
        connection
            .execute("ROLLBACK")
            .await
            .map_err(postgres_error)?;
        connection.close().await.map_err(postgres_error)?;
    }
    Ok(QueryOutput { rows, truncated })
}

/// Maps a PostgreSQL error by its SQLSTATE: the statement timeout is the
/// time bound, refused credentials and lost connections are the server's,
/// everything else the database said about the statement is the query's.
fn postgres_error(error: sqlx::Error) -> Error {
    let kind = match &error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("57014") => ErrorKind::Timeout,
            Some("28P01" | "28000") => ErrorKind::AuthenticationFailed,
            Some(code) if code.starts_with("08") || code.starts_with("53") => {
                ErrorKind::Unavailable
            }
            _ => ErrorKind::InvalidInput,
        },
        sqlx::Error::Configuration(_) => ErrorKind::Config,
        _ => ErrorKind::Unavailable,
    };
    let message = match &error {
        sqlx::Error::Database(db)
            if db
                .message()
                .contains("cannot insert multiple commands into a prepared statement") =>
        {
            return too_many_statements().with_source(error);
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("25006") => format!(
            "strata sql runs read-only statements only: {}",
            db.message()
        ),
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    };
    Error::new(kind, message).with_source(error)
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use super::*;

    const LIMITS: QueryLimits = QueryLimits {
        timeout: Duration::from_secs(5),
        max_rows: 100,
    };

    /// A data dir with `strata.db` holding `t` = {1, 2}.
    async fn database() -> (tempfile::TempDir, RelationalConfig) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = RelationalConfig::default();
        let db = super::super::connect(&config, dir.path())
            .await
            .expect("connect");
        db.execute_unprepared("CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1), (2)")
            .await
            .expect("create");
        db.close().await.expect("close");
        (dir, config)
    }

    #[tokio::test]
    async fn sqlite_counts_statements_with_its_own_parser() {
        let (dir, config) = database().await;
        for one in [
            "SELECT ';' AS s",
            "SELECT 1;",
            "SELECT 1 -- done",
            "/* ; */ SELECT 1;;",
            "SELECT 1; -- c\n ;",
        ] {
            let out = query(&config, dir.path(), one, LIMITS)
                .await
                .unwrap_or_else(|e| panic!("{one}: {e}"));
            assert_eq!(out.rows.len(), 1, "{one}");
        }
        let semicolon = query(&config, dir.path(), "SELECT ';' AS s", LIMITS)
            .await
            .expect("one statement");
        assert_eq!(semicolon.rows, vec![json!({"s": ";"})]);
        for two in [
            "SELECT 1; SELECT 2",
            "SELECT 1; garbage",
            "SELECT ';'; SELECT 1",
        ] {
            let err = query(&config, dir.path(), two, LIMITS)
                .await
                .expect_err(two);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{two}: {err}");
            assert!(err.to_string().contains("single statement"), "{two}: {err}");
        }
        for none in ["-- only a comment", " ; ", "   "] {
            let err = query(&config, dir.path(), none, LIMITS)
                .await
                .expect_err(none);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{none:?}: {err}");
        }
    }

    #[tokio::test]
    async fn sqlite_writes_nothing_and_creates_no_file() {
        let (dir, config) = database().await;
        for write in [
            "INSERT INTO t VALUES (3)",
            "DELETE FROM t",
            "CREATE TABLE u (a)",
            "PRAGMA user_version = 5",
            "VACUUM",
            "BEGIN IMMEDIATE",
        ] {
            let err = query(&config, dir.path(), write, LIMITS)
                .await
                .expect_err(write);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{write}: {err}");
            assert!(err.to_string().contains("read-only"), "{write}: {err}");
        }
        for into_file in ["VACUUM INTO '{}'", "ATTACH DATABASE '{}' AS x"] {
            let file = dir.path().join("sneaky.db");
            let statement = into_file.replace("{}", &file.display().to_string());
            let err = query(&config, dir.path(), &statement, LIMITS)
                .await
                .expect_err(&statement);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{statement}: {err}");
            assert!(!file.exists(), "{statement} created a file");
        }
        let state = query(
            &config,
            dir.path(),
            "SELECT (SELECT count(*) FROM t) AS n, (SELECT count(*) FROM sqlite_master) AS tables, user_version AS v FROM pragma_user_version",
            LIMITS,
        )
        .await
        .expect("read");
        assert_eq!(state.rows, vec![json!({"n": 2, "tables": 1, "v": 0})]);
    }

    #[tokio::test]
    async fn sqlite_time_and_row_bounds() {
        let (dir, config) = database().await;
        let runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let started = Instant::now();
        let err = query(
            &config,
            dir.path(),
            runaway,
            QueryLimits {
                timeout: Duration::from_millis(300),
                max_rows: 10,
            },
        )
        .await
        .expect_err("runs forever");
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.to_string().contains("--timeout 300ms"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );

        let endless =
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
        let cut = query(
            &config,
            dir.path(),
            endless,
            QueryLimits {
                timeout: Duration::from_secs(5),
                max_rows: 3,
            },
        )
        .await
        .expect("cut at the row bound");
        assert_eq!(
            cut.rows,
            vec![json!({"x": 1}), json!({"x": 2}), json!({"x": 3})]
        );
        assert!(cut.truncated);
        let exact = query(
            &config,
            dir.path(),
            "SELECT a FROM t ORDER BY a",
            QueryLimits {
                timeout: Duration::from_secs(5),
                max_rows: 2,
            },
        )
        .await
        .expect("all rows");
        assert_eq!(exact.rows.len(), 2);
        assert!(!exact.truncated, "exactly the bound is not cut");
    }

    #[tokio::test]
    async fn a_missing_data_dir_or_database_is_reported_and_not_created() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = RelationalConfig::default();
        let missing = dir.path().join("nope");
        let err = query(&config, &missing, "SELECT 1", LIMITS)
            .await
            .expect_err("no data dir");
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!missing.exists());
        let err = query(&config, dir.path(), "SELECT 1", LIMITS)
            .await
            .expect_err("no database");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(!dir.path().join("strata.db").exists());
    }
}
