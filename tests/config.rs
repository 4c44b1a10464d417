//! Configuration loading (`strata::config`): every key can be set from a
//! `STRATA_*` variable, a bad value names its variable, and only
//! configuration variables are read as configuration.
//!
//! The environment is handed to the loader ([`Environment::vars`]), never
//! set on the process, so these tests cannot race each other or any other
//! test reading the environment.
//!
//! The keys are not listed by hand: they come from the serialized defaults
//! of [`Config`] and of every variant of each engine section, so a key
//! added later is walked at once.

use std::path::{Path, PathBuf};

use serde_json::Value;
use strata::ErrorKind;
use strata::config::{Config, DocumentsConfig, Environment, KvConfig, QueueConfig, Sources};

/// A config dir with no files (so only built-in defaults apply) and room
/// for reference files.
struct Scratch {
    dir: tempfile::TempDir,
    files: std::cell::Cell<u32>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
            files: std::cell::Cell::new(0),
        }
    }

    /// Loads with exactly `env`, plus `file` (TOML) as `--config` when given.
    fn load(&self, env: &[(String, String)], file: Option<&toml::Table>) -> strata::Result<Config> {
        let config_file = file.map(|table| {
            let n = self.files.get() + 1;
            self.files.set(n);
            let path = self.dir.path().join(format!("reference-{n}.toml"));
            std::fs::write(&path, toml::to_string(table).expect("render TOML")).expect("write");
            path
        });
        Config::load(&Sources {
            config_dir: Some(self.dir.path().join("config")),
            config_file,
            environment: Environment::vars(env.iter().cloned()),
            ..Default::default()
        })
    }
}

/// Every variant of each engine section, as (section, serialized default).
/// The matches stop compiling when a kind is added, until it is listed.
fn engine_variants() -> Vec<(&'static str, Value)> {
    let documents = [
        DocumentsConfig::Embedded(Default::default()),
        DocumentsConfig::Mongodb(Default::default()),
    ];
    for d in &documents {
        match d {
            DocumentsConfig::Embedded(_) | DocumentsConfig::Mongodb(_) => {}
        }
    }
    let kv = [
        KvConfig::Embedded(Default::default()),
        KvConfig::Redis(Default::default()),
    ];
    for k in &kv {
        match k {
            KvConfig::Embedded(_) | KvConfig::Redis(_) => {}
        }
    }
    let queue = [
        QueueConfig::Embedded(Default::default()),
        QueueConfig::Rabbitmq(Default::default()),
    ];
    for q in &queue {
        match q {
            QueueConfig::Embedded(_) | QueueConfig::Rabbitmq(_) => {}
        }
    }
    documents
        .iter()
        .map(|v| ("documents", json(v)))
        .chain(kv.iter().map(|v| ("kv", json(v))))
        .chain(queue.iter().map(|v| ("queue", json(v))))
        .collect()
}

/// A configuration value as JSON, where an absent option is `null` and so
/// still a key.
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("serialize")
}

/// One key to set: its path, its default (JSON; `null` for an absent
/// option), and the engine kind its section must have for it to exist.
#[derive(Debug, Clone)]
struct Key {
    path: Vec<String>,
    default: Value,
    kind: Option<String>,
}

impl Key {
    fn dotted(&self) -> String {
        self.path.join(".")
    }

    fn variable(&self) -> String {
        format!("STRATA_{}", self.path.join("__").to_uppercase())
    }

    /// The variable that selects this key's engine kind, if any.
    fn kind_variable(&self) -> Option<(String, String)> {
        self.kind.as_ref().map(|kind| {
            (
                format!("STRATA_{}__KIND", self.path[0].to_uppercase()),
                kind.clone(),
            )
        })
    }

