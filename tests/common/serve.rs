//! Real `strata` processes for tests that must treat strata as a user or
//! an operator does: a [`Stack`] (one test's own data dir, and on the full
//! profile its own PostgreSQL database, MongoDB database and Redis key
//! prefix) from which [`Server`]s (`strata serve` on port 0) and inspection
//! commands (`strata sql`, `strata docs`, `strata kv`) are started, and a
//! small HTTP/1.1 client ([`call`]) that tells an answer from a connection
//! that died without one.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use strata::config::{Config, DocumentsConfig, KvConfig};
use strata::engines::document::DocumentStore;
use strata::engines::document::mongodb::MongoDocumentStore;
use strata::engines::kv::KvStoreExt;
use strata::engines::kv::redis::RedisKv;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::TestDb;

/// How long a server may take to start listening, and an inspection
/// command to finish (a debug build on a busy machine).
const START_LIMIT: Duration = Duration::from_secs(90);

/// One test's world: where every strata process it starts keeps its data.
pub struct Stack {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    full: Mutex<Option<Full>>,
    profile: &'static str,
}

/// What a full-profile stack owns on the shared services.
struct Full {
    db: TestDb,
    name: String,
    config: Config,
}

impl Stack {
    /// The embedded profile in a fresh temp dir.
    pub fn embedded() -> Stack {
        Stack::new(Vec::new(), None, "embedded")
    }

    /// The full profile with a PostgreSQL database of its own, a MongoDB
    /// database and a Redis key prefix named after it; `None` when
    /// `STRATA_TEST_FULL` is not `1`.
    pub async fn full(suite: &str) -> Option<Stack> {
        let db = TestDb::postgres(suite).await?;
        let url = db.config.relational.url.clone().expect("full profile URL");
        let name = url
            .rsplit('/')
            .next()
            .expect("URL names a database")
            .to_owned();
        let config = db.config.clone();
        let env = vec![
            ("STRATA_PROFILE".to_owned(), "full".to_owned()),
            ("STRATA_RELATIONAL__URL".to_owned(), url),
            ("STRATA_DOCUMENTS__DATABASE".to_owned(), name.clone()),
            ("STRATA_KV__KEY_PREFIX".to_owned(), format!("{name}:")),
        ];
        Some(Stack::new(env, Some(Full { db, name, config }), "full"))
    }

