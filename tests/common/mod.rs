//! Shared set-up of the integration tests.
//!
//! Real-service tests run when `STRATA_TEST_FULL=1` (after
//! `scripts/services.sh up`); otherwise they are skipped and say so once per
//! test binary. They read their connection settings from the repository's
//! `config/full.toml` through the same loader strata uses, plus `STRATA_*`
//! variables, and isolate themselves with names from [`unique_name`].

#![allow(dead_code)]

pub mod documents;
pub mod engines;
pub mod faulty;
pub mod outage;
pub mod serve;

/// `run_cases!(name, setup; case, ...)`: a module `name` with one
/// `#[tokio::test]` per case, each `run_case(setup, super::case)` with the
/// `run_case` in scope where the macro is invoked (the document or the
/// engines variant), so one case list runs per backend.
#[macro_export]
macro_rules! run_cases {
    ($backend:ident, $setup:expr; $($case:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    run_case($setup, super::$case).await
                }
            )*
        }
    };
}

use std::io::Write;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use strata::config::{Config, Sources};

/// Whether the real services are to be used.
pub fn full_stack_enabled() -> bool {
    std::env::var("STRATA_TEST_FULL").as_deref() == Ok("1")
}

/// The full profile's configuration, or `None` (with one line on stderr per
/// test binary) when `STRATA_TEST_FULL` is not `1`.
pub fn full_profile(suite: &str) -> Option<Config> {
    static SKIP_NOTICE: Once = Once::new();
    if !full_stack_enabled() {
        SKIP_NOTICE.call_once(|| {
            // Written to the handle, not with eprintln!, which the test
            // harness captures and hides for passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "{suite}: real-service cases skipped (set STRATA_TEST_FULL=1 after scripts/services.sh up)"
            );
        });
        return None;
    }
    let sources = Sources {
        config_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config")),
        profile: Some("full".into()),
        ..Default::default()
    };
    Some(Config::load(&sources).unwrap_or_else(|e| panic!("config/full.toml: {e}")))
}

/// A name no other test, run or process uses: `prefix` + pid + time +
/// counter. Lower-case ASCII letters, digits and `_` only, so it is valid as
/// a database, schema, queue or key prefix everywhere.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos:x}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A relational database for one test: SQLite in a temp dir, or (with
/// `STRATA_TEST_FULL=1`) a PostgreSQL database of its own, created from the
/// full profile's server and dropped by [`TestDb::cleanup`].
pub struct TestDb {
    /// The configuration that reaches this test's database.
    pub config: Config,
    _dir: tempfile::TempDir,
    postgres: Option<(Config, String)>,
}

impl TestDb {
    /// SQLite in a fresh data dir (a nested one, which strata creates).
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: dir.path().join("nested/data"),
            relational: strata::config::RelationalConfig {
                max_connections: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        TestDb {
            config,
            _dir: dir,
            postgres: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` when the full stack is off.
    ///
    /// Its default collation is a natural-language one where the server has
    /// ICU (en-US sorts `a` before `B`), so tests show that strata's text
    /// still compares byte-wise, as on SQLite.
    pub async fn postgres(suite: &str) -> Option<TestDb> {
        use sea_orm::ConnectionTrait;

        let admin = full_profile(suite)?;
        let name = unique_name("t");
        // The admin connection is not migrated: the shared database is not
        // the test's.
        let db = admin_connection(&admin).await;
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
        );
        if db.execute_unprepared(&icu).await.is_err() {
            db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
        }
        db.close().await.expect("close admin connection");
        let mut config = admin.clone();
        let base = admin.relational.url.clone().expect("full profile URL");
        let (server, _) = base.rsplit_once('/').expect("URL names a database");
        config.relational.url = Some(format!("{server}/{name}"));
        config.relational.max_connections = 3;
        config.relational.min_connections = 0;
        Some(TestDb {
            config,
            _dir: tempfile::tempdir().expect("temp dir"),
            postgres: Some((admin, name)),
        })
    }

    /// Whether this is the PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A new pool on the test database, migrated.
    pub async fn open(&self) -> sea_orm::DatabaseConnection {
        let db = strata::engines::open_relational(&self.config)
            .await
            .expect("open the test database");
        strata::migration::migrate(&db)
            .await
            .expect("migrate the test database");
        db
    }

    /// Drops the PostgreSQL database; nothing to do for SQLite.
    pub async fn cleanup(mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            drop_database(&admin, &name).await;
        }
    }
}

impl Drop for TestDb {
    /// A test that failed before [`TestDb::cleanup`] still drops its
    /// database: on a thread and runtime of its own, since this may run
    /// while the test's runtime unwinds.
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_database(&admin, &name));
                }
            })
            .join();
        }
    }
}

async fn drop_database(admin: &Config, name: &str) {
    use sea_orm::ConnectionTrait;

    let db = admin_connection(admin).await;
    let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    // FORCE must terminate every other session in the database, and an
    // autovacuum worker there is one a role without pg_signal_backend may
    // not terminate (scripts/services.sh grants it; a server set up
    // otherwise may not have). The worker ends soon on its own: the drop is
    // tried again for a few seconds before the failure is reported.
    let mut attempts = 1;
    while let Err(e) = db.execute_unprepared(&statement).await {
        assert!(attempts < 20, "drop test database {name}: {e}");
        attempts += 1;
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

async fn admin_connection(admin: &Config) -> sea_orm::DatabaseConnection {
    strata::engines::relational::connect(&admin.relational, &admin.data_dir)
        .await
        .expect("full profile's postgres")
}
