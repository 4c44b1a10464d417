//! The four engine kinds: relational (sea-orm), document, key-value and
//! queue. Each non-relational kind is a trait shaped after its reference
//! system, with an embedded implementation and a real adapter.
//!
//! This layer knows nothing of ML: it stores documents, values and messages.

pub mod document;
pub mod kv;
pub mod queue;
