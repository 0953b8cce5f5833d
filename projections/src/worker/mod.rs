//! Projection workers: a Kafka consumer group over the six aggregate topics that writes the read
//! models with an exactly-once effect.
//!
//! For each batch of polled records, one PostgreSQL transaction holds the read-model changes
//! (via the [`Projector`]: duplicates ignored, gaps waited for), the streams' last sequences,
//! and the group's offset for each partition, moved by compare-and-set. Only after the commit is the offset
//! committed to Kafka too (best effort, for lag tools; the stored offsets are the truth, read on
//! every assignment). A worker fenced by a rebalance fails its compare-and-set, rolls back, and
//! ignores that partition until it is assigned again. An undecodable record, or one whose event
//! contradicts the read models, is parked in `rm_meta.dead_letters` with the reason and its
//! stream is blocked (its later events wait as pending) while other streams go on.
//!
//! Every worker also records in PostgreSQL which partitions it consumes; when some stay consumed
//! by nobody for long (a stuck group coordinator, as Tansu 0.6's after a member dies without
//! leaving), the workers move together to a fresh Kafka group (see `membership`).
//!
//! A worker that received nothing for a while pauses its partitions until the relay announces
//! records (see `quiet`).
//!
//! Layout: `context` (rebalance callbacks and lag statistics), `offsets` (stored offsets),
//! `membership` (the workers' record of their group, and the move to a fresh Kafka group),
//! `quiet` (pausing while nothing comes).

mod context;
mod membership;
mod offsets;
mod quiet;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_contracts::envelope::headers;
use commerce_contracts::topics::AGGREGATE_TOPIC_PREFIX;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::{Acquire, PgConnection, PgPool};

use self::context::{Owned, WorkerContext};
use self::membership::Membership;
use self::quiet::Quiet;
use crate::analytics::{create_topics, publish_outbox};
use crate::error::ProjectionError;
use crate::event::{AGGREGATE_TYPES, DecodedEvent, EventRecord};
use crate::projector::{Outcome, Projector, StreamKey};
use crate::schema::{ReadModelSchema, SWAP_LOCK_KEY};
use crate::wakeup;

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
    /// Partitions of the analytics topics when this worker has to create them.
    pub topic_partitions: i32,
    /// Replication factor of the analytics topics when this worker has to create them.
    pub topic_replication: i32,
    /// How long the broker may hold a fetch (`fetch.wait.max.ms`). Tansu 0.6 answers a fetch
    /// only after sleeping through this wait (the whole of it below 250 ms), data or not, and
    /// reads every partition of the fetch on each pass: shorter means fresher read models and
    /// a busier broker. Kafka and Redpanda answer as soon as records arrive.
    pub fetch_wait: Duration,
}

