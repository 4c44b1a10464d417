//! Redis errors mapped onto strata's [`ErrorKind`]s.
//!
//! The driver's error type never leaves this module: every failure becomes a
//! strata [`Error`] with the operation and the (redacted) target attached.
//! Redis reports most failures as a code (`WRONGTYPE`, `ERR`, `NOAUTH`)
//! followed by free text; the code decides the kind, and for the generic
//! `ERR` the text does — the phrases matched here are the ones Redis 6 and 7
//! use for bad arguments (`t_string.c`, `t_hash.c`, `object.c`, `t_zset.c`,
//! `expire.c`, `db.c`). A syntax error counts as bad arguments too: strata
//! sends what the caller asked for, so Redis refusing the form of a command
//! (a `SCAN COUNT 0`, `ZADD` flags with no member) is the caller's input.

use bb8_redis::bb8::RunError;
use bb8_redis::redis::{RedisError, ServerError};

use crate::error::{Error, ErrorKind};

/// Where a failure happened: while opening a connection, a timeout or a
/// refusal means the server cannot be reached (`Unavailable`); during a
/// command, a timeout is a `Timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Opening or checking out a connection.
    Connect,
    /// Running a command on an open connection.
    Command,
}

/// Phrases of Redis's `ERR` replies that mean the arguments were wrong, not
/// the server: matched case-insensitively.
const INVALID_INPUT_PHRASES: &[&str] = &[
    "not an integer",
    "out of range",
    "not a valid float",
    "is not a float",
    "would overflow",
    "nan or infinity",
    "not a number",
    "invalid expire time",
    "wrong number of arguments",
    "syntax error",
    "not compatible",
    "supports a single increment-element pair",
    "invalid cursor",
];

/// Phrases of `ERR` replies that mean the server cannot serve now.
const UNAVAILABLE_PHRASES: &[&str] = &["max number of clients reached"];

/// A server error reply (`-CODE detail`), from a single command or from one
/// command of a pipeline.
pub(super) fn from_server(code: &str, detail: Option<&str>) -> Error {
    let text = match detail {
        Some(detail) => format!("{code} {detail}"),
        None => code.to_owned(),
    };
    match code {
        "WRONGTYPE" => Error::wrong_type(),
        "WRONGPASS" | "NOAUTH" => Error::new(
            ErrorKind::AuthenticationFailed,
            format!("authentication failed: {text}"),
        ),
        // The user is known but may not run this: closest to a refused
        // credential, and as little worth retrying.
        "NOPERM" => Error::new(
            ErrorKind::AuthenticationFailed,
            format!("permission denied: {text}"),
        ),
        "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY" | "OOM"
        | "MISCONF" => Error::new(ErrorKind::Unavailable, text),
        "ERR" => {
            let lower = text.to_ascii_lowercase();
            if INVALID_INPUT_PHRASES.iter().any(|p| lower.contains(p)) {
                Error::invalid(text)
            } else if UNAVAILABLE_PHRASES.iter().any(|p| lower.contains(p)) {
                Error::new(ErrorKind::Unavailable, text)
            } else {
                Error::internal(text)
            }
        }
        _ => Error::internal(text),
    }
}

/// An error reply found inside a pipeline's answers.
pub(super) fn from_server_error(error: &ServerError) -> Error {
    from_server(error.code(), error.details())
}

