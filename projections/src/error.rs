//! Errors of the read side.

use crate::event::DecodeError;

/// What can go wrong while projecting, querying or rebuilding.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic the worker needs could not be created.
    #[error("kafka topic {topic} not created: {reason}")]
    Topic { topic: String, reason: String },
    #[error("undecodable event: {0}")]
    Decode(#[from] DecodeError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// An amount or count left the range of its column (a corrupt history, never a valid one).
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// An event refers to a read-model row that does not exist (e.g. an order event before
    /// `order.created`): the history is inconsistent.
    #[error("{aggregate_type} {aggregate_id}: {reason}")]
    Inconsistent {
        aggregate_type: String,
        aggregate_id: String,
        reason: String,
    },
    /// The event source of a rebuild failed.
    #[error("event source: {0}")]
    Source(String),
    /// A rebuild could not catch up with what the live workers had already applied.
    #[error("rebuild: {0}")]
    Rebuild(String),
    /// The partition was taken over by another worker: this one must stop writing to it.
    #[error("fenced: partition {topic}/{partition} moved to another worker")]
    Fenced { topic: String, partition: i32 },
}
