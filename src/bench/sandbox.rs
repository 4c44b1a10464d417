//! A bench's own corner of each engine, so it never touches a user's data
//! and leaves nothing behind: a temporary data dir for the embedded
//! engines; on the real services a PostgreSQL database, a MongoDB
//! database, a Redis key prefix and queue names of its own, all removed by
//! [`Sandbox::remove`].

use std::path::PathBuf;

use sea_orm::ConnectionTrait;

use crate::config::{Config, DocumentsConfig, KvConfig};
use crate::engines::{Engines, KvStoreExt};
use crate::error::{Error, Result};
use crate::platform::Platform;

/// The engines of one profile, isolated for a bench.
#[derive(Debug)]
pub(crate) struct Sandbox {
    /// The configuration reaching the sandbox (what a `strata serve` child
    /// gets through [`Sandbox::overrides`]).
    pub config: Config,
    /// The engines, opened on it, the schema applied.
    pub engines: Engines,
    /// The platform over them (caches, registry), without the layers, so
    /// the engines are measured as they are.
    pub platform: Platform,
    /// `strata_bench_<pid>_<time>`: names the database, prefix and queues.
    pub name: String,
    dir: PathBuf,
    /// The configuration as given (to drop the PostgreSQL database from).
    original: Config,
    postgres: Option<String>,
}

/// A name no other bench uses: lower-case letters, digits and `_`.
fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!("strata_bench_{}_{nanos:x}", std::process::id())
}

impl Sandbox {
    /// Creates the sandbox for `config` and opens its engines.
    pub async fn open(config: &Config) -> Result<Sandbox> {
        let name = unique_name();
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::internal(format!(
                "cannot create the bench's data dir {}: {e}",
                dir.display()
            ))
        })?;
        let mut sandboxed = config.clone();
        sandboxed.data_dir = dir.join("data");
        // Closed loops run up to 64 sessions; the pool must not be what is
        // measured.
        sandboxed.relational.max_connections = sandboxed.relational.max_connections.max(16);
        let mut postgres = None;
        let url = sandboxed.relational.url.clone().unwrap_or_default();
        if url.starts_with("postgres") {
            let (server, _) = url.rsplit_once('/').ok_or_else(|| {
                Error::new(
                    crate::error::ErrorKind::Config,
                    format!(
                        "relational.url {} names no database",
                        crate::config::redact_url(&url)
                    ),
                )
            })?;
            let admin = crate::engines::open_relational(config).await?;
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .map_err(|e| {
                    Error::internal(format!("cannot create the bench's database {name}: {e}"))
                })?;
            let _ = admin.close().await;
            sandboxed.relational.url = Some(format!("{server}/{name}"));
            postgres = Some(name.clone());
        } else {
            sandboxed.relational.url = None;
        }
        match &mut sandboxed.documents {
            DocumentsConfig::Mongodb(mongo) => mongo.database = name.clone(),
            DocumentsConfig::Embedded(embedded) => embedded.path = None,
        }
        if let KvConfig::Redis(redis) = &mut sandboxed.kv {
            redis.key_prefix = format!("{}{name}:", redis.key_prefix);
        }
        sandboxed.pipelines.prefix = name.clone();
        let opened = async {
            let engines = Engines::open(&sandboxed).await?;
            let platform = Platform::with_engines(engines.clone(), sandboxed.sagas).await?;
            Ok::<_, Error>((engines, platform))
        }
        .await;
        match opened {
            Ok((engines, platform)) => Ok(Sandbox {
                config: sandboxed,
                engines,
                platform,
                name,
                dir,
                original: config.clone(),
                postgres,
            }),
            Err(e) => {
                drop_postgres(config, postgres).await;
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// What a `strata` child process needs, beyond the same profile and
    /// configuration files, to reach this sandbox: `STRATA_*` variables.
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut vars = vec![(
            "STRATA_PIPELINES__PREFIX".to_owned(),
            self.config.pipelines.prefix.clone(),
        )];
        if let Some(url) = &self.config.relational.url {
            vars.push(("STRATA_RELATIONAL__URL".to_owned(), url.clone()));
        }
        if let DocumentsConfig::Mongodb(mongo) = &self.config.documents {
            vars.push((
                "STRATA_DOCUMENTS__DATABASE".to_owned(),
                mongo.database.clone(),
            ));
        }
        if let KvConfig::Redis(redis) = &self.config.kv {
            vars.push(("STRATA_KV__KEY_PREFIX".to_owned(), redis.key_prefix.clone()));
        }
        vars
    }

    /// The data dir of a child process.
    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Removes everything the bench wrote. Failures are reported on
    /// standard error, naming what is left, and do not stop the others.
    pub async fn remove(self) {
        let pipelines = self.config.pipelines.clone();
        let Sandbox {
            engines,
            platform,
            dir,
            original,
            postgres,
            name,
            ..
        } = self;
        let _ = platform.close(std::time::Duration::from_secs(5)).await;
        if engines.documents.kind() == "mongodb"
            && let Err(e) = engines.documents.drop_database().await
        {
            eprintln!("bench: the MongoDB database {name} is left: {e}");
        }
        if engines.kv.kind() == "redis"
            && let Err(e) = engines.kv.delete_pattern("*").await
        {
            eprintln!("bench: Redis keys under the prefix {name}: are left: {e}");
        }
        for queue in super::workloads::queues(&name) {
            let _ = engines.queue.delete_queue(&queue).await;
        }
        // The pipelines' topology a `strata serve` child declared under the
        // sandbox's prefix.
        if engines.queue.kind() == "rabbitmq" {
            let mut specs = crate::analytics::scenario::Scenario::queues();
            specs.push(crate::pipelines::handlers::read_model_queue());
            let tiers = crate::pipelines::PipelinesConfig::tiers(&pipelines.retry);
            if let Err(e) = crate::pipelines::Topology::new(&pipelines)
                .delete(engines.queue.as_ref(), &specs, tiers, true)
                .await
            {
                eprintln!("bench: RabbitMQ queues or exchanges under {name} are left: {e}");
            }
        }
        drop_postgres(&original, postgres).await;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("bench: the directory {} is left: {e}", dir.display());
        }
    }
}

/// Drops the bench's PostgreSQL database, if it made one.
async fn drop_postgres(original: &Config, database: Option<String>) {
    let Some(database) = database else { return };
    let dropped = async {
        let admin = crate::engines::open_relational(original).await?;
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        let _ = admin.close().await;
        Ok::<_, Error>(())
    };
    if let Err(e) = dropped.await {
        eprintln!("bench: the PostgreSQL database {database} is left: {e}");
    }
}
