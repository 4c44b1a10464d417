//! The Redis adapter of [`KvStore`], through a bb8-redis pool.
//!
//! # Layout
//!
//! - this module: [`RedisKv`], connecting, the pool, timeouts, `scan` and
//!   `info`;
//! - `commands`: each [`Command`] as a Redis command or script, each reply
//!   as a [`Reply`];
//! - `scripts`: the Lua scripts of the atomic commands (`compare_and_delete`,
//!   `lock_acquire`, `lock_extend`, `rate_limit`, `zadd_best`,
//!   `hset_if_newer`);
//! - `pool`: the bb8 pool and its broken-connection tracking;
//! - `pubsub`: subscriptions on dedicated connections;
//! - `errors`: Redis errors as strata [`ErrorKind`]s.
//!
//! # What holds
//!
//! - Every key and channel is stored under `key_prefix`; callers never see
//!   it (`scan` and received messages have it stripped). `scan` is one
//!   `SCAN cursor MATCH <prefix><pattern> [COUNT n] [TYPE t]` per call, its
//!   cursor Redis's own number; a cursor that is not a number is refused
//!   here with Redis's "invalid cursor" (Redis itself would read `-1`).
//! - `connect` returns only after a `PING` answered, so a wrong password is
//!   an [`ErrorKind::AuthenticationFailed`] at start, naming the engine and
//!   the target with the password redacted; an unreachable server is
//!   [`ErrorKind::Unavailable`] within `connect_timeout`.
//! - Every command and pipeline is bounded by `command_timeout`
//!   ([`ErrorKind::Timeout`], retryable); taking a connection from the pool
//!   is bounded by `connect_timeout` ([`ErrorKind::Unavailable`]).
//! - The atomic commands are Lua scripts: alone, by `EVALSHA` (loading the
//!   script on `NOSCRIPT` and trying again); in a pipeline, by `EVAL`. All
//!   their keys are script `KEYS`, prefixed like any other.
//! - A pipeline is one Redis pipeline: one round trip, not a transaction
//!   (no `MULTI`), and each command gets its own result, decoded exactly as
//!   [`KvStore::execute`] decodes it; a command refused before it is sent
//!   (strata's own checks, an expiry Redis could not be told) gets its
//!   error and is left out, the others still run.
//! - The password never appears in `Debug`, `target()` or an error.
//! - A subscription buffers at most `subscription_capacity` messages (see
//!   `pubsub`), and ends with `Unavailable` when its connection drops.
//!
//! # The pool
//!
//! bb8 hands out multiplexed connections without a `PING` on each checkout;
//! a connection that failed at the transport level is discarded instead
//! (see `pool`). A failed connect is not retried inside the pool, so a
//! Redis that is down is reported at once (`Unavailable`, retryable)
//! instead of after `connect_timeout`; callers with a fallback (the cache
//! tiers) want that.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bb8_redis::RedisConnectionManager;
use bb8_redis::bb8;
use bb8_redis::redis::{
    AsyncConnectionConfig, Client, RedisError, TlsCertificates, Value, cmd, pipe,
};
use tokio::time::error::Elapsed;

use crate::config::{RedisConfig, redact_url, with_password};
use crate::engines::kv::{
    Command, KvInfo, KvStore, Reply, ScanCursor, ScanOptions, ScanPage, Subscription,
};
use crate::error::{Error, ErrorKind, Result};

mod commands;
mod errors;
mod pool;
mod pubsub;
mod scripts;

use errors::Phase;
use pool::{Manager, PooledRedis, RedisPool};
use scripts::{ScriptCall, Scripts};

/// The Redis adapter: a bb8 pool of multiplexed connections to one Redis
/// database.
#[derive(Clone)]
pub struct RedisKv {
    pool: RedisPool,
    /// The most connections the pool opens.
    pool_size: u32,
    /// Where the pool's connect failures reach its waiters.
    connect_failures: pool::ConnectFailures,
    /// For subscriptions, which need connections of their own.
    client: Client,
    target: String,
    key_prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    subscription_capacity: usize,
    scripts: Scripts,
}

