//! Update operators.

use bson::Document;

use crate::error::{Error, Result};

/// A parsed, validated update document.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    _private: (),
}

impl Update {
    /// Parses an update of operators only; a document without operators, an
    /// unknown operator, or two operators on the same path is an error.
    pub fn parse(update: &Document) -> Result<Update> {
        let _ = update;
        Err(Error::unsupported("updates"))
    }

    /// Applies the update; returns whether the document changed. Fails
    /// without changing `doc` when an operator meets the wrong type (`$inc`
    /// of a string) or the update would change `_id`.
    pub fn apply(&self, doc: &mut Document) -> Result<bool> {
        let _ = doc;
        Err(Error::unsupported("updates"))
    }
}