    /// The TOML that sets this key to `value` (with its kind).
    fn table(&self, value: Option<toml::Value>) -> toml::Table {
        let mut table = toml::Table::new();
        let (section, rest) = self.path.split_first().expect("a path");
        if rest.is_empty() {
            if let Some(value) = value {
                table.insert(section.clone(), value);
            }
            return table;
        }
        let mut inner = toml::Table::new();
        if let Some(kind) = &self.kind {
            inner.insert("kind".into(), toml::Value::String(kind.clone()));
        }
        if let Some(value) = value {
            // Build the nested tables from the leaf up.
            let (leaf, parents) = rest.split_last().expect("a key");
            let mut node = toml::Table::new();
            node.insert(leaf.clone(), value);
            for parent in parents.iter().rev() {
                let mut up = toml::Table::new();
                up.insert(parent.clone(), toml::Value::Table(node));
                node = up;
            }
            inner.extend(node);
        }
        table.insert(section.clone(), toml::Value::Table(inner));
        table
    }
}

/// Every key of the configuration, each engine variant's keys under its
/// kind.
fn every_key() -> Vec<Key> {
    let defaults = json(&Config::default());
    let variants = engine_variants();
    let mut keys = Vec::new();
    for (section, value) in defaults.as_object().expect("a table") {
        match value {
            Value::Object(fields) if fields.contains_key("kind") => {
                let of_section: Vec<&Value> = variants
                    .iter()
                    .filter(|(s, _)| s == section)
                    .map(|(_, v)| v)
                    .collect();
                assert!(
                    of_section.iter().any(|v| v["kind"] == fields["kind"]),
                    "{section}: its default kind is not among the listed variants"
                );
                for variant in of_section {
                    let kind = variant["kind"].as_str().expect("kind").to_owned();
                    for (key, default) in variant.as_object().expect("a table") {
                        if key != "kind" {
                            keys.push(Key {
                                path: vec![section.clone(), key.clone()],
                                default: default.clone(),
                                kind: Some(kind.clone()),
                            });
                        }
                    }
                }
            }
            Value::Object(_) => walk(vec![section.clone()], value, &mut keys),
            other => keys.push(Key {
                path: vec![section.clone()],
                default: other.clone(),
                kind: None,
            }),
        }
    }
    keys
}

/// The leaves under `path` (a table without an engine kind), nested tables
/// included.
fn walk(path: Vec<String>, value: &Value, keys: &mut Vec<Key>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                let mut below = path.clone();
                below.push(key.clone());
                walk(below, field, keys);
            }
        }
        leaf => keys.push(Key {
            path,
            default: leaf.clone(),
            kind: None,
        }),
    }
}

/// Values to try for a key, as (variable text, TOML value): the first the
/// key accepts and that differs from its default is used. Text values look
/// numeric on purpose (`0042`): they must stay text, leading zeros and all.
fn candidates(default: &Value) -> Vec<(String, toml::Value)> {
    match default {
        Value::Bool(b) => vec![((!b).to_string(), toml::Value::Boolean(!b))],
        Value::Number(n) => match n.as_u64() {
            Some(whole) => {
                let next = whole + 1;
                vec![(
                    next.to_string(),
                    toml::Value::Integer(i64::try_from(next).expect("fits")),
                )]
            }
            None => {
                // Up, or (for a fraction that must stay below 1) down.
                let n = n.as_f64().expect("a number");
                [n + 0.5, n / 2.0]
                    .into_iter()
                    .map(|next| (next.to_string(), toml::Value::Float(next)))
                    .collect()
            }
        },
        other => {
            let mut texts: Vec<String> = vec![
                "0042".into(),
                "7s".into(),
                "45s".into(),
                "150ms".into(),
                "3 MiB".into(),
            ];
            if let Some(url) = other.as_str().and_then(|s| url::Url::parse(s).ok()) {
                let mut moved = url.clone();
                if moved.set_host(Some("db.example")).is_ok() {
                    texts.push(moved.to_string());
                }
            }
            texts.push("postgres://strata@db.example:5433/s0042".into());
            texts.push("sqlite://./s0042.db".into());
            // The other value of `queue.queue_type`.
            texts.push("quorum".into());
            // The other value of `log.format`.
            texts.push("json".into());
            texts
                .into_iter()
                .map(|t| (t.clone(), toml::Value::String(t)))
                .collect()
        }
    }
}

