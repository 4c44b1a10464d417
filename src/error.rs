//! The one error type of strata.
//!
//! Every engine, embedded or real, reports failures as an [`Error`] with an
//! [`ErrorKind`] that callers can match on, the chain of operations that
//! failed (innermost first: `insert_one` inside `register_run`), the target
//! it ran against (with secrets already redacted), an optional field that
//! was at fault, whether a retry may help and, when the engine knows it, how
//! long to wait before retrying. Adapters keep their own driver errors
//! private and map them in, so domain code never sees a driver type.

use std::fmt;
use std::time::Duration;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The thing asked for does not exist (a queue, a collection where one is
    /// required, a row).
    NotFound,
    /// The write conflicts with what is stored: a duplicate `_id`, a unique
    /// index violation, an `ON CONFLICT` that was not allowed.
    Conflict,
    /// The engine cannot do this: an operator, stage, argument or command
    /// outside its supported subset. The message names it.
    Unsupported,
    /// The input is malformed or fails validation (bad JSON, a filter that is
    /// not a document, a value of the wrong shape, a `$jsonSchema` failure).
    InvalidInput,
    /// A key-value operation against a key holding the wrong kind of value
    /// (Redis `WRONGTYPE`).
    WrongType,
    /// The engine could not be reached or refused service. A retry may help.
    Unavailable,
    /// The operation did not finish in time. A retry may help.
    Timeout,
    /// The engine refused our credentials.
    AuthenticationFailed,
    /// The request carries no valid credentials (the API's bearer token is
    /// missing, unknown or revoked). Messages never hold the credential.
    Unauthorized,
    /// The credentials are valid but do not allow this (a token's scope
    /// is too small).
    Forbidden,
    /// The configuration is wrong (unknown kind, malformed URL, wrong type).
    Config,
    /// A bug or an unexpected state inside strata or a driver.
    Internal,
}

impl ErrorKind {
    /// A short, stable, lower-case name, used in JSON error bodies and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::AuthenticationFailed => "authentication_failed",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strata error: a kind, a message, and the context it happened in.
/// One pointer wide, so a `Result` costs little on the happy path.
#[derive(Debug)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    message: String,
    /// Innermost first; never two equal neighbours.
    operations: Vec<&'static str>,
    target: Option<String>,
    field: Option<String>,
    retry_after: Option<Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result with strata's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                operations: Vec::new(),
                target: None,
                field: None,
                retry_after: None,
                source: None,
            }),
        }
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// Shorthand for [`ErrorKind::WrongType`], with Redis's wording.
    pub fn wrong_type() -> Self {
        Self::new(
            ErrorKind::WrongType,
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        )
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// Names the operation that failed (`"insert_one"`, `"zadd"`,
    /// `"publish"`). Called again on the way out, it adds the enclosing
    /// operation to the chain (`register_run` around `insert_one`); naming
    /// the same operation twice in a row keeps one.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        if self.inner.operations.last() != Some(&operation) {
            self.inner.operations.push(operation);
        }
        self
    }

    /// Says how long to wait before trying again (an open circuit breaker,
    /// a rate limit, a broker's back-pressure).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.inner.retry_after = Some(wait);
        self
    }

    /// Names the target the operation ran against. Callers pass a redacted
    /// description (never a URL with its password).
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.inner.target = Some(target.into());
        self
    }

    /// Names the input field that was at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.inner.field = Some(field.into());
        self
    }

    /// Keeps the underlying cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message, without context.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The innermost operation that failed, when known.
    pub fn operation(&self) -> Option<&'static str> {
        self.inner.operations.first().copied()
    }

    /// Every operation named, innermost first.
    pub fn operations(&self) -> &[&'static str] {
        &self.inner.operations
    }

    /// How long to wait before a retry, when the failing side said so.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// The (redacted) target, when known.
    pub fn target(&self) -> Option<&str> {
        self.inner.target.as_deref()
    }

    /// The input field at fault, when known.
    pub fn field(&self) -> Option<&str> {
        self.inner.field.as_deref()
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.inner.kind, ErrorKind::Unavailable | ErrorKind::Timeout)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((innermost, outer)) = self.inner.operations.split_first() {
            for op in outer.iter().rev() {
                write!(f, "{op}: ")?;
            }
            write!(f, "{innermost}")?;
            if let Some(target) = &self.inner.target {
                write!(f, " on {target}")?;
            }
            write!(f, ": ")?;
        } else if let Some(target) = &self.inner.target {
            write!(f, "{target}: ")?;
        }
        f.write_str(&self.inner.message)?;
        if let Some(field) = &self.inner.field
            && !self.inner.message.contains(field.as_str())
        {
            write!(f, " (field `{field}`)")?;
        }
        match self.inner.retry_after {
            Some(wait) if self.is_retryable() => {
                write!(f, " (retry in {} ms may help)", wait.as_millis())?;
            }
            _ if self.is_retryable() => f.write_str(" (retry may help)")?,
            _ => {}
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
            std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => ErrorKind::Unavailable,
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                ErrorKind::InvalidInput
            }
            _ => ErrorKind::Internal,
        };
        Error::new(kind, e.to_string()).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_target_and_field() {
        let e = Error::invalid("document failed validation")
            .with_operation("insert_one")
            .with_target("documents/model_configs")
            .with_field("framework");
        assert_eq!(
            e.to_string(),
            "insert_one on documents/model_configs: document failed validation (field `framework`)"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn operations_chain_outermost_first_without_repeats() {
        let e = Error::conflict("duplicate key")
            .with_operation("insert_one")
            .with_target("documents/model_configs")
            .with_operation("register_run")
            .with_operation("register_run");
        assert_eq!(e.operation(), Some("insert_one"));
        assert_eq!(e.operations(), ["insert_one", "register_run"]);
        assert_eq!(
            e.to_string(),
            "register_run: insert_one on documents/model_configs: duplicate key"
        );
    }

    #[test]
    fn retry_after_is_kept_and_shown() {
        let e = Error::new(ErrorKind::Unavailable, "circuit open")
            .with_retry_after(Duration::from_millis(250));
        assert_eq!(e.retry_after(), Some(Duration::from_millis(250)));
        assert!(e.to_string().ends_with("(retry in 250 ms may help)"), "{e}");
    }

    #[test]
    fn unavailable_is_retryable_and_says_so() {
        let e = Error::new(ErrorKind::Unavailable, "connection refused");
        assert!(e.is_retryable());
        assert!(e.to_string().ends_with("(retry may help)"));
    }
}
