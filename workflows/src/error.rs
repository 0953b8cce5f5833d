//! Why a reaction did not complete.

use commerce_aggregates::CommandError;
use commerce_eventstore::{ExecuteError, StoreError};

use crate::gateway::GatewayError;

/// A failure while reacting to an event or firing a deadline.
///
/// [`WorkflowError::is_transient`] decides what the engine does: transient failures are retried
/// (the cursor does not move, the deadline stays due); for the others trying again would fail
/// the same way, so a reaction that fails so is parked as a dead letter.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The database failed; try again.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event store failed; try again.
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// A command kept conflicting with other writers, or the store failed under it.
    #[error("command on {aggregate}: {message}")]
    Command {
        aggregate: &'static str,
        message: String,
        transient: bool,
    },
    /// A provider or carrier did not answer; try again with the same idempotency key.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// An event's payload or a stored value could not be read.
    #[error("cannot decode {what}: {message}")]
    Decode { what: String, message: String },
    /// The migration of the workflow tables failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl WorkflowError {
    /// Whether trying the same thing again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(_) | Self::Store(_) | Self::Gateway(_) => true,
            Self::Command { transient, .. } => *transient,
            Self::Decode { .. } | Self::Migrate(_) => false,
        }
    }

    pub(crate) fn decode(what: impl Into<String>, message: impl ToString) -> Self {
        Self::Decode {
            what: what.into(),
            message: message.to_string(),
        }
    }

    /// Turns an executor failure into a workflow failure; domain rejections are not errors at
    /// this level (see [`crate::engine::Issued`]) and never reach here.
    pub(crate) fn command(aggregate: &'static str, error: ExecuteError<CommandError>) -> Self {
        let transient = matches!(
            error,
            ExecuteError::Conflict { .. } | ExecuteError::Store(_)
        );
        Self::Command {
            aggregate,
            message: error.to_string(),
            transient,
        }
    }
}
