//! Sort specifications.

use std::cmp::Ordering;

use bson::Document;

use crate::error::{Error, Result};

/// A parsed sort: fields with directions.
#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    /// `(path, ascending)` in priority order.
    pub keys: Vec<(String, bool)>,
}

impl SortSpec {
    /// Parses `{field: 1 | -1, ...}`.
    pub fn parse(sort: &Document) -> Result<SortSpec> {
        let _ = sort;
        Err(Error::unsupported("sort"))
    }

    /// Compares two documents under this sort (MongoDB's order; an array
    /// field sorts by its smallest element ascending, largest descending).
    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        let _ = (a, b);
        Ordering::Equal
    }
}
