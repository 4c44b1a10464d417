//! `SUBSCRIBE` on a dedicated connection.
//!
//! A connection in subscribe mode can do nothing else, so each
//! [`Subscription`] gets its own connection, never one from the pool. The
//! contract that a message published after `subscribe` returns is delivered
//! holds because the driver's `subscribe` waits for Redis's confirmation of
//! every channel before returning. A task forwards messages into the
//! subscription's bounded buffer with the key prefix taken off the channel
//! name; dropping the subscription aborts the task, which drops the
//! connection, which is how Redis learns the subscriber is gone.
//!
//! # Memory and loss
//!
//! The forwarding task never waits for the reader: it pushes into the
//! subscription's buffer (`subscription_capacity` messages), which drops
//! the oldest message when full and tells the reader (`Lagged`). So it
//! keeps draining the driver's own queue (unbounded, fed by the socket) as
//! fast as messages arrive, and neither that queue nor Redis's output
//! buffer for this client grows behind a slow reader.
//!
//! When the connection drops (Redis restarted, the network failed, the
//! client was killed), the driver's stream ends: the reader then gets one
//! `Unavailable` error after the messages already buffered, and `None`
//! after it. Messages published meanwhile are lost for good (Redis keeps no
//! pub/sub backlog); the caller resubscribes.

use std::time::Duration;

use bb8_redis::redis::{Client, Msg};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::errors::{self, Phase};
use crate::engines::kv::{PubSubMessage, Subscription};
use crate::error::{Error, ErrorKind, Result};

/// Aborts the forwarding task (and so closes the connection) when the
/// subscription is dropped, without waiting for the task to notice that the
/// receiver is gone.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens a connection, subscribes to `channels` under `prefix` and returns
/// once Redis has confirmed them; the subscription buffers `capacity`
/// messages.
pub(super) async fn subscribe(
    client: &Client,
    prefix: &str,
    channels: &[String],
    connect_timeout: Duration,
    command_timeout: Duration,
    capacity: usize,
) -> Result<Subscription> {
    if channels.is_empty() {
        return Err(
            Error::invalid("subscribe needs at least one channel").with_operation("subscribe")
        );
    }
    let mut pubsub = match tokio::time::timeout(connect_timeout, client.get_async_pubsub()).await {
        Ok(connected) => connected.map_err(|e| errors::from_redis(e, Phase::Connect))?,
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("no connection within {connect_timeout:?}"),
            ));
        }
    };
    let prefixed: Vec<String> = channels.iter().map(|c| format!("{prefix}{c}")).collect();
    match tokio::time::timeout(command_timeout, pubsub.subscribe(&prefixed)).await {
        Ok(confirmed) => confirmed.map_err(|e| errors::from_redis(e, Phase::Command))?,
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("subscription not confirmed within {command_timeout:?}"),
            ));
        }
    }
    let prefix = prefix.to_owned();
    let mut messages = pubsub.into_on_message();
    let (feed, subscription) = Subscription::channel(capacity, None);
    let task = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            if !feed.push(convert(&prefix, &message)) {
                // The reader is gone (the abort is on its way).
                return;
            }
        }
        feed.fail(Error::new(
            ErrorKind::Unavailable,
            "the subscription's connection to Redis was lost; messages published since may be missed",
        ));
    });
    Ok(subscription.with_guard(Box::new(AbortOnDrop(task))))
}

fn convert(prefix: &str, message: &Msg) -> PubSubMessage {
    let channel = message.get_channel_name();
    // Redis only sends messages for the channels subscribed to, which all
    // start with the prefix.
    let channel = channel.strip_prefix(prefix).unwrap_or(channel);
    PubSubMessage {
        channel: channel.to_owned(),
        payload: Bytes::copy_from_slice(message.get_payload_bytes()),
    }
}
