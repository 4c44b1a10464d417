//! Driver and server errors, mapped to strata's [`ErrorKind`]s.
//!
//! # Contracts
//!
//! - Every driver error becomes an [`Error`]; the driver type never leaks
//!   (it is kept as the source only through its message).
//! - Server error codes map by meaning, not by number range: duplicate key
//!   (11000) is `Conflict` and keeps MongoDB's `E11000 ...` text (it names
//!   the index); document validation (121) is `InvalidInput` with
//!   [`Error::field`] set from the server's `errInfo` when it says which
//!   field failed; "unknown operator" (2) and unrecognized stages are
//!   `Unsupported` naming the operator; bad input is `InvalidInput`;
//!   authentication is `AuthenticationFailed`; network trouble, no server
//!   and stepping-down primaries are `Unavailable`; exceeded time limits are
//!   `Timeout`. A code nobody expected is `Internal`, since strata checks
//!   its input before sending it.
//! - No message carries a secret: the password is scrubbed from every
//!   message before it leaves this module.

use ::mongodb::error::{Error as DriverError, ErrorKind as DriverKind, WriteFailure};
use bson::{Bson, Document};

use crate::error::{Error, ErrorKind};

/// What the server said about one failed command or write.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ServerFailure {
    /// MongoDB's error code.
    pub code: i32,
    /// MongoDB's code name (`DuplicateKey`), when the server sent one.
    pub code_name: Option<String>,
    /// The server's message.
    pub message: String,
    /// `errInfo` of a write error (validation details live here).
    pub details: Option<Document>,
    /// For `insert_many`: the index of the document that failed.
    pub index: Option<usize>,
}

/// The server-side failure inside a driver error, when there is one.
pub(super) fn server_failure(e: &DriverError) -> Option<ServerFailure> {
    match &*e.kind {
        DriverKind::Command(c) => Some(ServerFailure {
            code: c.code,
            code_name: Some(c.code_name.clone()),
            message: c.message.clone(),
            details: None,
            index: None,
        }),
        DriverKind::Write(WriteFailure::WriteError(w)) => Some(ServerFailure {
            code: w.code,
            code_name: w.code_name.clone(),
            message: w.message.clone(),
            details: w.details.clone(),
            index: None,
        }),
        DriverKind::Write(WriteFailure::WriteConcernError(w)) => Some(ServerFailure {
            code: w.code,
            code_name: Some(w.code_name.clone()),
            message: w.message.clone(),
            details: w.details.clone(),
            index: None,
        }),
        DriverKind::InsertMany(m) => {
            if let Some(w) = m.write_errors.as_ref().and_then(|ws| ws.first()) {
                Some(ServerFailure {
                    code: w.code,
                    code_name: w.code_name.clone(),
                    message: w.message.clone(),
                    details: w.details.clone(),
                    index: Some(w.index),
                })
            } else {
                m.write_concern_error.as_ref().map(|w| ServerFailure {
                    code: w.code,
                    code_name: Some(w.code_name.clone()),
                    message: w.message.clone(),
                    details: w.details.clone(),
                    index: None,
                })
            }
        }
        _ => None,
    }
}

/// Maps a driver error to a strata error, scrubbing `secret` from the text.
pub(super) fn from_driver(e: &DriverError, secret: Option<&str>) -> Error {
    let mapped = match server_failure(e) {
        Some(failure) => from_server(&failure),
        None => from_client_side(&e.kind),
    };
    scrub(mapped, secret)
}

