//! What travels with a message: its id, its attempt, its history, its
//! original route; and the compression of large payloads.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engines::queue::{Delivery, FieldValue, Message};
use crate::error::{Error, Result};

/// Header: the attempt this delivery is (1 for the first).
pub const ATTEMPT: &str = "x-strata-attempt";
/// Header: the earlier attempts, a JSON array of [`Attempt`]s.
pub const HISTORY: &str = "x-strata-history";
/// Header: the exchange the message was first published to.
pub const EXCHANGE: &str = "x-strata-exchange";
/// Header: the routing key it was first published with.
pub const ROUTING_KEY: &str = "x-strata-routing-key";
/// Header of a dead letter: the last error.
pub const ERROR: &str = "x-strata-error";
/// Header of a dead letter: the class of the last error (`exhausted`,
/// `aborted`, `poison`, `invalid`, ...).
pub const ERROR_CLASS: &str = "x-strata-error-class";
/// Header of a dead letter: its id in the dead-letter store.
pub const DEAD_ID: &str = "x-strata-dead-id";
/// Header of a dead letter: the queue it died in.
pub const QUEUE: &str = "x-strata-queue";
/// Header of a replayed message: how many times it was replayed.
pub const REPLAYS: &str = "x-strata-replays";
/// The content encoding of compressed payloads.
pub const ZSTD: &str = "zstd";

/// One earlier attempt at a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Its number, 1 for the first.
    pub attempt: u32,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// What happened: `retry`, `abort`, `exhausted`, `poison`, `timeout`, `panic`.
    pub outcome: String,
    /// The error.
    pub error: String,
    /// The wait before the next attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// A message as a handler sees it.
#[derive(Debug, Clone)]
pub struct Task {
    /// The message id (stable across retries, redeliveries and replays).
    pub id: String,
    /// The queue it came from (without the prefix).
    pub queue: String,
    /// The routing key it was first published with (the event type for
    /// events, the queue for tasks).
    pub routing_key: String,
    /// The payload, decompressed.
    pub payload: Bytes,
    /// The attempt this is, 1 for the first.
    pub attempt: u32,
    /// The attempts before this one.
    pub history: Vec<Attempt>,
    /// The message as delivered (headers, priority, ...).
    pub message: Message,
}

impl Task {
    /// The payload as JSON of type `T`; a clear `InvalidInput` error naming
    /// what is wrong otherwise.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            Error::invalid(format!(
                "message {} on `{}` is not the JSON expected: {e}",
                self.id, self.queue
            ))
        })
    }
}

/// Reads a string header.
pub fn header_str<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    match message.properties.headers.get(name) {
        Some(FieldValue::String(s)) => Some(s),
        _ => None,
    }
}

/// Reads an integer header.
pub fn header_int(message: &Message, name: &str) -> Option<i64> {
    match message.properties.headers.get(name) {
        Some(FieldValue::Int(i)) => Some(*i),
        Some(FieldValue::String(s)) => s.parse().ok(),
        _ => None,
    }
}

/// The attempts recorded in a message's headers.
pub fn history_of(message: &Message) -> Vec<Attempt> {
    header_str(message, HISTORY)
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or_default()
}

/// Writes the history header.
pub fn set_history(message: &mut Message, history: &[Attempt]) {
    let json = serde_json::to_string(history).unwrap_or_else(|_| "[]".into());
    message
        .properties
        .headers
        .insert(HISTORY.into(), FieldValue::String(json));
}

/// The id of a delivery: its message id, or, for a message published
/// without one by something other than strata, a digest of its route and
/// body (so that redeliveries of it share an id).
pub fn message_id(delivery: &Delivery) -> String {
    if let Some(id) = &delivery.message.properties.message_id
        && !id.is_empty()
    {
        return id.clone();
    }
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(delivery.exchange.as_bytes());
    hash.update([0]);
    hash.update(delivery.routing_key.as_bytes());
    hash.update([0]);
    hash.update(&delivery.message.body);
    let digest = hash.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha-{hex}")
}

/// The original route of a delivery: from its headers when it came back
/// from a delay queue, else where it was published.
pub fn route_of(delivery: &Delivery) -> (String, String) {
    let message = &delivery.message;
    match (
        header_str(message, EXCHANGE),
        header_str(message, ROUTING_KEY),
    ) {
        (Some(exchange), Some(key)) => (exchange.to_owned(), key.to_owned()),
        _ => (delivery.exchange.clone(), delivery.routing_key.clone()),
    }
}

/// Compresses `body` into `message` when it is larger than `above` bytes.
pub fn compress(message: &mut Message, above: u64) -> Result<()> {
    if (message.body.len() as u64) <= above || message.properties.content_encoding.is_some() {
        return Ok(());
    }
    let packed = zstd::bulk::compress(&message.body, 3)
        .map_err(|e| Error::internal(format!("zstd compression failed: {e}")))?;
    message.body = Bytes::from(packed);
    message.properties.content_encoding = Some(ZSTD.into());
    Ok(())
}

/// The largest payload a compressed message may expand to.
const MAX_EXPANDED: usize = 64 << 20;

/// The payload of a message, decompressed when it says `zstd`; an unknown
/// encoding or a corrupt body is an `InvalidInput` error.
pub fn payload_of(message: &Message) -> Result<Bytes> {
    match message.properties.content_encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(message.body.clone()),
        Some(ZSTD) => zstd::bulk::decompress(&message.body, MAX_EXPANDED)
            .map(Bytes::from)
            .map_err(|e| Error::invalid(format!("the zstd payload does not decompress: {e}"))),
        Some(other) => Err(Error::invalid(format!(
            "unknown content-encoding `{other}` (strata reads zstd or none)"
        ))),
    }
}

/// A duration in whole milliseconds, for headers and history.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_payloads_round_trip_through_zstd_and_small_ones_are_left_alone() {
        let body = "feature ".repeat(10_000);
        let mut message = Message::new(body.clone());
        compress(&mut message, 1024).unwrap();
        assert_eq!(message.properties.content_encoding.as_deref(), Some(ZSTD));
        assert!(message.body.len() < body.len() / 10);
        assert_eq!(payload_of(&message).unwrap(), Bytes::from(body));

        let mut small = Message::new("tiny");
        compress(&mut small, 1024).unwrap();
        assert_eq!(small.properties.content_encoding, None);
        assert_eq!(payload_of(&small).unwrap(), Bytes::from("tiny"));
    }

    #[test]
    fn corrupt_or_unknown_encodings_are_clear_errors() {
        let mut message = Message::new("not zstd");
        message.properties.content_encoding = Some(ZSTD.into());
        assert!(payload_of(&message).unwrap_err().message().contains("zstd"));
        message.properties.content_encoding = Some("br".into());
        assert!(payload_of(&message).unwrap_err().message().contains("`br`"));
    }
}
