//! Projection throughput: how many events per second one worker applies from Kafka to the
//! PostgreSQL read models, beside reading the same records from the broker without applying
//! them, in the same run.
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (as the tests). Run:
//! `cargo run --release -p commerce-projections --example projection_bench -- [events] [streams]`
//!
//! 1. Produces `events` (default 20,000) `inventory.adjusted` envelopes over `streams` (default
//!    500) inventory streams, in sequence order per stream, to a fresh `commerce.inventory`
//!    topic of 6 partitions.
//! 2. Reads them all back with a bare consumer (the broker's ceiling for the worker's reads).
//! 3. Starts one worker on a fresh database and times until its stored offsets reach the end
//!    of every partition (each record applied in a read-model transaction with its offset).

// Rates and ratios are measurements, never money: floats are the right tool here.
#![allow(clippy::float_arithmetic)]

use std::collections::HashMap;
use std::error::Error;
use std::time::{Duration, Instant};

use chrono::Utc;
use commerce_contracts::events::{InventoryAdjusted, InventoryEvent};
use commerce_devstack::testkit::{TestDatabase, create_topics, kafka_brokers, unique_topic};
use commerce_projections::worker::{self, WorkerConfig};
use commerce_projections::{EventRecord, migrate};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

const PARTITIONS: i32 = 6;
const TENANT: &str = "bench";

type Failure = Box<dyn Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let streams: usize = args.next().map_or(Ok(500), |a| a.parse())?.max(1);
    let brokers = kafka_brokers()?;
    let db = TestDatabase::create().await?;
    migrate(db.pool()).await?;

    let mut config = WorkerConfig::new(&brokers);
    config.topic_prefix = format!("{}.", unique_topic("pbench"));
    config.group_id = unique_topic("pbench-group");
    config.publish_analytics = false;
    let topics = config.topics();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    create_topics(&brokers, &refs, PARTITIONS).await?;
    let topic = format!("{}commerce.inventory", config.topic_prefix);

    // 1. The records, produced in sequence order per stream.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()?;
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for chunk in records(events, streams).chunks(1_000) {
        let payloads: Vec<(String, Vec<u8>)> = chunk
            .iter()
            .map(|record| Ok((record.aggregate_id.clone(), serde_json::to_vec(record)?)))
            .collect::<Result<_, Failure>>()?;
        let mut deliveries = Vec::with_capacity(payloads.len());
        for (key, value) in &payloads {
            let queued = producer
                .send_result(FutureRecord::to(&topic).key(key).payload(value))
                .map_err(|(error, _)| error)?;
            deliveries.push(queued);
        }
        for delivery in deliveries {
            let delivery = delivery.await?.map_err(|(error, _)| error)?;
            let end = ends.entry(delivery.partition).or_insert(0);
            *end = (*end).max(delivery.offset + 1);
        }
    }

    // 2. The broker's read ceiling: the same records, consumed and not applied.
    let started = Instant::now();
    let read = consume_all(&brokers, &topic, &ends).await?;
    let raw = rate(read, started.elapsed());

    // 3. One worker applying them.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pool = db.pool().clone();
    let worker_config = config.clone();
    let started = Instant::now();
    let task = tokio::spawn(worker::run(pool, worker_config, async move {
        let _ = stopped.await;
    }));
    while !caught_up(&db, &config.group_id, &topic, &ends).await? {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    task.await??;
    let applied: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(last_sequence), 0)::bigint FROM rm.stream_state")
            .fetch_one(db.pool())
            .await?;

    let worker_rate = rate(events, elapsed);
    println!(
        "projection: {events} events over {streams} streams applied by one worker in {:.1} s: \
         {worker_rate:.0} events/s (applied sequences {applied}); raw consumer {raw:.0} events/s; \
         ratio {:.0} %",
        elapsed.as_secs_f64(),
        worker_rate * 100.0 / raw.max(1.0),
    );
    Ok(())
}

/// `events` valid `inventory.adjusted` records over `streams` streams, round robin.
fn records(events: usize, streams: usize) -> Vec<EventRecord> {
    let mut sequences = vec![0_i64; streams];
    (0..events)
        .map(|n| {
            let stream = n % streams;
            sequences[stream] += 1;
            let sku = format!("SKU-{stream}");
            let at = Utc::now();
            let payload = serde_json::to_value(InventoryEvent::Adjusted(InventoryAdjusted {
                sku: sku.clone(),
                location: "default".into(),
                delta: 1,
                on_hand_after: u64::try_from(sequences[stream]).unwrap_or(0),
                reason: "bench".into(),
                at,
            }))
            .expect("contract events serialise");
            EventRecord {
                event_id: Uuid::new_v4(),
                event_type: "inventory.adjusted".into(),
                aggregate_type: "inventory".into(),
                aggregate_id: format!("{sku}:default"),
                sequence: sequences[stream],
                position: i64::try_from(n).unwrap_or(i64::MAX) + 1,
                tenant_id: TENANT.into(),
                timestamp: at.timestamp_millis(),
                occurred_at: at,
                payload,
            }
        })
        .collect()
}

/// Reads every partition of `topic` from the start to `ends`; returns how many records.
async fn consume_all(
    brokers: &str,
    topic: &str,
    ends: &HashMap<i32, i64>,
) -> Result<usize, Failure> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_topic("pbench-raw"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "25")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in ends.keys() {
        assignment.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let total: i64 = ends.values().sum();
    let mut read = 0_i64;
    while read < total {
        consumer.recv().await?;
        read += 1;
    }
    Ok(usize::try_from(read).unwrap_or(usize::MAX))
}

/// Whether the worker's stored offsets reached `ends` on every partition.
async fn caught_up(
    db: &TestDatabase,
    group: &str,
    topic: &str,
    ends: &HashMap<i32, i64>,
) -> Result<bool, Failure> {
    let stored: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM rm_meta.projection_offsets \
         WHERE group_id = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(db.pool())
    .await?;
    let stored: HashMap<i32, i64> = stored.into_iter().collect();
    Ok(ends
        .iter()
        .all(|(partition, end)| stored.get(partition).is_some_and(|next| next >= end)))
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}
