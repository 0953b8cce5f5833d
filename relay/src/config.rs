//! Relay settings: which broker, which topics, and the timing of batches, polls and retries.

use std::time::Duration;

/// Everything the relay needs besides the database pool. [`RelayConfig::new`] gives the
/// production defaults; every field is public so the binary and tests can adjust them.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Names the cursor row and the advisory lock: relays with the same name share one
    /// position and only one of them publishes at a time.
    pub name: String,
    /// Kafka bootstrap servers (`host:port,...`, as in `KAFKA_BROKERS`).
    pub brokers: String,
    pub topics: TopicConfig,
    /// Events read and published per batch; bounds the relay's memory (each event is at most
    /// two in-flight messages).
    pub batch_size: u32,
    /// How often the log is re-read when no notification arrived (notifications can be lost
    /// across reconnects, and the read horizon moves when unrelated transactions end).
    pub poll_interval: Duration,
    /// How often a standby tries to take the lock over.
    pub lock_retry: Duration,
    /// First and longest pause between retries of a failed batch.
    pub backoff: BackoffConfig,
    /// How long the producer keeps retrying a message internally before reporting it failed
    /// (`message.timeout.ms`); the batch is then retried after a backoff.
    pub delivery_timeout: Duration,
    /// How long the producer waits to fill a request (`linger.ms`). The relay hands over a
    /// whole batch at once and librdkafka sends one request per partition, so waiting only
    /// delays it: 0 by default.
    pub linger: Duration,
    /// How often lag, throughput and, when idle, broker reachability are measured.
    pub measure_interval: Duration,
}

/// The producer's default `linger.ms`: none (see [`RelayConfig::linger`]). 5 ms cost every
/// event 5 to 13 ms on its way to the broker and gained no throughput (BENCHMARKS.md,
/// 2026-11-30 04:00 section).
pub const DEFAULT_LINGER_MS: u64 = 0;

/// Topic layout and creation settings.
#[derive(Clone, Debug)]
pub struct TopicConfig {
    /// Put in front of every topic name (tests use it to isolate runs on a shared broker).
    pub prefix: String,
    /// Partitions of every topic the relay creates.
    pub partitions: i32,
    /// Replication factor of every topic the relay creates (1 on a single-node broker).
    pub replication: i32,
    /// Also publish each event to the seed's per-event topic named after its `event_type`.
    pub seed_topics: bool,
    /// Create the topics of every known aggregate and event type at start (topics of events
    /// outside the catalog are created when first needed either way).
    pub create_catalog_topics: bool,
}

/// Exponential backoff bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    pub initial: Duration,
    pub max: Duration,
}

impl RelayConfig {
    /// The defaults: relay `kafka`, batches of 1,000 events, a 500 ms polling fallback,
    /// retries from 100 ms doubling up to 10 s, 30 s delivery timeout, no linger.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            name: "kafka".to_owned(),
            brokers: brokers.into(),
            topics: TopicConfig::default(),
            batch_size: 1_000,
            poll_interval: Duration::from_millis(500),
            lock_retry: Duration::from_secs(1),
            backoff: BackoffConfig {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            delivery_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(DEFAULT_LINGER_MS),
            measure_interval: Duration::from_secs(1),
        }
    }
}

impl Default for TopicConfig {
    /// No prefix, 6 partitions, replication 1, seed topics on, catalog topics created at start.
    fn default() -> Self {
        Self {
            prefix: String::new(),
            partitions: 6,
            replication: 1,
            seed_topics: true,
            create_catalog_topics: true,
        }
    }
}
