//! `SUBSCRIBE` on a dedicated connection.
//!
//! A connection in subscribe mode can do nothing else, so each
//! [`Subscription`] gets its own connection, never one from the pool. The
//! contract that a message published after `subscribe` returns is delivered
//! holds because the driver's `subscribe` waits for Redis's confirmation of
//! every channel before returning. A task forwards messages to the
//! subscription's channel with the key prefix taken off the channel name;
//! dropping the subscription aborts the task, which drops the connection,
//! which is how Redis learns the subscriber is gone.

use std::time::Duration;

use bb8_redis::redis::{Client, Msg};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
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

/// Opens a connection, subscribes to `channels` (already prefixed) and
/// returns once Redis has confirmed them.
pub(super) async fn subscribe(
    client: &Client,
    prefix: &str,
    channels: &[String],
    connect_timeout: Duration,
    command_timeout: Duration,
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
    let (sender, receiver) = mpsc::unbounded_channel();
    let prefix = prefix.to_owned();
    let mut messages = pubsub.into_on_message();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    if sender.send(convert(&prefix, &message)).is_err() {
                        break;
                    }
                }
                () = sender.closed() => break,
            }
        }
    });
    Ok(Subscription::new(
        receiver,
        Some(Box::new(AbortOnDrop(task))),
    ))
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
