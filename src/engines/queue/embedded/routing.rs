//! Exchanges and their bindings: which queues a publish reaches.

use crate::engines::queue::topic::topic_matches;
use crate::engines::queue::{ExchangeKind, ExchangeOptions, FieldTable, FieldValue};
use crate::error::{Error, Result};

/// How a headers binding combines its arguments (`x-match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeaderMatch {
    /// Every argument must match (`all`, the default).
    All,
    /// One argument is enough (`any`).
    Any,
    /// `all`, counting `x-` arguments too (`all-with-x`, RabbitMQ 3.10+).
    AllWithX,
    /// `any`, counting `x-` arguments too (`any-with-x`).
    AnyWithX,
}

impl HeaderMatch {
    /// Reads `x-match` from binding arguments; an unknown value is refused as
    /// RabbitMQ refuses it.
    pub(super) fn from_arguments(arguments: &FieldTable) -> Result<Self> {
        match arguments.get("x-match") {
            None => Ok(HeaderMatch::All),
            Some(FieldValue::String(s)) if s == "all" => Ok(HeaderMatch::All),
            Some(FieldValue::String(s)) if s == "any" => Ok(HeaderMatch::Any),
            Some(FieldValue::String(s)) if s == "all-with-x" => Ok(HeaderMatch::AllWithX),
            Some(FieldValue::String(s)) if s == "any-with-x" => Ok(HeaderMatch::AnyWithX),
            Some(other) => Err(Error::invalid(format!(
                "PRECONDITION_FAILED - invalid x-match field value {other:?}; \
                 expected all, any, all-with-x, or any-with-x"
            ))
            .with_field("x-match")),
        }
    }

    /// Whether `headers` satisfy the binding `arguments`.
    ///
    /// A binding with no counted argument matches everything under `all`
    /// (nothing is required) and nothing under `any`, as in RabbitMQ.
    pub(super) fn matches(self, arguments: &FieldTable, headers: &FieldTable) -> bool {
        let with_x = matches!(self, HeaderMatch::AllWithX | HeaderMatch::AnyWithX);
        let mut counted = arguments
            .iter()
            .filter(|(name, _)| *name != "x-match" && (with_x || !name.starts_with("x-")))
            // Types must agree too: "1" does not match 1, as in RabbitMQ.
            .map(|(name, value)| headers.get(name) == Some(value));
        match self {
            HeaderMatch::All | HeaderMatch::AllWithX => counted.all(|hit| hit),
            HeaderMatch::Any | HeaderMatch::AnyWithX => counted.any(|hit| hit),
        }
    }
}

/// One binding of a queue to an exchange.
#[derive(Debug)]
pub(super) struct Binding {
    /// The bound queue's id (ids are never reused, names may be).
    pub(super) queue: u64,
    pub(super) routing_key: String,
    pub(super) arguments: FieldTable,
    /// Parsed `x-match`, for headers exchanges.
    pub(super) header_match: HeaderMatch,
}

/// A declared exchange.
#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) kind: ExchangeKind,
    pub(super) options: ExchangeOptions,
    pub(super) bindings: Vec<Binding>,
}

impl Exchange {
    /// A new exchange without bindings.
    pub(super) fn new(kind: ExchangeKind, options: ExchangeOptions) -> Self {
        Exchange {
            kind,
            options,
            bindings: Vec::new(),
        }
    }

    /// Appends the ids of the queues a message reaches to `out` (possibly
    /// with duplicates; the caller deduplicates).
    pub(super) fn route(&self, routing_key: &str, headers: &FieldTable, out: &mut Vec<u64>) {
        let hits = self.bindings.iter().filter(|b| match self.kind {
            ExchangeKind::Direct => b.routing_key == routing_key,
            ExchangeKind::Fanout => true,
            ExchangeKind::Topic => topic_matches(&b.routing_key, routing_key),
            ExchangeKind::Headers => b.header_match.matches(&b.arguments, headers),
        });
        out.extend(hits.map(|b| b.queue));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, FieldValue)]) -> FieldTable {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn all_needs_every_argument_and_ignores_x_arguments() {
        let args = table(&[
            ("format", "pdf".into()),
            ("type", "report".into()),
            ("x-note", "ignored".into()),
        ]);
        let both = table(&[("format", "pdf".into()), ("type", "report".into())]);
        let one = table(&[("format", "pdf".into())]);
        assert!(HeaderMatch::All.matches(&args, &both));
        assert!(!HeaderMatch::All.matches(&args, &one));
        assert!(HeaderMatch::Any.matches(&args, &one));
        assert!(!HeaderMatch::AllWithX.matches(&args, &both));
    }

    #[test]
    fn values_must_agree_in_type() {
        let args = table(&[("n", FieldValue::Int(1))]);
        assert!(!HeaderMatch::All.matches(&args, &table(&[("n", "1".into())])));
        assert!(HeaderMatch::All.matches(&args, &table(&[("n", FieldValue::Int(1))])));
    }

    #[test]
    fn empty_bindings_match_all_but_not_any() {
        let args = table(&[("x-match", "any".into())]);
        assert!(!HeaderMatch::Any.matches(&args, &FieldTable::new()));
        assert!(HeaderMatch::All.matches(&FieldTable::new(), &FieldTable::new()));
    }

    #[test]
    fn unknown_x_match_is_refused() {
        let err = HeaderMatch::from_arguments(&table(&[("x-match", "some".into())]));
        assert_eq!(
            err.map_err(|e| e.kind()),
            Err(crate::error::ErrorKind::InvalidInput)
        );
        assert_eq!(
            HeaderMatch::from_arguments(&table(&[("x-match", "any".into())])).ok(),
            Some(HeaderMatch::Any)
        );
    }
}
