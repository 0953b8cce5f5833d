//! Every error the HTTP API answers with, and its one mapping to an RFC 9457
//! `application/problem+json` body.
//!
//! Handlers return [`ApiError`]; nothing else turns an error into a response, so statuses and
//! bodies stay those of the contract. Internal failures are logged with the request's
//! correlation id and answered with a generic 500/503 body: no SQL or stack text leaves the
//! process.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as named in the request (`lines[0].quantity`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// An RFC 9457 problem details body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem (stable; clients may switch on it).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The invalid fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// Why a request failed, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No valid bearer token. Every cause answers the same body, so a forger learns nothing.
    #[error("unauthorized")]
    Unauthorized,
    /// The token is valid but names a tenant this engine does not serve.
    #[error("unknown tenant")]
    UnknownTenant,
    /// The caller's roles do not allow the operation.
    #[error("forbidden")]
    Forbidden,
    /// The object does not exist for this caller (other tenants' objects included).
    #[error("not found: {0}")]
    NotFound(String),
    /// No route matches the request's path.
    #[error("no such route")]
    NoRoute,
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request is malformed (syntax of the body, a header or a path parameter).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body is not `application/json`.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// The body is over the configured limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The body's shape or values are invalid.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The current state does not allow the command, or writers kept conflicting.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The idempotency key was already used with a different request.
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    /// The tenant sent more requests than its rate allows.
    #[error("rate limited")]
    RateLimited {
        /// When the next request may be accepted.
        retry_after: Duration,
    },
    /// The request did not finish within the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// A backing service is unavailable; the client may retry.
    #[error("service unavailable")]
    Unavailable,
    /// The process already serves as many requests as it allows; the client may retry.
    #[error("overloaded")]
    Overloaded,
    /// An unexpected failure (logged with the correlation id, never shown).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A single-field validation problem.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnknownTenant | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) | Self::IdempotencyKeyReused => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout | Self::Unavailable | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem body of this error.
    pub fn problem(&self) -> Problem {
        let (slug, title, detail) = match self {
            Self::Unauthorized => (
                "unauthorized",
                "Unauthorized",
                Some("a valid bearer token is required".to_owned()),
            ),
            Self::UnknownTenant => (
                "unknown-tenant",
                "Unknown tenant",
                Some("the token's tenant is not served here".to_owned()),
            ),
            Self::Forbidden => (
                "forbidden",
                "Forbidden",
                Some("the token's roles do not allow this operation".to_owned()),
            ),
            Self::NotFound(what) => ("not-found", "Not found", Some(format!("{what} not found"))),
            Self::NoRoute => ("no-route", "Not found", Some("no such resource".to_owned())),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed", None),
            Self::BadRequest(detail) => ("bad-request", "Bad request", Some(detail.clone())),
            Self::UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                Some("the body must be application/json".to_owned()),
            ),
            Self::PayloadTooLarge => (
                "payload-too-large",
                "Payload too large",
                Some("the body is over the size limit".to_owned()),
            ),
            Self::Validation(_) => (
                "validation",
                "Validation failed",
                Some("the request has invalid fields".to_owned()),
            ),
            Self::Conflict(detail) => ("conflict", "Conflict", Some(detail.clone())),
            Self::IdempotencyKeyReused => (
                "idempotency-key-reused",
                "Idempotency key reused",
                Some("this Idempotency-Key was already used with a different request".to_owned()),
            ),
            Self::RateLimited { .. } => (
                "rate-limited",
                "Too many requests",
                Some("the tenant's request rate is exceeded".to_owned()),
            ),
            Self::Timeout => (
                "timeout",
                "Request timed out",
                Some("the request took too long; retry later".to_owned()),
            ),
            Self::Unavailable => (
                "unavailable",
                "Service unavailable",
                Some("a backing service is unavailable; retry later".to_owned()),
            ),
            Self::Overloaded => (
                "overloaded",
                "Overloaded",
                Some("the server is serving as many requests as it allows; retry later".to_owned()),
            ),
            Self::Internal => ("internal", "Internal error", None),
        };
        Problem {
            kind: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: self.status().as_u16(),
            detail,
            errors: match self {
                Self::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after } => {
                headers.insert(header::RETRY_AFTER, retry_after_value(*retry_after));
            }
            Self::Timeout | Self::Unavailable | Self::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After: 0` would invite a hot loop).
fn retry_after_value(wait: Duration) -> HeaderValue {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_validation_error_when_rendered_then_fields_are_listed() {
        let problem = ApiError::invalid("lines[0].quantity", "must be at least 1").problem();
        let json = serde_json::to_value(&problem).expect("serialisable");
        assert_eq!(json["type"], "/problems/validation");
        assert_eq!(json["status"], 422);
        assert_eq!(json["errors"][0]["field"], "lines[0].quantity");
    }

    #[test]
    fn given_an_unauthorized_error_when_answered_then_problem_json_with_a_challenge() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn given_a_sub_second_wait_when_rate_limited_then_retry_after_is_one_second() {
        let response = ApiError::RateLimited {
            retry_after: Duration::from_millis(20),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(retry_after_value(Duration::from_millis(1500)), "2");
    }

    #[test]
    fn given_an_internal_error_when_rendered_then_no_detail_is_shown() {
        let problem = ApiError::Internal.problem();
        assert_eq!(problem.detail, None);
        assert_eq!(problem.status, 500);
    }
}