/// Any driver error.
pub(super) fn from_redis(error: RedisError, phase: Phase) -> Error {
    use bb8_redis::redis::ErrorKind as K;
    let mapped = if let Some(code) = error.code() {
        from_server(code, error.detail())
    } else if error.kind() == K::AuthenticationFailed {
        // The driver's own text ("Password authentication failed -
        // AuthenticationFailed") adds nothing; it stays as the source.
        Error::new(ErrorKind::AuthenticationFailed, "authentication failed")
    } else if crate::engines::tls::is_handshake_failure(&error) {
        // A certificate that does not verify, or a server that does not
        // speak TLS: the URL or the trusted CA is wrong, and retrying will
        // not change that.
        Error::new(
            ErrorKind::Config,
            format!("TLS handshake failed (certificate verification or TLS mismatch): {error}"),
        )
    } else if error.is_timeout() {
        match phase {
            Phase::Connect => Error::new(
                ErrorKind::Unavailable,
                format!("timed out connecting: {error}"),
            ),
            Phase::Command => Error::new(ErrorKind::Timeout, error.to_string()),
        }
    } else if error.is_connection_refusal() || error.is_connection_dropped() || error.is_io_error()
    {
        Error::new(ErrorKind::Unavailable, error.to_string())
    } else if error.kind() == K::InvalidClientConfig {
        Error::new(ErrorKind::Config, error.to_string())
    } else {
        Error::internal(error.to_string())
    };
    mapped.with_source(error)
}

/// A failure to check a connection out of the pool.
pub(super) fn from_pool(error: RunError<RedisError>) -> Error {
    match error {
        RunError::User(e) => from_redis(e, Phase::Connect),
        RunError::TimedOut => Error::new(
            ErrorKind::Unavailable,
            "no connection from the pool within the connect timeout",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_phrases_choose_the_kind() {
        let cases = [
            (
                "WRONGTYPE",
                Some("Operation against a key holding the wrong kind of value"),
                ErrorKind::WrongType,
            ),
            (
                "ERR",
                Some("value is not an integer or out of range"),
                ErrorKind::InvalidInput,
            ),
            (
                "ERR",
                Some("increment or decrement would overflow"),
                ErrorKind::InvalidInput,
            ),
            (
                "ERR",
                Some("value is not a valid float"),
                ErrorKind::InvalidInput,
            ),
            (
                "ERR",
                Some("increment would produce NaN or Infinity"),
                ErrorKind::InvalidInput,
            ),
            (
                "ERR",
                Some("resulting score is not a number (NaN)"),
                ErrorKind::InvalidInput,
            ),
            (
                "ERR",
                Some("wrong number of arguments for 'del' command"),
                ErrorKind::InvalidInput,
            ),
            ("ERR", Some("syntax error"), ErrorKind::InvalidInput),
            (
                "ERR",
                Some("XX and NX options at the same time are not compatible"),
                ErrorKind::InvalidInput,
            ),
            (
                "ERR",
                Some("INCR option supports a single increment-element pair"),
                ErrorKind::InvalidInput,
            ),
            ("ERR", Some("invalid cursor"), ErrorKind::InvalidInput),
            (
                "ERR",
                Some("hash value is not a float"),
                ErrorKind::InvalidInput,
            ),
            (
                "ERR",
                Some("value is NaN or Infinity"),
                ErrorKind::InvalidInput,
            ),
            ("ERR", Some("unknown command 'FOO'"), ErrorKind::Internal),
            (
                "WRONGPASS",
                Some("invalid username-password pair or user is disabled."),
                ErrorKind::AuthenticationFailed,
            ),
            (
                "NOAUTH",
                Some("Authentication required."),
                ErrorKind::AuthenticationFailed,
            ),
            ("LOADING", None, ErrorKind::Unavailable),
            ("SOMETHINGNEW", None, ErrorKind::Internal),
        ];
        for (code, detail, kind) in cases {
            assert_eq!(from_server(code, detail).kind(), kind, "{code} {detail:?}");
        }
    }

    #[test]
    fn io_errors_depend_on_the_phase() {
        let timed_out = || {
            RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        };
        assert_eq!(
            from_redis(timed_out(), Phase::Connect).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(
            from_redis(timed_out(), Phase::Command).kind(),
            ErrorKind::Timeout
        );
        let refused = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(
            from_redis(refused, Phase::Command).kind(),
            ErrorKind::Unavailable
        );
    }
}
