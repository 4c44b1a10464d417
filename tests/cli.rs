//! The `strata` command as a user meets it: layered configuration, exit
//! statuses, error messages and the inspection commands. Each test runs the
//! real binary in its own data and config directories with a clean
//! `STRATA_*` environment, so tests cannot see each other's variables.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A scratch world for one test: a config dir (with the repository's
/// default.toml) and a data dir.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config")).expect("config dir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(
            repo.join("config/default.toml"),
            dir.path().join("config/default.toml"),
        )
        .expect("copy default.toml");
        World { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// `strata ARGS` with `env`, run from the world's directory.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        for (key, _) in std::env::vars() {
            if key.starts_with("STRATA_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(self.dir.path())
            .args([
                "--data-dir",
                self.path("data").to_str().expect("utf-8 path"),
            ])
            .args(args)
            .envs(env.iter().copied());
        command.output().expect("run strata")
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

#[test]
fn defaults_are_embedded_everything() {
    let world = World::new();
    let out = world.run(&["--json", "config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = json(&out);
    assert_eq!(config["documents"]["kind"], "embedded");
    assert_eq!(config["kv"]["kind"], "embedded");
    assert_eq!(config["queue"]["kind"], "embedded");
    assert!(config["relational"].get("url").is_none());
}

#[test]
fn without_a_config_dir_the_built_in_defaults_apply() {
    let world = World::new();
    std::fs::remove_file(world.path("config/default.toml")).expect("remove default.toml");
    let out = world.run(&["--json", "config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = json(&out);
    assert_eq!(config["kv"]["kind"], "embedded");
    assert_eq!(config["relational"]["max_connections"], 10);
    let out = world.run(&["doctor"], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn layers_apply_in_order_profile_env_file_flag() {
    let world = World::new();
    world.write(
        "config/lab.toml",
        "[relational]\nmax_connections = 20\nmin_connections = 2\n[kv]\nkind = \"embedded\"\nmax_memory = \"64 MiB\"\n",
    );
    let file = world.write("extra.toml", "[relational]\nmin_connections = 4\n");

    let profile_only = json(&world.run(&["--json", "--profile", "lab", "config"], &[]));
    assert_eq!(profile_only["relational"]["max_connections"], 20);
    assert_eq!(profile_only["relational"]["min_connections"], 2);

    let env = [
        ("STRATA_PROFILE", "lab"),
        ("STRATA_RELATIONAL__MAX_CONNECTIONS", "30"),
        ("STRATA_RELATIONAL__MIN_CONNECTIONS", "3"),
    ];
    let with_env = json(&world.run(&["--json", "config"], &env));
    assert_eq!(
        with_env["relational"]["max_connections"], 30,
        "env beats profile"
    );
    assert_eq!(with_env["relational"]["min_connections"], 3);

    let file_arg = file.to_str().expect("utf-8 path");
    let with_file = json(&world.run(&["--json", "--config", file_arg, "config"], &env));
    assert_eq!(
        with_file["relational"]["min_connections"], 4,
        "--config beats env"
    );
    assert_eq!(with_file["relational"]["max_connections"], 30);
    let data_dir = with_file["data_dir"].as_str().expect("data_dir");
    assert!(
        data_dir.ends_with("data"),
        "--data-dir beats everything: {data_dir}"
    );
}

#[test]
fn unknown_kind_names_key_and_variable_and_exits_2() {
    let world = World::new();
    let out = world.run(&["config"], &[("STRATA_KV__KIND", "memcached")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("kv.kind"), "{err}");
    assert!(err.contains("memcached"), "{err}");
    assert!(err.contains("STRATA_KV__KIND"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wrong_type_in_a_file_names_the_file() {
    let world = World::new();
    let file = world.write("bad.toml", "[relational]\nmax_connections = \"many\"\n");
    let out = world.run(
        &["--config", file.to_str().expect("utf-8 path"), "config"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("relational.max_connections"), "{err}");
    assert!(err.contains("bad.toml"), "{err}");
}

#[test]
fn malformed_url_unknown_key_missing_file_and_profile_exit_2() {
    let world = World::new();
    // (arguments, environment, what the one-line error must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec!["config"],
            vec![("STRATA_RELATIONAL__URL", "mysql://x@y/z")],
            "relational.url",
        ),
        (
            vec!["config"],
            vec![("STRATA_RELATIONAL__URL", "postgres://[::1")],
            "relational.url",
        ),
        (
            vec!["config"],
            vec![("STRATA_KV__MAX_MEMORYY", "1")],
            "kv.max_memoryy",
        ),
        (vec!["--config", "nope.toml", "config"], vec![], "nope.toml"),
        (vec!["--profile", "nope", "config"], vec![], "nope"),
    ];
    for (args, env, needle) in cases {
        let out = world.run(&args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?} {env:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn config_redacts_every_secret() {
    let world = World::new();
    let env = [
        (
            "STRATA_RELATIONAL__URL",
            "postgres://strata:in-url-pw@127.0.0.1/strata",
        ),
        ("STRATA_RELATIONAL__PASSWORD", "key-pw"),
        ("STRATA_KV__KIND", "redis"),
        ("STRATA_KV__URL", "redis://default:redis-pw@127.0.0.1:6379"),
    ];
    for args in [vec!["config"], vec!["--json", "config"]] {
        let out = world.run(&args, &env);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        for secret in ["in-url-pw", "key-pw", "redis-pw"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("redacted"), "{text}");
    }
}

/// Credentials in any URL form stay out of `strata config`, `--json
/// config`, `doctor` and every error: query-string passwords in any case,
/// a `#` that cuts a password, several MongoDB hosts.
#[test]
fn credentials_in_any_url_form_never_print() {
    let world = World::new();
    let quick = [
        ("STRATA_RELATIONAL__CONNECT_TIMEOUT", "1s"),
        ("STRATA_RELATIONAL__ACQUIRE_TIMEOUT", "1s"),
    ];
    // (environment, secrets that must not appear)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            vec![(
                "STRATA_RELATIONAL__URL",
                "postgres://strata@127.0.0.1:1/strata?password=qs-secret-1&sslmode=disable",
            )],
            &["qs-secret-1"],
        ),
        (
            vec![(
                "STRATA_RELATIONAL__URL",
                "postgres://strata@127.0.0.1:1/strata?SSLPassword=qs-secret-2",
            )],
            &["qs-secret-2"],
        ),
        (
            vec![(
                "STRATA_RELATIONAL__URL",
                "postgres://strata:hash#secret-3@127.0.0.1:1/strata",
            )],
            &["hash#secret-3", "secret-3"],
        ),
        (
            vec![
                ("STRATA_DOCUMENTS__KIND", "mongodb"),
                (
                    "STRATA_DOCUMENTS__URL",
                    "mongodb://u:mongo-secret-4@127.0.0.1:1,127.0.0.1:2/?authSource=admin",
                ),
                ("STRATA_DOCUMENTS__CONNECT_TIMEOUT", "1s"),
                ("STRATA_DOCUMENTS__SERVER_SELECTION_TIMEOUT", "1s"),
            ],
            &["mongo-secret-4"],
        ),
        (
            vec![
                ("STRATA_KV__KIND", "redis"),
                (
                    "STRATA_KV__URL",
                    "redis://default:redis?secret-5@127.0.0.1:1/0",
                ),
            ],
            &["redis?secret-5", "secret-5"],
        ),
    ];
    for (env, secrets) in cases {
        let env: Vec<(&str, &str)> = env.into_iter().chain(quick).collect();
        for args in [
            vec!["config"],
            vec!["--json", "config"],
            vec!["--json", "doctor"],
            vec!["doctor"],
        ] {
            let out = world.run(&args, &env);
            let shown = format!("{}{}", stdout(&out), stderr(&out));
            assert!(!shown.contains("panicked"), "{args:?}: {shown}");
            for secret in secrets {
                assert!(
                    !shown.contains(secret),
                    "{args:?} {env:?}: {secret} leaked: {shown}"
                );
            }
        }
    }
}

#[test]
fn help_lists_every_command() {
    let world = World::new();
    let out = world.run(&["--help"], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    for command in [
        "demo", "doctor", "config", "docs", "kv", "sql", "queue", "seed", "serve", "migrate",
        "token",
    ] {
        assert!(
            text.contains(command),
            "{command} missing from --help: {text}"
        );
    }
}

/// Where `strata sql` runs: a world, the arguments and variables that
/// point it at its database, and that database (given its schema by
/// `strata seed`: `strata sql` applies none).
struct SqlTarget {
    world: World,
    args: Vec<&'static str>,
    env: Vec<(String, String)>,
    postgres: Option<common::TestDb>,
}

impl SqlTarget {
    fn sqlite() -> SqlTarget {
        SqlTarget::prepared(World::new(), vec![], vec![], None)
    }

    /// A fresh PostgreSQL database of its own, with `STRATA_TEST_FULL=1`.
    fn postgres() -> Option<SqlTarget> {
        let world = full_world()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let db = runtime.block_on(common::TestDb::postgres("cli"))?;
        let url = db.config.relational.url.clone().expect("a URL");
        Some(SqlTarget::prepared(
            world,
            vec!["--profile", "full"],
            vec![("STRATA_RELATIONAL__URL".to_owned(), url)],
            Some(db),
        ))
    }

    fn prepared(
        world: World,
        args: Vec<&'static str>,
        env: Vec<(String, String)>,
        postgres: Option<common::TestDb>,
    ) -> SqlTarget {
        let target = SqlTarget {
            world,
            args,
            env,
            postgres,
        };
        let out = target.run(&["seed"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        target
    }

    fn run(&self, args: &[&str]) -> Output {
        let args: Vec<&str> = self
            .args
            .iter()
            .copied()
            .chain(args.iter().copied())
            .collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.world.run(&args, &env)
    }

    fn rows(&self, query: &str) -> Value {
        let out = self.run(&["--json", "sql", query]);
        assert!(out.status.success(), "{query}: {}", stderr(&out));
        json(&out)
    }
}

/// What `strata sql` promises, on whichever database the target has: one
/// statement as the database parses it, nothing written, the time and row
/// bounds, the exit statuses.
fn sql_contract(target: &SqlTarget) {
    let is_postgres = target.postgres.is_some();
    if is_postgres {
        let name = target.rows("SELECT current_database() AS name");
        let name = name[0]["name"].as_str().expect("a name");
        assert!(
            name.starts_with("t_"),
            "the test's own database, not {name}"
        );
    }
    let rows = target.rows("SELECT version FROM seaql_migrations");
    assert!(!rows.as_array().expect("rows").is_empty(), "migrated");

    // A `;` inside a string is not a second statement; a trailing one is fine.
    assert_eq!(
        target.rows("SELECT ';' AS s"),
        serde_json::json!([{"s": ";"}])
    );
    assert_eq!(
        target.rows("SELECT 1 AS one;"),
        serde_json::json!([{"one": 1}])
    );
    for two in ["SELECT 1; SELECT 2", "SELECT ';'; SELECT 1"] {
        let out = target.run(&["sql", two]);
        assert_eq!(out.status.code(), Some(2), "{two}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("single statement"),
            "{}",
            stderr(&out)
        );
        assert_eq!(stderr(&out).trim().lines().count(), 1, "{}", stderr(&out));
    }

    // Nothing can be written, whatever the statement says.
    let mut writes = vec![
        "CREATE TABLE sneaky (a INTEGER)",
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('sneaky', 1)",
        "DELETE FROM seaql_migrations",
    ];
    if !is_postgres {
        writes.extend(["PRAGMA user_version = 5", "PRAGMA journal_mode = DELETE"]);
    }
    for write in writes {
        let out = target.run(&["sql", write]);
        assert_eq!(out.status.code(), Some(2), "{write}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("read-only"),
            "{write}: {}",
            stderr(&out)
        );
    }
    let tables = if is_postgres {
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'sneaky'"
    } else {
        "SELECT count(*) AS n FROM sqlite_master WHERE name = 'sneaky'"
    };
    assert_eq!(target.rows(tables), serde_json::json!([{"n": 0}]));
    let versions =
        target.rows("SELECT count(*) AS n FROM seaql_migrations WHERE version = 'sneaky'");
    assert_eq!(versions, serde_json::json!([{"n": 0}]));
    let all = target.rows("SELECT count(*) AS n FROM seaql_migrations");
    assert!(
        all[0]["n"].as_i64().expect("a count") > 0,
        "nothing deleted"
    );
    if !is_postgres {
        assert_eq!(
            target.rows("PRAGMA user_version"),
            serde_json::json!([{"user_version": 0}])
        );
    }

    // The time bound stops a runaway query promptly and says so.
    let started = std::time::Instant::now();
    let out = target.run(&[
        "sql",
        "--timeout",
        "500ms",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    ]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--timeout 500ms"), "{}", stderr(&out));

    // The row bound stops the fetch of an endless result and says so.
    let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
    let out = target.run(&["--json", "sql", "--max-rows", "5", endless]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out),
        serde_json::json!([{"x": 1}, {"x": 2}, {"x": 3}, {"x": 4}, {"x": 5}])
    );
    assert!(stderr(&out).contains("--max-rows 5"), "{}", stderr(&out));
    let out = target.run(&["sql", "--max-rows", "2", endless]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("output cut at --max-rows 2"),
        "{}",
        stdout(&out)
    );

    // Bad SQL is the user's: exit 2, the database's own words.
    let out = target.run(&["sql", "SELEC 1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("syntax error"), "{}", stderr(&out));
    let out = target.run(&["sql", "--timeout", "soon", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn sql_contract_on_sqlite() {
    let target = SqlTarget::sqlite();
    sql_contract(&target);
    // An ATTACH of a new file neither succeeds nor creates it.
    let file = target.world.path("sneaky.db");
    let attach = format!("ATTACH DATABASE '{}' AS sneaky", file.display());
    let out = target.run(&["sql", &attach]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!file.exists(), "ATTACH created {}", file.display());
}

#[test]
fn sql_contract_on_postgres() {
    let Some(target) = SqlTarget::postgres() else {
        return;
    };
    sql_contract(&target);
}

/// `strata sql` never creates what it reads: a data dir that does not
/// exist, or one without a database, is reported and left as it was.
#[test]
fn sql_on_a_missing_data_dir_says_so_and_creates_nothing() {
    let world = World::new();
    let out = world.run(&["sql", "SELECT 1"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&world.path("data").display().to_string()));
    assert!(!world.path("data").exists(), "the data dir was created");

    std::fs::create_dir(world.path("data")).expect("data dir");
    let out = world.run(&["sql", "SELECT 1"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("no database"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(world.path("data"))
        .expect("read data dir")
        .collect();
    assert!(left.is_empty(), "created {left:?}");
}

#[test]
fn sql_keeps_every_value_type() {
    let target = SqlTarget::sqlite();
    assert_eq!(
        target.rows("SELECT 1 AS i, 2.5 AS f, 'x' AS s, NULL AS n, x'00ff' AS b"),
        serde_json::json!([{"i": 1, "f": 2.5, "s": "x", "n": null, "b": {"$binary": {"base64": "AP8=", "subType": "00"}}}])
    );
}

/// The main job as a newcomer runs it: every section, exit 0, twice in a
/// row on the same data dir; `--json` is refused with exit 2.
#[test]
fn demo_prints_every_section_and_runs_again() {
    let world = World::new();
    for _ in 0..2 {
        let out = world.run(&["demo"], &[]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let text = stdout(&out);
        for title in [
            "1. Sample data",
            "2. Registry: relational queries",
            "3. Flexible documents",
            "4. One model across engines",
            "5. Saga compensation",
            "6. Migration",
            "7. Run search",
            "Where the data lives",
        ] {
            assert!(text.contains(title), "`{title}` missing: {text}");
        }
    }
    let out = world.run(&["--json", "demo"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--json"), "{}", stderr(&out));
}

/// `strata seed` adds the scenario once, `--runs N` synthetic runs once, and
/// refuses an impossible count with exit 2 before connecting.
#[test]
fn seed_is_idempotent_and_adds_synthetic_runs() {
    let world = World::new();
    let out = world.run(&["--json", "seed", "--runs", "1500"], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = json(&out);
    assert_eq!(report["synthetic_runs"], 1500);
    let added: u64 = report["scenario"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["added"].as_u64().expect("added"))
        .sum();
    assert_eq!(added, 13, "{report}");

    let out = world.run(&["--json", "seed", "--runs", "1500"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = json(&out);
    assert!(
        again["scenario"]["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .all(|l| l["added"] == 0),
        "{again}"
    );
    let out = world.run(
        &["--json", "sql", "SELECT COUNT(*) AS n FROM training_runs"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)[0]["n"], 1503, "{}", stdout(&out));

    let out = world.run(&["seed", "--runs", "99999999"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--runs"), "{}", stderr(&out));
}

#[test]
fn doctor_reports_four_healthy_embedded_engines() {
    let world = World::new();
    let out = world.run(&["migrate", "schema"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = world.run(&["--json", "doctor"], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let rows = json(&out);
    let rows = rows.as_array().expect("rows");
    let engines: Vec<&str> = rows.iter().filter_map(|r| r["engine"].as_str()).collect();
    assert_eq!(engines, ["relational", "documents", "kv", "queue"]);
    for row in rows {
        assert_eq!(row["status"], "healthy", "{row}");
        assert!(row["rtt_ms"].as_f64().is_some(), "{row}");
    }
    assert_eq!(rows[0]["kind"], "sqlite");
    assert_eq!(rows[1]["kind"], "embedded");
}

#[test]
fn doctor_writes_nothing_and_reports_the_schema() {
    let world = World::new();
    let out = world.run(&["--json", "doctor"], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        !world.path("data").exists(),
        "doctor created the data directory"
    );
    let rows = json(&out);
    assert_eq!(rows[0]["schema"]["status"], "missing", "{}", rows[0]);
    assert_eq!(
        rows[0]["schema"]["pending"].as_array().map(Vec::len),
        Some(strata::migration::known().len())
    );
    assert!(rows[0]["rtt_ms"].is_null(), "no round trip was made");
    assert!(
        rows[1]["note"]
            .as_str()
            .is_some_and(|n| n.contains("no store yet")),
        "{}",
        rows[1]
    );

    let out = world.run(&["seed", "--runs", "5"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let files = |dir: &str| -> Vec<(String, u64, std::time::SystemTime)> {
        // SQLite's shared-memory index and write-ahead log appear beside
        // a WAL database whenever a connection opens it, even a read-only
        // one; the database file itself must not change.
        let mut files: Vec<(String, u64, std::time::SystemTime)> =
            std::fs::read_dir(world.path(dir))
                .expect("a directory")
                .map(|e| e.expect("an entry"))
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    !name.ends_with("-shm") && !name.ends_with("-wal")
                })
                .map(|e| {
                    let meta = e.metadata().expect("metadata");
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        meta.len(),
                        meta.modified().expect("mtime"),
                    )
                })
                .collect();
        files.sort();
        files
    };
    let before = (files("data"), files("data/documents"));
    let out = world.run(&["--json", "doctor"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = json(&out);
    assert_eq!(rows[0]["schema"]["status"], "current", "{}", rows[0]);
    assert_eq!(rows[0]["schema"]["pending"], serde_json::json!([]));
    assert!(rows[1]["note"].is_null(), "{}", rows[1]);
    assert_eq!(
        (files("data"), files("data/documents")),
        before,
        "doctor changed the data directory"
    );
}

#[test]
fn full_profile_doctor_leaves_an_empty_database_empty() {
    let Some(world) = full_world() else { return };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let Some(db) = runtime.block_on(common::TestDb::postgres("cli")) else {
        return;
    };
    let url = db.config.relational.url.clone().expect("a URL");
    let env = [("STRATA_RELATIONAL__URL", url.as_str())];
    let out = world.run(&["--profile", "full", "--json", "doctor"], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let rows = json(&out);
    assert_eq!(rows[0]["status"], "healthy", "{}", rows[0]);
    assert_eq!(rows[0]["schema"]["status"], "missing", "{}", rows[0]);
    let tables =
        "SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'";
    let out = world.run(&["--profile", "full", "--json", "sql", tables], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out),
        serde_json::json!([{"n": 0}]),
        "doctor created tables"
    );

    let out = world.run(&["--profile", "full", "--json", "migrate", "schema"], &env);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let applied: Vec<String> =
        serde_json::from_value(json(&out)["applied"].clone()).expect("names");
    assert_eq!(applied, strata::migration::known());
    let out = world.run(&["--profile", "full", "--json", "doctor"], &env);
    assert_eq!(json(&out)[0]["schema"]["status"], "current");
}

#[test]
fn doctor_reports_an_unreachable_engine_and_exits_non_zero_without_hanging() {
    let world = World::new();
    let started = std::time::Instant::now();
    let out = world.run(
        &["--json", "doctor"],
        &[
            (
                "STRATA_RELATIONAL__URL",
                "postgres://strata:hunter2@127.0.0.1:1/strata",
            ),
            ("STRATA_RELATIONAL__CONNECT_TIMEOUT", "1s"),
            ("STRATA_RELATIONAL__ACQUIRE_TIMEOUT", "1s"),
        ],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let rows = json(&out);
    assert_eq!(rows[0]["engine"], "relational");
    assert_eq!(rows[0]["status"], "unavailable", "{}", rows[0]);
    assert_eq!(rows[1]["status"], "healthy", "the others are still checked");
    assert!(!stdout(&out).contains("hunter2"), "password leaked");
}

#[test]
fn unsupported_operator_exits_2_naming_it_even_on_an_empty_collection() {
    let world = World::new();
    let out = world.run(&["docs", "find", "x", r#"{"a":{"$where":"1"}}"#], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("$where"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = world.run(&["docs", "aggregate", "x", r#"[{"$graphLookup":{}}]"#], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("$graphLookup"), "{}", stderr(&out));
}

#[test]
fn bad_json_exits_2_naming_the_argument() {
    let world = World::new();
    let cases: [(&[&str], &str); 4] = [
        (&["docs", "find", "x", "{not json"], "FILTER"),
        (&["docs", "find", "x", "[1]"], "FILTER"),
        (&["docs", "find", "x", "{}", "--sort", "nope"], "--sort"),
        (&["docs", "aggregate", "x", r#"{"$match":{}}"#], "PIPELINE"),
    ];
    for (args, needle) in cases {
        let out = world.run(args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(needle), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn docs_commands_read_what_is_stored() {
    use strata::engines::document::DocumentStoreExt;
    use strata::engines::document::embedded::{EmbeddedDocumentOptions, EmbeddedDocumentStore};

    let world = World::new();
    {
        let store = EmbeddedDocumentStore::open(
            &world.path("data/documents"),
            EmbeddedDocumentOptions::default(),
        )
        .expect("open");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for (id, fw, acc) in [
                ("m1", "pytorch", 0.98),
                ("m2", "xgboost", 0.91),
                ("m3", "pytorch", 0.95),
            ] {
                store
                    .insert_one(
                        "model_configs",
                        bson::doc! {"model_id": id, "framework": fw, "metrics": {"accuracy": acc}},
                    )
                    .await
                    .expect("insert");
            }
        });
    }
    let out = world.run(
        &[
            "--json",
            "docs",
            "find",
            "model_configs",
            r#"{"framework":"pytorch"}"#,
            "--sort",
            r#"{"metrics.accuracy":-1}"#,
            "--projection",
            r#"{"_id":0,"model_id":1}"#,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out),
        serde_json::json!([{"model_id": "m1"}, {"model_id": "m3"}])
    );

    let out = world.run(
        &[
            "--json",
            "docs",
            "aggregate",
            "model_configs",
            r#"[{"$group":{"_id":"$framework","n":{"$sum":1}}},{"$sort":{"_id":1}}]"#,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json(&out),
        serde_json::json!([{"_id": "pytorch", "n": 2}, {"_id": "xgboost", "n": 1}])
    );

    let out = world.run(&["--json", "docs", "collections"], &[]);
    assert_eq!(json(&out), serde_json::json!(["model_configs"]));
}

#[test]
fn kv_and_queue_inspection_say_the_embedded_stores_are_in_process() {
    let world = World::new();
    let out = world.run(&["--json", "kv", "get", "nothing"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out), serde_json::Value::Null);
    assert!(
        stderr(&out).contains("in-process") || stderr(&out).contains("inside the strata process")
    );

    let out = world.run(&["--json", "queue", "stats", "jobs"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)[0]["error"], "not found");
}

/// `strata --profile full` with the repository's config/full.toml, when the
/// real services are up (`STRATA_TEST_FULL=1`).
fn full_world() -> Option<World> {
    // Prints the one-line skip notice when the full stack is off.
    common::full_profile("cli")?;
    let world = World::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        repo.join("config/full.toml"),
        world.path("config/full.toml"),
    )
    .expect("copy full.toml");
    Some(world)
}

#[test]
fn full_profile_doctor_is_healthy_on_the_real_services() {
    let Some(world) = full_world() else { return };
    let out = world.run(&["--profile", "full", "--json", "doctor"], &[]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let rows = json(&out);
    let kinds: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["postgres", "mongodb", "redis", "rabbitmq"]);
    for row in rows.as_array().expect("rows") {
        assert_eq!(row["status"], "healthy", "{row}");
    }
}

#[test]
fn full_profile_doctor_names_a_stopped_service_and_wrong_credentials() {
    let Some(world) = full_world() else { return };
    // A service that is not there (nothing listens on port 1), and wrong
    // passwords for two others: each row says why, the rest stay healthy.
    let started = std::time::Instant::now();
    let out = world.run(
        &["--profile", "full", "--json", "doctor"],
        &[
            ("STRATA_KV__URL", "redis://default@127.0.0.1:1/0"),
            ("STRATA_DOCUMENTS__PASSWORD", "wrong-mongo-pw"),
            ("STRATA_QUEUE__PASSWORD", "wrong-amqp-pw"),
        ],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "no hang"
    );
    assert_eq!(out.status.code(), Some(1));
    let rows = json(&out);
    assert_eq!(rows[0]["status"], "healthy", "{}", rows[0]);
    assert_eq!(rows[1]["status"], "authentication failed", "{}", rows[1]);
    assert_eq!(rows[2]["status"], "unavailable", "{}", rows[2]);
    assert_eq!(rows[3]["status"], "authentication failed", "{}", rows[3]);
    let text = stdout(&out);
    for secret in ["wrong-mongo-pw", "wrong-amqp-pw", "strata-dev"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}