impl fmt::Debug for RedisKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately not derived: the client and pool hold the password.
        f.debug_struct("RedisKv")
            .field("target", &self.target)
            .field("key_prefix", &self.key_prefix)
            .field("pool", &self.pool.state())
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("subscription_capacity", &self.subscription_capacity)
            .finish_non_exhaustive()
    }
}

impl RedisKv {
    /// Connects to the Redis at `config.url` (with `config.password`
    /// applied), and checks it answers `PING`.
    ///
    /// # Errors
    ///
    /// `AuthenticationFailed` for a refused password, `Unavailable` when the
    /// server cannot be reached within `connect_timeout`, `Config` for a
    /// malformed URL or a zero pool size, timeout or subscription capacity,
    /// a `tls_ca_file` that cannot be read or holds no certificate (or is
    /// set for a `redis://` URL), or a server certificate that does not
    /// verify.
    pub async fn connect(config: &RedisConfig) -> Result<RedisKv> {
        let url = with_password(&config.url, config.password.as_ref())?;
        let target = redact_url(&url);
        let context = |e: Error| {
            let message = format!("redis at {target}: {}", e.message());
            let mut mapped = Error::new(e.kind(), message).with_operation("connect");
            if let Some(field) = e.field() {
                mapped = mapped.with_field(field.to_owned());
            }
            mapped.with_source(e)
        };
        if config.pool_size == 0 {
            return Err(context(
                Error::new(ErrorKind::Config, "pool_size must be at least 1")
                    .with_field("kv.pool_size"),
            ));
        }
        if config.subscription_capacity == 0 {
            return Err(context(
                Error::new(
                    ErrorKind::Config,
                    "subscription_capacity must be at least 1",
                )
                .with_field("kv.subscription_capacity"),
            ));
        }
        for (field, value) in [
            ("kv.connect_timeout", config.connect_timeout),
            ("kv.command_timeout", config.command_timeout),
        ] {
            if value.is_zero() {
                return Err(context(
                    Error::new(ErrorKind::Config, format!("{field} must be above zero"))
                        .with_field(field),
                ));
            }
        }
        let client = match &config.tls_ca_file {
            None => Client::open(url.as_str()),
            Some(path) => {
                if !url.starts_with("rediss://") {
                    return Err(context(
                        Error::new(
                            ErrorKind::Config,
                            "kv.tls_ca_file is set but kv.url is not a rediss:// (TLS) URL",
                        )
                        .with_field("kv.tls_ca_file"),
                    ));
                }
                let ca =
                    crate::engines::tls::read_ca_file("kv.tls_ca_file", path).map_err(context)?;
                Client::build_with_tls(
                    url.as_str(),
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca),
                    },
                )
            }
        }
        .map_err(|e| context(errors::from_redis(e, Phase::Connect)))?;

        // The first connection is opened by hand, outside the pool, so that
        // its failure comes back as it is (a refused password, a refused
        // port) rather than as a pool timeout; it then joins the pool.
        let first = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout));
        let mut connection = match tokio::time::timeout(
            config.connect_timeout,
            client.get_multiplexed_async_connection_with_config(&first),
        )
        .await
        {
            Ok(connected) => {
                connected.map_err(|e| context(errors::from_redis(e, Phase::Connect)))?
            }
            Err(_) => {
                return Err(context(Error::new(
                    ErrorKind::Unavailable,
                    format!("no connection within {:?}", config.connect_timeout),
                )));
            }
        };
        let pong = tokio::time::timeout(
            config.command_timeout,
            cmd("PING").query_async::<Value>(&mut connection),
        )
        .await;
        match pong {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(context(errors::from_redis(e, Phase::Connect))),
            Err(_) => {
                return Err(context(Error::new(
                    ErrorKind::Unavailable,
                    format!("no answer to PING within {:?}", config.command_timeout),
                )));
            }
        }

        // The client's connection info, which carries the trusted CA.
        let manager = RedisConnectionManager::new(client.get_connection_info().clone())
            .map_err(|e| context(errors::from_redis(e, Phase::Connect)))?;
        let connect_failures = pool::ConnectFailures::new();
        let pool = bb8::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(config.connect_timeout)
            .retry_connection(false)
            .error_sink(Box::new(connect_failures.clone()))
            .test_on_check_out(false)
            .build_unchecked(Manager::new(manager, config.command_timeout));
        // The pool is new and has room; should it refuse anyway, the
        // connection is dropped and the pool opens its own.
        if let Err(refused) = pool.add(PooledRedis::new(connection)) {
            let why = match refused {
                bb8::AddError::Broken(_) => "broken",
                bb8::AddError::NoCapacity(_) => "full",
            };
            tracing::debug!(redis = %target, "first Redis connection not pooled: pool {why}");
        }

        Ok(RedisKv {
            pool_size: config.pool_size,
            pool,
            connect_failures,
            client,
            target,
            key_prefix: config.key_prefix.clone(),
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            subscription_capacity: config.subscription_capacity,
            scripts: Scripts::new(),
        })
    }

    /// The prefix every key and channel is stored under.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// A connection from the pool.
    /// A connection from the pool; fails as soon as a connection the pool
    /// opens for it fails (a refusal), not only at `connect_timeout`.
    async fn connection(&self, operation: &'static str) -> Result<pool::Pooled<'_>> {
        let mut failures = self.connect_failures.subscribe();
        tokio::select! {
            biased;
            got = self.pool.get() => got.map_err(|e| self.context(errors::from_pool(e), operation)),
            failure = failures.next() => Err(self.context(failure, operation)),
        }
    }

    /// The outcome of a command run on `connection` under
    /// `tokio::time::timeout(self.command_timeout, ..)`, as a strata result;
    /// marks the connection broken when the failure leaves it unusable.
    fn settle<T>(
        &self,
        connection: &mut PooledRedis,
        operation: &'static str,
        outcome: Result<Result<T, RedisError>, Elapsed>,
    ) -> Result<T> {
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if pool::breaks_connection(&e) {
                    connection.broken = true;
                }
                Err(self.context(errors::from_redis(e, Phase::Command), operation))
            }
            Err(_) => {
                // A reply may still arrive and the multiplexer would skip
                // it, but a silent server is as likely a dead one.
                connection.broken = true;
                Err(self.context(
                    Error::new(
                        ErrorKind::Timeout,
                        format!("no reply within {:?}", self.command_timeout),
                    ),
                    operation,
                ))
            }
        }
    }

    async fn within<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<Result<T, RedisError>, Elapsed> {
        tokio::time::timeout(self.command_timeout, work).await
    }

    fn context(&self, error: Error, operation: &'static str) -> Error {
        let error = if error.operation().is_none() {
            error.with_operation(operation)
        } else {
            error
        };
        error.with_target(format!("redis at {}", self.target))
    }

    /// Runs one script command by `EVALSHA`, loading the script and
    /// trying again on `NOSCRIPT` (a server restarted, or its script cache
    /// flushed), all within one command timeout.
    async fn run_script(&self, name: &'static str, call: &ScriptCall) -> Result<Value> {
        let mut connection = self.connection(name).await?;
        let mut invocation = self.scripts.get(call.lua).prepare_invoke();
        for key in &call.keys {
            invocation.key(key);
        }
        for arg in &call.args {
            invocation.arg(arg.as_slice());
        }
        let outcome = self
            .within(invocation.invoke_async(&mut connection.connection))
            .await;
        self.settle(&mut connection, name, outcome)
    }
}

