//! Run search (in progress).
