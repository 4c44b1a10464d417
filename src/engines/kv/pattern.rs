//! Redis glob patterns (in progress).