#[async_trait]
impl KvStore for RedisKv {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn pool_use(&self) -> Option<crate::engines::PoolUse> {
        let state = self.pool.state();
        Some(crate::engines::PoolUse {
            open: u64::from(state.connections),
            idle: u64::from(state.idle_connections),
            max: u64::from(self.pool_size),
        })
    }

    async fn ping(&self) -> Result<()> {
        let mut connection = self.connection("ping").await?;
        let outcome = self
            .within(cmd("PING").query_async::<Value>(&mut connection.connection))
            .await;
        self.settle(&mut connection, "ping", outcome)?;
        Ok(())
    }

    async fn execute(&self, command: Command) -> Result<Reply> {
        let name = command.name();
        let encoded =
            commands::encode_call(&self.key_prefix, &command).map_err(|e| self.context(e, name))?;
        // A server error comes back as `Err` from `query_async` and
        // `invoke_async`; decode maps the others.
        let value = match encoded {
            commands::Encoded::Script(call) => self.run_script(name, &call).await?,
            commands::Encoded::Plain(redis_command) => {
                let mut connection = self.connection(name).await?;
                let outcome = self
                    .within(redis_command.query_async::<Value>(&mut connection.connection))
                    .await;
                self.settle(&mut connection, name, outcome)?
            }
        };
        commands::decode(&command, value).map_err(|e| self.context(e, name))
    }

