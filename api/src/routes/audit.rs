//! The auditor's endpoints (`/audit/*`): thin wrappers over `commerce_replay`, read straight
//! from the event store (the source of truth), never from read models.
//!
//! Only the `auditor` role may call them. The tenant comes from the token and is part of the
//! stream id, so another tenant's order is simply not found (404), like an unknown id.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use commerce_aggregates::order::Order;
use commerce_contracts::envelope::published_version;
use commerce_contracts::topics::aggregate_topic;
use commerce_eventstore::StreamId;
use commerce_replay::{
    Damage, History, HistoryEntry, RelatedStream, ReplayError, Upto, VerifyReport,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::extract::{Auditors, Authorized};
use crate::problem::{ApiError, Problem};
use crate::routes::path_id;
use crate::state::AppState;

/// One stored event of an order, as the contract's envelope (payload in its current shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    pub event_id: uuid::Uuid,
    pub topic: String,
    /// E.g. `order.created`.
    pub event_type: String,
    /// The version of the payload shown (after upcasting), as the Kafka envelope has it.
    pub event_version: u32,
    /// The stored version (as stored) when it was older than the shown one.
    pub upcasted_from: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: u64,
    pub position: i64,
    pub tenant_id: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    /// Who caused the event (the token's `sub`), when recorded.
    pub actor: Option<String>,
    /// Epoch milliseconds.
    pub timestamp: i64,
    pub occurred_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// `as_of`: a sequence number, or a moment in RFC 3339.
fn as_of_point(as_of: &str) -> Result<Upto, ApiError> {
    if !as_of.is_empty() && as_of.bytes().all(|byte| byte.is_ascii_digit()) {
        return as_of
            .parse()
            .map(Upto::Sequence)
            .map_err(|_| ApiError::invalid("as_of", "the sequence is out of range"));
    }
    DateTime::parse_from_rfc3339(as_of)
        .map(|moment| Upto::Time(moment.with_timezone(&Utc)))
        .map_err(|_| ApiError::invalid("as_of", "an RFC 3339 time or a sequence number"))
}

/// Every event of an order's stream, in sequence order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventList {
    pub items: Vec<AuditEvent>,
}

/// One event of a history and the order's state after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryStep {
    pub sequence: u64,
    pub position: i64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    /// The version of the payload shown (after upcasting).
    pub event_version: u32,
    /// The stored version (as stored) when it was older than the shown one.
    pub upcasted_from: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub actor: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// The order's state after this event.
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
}

/// Another stream that shares a correlation id with the order (payments, shipments, …).
#[derive(Debug, Serialize, ToSchema)]
pub struct RelatedStreamDto {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub events: u64,
}

/// An order's history up to the end, a sequence or a moment.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderHistory {
    pub aggregate_type: String,
    pub tenant_id: String,
    pub aggregate_id: String,
    /// Sequence of the last included event (0: none).
    pub version: u64,
    /// The state after the last included event.
    #[schema(value_type = Object)]
    pub state: serde_json::Value,
    pub entries: Vec<HistoryStep>,
    pub related: Vec<RelatedStreamDto>,
}

/// One integrity finding.
#[derive(Debug, Serialize, ToSchema)]
pub struct DamageDto {
    /// `"{aggregate_type} {aggregate_id}"`, or `log_checkpoints` / `log`.
    pub stream: String,
    pub sequence: u64,
    /// `altered`, `deleted`, `reordered`, `inserted`, `truncated` or `spliced`.
    pub kind: String,
    pub detail: String,
}

/// The outcome of verifying the whole log.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyDto {
    /// Whether no damage was found.
    pub clean: bool,
    pub events: u64,
    pub streams: u64,
    pub checkpoints: u64,
    /// The damage of the log and of the caller's tenant's streams.
    pub damage: Vec<DamageDto>,
    /// How many findings concern other tenants' streams (named only to their auditors).
    pub other_tenants_damage: u64,
}

/// `GET /audit/orders/{id}/history` parameters (at most one of them).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Replay the events recorded at or before this moment (RFC 3339), or up to and including
    /// this sequence (a number).
    pub as_of: Option<String>,
    /// Replay up to and including this sequence.
    pub to_seq: Option<u64>,
}

impl HistoryParams {
    fn upto(&self) -> Result<Upto, ApiError> {
        match (self.as_of.as_deref(), self.to_seq) {
            (Some(_), Some(_)) => Err(ApiError::invalid(
                "to_seq",
                "give either as_of or to_seq, not both",
            )),
            (Some(as_of), None) => as_of_point(as_of),
            (None, Some(sequence)) => Ok(Upto::Sequence(sequence)),
            (None, None) => Ok(Upto::End),
        }
    }
}

/// An internal failure is logged and answered without its text.
fn replay_error(error: ReplayError) -> ApiError {
    match error {
        ReplayError::NotFound(_) | ReplayError::StreamId(_) => {
            ApiError::NotFound("order".to_owned())
        }
        error => {
            tracing::error!(%error, "audit query failed");
            ApiError::Unavailable
        }
    }
}

/// The order's history in the caller's tenant.
async fn load_history(
    state: &AppState,
    principal: &Principal,
    id: &str,
    upto: Upto,
) -> Result<History, ApiError> {
    let id = path_id("order", id)?;
    let stream = StreamId::new(principal.tenant.as_str(), id.to_string())
        .map_err(|_| ApiError::NotFound("order".to_owned()))?;
    commerce_replay::history::<Order>(state.commands().store(), &stream, upto)
        .await
        .map_err(replay_error)
}

