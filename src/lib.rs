//! strata: the data plane of an ML platform.
pub mod engines;
pub mod error;

pub use error::{Error, ErrorKind, Result};
