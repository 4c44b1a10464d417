//! lapin's errors mapped into strata's [`Error`].
//!
//! AMQP reply codes carry the meaning: `404 NOT_FOUND` → `NotFound`,
//! `406 PRECONDITION_FAILED` and `405 RESOURCE_LOCKED` → `Conflict`,
//! `403 ACCESS_REFUSED` → `AuthenticationFailed` when it is about the user's
//! permissions and `InvalidInput` otherwise (RabbitMQ also uses it for the
//! default exchange and the reserved `amq.` prefix). A lost or refused
//! connection, a closed channel, a forced close and a missed heartbeat are
//! `Unavailable`: a retry reconnects. A TLS failure (a peer that does not
//! speak TLS, a certificate that does not verify) is `Config`. lapin's error
//! is kept as the source.

use lapin::ErrorKind as LapinKind;

use crate::error::{Error, ErrorKind};

/// The reply codes of AMQP 0-9-1 that strata tells apart.
mod code {
    pub(super) const CONNECTION_FORCED: u16 = 320;
    pub(super) const CONTENT_TOO_LARGE: u16 = 311;
    pub(super) const ACCESS_REFUSED: u16 = 403;
    pub(super) const NOT_FOUND: u16 = 404;
    pub(super) const RESOURCE_LOCKED: u16 = 405;
    pub(super) const PRECONDITION_FAILED: u16 = 406;
    pub(super) const RESOURCE_ERROR: u16 = 506;
    pub(super) const NOT_ALLOWED: u16 = 530;
    pub(super) const INTERNAL_ERROR: u16 = 541;
}

/// The AMQP reply code of a broker-sent error, if it is one.
pub(super) fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        LapinKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// The text of a broker-sent error (`NOT_FOUND - no exchange 'x' in vhost
/// '/'`), if it is one.
pub(super) fn reply_text(error: &lapin::Error) -> Option<&str> {
    match error.kind() {
        LapinKind::ProtocolError(amqp) => Some(amqp.get_message().as_str()),
        _ => None,
    }
}

/// Whether the error says the thing operated on does not exist.
pub(super) fn is_not_found(error: &lapin::Error) -> bool {
    reply_code(error) == Some(code::NOT_FOUND)
}

/// Maps an error of an operation on an open connection.
///
/// `operation` and `target` become the error's context; `target` is the
/// redacted URL.
pub(super) fn map(error: lapin::Error, operation: &'static str, target: &str) -> Error {
    let (kind, message) = classify(&error, false);
    Error::new(kind, message)
        .with_operation(operation)
        .with_target(target)
        .with_source(error)
}

/// Maps an error of the connection handshake, where `ACCESS_REFUSED` and a
/// refused vhost mean the credentials were refused.
pub(super) fn map_connect(error: lapin::Error, target: &str) -> Error {
    let (kind, message) = classify(&error, true);
    Error::new(kind, message)
        .with_operation("connect")
        .with_target(target)
        .with_source(error)
}

