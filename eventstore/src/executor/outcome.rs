//! What a command execution hands back, and what is replayed for a repeated idempotency key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::metadata::EventMetadata;
use crate::stream::StreamId;

/// The caller's side of a command: its metadata (copied onto every event) and a fingerprint
/// of the request, compared when an idempotency key is reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandContext {
    pub metadata: EventMetadata,
    /// A fingerprint of the request body (see [`request_hash`]); `None` when the caller has
    /// no body to compare. Only used together with `metadata.idempotency_key`.
    pub request_hash: Option<String>,
}

impl CommandContext {
    pub fn new(metadata: EventMetadata) -> Self {
        Self {
            metadata,
            request_hash: None,
        }
    }

    pub fn with_request_hash(mut self, request_hash: impl Into<String>) -> Self {
        self.request_hash = Some(request_hash.into());
        self
    }
}

/// SHA-256 (hex) of the request's canonical JSON (object keys sorted), for
/// [`CommandContext::request_hash`].
pub fn request_hash<T: Serialize + ?Sized>(request: &T) -> Result<String, serde_json::Error> {
    // Going through `Value` sorts object keys, so field order does not change the hash.
    let canonical = serde_json::to_vec(&serde_json::to_value(request)?)?;
    let digest = Sha256::digest(&canonical);
    Ok(digest.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// One event appended by a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub sequence: u64,
    /// Global identity (use the log cursor, not this, to tail the log).
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub recorded_at: DateTime<Utc>,
}

/// The result of [`crate::CommandExecutor::execute`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub aggregate_type: String,
    pub aggregate_id: StreamId,
    /// The events this command appended (empty for a no-op command).
    pub events: Vec<StoredEvent>,
    /// The stream's version after the command.
    pub last_sequence: u64,
    /// The global position of the last appended event (the API's consistency token).
    pub last_position: Option<i64>,
    /// True when this is the stored outcome of an earlier execution with the same
    /// idempotency key: nothing was executed or appended this time.
    pub replayed: bool,
    /// The metadata the command ran with.
    pub metadata: EventMetadata,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn given_the_same_fields_in_another_order_when_hashed_then_the_hash_is_equal() {
        let left = request_hash(&json!({"a": 1, "b": [1, 2]})).expect("hashable");
        let right = request_hash(&json!({"b": [1, 2], "a": 1})).expect("hashable");
        assert_eq!(left, right);
        assert_eq!(left.len(), 64);
        assert_ne!(left, request_hash(&json!({"a": 2})).expect("hashable"));
    }
}
