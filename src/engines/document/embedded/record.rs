//! The changes the store logs, and their BSON encoding.
//!
//! # Contracts
//!
//! - One [`Change`] is one log record, so it is replayed whole or not at
//!   all: an `update_many` is one `Put` carrying every after-image.
//! - Updates are logged as after-images (whole documents), never as update
//!   operators, so replay does not depend on how operators evaluate.
//! - A payload is a header document `{lsn, op, c, ...}` followed by the
//!   documents of `Insert`/`Put` each encoded as its own BSON document, so
//!   each document is encoded once and its size is known.

use std::io::Cursor;

use bson::{Bson, Document, doc};

use crate::engines::document::IndexSpec;
use crate::error::{Error, Result};

/// One committed change to the database.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    /// Creates a collection, or sets its validator when it exists.
    CreateCollection {
        collection: String,
        validator: Option<Document>,
    },
    /// Drops a collection.
    DropCollection { collection: String },
    /// Drops every collection.
    DropDatabase,
    /// Creates an index (its name set).
    CreateIndex { collection: String, spec: IndexSpec },
    /// Drops an index by name.
    DropIndex { collection: String, name: String },
    /// Appends documents (each with its `_id`) in this order.
    Insert {
        collection: String,
        documents: Vec<Document>,
    },
    /// Replaces documents, found by `_id`, with these contents.
    Put {
        collection: String,
        documents: Vec<Document>,
    },
    /// Deletes documents by `_id`.
    Delete { collection: String, ids: Vec<Bson> },
}

/// A decoded payload: the change, its log sequence number, and the encoded
/// size of each carried document.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub(crate) lsn: u64,
    pub(crate) change: Change,
    pub(crate) sizes: Vec<u32>,
}

/// MongoDB's limit on the encoded size of one document.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 16 * 1024 * 1024;

