//! The errors of command execution.

use crate::error::{DecodeError, StoreError};
use crate::stream::StreamId;

/// Why a command produced no outcome. Only `Domain` and `IdempotencyMismatch` are the
/// caller's fault; `Conflict` may succeed when sent again later.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate rejected the command; nothing was appended.
    #[error("command rejected: {0}")]
    Domain(E),
    /// Other writers kept changing the stream; gave up after `attempts` tries.
    #[error("concurrency conflict on stream {stream} after {attempts} attempts")]
    Conflict { stream: StreamId, attempts: u32 },
    /// The idempotency key was first used with a different request (or another stream).
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyMismatch { key: String },
    /// The command's metadata names another tenant than its stream.
    #[error("metadata tenant {metadata_tenant:?} does not own stream {stream}")]
    TenantMismatch {
        stream: StreamId,
        metadata_tenant: String,
    },
    /// The database failed (the command may or may not have been committed if this happened
    /// at commit time; a retry with the same idempotency key is safe).
    #[error("event store database error: {0}")]
    Store(#[source] sqlx::Error),
    /// Stored data (events, snapshot, idempotency record) could not be decoded.
    #[error("event store data cannot be decoded: {0}")]
    Decode(#[source] DecodeError),
}

impl<E: std::error::Error> From<StoreError> for ExecuteError<E> {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(error) => Self::Store(error),
            StoreError::Decode(error) => Self::Decode(error),
        }
    }
}
