//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document. None needs
//! a token.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::connect::check_broker;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// How long readiness waits for PostgreSQL.
const DATABASE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long readiness waits for the broker's metadata when no in-process relay knows.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A service status.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` (liveness) or `ready` (readiness).
    pub status: &'static str,
}

/// Liveness: answers as long as the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Status)))]
pub async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: 200 only when PostgreSQL and the broker answer.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, body = Status),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let database = tokio::time::timeout(
        DATABASE_PROBE_TIMEOUT,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(state.pool()),
    )
    .await;
    if !matches!(database, Ok(Ok(1))) {
        tracing::warn!("readiness: the database does not answer");
        return Err(ApiError::Unavailable);
    }
    // The in-process relay knows whether the broker answered its last request; before it
    // talked to the broker (or without a relay here) one metadata round trip decides.
    let relay_knows = state
        .relay_status()
        .and_then(|relay| relay.snapshot().broker_reachable);
    match (relay_knows, state.brokers()) {
        (Some(true), _) | (None, None) => {}
        (Some(false), _) => {
            tracing::warn!("readiness: the relay cannot reach the broker");
            return Err(ApiError::Unavailable);
        }
        (None, Some(brokers)) => {
            let probe = tokio::time::timeout(BROKER_PROBE_TIMEOUT, check_broker(brokers)).await;
            if !matches!(probe, Ok(Ok(()))) {
                tracing::warn!("readiness: the broker does not answer");
                return Err(ApiError::Unavailable);
            }
        }
    }
    Ok(Json(Status { status: "ready" }))
}

/// Prometheus text exposition of the process's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(),
    )
}

/// This document: OpenAPI 3.1 of every route.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document =
        DOCUMENT.get_or_init(|| crate::openapi::document().to_json().unwrap_or_default());
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.as_str(),
    )
}