/// Encodes one document as BSON, refusing one over MongoDB's 16 MiB limit.
pub(crate) fn encode_document(document: &Document) -> Result<Vec<u8>> {
    let bytes = document
        .to_vec()
        .map_err(|e| Error::invalid(format!("document cannot be encoded as BSON: {e}")))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::invalid(format!(
            "document is {} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Encodes `change` as a payload. `encoded` holds the documents of an
/// `Insert`/`Put` already encoded by [`encode_document`], in order (it is
/// ignored for the other changes).
pub(crate) fn encode(lsn: u64, change: &Change, encoded: &[Vec<u8>]) -> Result<Vec<u8>> {
    let lsn = i64::try_from(lsn).map_err(|_| Error::internal("log sequence number overflow"))?;
    let count = encoded.len() as i64;
    let (header, carries_documents) = match change {
        Change::CreateCollection {
            collection,
            validator,
        } => {
            let mut h = doc! {"lsn": lsn, "op": "create_collection", "c": collection};
            if let Some(v) = validator {
                h.insert("validator", v.clone());
            }
            (h, false)
        }
        Change::DropCollection { collection } => (
            doc! {"lsn": lsn, "op": "drop_collection", "c": collection},
            false,
        ),
        Change::DropDatabase => (doc! {"lsn": lsn, "op": "drop_database"}, false),
        Change::CreateIndex { collection, spec } => {
            let mut h = doc! {
                "lsn": lsn, "op": "create_index", "c": collection,
                "keys": spec.keys.clone(),
                "name": spec.effective_name(),
                "unique": spec.unique,
            };
            // Absent in records of stores from before TTL indexes.
            if let Some(after) = spec.expire_after {
                h.insert("expire_after_secs", after.as_secs() as i64);
            }
            (h, false)
        }
        Change::DropIndex { collection, name } => (
            doc! {"lsn": lsn, "op": "drop_index", "c": collection, "name": name},
            false,
        ),
        Change::Insert {
            collection,
            documents,
        }
        | Change::Put {
            collection,
            documents,
        } => {
            if documents.len() != encoded.len() {
                return Err(Error::internal(
                    "log record documents and their encodings differ in number",
                ));
            }
            let op = if matches!(change, Change::Insert { .. }) {
                "insert"
            } else {
                "put"
            };
            (
                doc! {"lsn": lsn, "op": op, "c": collection, "n": count},
                true,
            )
        }
        Change::Delete { collection, ids } => (
            doc! {"lsn": lsn, "op": "delete", "c": collection, "ids": ids.clone()},
            false,
        ),
    };
    let mut buf = header
        .to_vec()
        .map_err(|e| Error::internal(format!("encoding a log record: {e}")))?;
    if carries_documents {
        for bytes in encoded {
            buf.extend_from_slice(bytes);
        }
    }
    Ok(buf)
}

/// Encodes an `Insert` of documents already encoded by [`encode_document`]
/// without needing them decoded: what a snapshot writes.
pub(crate) fn encode_insert(lsn: u64, collection: &str, encoded: &[Vec<u8>]) -> Result<Vec<u8>> {
    let lsn = i64::try_from(lsn).map_err(|_| Error::internal("log sequence number overflow"))?;
    let header = doc! {"lsn": lsn, "op": "insert", "c": collection, "n": encoded.len() as i64};
    let mut buf = header
        .to_vec()
        .map_err(|e| Error::internal(format!("encoding a log record: {e}")))?;
    for bytes in encoded {
        buf.extend_from_slice(bytes);
    }
    Ok(buf)
}

/// Decodes a payload written by [`encode`]. Errors describe what is wrong;
/// the caller adds the file and offset.
pub(crate) fn decode(payload: &[u8]) -> std::result::Result<Decoded, String> {
    let mut cursor = Cursor::new(payload);
    let header =
        Document::from_reader(&mut cursor).map_err(|e| format!("unreadable header: {e}"))?;
    let lsn = match header.get("lsn") {
        Some(Bson::Int64(n)) if *n >= 0 => *n as u64,
        _ => return Err("header has no valid lsn".into()),
    };
    let op = header
        .get_str("op")
        .map_err(|_| "header has no op".to_string())?;
    let name = || -> std::result::Result<String, String> {
        header
            .get_str("c")
            .map(str::to_string)
            .map_err(|_| format!("{op} record has no collection"))
    };
    let mut sizes = Vec::new();
    let mut documents = |count: i64| -> std::result::Result<Vec<Document>, String> {
        let mut docs = Vec::new();
        for _ in 0..count {
            let before = cursor.position();
            let d = Document::from_reader(&mut cursor)
                .map_err(|e| format!("unreadable document: {e}"))?;
            sizes.push((cursor.position() - before) as u32);
            docs.push(d);
        }
        Ok(docs)
    };
    let change = match op {
        "create_collection" => Change::CreateCollection {
            collection: name()?,
            validator: header.get_document("validator").ok().cloned(),
        },
        "drop_collection" => Change::DropCollection {
            collection: name()?,
        },
        "drop_database" => Change::DropDatabase,
        "create_index" => {
            let keys = header
                .get_document("keys")
                .map_err(|_| "create_index record has no keys".to_string())?
                .clone();
            let index_name = header
                .get_str("name")
                .map_err(|_| "create_index record has no name".to_string())?;
            let unique = header.get_bool("unique").unwrap_or(false);
            let expire_after = match header.get("expire_after_secs") {
                None => None,
                Some(Bson::Int64(secs)) if *secs >= 0 => {
                    Some(std::time::Duration::from_secs(*secs as u64))
                }
                Some(other) => {
                    return Err(format!(
                        "create_index record has a bad expire_after_secs: {other}"
                    ));
                }
            };
            Change::CreateIndex {
                collection: name()?,
                spec: IndexSpec {
                    keys,
                    name: Some(index_name.to_string()),
                    unique,
                    expire_after,
                },
            }
        }
        "drop_index" => Change::DropIndex {
            collection: name()?,
            name: header
                .get_str("name")
                .map_err(|_| "drop_index record has no name".to_string())?
                .to_string(),
        },
        "insert" | "put" => {
            let collection = name()?;
            let count = header
                .get_i64("n")
                .map_err(|_| format!("{op} record has no count"))?;
            let docs = documents(count)?;
            if op == "insert" {
                Change::Insert {
                    collection,
                    documents: docs,
                }
            } else {
                Change::Put {
                    collection,
                    documents: docs,
                }
            }
        }
        "delete" => Change::Delete {
            collection: name()?,
            ids: header
                .get_array("ids")
                .map_err(|_| "delete record has no ids".to_string())?
                .clone(),
        },
        other => return Err(format!("unknown op {other:?}")),
    };
    if cursor.position() as usize != payload.len() {
        return Err("trailing bytes after the record's documents".into());
    }
    Ok(Decoded { lsn, change, sizes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_round_trips() {
        let changes = vec![
            Change::CreateCollection {
                collection: "c".into(),
                validator: Some(doc! {"$jsonSchema": {"bsonType": "object"}}),
            },
            Change::CreateCollection {
                collection: "c".into(),
                validator: None,
            },
            Change::DropCollection {
                collection: "c".into(),
            },
            Change::DropDatabase,
            Change::CreateIndex {
                collection: "c".into(),
                spec: IndexSpec::new(doc! {"a": 1, "b": -1})
                    .named("a_1_b_-1")
                    .unique(),
            },
            Change::DropIndex {
                collection: "c".into(),
                name: "a_1".into(),
            },
            Change::Insert {
                collection: "c".into(),
                documents: vec![doc! {"_id": 1, "x": "y"}, doc! {"_id": 2}],
            },
            Change::Put {
                collection: "c".into(),
                documents: vec![doc! {"_id": 1, "x": "z"}],
            },
            Change::Delete {
                collection: "c".into(),
                ids: vec![Bson::Int32(1), Bson::String("k".into())],
            },
        ];
        for (lsn, change) in changes.into_iter().enumerate() {
            let encoded: Vec<Vec<u8>> = match &change {
                Change::Insert { documents, .. } | Change::Put { documents, .. } => documents
                    .iter()
                    .map(|d| encode_document(d).unwrap())
                    .collect(),
                _ => Vec::new(),
            };
            let bytes = encode(lsn as u64, &change, &encoded).unwrap();
            let decoded = decode(&bytes).unwrap();
            assert_eq!(decoded.lsn, lsn as u64);
            assert_eq!(decoded.change, change);
            let sizes: Vec<u32> = encoded.iter().map(|b| b.len() as u32).collect();
            assert_eq!(decoded.sizes, sizes);
        }
    }

    proptest::proptest! {
        /// Whatever the bytes, decoding answers with a value or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        /// Flipping any byte of a valid payload never panics either.
        #[test]
        fn damaged_payloads_never_panic(at in 0usize..64, bit in 0u8..8) {
            let document = doc! {"_id": 1, "s": "text", "a": [1, 2]};
            let encoded = vec![encode_document(&document).unwrap()];
            let change = Change::Put { collection: "c".into(), documents: vec![document] };
            let mut bytes = encode(7, &change, &encoded).unwrap();
            let at = at % bytes.len();
            bytes[at] ^= 1 << bit;
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn a_snapshot_insert_is_an_insert() {
        let documents = vec![doc! {"_id": 1, "a": "b"}, doc! {"_id": 2}];
        let encoded: Vec<Vec<u8>> = documents
            .iter()
            .map(|d| encode_document(d).unwrap())
            .collect();
        let change = Change::Insert {
            collection: "c".into(),
            documents,
        };
        assert_eq!(
            encode_insert(9, "c", &encoded).unwrap(),
            encode(9, &change, &encoded).unwrap()
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[1, 2, 3]).is_err());
        assert!(decode(&[]).is_err());
        let document = doc! {"_id": 1};
        let encoded = vec![encode_document(&document).unwrap()];
        let change = Change::Insert {
            collection: "c".into(),
            documents: vec![document],
        };
        let mut bytes = encode(1, &change, &encoded).unwrap();
        bytes.truncate(bytes.len() - 3);
        assert!(decode(&bytes).is_err());
    }
}
