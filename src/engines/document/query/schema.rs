//! `$jsonSchema` collection validators.

use bson::Document;

use crate::error::{Error, Result};

/// A parsed validator.
#[derive(Debug, Clone, PartialEq)]
pub struct Validator {
    _private: (),
}

impl Validator {
    /// Parses `{"$jsonSchema": {...}}`; keywords outside `bsonType`,
    /// `required`, `properties` (and the ones documented in this module) are
    /// `Unsupported`.
    pub fn parse(validator: &Document) -> Result<Validator> {
        let _ = validator;
        Err(Error::unsupported("validators"))
    }

    /// Checks a document; `InvalidInput` with the failing field set
    /// (`Error::field`) when it fails.
    pub fn validate(&self, doc: &Document) -> Result<()> {
        let _ = doc;
        Err(Error::unsupported("validators"))
    }
}
