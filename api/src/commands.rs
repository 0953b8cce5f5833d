//! Running commands for HTTP requests: the executors of the write model, the metadata and
//! idempotency fingerprint of each request, and the one mapping of execution errors to
//! [`ApiError`].
//!
//! Responses are built from the events a command appended (read back by their sequences), so a
//! replay under the same `Idempotency-Key` answers the same body without executing anything.

use axum::Json;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commerce_aggregates::CommandError;
use commerce_aggregates::campaign::Campaign;
use commerce_aggregates::inventory::Inventory;
use commerce_aggregates::order::Order;
use commerce_aggregates::payment::Payment;
use commerce_aggregates::product::{self, Product};
use commerce_aggregates::shipment::Shipment;
use commerce_aggregates::{Catalog, StoreCatalog};
use commerce_eventstore::{
    CommandContext, CommandExecutor, CommandOutcome, EventMetadata, ExecuteError, ExecutorConfig,
    PgEventStore, StreamId, request_hash,
};
use commerce_workflows::Executors;
use cqrs_es::Aggregate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::Principal;
use crate::extract::{CorrelationId, IdempotencyKey};
use crate::metrics;
use crate::problem::{ApiError, FieldError};

/// The response header with the global position of the command's last event.
pub const CONSISTENCY_TOKEN: HeaderName = HeaderName::from_static("consistency-token");
/// Set on a response replayed from an earlier request with the same idempotency key.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The write model's executors, one per aggregate type, sharing one event store.
///
/// They are the only executors of the process: the in-process workflows command through
/// clones of them ([`Commands::workflow_executors`]), so a stream has one cached aggregate and
/// one command queue whichever side writes to it.
#[derive(Debug)]
pub struct Commands {
    store: PgEventStore,
    pub campaigns: CommandExecutor<Campaign>,
    pub inventory: CommandExecutor<Inventory>,
    pub orders: CommandExecutor<Order>,
    pub payments: CommandExecutor<Payment>,
    pub products: CommandExecutor<Product>,
    /// No route commands shipments; the process managers do.
    shipments: CommandExecutor<Shipment>,
}

impl Commands {
    /// The event store the executors share (its upcasters and audit key), for the auditor routes.
    pub fn store(&self) -> &PgEventStore {
        &self.store
    }

    pub fn new(pool: PgPool) -> Self {
        let store = PgEventStore::new(pool).with_upcasters(product::upcasters());
        let catalog: Arc<dyn Catalog> = Arc::new(StoreCatalog::new(store.clone()));
        Self {
            inventory: CommandExecutor::new(store.clone(), ()),
            campaigns: CommandExecutor::new(store.clone(), Arc::clone(&catalog)),
            orders: CommandExecutor::new(store.clone(), catalog),
            payments: CommandExecutor::new(store.clone(), ()),
            products: CommandExecutor::new(store.clone(), ()),
            shipments: CommandExecutor::new(store.clone(), ()),
            store,
        }
    }

    /// Clones of these executors (same caches and per-stream queues) for the process managers
    /// running in this process.
    pub fn workflow_executors(&self) -> Executors {
        Executors {
            orders: self.orders.clone(),
            payments: self.payments.clone(),
            inventory: self.inventory.clone(),
            shipments: self.shipments.clone(),
            campaigns: self.campaigns.clone(),
        }
    }

    /// The customer of an order, from its write-model state; `None` when there is no such
    /// order.
    pub async fn order_owner(&self, stream: &StreamId) -> Result<Option<String>, ApiError> {
        let loaded = self
            .store
            .load_latest::<Order>(stream, &ExecutorConfig::default().state_version)
            .await
            .map_err(|error| {
                tracing::error!(%error, "cannot load an order");
                ApiError::Unavailable
            })?;
        Ok((loaded.version > 0).then(|| loaded.aggregate.customer_id().to_owned()))
    }

    /// The payloads of the events `outcome` appended, in sequence order.
    pub async fn events_of<E: DeserializeOwned>(
        &self,
        outcome: &CommandOutcome,
    ) -> Result<Vec<E>, ApiError> {
        let Some(first) = outcome.events.first() else {
            return Ok(Vec::new());
        };
        let (from, to) = (sequence(first.sequence)?, sequence(outcome.last_sequence)?);
        let payloads: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT payload FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence BETWEEN $3 AND $4 \
             ORDER BY sequence",
        )
        .bind(&outcome.aggregate_type)
        .bind(outcome.aggregate_id.aggregate_id())
        .bind(from)
        .bind(to)
        .fetch_all(self.store.pool())
        .await
        .map_err(database_error)?;
        payloads
            .into_iter()
            .map(|payload| {
                serde_json::from_value(payload).map_err(|error| {
                    tracing::error!(%error, "an appended event does not decode");
                    ApiError::Internal
                })
            })
            .collect()
    }
}

fn sequence(value: u64) -> Result<i64, ApiError> {
    i64::try_from(value).map_err(|_| ApiError::Internal)
}

/// Who sent a command, how to correlate it, and its idempotency fingerprint.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub correlation: CorrelationId,
    pub key: IdempotencyKey,
    /// `METHOD path`, part of the fingerprint so one key cannot be reused on another route.
    pub route: String,
}

