//! The embedded document store (in progress).