/// A driver error that did not come from a server reply.
fn from_client_side(kind: &DriverKind) -> Error {
    match kind {
        DriverKind::Authentication { message, .. } => Error::new(
            ErrorKind::AuthenticationFailed,
            format!("MongoDB refused the credentials: {message}"),
        ),
        // The driver keeps trying a server whose certificate does not
        // verify until server selection gives up; the reason is in the
        // topology it describes. Trying again will not help.
        DriverKind::ServerSelection { message, .. }
            if message.contains("invalid peer certificate") =>
        {
            Error::new(
                ErrorKind::Config,
                format!(
                    "the MongoDB server's TLS certificate did not verify (tlsCAFile in the URL names the CA to trust): {message}"
                ),
            )
        }
        DriverKind::ServerSelection { message, .. } => Error::new(
            ErrorKind::Unavailable,
            format!("no MongoDB server could be reached: {message}"),
        ),
        DriverKind::Io(io) => {
            let kind = match io.kind() {
                std::io::ErrorKind::TimedOut => ErrorKind::Timeout,
                _ => ErrorKind::Unavailable,
            };
            Error::new(kind, format!("connection to MongoDB failed: {io}"))
        }
        DriverKind::ConnectionPoolCleared { message, .. } => Error::new(
            ErrorKind::Unavailable,
            format!("MongoDB connection pool was cleared: {message}"),
        ),
        DriverKind::DnsResolve { message, .. } => Error::new(
            ErrorKind::Unavailable,
            format!("DNS resolution of the MongoDB hosts failed: {message}"),
        ),
        DriverKind::Shutdown => {
            Error::new(ErrorKind::Unavailable, "the MongoDB client is shut down")
        }
        DriverKind::InvalidArgument { message, .. } => Error::invalid(message.clone()),
        DriverKind::Bson(b) => Error::invalid(format!("invalid BSON: {b}")),
        DriverKind::InvalidTlsConfig { message, .. } => Error::new(
            ErrorKind::Config,
            format!("invalid TLS configuration: {message}"),
        ),
        DriverKind::IncompatibleServer { message, .. } => Error::unsupported(format!(
            "the MongoDB server does not support this: {message}"
        )),
        other => Error::internal(format!("MongoDB driver error: {other}")),
    }
}

/// Maps a server reply by its code.
pub(super) fn from_server(f: &ServerFailure) -> Error {
    let name = f.code_name.as_deref().unwrap_or("");
    let text = if name.is_empty() {
        format!("{} (MongoDB code {})", f.message, f.code)
    } else {
        format!("{} (MongoDB code {} {name})", f.message, f.code)
    };
    match f.code {
        // DuplicateKey and its legacy forms.
        11000 | 11001 | 12582 => Error::conflict(f.message.clone()),
        // DocumentValidationFailure.
        121 => validation_error(f.details.as_ref()),
        // BadValue: "unknown operator: $x" / "unknown top level operator: $x".
        2 => match unknown_operator(&f.message) {
            Some(op) => Error::unsupported(format!(
                "unsupported operator `{op}`: MongoDB does not know it ({text})"
            )),
            None => Error::invalid(text),
        },
        // Unrecognized pipeline stage, invalid pipeline/expression operator,
        // unknown group accumulator, CommandNotFound, IllegalOperation,
        // CommandNotSupported, NotImplemented.
        40324 | 168 | 31325 | 15952 | 59 | 20 | 115 | 238 => Error::unsupported(text),
        // NamespaceExists, IndexOptionsConflict, IndexKeySpecsConflict,
        // IndexAlreadyExists.
        48 | 85 | 86 | 68 => Error::conflict(text),
        // NamespaceNotFound, IndexNotFound.
        26 | 27 => Error::not_found(text),
        // AuthenticationFailed, Unauthorized.
        18 | 13 => Error::new(ErrorKind::AuthenticationFailed, text),
        // MaxTimeMSExpired, WriteConcernFailed, NetworkTimeout,
        // NetworkInterfaceExceededTimeLimit, ExceededTimeLimit.
        50 | 64 | 89 | 202 | 262 => Error::new(ErrorKind::Timeout, text),
        // HostUnreachable, HostNotFound, ShutdownInProgress, WriteConflict,
        // PrimarySteppedDown, SocketException, NotWritablePrimary,
        // InterruptedAtShutdown, InterruptedDueToReplStateChange,
        // NotPrimaryNoSecondaryOk, NotPrimaryOrSecondary.
        6 | 7 | 91 | 112 | 189 | 9001 | 10107 | 11600 | 11602 | 13435 | 13436 => {
            Error::new(ErrorKind::Unavailable, text)
        }
        // FailedToParse, TypeMismatch, InvalidLength, InvalidBSON,
        // DollarPrefixedFieldName, EmptyFieldName, DottedFieldName,
        // ImmutableField, CannotCreateIndex, InvalidOptions,
        // InvalidNamespace, InvalidIdField, BSONObjectTooLarge, and the
        // numbered input assertions (codeName `LocationNNNN`).
        9 | 14 | 16 | 22 | 52 | 56 | 57 | 66 | 67 | 72 | 73 | 10334 => Error::invalid(text),
        _ if name.starts_with("Location") => Error::invalid(text),
        _ => Error::internal(format!("unexpected MongoDB error: {text}")),
    }
}

