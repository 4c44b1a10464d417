//! How an entry is stored in L2: a small binary envelope with a format
//! version, then the value in MessagePack.
//!
//! ```text
//! [format: u8 = 1][kind: u8 (0 value, 1 absent)][created_ms: u64 LE]
//! [fresh_ms: u64 LE][tag count: u16 LE]([tag len: u16 LE][tag bytes])*
//! [MessagePack of the value, when kind = 0]
//! ```
//!
//! `created_ms` is the wall-clock time the value was loaded (Unix
//! milliseconds) and `fresh_ms` how long it stays fresh, so every instance
//! reading the entry agrees on its age. A value whose format byte is not
//! [`FORMAT`], or that does not decode, is a miss, never an error: an older
//! or newer strata sharing the store loads the value again.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The format byte this version writes and reads.
pub const FORMAT: u8 = 1;

const HEADER: usize = 1 + 1 + 8 + 8 + 2;

/// What an envelope holds, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<V> {
    /// The value; `None` for a cached "not found".
    pub value: Option<V>,
    /// When it was loaded, Unix milliseconds.
    pub created_ms: u64,
    /// How long it is fresh from `created_ms`.
    pub fresh_ms: u64,
    /// Its tags.
    pub tags: Vec<String>,
}

/// Encodes an envelope. Fails only when the value cannot be serialized or a
/// tag is longer than 65,535 bytes.
pub fn encode<V: Serialize>(
    value: Option<&V>,
    created_ms: u64,
    fresh_ms: u64,
    tags: &[String],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER + 64);
    out.push(FORMAT);
    out.push(if value.is_some() { 0 } else { 1 });
    out.extend_from_slice(&created_ms.to_le_bytes());
    out.extend_from_slice(&fresh_ms.to_le_bytes());
    let count = u16::try_from(tags.len())
        .map_err(|_| Error::invalid("an entry has more than 65,535 tags"))?;
    out.extend_from_slice(&count.to_le_bytes());
    for tag in tags {
        let len = u16::try_from(tag.len())
            .map_err(|_| Error::invalid("a cache tag is longer than 65,535 bytes"))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    if let Some(value) = value {
        rmp_serde::encode::write_named(&mut out, value).map_err(|e| {
            Error::internal(format!("a cache value does not serialize: {e}"))
                .with_operation("cache_encode")
        })?;
    }
    Ok(out)
}

/// Decodes an envelope; `None` when it is of another format or damaged.
pub fn decode<V: DeserializeOwned>(raw: &[u8]) -> Option<Envelope<V>> {
    if raw.len() < HEADER || raw[0] != FORMAT {
        return None;
    }
    let absent = match raw[1] {
        0 => false,
        1 => true,
        _ => return None,
    };
    let created_ms = u64::from_le_bytes(raw[2..10].try_into().ok()?);
    let fresh_ms = u64::from_le_bytes(raw[10..18].try_into().ok()?);
    let count = u16::from_le_bytes(raw[18..20].try_into().ok()?);
    let mut at = HEADER;
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = usize::from(u16::from_le_bytes(raw.get(at..at + 2)?.try_into().ok()?));
        at += 2;
        let tag = std::str::from_utf8(raw.get(at..at + len)?).ok()?;
        tags.push(tag.to_owned());
        at += len;
    }
    let rest = &raw[at..];
    let value = if absent {
        if !rest.is_empty() {
            return None;
        }
        None
    } else {
        Some(rmp_serde::from_slice(rest).ok()?)
    };
    Some(Envelope {
        value,
        created_ms,
        fresh_ms,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Row {
        id: String,
        score: f64,
        extra: Option<serde_json::Value>,
    }

    #[test]
    fn a_value_round_trips() {
        let row = Row {
            id: "m1".into(),
            score: 0.5,
            extra: Some(serde_json::json!({"a": [1, 2]})),
        };
        let raw = encode(Some(&row), 7, 9, &["t1".into(), "t2".into()]).unwrap();
        let back: Envelope<Row> = decode(&raw).unwrap();
        assert_eq!(back.value, Some(row));
        assert_eq!((back.created_ms, back.fresh_ms), (7, 9));
        assert_eq!(back.tags, vec!["t1".to_string(), "t2".to_string()]);
    }

    #[test]
    fn absence_round_trips() {
        let raw = encode::<Row>(None, 1, 2, &[]).unwrap();
        let back: Envelope<Row> = decode(&raw).unwrap();
        assert_eq!(back.value, None);
    }

    #[test]
    fn another_format_is_a_miss() {
        let mut raw = encode(Some(&1u32), 1, 2, &[]).unwrap();
        raw[0] = FORMAT + 1;
        assert!(decode::<u32>(&raw).is_none());
        assert!(decode::<u32>(b"plain text someone else wrote").is_none());
        assert!(decode::<u32>(&[]).is_none());
    }

    #[test]
    fn a_value_of_another_shape_is_a_miss() {
        let raw = encode(Some(&"text"), 1, 2, &[]).unwrap();
        assert!(decode::<Row>(&raw).is_none());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<Row>(&raw);
            let _ = decode::<String>(&raw);
        }

        #[test]
        fn any_entry_round_trips(
            value in proptest::option::of(".{0,20}"),
            created in any::<u64>(),
            fresh in any::<u64>(),
            tags in proptest::collection::vec(".{0,10}", 0..4),
        ) {
            let raw = encode(value.as_ref(), created, fresh, &tags).unwrap();
            let back: Envelope<String> = decode(&raw).unwrap();
            prop_assert_eq!(back, Envelope { value, created_ms: created, fresh_ms: fresh, tags });
        }

        #[test]
        fn a_truncated_entry_is_a_miss_or_itself(cut in 0usize..40) {
            let raw = encode(Some(&"value".to_string()), 3, 4, &["tag".into()]).unwrap();
            let cut = cut.min(raw.len());
            if let Some(back) = decode::<String>(&raw[..cut]) {
                prop_assert_eq!(cut, raw.len());
                prop_assert_eq!(back.value.as_deref(), Some("value"));
            }
        }
    }
}
