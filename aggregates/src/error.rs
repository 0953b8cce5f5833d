//! The one rejection type of the write model: why a command appended no event.

use commerce_domain::DomainError;

/// A command was refused; nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A field of the command is invalid (maps to 422).
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field, as named in the API (`lines[0].quantity`).
        field: String,
        /// What is wrong with it, fit for a client.
        message: String,
    },
    /// The aggregate's current state does not allow the command (maps to 409).
    #[error("cannot {action} while {state}")]
    InvalidState {
        /// What was attempted, e.g. `cancel order`.
        action: String,
        /// The state that forbids it, e.g. `shipped`.
        state: String,
    },
    /// The command targets an aggregate that does not exist (maps to 404).
    #[error("{0} not found")]
    NotFound(String),
    /// The command would create an aggregate that already exists (maps to 409).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A business limit was hit, e.g. a campaign is full (maps to 409).
    #[error("{0}")]
    LimitReached(String),
}

impl CommandError {
    /// A field problem.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A transition the state machine does not have.
    pub fn invalid_state(action: impl Into<String>, state: impl Into<String>) -> Self {
        Self::InvalidState {
            action: action.into(),
            state: state.into(),
        }
    }

    /// A domain value that failed validation, reported against `field`.
    pub fn from_domain(field: impl Into<String>, error: &DomainError) -> Self {
        Self::invalid(field, error.to_string())
    }
}
