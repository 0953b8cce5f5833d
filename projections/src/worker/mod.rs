//! Projection workers: a Kafka consumer group over the six aggregate topics that writes the read
//! models with an exactly-once effect.
//!
//! For each record, one PostgreSQL transaction holds the read-model change (via the
//! [`Projector`]: duplicates ignored, gaps waited for), the stream's last sequence, and the
//! group's offset for the partition, moved by compare-and-set. Only after the commit is the offset
//! committed to Kafka too (best effort, for lag tools; the stored offsets are the truth, read on
//! every assignment). A worker fenced by a rebalance fails its compare-and-set, rolls back, and
//! ignores that partition until it is assigned again. An undecodable record, or one whose event
//! contradicts the read models, is parked in `rm_meta.dead_letters` with the reason and its
//! stream is blocked (its later events wait as pending) while other streams go on.
//!
//! Layout: `context` (rebalance callbacks and lag statistics), `offsets` (stored offsets).

mod context;
mod offsets;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_contracts::envelope::headers;
use commerce_contracts::topics::AGGREGATE_TOPIC_PREFIX;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::PgPool;

use self::context::{Owned, WorkerContext};
use crate::analytics::publish_outbox;
use crate::error::ProjectionError;
use crate::event::{AGGREGATE_TYPES, EventRecord};
use crate::projector::{Outcome, Projector, StreamKey};
use crate::schema::{ReadModelSchema, SWAP_LOCK_KEY};

/// How a projection worker connects and what it consumes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Consumer group (and key of the stored offsets), e.g. `commerce-projections`.
    pub group_id: String,
    /// Prepended to every topic name (empty in production; unique per test).
    pub topic_prefix: String,
    /// Publish the analyst streams from the outbox after each commit.
    pub publish_analytics: bool,
}

impl WorkerConfig {
    /// The production configuration for `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: "commerce-projections".into(),
            topic_prefix: String::new(),
            publish_analytics: true,
        }
    }

    /// The aggregate topics this worker consumes.
    pub fn topics(&self) -> Vec<String> {
        AGGREGATE_TYPES
            .iter()
            .map(|aggregate| format!("{}{AGGREGATE_TOPIC_PREFIX}{aggregate}", self.topic_prefix))
            .collect()
    }

    fn aggregate_type_of(&self, topic: &str) -> Option<String> {
        topic
            .strip_prefix(self.topic_prefix.as_str())
            .and_then(|rest| rest.strip_prefix(AGGREGATE_TOPIC_PREFIX))
            .map(str::to_owned)
    }
}

/// Pause before retrying a record after a database error (the record is retried, never skipped).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How often offsets are committed to Kafka and the analytics outbox is drained.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Runs one worker until `shutdown` completes. Needs a multi-threaded Tokio runtime (the
/// assignment callback waits for PostgreSQL).
pub async fn run(
    pool: PgPool,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectionError> {
    let context = WorkerContext::new(
        pool.clone(),
        config.group_id.clone(),
        tokio::runtime::Handle::current(),
    );
    let consumer: Arc<StreamConsumer<WorkerContext>> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set("session.timeout.ms", "10000")
            .create_with_context(context)?,
    );
    let topics = config.topics();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    let producer: Option<FutureProducer> = if config.publish_analytics {
        Some(
            ClientConfig::new()
                .set("bootstrap.servers", &config.brokers)
                .set("enable.idempotence", "true")
                .create()?,
        )
    } else {
        None
    };
    let projector = Projector::new(ReadModelSchema::Live, config.publish_analytics);
    let mut progress: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_housekeeping = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let message = tokio::select! {
            () = &mut shutdown => break,
            message = consumer.recv() => message,
        };
        if let Some(failure) = consumer.context().failure() {
            return Err(ProjectionError::Rebuild(format!(
                "assignment failed: {failure}"
            )));
        }
        match message {
            Ok(message) => {
                let processed = process(
                    &pool,
                    &consumer,
                    &config,
                    &projector,
                    &message,
                    &mut shutdown,
                )
                .await?;
                if let Some(next) = processed {
                    progress.insert((message.topic().to_owned(), message.partition()), next);
                }
            }
            Err(error) => tracing::warn!(%error, "kafka consumer error"),
        }
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            last_housekeeping = Instant::now();
            housekeeping(&pool, &consumer, producer.as_ref(), &config, &mut progress).await;
        }
    }
    housekeeping(&pool, &consumer, producer.as_ref(), &config, &mut progress).await;
    Ok(())
}