fn classify(error: &lapin::Error, connecting: bool) -> (ErrorKind, String) {
    match error.kind() {
        LapinKind::ProtocolError(amqp) => {
            let text = amqp.get_message().as_str();
            let kind = match amqp.get_id() {
                code::NOT_FOUND => ErrorKind::NotFound,
                code::PRECONDITION_FAILED if text.contains("invalid arg") => {
                    ErrorKind::InvalidInput
                }
                code::PRECONDITION_FAILED | code::RESOURCE_LOCKED => ErrorKind::Conflict,
                code::ACCESS_REFUSED if connecting || text.contains("refused for user") => {
                    ErrorKind::AuthenticationFailed
                }
                code::ACCESS_REFUSED => ErrorKind::InvalidInput,
                code::NOT_ALLOWED if text.contains("refused for user") => {
                    ErrorKind::AuthenticationFailed
                }
                code::NOT_ALLOWED if connecting => ErrorKind::Config,
                code::CONTENT_TOO_LARGE => ErrorKind::InvalidInput,
                code::CONNECTION_FORCED | code::RESOURCE_ERROR | code::INTERNAL_ERROR => {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Internal,
            };
            let message = if kind == ErrorKind::AuthenticationFailed {
                format!("rabbitmq refused the credentials: {text}")
            } else {
                format!("rabbitmq: {text}")
            };
            (kind, message)
        }
        // rustls reports a peer that does not speak TLS, and a certificate it
        // cannot verify, as invalid data: the URL or the trust store is
        // wrong, and retrying will not change that.
        LapinKind::IOError(io) if io.kind() == std::io::ErrorKind::InvalidData => (
            ErrorKind::Config,
            format!("rabbitmq connection failed (TLS or protocol mismatch): {io}"),
        ),
        LapinKind::IOError(io) if io.kind() == std::io::ErrorKind::TimedOut => (
            ErrorKind::Unavailable,
            format!("rabbitmq did not answer: {io}"),
        ),
        LapinKind::IOError(io) => (
            ErrorKind::Unavailable,
            format!("rabbitmq connection failed: {io}"),
        ),
        LapinKind::InvalidChannel(_)
        | LapinKind::InvalidChannelState(..)
        | LapinKind::InvalidConnectionState(_)
        | LapinKind::MissingHeartbeatError
        | LapinKind::ChannelsLimitReached
        | LapinKind::RuntimeShutdownError(_) => (
            ErrorKind::Unavailable,
            format!("rabbitmq connection or channel is gone: {error}"),
        ),
        LapinKind::AuthProviderError(text) => (
            ErrorKind::AuthenticationFailed,
            format!("rabbitmq authentication failed: {text}"),
        ),
        LapinKind::InvalidProtocolVersion(version) => (
            ErrorKind::Config,
            format!("rabbitmq speaks AMQP {version}, not 0-9-1"),
        ),
        _ => (ErrorKind::Internal, format!("rabbitmq client: {error}")),
    }
}

/// An error of input strata refuses before sending it (a name too long for
/// an AMQP short string, a value out of range).
pub(super) fn invalid(
    message: impl Into<String>,
    field: &str,
    operation: &'static str,
    target: &str,
) -> Error {
    Error::invalid(message)
        .with_field(field)
        .with_operation(operation)
        .with_target(target)
}

#[cfg(test)]
mod tests {
    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    use super::*;

    fn protocol(kind: AMQPErrorKind, text: &str) -> lapin::Error {
        LapinKind::ProtocolError(AMQPError::new(kind, text.into())).into()
    }

    fn soft(error: AMQPSoftError, text: &str) -> lapin::Error {
        protocol(error.into(), text)
    }

    #[test]
    fn reply_codes_map_to_kinds() {
        let cases = [
            (
                soft(AMQPSoftError::NOTFOUND, "NOT_FOUND - no queue 'q'"),
                ErrorKind::NotFound,
            ),
            (
                soft(
                    AMQPSoftError::PRECONDITIONFAILED,
                    "PRECONDITION_FAILED - inequivalent arg 'x-max-priority'",
                ),
                ErrorKind::Conflict,
            ),
            (
                soft(
                    AMQPSoftError::PRECONDITIONFAILED,
                    "PRECONDITION_FAILED - invalid arg 'x-message-ttl'",
                ),
                ErrorKind::InvalidInput,
            ),
            (
                soft(AMQPSoftError::RESOURCELOCKED, "RESOURCE_LOCKED - exclusive"),
                ErrorKind::Conflict,
            ),
            (
                soft(
                    AMQPSoftError::ACCESSREFUSED,
                    "ACCESS_REFUSED - operation not permitted on the default exchange",
                ),
                ErrorKind::InvalidInput,
            ),
            (
                soft(
                    AMQPSoftError::ACCESSREFUSED,
                    "ACCESS_REFUSED - access to queue 'q' in vhost 'v' refused for user 'u'",
                ),
                ErrorKind::AuthenticationFailed,
            ),
            (
                protocol(
                    AMQPHardError::CONNECTIONFORCED.into(),
                    "CONNECTION_FORCED - closed via management plugin",
                ),
                ErrorKind::Unavailable,
            ),
        ];
        for (error, kind) in cases {
            let mapped = map(error, "declare_queue", "amqp://u@h/v");
            assert_eq!(mapped.kind(), kind, "{mapped}");
            assert_eq!(mapped.operation(), Some("declare_queue"));
        }
    }

    #[test]
    fn access_refused_while_connecting_is_authentication() {
        let error = soft(
            AMQPSoftError::ACCESSREFUSED,
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
        );
        let mapped = map_connect(error, "amqp://u:<redacted>@h/v");
        assert_eq!(mapped.kind(), ErrorKind::AuthenticationFailed);
        assert!(mapped.to_string().contains("rabbitmq"), "{mapped}");
    }

    #[test]
    fn lost_connection_is_retryable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let mapped = map_connect(io.into(), "amqp://h");
        assert_eq!(mapped.kind(), ErrorKind::Unavailable);
        assert!(mapped.is_retryable());
        let gone = map(
            LapinKind::MissingHeartbeatError.into(),
            "publish",
            "amqp://h",
        );
        assert_eq!(gone.kind(), ErrorKind::Unavailable);
    }
}
