//! The connection pool: bb8 over bb8-redis's manager, plus broken-connection
//! tracking.
//!
//! bb8-redis's manager cannot tell a dead multiplexed connection from a live
//! one (its `has_broken` is always `false`), so a pool built on it alone must
//! `PING` every connection it hands out or keep dead connections forever
//! after a Redis restart. The `PING` doubles the cost of a command (a `GET`
//! on loopback, release build: 79 µs with it, 38 µs without, 31 µs on a
//! bare connection). Instead, a connection
//! whose command failed at the transport level (dropped, timed out,
//! unparsable) is marked broken by the caller, and the pool drops it when it
//! is handed back. The price: after a restart, each idle connection fails
//! one command (`Unavailable`, retryable) before it is replaced.
//!
//! New pooled connections are opened by bb8-redis's manager, with the
//! driver's default connect timeout of 1 s per attempt (the manager takes no
//! options); `connect_timeout` bounds the first connection, which
//! `RedisKv::connect` opens itself, and the wait for a pooled one.
//!
//! bb8 keeps a waiter waiting for the whole `connect_timeout` even when the
//! connection it would get was refused at once. So the pool's connect
//! failures go to [`ConnectFailures`], and a caller waiting for a connection
//! fails with the first one that happens while it waits: a Redis that
//! refuses connections is reported in the time the refusal takes.

use std::time::Duration;

use tokio::sync::broadcast;

use crate::error::{Error, ErrorKind};

use bb8_redis::RedisConnectionManager;
use bb8_redis::bb8::{self, ManageConnection};
use bb8_redis::redis::RedisError;
use bb8_redis::redis::aio::MultiplexedConnection;

/// A pooled multiplexed connection and whether it is known to be dead.
pub(super) struct PooledRedis {
    /// The connection.
    pub(super) connection: MultiplexedConnection,
    /// Set by the caller when a command failed at the transport level; the
    /// pool then discards the connection instead of reusing it.
    pub(super) broken: bool,
}

impl PooledRedis {
    /// Wraps a connection opened outside the pool.
    pub(super) fn new(connection: MultiplexedConnection) -> Self {
        PooledRedis {
            connection,
            broken: false,
        }
    }
}

/// bb8-redis's manager, giving each new connection our response timeout
/// (the driver's default of 500 ms would otherwise fire before
/// `command_timeout`) and reporting connections marked broken.
#[derive(Debug)]
pub(super) struct Manager {
    inner: RedisConnectionManager,
    command_timeout: Duration,
}

impl Manager {
    pub(super) fn new(inner: RedisConnectionManager, command_timeout: Duration) -> Self {
        Manager {
            inner,
            command_timeout,
        }
    }
}

impl ManageConnection for Manager {
    type Connection = PooledRedis;
    type Error = RedisError;

    async fn connect(&self) -> Result<PooledRedis, RedisError> {
        let mut connection = self.inner.connect().await?;
        connection.set_response_timeout(self.command_timeout);
        Ok(PooledRedis::new(connection))
    }

    async fn is_valid(&self, connection: &mut PooledRedis) -> Result<(), RedisError> {
        self.inner.is_valid(&mut connection.connection).await
    }

    fn has_broken(&self, connection: &mut PooledRedis) -> bool {
        connection.broken
    }
}

/// The pool type.
pub(super) type RedisPool = bb8::Pool<Manager>;

/// A connection taken from the pool.
pub(super) type Pooled<'a> = bb8::PooledConnection<'a, Manager>;

/// Whether a failed command leaves its connection unusable: anything but an
/// error reply from the server, which is an answer on a healthy connection.
pub(super) fn breaks_connection(error: &RedisError) -> bool {
    error.code().is_none()
}

/// The connect failures of a pool, told to every caller waiting for one of
/// its connections (bb8's error sink).
#[derive(Debug, Clone)]
pub(super) struct ConnectFailures {
    sender: broadcast::Sender<(ErrorKind, String)>,
}

impl ConnectFailures {
    pub(super) fn new() -> Self {
        // A waiter needs one failure; a burst beyond this is skipped.
        let (sender, _) = broadcast::channel(16);
        ConnectFailures { sender }
    }

    /// Failures from now on.
    pub(super) fn subscribe(&self) -> FailureReceiver {
        FailureReceiver(self.sender.subscribe())
    }
}

impl bb8::ErrorSink<RedisError> for ConnectFailures {
    fn sink(&self, error: RedisError) {
        tracing::debug!("a pooled Redis connection could not be opened: {error}");
        // Nobody waiting: nobody to tell.
        let error = super::errors::from_redis(error, super::errors::Phase::Connect);
        let _ = self.sender.send((error.kind(), error.message().to_owned()));
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<RedisError>> {
        Box::new(self.clone())
    }
}

/// Receives the connect failures of a pool.
#[derive(Debug)]
pub(super) struct FailureReceiver(broadcast::Receiver<(ErrorKind, String)>);

impl FailureReceiver {
    /// The next failure; pending forever once the pool is gone.
    pub(super) async fn next(&mut self) -> Error {
        loop {
            match self.0.recv().await {
                Ok((kind, message)) => return Error::new(kind, message),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}
