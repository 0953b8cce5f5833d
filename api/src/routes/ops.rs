//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document. None needs
//! a token.

use std::sync::{OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::config::KafkaBrokers;
use crate::connect::check_broker;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// How long readiness waits for PostgreSQL.
const DATABASE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long readiness waits for the broker's metadata when no in-process relay knows.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one broker probe's answer serves later readiness checks.
const BROKER_PROBE_FRESH: Duration = Duration::from_secs(2);

/// The broker's reachability as readiness checks see it, when no in-process relay knows: one
/// probe at a time (each is a librdkafka client and a blocking thread), its answer reused for
/// [`BROKER_PROBE_FRESH`]. `/ready` needs no token, so a flood of it must not open a client per
/// request.
#[derive(Debug, Default)]
pub(crate) struct BrokerProbe {
    last: std::sync::Mutex<Option<(Instant, bool)>>,
    probing: tokio::sync::Mutex<()>,
}

impl BrokerProbe {
    async fn reachable(&self, brokers: &KafkaBrokers) -> bool {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, reachable)) = last
            && at.elapsed() < BROKER_PROBE_FRESH
        {
            return reachable;
        }
        // A probe under way answers for everyone; meanwhile the last answer stands (none
        // yet: not ready).
        let Ok(_probing) = self.probing.try_lock() else {
            return last.is_some_and(|(_, reachable)| reachable);
        };
        let probe = tokio::time::timeout(BROKER_PROBE_TIMEOUT, check_broker(brokers)).await;
        let reachable = matches!(probe, Ok(Ok(())));
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), reachable));
        reachable
    }
}

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
            if !state.broker_probe().reachable(brokers).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker list nothing listens on: a probe of it could only say "unreachable".
    fn nowhere() -> KafkaBrokers {
        KafkaBrokers::parse("127.0.0.1:9").expect("a broker list")
    }

    #[tokio::test]
    async fn a_fresh_answer_is_reused_without_a_probe() {
        let probe = BrokerProbe::default();
        *probe.last.lock().expect("last") = Some((Instant::now(), true));
        assert!(probe.reachable(&nowhere()).await);
    }

    #[tokio::test]
    async fn while_a_probe_runs_the_others_take_the_last_answer() {
        let probe = BrokerProbe::default();
        let stale = Instant::now()
            .checked_sub(BROKER_PROBE_FRESH * 2)
            .expect("an instant");
        *probe.last.lock().expect("last") = Some((stale, true));
        let _probing = probe.probing.lock().await;
        assert!(probe.reachable(&nowhere()).await);
        *probe.last.lock().expect("last") = None;
        assert!(
            !probe.reachable(&nowhere()).await,
            "no answer yet: not ready"
        );
    }
}
