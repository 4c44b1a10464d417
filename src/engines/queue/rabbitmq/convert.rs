//! Conversions between strata's message model and lapin's AMQP types.
//!
//! # Field values
//!
//! Outbound every [`FieldValue`] has an exact AMQP type: strings are long
//! strings (`S`), integers 64-bit signed (`l`), floats doubles (`d`),
//! booleans `t`, arrays `A`, tables `F`. Inbound, from other publishers or
//! the broker itself, the AMQP types without a strata twin are widened:
//! every integer width becomes [`FieldValue::Int`] (an unsigned 64-bit
//! timestamp, `T`, becomes its seconds as `Int`, saturating), `f`/`d` and
//! decimals become [`FieldValue::Float`], short strings, and long strings
//! and byte arrays that are not UTF-8, become [`FieldValue::String`] (lossy
//! UTF-8, with U+FFFD), and a void (`V`, a key with no value) is left out.
//!
//! # Durations
//!
//! AMQP counts milliseconds: a [`Duration`] is rounded up to the next whole
//! millisecond, so a message never lives shorter than asked.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable as AmqpTable, LongString, ShortString};

use crate::config::QueueType;
use crate::engines::queue::{FieldTable, FieldValue, Message, MessageProperties, QueueOptions};
use crate::error::{Error, Result};

/// The longest AMQP short string (names, keys, most properties), in bytes.
pub(super) const MAX_SHORT_STRING: usize = 255;

/// A short string, or `InvalidInput` naming `field` when it is too long.
pub(super) fn short(value: &str, field: &str) -> Result<ShortString> {
    ShortString::try_new(value).map_err(|_| {
        Error::invalid(format!(
            "`{field}` is {} bytes; AMQP allows at most {MAX_SHORT_STRING}",
            value.len()
        ))
        .with_field(field)
    })
}

/// Milliseconds of `duration`, rounded up.
pub(super) fn millis(duration: Duration) -> u128 {
    duration.as_nanos().div_ceil(1_000_000)
}

/// A strata field table as an AMQP one.
pub(super) fn to_amqp_table(table: &FieldTable, field: &str) -> Result<AmqpTable> {
    let mut out = AmqpTable::default();
    for (key, value) in table {
        let name = short(key, &format!("{field}.{key}"))?;
        out.insert(name, to_amqp_value(value, field)?);
    }
    Ok(out)
}

fn to_amqp_value(value: &FieldValue, field: &str) -> Result<AMQPValue> {
    Ok(match value {
        FieldValue::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        FieldValue::Int(i) => AMQPValue::LongLongInt(*i),
        FieldValue::Float(f) => AMQPValue::Double(*f),
        FieldValue::Bool(b) => AMQPValue::Boolean(*b),
        FieldValue::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .iter()
                .map(|item| to_amqp_value(item, field))
                .collect::<Result<Vec<_>>>()?,
        )),
        FieldValue::Table(table) => AMQPValue::FieldTable(to_amqp_table(table, field)?),
    })
}

/// An AMQP field table as a strata one (see the module docs for widening).
pub(super) fn from_amqp_table(table: &AmqpTable) -> FieldTable {
    table
        .inner()
        .iter()
        .filter_map(|(key, value)| from_amqp_value(value).map(|v| (key.to_string(), v)))
        .collect()
}

fn from_amqp_value(value: &AMQPValue) -> Option<FieldValue> {
    Some(match value {
        AMQPValue::Boolean(b) => FieldValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => FieldValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => FieldValue::Int(*i),
        AMQPValue::Timestamp(t) => FieldValue::Int(i64::try_from(*t).unwrap_or(i64::MAX)),
        AMQPValue::Float(f) => FieldValue::Float(f64::from(*f)),
        AMQPValue::Double(f) => FieldValue::Float(*f),
        AMQPValue::DecimalValue(d) => {
            FieldValue::Float(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => FieldValue::String(s.to_string()),
        AMQPValue::LongString(s) => {
            FieldValue::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ByteArray(b) => {
            FieldValue::String(String::from_utf8_lossy(b.as_slice()).into_owned())
        }
        AMQPValue::FieldArray(items) => FieldValue::Array(
            items
                .as_slice()
                .iter()
                .filter_map(from_amqp_value)
                .collect(),
        ),
        AMQPValue::FieldTable(table) => FieldValue::Table(from_amqp_table(table)),
        AMQPValue::Void => return None,
    })
}

/// Whether a queue declared with `options` is a quorum queue under
/// `queue_type`: only durable, non-exclusive, non-auto-delete queues can be;
/// the others stay classic.
pub(super) fn is_quorum(options: &QueueOptions, queue_type: QueueType) -> bool {
    queue_type == QueueType::Quorum && options.durable && !options.exclusive && !options.auto_delete
}

/// The `x-` arguments of a queue declaration. A quorum queue carries
/// `x-queue-type: quorum` and no `x-max-priority`, which RabbitMQ 3.10
/// refuses on quorum queues.
pub(super) fn queue_arguments(options: &QueueOptions, queue_type: QueueType) -> Result<AmqpTable> {
    let mut arguments = AmqpTable::default();
    let quorum = is_quorum(options, queue_type);
    if quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    if let Some(max) = options.max_priority.filter(|_| !quorum) {
        arguments.insert(
            "x-max-priority".into(),
            AMQPValue::LongLongInt(i64::from(max)),
        );
    }
    if let Some(exchange) = &options.dead_letter_exchange {
        short(exchange, "dead_letter_exchange")?;
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.as_str().into()),
        );
        if quorum && options.max_length.is_none() {
            // Dead-lettering (a retry's delay running out, a rejected
            // message) is at most once by default: a message can be lost if
            // the broker stops while moving it. At least once keeps it in
            // its queue until the target confirmed it, and needs the
            // queue to refuse publishes when full rather than drop its head,
            // so a queue bounded by `max_length` (which drops its head, as
            // every engine does) keeps the default.
            arguments.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            arguments.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
    }
    if let Some(key) = &options.dead_letter_routing_key {
        short(key, "dead_letter_routing_key")?;
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(key.as_str().into()),
        );
    }
    if let Some(ttl) = options.message_ttl {
        let ms = i64::try_from(millis(ttl)).map_err(|_| {
            Error::invalid("`message_ttl` is too long for AMQP").with_field("message_ttl")
        })?;
        arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ms));
    }
    if let Some(max) = options.max_length {
        let max = i64::try_from(max).map_err(|_| {
            Error::invalid("`max_length` is too large for AMQP").with_field("max_length")
        })?;
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(max));
    }
    Ok(arguments)
}