    fn new(mut env: Vec<(String, String)>, full: Option<Full>, profile: &'static str) -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        env.push((
            "STRATA_CONFIG_DIR".to_owned(),
            config_dir.to_str().expect("utf-8 path").to_owned(),
        ));
        Stack {
            dir,
            env,
            full: Mutex::new(full),
            profile,
        }
    }

    /// `embedded` or `full`.
    pub fn profile(&self) -> &'static str {
        self.profile
    }

    /// Whether this stack is on the real services.
    pub fn is_full(&self) -> bool {
        self.profile == "full"
    }

    /// The full profile's configuration as this stack's processes see it
    /// (its own database, MongoDB database and key prefix).
    pub fn full_config(&self) -> Option<Config> {
        let full = self.full.lock().expect("stack lock");
        full.as_ref().map(|f| {
            let mut config = f.config.clone();
            if let DocumentsConfig::Mongodb(mongo) = &mut config.documents {
                mongo.database = f.name.clone();
            }
            if let KvConfig::Redis(redis) = &mut config.kv {
                redis.key_prefix = format!("{}:", f.name);
            }
            config
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A shell command line that runs `strata` as this stack's processes
    /// do (its environment plus `env`, then `--data-dir`), for a script
    /// that appends the arguments. The caller removes the test's own
    /// `STRATA_` variables from the script's environment.
    pub fn command_line(&self, env: &[(&str, &str)]) -> String {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut words = vec!["env".to_owned()];
        for (key, value) in self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(env.iter().copied())
        {
            words.push(quote(&format!("{key}={value}")));
        }
        words.push(quote(env!("CARGO_BIN_EXE_strata")));
        words.push("--data-dir".to_owned());
        words.push(quote(self.data_dir().to_str().expect("utf-8 path")));
        words.join(" ")
    }

    /// `strata ARGS` with this stack's environment (and no other `STRATA_`
    /// variable of the test's), plus `env`.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        for (key, _) in std::env::vars() {
            if key.starts_with("STRATA_") {
                command.env_remove(key);
            }
        }
        command
            .current_dir(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .args(["--data-dir", self.data_dir().to_str().expect("utf-8 path")])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs `strata ARGS` to its end.
    pub async fn strata(&self, args: &[&str]) -> Output {
        self.strata_with(args, &[]).await
    }

    /// Runs `strata ARGS` to its end, with `env` added.
    pub async fn strata_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let run = self.command(args, env).output();
        tokio::time::timeout(START_LIMIT, run)
            .await
            .unwrap_or_else(|_| panic!("strata {args:?} did not finish within {START_LIMIT:?}"))
            .expect("run strata")
    }

    /// `strata --json ARGS`, which must succeed, as JSON.
    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.strata(&all).await;
        assert!(
            out.status.success(),
            "strata {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "strata {args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Rows of a read-only query, through `strata sql`.
    pub async fn sql(&self, query: &str) -> Vec<Value> {
        match self.json(&["sql", query]).await {
            Value::Array(rows) => rows,
            other => panic!("strata sql answered {other}"),
        }
    }

    /// Documents of `collection` matching `filter`, through `strata docs
    /// find` (on the embedded profile only while no server holds the
    /// store).
    pub async fn docs_find(&self, collection: &str, filter: &Value) -> Vec<Value> {
        let filter = filter.to_string();
        match self
            .json(&["docs", "find", collection, &filter, "--limit", "100000"])
            .await
        {
            Value::Array(docs) => docs,
            other => panic!("strata docs find answered {other}"),
        }
    }

    /// A hash of the key-value engine, through `strata kv hgetall` (full
    /// profile only: the embedded store lives in the server's process).
    pub async fn kv_hgetall(&self, key: &str) -> serde_json::Map<String, Value> {
        assert!(self.is_full(), "the embedded key-value store is in-process");
        match self.json(&["kv", "hgetall", key]).await {
            Value::Object(map) => map,
            other => panic!("strata kv hgetall answered {other}"),
        }
    }

    /// Starts `strata serve --listen 127.0.0.1:0` with `env` added, and
    /// waits until it listens.
    pub async fn serve(&self, env: &[(&str, &str)]) -> Server {
        self.spawn(
            &["serve", "--listen", "127.0.0.1:0"],
            env,
            "strata: listening on http://",
        )
        .await
    }

    /// Starts `strata serve --no-worker` (the API only).
    pub async fn serve_api_only(&self, env: &[(&str, &str)]) -> Server {
        self.spawn(
            &["serve", "--listen", "127.0.0.1:0", "--no-worker"],
            env,
            "strata: listening on http://",
        )
        .await
    }

    /// Starts `strata ARGS` with `env` added, and waits for the line of
    /// its stderr starting with `ready` (e.g. `strata: listening on
    /// https://`).
    pub async fn serve_with(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        ready: &'static str,
    ) -> Server {
        self.spawn(args, env, ready).await
    }

    /// Starts `strata worker` with `env` added, and waits until its
    /// consumers run.
    pub async fn worker(&self, env: &[(&str, &str)]) -> Server {
        self.spawn(&["worker"], env, "strata: worker running").await
    }

    /// Starts `strata ARGS` and waits for a line of its stderr starting
    /// with `ready` (what follows it is the server's address, if any).
    async fn spawn(&self, args: &[&str], env: &[(&str, &str)], ready: &'static str) -> Server {
        let mut child = self
            .command(args, env)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata serve");
        let pid = child.id().expect("a running child has a pid");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (listening, address) = tokio::sync::oneshot::channel();
        let lines = Arc::clone(&log);
        // Reads the server's stderr to its end, so the pipe never fills
        // and the log is there for failure messages.
        let reader = tokio::spawn(async move {
            let mut listening = Some(listening);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(address) = line.strip_prefix(ready)
                    && let Some(tx) = listening.take()
                {
                    let _ = tx.send(address.trim().to_owned());
                }
                let mut log = lines.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let address = match tokio::time::timeout(START_LIMIT, address).await {
            Ok(Ok(address)) => address,
            Ok(Err(_)) => {
                let status = child.wait().await;
                panic!(
                    "strata {args:?} exited before it was ready ({status:?}): {}",
                    log.lock().expect("log lock")
                );
            }
            Err(_) => panic!(
                "strata {args:?} was not ready within {START_LIMIT:?}: {}",
                log.lock().expect("log lock")
            ),
        };
        Server {
            child,
            pid,
            address,
            log,
            reader: Some(reader),
        }
    }

    /// Removes what the stack put on the shared services (its MongoDB
    /// database, its Redis keys, its PostgreSQL database); the temp dir
    /// goes with the stack. Idempotent.
    pub async fn cleanup(&self) {
        let config = self.full_config();
        let full = self.full.lock().expect("stack lock").take();
        let (Some(full), Some(config)) = (full, config) else {
            return;
        };
        if let DocumentsConfig::Mongodb(mongo) = &config.documents {
            let docs = MongoDocumentStore::connect(mongo)
                .await
                .expect("connect to MongoDB for clean-up");
            docs.drop_database()
                .await
                .expect("drop the test's MongoDB database");
        }
        if let KvConfig::Redis(redis) = &config.kv {
            let kv = RedisKv::connect(redis)
                .await
                .expect("connect to Redis for clean-up");
            kv.delete_pattern("*")
                .await
                .expect("delete the test's Redis keys");
        }
        full.db.cleanup().await;
    }
}

/// Runs `case` on `stack` (nothing when `None`: the full profile is off),
/// then removes what the stack left on the shared services, whether the
/// case passed or panicked.
pub async fn run_on<C, F>(stack: Option<Stack>, case: C)
where
    C: FnOnce(Arc<Stack>) -> F,
    F: std::future::Future<Output = ()>,
{
    use futures::FutureExt;

    let Some(stack) = stack else { return };
    let stack = Arc::new(stack);
    let outcome = std::panic::AssertUnwindSafe(case(Arc::clone(&stack)))
        .catch_unwind()
        .await;
    stack.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A running `strata serve`. Killed (SIGKILL) when dropped while running.
pub struct Server {
    child: Child,
    pid: u32,
    /// `HOST:PORT` it listens on.
    pub address: String,
    log: Arc<Mutex<String>>,
    /// The task reading its stderr into `log`; it ends at the pipe's end.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Its standard error so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends one request to it.
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        call(&self.address, method, path, body)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: no answer ({e}); server log:\n{}",
                    self.log()
                )
            })
    }

    /// `kill -9`: the process stops on the spot. Returns once it is gone.
    pub async fn sigkill(&mut self) -> ExitStatus {
        self.child.start_kill().expect("send SIGKILL");
        self.exited(START_LIMIT).await
    }

    /// Waits for the process to end by itself, at most `limit`; then its
    /// log holds everything it wrote (its last lines may still be in the
    /// pipe when the process is gone).
    pub async fn exited(&mut self, limit: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait for strata serve"),
            Err(_) => panic!(
                "strata serve still runs after {limit:?}; log:\n{}",
                self.log()
            ),
        };
        if let Some(reader) = self.reader.take() {
            // The pipe ends with the process, unless a child of its own
            // still holds it: then the log is what came so far.
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        status
    }

    /// Stops it as an operator would (SIGTERM) and checks it exits 0.
    pub async fn stop(mut self) {
        signal(self.pid, "TERM");
        let status = self.exited(START_LIMIT).await;
        assert_eq!(
            status.code(),
            Some(0),
            "strata serve did not stop cleanly; log:\n{}",
            self.log()
        );
    }
}

/// Sends `SIG<name>` to `pid` with kill(1).
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status code.
    pub status: u16,
    /// Its headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// Its body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
}

impl Answer {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How long one request may take before the client gives up on it.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request to `address` on a connection of its own
/// (`Connection: close`). An `Err` means no answer came: the connection
/// was refused, or closed or reset before a complete answer, or nothing
/// came within [`REQUEST_LIMIT`].
pub async fn call(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<Answer> {
    match tokio::time::timeout(REQUEST_LIMIT, exchange(address, method, path, body)).await {
        Ok(answer) => answer,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {REQUEST_LIMIT:?}"),
        )),
    }
}

/// [`call`] with extra request headers (a `Host` among them replaces the
/// address).
pub async fn call_with(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<Answer> {
    match tokio::time::timeout(
        REQUEST_LIMIT,
        exchange_with(address, method, path, headers, body),
    )
    .await
    {
        Ok(answer) => answer,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {REQUEST_LIMIT:?}"),
        )),
    }
}

