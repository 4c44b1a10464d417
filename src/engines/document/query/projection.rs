//! Find projections.

use bson::Document;

use crate::error::{Error, Result};

/// A parsed projection: inclusion or exclusion, `_id` on by default.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    _private: (),
}

impl Projection {
    /// Parses `{field: 0 | 1 | true | false}`; mixing inclusion and
    /// exclusion (other than `_id`) is `InvalidInput`.
    pub fn parse(projection: &Document) -> Result<Projection> {
        let _ = projection;
        Err(Error::unsupported("projections"))
    }

    /// The projected document.
    pub fn apply(&self, doc: &Document) -> Document {
        doc.clone()
    }
}
