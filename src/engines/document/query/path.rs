//! Dot paths (`a.b.0.c`) into documents.

use bson::{Bson, Document};

use crate::error::{Error, Result};

/// The value at `path` without array expansion (`a.0` indexes an array).
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let _ = (doc, path);
    None
}

/// Sets the value at `path`, creating intermediate documents.
pub fn set_path(doc: &mut Document, path: &str, value: Bson) -> Result<()> {
    let _ = (doc, path, value);
    Err(Error::unsupported("set_path"))
}

/// Removes the value at `path`; returns what was there.
pub fn remove_path(doc: &mut Document, path: &str) -> Option<Bson> {
    let _ = (doc, path);
    None
}