async fn exchange(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<Answer> {
    exchange_with(address, method, path, &[], body).await
}

async fn exchange_with(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(address).await?;
    let payload = body.map(Value::to_string).unwrap_or_default();
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map_or(address, |(_, v)| *v);
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if body.is_some() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    request.push_str(&payload);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_answer(&raw)
}

fn broken(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.into())
}

/// Parses one raw HTTP/1.1 answer (the whole of what the server sent).
pub fn parse_answer(raw: &[u8]) -> std::io::Result<Answer> {
    if raw.is_empty() {
        return Err(broken("the connection closed without an answer"));
    }
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| broken(format!("an answer cut off in its head: {text}")))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| broken(format!("not an HTTP answer: {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(rest.len());
        if rest.len() < length {
            return Err(broken(format!(
                "an answer cut off: {} of {length} body bytes",
                rest.len()
            )));
        }
        rest[..length].to_owned()
    };
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> std::io::Result<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| broken("a chunked body cut off"))?;
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| broken(format!("a bad chunk size `{size}`")))?;
        if size == 0 {
            return Ok(body);
        }
        if after.len() < size + 2 {
            return Err(broken("a chunk cut off"));
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Polls `probe` every few milliseconds until it yields a value, at most
/// `limit`; panics naming `what` past it.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        // The interval between two looks at the condition, not a wait for
        // it: the deadline bounds the wait.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