impl WorkerConfig {
    /// The production configuration for `brokers`.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group_id: "commerce-projections".into(),
            topic_prefix: String::new(),
            publish_analytics: true,
            topic_partitions: 6,
            topic_replication: 1,
            fetch_wait: Duration::from_millis(DEFAULT_FETCH_WAIT_MS),
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

/// First pause before retrying a batch after a database error (the batch is retried, never
/// skipped); it doubles up to [`RETRY_PAUSE_MAX`] while the database stays unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(250);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);
/// How often offsets are committed to Kafka and the analytics outbox is drained.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How long one housekeeping pass may publish analyst records, well within the consumer's
/// `max.poll.interval.ms`.
const PUBLISH_BUDGET: Duration = Duration::from_secs(2);
/// How often the partitions of the aggregate topics are read again from the broker.
const PARTITIONS_REREAD: Duration = Duration::from_secs(30);
/// Records applied together in one transaction, at most: those already fetched when the first
/// one arrives (a batch never waits for more).
const MAX_BATCH: usize = 256;
/// Records the consumer keeps fetched ahead per partition, at least ([`MAX_BATCH`] times
/// a few): librdkafka's default is 100,000.
const PREFETCH_RECORDS: usize = 4 * MAX_BATCH;
/// The bound on everything fetched ahead, in KiB (librdkafka's default is 64 MiB).
const PREFETCH_KBYTES: usize = 8 * 1024;
/// The default [`WorkerConfig::fetch_wait`] in milliseconds: the floor of a record's wait on
/// Tansu, which sleeps through it; short enough for read-your-writes, long enough not to spin.
pub const DEFAULT_FETCH_WAIT_MS: u64 = 25;

/// Runs one worker until `shutdown` completes. Needs a multi-threaded Tokio runtime (the
/// assignment callback waits for PostgreSQL).
///
/// Database errors never end the loop: the batch is retried with a growing pause (the pool
/// reconnects), and offsets are re-read from PostgreSQL when a compare-and-set shows they moved.
/// It ends with an error only when an assignment could not be honoured for a long time.
pub async fn run(
    pool: PgPool,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectionError> {
    let mut membership = Membership::join(&pool, &config.group_id).await?;
    let mut consumer = subscribe(&pool, &config, &membership.kafka_group())?;
    let mut partitions = all_partitions(&consumer, &config);
    let mut partitions_read = Instant::now();
    let mut analytics = if config.publish_analytics {
        Some(Analytics {
            producer: analytics_producer(&config.brokers)?,
            topics_ready: false,
        })
    } else {
        None
    };
    let projector = Projector::new(ReadModelSchema::Live, config.publish_analytics);
    let mut progress: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_housekeeping = Instant::now();
    let mut quiet = Quiet::start(&pool);
    tokio::pin!(shutdown);
    loop {
        let nap = quiet.sleep_for(HOUSEKEEPING, Instant::now());
        let message = tokio::select! {
            () = &mut shutdown => break,
            message = consumer.recv() => Some(message),
            () = quiet.announced() => {
                quiet.wake(&consumer, Instant::now());
                None
            }
            // Wake up now and then even without records: housekeeping, failures, and pausing
            // or looking when due.
            () = tokio::time::sleep(nap) => None,
        };
        if let Some(failure) = consumer.context().failure() {
            return Err(ProjectionError::Rebuild(format!(
                "assignment failed: {failure}"
            )));
        }
        match message {
            Some(Ok(first)) => {
                quiet.received(Instant::now());
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    // Only what is already fetched: a zero timeout polls the queue once.
                    match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                        Ok(Ok(message)) => batch.push(message),
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "kafka consumer error");
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let done =
                    process(&pool, &consumer, &config, &projector, &batch, &mut shutdown).await;
                progress.extend(done);
            }
            Some(Err(error)) => tracing::warn!(%error, "kafka consumer error"),
            None => {}
        }
        quiet.tick(&consumer, Instant::now());
        if last_housekeeping.elapsed() >= HOUSEKEEPING {
            last_housekeeping = Instant::now();
            housekeeping(&pool, &consumer, analytics.as_mut(), &config, &mut progress).await;
            // Topics may be created, or given partitions, after the worker started.
            if partitions_read.elapsed() >= PARTITIONS_REREAD {
                partitions = all_partitions(&consumer, &config);
                partitions_read = Instant::now();
            }
            let consuming = consumer.context().consuming();
            match membership.check(&pool, &consuming, &partitions).await {
                Ok(true) => {
                    // Leaves the old Kafka group (closing waits for the revocation) and meets the
                    // other workers in the new one; offsets not yet committed to Kafka belong to
                    // the old group and are dropped (the stored ones are the truth).
                    progress.clear();
                    let old = std::mem::replace(
                        &mut consumer,
                        subscribe(&pool, &config, &membership.kafka_group())?,
                    );
                    tokio::task::block_in_place(|| drop(old));
                    quiet.wake(&consumer, Instant::now());
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "group membership not recorded"),
            }
        }
    }
    housekeeping(&pool, &consumer, analytics.as_mut(), &config, &mut progress).await;
    if let Err(error) = membership.leave(&pool).await {
        tracing::warn!(%error, "group membership not removed");
    }
    Ok(())
}

/// A consumer of the aggregate topics in the Kafka group `kafka_group`.
fn subscribe(
    pool: &PgPool,
    config: &WorkerConfig,
    kafka_group: &str,
) -> Result<Arc<StreamConsumer<WorkerContext>>, ProjectionError> {
    let context = WorkerContext::new(
        pool.clone(),
        config.group_id.clone(),
        tokio::runtime::Handle::current(),
    );
    let consumer: Arc<StreamConsumer<WorkerContext>> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", kafka_group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set("session.timeout.ms", "10000")
            // Bounds a rebalance that waits for members that died without leaving (a broker
            // completes it at the rebalance timeout, which librdkafka sets to this, 300 s by
            // default). The loop polls between every batch, far more often than this.
            .set("max.poll.interval.ms", "30000")
            // librdkafka's 500 ms default made every record wait 250–500 ms on Tansu before a
            // worker saw it (see `WorkerConfig::fetch_wait`).
            .set(
                "fetch.wait.max.ms",
                config.fetch_wait.as_millis().to_string(),
            )
            // librdkafka reads ahead up to 100,000 records or 64 MiB by default: a worker
            // catching up held that much in the engine's memory. A few batches ahead keeps
            // the loop fed (a fetch brings up to 1 MiB per partition).
            .set("queued.min.messages", PREFETCH_RECORDS.to_string())
            .set("queued.max.messages.kbytes", PREFETCH_KBYTES.to_string())
            .create_with_context(context)?,
    );
    let topics = config.topics();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    Ok(consumer)
}