impl Request<'_> {
    /// A new aggregate id: derived from the tenant, caller, route and idempotency key when
    /// there is one (so a retried create addresses the same stream and replays), random
    /// otherwise.
    pub fn new_id(&self) -> Uuid {
        match &self.key.0 {
            Some(key) => {
                let digest = Sha256::new()
                    .chain_update(self.principal.tenant.as_str())
                    .chain_update([0])
                    .chain_update(self.principal.subject.as_str())
                    .chain_update([0])
                    .chain_update(&self.route)
                    .chain_update([0])
                    .chain_update(key)
                    .finalize();
                let mut bytes = [0; 16];
                bytes.copy_from_slice(&digest[..16]);
                Uuid::new_v8(bytes)
            }
            None => Uuid::new_v4(),
        }
    }

    fn context(&self, body: &impl Serialize) -> Result<CommandContext, ApiError> {
        let mut metadata = EventMetadata::new(
            self.principal.tenant.as_str(),
            self.principal.subject.as_str(),
        )
        .with_correlation(self.correlation.0);
        let Some(key) = &self.key.0 else {
            return Ok(CommandContext::new(metadata));
        };
        metadata = metadata.with_idempotency_key(key.clone());
        // The caller is part of the fingerprint: keys are the tenant's, and another caller
        // sending the same key and body must be told the key is taken, not handed the first
        // caller's response.
        let fingerprint = request_hash(&serde_json::json!({
            "route": self.route,
            "caller": self.principal.subject.as_str(),
            "body": body,
        }))
        .map_err(|error| {
            tracing::error!(%error, "cannot fingerprint a request");
            ApiError::Internal
        })?;
        Ok(CommandContext::new(metadata).with_request_hash(fingerprint))
    }

    /// Runs `command` on the caller's tenant's stream `key`; `body` is the request as parsed
    /// (its canonical JSON is the idempotency fingerprint).
    pub async fn execute<A>(
        &self,
        executor: &CommandExecutor<A>,
        key: &str,
        command: A::Command,
        body: &impl Serialize,
    ) -> Result<CommandOutcome, ApiError>
    where
        A: Aggregate<Error = CommandError> + Clone + 'static,
        A::Command: Clone + Send + Sync,
    {
        let stream = StreamId::new(self.principal.tenant.as_str(), key)
            .map_err(|_| ApiError::NotFound(A::TYPE.to_owned()))?;
        let context = self.context(body)?;
        match executor.execute(stream, command, context).await {
            Ok(outcome) => {
                if outcome.replayed {
                    metrics::record_replay(A::TYPE);
                } else {
                    metrics::record_appended(A::TYPE, outcome.events.len());
                }
                Ok(outcome)
            }
            Err(error) => Err(execute_error::<A>(error)),
        }
    }
}

/// The status of a domain rejection, as `commerce-aggregates` documents it.
pub fn domain_error(error: CommandError) -> ApiError {
    match error {
        CommandError::Invalid { field, message } => {
            ApiError::Validation(vec![FieldError { field, message }])
        }
        CommandError::NotFound(what) => ApiError::NotFound(what),
        error @ (CommandError::InvalidState { .. }
        | CommandError::AlreadyExists(_)
        | CommandError::LimitReached(_)) => ApiError::Conflict(error.to_string()),
    }
}

fn execute_error<A: Aggregate<Error = CommandError>>(
    error: ExecuteError<CommandError>,
) -> ApiError {
    match error {
        ExecuteError::Domain(error) => domain_error(error),
        ExecuteError::Conflict { attempts, .. } => {
            metrics::record_conflict(A::TYPE);
            ApiError::Conflict(format!(
                "other writers kept changing this {} ({attempts} attempts); retry",
                A::TYPE
            ))
        }
        ExecuteError::IdempotencyMismatch { .. } => ApiError::IdempotencyKeyReused,
        ExecuteError::Store(error) => database_error(error),
        error @ (ExecuteError::TenantMismatch { .. } | ExecuteError::Decode(_)) => {
            tracing::error!(%error, "command execution failed");
            ApiError::Internal
        }
    }
}

/// A database failure: logged in full, answered 503 (the client may retry with its key).
pub fn database_error(error: sqlx::Error) -> ApiError {
    tracing::error!(%error, "database error");
    ApiError::Unavailable
}

/// A command's HTTP answer: status, optional JSON body, and the consistency token.
#[derive(Debug)]
pub struct Answer<T> {
    pub status: StatusCode,
    pub body: Option<T>,
    pub position: Option<i64>,
    pub replayed: bool,
}

impl<T> Answer<T> {
    /// The answer to `outcome` with `status` and `body`.
    pub fn new(status: StatusCode, outcome: &CommandOutcome, body: Option<T>) -> Self {
        Self {
            status,
            body,
            position: outcome.last_position,
            replayed: outcome.replayed,
        }
    }
}

impl<T: Serialize> IntoResponse for Answer<T> {
    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, Json(body)).into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        if let Some(position) = self.position {
            headers.insert(CONSISTENCY_TOKEN, HeaderValue::from(position));
        }
        if self.replayed {
            headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        response
    }
}
