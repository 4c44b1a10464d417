//! Where each kind of data lives, and why: the table `strata demo` closes
//! with, and the routing table of `strata explain`, from one list.
//!
//! [`ROUTES`] names an engine *kind* for each kind of data; which backend
//! that kind is (SQLite or PostgreSQL, ...) and where it is come from the
//! configuration ([`placement`]), so the same list holds on every profile.

use crate::config::{Config, DocumentsConfig, KvConfig, QueueConfig, redact_url};

/// The four kinds of engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    /// SQLite or PostgreSQL, through sea-orm.
    Relational,
    /// The embedded document store or MongoDB.
    Documents,
    /// The embedded key-value store or Redis.
    Kv,
    /// The embedded broker or RabbitMQ.
    Queue,
}

impl EngineKind {
    /// Every kind, in the order strata lists engines.
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Relational,
        EngineKind::Documents,
        EngineKind::Kv,
        EngineKind::Queue,
    ];

    /// `relational`, `documents`, `kv`, `queue`: the names of the
    /// configuration's sections.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Relational => "relational",
            EngineKind::Documents => "documents",
            EngineKind::Kv => "kv",
            EngineKind::Queue => "queue",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one kind of data lives, and why there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The data, for people.
    pub data: &'static str,
    /// The engine that holds it.
    pub engine: EngineKind,
    /// Why that engine.
    pub why: &'static str,
}

/// How many of [`ROUTES`], from the first, `strata demo` prints: its
/// output is snapshot-tested, so rows added for `strata explain` come
/// after these.
pub const DEMO_ROUTES: usize = 7;

/// Every kind of data strata keeps or moves, by engine.
pub const ROUTES: &[Route] = &[
    Route {
        data: "datasets, training runs, artifacts, deployments, aliases and their history",
        engine: EngineKind::Relational,
        why: "relations with constraints (foreign keys, unique model_id, status check), \
              JOINs, GROUP BY, window functions, transactions, keyset pages",
    },
    Route {
        data: "model configs, experiments",
        engine: EngineKind::Documents,
        why: "each framework's config has its own shape; new metrics arrive with $set, \
              no migration; aggregation pipelines",
    },
    Route {
        data: "migrated runs, migration checkpoints, dual-write failures",
        engine: EngineKind::Documents,
        why: "run metadata gains free-form fields next to the configs; upserts by source id",
    },
    Route {
        data: "registration counters, per-model counters",
        engine: EngineKind::Kv,
        why: "atomic increments in memory, read on every model view; counts, not records",
    },
    Route {
        data: "online features, cached predictions and rows (L2), leaderboard, rate-limit state, locks",
        engine: EngineKind::Kv,
        why: "sub-millisecond reads by key, one round trip for a batch, atomic scripts \
              (newer-only writes, best score, GCRA, lock with fencing token); rebuilt or \
              refilled when lost",
    },
    Route {
        data: "feature views",
        engine: EngineKind::Documents,
        why: "declarations read through the cache, changed rarely, invalidated everywhere",
    },
    Route {
        data: "fencing tokens seen per resource",
        engine: EngineKind::Relational,
        why: "checked in the same transaction as the write they guard",
    },
    // Not printed by `strata demo` (see DEMO_ROUTES).
    Route {
        data: "sagas, outbox events",
        engine: EngineKind::Relational,
        why: "recorded in the same transaction as the change they describe: no event \
              for a rolled-back write, none lost for a committed one",
    },
    Route {
        data: "customers, addresses, cities, countries, orders",
        engine: EngineKind::Relational,
        why: "normalised relations joined and grouped by the analytics, the same answers \
              on SQLite and PostgreSQL",
    },
    Route {
        data: "raw events (views, clicks, purchases)",
        engine: EngineKind::Documents,
        why: "schema-loose and append-mostly; a TTL index deletes them after \
              analytics.event_retention",
    },
    Route {
        data: "user profiles, the analytics model, the models' read model, alerts, dead letters",
        engine: EngineKind::Documents,
        why: "one document per thing, read whole; the read model is rebuilt from SQL at will",
    },
    Route {
        data: "per-day event counters, top products, processed message ids",
        engine: EngineKind::Kv,
        why: "an increment or a sorted-set update per event; message ids expire after \
              pipelines.dedupe_window",
    },
    Route {
        data: "tasks and events between the API, workers and pipelines",
        engine: EngineKind::Queue,
        why: "acknowledged after the handler, retried with backoff in delay queues, \
              dead-lettered when they keep failing; workers share a queue",
    },
    Route {
        data: "API tokens (their SHA-256, scope, revocation)",
        engine: EngineKind::Relational,
        why: "checked on every request of a guarded API: a unique index on the hash, \
              revocation that every instance sees, in the same store as what they guard",
    },
];

/// The rows `strata demo` closes with.
pub fn demo_routes() -> &'static [Route] {
    &ROUTES[..DEMO_ROUTES]
}

