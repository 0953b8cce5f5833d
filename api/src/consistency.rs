//! Read-your-writes: a query that carries the `Consistency-Token` of a command's response waits
//! until its read model has projected that command's last event.
//!
//! The token is the event's global log position. The position names one event of one stream
//! (`events.aggregate_type`, `aggregate_id = "{tenant}/{key}"`, `sequence`); the read models
//! record, per stream, the last sequence they applied, so the wait is
//! [`commerce_projections::queries::wait_for`] on that stream, bounded by
//! [`crate::limits::Limits::consistency_wait`]. A token naming another tenant's event, or no
//! event, is ignored exactly like an absent one, so it reveals nothing about other tenants.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commerce_domain::TenantId;
use commerce_eventstore::StreamId;
use commerce_projections::queries::{self, QueryError};

use crate::commands::CONSISTENCY_TOKEN;
use crate::problem::{ApiError, PROBLEM_JSON, Problem};
use crate::state::AppState;

/// The optional `Consistency-Token` request header: a positive global log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsistencyToken(pub Option<i64>);

impl ConsistencyToken {
    /// Parses the header's value; anything but one positive integer is a 400.
    pub fn parse(value: &HeaderValue) -> Result<Self, ApiError> {
        value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .filter(|position| *position > 0)
            .map(|position| Self(Some(position)))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "Consistency-Token must be the positive integer a command response carried"
                        .to_owned(),
                )
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConsistencyToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(CONSISTENCY_TOKEN).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(Self(None)),
            (Some(value), None) => Self::parse(value),
            (Some(_), Some(_)) => Err(ApiError::BadRequest(
                "send at most one Consistency-Token".to_owned(),
            )),
        }
    }
}

/// Why a query was not answered.
#[derive(Debug)]
pub enum ReadError {
    /// Any of the API's usual errors.
    Api(ApiError),
    /// The read model did not reach the token within the configured wait: 503 with
    /// `Retry-After`, the client asks again with the same token.
    Lagging,
}

impl From<ApiError> for ReadError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<QueryError> for ReadError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::NotCaughtUp => Self::Lagging,
            QueryError::InvalidCursor => Self::Api(ApiError::BadRequest(
                "cursor is not one this service issued".to_owned(),
            )),
            QueryError::Database(error) => {
                tracing::error!(%error, "read-model query failed");
                Self::Api(ApiError::Unavailable)
            }
        }
    }
}

/// Seconds a client should wait before asking again after [`ReadError::Lagging`].
const RETRY_AFTER_SECS: u32 = 1;

impl IntoResponse for ReadError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(error) => error.into_response(),
            Self::Lagging => {
                let status = StatusCode::SERVICE_UNAVAILABLE;
                let problem = Problem {
                    kind: "/problems/read-model-lagging".to_owned(),
                    title: "Read model not caught up".to_owned(),
                    status: status.as_u16(),
                    detail: Some(
                        "the read model has not projected the Consistency-Token yet; retry"
                            .to_owned(),
                    ),
                    errors: Vec::new(),
                };
                let body = serde_json::to_vec(&problem).unwrap_or_default();
                let mut response = (status, body).into_response();
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                response
            }
        }
    }
}

/// Waits until the read models reflect `token` for `tenant` (returns at once without a token).
pub async fn read_after(
    state: &AppState,
    tenant: &TenantId,
    token: ConsistencyToken,
) -> Result<(), ReadError> {
    let Some(position) = token.0 else {
        return Ok(());
    };
    let event: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence FROM events WHERE position = $1",
    )
    .bind(position)
    .fetch_optional(state.pool())
    .await
    .map_err(|error| {
        tracing::error!(%error, "cannot look up a consistency token");
        ApiError::Unavailable
    })?;
    let Some((aggregate_type, aggregate_id, sequence)) = event else {
        tracing::debug!(position, "consistency token names no event; ignored");
        return Ok(());
    };
    let stream = match StreamId::parse(&aggregate_id) {
        Ok(stream) if stream.tenant() == tenant.as_str() => stream,
        _ => {
            tracing::debug!(position, "consistency token of another tenant; ignored");
            return Ok(());
        }
    };
    queries::wait_for(
        state.pool(),
        tenant.as_str(),
        &aggregate_type,
        stream.key(),
        sequence,
        state.limits().consistency_wait,
    )
    .await
    .map_err(ReadError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_header_values_when_parsed_then_only_positive_integers_are_tokens() {
        let parse = |text: &'static str| ConsistencyToken::parse(&HeaderValue::from_static(text));
        assert_eq!(parse("42").expect("a token"), ConsistencyToken(Some(42)));
        assert_eq!(parse(" 7 ").expect("a token"), ConsistencyToken(Some(7)));
        for bad in ["", "0", "-3", "abc", "1.5", "99999999999999999999"] {
            assert_eq!(parse(bad).expect_err(bad).status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn given_a_lagging_read_model_when_answered_then_503_problem_with_retry_after() {
        let response = ReadError::Lagging.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
