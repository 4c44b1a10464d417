//! The end-to-end workloads: a small keep-alive HTTP/1.1 client, a `strata
//! serve` child process, and the fixture and requests measured over HTTP.
//!
//! # The client
//!
//! [`Conn`] writes a request prepared once by [`request`] and reads its
//! whole answer into a buffer it reuses; a body is found by its
//! `content-length` (what `strata serve` always sends), and anything else
//! (`transfer-encoding`, bytes beyond the answer) is refused rather than
//! guessed at. It does one thing, so its own cost stays small and steady
//! beside the server's.
//!
//! # The server
//!
//! [`Server::start`] runs `strata GLOBAL_ARGS serve --listen 127.0.0.1:0`
//! and waits for the line `strata: listening on http://ADDR` on its
//! standard error, which it keeps reading (so the pipe never fills) into a
//! log for error reports.
//!
//! # The workloads
//!
//! [`prepare`] declares the feature view [`VIEW`], writes every entity's
//! features, puts the model configs (ids starting `bench-`; the first with
//! a logistic scorer over the view) and asks every entity's prediction
//! once, so that the predictions measured come from the cache. The names
//! make the fixture recognisable on a server given by URL. [`subjects`]
//! then reads features one entity at a time, in batches, and asks cached
//! predictions: every answer must be 200 and say what it should.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Subject;
use super::harness::{Session, Workload};
use super::model::Store;
use crate::error::{Error, ErrorKind, Result};

// --- A keep-alive HTTP/1.1 client ------------------------------------------

/// One request, ready to write: `METHOD PATH HTTP/1.1`, `Host`, and a JSON
/// body with its `Content-Type` and `Content-Length` when there is one.
pub fn request(method: &str, path: &str, body: Option<&Value>, host: &str) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    match body {
        Some(body) => {
            let payload = body.to_string();
            text.push_str("Content-Type: application/json\r\n");
            text.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
            text.push_str(&payload);
        }
        None => text.push_str("\r\n"),
    }
    text.into_bytes()
}

/// A kept-alive connection and the buffer its answers are read into.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Where an answer lies in its [`Conn`]'s buffer (see [`Conn::head`] and
/// [`Conn::body`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The server will close the connection after this answer.
    pub close: bool,
    head_end: usize,
    body_end: usize,
}

/// What an answer's head says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// The body's length in bytes.
    pub length: usize,
    /// The server will close the connection after this answer
    /// (`Connection: close`, or HTTP/1.0 without `Connection: keep-alive`).
    pub close: bool,
}

/// An answer this client cannot read: the server broke the protocol, or
/// answered in a way the client does not handle.
pub fn protocol(what: impl Into<String>) -> Error {
    Error::internal(what)
}

/// Where `needle` first occurs in `haystack` (0 for an empty needle).
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    find(haystack, needle.as_bytes()).is_some()
}

/// Reads an answer's head (without the blank line that ends it): the
/// status, the body's length and whether the connection closes. A
/// `transfer-encoding`, or an answer with a body but no
/// `content-length`, is refused.
pub fn parse_head(head: &[u8]) -> Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| protocol("a head that is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(protocol(format!(
            "not an HTTP/1 status line: {status_line:?}"
        )));
    };
    let mut length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| protocol(format!("a bad content-length {value:?}")))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(protocol(format!(
                "transfer-encoding {value:?}: this client reads content-length bodies only"
            )));
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let length = match (length, status) {
        (Some(n), _) => n,
        (None, 204 | 304) | (None, 100..=199) => 0,
        (None, _) => {
            return Err(protocol(format!(
                "an answer {status} without content-length"
            )));
        }
    };
    Ok(Head {
        status,
        length,
        close,
    })
}

/// The server could not be reached, or the connection failed.
fn unavailable(what: String) -> Error {
    Error::new(ErrorKind::Unavailable, what)
}

