//! The HTTP application: every route (from [`crate::routes`]) behind the cross-cutting layers.
//!
//! Outermost first: [`observe`] (correlation id, one tracing span per request, the bound on
//! requests in flight, request timeout, metrics, and problem+json for the framework's own bare
//! error responses), then the
//! global body limit. Authentication, tenant check and the per-tenant rate limit happen in the
//! [`crate::auth::Principal`] extractor of each protected handler.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;
use tracing::field::Empty;

use crate::extract::{CORRELATION_ID, CorrelationId};
use crate::problem::{ApiError, PROBLEM_JSON};
use crate::state::AppState;
use crate::{metrics, routes};

/// Routes served even when [`crate::limits::Limits::max_in_flight`] requests are in flight.
const ALWAYS_ADMITTED: [&str; 3] = ["/health", "/ready", "/metrics"];

/// The API's router over `state`.
pub fn router(state: AppState) -> Router {
    let (router, _) = routes::api().split_for_parts();
    router
        .layer(RequestBodyLimitLayer::new(state.limits().body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Per request: correlation id in and out, a span with tenant and correlation id, the
/// timeout, the metrics, and problem+json for bare framework errors.
async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation = CorrelationId::from_headers(request.headers());
    request.extensions_mut().insert(correlation);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        tenant = Empty,
        correlation_id = %correlation.0,
    );
    // Probes answer even when the process is full, so an orchestrator never restarts a
    // process for being busy.
    let permit = state.admit();
    let mut response = if permit.is_none() && !ALWAYS_ADMITTED.contains(&route.as_str()) {
        tracing::debug!(parent: &span, "refused: as many requests in flight as allowed");
        ApiError::Overloaded.into_response()
    } else {
        let timeout = state.limits().request_timeout;
        let outcome = tokio::time::timeout(timeout, next.run(request))
            .instrument(span.clone())
            .await;
        drop(permit);
        match outcome {
            Ok(response) => as_problem(response),
            Err(_) => {
                tracing::warn!(parent: &span, ?timeout, "request timed out");
                ApiError::Timeout.into_response()
            }
        }
    };
    if let Ok(value) = HeaderValue::from_str(&correlation.0.to_string()) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    tracing::debug!(parent: &span, status, elapsed_ms = elapsed.as_millis(), "request finished");
    metrics::record_request(&route, &method, status, elapsed);
    response
}

/// Error responses that axum or tower produced without a body of ours (unknown route, wrong
/// method, body over the limit) become problem+json; ours pass unchanged.
fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NoRoute,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::REQUEST_TIMEOUT | StatusCode::SERVICE_UNAVAILABLE => ApiError::Timeout,
        status if status.is_client_error() => {
            ApiError::BadRequest("the request is malformed".to_owned())
        }
        _ => ApiError::Internal,
    };
    let mut replaced = error.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replaced.headers_mut().insert(header::ALLOW, allow.clone());
    }
    replaced
}