/// Every event of an order's stream, in sequence order (auditors only).
#[utoipa::path(
    get,
    path = "/audit/orders/{id}/events",
    tag = "audit",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order")),
    responses(
        (status = 200, body = AuditEventList),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn order_events(
    State(state): State<AppState>,
    principal: Authorized<Auditors>,
    Path(id): Path<String>,
) -> Result<Json<AuditEventList>, ApiError> {
    let history = load_history(&state, &principal, &id, Upto::End).await?;
    let topic = aggregate_topic(&history.aggregate_type);
    let items = history
        .entries
        .into_iter()
        .map(|entry| {
            let timestamp = entry.recorded_at.timestamp_millis();
            AuditEvent {
                event_id: entry.event_id,
                topic: topic.clone(),
                event_type: entry.event_type,
                event_version: published_version(&entry.event_version),
                upcasted_from: entry.upcasted_from,
                aggregate_type: history.aggregate_type.clone(),
                aggregate_id: history.aggregate_id.clone(),
                sequence: entry.sequence,
                position: entry.position,
                tenant_id: history.tenant_id.clone(),
                correlation_id: entry.correlation_id,
                causation_id: entry.causation_id,
                actor: entry.actor,
                timestamp,
                // The same instant as `timestamp`, cut to milliseconds as the relay does.
                occurred_at: DateTime::from_timestamp_millis(timestamp)
                    .unwrap_or(entry.recorded_at),
                payload: entry.payload,
            }
        })
        .collect();
    Ok(Json(AuditEventList { items }))
}

/// The order's state after each event, up to the end, `to_seq` or `as_of` (auditors only).
#[utoipa::path(
    get,
    path = "/audit/orders/{id}/history",
    tag = "audit",
    security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "The order"), HistoryParams),
    responses(
        (status = 200, body = OrderHistory),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn order_history(
    State(state): State<AppState>,
    principal: Authorized<Auditors>,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Result<Json<OrderHistory>, ApiError> {
    let upto = params.upto()?;
    let history = load_history(&state, &principal, &id, upto).await?;
    Ok(Json(history.into()))
}

/// The integrity of the whole event log: chains, checkpoints and seals (auditors only).
#[utoipa::path(
    get,
    path = "/audit/verify",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, body = VerifyDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    principal: Authorized<Auditors>,
) -> Result<Json<VerifyDto>, ApiError> {
    // Each verification reads the whole log: one at a time, the others are asked to come back.
    let Some(_turn) = state.verification_turn() else {
        return Err(ApiError::RateLimited {
            retry_after: std::time::Duration::from_secs(VERIFY_RETRY_AFTER_SECS),
        });
    };
    let store = state.commands().store();
    let report = commerce_replay::verify_database(store.pool(), store.audit_key())
        .await
        .map_err(replay_error)?;
    Ok(Json(VerifyDto::for_tenant(
        report,
        principal.tenant.as_str(),
    )))
}

/// When a refused verification may ask again.
const VERIFY_RETRY_AFTER_SECS: u64 = 5;

impl From<HistoryEntry> for HistoryStep {
    fn from(entry: HistoryEntry) -> Self {
        Self {
            sequence: entry.sequence,
            position: entry.position,
            event_id: entry.event_id,
            event_type: entry.event_type,
            event_version: published_version(&entry.event_version),
            upcasted_from: entry.upcasted_from,
            recorded_at: entry.recorded_at,
            correlation_id: entry.correlation_id,
            causation_id: entry.causation_id,
            actor: entry.actor,
            payload: entry.payload,
            state: entry.state,
        }
    }
}

impl From<RelatedStream> for RelatedStreamDto {
    fn from(related: RelatedStream) -> Self {
        Self {
            aggregate_type: related.aggregate_type,
            aggregate_id: related.aggregate_id,
            events: related.events,
        }
    }
}

impl From<History> for OrderHistory {
    fn from(history: History) -> Self {
        Self {
            aggregate_type: history.aggregate_type,
            tenant_id: history.tenant_id,
            aggregate_id: history.aggregate_id,
            version: history.version,
            state: history.state,
            entries: history.entries.into_iter().map(Into::into).collect(),
            related: history.related.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Damage> for DamageDto {
    fn from(damage: Damage) -> Self {
        let kind = serde_json::to_value(damage.kind)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        Self {
            stream: damage.stream,
            sequence: damage.sequence,
            kind,
            detail: damage.detail,
        }
    }
}

impl VerifyDto {
    /// The report as an auditor of `tenant` may see it: the verdict and the counts of the
    /// shared log, the damage of the log itself and of the tenant's own streams, and only how
    /// many findings concern other tenants' streams (their names and event ids are theirs).
    fn for_tenant(report: VerifyReport, tenant: &str) -> Self {
        let clean = report.is_clean();
        let own_prefix = format!("{tenant}/");
        let (own, others): (Vec<Damage>, Vec<Damage>) =
            report
                .damage
                .into_iter()
                .partition(|damage| match damage.stream.split_once(' ') {
                    Some((_, aggregate_id)) => aggregate_id.starts_with(&own_prefix),
                    None => true,
                });
        Self {
            clean,
            events: report.events,
            streams: report.streams,
            checkpoints: report.checkpoints,
            damage: own.into_iter().map(Into::into).collect(),
            other_tenants_damage: others.len() as u64,
        }
    }
}
