//! Request extractors that answer with [`ApiError`] instead of axum's plain-text rejections:
//! the JSON body, the authenticated caller (and [`Authorized`], a caller holding one of a
//! route's roles), the idempotency key and the correlation id.

use std::marker::PhantomData;
use std::ops::Deref;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::auth::{Principal, Role};
use crate::problem::{ApiError, FieldError};
use crate::state::AppState;

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The `X-Correlation-Id` request and response header.
pub const CORRELATION_ID: &str = "x-correlation-id";
/// Longest accepted idempotency key.
const IDEMPOTENCY_KEY_MAX: usize = 255;

/// A JSON request body: 415 without `Content-Type: application/json`, 413 over the body
/// limit, 400 when it is not JSON, 422 (with the field path) when its shape is wrong.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_error)?;
        parse_json(&bytes).map(Self)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest("the body could not be read".to_owned())
    }
}

/// Parses a JSON body: syntax errors are 400, shape errors 422 naming the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let not_json = || ApiError::BadRequest("the body is not valid JSON".to_owned());
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let inner = error.inner();
        if !inner.is_data() {
            return not_json();
        }
        let path = error.path().to_string();
        let field = if path == "." { String::new() } else { path };
        ApiError::Validation(vec![FieldError {
            field,
            message: without_position(&inner.to_string()),
        }])
    })?;
    deserializer.end().map_err(|_| not_json())?;
    if has_nul_escape(bytes) {
        // PostgreSQL's jsonb and text hold no NUL: refused here, not by the event store.
        return Err(ApiError::Validation(vec![FieldError {
            field: String::new(),
            message: "text may not contain the NUL character (\\u0000)".to_owned(),
        }]));
    }
    Ok(value)
}

/// Whether valid JSON `bytes` hold a `\u0000` escape: one whose backslash is not itself
/// escaped (an odd run of backslashes before the `u`). A raw NUL is not valid JSON.
fn has_nul_escape(bytes: &[u8]) -> bool {
    const ESCAPE: &[u8] = b"u0000";
    bytes.windows(ESCAPE.len()).enumerate().any(|(at, window)| {
        window == ESCAPE
            && bytes[..at]
                .iter()
                .rev()
                .take_while(|&&byte| byte == b'\\')
                .count()
                % 2
                == 1
    })
}

/// serde_json appends " at line L column C"; the field path says more to a client.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let authorization = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        };
        let principal = state.verifier().authenticate(authorization)?;
        match state.tenants().contains(&principal.tenant).await {
            Ok(true) => {}
            Ok(false) => return Err(ApiError::UnknownTenant),
            Err(error) => {
                tracing::error!(%error, "tenant lookup failed");
                return Err(ApiError::Unavailable);
            }
        }
        tracing::Span::current().record("tenant", principal.tenant.as_str());
        state.rate_limiter().check(&principal.tenant)?;
        Ok(principal)
    }
}

/// The roles a route admits, as a type, for [`Authorized`].
pub trait Admits {
    const ROLES: &'static [Role];
}

/// Operators: the catalog, stock, campaigns and refunds.
#[derive(Debug)]
pub struct Operators;

/// Customers: joining a campaign.
#[derive(Debug)]
pub struct Customers;

/// Customers and operators: placing, cancelling and reading orders.
#[derive(Debug)]
pub struct Shoppers;

/// Auditors: event histories and the log's integrity.
#[derive(Debug)]
pub struct Auditors;

impl Admits for Operators {
    const ROLES: &'static [Role] = &[Role::Operator];
}

impl Admits for Customers {
    const ROLES: &'static [Role] = &[Role::Customer];
}

impl Admits for Shoppers {
    const ROLES: &'static [Role] = &[Role::Customer, Role::Operator];
}

impl Admits for Auditors {
    const ROLES: &'static [Role] = &[Role::Auditor];
}

/// A caller holding one of the roles `A` admits. Checked among the request's parts, before
/// any body or query is read: a caller who may not act gets 403 whatever it sent, never a
/// 400 about a body it had no right to send, and its body is not parsed at all.
#[derive(Debug)]
pub struct Authorized<A> {
    principal: Principal,
    admits: PhantomData<fn() -> A>,
}

impl<A> Deref for Authorized<A> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<A: Admits> FromRequestParts<AppState> for Authorized<A> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require_any(A::ROLES)?;
        Ok(Self {
            principal,
            admits: PhantomData,
        })
    }
}

/// The optional `Idempotency-Key` header: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|key| (1..=IDEMPOTENCY_KEY_MAX).contains(&key.len()))
            .filter(|key| key.bytes().all(|byte| byte.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"
                ))
            })?;
        Ok(Self(Some(key.to_owned())))
    }
}

/// The request's correlation id: the client's `X-Correlation-Id` when it is a UUID, else a
/// fresh one (set by the observability middleware before any handler runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationId(pub Uuid);

impl CorrelationId {
    /// The id a request carries, or a new one.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let given = headers
            .get(CORRELATION_ID)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Uuid::parse_str(value.trim()).ok());
        Self(given.unwrap_or_else(Uuid::new_v4))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Self>()
            .copied()
            .unwrap_or_else(|| Self::from_headers(&parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        sku: String,
        quantity: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        lines: Vec<Line>,
    }

    #[test]
    fn given_broken_json_when_parsed_then_bad_request() {
        let error = parse_json::<Body>(b"{\"lines\": [").expect_err("not JSON");
        assert_eq!(error.status(), 400);
        let error = parse_json::<Body>(b"{\"lines\": []} trailing").expect_err("not JSON");
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn given_a_negative_quantity_when_parsed_then_the_field_is_named() {
        let error = parse_json::<Body>(br#"{"lines": [{"sku": "A", "quantity": -1}]}"#)
            .expect_err("bad shape");
        let ApiError::Validation(errors) = error else {
            panic!("expected a validation error, got {error:?}");
        };
        assert_eq!(errors[0].field, "lines[0].quantity");
        assert!(!errors[0].message.contains("line 1"));
    }

    #[test]
    fn given_an_unknown_field_when_parsed_then_unprocessable() {
        let error = parse_json::<Body>(br#"{"lines": [], "tenant_id": "other"}"#)
            .expect_err("unknown field");
        assert_eq!(error.status(), 422);
    }

    #[test]
    fn given_content_types_when_checked_then_only_json_is_accepted() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().expect("valid"),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("valid"));
        assert!(!is_json(&headers));
    }

    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_before_u0000_is_not() {
        assert!(has_nul_escape(br#"{"name":"a\u0000b"}"#));
        assert!(has_nul_escape(br#"{"name":"\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"name":"\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"name":"u0000"}"#));
        assert!(!has_nul_escape(br#"{"name":"\u00e9"}"#));
    }
}
