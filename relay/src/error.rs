//! The relay's errors. Most failures (broker down, database blip, lost lock) are handled
//! inside the run loop by retrying; only those that retrying cannot fix end `Relay::run`.

use commerce_eventstore::{BackendError, StoreError};
use rdkafka::error::KafkaError;

/// Why the relay stopped (or, inside the loop, why a step failed and is retried).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store: {0}")]
    Store(#[from] StoreError),
    /// The configured event store backend (KurrentDB) failed a read.
    #[error("event store: {0}")]
    Backend(#[from] BackendError),
    /// The producer or admin client could not be created (bad configuration).
    #[error("kafka client: {0}")]
    Client(KafkaError),
    #[error("{0}")]
    Publish(#[from] PublishError),
    #[error("creating topic {topic}: {reason}")]
    TopicCreation { topic: String, reason: String },
    /// The producer's metadata does not show the topic's partitions with leaders yet.
    #[error("topic {topic} is not routable yet: {reason}")]
    TopicNotRoutable { topic: String, reason: String },
    #[error("encoding the envelope of event {event_id}: {source}")]
    Encode {
        event_id: uuid::Uuid,
        source: serde_json::Error,
    },
}

/// A batch was not (entirely) acknowledged by the broker.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} messages not acknowledged: {first}")]
pub struct PublishError {
    pub failed: usize,
    pub total: usize,
    pub first: KafkaError,
    /// The producer reported a fatal error and must be recreated.
    pub fatal: bool,
}
