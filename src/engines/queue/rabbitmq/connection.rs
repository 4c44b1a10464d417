//! The connection to RabbitMQ, its channels, and recovery.
//!
//! # What holds
//!
//! - One AMQP connection per [`RabbitBroker`](super::RabbitBroker), held in
//!   a [`Link`] with two pools of idle channels: plain ones for management
//!   operations and `basic.get`, and ones in confirm mode for publishing.
//!   A channel is taken from its pool by one operation at a time and given
//!   back only after that operation succeeded, so a channel the broker closed
//!   with an error (AMQP closes the channel on `404`, `406`, ...) is never
//!   used again: the next operation gets a fresh one. Holding a channel
//!   exclusively also means a publish's confirm or return belongs to it
//!   alone, and one bad publish cannot fail another's confirm. A
//!   `publish_batch` holds one confirm channel for its whole batch the same
//!   way, so only its own messages share the channel's fate.
//! - Recovery is lazy: [`Connector::link`] checks the connection before each
//!   operation and, when it is gone (broker restart, forced close, missed
//!   heartbeats), opens a new one, retrying with exponential backoff and
//!   full jitter ([`RetryPolicy`], caps of 50 ms doubling up to 1 s) until
//!   `connect_timeout` has passed since the first
//!   attempt; then the operation fails with `Unavailable`. One caller
//!   reconnects at a time; callers that waited for a reconnect that failed
//!   get its error at once instead of starting their own. Refused
//!   credentials and a malformed URL are not retried.
//! - lapin's own recovery (`enable_auto_recover`) is not used: it replays the
//!   queues, exchanges and bindings each channel once declared, which would
//!   resurrect what was since deleted through another channel, and re-create
//!   non-durable queues a restarted broker rightly lost.
//! - What a lost connection takes with it, as in AMQP: channels (and their
//!   consumers, whose streams end with an `Unavailable` error and then
//!   `None`), unsettled deliveries (the broker requeues them; settling one
//!   fails), exclusive queues, and publishes not yet confirmed (they fail
//!   with `Unavailable` and may or may not have been enqueued).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, DefaultConnectionBuilder};

use super::error;
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;

/// Idle channels kept per pool; more are closed when given back.
const IDLE_CHANNELS: usize = 8;
/// The first pause between connection attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Which pool a channel comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A plain channel.
    Plain,
    /// A channel in publisher-confirm mode.
    Confirm,
}

/// One open connection and its idle channels.
pub(super) struct Link {
    connection: Connection,
    plain: Mutex<Vec<Channel>>,
    confirm: Mutex<Vec<Channel>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connected", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl Link {
    fn new(connection: Connection) -> Self {
        Link {
            connection,
            plain: Mutex::new(Vec::new()),
            confirm: Mutex::new(Vec::new()),
        }
    }

    /// Whether the connection is still usable.
    pub(super) fn is_open(&self) -> bool {
        self.connection.status().connected()
    }

    fn pool(&self, mode: Mode) -> MutexGuard<'_, Vec<Channel>> {
        let pool = match mode {
            Mode::Plain => &self.plain,
            Mode::Confirm => &self.confirm,
        };
        // A panic elsewhere cannot leave a Vec of channels half-changed.
        pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An open channel of `mode` for the caller alone: an idle one, or a new
    /// one.
    pub(super) async fn take(&self, mode: Mode) -> lapin::Result<Channel> {
        loop {
            let idle = self.pool(mode).pop();
            match idle {
                Some(channel) if channel.status().connected() => return Ok(channel),
                Some(_) => continue,
                None => break,
            }
        }
        let channel = self.connection.create_channel().await?;
        if mode == Mode::Confirm {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        Ok(channel)
    }

    /// Returns a channel whose operation succeeded to its pool.
    pub(super) fn give_back(&self, mode: Mode, channel: Channel) {
        if !channel.status().connected() {
            return;
        }
        let mut pool = self.pool(mode);
        if pool.len() < IDLE_CHANNELS {
            pool.push(channel);
        }
        // Otherwise dropping the last handle closes the channel.
    }

    /// A new channel owned by one consumer or one `get`, never pooled.
    pub(super) async fn dedicated(&self) -> lapin::Result<Channel> {
        self.connection.create_channel().await
    }
}

/// The outcome of the last failed reconnection, shared with callers that
/// waited for it.
#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    kind: ErrorKind,
    message: String,
}