/// Commits processed offsets to Kafka (for lag tools) and publishes queued analyst records.
async fn housekeeping(
    pool: &PgPool,
    consumer: &StreamConsumer<WorkerContext>,
    producer: Option<&FutureProducer>,
    config: &WorkerConfig,
    progress: &mut HashMap<(String, i32), i64>,
) {
    if !progress.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in progress.drain() {
            if consumer.context().owned(&topic, partition).is_some() {
                // Only partitions still owned: committing a revoked one would be refused anyway.
                let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(next));
            }
        }
        if tpl.count() > 0
            && let Err(error) = consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(%error, "kafka offset commit (best effort) failed");
        }
    }
    if let Some(producer) = producer {
        loop {
            match publish_outbox(pool, producer, &config.topic_prefix, 500).await {
                Ok(500) => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "analytics outbox not drained");
                    break;
                }
            }
        }
    }
}

/// Handles one record, retrying database errors until it is done or the worker shuts down.
/// Returns the partition's next offset when the record was accounted for.
async fn process(
    pool: &PgPool,
    consumer: &StreamConsumer<WorkerContext>,
    config: &WorkerConfig,
    projector: &Projector,
    message: &BorrowedMessage<'_>,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Option<i64>, ProjectionError> {
    let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
    loop {
        let Some(owned) = consumer.context().owned(topic, partition) else {
            return Ok(None);
        };
        if owned.fenced {
            return Ok(None);
        }
        match handle(pool, config, projector, message, owned.expected).await {
            Ok(()) => {
                consumer.context().update(
                    topic,
                    partition,
                    Owned {
                        expected: Some(offset + 1),
                        fenced: false,
                    },
                );
                return Ok(Some(offset + 1));
            }
            Err(ProjectionError::Fenced { .. }) => {
                tracing::warn!(
                    topic,
                    partition,
                    "fenced: another worker owns this partition now"
                );
                consumer.context().update(
                    topic,
                    partition,
                    Owned {
                        expected: owned.expected,
                        fenced: true,
                    },
                );
                return Ok(None);
            }
            Err(error) => {
                tracing::warn!(%error, topic, partition, offset, "projection failed; retrying the record");
                tokio::select! {
                    () = &mut *shutdown => return Ok(None),
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }
}

/// What a record turned out to be.
enum Decoded {
    Event(Box<crate::event::DecodedEvent>),
    Poison {
        reason: String,
        stream: Option<StreamKey>,
    },
}

fn decode(config: &WorkerConfig, message: &BorrowedMessage<'_>) -> Decoded {
    let payload = message.payload().unwrap_or_default();
    let record = match EventRecord::from_json(payload) {
        Ok(record) => record,
        Err(error) => {
            // The envelope is unreadable: the key and headers still name the stream.
            let tenant = message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|header| header.key == headers::TENANT_ID)
                    .and_then(|header| header.value)
                    .and_then(|value| std::str::from_utf8(value).ok())
                    .map(str::to_owned)
            });
            let key = message
                .key()
                .and_then(|key| std::str::from_utf8(key).ok())
                .map(str::to_owned);
            let stream = match (tenant, key, config.aggregate_type_of(message.topic())) {
                (Some(tenant_id), Some(aggregate_id), Some(aggregate_type)) => Some(StreamKey {
                    tenant_id,
                    aggregate_type,
                    aggregate_id,
                }),
                _ => None,
            };
            return Decoded::Poison {
                reason: error.to_string(),
                stream,
            };
        }
    };
    let stream = StreamKey {
        tenant_id: record.tenant_id.clone(),
        aggregate_type: record.aggregate_type.clone(),
        aggregate_id: record.aggregate_id.clone(),
    };
    match record.decode() {
        Ok(event) => Decoded::Event(Box::new(event)),
        Err(error) => Decoded::Poison {
            reason: error.to_string(),
            stream: Some(stream),
        },
    }
}