/// Every partition of the aggregate topics (those that exist yet), from the broker's metadata.
fn all_partitions(
    consumer: &StreamConsumer<WorkerContext>,
    config: &WorkerConfig,
) -> Vec<(String, i32)> {
    let mut partitions = Vec::new();
    for topic in config.topics() {
        // A blocking request: leave the async context while it waits.
        let metadata = tokio::task::block_in_place(|| {
            consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))
        });
        match metadata {
            Ok(metadata) => partitions.extend(
                metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| (topic.clone(), p.id()))),
            ),
            Err(error) => tracing::warn!(%error, %topic, "topic metadata not read"),
        }
    }
    partitions
}

/// The analyst-stream publisher of a worker.
struct Analytics {
    producer: FutureProducer,
    /// The analytics topics were created (or found): Tansu does not create them on first use.
    topics_ready: bool,
}

/// The producer of the analyst streams. A whole outbox batch is in flight at once, so it keeps
/// each partition's order the way the relay does: one request in flight per connection (a
/// retried request is never overtaken, even on Tansu, which does not enforce idempotent
/// sequence numbers), and a record that finally fails poisons the producer instead of letting
/// later records of its partition through (`housekeeping` then makes a new one; the records
/// not acknowledged are still in the outbox).
fn analytics_producer(brokers: &str) -> Result<FutureProducer, ProjectionError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "1")
        .set("enable.gapless.guarantee", "true")
        .create()?)
}

/// Commits processed offsets to Kafka (for lag tools) and publishes queued analyst records.
async fn housekeeping(
    pool: &PgPool,
    consumer: &StreamConsumer<WorkerContext>,
    analytics: Option<&mut Analytics>,
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
    let Some(analytics) = analytics else {
        return;
    };
    if !analytics.topics_ready {
        match ensure_analytics_topics(config).await {
            Ok(()) => analytics.topics_ready = true,
            Err(error) => {
                tracing::warn!(%error, "analytics topics not created yet; will retry");
                return;
            }
        }
    }
    if let Some(fatal) = analytics.producer.client().fatal_error() {
        tracing::warn!(error = ?fatal, "analytics producer failed for good; making a new one");
        match analytics_producer(&config.brokers) {
            Ok(producer) => analytics.producer = producer,
            Err(error) => {
                tracing::warn!(%error, "analytics producer not recreated; will retry");
                return;
            }
        }
    }
    // A backlog (the topics were unavailable for a while) is drained a budget at a time, so the
    // worker goes back to its partitions before the group takes them away.
    let budget = Instant::now() + PUBLISH_BUDGET;
    loop {
        match publish_outbox(pool, &analytics.producer, &config.topic_prefix, 500).await {
            Ok(Some(500)) if Instant::now() < budget => continue,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(%error, "analytics outbox not drained");
                break;
            }
        }
    }
}

/// Creates the analyst topics (`<prefix>analytics.*`) that are missing.
async fn ensure_analytics_topics(config: &WorkerConfig) -> Result<(), ProjectionError> {
    create_topics(
        &config.brokers,
        &config.topic_prefix,
        config.topic_partitions,
        config.topic_replication,
    )
    .await
}

/// One record of a batch, with where it sits.
struct Polled<'a, 'm> {
    message: &'a BorrowedMessage<'m>,
    /// `(topic, partition)`.
    partition_key: (String, i32),
}

