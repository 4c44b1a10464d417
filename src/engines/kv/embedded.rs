//! The embedded key-value store (in progress).