impl Conn {
    /// Connects to `address` (`HOST:PORT`), with Nagle's algorithm off.
    pub async fn connect(address: &str) -> Result<Conn> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| unavailable(format!("connecting to {address}: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| unavailable(format!("setting TCP_NODELAY on {address}: {e}")))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    /// Writes `request` and reads its whole answer into the buffer. On an
    /// error the buffer holds what arrived of the answer (nothing when the
    /// connection failed before its first byte).
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Reply> {
        self.buf.clear();
        self.stream
            .write_all(request)
            .await
            .map_err(|e| unavailable(format!("sending a request: {e}")))?;
        let mut head: Option<(Head, usize)> = None;
        loop {
            if let Some((h, head_end)) = head {
                let body_end = head_end + h.length;
                if self.buf.len() == body_end {
                    return Ok(Reply {
                        status: h.status,
                        close: h.close,
                        head_end,
                        body_end,
                    });
                }
                if self.buf.len() > body_end {
                    return Err(protocol(format!(
                        "{} bytes beyond the answer's end",
                        self.buf.len() - body_end
                    )));
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| unavailable(format!("reading an answer: {e}")))?;
            if read == 0 {
                return Err(unavailable(format!(
                    "the connection closed after {} bytes of an answer",
                    self.buf.len()
                )));
            }
            if head.is_none() {
                if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                    head = Some((parse_head(&self.buf[..at])?, at + 4));
                } else if self.buf.len() > 64 * 1024 {
                    return Err(protocol("a head over 64 KiB"));
                }
            }
        }
    }

    /// The head of `reply` (status line and headers, with the blank line).
    pub fn head(&self, reply: &Reply) -> &[u8] {
        &self.buf[..reply.head_end]
    }

    /// The body of `reply`.
    pub fn body(&self, reply: &Reply) -> &[u8] {
        &self.buf[reply.head_end..reply.body_end]
    }

    /// Whether the last exchange failed before any byte of its answer
    /// arrived.
    fn nothing_read(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The first line of a request (`GET /healthz HTTP/1.1`), for messages.
pub fn request_line(request: &[u8]) -> String {
    let end = find(request, b"\r\n").unwrap_or(request.len());
    String::from_utf8_lossy(&request[..end]).into_owned()
}

// --- strata serve --------------------------------------------------------

/// How long `strata serve` may take to listen (a debug build on a busy
/// machine, or migrations on the real services).
const START_LIMIT: Duration = Duration::from_secs(120);
/// How long `strata serve` may take to stop after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// `EXE GLOBAL ARGS`, in the environment this process inherited changed by
/// `env` (a variable set to `Some` value, or removed for `None`), with no
/// standard input, killed if the handle is dropped.
pub fn command(
    exe: &Path,
    global: &[OsString],
    env: &[(OsString, Option<OsString>)],
    args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(exe);
    for (key, value) in env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    command
        .args(global)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A running `strata serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: tokio::process::Child,
    pid: u32,
    address: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Runs `exe GLOBAL serve --listen 127.0.0.1:0` (see [`command`] for
    /// `env`) and waits until it listens. `global` holds the global
    /// arguments (`--profile`, `--config-dir`, `--data-dir`, ...).
    pub async fn start(
        exe: &Path,
        global: &[OsString],
        env: &[(OsString, Option<OsString>)],
    ) -> Result<Server> {
        let mut child = command(exe, global, env, &["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                unavailable(format!(
                    "spawning {} serve: {e}",
                    exe.to_string_lossy().as_ref()
                ))
            })?;
        let pid = child
            .id()
            .ok_or_else(|| unavailable("strata serve exited at once".to_owned()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::internal("strata serve: no stderr pipe"))?;
        let log = Arc::new(Mutex::new(String::new()));
        let (listening, address) = tokio::sync::oneshot::channel();
        let lines = Arc::clone(&log);
        // Reads stderr to its end, so the pipe never fills.
        tokio::spawn(async move {
            let mut listening = Some(listening);
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Some(address) = line.strip_prefix("strata: listening on http://")
                    && let Some(tx) = listening.take()
                {
                    let _ = tx.send(address.trim().to_owned());
                }
                if let Ok(mut log) = lines.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let log_text = |log: &Arc<Mutex<String>>| log.lock().map(|l| l.clone()).unwrap_or_default();
        match tokio::time::timeout(START_LIMIT, address).await {
            Ok(Ok(address)) => Ok(Server {
                child,
                pid,
                address,
                log,
            }),
            Ok(Err(_)) => {
                let status = child.wait().await;
                Err(unavailable(format!(
                    "strata serve exited before listening ({status:?}): {}",
                    log_text(&log)
                )))
            }
            Err(_) => Err(unavailable(format!(
                "strata serve did not listen within {} s: {}",
                START_LIMIT.as_secs(),
                log_text(&log)
            ))),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where it listens (`127.0.0.1:PORT`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// What it has written to standard error so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 15 s. An error when it had already
    /// exited (with its log), stopped with a failure, or had to be killed.
    pub async fn stop(mut self) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(unavailable(format!(
                "strata serve had exited before it was stopped ({status}); log:\n{}",
                self.log()
            )));
        }
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match tokio::time::timeout(STOP_LIMIT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(status) => Err(Error::internal(format!(
                "strata serve stopped with {status:?}"
            ))),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(Error::internal(format!(
                    "strata serve did not stop within {} s of SIGTERM; killed",
                    STOP_LIMIT.as_secs()
                )))
            }
        }
    }
}

// --- The fixture ---------------------------------------------------------

/// The feature view the fixture declares.
pub const VIEW: &str = "bench_activity";
/// Features of [`VIEW`] (`f1` .. `f8`, floats).
pub const FEATURES: usize = 8;
/// Model configs put; the first has a scorer.
pub const MODELS: usize = 8;
/// Entities per batch read (fewer when the fixture has fewer).
pub const BATCH: usize = 100;
/// Distinct batches, cycled through.
const BATCH_VARIANTS: usize = 97;
/// One batch answer in this many is checked entity by entity (JSON
/// parsed); the others by size.
const BATCH_CHECK_EVERY: u64 = 50;
/// The least bytes of one feature in a batch answer.
const BATCH_FEATURE_BYTES: usize = 40;
/// Connections that send the set-up requests.
const SETUP_CONNECTIONS: usize = 8;
/// The longest one set-up request may take.
const SETUP_LIMIT: Duration = Duration::from_secs(30);

/// What [`prepare`] put on the server.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The feature view ([`VIEW`]).
    pub view: String,
    /// The entities with features (`u0000`, `u0001`, ...).
    pub entities: Vec<String>,
    /// The models with a config (`bench-model-00`, ...); the first has a
    /// logistic scorer over the view.
    pub models: Vec<String>,
    predictions: Arc<PredictionTally>,
}

/// Predictions answered, and how many of them from the cache.
#[derive(Debug, Default)]
struct PredictionTally {
    answered: AtomicU64,
    cached: AtomicU64,
}

impl Fixture {
    /// The model whose predictions are measured.
    pub fn scored_model(&self) -> &str {
        &self.models[0]
    }

    /// Of the predictions the `http.predict` workload has had answered
    /// well, the share the cache answered (`cached: true`); `None` before
    /// the first. A cached prediction expires (`serving.prediction_ttl`)
    /// and is computed again, so a long run may see a few that are not.
    pub fn cached_share(&self) -> Option<f64> {
        let answered = self.predictions.answered.load(Ordering::Relaxed);
        (answered > 0)
            .then(|| self.predictions.cached.load(Ordering::Relaxed) as f64 / answered as f64)
    }
}

/// The declaration of a view of [`FEATURES`] floats (`f1` .. `f8`) about
/// users, fresh for an hour: the body of `PUT /v1/feature-views/{view}`.
pub fn view_body() -> Value {
    json!({
        "entity": "user",
        "ttl_seconds": 3600,
        "description": "a bench's view",
        "features": (1..=FEATURES).map(|j| json!({"name": format!("f{j}"), "type": "float"})).collect::<Vec<_>>(),
    })
}

/// A model config (`model_name` `bench-model`), with a logistic scorer
/// over the [`view_body`] view named `scorer_view` when there is one: the
/// body of `PUT /v1/models/{id}/config`.
pub fn model_config(scorer_view: Option<&str>) -> Value {
    let mut config = json!({"model_name": "bench-model", "framework": "sklearn"});
    if let Some(view) = scorer_view {
        let weights: serde_json::Map<String, Value> = (1..=FEATURES)
            .map(|j| (format!("f{j}"), json!(0.5 / j as f64)))
            .collect();
        config["scorer"] = json!({
            "type": "logistic", "version": 1, "view": view, "bias": 0.1, "weights": weights,
        });
    }
    config
}

/// Entity number `entity`'s feature values (`f1` .. `f8`, between 0.5
/// and 10.4): the body of `PUT /v1/features/{view}/{entity}`.
pub fn feature_values(entity: usize) -> Value {
    let values: serde_json::Map<String, Value> = (1..=FEATURES)
        .map(|j| {
            (
                format!("f{j}"),
                json!(((entity * 7 + j * 13) % 100) as f64 / 10.0 + 0.5),
            )
        })
        .collect();
    json!({ "features": values })
}

/// Sends every request once over [`SETUP_CONNECTIONS`] connections; each
/// answer must be 200 and pass `check`. The error names `step` and the
/// first failed request.
async fn send_all(address: &str, step: &str, requests: &[Vec<u8>], check: &Check) -> Result<()> {
    let next = &AtomicUsize::new(0);
    let worker = move || async move {
        let mut session = HttpSession {
            address: address.to_owned(),
            conn: None,
            requests: Arc::new(Vec::new()),
            check: Arc::clone(check),
        };
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(request) = requests.get(i) else {
                return Ok::<(), Error>(());
            };
            tokio::time::timeout(SETUP_LIMIT, session.send(request, i as u64))
                .await
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "{}: no answer within {} s",
                            request_line(request),
                            SETUP_LIMIT.as_secs()
                        ),
                    )
                })??;
        }
    };
    let workers = SETUP_CONNECTIONS.min(requests.len()).max(1);
    futures::future::try_join_all((0..workers).map(|_| worker()))
        .await
        .map_err(|e| Error::new(e.kind(), format!("{step}: {}", e.message())))?;
    Ok(())
}

/// Puts the fixture on the server at `address` (`HOST:PORT`): declares
/// [`VIEW`] (`PUT /v1/feature-views/{view}`), writes the features of
/// `entities` entities (`PUT /v1/features/{view}/{entity}`), puts
/// [`MODELS`] model configs (`PUT /v1/models/{id}/config`, the first with
/// a logistic scorer over the view), then asks the first model's
/// prediction for every entity once, so that the predictions measured
/// come from the cache. Existing ones of the same names are replaced.
pub async fn prepare(address: &str, entities: usize) -> Result<Fixture> {
    if entities == 0 {
        return Err(
            Error::invalid("the HTTP fixture needs at least one entity").with_field("entities")
        );
    }
    let names: Vec<String> = (0..entities).map(|i| format!("u{i:04}")).collect();
    let models: Vec<String> = (0..MODELS).map(|i| format!("bench-model-{i:02}")).collect();
    let any: Check = Arc::new(|_, _| Ok(()));
    send_all(
        address,
        "declaring the feature view",
        &[request(
            "PUT",
            &format!("/v1/feature-views/{VIEW}"),
            Some(&view_body()),
            address,
        )],
        &any,
    )
    .await?;
    let writes: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, e)| {
            request(
                "PUT",
                &format!("/v1/features/{VIEW}/{e}"),
                Some(&feature_values(i)),
                address,
            )
        })
        .collect();
    send_all(address, "writing the features", &writes, &any).await?;
    let configs: Vec<Vec<u8>> = models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            request(
                "PUT",
                &format!("/v1/models/{m}/config"),
                Some(&model_config((i == 0).then_some(VIEW))),
                address,
            )
        })
        .collect();
    send_all(address, "putting the model configs", &configs, &any).await?;
    let fixture = Fixture {
        view: VIEW.to_owned(),
        entities: names,
        models,
        predictions: Arc::default(),
    };
    // A tally of its own: the warm-up's answers are not the measured ones.
    let warm = Arc::new(PredictionTally::default());
    send_all(
        address,
        "asking every prediction once",
        &predictions(&fixture, address),
        &predict_check(fixture.scored_model(), warm),
    )
    .await?;
    Ok(fixture)
}

// --- The workloads -------------------------------------------------------

/// Checks a 200 answer's body to request `seq`: why it is wrong, if it is.
type Check = Arc<dyn Fn(u64, &[u8]) -> std::result::Result<(), String> + Send + Sync>;

/// Requests sent round-robin over kept-alive connections.
struct HttpWorkload {
    address: String,
    requests: Arc<Vec<Vec<u8>>>,
    check: Check,
}

/// One kept-alive connection of an [`HttpWorkload`]; `None` after the
/// server closed it or it failed, reopened by the next call.
struct HttpSession {
    address: String,
    conn: Option<Conn>,
    requests: Arc<Vec<Vec<u8>>>,
    check: Check,
}

#[async_trait]
impl Workload for HttpWorkload {
    async fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(HttpSession {
            address: self.address.clone(),
            conn: Some(Conn::connect(&self.address).await?),
            requests: Arc::clone(&self.requests),
            check: Arc::clone(&self.check),
        }))
    }
}

#[async_trait]
impl Session for HttpSession {
    async fn call(&mut self, seq: u64) -> Result<()> {
        let requests = Arc::clone(&self.requests);
        let request = &requests[(seq % requests.len() as u64) as usize];
        self.send(request, seq).await
    }
}

impl HttpSession {
    /// Sends `request` (number `seq`) and judges its answer. A connection
    /// kept from before that fails before the first byte of the answer
    /// (the server closed it while it was idle) is replaced and the
    /// request sent once more; the workloads' requests are idempotent.
    async fn send(&mut self, request: &[u8], seq: u64) -> Result<()> {
        let named = |e: Error| {
            Error::new(
                e.kind(),
                format!("{}: {}", request_line(request), e.message()),
            )
        };
        let (mut conn, kept) = match self.conn.take() {
            Some(conn) => (conn, true),
            None => (Conn::connect(&self.address).await.map_err(named)?, false),
        };
        let reply = match conn.exchange(request).await {
            Ok(reply) => reply,
            Err(e) if kept && e.kind() == ErrorKind::Unavailable && conn.nothing_read() => {
                conn = Conn::connect(&self.address).await.map_err(named)?;
                conn.exchange(request).await.map_err(named)?
            }
            Err(e) => return Err(named(e)),
        };
        let body = conn.body(&reply);
        let verdict = if reply.status != 200 {
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            Err(format!("{} {shown}", reply.status))
        } else {
            (self.check)(seq, body).map_err(|wrong| format!("a wrong answer: {wrong}"))
        };
        if !reply.close {
            self.conn = Some(conn);
        }
        verdict.map_err(|wrong| Error::internal(format!("{}: {wrong}", request_line(request))))
    }
}

/// `POST /v1/models/{id}/predict` for every entity of `fixture`.
fn predictions(fixture: &Fixture, address: &str) -> Vec<Vec<u8>> {
    let path = format!("/v1/models/{}/predict", fixture.scored_model());
    fixture
        .entities
        .iter()
        .map(|e| request("POST", &path, Some(&json!({"entity": e})), address))
        .collect()
}

/// A prediction of `model` with a score; counted into `tally`.
fn predict_check(model: &str, tally: Arc<PredictionTally>) -> Check {
    let expected = format!("\"model_id\":\"{model}\"");
    Arc::new(move |_, body| {
        if !contains(body, &expected) || !contains(body, "\"score\":") {
            return Err(format!(
                "not a prediction of the model: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        tally.answered.fetch_add(1, Ordering::Relaxed);
        if contains(body, "\"cached\":true") {
            tally.cached.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    })
}

/// The HTTP workloads over `fixture` on the server at `address`:
/// `http.features`, `http.features_batch` and `http.predict`, reported as
/// measured on `engine`.
pub fn subjects(address: &str, fixture: &Fixture, engine: &str) -> Vec<Subject> {
    let entities = Arc::new(fixture.entities.clone());
    let view = fixture.view.clone();
    let n = entities.len().max(1) as u64;
    let subject =
        |id: &str, title: String, items: usize, requests: Vec<Vec<u8>>, check: Check| Subject {
            id: id.to_owned(),
            title,
            store: Store::Http,
            engine: engine.to_owned(),
            items: u32::try_from(items).unwrap_or(u32::MAX),
            workload: Arc::new(HttpWorkload {
                address: address.to_owned(),
                requests: Arc::new(requests),
                check,
            }),
        };

    let features = {
        let requests = entities
            .iter()
            .map(|e| request("GET", &format!("/v1/features/{view}/{e}"), None, address))
            .collect();
        let entities = Arc::clone(&entities);
        let check: Check = Arc::new(move |seq, body| {
            let entity = &entities[(seq % n) as usize];
            if !contains(body, &format!("\"entity\":\"{entity}\"")) {
                return Err(format!("not the features of `{entity}`"));
            }
            if contains(body, "\"missing\"") || contains(body, "\"stale\"") {
                return Err(format!("a feature of `{entity}` is missing or stale"));
            }
            Ok(())
        });
        subject(
            "http.features",
            format!("GET /v1/features/{view}/{{entity}}"),
            1,
            requests,
            check,
        )
    };

    let batch_size = BATCH.min(entities.len()).max(1);
    let batches: Arc<Vec<Vec<usize>>> = Arc::new(
        (0..BATCH_VARIANTS)
            .map(|v| {
                (0..batch_size)
                    .map(|k| (v * 37 + k) % entities.len().max(1))
                    .collect()
            })
            .collect(),
    );
    let batch = {
        let requests = batches
            .iter()
            .map(|members| {
                let items: Vec<Value> = members
                    .iter()
                    .map(|&i| json!({"view": view, "entity": entities[i]}))
                    .collect();
                request(
                    "POST",
                    "/v1/features:batch",
                    Some(&json!({ "items": items })),
                    address,
                )
            })
            .collect();
        let entities = Arc::clone(&entities);
        let batches = Arc::clone(&batches);
        let check: Check = Arc::new(move |seq, body| {
            if seq % BATCH_CHECK_EVERY != 0 {
                return if body.len() >= batch_size * FEATURES * BATCH_FEATURE_BYTES {
                    Ok(())
                } else {
                    Err(format!(
                        "{} bytes: too short for {batch_size} entities",
                        body.len()
                    ))
                };
            }
            let members = &batches[(seq % batches.len() as u64) as usize];
            check_batch_answer(body, members, &entities)
        });
        subject(
            "http.features_batch",
            format!("POST /v1/features:batch, {batch_size} entities"),
            batch_size,
            requests,
            check,
        )
    };

    let predict = subject(
        "http.predict",
        "POST /v1/models/{id}/predict, cached".to_owned(),
        1,
        predictions(fixture, address),
        predict_check(fixture.scored_model(), Arc::clone(&fixture.predictions)),
    );

    vec![features, batch, predict]
}

/// Checks a `POST /v1/features:batch` answer thoroughly: JSON, one result
/// per item in order, each naming its entity (`entities[i]` for each `i` of
/// `members`) with all [`FEATURES`] fresh.
pub fn check_batch_answer(
    body: &[u8],
    members: &[usize],
    entities: &[String],
) -> std::result::Result<(), String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let results = answer["results"].as_array().ok_or("no `results` array")?;
    if results.len() != members.len() {
        return Err(format!(
            "{} results for {} items",
            results.len(),
            members.len()
        ));
    }
    for (result, &i) in results.iter().zip(members) {
        let fresh = result["features"]
            .as_object()
            .is_some_and(|f| f.len() == FEATURES && f.values().all(|v| v["status"] == "fresh"));
        if result["entity"] != entities[i].as_str() || !fresh {
            return Err(format!("the answer for `{}` is {result}", entities[i]));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn a_head_gives_status_length_and_close() {
        let head =
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42")
                .unwrap();
        assert_eq!(
            head,
            Head {
                status: 200,
                length: 42,
                close: false
            }
        );
        let head = parse_head(b"HTTP/1.1 404 Not Found\r\nconnection: Close\r\ncontent-length: 0")
            .unwrap();
        assert_eq!((head.status, head.length, head.close), (404, 0, true));
        // HTTP/1.0 closes unless it says keep-alive.
        assert!(
            parse_head(b"HTTP/1.0 200 OK\r\ncontent-length: 1")
                .unwrap()
                .close
        );
        assert!(
            !parse_head(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1")
                .unwrap()
                .close
        );
        // No body, no length needed.
        assert_eq!(parse_head(b"HTTP/1.1 204 No Content").unwrap().length, 0);
    }

    #[test]
    fn a_head_this_client_cannot_read_is_refused() {
        let chunked = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked").unwrap_err();
        assert!(
            chunked.to_string().contains("transfer-encoding"),
            "{chunked}"
        );
        let no_length = parse_head(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain").unwrap_err();
        assert!(
            no_length.to_string().contains("without content-length"),
            "{no_length}"
        );
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: ten").is_err());
        assert!(parse_head(b"SSH-2.0-OpenSSH_9.6").is_err());
        assert!(parse_head(b"HTTP/1.1 abc OK\r\ncontent-length: 0").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nx: \xff").is_err());
    }

    #[test]
    fn requests_are_written_as_http_1_1() {
        assert_eq!(
            request("GET", "/healthz", None, "127.0.0.1:8080"),
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        let body = json!({"entity": "u0001"});
        assert_eq!(
            String::from_utf8(request("POST", "/v1/models/m/predict", Some(&body), "h:1")).unwrap(),
            "POST /v1/models/m/predict HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\n\
             Content-Length: 18\r\n\r\n{\"entity\":\"u0001\"}"
        );
        assert_eq!(
            request_line(&request("GET", "/x", None, "h")),
            "GET /x HTTP/1.1"
        );
        assert_eq!(find(b"abcabc", b"ca"), Some(2));
        assert_eq!(find(b"abc", b""), Some(0));
        assert!(!contains(b"abc", "abcd"));
    }

    /// A server answering each request on a connection with `answers` in
    /// turn (`None`: close without answering), then closing it.
    async fn fake_server(answers: Vec<Vec<Option<&'static str>>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for script in answers {
                let (mut stream, _) = listener.accept().await.unwrap();
                for answer in script {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while find(&got, b"\r\n\r\n").is_none() {
                        let n = stream.read(&mut buf).await.unwrap();
                        assert!(n > 0, "the client closed mid-request");
                        got.extend_from_slice(&buf[..n]);
                    }
                    match answer {
                        Some(answer) => stream.write_all(answer.as_bytes()).await.unwrap(),
                        None => break,
                    }
                }
            }
        });
        address
    }

    fn session(address: &str, requests: Vec<Vec<u8>>) -> HttpWorkload {
        HttpWorkload {
            address: address.to_owned(),
            requests: Arc::new(requests),
            check: Arc::new(|_, body| {
                if body == b"ok" {
                    Ok(())
                } else {
                    Err(format!("{:?}", String::from_utf8_lossy(body)))
                }
            }),
        }
    }

    #[tokio::test]
    async fn a_session_reconnects_when_the_server_closes_and_names_wrong_answers() {
        const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        const OK_CLOSE: &str =
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
        const WRONG: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno";
        const MISSING: &str = "HTTP/1.1 404 Not Found\r\ncontent-length: 4\r\n\r\ngone";
        let address = fake_server(vec![
            // Kept alive, then closed by the server after its answer.
            vec![Some(OK), Some(OK_CLOSE)],
            // A wrong answer and a 404, then closed while idle.
            vec![Some(WRONG), Some(MISSING), None],
            // The request the idle close interrupted, sent again.
            vec![Some(OK)],
        ])
        .await;
        let workload = session(
            &address,
            vec![
                request("GET", "/a", None, &address),
                request("GET", "/b", None, &address),
            ],
        );
        let mut s = workload.session().await.unwrap();
        s.call(0).await.unwrap();
        s.call(1).await.unwrap();
        let wrong = s.call(2).await.unwrap_err().to_string();
        assert!(
            wrong.starts_with("GET /a HTTP/1.1: a wrong answer"),
            "{wrong}"
        );
        let missing = s.call(3).await.unwrap_err().to_string();
        assert!(
            missing.starts_with("GET /b HTTP/1.1: 404 gone"),
            "{missing}"
        );
        s.call(4).await.unwrap();
    }
}