/// A message's properties as AMQP `basic` properties.
pub(super) fn to_basic_properties(properties: &MessageProperties) -> Result<BasicProperties> {
    let mut out = BasicProperties::default();
    if let Some(value) = &properties.content_type {
        out = out.with_content_type(short(value, "content_type")?);
    }
    if let Some(value) = &properties.content_encoding {
        out = out.with_content_encoding(short(value, "content_encoding")?);
    }
    if !properties.headers.is_empty() {
        out = out.with_headers(to_amqp_table(&properties.headers, "headers")?);
    }
    if properties.persistent {
        out = out.with_delivery_mode(2);
    }
    if let Some(priority) = properties.priority {
        out = out.with_priority(priority);
    }
    if let Some(value) = &properties.message_id {
        out = out.with_message_id(short(value, "message_id")?);
    }
    if let Some(value) = &properties.correlation_id {
        out = out.with_correlation_id(short(value, "correlation_id")?);
    }
    if let Some(value) = &properties.reply_to {
        out = out.with_reply_to(short(value, "reply_to")?);
    }
    if let Some(ttl) = properties.expiration {
        out = out.with_expiration(millis(ttl).to_string().into());
    }
    Ok(out)
}

/// A received message: its body and the properties strata models. Other
/// properties (`timestamp`, `type`, `user_id`, `app_id`) have no place in
/// [`MessageProperties`] and are not carried.
pub(super) fn to_message(body: Vec<u8>, properties: &BasicProperties) -> Message {
    let text = |value: &Option<ShortString>| value.as_ref().map(|s| s.to_string());
    Message {
        body: body.into(),
        properties: MessageProperties {
            content_type: text(properties.content_type()),
            content_encoding: text(properties.content_encoding()),
            headers: properties
                .headers()
                .as_ref()
                .map(from_amqp_table)
                .unwrap_or_default(),
            priority: *properties.priority(),
            message_id: text(properties.message_id()),
            correlation_id: text(properties.correlation_id()),
            reply_to: text(properties.reply_to()),
            persistent: *properties.delivery_mode() == Some(2),
            // RabbitMQ refuses a publish whose expiration is not a
            // non-negative integer, so what it delivers always parses.
            expiration: properties
                .expiration()
                .as_ref()
                .and_then(|ms| ms.as_str().parse::<u64>().ok())
                .map(Duration::from_millis),
        },
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::{ByteArray, DecimalValue};

    use super::*;

    #[test]
    fn properties_round_trip() {
        let mut nested = FieldTable::new();
        nested.insert("depth".into(), FieldValue::Int(2));
        let mut message = Message::new("body")
            .with_priority(7)
            .with_message_id("m")
            .with_correlation_id("c")
            .with_expiration(Duration::from_secs(2))
            .with_header("s", "v")
            .with_header("i", -5_i64)
            .with_header("b", false)
            .with_header("f", FieldValue::Float(1.25))
            .with_header("a", FieldValue::Array(vec![FieldValue::Int(1), "x".into()]))
            .with_header("t", FieldValue::Table(nested))
            .persistent();
        message.properties.content_type = Some("text/plain".into());
        message.properties.content_encoding = Some("identity".into());
        message.properties.reply_to = Some("back".into());
        let basic = to_basic_properties(&message.properties).unwrap();
        assert_eq!(
            basic.expiration().as_ref().map(|s| s.as_str()),
            Some("2000")
        );
        assert_eq!(*basic.delivery_mode(), Some(2));
        let back = to_message(b"body".to_vec(), &basic);
        assert_eq!(back, message);
    }

    #[test]
    fn durations_round_up_to_milliseconds() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_millis(100)), 100);
        assert_eq!(millis(Duration::from_nanos(100_000_001)), 101);
        assert_eq!(millis(Duration::ZERO), 0);
    }

    #[test]
    fn foreign_types_widen() {
        let mut table = AmqpTable::default();
        table.insert("short".into(), AMQPValue::ShortInt(-3));
        table.insert("ts".into(), AMQPValue::Timestamp(1_700_000_000));
        table.insert(
            "dec".into(),
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 150,
            }),
        );
        table.insert(
            "bytes".into(),
            AMQPValue::ByteArray(ByteArray::from(&b"ab"[..])),
        );
        table.insert("void".into(), AMQPValue::Void);
        let strata = from_amqp_table(&table);
        assert_eq!(strata.get("short"), Some(&FieldValue::Int(-3)));
        assert_eq!(strata.get("ts"), Some(&FieldValue::Int(1_700_000_000)));
        assert_eq!(strata.get("dec"), Some(&FieldValue::Float(1.5)));
        assert_eq!(strata.get("bytes"), Some(&FieldValue::String("ab".into())));
        assert!(!strata.contains_key("void"));
    }

    #[test]
    fn queue_options_become_x_arguments() {
        let options = QueueOptions {
            max_priority: Some(5),
            dead_letter_exchange: Some("dlx".into()),
            dead_letter_routing_key: Some("dead".into()),
            message_ttl: Some(Duration::from_secs(1)),
            max_length: Some(10),
            ..QueueOptions::default()
        };
        let arguments = from_amqp_table(&queue_arguments(&options, QueueType::Classic).unwrap());
        assert_eq!(arguments.get("x-max-priority"), Some(&FieldValue::Int(5)));
        assert_eq!(
            arguments.get("x-dead-letter-exchange"),
            Some(&FieldValue::String("dlx".into()))
        );
        assert_eq!(
            arguments.get("x-dead-letter-routing-key"),
            Some(&FieldValue::String("dead".into()))
        );
        assert_eq!(arguments.get("x-message-ttl"), Some(&FieldValue::Int(1000)));
        assert_eq!(arguments.get("x-max-length"), Some(&FieldValue::Int(10)));
        assert!(
            queue_arguments(&QueueOptions::default(), QueueType::Classic)
                .unwrap()
                .inner()
                .is_empty()
        );
    }

    #[test]
    fn quorum_applies_to_durable_shared_queues_only() {
        let durable = QueueOptions {
            durable: true,
            max_priority: Some(9),
            dead_letter_exchange: Some("dlx".into()),
            ..QueueOptions::default()
        };
        let quorum = from_amqp_table(&queue_arguments(&durable, QueueType::Quorum).unwrap());
        assert_eq!(
            quorum.get("x-queue-type"),
            Some(&FieldValue::String("quorum".into()))
        );
        assert!(!quorum.contains_key("x-max-priority"), "{quorum:?}");
        assert_eq!(
            quorum.get("x-dead-letter-exchange"),
            Some(&FieldValue::String("dlx".into()))
        );
        assert_eq!(
            quorum.get("x-dead-letter-strategy"),
            Some(&FieldValue::String("at-least-once".into()))
        );
        assert_eq!(
            quorum.get("x-overflow"),
            Some(&FieldValue::String("reject-publish".into()))
        );
        let classic = from_amqp_table(&queue_arguments(&durable, QueueType::Classic).unwrap());
        assert!(!classic.contains_key("x-queue-type"));
        assert!(!classic.contains_key("x-dead-letter-strategy"));
        assert_eq!(classic.get("x-max-priority"), Some(&FieldValue::Int(9)));
        for temporary in [
            QueueOptions {
                exclusive: true,
                ..durable.clone()
            },
            QueueOptions {
                auto_delete: true,
                ..durable.clone()
            },
            QueueOptions {
                durable: false,
                ..durable.clone()
            },
        ] {
            assert!(!is_quorum(&temporary, QueueType::Quorum));
            let arguments =
                from_amqp_table(&queue_arguments(&temporary, QueueType::Quorum).unwrap());
            assert!(!arguments.contains_key("x-queue-type"), "{temporary:?}");
            assert_eq!(arguments.get("x-max-priority"), Some(&FieldValue::Int(9)));
        }
    }

    #[test]
    fn overlong_names_are_invalid_input() {
        let long = "x".repeat(MAX_SHORT_STRING + 1);
        let err = short(&long, "queue").unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some("queue"));
        assert!(short(&"y".repeat(MAX_SHORT_STRING), "queue").is_ok());
        let message = Message::new("x").with_header(long, "v");
        assert!(to_basic_properties(&message.properties).is_err());
    }
}
