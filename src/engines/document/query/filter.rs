//! Query filters.

use bson::{Bson, Document};

use crate::error::{Error, Result};

/// What a filter says about one field, for the index planner.
// Boxing the range ends would change the public shape the store is written
// against; bounds are computed once per query, so the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum FieldBounds {
    /// The field equals one of these values (`{f: v}`, `$eq`, `$in`).
    In(Vec<Bson>),
    /// The field lies in a range; each end is `(value, inclusive)`.
    Range {
        /// Lower end.
        lower: Option<(Bson, bool)>,
        /// Upper end.
        upper: Option<(Bson, bool)>,
    },
}

/// A parsed, validated filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    _private: (),
}

impl Filter {
    /// Parses a filter document; `Unsupported` names an unknown operator,
    /// `InvalidInput` a malformed one.
    pub fn parse(filter: &Document) -> Result<Filter> {
        let _ = filter;
        Err(Error::unsupported("filters"))
    }

    /// Whether `doc` matches.
    pub fn matches(&self, doc: &Document) -> bool {
        let _ = doc;
        false
    }

    /// Top-level equality conditions (`{a: 1, b: {$eq: 2}}`, inside `$and`
    /// too), which seed the document an upsert inserts.
    pub fn equality_fields(&self) -> Vec<(String, Bson)> {
        Vec::new()
    }

    /// Bounds that every matching document's `field` must satisfy, when the
    /// filter implies any (top level or inside `$and`). The store uses them
    /// to answer from an index; it still checks `matches` on each candidate.
    pub fn bounds(&self, field: &str) -> Option<FieldBounds> {
        let _ = field;
        None
    }
}
