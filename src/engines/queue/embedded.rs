//! The embedded broker (in progress).