/// True for errors that a retry cannot fix: the record is parked instead.
fn is_permanent(error: &ProjectionError) -> bool {
    match error {
        ProjectionError::Decode(_)
        | ProjectionError::Json(_)
        | ProjectionError::Overflow(_)
        | ProjectionError::Inconsistent { .. } => true,
        // Data exceptions (22) and integrity violations (23) repeat on every retry.
        ProjectionError::Database(sqlx::Error::Database(db)) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// One transaction: the record's effect (or its parking) plus the offset.
async fn handle(
    pool: &PgPool,
    config: &WorkerConfig,
    projector: &Projector,
    message: &BorrowedMessage<'_>,
    expected: Option<i64>,
) -> Result<(), ProjectionError> {
    let decoded = decode(config, message);
    let (reason, stream) = match decoded {
        Decoded::Event(event) => {
            let mut tx = begin(pool, projector).await?;
            match projector.project(&mut tx, &event).await {
                Ok(outcome) => {
                    offsets::advance(
                        &mut tx,
                        &config.group_id,
                        message.topic(),
                        message.partition(),
                        expected,
                        message.offset() + 1,
                    )
                    .await?;
                    tx.commit().await?;
                    record_metrics(&event.record, outcome);
                    return Ok(());
                }
                Err(error) if is_permanent(&error) => {
                    tx.rollback().await?;
                    let stream = StreamKey {
                        tenant_id: event.record.tenant_id.clone(),
                        aggregate_type: event.record.aggregate_type.clone(),
                        aggregate_id: event.record.aggregate_id.clone(),
                    };
                    (error.to_string(), Some(stream))
                }
                Err(error) => return Err(error),
            }
        }
        Decoded::Poison { reason, stream } => (reason, stream),
    };
    let mut tx = begin(pool, projector).await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO rm_meta.dead_letters (group_id, topic, partition, \"offset\", record_key, record_value,
             tenant_id, aggregate_type, aggregate_id, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (group_id, topic, partition, \"offset\") DO NOTHING
         RETURNING id",
    )
    .bind(&config.group_id)
    .bind(message.topic())
    .bind(message.partition())
    .bind(message.offset())
    .bind(message.key())
    .bind(message.payload())
    .bind(stream.as_ref().map(|s| &s.tenant_id))
    .bind(stream.as_ref().map(|s| &s.aggregate_type))
    .bind(stream.as_ref().map(|s| &s.aggregate_id))
    .bind(&reason)
    .fetch_optional(&mut *tx)
    .await?;
    if let (Some(id), Some(stream)) = (id, &stream) {
        projector.block(&mut tx, stream, id).await?;
    }
    offsets::advance(
        &mut tx,
        &config.group_id,
        message.topic(),
        message.partition(),
        expected,
        message.offset() + 1,
    )
    .await?;
    tx.commit().await?;
    tracing::error!(topic = message.topic(), partition = message.partition(), offset = message.offset(), %reason, "record parked as a dead letter");
    metrics::counter!("projection_parked_total", "topic" => message.topic().to_owned())
        .increment(1);
    Ok(())
}

/// Opens a projecting transaction: shared swap lock (a rebuild's swap waits for it, and it waits
/// for a swap), and the live schema on the search path.
async fn begin<'c>(
    pool: &'c PgPool,
    projector: &Projector,
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, ProjectionError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(SWAP_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    projector.begin(&mut tx).await?;
    Ok(tx)
}

fn record_metrics(record: &EventRecord, outcome: Outcome) {
    match outcome {
        Outcome::Applied { drained } => {
            metrics::counter!("projection_events_applied_total", "aggregate_type" => record.aggregate_type.clone())
                .increment(1 + u64::from(drained));
            let age_ms = chrono::Utc::now()
                .timestamp_millis()
                .saturating_sub(record.timestamp)
                .max(0);
            // Milliseconds to seconds for a gauge; precision loss is irrelevant at this scale.
            #[allow(clippy::float_arithmetic)]
            let age = age_ms as f64 / 1000.0;
            metrics::gauge!("projection_last_event_age_seconds").set(age);
        }
        Outcome::Duplicate => metrics::counter!("projection_duplicates_total").increment(1),
        Outcome::Pending => metrics::counter!("projection_pending_total").increment(1),
    }
}

#[cfg(test)]
mod tests;
