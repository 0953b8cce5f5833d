//! Errors of the auditor tooling.

use commerce_eventstore::{StoreError, StreamIdError};

/// Failure of a replay operation (history, verification, export, rebuild).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    StreamId(#[from] StreamIdError),
    #[error("export line {line}: {reason}")]
    Export { line: usize, reason: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the stream {0} has no events")]
    NotFound(String),
    #[error("refusing to seal a damaged log: {0} problem(s) found, run `commerce replay verify`")]
    Damaged(usize),
    #[error(transparent)]
    Projection(#[from] commerce_projections::ProjectionError),
    #[error("{0}")]
    Value(String),
}

impl From<serde_json::Error> for ReplayError {
    fn from(error: serde_json::Error) -> Self {
        Self::Value(error.to_string())
    }
}