    async fn pipeline(&self, commands: Vec<Command>) -> Result<Vec<Result<Reply>>> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = pipe();
        // Each command's error reply stays in its own slot instead of
        // failing the whole pipeline.
        pipeline.ignore_errors();
        // A command refused before sending (strata's own checks, an expiry
        // Redis could not be told) gets its error in its slot too, and is
        // not sent.
        let mut refused: Vec<Option<Error>> = Vec::with_capacity(commands.len());
        for command in &commands {
            match commands::encode(&self.key_prefix, command) {
                Ok(encoded) => {
                    pipeline.add_command(encoded);
                    refused.push(None);
                }
                Err(e) => refused.push(Some(self.context(e, command.name()))),
            }
        }
        let sent = refused.iter().filter(|r| r.is_none()).count();
        let values: Vec<Value> = if sent == 0 {
            Vec::new()
        } else {
            let mut connection = self.connection("pipeline").await?;
            let outcome = self
                .within(pipeline.query_async(&mut connection.connection))
                .await;
            self.settle(&mut connection, "pipeline", outcome)?
        };
        if values.len() != sent {
            return Err(self.context(
                Error::internal(format!(
                    "{} replies to a pipeline of {sent} commands",
                    values.len(),
                )),
                "pipeline",
            ));
        }
        let mut values = values.into_iter();
        Ok(commands
            .iter()
            .zip(refused)
            .map(|(command, refused)| {
                if let Some(error) = refused {
                    return Err(error);
                }
                // As many values as commands sent: checked above.
                let value = values.next().unwrap_or_default();
                commands::decode(command, value).map_err(|e| self.context(e, command.name()))
            })
            .collect())
    }

    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> Result<ScanPage> {
        let operation = "scan";
        let position = commands::scan_cursor(cursor).map_err(|e| self.context(e, operation))?;
        let step = commands::scan_step(&self.key_prefix, position, options);
        let mut connection = self.connection(operation).await?;
        let outcome = self
            .within(step.query_async(&mut connection.connection))
            .await;
        let (next, batch): (u64, Vec<Vec<u8>>) =
            self.settle(&mut connection, operation, outcome)?;
        let keys = batch
            .into_iter()
            .map(|raw| commands::unprefixed_key(&self.key_prefix, raw))
            .collect::<Result<Vec<String>>>()
            .map_err(|e| self.context(e, operation))?;
        Ok(ScanPage {
            cursor: ScanCursor::new(next.to_string()),
            keys,
        })
    }

    async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        pubsub::subscribe(
            &self.client,
            &self.key_prefix,
            channels,
            self.connect_timeout,
            self.command_timeout,
            self.subscription_capacity,
        )
        .await
        .map_err(|e| self.context(e, "subscribe"))
    }

    async fn info(&self) -> Result<KvInfo> {
        let operation = "info";
        let mut connection = self.connection(operation).await?;
        let mut pipeline = pipe();
        pipeline
            .cmd("DBSIZE")
            .cmd("INFO")
            .arg("memory")
            .cmd("INFO")
            .arg("stats");
        let outcome = self
            .within(pipeline.query_async(&mut connection.connection))
            .await;
        let (keys, memory, stats): (u64, Value, Value) =
            self.settle(&mut connection, operation, outcome)?;
        let memory = commands::info_text(memory).map_err(|e| self.context(e, operation))?;
        let stats = commands::info_text(stats).map_err(|e| self.context(e, operation))?;
        let field = |text: &str, name: &str| {
            commands::info_field(text, name).ok_or_else(|| {
                self.context(
                    Error::internal(format!("INFO does not report {name}")),
                    operation,
                )
            })
        };
        Ok(KvInfo {
            keys,
            used_memory: field(&memory, "used_memory")?,
            max_memory: field(&memory, "maxmemory")?,
            evictions: field(&stats, "evicted_keys")?,
        })
    }
}
