//! What every reaction needs: the command executors of the six aggregates, the gateways, the
//! clock, and [`Engine::issue`], the one way a process manager sends a command.
//!
//! `issue` stamps each command with the causing event (causation id), the flow's correlation
//! id, the actor `workflows` and an idempotency key `{prefix}:{step}`, where the prefix names
//! the cause (`pm:{event_id}` for an event, `deadline:{aggregate}:{key}:{kind}` for a timer).
//! Re-running a reaction after a crash therefore replays the stored outcomes instead of
//! appending twins. A refusal by the aggregate is an answer, not an error: the caller decides
//! (usually "already done, or moot").

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use commerce_aggregates::CommandError;
use commerce_eventstore::{
    CommandContext, CommandExecutor, EventMetadata, ExecuteError, PgEventStore, StreamId,
};
use cqrs_es::Aggregate;
use sqlx::PgPool;
use uuid::Uuid;

use crate::WorkflowConfig;
use crate::error::WorkflowError;
use crate::gateway::{Carrier, PaymentGateway};

/// The actor recorded on every command the process managers issue.
pub(crate) const ACTOR: &str = "workflows";

/// The source of "now" for commands and deadlines (tests drive it by hand).
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(Utc::now))
    }

    /// A clock that asks `now`.
    pub fn from_fn(now: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// Why a command is issued: the tenant, the causing event (or deadline) and its flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cause {
    pub tenant: String,
    /// The causing event's id (for a deadline: the event that scheduled it).
    pub causation_id: Uuid,
    pub correlation_id: Uuid,
    /// Prefix of every idempotency key issued for this cause.
    pub key_prefix: String,
}

impl Cause {
    /// The cause of a reaction to the event `event_id`.
    pub fn event(tenant: &str, event_id: Uuid, correlation_id: Uuid) -> Self {
        Self {
            tenant: tenant.to_owned(),
            causation_id: event_id,
            correlation_id,
            key_prefix: format!("pm:{event_id}"),
        }
    }

    pub fn key(&self, step: &str) -> String {
        format!("{}:{step}", self.key_prefix)
    }

    pub fn stream(&self, key: impl Into<String>) -> Result<StreamId, WorkflowError> {
        StreamId::new(self.tenant.as_str(), key)
            .map_err(|error| WorkflowError::decode("stream id", error))
    }
}

/// The answer to an issued command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Issued {
    /// Executed (or replayed): the event types it appended, possibly none (a no-op).
    Applied(Vec<String>),
    /// The aggregate refused it; nothing was appended.
    Refused(CommandError),
}

impl Issued {
    /// Whether the command appended (or had appended) an event of `event_type`.
    pub fn appended(&self, event_type: &str) -> bool {
        matches!(self, Self::Applied(types) if types.iter().any(|t| t == event_type))
    }

    pub fn is_refused(&self) -> bool {
        matches!(self, Self::Refused(_))
    }
}

/// The executors and collaborators shared by all process managers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Engine {
    pub pool: PgPool,
    /// Links and deadlines: commits that do not wait for their WAL flush (crate docs).
    pub bookkeeping: PgPool,
    pub store: PgEventStore,
    pub orders: CommandExecutor<commerce_aggregates::order::Order>,
    pub payments: CommandExecutor<commerce_aggregates::payment::Payment>,
    pub inventory: CommandExecutor<commerce_aggregates::inventory::Inventory>,
    pub shipments: CommandExecutor<commerce_aggregates::shipment::Shipment>,
    pub campaigns: CommandExecutor<commerce_aggregates::campaign::Campaign>,
    pub gateway: Arc<dyn PaymentGateway>,
    pub carrier: Arc<dyn Carrier>,
    pub clock: Clock,
    pub config: WorkflowConfig,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("gateway", &self.gateway)
            .field("carrier", &self.carrier)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Issues `command` on the stream `key` of `executor`'s aggregate for `cause`, under the
    /// idempotency key `cause.key(step)`.
    pub async fn issue<A>(
        &self,
        executor: &CommandExecutor<A>,
        cause: &Cause,
        step: &str,
        key: impl Into<String>,
        command: A::Command,
    ) -> Result<Issued, WorkflowError>
    where
        A: Aggregate<Error = CommandError> + Clone + 'static,
        A::Command: Clone + Send + Sync,
    {
        let stream = cause.stream(key)?;
        let metadata = EventMetadata {
            tenant_id: cause.tenant.clone(),
            correlation_id: cause.correlation_id,
            causation_id: Some(cause.causation_id),
            actor: ACTOR.to_owned(),
            idempotency_key: Some(cause.key(step)),
        };
        match executor
            .execute(stream, command, CommandContext::new(metadata))
            .await
        {
            Ok(outcome) => Ok(Issued::Applied(
                outcome.events.into_iter().map(|e| e.event_type).collect(),
            )),
            Err(ExecuteError::Domain(error)) => {
                tracing::debug!(aggregate = A::TYPE, step, %error, "command refused");
                Ok(Issued::Refused(error))
            }
            Err(error) => Err(WorkflowError::command(A::TYPE, error)),
        }
    }

    /// The current state of one aggregate (empty default when the stream does not exist),
    /// read through the executor that commands it: its cached state after one look at the
    /// stream's head, not a snapshot decoded per reaction (O(participants) on a flash sale's
    /// campaign, for every event of it).
    ///
    /// The state is the executor's shared snapshot (a pointer copy, never a copy of the
    /// aggregate). While a reaction holds it, the next command on that stream has to copy
    /// the aggregate, so a reaction keeps only what it needs and drops the snapshot before
    /// it commands the same stream (or awaits anything slow).
    pub async fn load<A>(
        &self,
        tenant: &str,
        key: impl Into<String>,
    ) -> Result<Arc<A>, WorkflowError>
    where
        A: Commanded,
    {
        let stream = StreamId::new(tenant, key)
            .map_err(|error| WorkflowError::decode("stream id", error))?;
        let loaded = A::executor(self).current(&stream).await?;
        Ok(loaded.aggregate)
    }
}

/// An aggregate the process managers command, with the executor they command it through.
pub(crate) trait Commanded:
    Aggregate<Command: Clone + Send + Sync, Error: Send> + Clone + 'static
{
    fn executor(engine: &Engine) -> &CommandExecutor<Self>;
}

macro_rules! commanded {
    ($($aggregate:ty => $field:ident),* $(,)?) => {
        $(impl Commanded for $aggregate {
            fn executor(engine: &Engine) -> &CommandExecutor<Self> {
                &engine.$field
            }
        })*
    };
}

commanded!(
    commerce_aggregates::order::Order => orders,
    commerce_aggregates::payment::Payment => payments,
    commerce_aggregates::inventory::Inventory => inventory,
    commerce_aggregates::shipment::Shipment => shipments,
    commerce_aggregates::campaign::Campaign => campaigns,
);