/// Opens the connection and reopens it when lost.
pub(super) struct Connector {
    /// The URL with its password; never printed.
    uri: AMQPUri,
    /// Extra certificates to trust for `amqps://` (`queue.tls_ca_file`).
    tls: OwnedTLSConfig,
    /// The redacted URL.
    target: String,
    timeout: Duration,
    name: String,
    current: tokio::sync::Mutex<Option<Arc<Link>>>,
    last_failure: Mutex<Option<Failure>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target)
            .field("connect_timeout", &self.timeout)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector for `url` (with its password), trusting the CA
    /// certificates of `ca_pem` (PEM) beside the bundled roots; not yet
    /// connected.
    pub(super) fn new(
        url: &str,
        target: String,
        timeout: Duration,
        ca_pem: Option<String>,
    ) -> Result<Self> {
        let uri = url.parse::<AMQPUri>().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("rabbitmq: malformed AMQP URL `{target}`: {e}"),
            )
            .with_operation("connect")
            .with_target(target.clone())
        })?;
        static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "strata-{}-{}",
            std::process::id(),
            CONNECTIONS.fetch_add(1, Ordering::Relaxed)
        );
        Ok(Connector {
            uri,
            tls: OwnedTLSConfig {
                identity: None,
                cert_chain: ca_pem,
            },
            target,
            timeout,
            name,
            current: tokio::sync::Mutex::new(None),
            last_failure: Mutex::new(None),
        })
    }

    /// The name RabbitMQ shows for the connection (`connection_name`).
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The redacted URL.
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// The open connection, reconnecting first if it was lost.
    pub(super) async fn link(&self) -> Result<Arc<Link>> {
        let asked = Instant::now();
        let mut current = self.current.lock().await;
        if let Some(link) = current.as_ref()
            && link.is_open()
        {
            return Ok(Arc::clone(link));
        }
        if let Some(failure) = self.failure()
            && failure.at >= asked
        {
            return Err(Error::new(failure.kind, failure.message)
                .with_operation("connect")
                .with_target(self.target.clone()));
        }
        // Dropping the dead link drops its idle channels with it.
        *current = None;
        match self.reconnect().await {
            Ok(link) => {
                *current = Some(Arc::clone(&link));
                Ok(link)
            }
            Err(e) => {
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Failure {
                    at: Instant::now(),
                    kind: e.kind(),
                    message: e.message().to_owned(),
                });
                Err(e)
            }
        }
    }

    fn failure(&self) -> Option<Failure> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Connects, retrying with backoff ([`RetryPolicy`]: full jitter, 50 ms
    /// doubling up to 1 s) until `timeout` has passed.
    async fn reconnect(&self) -> Result<Arc<Link>> {
        let deadline = Instant::now() + self.timeout;
        let policy = RetryPolicy::within(self.timeout).with_delays(FIRST_BACKOFF, MAX_BACKOFF);
        policy
            .run(|_| async {
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, self.open()).await {
                    Ok(Ok(connection)) => Ok(Arc::new(Link::new(connection))),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "rabbitmq did not complete the connection within {:?}",
                            self.timeout
                        ),
                    )
                    .with_operation("connect")
                    .with_target(self.target.clone())),
                }
            })
            .await
    }

    /// One connection attempt.
    async fn open(&self) -> Result<Connection> {
        // lapin binds its I/O to the current tokio runtime and would panic
        // outside one.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Config,
                "rabbitmq: the adapter must run inside a tokio runtime",
            )
            .with_operation("connect")
            .with_target(self.target.clone()));
        }
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        DefaultConnectionBuilder::new()
            .map_err(|e| error::map_connect(e, &self.target))?
            .with_uri(self.uri.clone())
            .with_properties(properties)
            .with_tls_config(self.tls.clone())
            .connect()
            .await
            .map_err(|e| error::map_connect(e, &self.target))
    }
}
