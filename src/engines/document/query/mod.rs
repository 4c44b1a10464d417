//! MongoDB's query language, evaluated in process: filters, updates,
//! projections, sorts, aggregation pipelines and `$jsonSchema` validators
//! over `bson` documents.
//!
//! Pure functions only: no storage, no I/O. The embedded document store uses
//! them; each parser checks its whole input up front, so an operator outside
//! the supported subset fails with `Unsupported` naming it before anything
//! runs.
//!
//! # Layout
//!
//! - [`compare`]: MongoDB's total order over BSON values, across types.
//! - [`path`]: dot paths into documents and arrays.
//! - [`filter`]: query filters (`{field: {$op: value}}`).
//! - [`update`]: update operators (`$set`, `$inc`, ...).
//! - [`projection`]: find projections.
//! - [`sort`]: sort specifications.
//! - [`expr`]: aggregation expressions (`"$field"`, `$add`, ...).
//! - [`aggregate`]: aggregation pipelines.
//! - [`schema`]: `$jsonSchema` validators.
//! - `arith` (private): arithmetic with MongoDB's numeric result types,
//!   shared by `$inc`, expressions and accumulators.
//! - `date` (private): `$dateToString`'s format specifiers and time zones.

pub mod aggregate;
mod arith;
pub mod compare;
mod date;
pub mod expr;
pub mod filter;
pub mod path;
pub mod projection;
pub mod schema;
pub mod sort;
pub mod update;
