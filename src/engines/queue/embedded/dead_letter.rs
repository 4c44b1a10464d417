//! Dead-lettering: the death headers a message collects, and RabbitMQ's
//! rule for breaking dead-letter cycles.

use crate::engines::queue::{FieldTable, FieldValue, Message};

/// Why a message left its queue without being acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeathReason {
    /// `nack`/`reject` without requeue.
    Rejected,
    /// Its time to live ran out at the head of the queue.
    Expired,
    /// Pushed out of the head by `x-max-length`.
    MaxLength,
}

impl DeathReason {
    /// RabbitMQ's name, as it appears in `x-death` and `x-first-death-reason`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLength => "maxlen",
        }
    }
}

/// A message on its way to a dead-letter exchange.
#[derive(Debug)]
pub(super) struct DeadLetter {
    pub(super) exchange: String,
    pub(super) routing_key: String,
    pub(super) message: Message,
    pub(super) reason: DeathReason,
}

/// Records a death in the message's headers, as RabbitMQ 3.12 does:
///
/// - `x-death` is an array of tables, the most recent death first, one per
///   (queue, reason) with `count`, `reason`, `queue`, `exchange`,
///   `routing-keys` and, when the message had its own expiration,
///   `original-expiration` (milliseconds, as a string). A repeated death in
///   the same queue for the same reason increments `count` and moves the
///   entry to the front. RabbitMQ's `time` field is not recorded: field
///   tables here have no timestamp type.
/// - `x-first-death-reason`, `x-first-death-queue` and
///   `x-first-death-exchange` are set on the first death only.
/// - The per-message `expiration` is removed, so that the message does not
///   expire again in the dead-letter queue for the same reason.
pub(super) fn record_death(
    message: &mut Message,
    reason: DeathReason,
    queue: &str,
    exchange: &str,
    routing_key: &str,
) {
    let original_expiration = message.properties.expiration.take();
    let headers = &mut message.properties.headers;
    let mut deaths = match headers.remove("x-death") {
        Some(FieldValue::Array(deaths)) => deaths,
        _ => Vec::new(),
    };
    let existing = deaths.iter().position(|death| {
        death_field(death, "queue") == Some(queue)
            && death_field(death, "reason") == Some(reason.as_str())
    });
    let entry = match existing.map(|at| deaths.remove(at)) {
        Some(FieldValue::Table(mut table)) => {
            let count = match table.get("count") {
                Some(FieldValue::Int(n)) => n.saturating_add(1),
                _ => 1,
            };
            table.insert("count".into(), FieldValue::Int(count));
            table
        }
        _ => {
            let mut table = FieldTable::new();
            table.insert("count".into(), FieldValue::Int(1));
            table.insert("reason".into(), reason.as_str().into());
            table.insert("queue".into(), queue.into());
            table.insert("exchange".into(), exchange.into());
            table.insert(
                "routing-keys".into(),
                FieldValue::Array(vec![routing_key.into()]),
            );
            if let Some(ttl) = original_expiration {
                table.insert(
                    "original-expiration".into(),
                    ttl.as_millis().to_string().into(),
                );
            }
            table
        }
    };
    deaths.insert(0, FieldValue::Table(entry));
    headers.insert("x-death".into(), FieldValue::Array(deaths));
    if !headers.contains_key("x-first-death-reason") {
        headers.insert("x-first-death-reason".into(), reason.as_str().into());
        headers.insert("x-first-death-queue".into(), queue.into());
        headers.insert("x-first-death-exchange".into(), exchange.into());
    }
}

/// Whether delivering a dead letter to `queue` would close a cycle that
/// RabbitMQ drops: the message died in `queue` before, and no death since
/// then (that one included) was a rejection. Rejections are never cycles:
/// a client asked for them.
pub(super) fn is_cycle(message: &Message, reason: DeathReason, queue: &str) -> bool {
    if reason == DeathReason::Rejected {
        return false;
    }
    let Some(FieldValue::Array(deaths)) = message.properties.headers.get("x-death") else {
        return false;
    };
    let Some(last_visit) = deaths
        .iter()
        .position(|death| death_field(death, "queue") == Some(queue))
    else {
        return false;
    };
    deaths[..=last_visit]
        .iter()
        .all(|death| death_field(death, "reason") != Some(DeathReason::Rejected.as_str()))
}

/// A string field of one `x-death` entry.
fn death_field<'a>(death: &'a FieldValue, name: &str) -> Option<&'a str> {
    match death {
        FieldValue::Table(table) => match table.get(name) {
            Some(FieldValue::String(s)) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn deaths(message: &Message) -> Vec<FieldTable> {
        match message.properties.headers.get("x-death") {
            Some(FieldValue::Array(items)) => items
                .iter()
                .map(|i| match i {
                    FieldValue::Table(t) => t.clone(),
                    other => panic!("not a table: {other:?}"),
                })
                .collect(),
            other => panic!("no x-death: {other:?}"),
        }
    }

    #[test]
    fn first_death_headers_are_kept_and_repeats_counted() {
        let mut m = Message::new("x").with_expiration(Duration::from_millis(1500));
        record_death(&mut m, DeathReason::Expired, "q1", "ex", "rk");
        assert_eq!(m.properties.expiration, None);
        record_death(&mut m, DeathReason::Rejected, "q2", "dlx", "rk");
        record_death(&mut m, DeathReason::Expired, "q1", "ex", "rk");
        let h = &m.properties.headers;
        assert_eq!(h.get("x-first-death-reason"), Some(&"expired".into()));
        assert_eq!(h.get("x-first-death-queue"), Some(&"q1".into()));
        assert_eq!(h.get("x-first-death-exchange"), Some(&"ex".into()));
        let d = deaths(&m);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].get("queue"), Some(&"q1".into()));
        assert_eq!(d[0].get("count"), Some(&FieldValue::Int(2)));
        assert_eq!(d[0].get("original-expiration"), Some(&"1500".into()));
        assert_eq!(d[1].get("reason"), Some(&"rejected".into()));
    }

    #[test]
    fn automatic_cycles_are_detected_but_not_through_a_rejection() {
        let mut m = Message::new("x");
        record_death(&mut m, DeathReason::Expired, "a", "", "a");
        assert!(is_cycle(&m, DeathReason::Expired, "a"));
        assert!(!is_cycle(&m, DeathReason::Expired, "b"));
        assert!(!is_cycle(&m, DeathReason::Rejected, "a"));
        record_death(&mut m, DeathReason::Rejected, "b", "dlx", "a");
        assert!(!is_cycle(&m, DeathReason::Expired, "a"));
    }
}
