//! The API's one error shape, `{"error":{"kind","message","field"?}}`, and
//! extractors that answer with it when a request cannot be read.
//!
//! `kind` is [`ErrorKind::as_str`] for errors of strata, plus
//! `payload_too_large` (413) and `method_not_allowed` (405) for what only
//! HTTP can get wrong. The message of an internal error is generic; the
//! error itself is logged.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, http::Method};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use crate::error::{Error, ErrorKind};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong, in an [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, lower-case: `invalid_input`, `unsupported`, `not_found`,
    /// `conflict`, `payload_too_large`, `method_not_allowed`, `unavailable`,
    /// `timeout`, `internal`, ...
    pub kind: String,
    /// For people; not stable.
    pub message: String,
    /// The input field at fault, when known (`filter`, `name`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer: a status and an [`ErrorBody`], with `Retry-After`
/// when the failing side said how long to wait.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<std::time::Duration>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: ErrorDetail {
                    kind: kind.to_owned(),
                    message: message.into(),
                    field: None,
                },
            },
            retry_after: None,
        }
    }

    fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.body.error.field = Some(field.into());
        self
    }

    /// 429: the client's rate limit in this route group is spent; it may
    /// retry after `wait`.
    pub(crate) fn rate_limited(group: &str, wait: std::time::Duration) -> ApiError {
        let mut answer = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many {group} requests from this client; retry after the time in Retry-After"
            ),
        );
        answer.retry_after = Some(wait);
        answer
    }

    /// 421: the request's `Host` names no host this server answers to
    /// (`api.allowed_hosts`, against DNS rebinding).
    pub(crate) fn misdirected() -> ApiError {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            "the Host header names a host this server does not answer to (api.allowed_hosts)",
        )
        .with_field("host")
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// An axum rejection (`status`, `text`) in the API's shape: 413 stays
    /// 413, a server-side failure is internal, anything else is the client's
    /// input, 400.
    fn from_rejection(status: StatusCode, text: String, field: &str) -> ApiError {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "payload_too_large", text).with_field(field)
        } else if status.is_server_error() {
            tracing::error!(%status, "request rejected: {text}");
            ApiError::new(status, ErrorKind::Internal.as_str(), "internal error")
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorKind::InvalidInput.as_str(),
                text,
            )
            .with_field(field)
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let status = match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::WrongType => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            // An engine refusing our credentials is the server's trouble,
            // as is an engine that cannot be reached: the client may retry.
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::AuthenticationFailed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR
            || e.kind() == ErrorKind::AuthenticationFailed
        {
            // Internals (statements, paths, driver messages) stay in the log.
            tracing::error!("request failed: {e}");
            "internal error; see the server log".to_owned()
        } else {
            e.message().to_owned()
        };
        let mut answer = ApiError::new(status, e.kind().as_str(), message);
        if let Some(field) = e.field()
            && status != StatusCode::INTERNAL_SERVER_ERROR
        {
            answer = answer.with_field(field);
        }
        answer.retry_after = e.retry_after();
        answer
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up: HTTP has no finer unit.
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = axum::http::HeaderValue::from_str(&seconds.to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// The fallback of unknown paths: 404 in the API's shape.
pub(crate) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound.as_str(),
        format!("no route for {method} {}", uri.path()),
    )
}

/// The fallback of known paths asked with another method: 405.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}", uri.path()),
    )
}

/// A JSON body; a body that cannot be read answers in the API's shape,
/// naming what was wrong (axum's message carries the path of the field).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    ApiError::from_rejection(rejection.status(), rejection.body_text(), "body")
}

/// A query string; one that cannot be read answers in the API's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::from_rejection(rejection.status(), rejection.body_text(), "query")
}

/// Path parameters; ones that cannot be read answer in the API's shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    ApiError::from_rejection(rejection.status(), rejection.body_text(), "path")
}