/// Where the configuration puts one engine kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The engine kind.
    pub engine: EngineKind,
    /// Its backend: `sqlite`, `postgres`, `embedded`, `mongodb`, `redis`,
    /// `rabbitmq`.
    pub backend: &'static str,
    /// Where it is, without credentials: `127.0.0.1:55432/strata`,
    /// `./data/strata.db`, `in-process, max 256.0 MiB`.
    pub target: String,
}

impl std::fmt::Display for Placement {
    /// `postgres 127.0.0.1:55432/strata`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.backend, self.target)
    }
}

/// Where `config` puts `engine`: its backend and a target that holds no
/// credential (a URL shows its host, port and path only; one that does
/// not parse as such is shown redacted).
pub fn placement(config: &Config, engine: EngineKind) -> Placement {
    let (backend, target) = match engine {
        EngineKind::Relational if config.relational.is_sqlite() => {
            let path = match &config.relational.url {
                Some(url) => sqlite_path(url),
                None => config.data_dir.join("strata.db").display().to_string(),
            };
            ("sqlite", path)
        }
        EngineKind::Relational => (
            "postgres",
            config
                .relational
                .url
                .as_deref()
                .map(host_and_path)
                .unwrap_or_default(),
        ),
        EngineKind::Documents => match &config.documents {
            DocumentsConfig::Embedded(_) => {
                ("embedded", config.documents_dir().display().to_string())
            }
            DocumentsConfig::Mongodb(m) => (
                "mongodb",
                format!("{} (database {})", host_and_path(&m.url), m.database),
            ),
        },
        EngineKind::Kv => match &config.kv {
            KvConfig::Embedded(e) => ("embedded", format!("in-process, max {}", e.max_memory)),
            KvConfig::Redis(r) => (
                "redis",
                format!("{} (key prefix {})", host_and_path(&r.url), r.key_prefix),
            ),
        },
        EngineKind::Queue => match &config.queue {
            QueueConfig::Embedded(_) => ("embedded", "in-process".to_owned()),
            QueueConfig::Rabbitmq(r) => ("rabbitmq", host_and_path(&r.url)),
        },
    };
    Placement {
        engine,
        backend,
        target,
    }
}

/// The file of a `sqlite:` URL (no query, which may carry options).
fn sqlite_path(url: &str) -> String {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    redact_url(path)
}

/// `HOST:PORT/PATH` of a URL: no scheme, user, password or query. A URL
/// without a host (a Unix socket) is shown redacted whole.
fn host_and_path(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => match url.host_str() {
            Some(host) if !host.is_empty() => {
                let mut out = host.to_owned();
                if let Some(port) = url.port() {
                    out.push_str(&format!(":{port}"));
                }
                let path = url.path();
                if path != "/" {
                    out.push_str(path);
                }
                out
            }
            _ => redact_url(raw),
        },
        Err(_) => redact_url(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MongoConfig, RabbitConfig, RedisConfig};

    #[test]
    fn the_default_configuration_is_embedded_everywhere() {
        let config = Config::default();
        let backends: Vec<_> = EngineKind::ALL
            .iter()
            .map(|e| placement(&config, *e).backend)
            .collect();
        assert_eq!(backends, ["sqlite", "embedded", "embedded", "embedded"]);
        assert_eq!(
            placement(&config, EngineKind::Relational).target,
            std::path::Path::new("./data")
                .join("strata.db")
                .display()
                .to_string()
        );
        assert_eq!(
            placement(&config, EngineKind::Queue).to_string(),
            "embedded in-process"
        );
    }

    #[test]
    fn targets_of_the_real_services_carry_no_credential() {
        let config = Config {
            relational: crate::config::RelationalConfig {
                url: Some("postgres://strata:hunter2@127.0.0.1:55432/strata?password=x".into()),
                ..Default::default()
            },
            documents: DocumentsConfig::Mongodb(MongoConfig {
                url: "mongodb://strata:hunter2@127.0.0.1:57017/?authSource=admin".into(),
                ..Default::default()
            }),
            kv: KvConfig::Redis(RedisConfig {
                url: "redis://default:hunter2@127.0.0.1:56379/0".into(),
                ..Default::default()
            }),
            queue: QueueConfig::Rabbitmq(RabbitConfig {
                url: "amqp://strata:hunter2@127.0.0.1:55672/strata".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let shown: Vec<String> = EngineKind::ALL
            .iter()
            .map(|e| placement(&config, *e).to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "postgres 127.0.0.1:55432/strata",
                "mongodb 127.0.0.1:57017 (database strata)",
                "redis 127.0.0.1:56379/0 (key prefix strata:)",
                "rabbitmq 127.0.0.1:55672/strata",
            ]
        );
        for text in &shown {
            assert!(
                !text.contains("hunter2") && !text.contains("password"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_demo_rows_come_first_and_every_engine_has_a_route() {
        assert_eq!(demo_routes().len(), DEMO_ROUTES);
        for engine in EngineKind::ALL {
            assert!(ROUTES.iter().any(|r| r.engine == engine), "{engine}");
        }
    }
}