#[test]
fn every_key_can_be_set_from_the_environment() {
    let scratch = Scratch::new();
    let keys = every_key();
    assert!(keys.len() > 30, "the walk found too few keys: {keys:?}");
    // Absent options serialize as null, so they are walked too.
    for dotted in [
        "data_dir",
        "relational.password",
        "documents.path",
        "documents.password",
        "kv.password",
        "queue.password",
        "api.listen",
        "api.header_read_timeout",
        "sagas.retry.max_elapsed",
        "layers.breaker.failures",
    ] {
        assert!(
            keys.iter().any(|k| k.dotted() == dotted),
            "{dotted} missing"
        );
    }
    for key in &keys {
        let kind: Vec<(String, String)> = key.kind_variable().into_iter().collect();
        let base = scratch
            .load(&kind, Some(&key.table(None)))
            .unwrap_or_else(|e| panic!("{}: base: {e}", key.dotted()));
        let chosen = candidates(&key.default)
            .into_iter()
            .find_map(|(text, value)| {
                let reference = scratch.load(&[], Some(&key.table(Some(value)))).ok()?;
                (reference != base).then_some((text, reference))
            });
        let Some((text, reference)) = chosen else {
            panic!(
                "{}: no candidate value is accepted and differs from the default; add one to candidates()",
                key.dotted()
            );
        };
        let mut env = kind.clone();
        env.push((key.variable(), text.clone()));
        let loaded = scratch
            .load(&env, None)
            .unwrap_or_else(|e| panic!("{}={text}: {e}", key.variable()));
        assert_eq!(
            loaded,
            reference,
            "{}={text} must set {} as the file does",
            key.variable(),
            key.dotted()
        );
        assert_ne!(loaded, base, "{}={text} changed nothing", key.variable());
    }
}

#[test]
fn a_bad_value_in_any_key_names_its_variable() {
    let scratch = Scratch::new();
    for key in every_key() {
        let kind: Vec<(String, String)> = key.kind_variable().into_iter().collect();
        let mut bad = vec![(format!("{}__NESTED", key.variable()), "1".to_owned())];
        // `banana` where the key refuses it (numbers, durations, sizes,
        // booleans, URLs); text keys accept it.
        let banana = toml::Value::String("banana".into());
        if scratch.load(&[], Some(&key.table(Some(banana)))).is_err() {
            bad.push((key.variable(), "banana".to_owned()));
        }
        for (variable, value) in bad {
            let mut env = kind.clone();
            env.push((variable.clone(), value.clone()));
            let err = scratch
                .load(&env, None)
                .expect_err(&format!("{variable}={value} must be refused"));
            assert_eq!(err.kind(), ErrorKind::Config, "{variable}: {err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("environment variable {variable}")),
                "{variable}={value}: the error must name the variable: {text}"
            );
            assert!(
                text.contains(&key.dotted()),
                "{variable}={value}: the error must name the key {}: {text}",
                key.dotted()
            );
        }
    }
}

#[test]
fn the_api_section_is_read_from_the_environment() {
    let scratch = Scratch::new();
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let config = scratch
        .load(
            &env(&[
                ("STRATA_API__LISTEN", "0.0.0.0:9"),
                ("STRATA_API__HEADER_READ_TIMEOUT", "3s"),
                ("STRATA_API__MAX_CONNECTIONS", "7"),
            ]),
            None,
        )
        .expect("load");
    assert_eq!(config.api.listen, "0.0.0.0:9");
    assert_eq!(config.api.header_read_timeout.as_secs(), 3);
    assert_eq!(config.api.max_connections, 7);
    let err = scratch
        .load(&env(&[("STRATA_API__REQUEST_TIMEOUT", "banana")]), None)
        .expect_err("banana is no duration");
    assert!(
        err.to_string().contains("STRATA_API__REQUEST_TIMEOUT"),
        "{err}"
    );
    for (variable, value) in [
        ("STRATA_API__MAX_CONNECTIONS", "0"),
        ("STRATA_API__HEADER_READ_TIMEOUT", "0s"),
    ] {
        let err = scratch
            .load(&env(&[(variable, value)]), None)
            .expect_err("zero is refused");
        assert!(err.to_string().contains(variable), "{err}");
    }
}