/// Applies a batch of records in one transaction (retrying database errors until it is done or
/// the worker shuts down). Returns the next offset of every partition the batch moved.
async fn process(
    pool: &PgPool,
    consumer: &StreamConsumer<WorkerContext>,
    config: &WorkerConfig,
    projector: &Projector,
    batch: &[BorrowedMessage<'_>],
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> HashMap<(String, i32), i64> {
    let mut pause = RETRY_PAUSE;
    let mut careful = false;
    loop {
        // Only partitions this worker still owns and is not fenced from, and only records past
        // the stored offset it knows (those before it are accounted for).
        let mut expected: HashMap<(String, i32), Option<i64>> = HashMap::new();
        let records: Vec<Polled<'_, '_>> = batch
            .iter()
            .filter_map(|message| {
                let key = (message.topic().to_owned(), message.partition());
                let owned = consumer.context().owned(&key.0, key.1)?;
                if owned.fenced || owned.expected.is_some_and(|next| message.offset() < next) {
                    return None;
                }
                expected.entry(key.clone()).or_insert(owned.expected);
                Some(Polled {
                    message,
                    partition_key: key,
                })
            })
            .collect();
        if records.is_empty() {
            return HashMap::new();
        }
        let error =
            match handle(pool, config, projector, &records, &expected, careful).await {
                Ok((next, outcomes)) => {
                    wakeup::applied(outcomes.iter().filter_map(
                        |(record, outcome)| match outcome {
                            Outcome::Applied { drained } => {
                                Some((StreamKey::of(record), record.sequence + i64::from(*drained)))
                            }
                            Outcome::Duplicate | Outcome::Pending => None,
                        },
                    ));
                    for (key, next) in &next {
                        consumer.context().update(
                            &key.0,
                            key.1,
                            Owned {
                                expected: Some(*next),
                                fenced: false,
                            },
                        );
                    }
                    for (record, outcome) in outcomes {
                        record_metrics(&record, outcome);
                    }
                    return next;
                }
                Err(error) => error,
            };
        if !careful && is_permanent(&error) {
            // Some record cannot be projected: again at once, parking it this time.
            careful = true;
            continue;
        }
        if matches!(error, ProjectionError::Fenced { .. }) {
            match resync(pool, consumer, config, &records, &expected).await {
                // The offsets were re-read: retry what is left at once.
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "stored offsets not readable"),
            }
        } else {
            tracing::warn!(%error, records = records.len(), "projection failed; retrying the batch");
        }
        tokio::select! {
            () = &mut *shutdown => return HashMap::new(),
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
    }
}

/// After a failed compare-and-set: re-reads the stored offsets of the batch's partitions.
///
/// A partition whose stored offset is just past one of this batch's records was moved by an
/// earlier attempt of this batch that committed although its answer was lost (the database
/// crashed or the connection broke during `COMMIT`): the records up to there are done and the
/// partition goes on from the stored offset. A partition whose offset moved anywhere else
/// belongs to another worker now: it is fenced until it is assigned again. Returns whether
/// anything changed (false: the stored offsets are as expected, the failure was elsewhere).
async fn resync(
    pool: &PgPool,
    consumer: &StreamConsumer<WorkerContext>,
    config: &WorkerConfig,
    records: &[Polled<'_, '_>],
    expected: &HashMap<(String, i32), Option<i64>>,
) -> Result<bool, ProjectionError> {
    let partitions: Vec<(String, i32)> = expected.keys().cloned().collect();
    let stored = offsets::load(pool, &config.group_id, &partitions).await?;
    let mut changed = false;
    for key in partitions {
        let now = stored.get(&key).copied();
        if expected.get(&key).copied().flatten() == now {
            continue;
        }
        changed = true;
        let landed = now.is_some_and(|now| {
            records
                .iter()
                .any(|r| r.partition_key == key && r.message.offset() + 1 == now)
        });
        if landed {
            tracing::info!(
                topic = key.0,
                partition = key.1,
                next = now,
                "a commit whose answer was lost had landed; going on from the stored offset"
            );
        } else {
            tracing::warn!(
                topic = key.0,
                partition = key.1,
                "fenced: another worker owns this partition now"
            );
        }
        consumer.context().update(
            &key.0,
            key.1,
            Owned {
                expected: now,
                fenced: !landed,
            },
        );
    }
    Ok(changed)
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
                // The relay keys a record by its aggregate id (the contract's key).
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
        // Data exceptions (22), integrity violations (23) and exceeded program limits (54,
        // e.g. a key over an index row's size) repeat on every retry.
        ProjectionError::Database(sqlx::Error::Database(db)) => db.code().is_some_and(|code| {
            code.starts_with("22") || code.starts_with("23") || code.starts_with("54")
        }),
        _ => false,
    }
}

/// What one transaction did: the next offset per partition, and the applied events' outcomes
/// (for the metrics, reported once committed).
type Handled = (HashMap<(String, i32), i64>, Vec<(EventRecord, Outcome)>);

/// One transaction for the whole batch: the records' effects, then one compare-and-set per
/// partition. The first run of a batch applies it with [`Projector::project_batch`] (set-based
/// where it can) and fails as a whole when a record is refused; a `careful` run, and any batch
/// holding an undecodable record, goes record by record, each in a savepoint of its own, so a
/// record that cannot be projected is parked (and its stream blocked) and the others applied.
async fn handle(
    pool: &PgPool,
    config: &WorkerConfig,
    projector: &Projector,
    records: &[Polled<'_, '_>],
    expected: &HashMap<(String, i32), Option<i64>>,
    careful: bool,
) -> Result<Handled, ProjectionError> {
    let mut tx = begin(pool, projector).await?;
    let decoded: Vec<Decoded> = records
        .iter()
        .map(|record| decode(config, record.message))
        .collect();
    let all_events = decoded
        .iter()
        .all(|decoded| matches!(decoded, Decoded::Event(_)));
    let outcomes = if !careful && all_events {
        let events: Vec<DecodedEvent> = decoded
            .into_iter()
            .filter_map(|decoded| match decoded {
                Decoded::Event(event) => Some(*event),
                Decoded::Poison { .. } => None,
            })
            .collect();
        // A permanent error here aborts the transaction: the caller runs the batch again,
        // carefully.
        let outcomes = projector.project_batch(&mut tx, &events).await?;
        events
            .into_iter()
            .map(|event| event.record)
            .zip(outcomes)
            .collect()
    } else {
        one_by_one(&mut tx, config, projector, records, decoded).await?
    };
    let mut next: HashMap<(String, i32), i64> = HashMap::new();
    for record in records {
        next.insert(record.partition_key.clone(), record.message.offset() + 1);
    }
    for ((topic, partition), next) in &next {
        let expected = expected
            .get(&(topic.clone(), *partition))
            .copied()
            .flatten();
        offsets::advance(
            &mut tx,
            &config.group_id,
            topic,
            *partition,
            expected,
            *next,
        )
        .await?;
    }
    if outcomes
        .iter()
        .any(|(_, outcome)| matches!(outcome, Outcome::Applied { .. }))
    {
        // Delivered at the commit: query processes without a worker of their own re-check.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(wakeup::PROJECTED_CHANNEL)
            .bind(wakeup::PROCESS_ID.as_str())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((next, outcomes))
}

/// Applies the records one at a time, each event in a savepoint; parks what cannot be
/// projected. Returns the applied events' outcomes.
async fn one_by_one(
    tx: &mut PgConnection,
    config: &WorkerConfig,
    projector: &Projector,
    records: &[Polled<'_, '_>],
    decoded: Vec<Decoded>,
) -> Result<Vec<(EventRecord, Outcome)>, ProjectionError> {
    let mut outcomes = Vec::with_capacity(records.len());
    for (record, decoded) in records.iter().zip(decoded) {
        let parked = match decoded {
            Decoded::Event(event) => {
                let mut savepoint = tx.begin().await?;
                match projector.project(&mut savepoint, &event).await {
                    Ok(outcome) => {
                        savepoint.commit().await?;
                        outcomes.push((event.record, outcome));
                        None
                    }
                    Err(error) if is_permanent(&error) => {
                        savepoint.rollback().await?;
                        Some((error.to_string(), Some(StreamKey::of(&event.record))))
                    }
                    Err(error) => return Err(error),
                }
            }
            Decoded::Poison { reason, stream } => Some((reason, stream)),
        };
        if let Some((reason, stream)) = parked {
            park(
                tx,
                config,
                projector,
                record.message,
                &reason,
                stream.as_ref(),
            )
            .await?;
        }
    }
    Ok(outcomes)
}

/// Parks a record in `rm_meta.dead_letters` with the reason and blocks its stream.
async fn park(
    conn: &mut PgConnection,
    config: &WorkerConfig,
    projector: &Projector,
    message: &BorrowedMessage<'_>,
    reason: &str,
    stream: Option<&StreamKey>,
) -> Result<(), ProjectionError> {
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
    .bind(stream.map(|s| &s.tenant_id))
    .bind(stream.map(|s| &s.aggregate_type))
    .bind(stream.map(|s| &s.aggregate_id))
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    if let (Some(id), Some(stream)) = (id, stream) {
        // A stream whose key PostgreSQL cannot even store (over an index row) cannot be blocked
        // either: its record is parked all the same, and so will be its later ones.
        let mut savepoint = conn.begin().await?;
        match projector.block(&mut savepoint, stream, id).await {
            Ok(()) => savepoint.commit().await?,
            Err(error) if is_permanent(&error) => {
                savepoint.rollback().await?;
                tracing::warn!(%error, "stream of a dead letter not blocked");
            }
            Err(error) => return Err(error),
        }
    }
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