/// The operator named by "unknown operator: $x" or "unknown top level
/// operator: $x. ...".
fn unknown_operator(message: &str) -> Option<String> {
    let rest = message.split("operator: ").nth(1)?;
    let op: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '$' || *c == '_')
        .collect();
    (op.starts_with('$') && op.len() > 1).then_some(op)
}

/// A validation failure, naming the failing field when `errInfo` says which.
fn validation_error(err_info: Option<&Document>) -> Error {
    match err_info.and_then(failing_field) {
        Some(failing) => Error::invalid(format!(
            "Document failed validation: {} at `{}`",
            failing.reason, failing.path
        ))
        .with_field(failing.path),
        None => Error::invalid("Document failed validation"),
    }
}

/// The first field that a `$jsonSchema` validation failure names, and why.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FailingField {
    /// Dot path of the field (array items by index: `tags.2`).
    pub path: String,
    /// What was not satisfied (`required`, `bsonType: type did not match`).
    pub reason: String,
}

/// Reads `errInfo.details.schemaRulesNotSatisfied` (MongoDB 5.0+ format) and
/// returns the first failing field, depth first.
pub(super) fn failing_field(err_info: &Document) -> Option<FailingField> {
    let details = err_info.get_document("details").ok()?;
    let rules = details.get_array("schemaRulesNotSatisfied").ok()?;
    walk_rules(rules, "")
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn walk_rules(rules: &[Bson], prefix: &str) -> Option<FailingField> {
    rules.iter().find_map(|rule| match rule {
        Bson::Document(rule) => walk_rule(rule, prefix),
        _ => None,
    })
}

fn walk_rule(rule: &Document, prefix: &str) -> Option<FailingField> {
    let operator = rule.get_str("operatorName").unwrap_or("");
    let reason = |what: &str| match rule.get_str("reason") {
        Ok(r) => format!("{what}: {r}"),
        Err(_) => what.to_string(),
    };
    match operator {
        "required" => {
            let missing = rule.get_array("missingProperties").ok()?;
            let first = missing.iter().find_map(Bson::as_str)?;
            Some(FailingField {
                path: join(prefix, first),
                reason: "missing required field".into(),
            })
        }
        "properties" => {
            let props = rule.get_array("propertiesNotSatisfied").ok()?;
            props.iter().find_map(|p| {
                let p = p.as_document()?;
                let name = p.get_str("propertyName").ok()?;
                let path = join(prefix, name);
                let nested = p
                    .get_array("details")
                    .ok()
                    .and_then(|d| walk_rules(d, &path));
                Some(nested.unwrap_or(FailingField {
                    path,
                    reason: "property not satisfied".into(),
                }))
            })
        }
        "additionalProperties" => {
            let extra = rule.get_array("additionalProperties").ok()?;
            let first = extra.iter().find_map(Bson::as_str)?;
            Some(FailingField {
                path: join(prefix, first),
                reason: "additional property not allowed".into(),
            })
        }
        "items" => {
            let at = match rule.get("itemIndex") {
                Some(Bson::Int32(i)) => Some(i64::from(*i)),
                Some(Bson::Int64(i)) => Some(*i),
                _ => None,
            };
            let path = match at {
                Some(i) => join(prefix, &i.to_string()),
                None => prefix.to_string(),
            };
            let nested = rule
                .get_array("details")
                .ok()
                .and_then(|d| walk_rules(d, &path));
            nested.or_else(|| {
                (!path.is_empty()).then(|| FailingField {
                    path,
                    reason: reason("items"),
                })
            })
        }
        // `bsonType`, `enum`, `minimum`, `pattern`, ... on the value at
        // `prefix` itself; at the top level there is no field to name.
        other if !prefix.is_empty() => Some(FailingField {
            path: prefix.to_string(),
            reason: reason(other),
        }),
        _ => None,
    }
}

/// Removes `secret` from the message, in case a driver or server echoed it.
fn scrub(e: Error, secret: Option<&str>) -> Error {
    match secret {
        Some(s) if !s.is_empty() && e.message().contains(s) => {
            let message = e.message().replace(s, "<redacted>");
            let mut out = Error::new(e.kind(), message);
            if let Some(field) = e.field() {
                out = out.with_field(field);
            }
            out
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn failure(code: i32, message: &str) -> ServerFailure {
        ServerFailure {
            code,
            code_name: None,
            message: message.into(),
            details: None,
            index: None,
        }
    }

    #[test]
    fn duplicate_key_is_conflict_with_mongodb_text() {
        let m = "E11000 duplicate key error collection: db.users index: email_1 dup key: { email: \"a\" }";
        let e = from_server(&failure(11000, m));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("E11000"), "{e}");
        assert!(e.message().contains("email_1"), "{e}");
    }

    #[test]
    fn unknown_operators_are_unsupported_and_named() {
        let e = from_server(&failure(2, "unknown operator: $foo"));
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("`$foo`"), "{e}");
        let top = "unknown top level operator: $where2. If you have a field name that starts with a '$' symbol, consider using $getField or $setField.";
        let e = from_server(&failure(2, top));
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.to_string().contains("`$where2`"), "{e}");
        let other = from_server(&failure(2, "$in needs an array"));
        assert_eq!(other.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn codes_map_by_meaning() {
        let cases = [
            (48, ErrorKind::Conflict),
            (85, ErrorKind::Conflict),
            (66, ErrorKind::InvalidInput),
            (18, ErrorKind::AuthenticationFailed),
            (50, ErrorKind::Timeout),
            (10107, ErrorKind::Unavailable),
            (40324, ErrorKind::Unsupported),
            (27, ErrorKind::NotFound),
            (987654, ErrorKind::Internal),
        ];
        for (code, kind) in cases {
            assert_eq!(from_server(&failure(code, "x")).kind(), kind, "code {code}");
        }
        let mut located = failure(15975, "$sort key ordering must be 1");
        located.code_name = Some("Location15975".into());
        assert_eq!(from_server(&located).kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn validation_names_missing_required_field() {
        // As sent by the server (MongoDB 5.0+ and SecantusDB alike).
        let info = doc! {"failingDocumentId": 1, "details": {"operatorName": "$jsonSchema",
        "schemaRulesNotSatisfied": [{"operatorName": "required",
            "specifiedAs": {"required": ["name"]}, "missingProperties": ["name"]}]}};
        let mut f = failure(121, "Document failed validation");
        f.details = Some(info);
        let e = from_server(&f);
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some("name"));
        assert!(e.message().starts_with("Document failed validation"), "{e}");
    }

    #[test]
    fn validation_names_nested_property_and_item() {
        let info = doc! {"details": {"operatorName": "$jsonSchema",
        "schemaRulesNotSatisfied": [{"operatorName": "properties", "propertiesNotSatisfied": [
            {"propertyName": "config", "details": [{"operatorName": "properties",
                "propertiesNotSatisfied": [{"propertyName": "tags", "details": [
                    {"operatorName": "items", "reason": "At least one item did not match the sub-schema",
                     "itemIndex": 2, "details": [{"operatorName": "bsonType",
                        "specifiedAs": {"bsonType": "string"}, "reason": "type did not match",
                        "consideredValue": 5, "consideredType": "int"}]}]}]}]}]}]}};
        let found = failing_field(&info).expect("a field");
        assert_eq!(found.path, "config.tags.2");
        assert_eq!(found.reason, "bsonType: type did not match");
    }

    #[test]
    fn validation_without_details_names_no_field() {
        let e = from_server(&failure(121, "Document failed validation"));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), None);
        let top_level_type = doc! {"details": {"schemaRulesNotSatisfied": [
        {"operatorName": "bsonType", "reason": "type did not match"}]}};
        assert_eq!(failing_field(&top_level_type), None);
    }

    #[test]
    fn secrets_are_scrubbed() {
        let e = scrub(
            Error::invalid("bad url mongodb://u:hunter2@h"),
            Some("hunter2"),
        );
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(e.message().contains("<redacted>"), "{e}");
    }
}