/// An unknown key in any section is an error naming the variable; an
/// unknown section in the `STRATA_X__Y` form is too.
#[test]
fn unknown_keys_and_sections_are_errors_naming_the_variable() {
    let scratch = Scratch::new();
    let defaults = json(&Config::default());
    let mut variables: Vec<String> = defaults
        .as_object()
        .expect("a table")
        .keys()
        .map(|section| format!("STRATA_{}__NO_SUCH_KEY", section.to_uppercase()))
        .collect();
    variables.push("STRATA_KVV__URL".into());
    for variable in variables {
        let err = scratch
            .load(&[(variable.clone(), "1".into())], None)
            .expect_err(&format!("{variable} must be refused"));
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(err.to_string().contains(&variable), "{variable}: {err}");
    }
}

/// Variables that are not configuration keys are left alone, whatever
/// they hold.
#[test]
fn other_strata_variables_are_not_configuration() {
    let scratch = Scratch::new();
    let plain = scratch.load(&[], None).expect("defaults");
    let others: Vec<(String, String)> = [
        "STRATA_PROFILE",
        "STRATA_CONFIG_DIR",
        "STRATA_TEST_FULL",
        "STRATA_LOG",
        "STRATA_SERVICES_DIR",
    ]
    .iter()
    .map(|k| (k.to_string(), "{not: [valid".to_owned()))
    .chain([("PATH".to_owned(), "/usr/bin".to_owned())])
    .collect();
    assert_eq!(scratch.load(&others, None).expect("ignored"), plain);
}

/// A section that names no kind is embedded, so one variable is enough to
/// tune an embedded engine with no config file at all.
#[test]
fn a_section_without_a_kind_is_embedded() {
    let scratch = Scratch::new();
    let config = scratch
        .load(&[("STRATA_KV__MAX_MEMORY".into(), "64 MiB".into())], None)
        .expect("load");
    match config.kv {
        KvConfig::Embedded(e) => assert_eq!(e.max_memory, bytesize::ByteSize::mib(64)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_repository_profiles_load() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for profile in [None, Some("full")] {
        let config = Config::load(&Sources {
            config_dir: Some(repo.clone()),
            profile: profile.map(String::from),
            environment: Environment::none(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{profile:?}: {e}"));
        assert_eq!(config.data_dir, PathBuf::from("./data"));
    }
}

#[test]
fn cache_and_rate_limit_settings_that_make_no_sense_are_refused_by_key() {
    let scratch = Scratch::new();
    let var = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    for (env, key) in [
        (vec![var("STRATA_CACHE__JITTER", "2")], "cache.jitter"),
        (
            vec![
                var("STRATA_CACHE__SOFT_TIMEOUT", "10s"),
                var("STRATA_CACHE__HARD_TIMEOUT", "1s"),
            ],
            "cache.soft_timeout",
        ),
        (
            vec![var("STRATA_CACHE__EAGER_REFRESH", "1")],
            "cache.eager_refresh",
        ),
        (
            vec![
                var("STRATA_SERVING__RATE_LIMITS__READ__REQUESTS", "0"),
                var("STRATA_SERVING__RATE_LIMITS__READ__PER", "1s"),
            ],
            "serving.rate_limits.read",
        ),
    ] {
        let err = scratch.load(&env, None).expect_err(key);
        assert_eq!(err.kind(), ErrorKind::Config, "{key}: {err}");
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    let ok = scratch
        .load(
            &[
                var("STRATA_SERVING__RATE_LIMITS__PREDICT__REQUESTS", "100"),
                var("STRATA_SERVING__RATE_LIMITS__PREDICT__PER", "1s"),
            ],
            None,
        )
        .expect("a rate limit from the environment");
    let limit = ok.serving.rate_limits.predict.expect("the predict limit");
    assert_eq!(
        (limit.requests, limit.per),
        (100, std::time::Duration::from_secs(1))
    );
}
