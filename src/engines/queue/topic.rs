//! Topic routing-key patterns (in progress).
