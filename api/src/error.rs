//! The one error type of the API and its HTTP form: `application/problem+json`
//! (RFC 9457). Database and unexpected errors are logged here, once, with
//! their cause; the client gets a fixed message and never our internals.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a client should wait before retrying when the database is away.
const RETRY_AFTER_SECS: &str = "5";
/// When a user over the queue quota should try again: runs last up to
/// minutes, but most finish in milliseconds, so a few seconds frees room.
const QUOTA_RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or a field is invalid; the text says which.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or ones that are unknown, expired or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller sees the resource but their role may not do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (duplicate name, no READY version).
    #[error("{0}")]
    Conflict(String),
    /// The version asked for was retired: it never runs again.
    #[error("{0}")]
    VersionRetired(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A feature the operator has not configured (e.g. environments need a secrets key).
    #[error("{0}")]
    NotConfigured(String),
    /// The database cannot be reached: retry later.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
    /// A user's rate limit cannot pay for the request; the detail names the
    /// limit and its settings, and the call may be retried after this many seconds.
    #[error("{detail}")]
    RateLimited {
        detail: String,
        retry_after_secs: u64,
    },
    /// The caller has as many executions queued or running as the operator
    /// allows one user (`PLAT_MAX_QUEUED_PER_USER`).
    #[error("queue quota reached: one user may have at most {limit} executions queued or running (the operator's PLAT_MAX_QUEUED_PER_USER), and this request would queue {adding} more; retry when some have finished")]
    QueueQuotaExceeded { limit: u32, adding: usize },
    /// A function behind an HTTP route failed, or answered what cannot be
    /// sent; the text names the execution.
    #[error("{0}")]
    BadGateway(String),
    /// A function behind an HTTP route timed out, or did not finish in
    /// time; the text names the execution.
    #[error("{0}")]
    GatewayTimeout(String),
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::VersionRetired(_) => StatusCode::CONFLICT,
            Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::RateLimited { .. } | Error::QueueQuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::Unavailable(_) | Error::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Error::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The problem `type`, a stable identifier clients can branch on.
    fn kind(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "invalid-request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not-found",
            Error::Conflict(_) => "conflict",
            Error::VersionRetired(_) => "version-retired",
            Error::PayloadTooLarge(_) => "payload-too-large",
            Error::UnsupportedMediaType(_) => "unsupported-media-type",
            Error::MethodNotAllowed(_) => "method-not-allowed",
            Error::RateLimited { .. } => "rate-limited",
            Error::QueueQuotaExceeded { .. } => "queue-quota-exceeded",
            Error::NotConfigured(_) => "not-configured",
            Error::Unavailable(_) => "service-unavailable",
            Error::Database(_) | Error::Internal(_) => "internal-error",
            Error::BadGateway(_) => "bad-gateway",
            Error::GatewayTimeout(_) => "gateway-timeout",
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            Error::Unavailable(error)
        } else {
            Error::Database(error)
        }
    }
}

/// Turns a violation of the unique constraint `constraint` into a 409 with
/// `message`; any other error stays what it is.
pub fn unique(
    constraint: &'static str,
    message: impl FnOnce() -> String,
) -> impl FnOnce(sqlx::Error) -> Error {
    move |error| match error.as_database_error().and_then(|d| d.constraint()) {
        Some(violated) if violated == constraint => Error::Conflict(message()),
        _ => Error::from(error),
    }
}

/// Errors that mean "the database is not there right now", as opposed to a
/// bad query: the pool could not get a connection, the socket broke, or the
/// server is shutting down or starting up (SQLSTATE class 08, 57P0x).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P0")),
        _ => false,
    }
}

/// An error, as RFC 9457 describes it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Problem<'a> {
    /// A stable identifier clients can branch on: `urn:plat:problem:` and
    /// one of `invalid-request`, `unauthorized`, `forbidden`, `not-found`,
    /// `conflict`, `payload-too-large`, `unsupported-media-type`,
    /// `method-not-allowed`, `rate-limited`, `not-configured`,
    /// `service-unavailable`, `internal-error`, and from a function's HTTP
    /// route `bad-gateway` and `gateway-timeout`.
    #[serde(rename = "type")]
    #[schema(example = "urn:plat:problem:not-found")]
    kind: String,
    /// The status's reason phrase.
    #[schema(example = "Not Found")]
    title: &'a str,
    /// The HTTP status code.
    #[schema(example = 404)]
    status: u16,
    /// What went wrong, for a person: a 400 names the field and the rule.
    #[schema(example = "no function named \"hellp\"")]
    detail: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            Error::Unavailable(_) => Some(RETRY_AFTER_SECS.to_owned()),
            Error::RateLimited {
                retry_after_secs, ..
            } => Some(retry_after_secs.to_string()),
            Error::QueueQuotaExceeded { .. } => Some(QUOTA_RETRY_AFTER_SECS.to_string()),
            _ => None,
        };
        let challenge = matches!(self, Error::Unauthorized(_));
        let detail = match &self {
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                "the database is unavailable; retry shortly".to_owned()
            }
            Error::Database(cause) => {
                tracing::error!(error = %cause, "database error");
                "an unexpected error occurred; it has been logged".to_owned()
            }
            Error::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                "an unexpected error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let problem = Problem {
            kind: format!("urn:plat:problem:{}", self.kind()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::RETRY_AFTER, value);
        }
        if challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"plat\""),
            );
        }
        response
    }
}

impl From<JsonRejection> for Error {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMediaType(
                "send the body as JSON with the header `Content-Type: application/json`".to_owned(),
            ),
            JsonRejection::BytesRejection(inner) => inner.into(),
            // axum's text names the problem and where: "missing field `source`
            // at line 1 column 20", "expected value at line 1 column 1".
            other => Error::BadRequest(other.body_text()),
        }
    }
}

impl From<BytesRejection> for Error {
    fn from(rejection: BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge(
                "the request body is larger than this endpoint accepts".to_owned(),
            )
        } else {
            Error::BadRequest(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for Error {
    fn from(rejection: QueryRejection) -> Self {
        Error::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for Error {
    fn from(rejection: PathRejection) -> Self {
        Error::BadRequest(rejection.body_text())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
