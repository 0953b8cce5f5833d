//! Relay throughput beside a raw rdkafka producer, and commit-to-Kafka latency.
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (as the tests). Run:
//! `cargo run --release -p commerce-relay --example relay_bench -- [events] [steady_rate]`
//!
//! 1. Appends `events` (default 20,000) order events, then starts the relay and times the
//!    backlog drain (relay events/s: each event is two messages, aggregate and seed topic).
//! 2. Sends the same messages (same topics, keys, sizes, headers) with a bare idempotent
//!    `FutureProducer` on the same broker: the ceiling the relay is compared with.
//! 3. Appends at a steady `steady_rate` (default 200 events/s) for 10 s while a consumer
//!    measures commit-to-Kafka latency (`recorded_at` in the envelope to receipt): p50/p99.

use std::time::{Duration, Instant};

use anyhow::Context;
use commerce_contracts::envelope::headers;
use commerce_devstack::testkit::{TestDatabase, create_topics, kafka_brokers, unique_topic};
use commerce_relay::{Relay, RelayConfig};
use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

const PARTITIONS: i32 = 6;
const TENANT: &str = "bench";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(Ok(20_000), |a| a.parse())?;
    let steady_rate: u64 = args.next().map_or(Ok(200), |a| a.parse())?;
    let brokers = kafka_brokers()?;
    let db = TestDatabase::create().await?;
    commerce_eventstore::migrate(db.pool()).await?;
    commerce_relay::migrate(db.pool()).await?;

    let mut config = RelayConfig::new(&brokers);
    config.topics.prefix = format!("{}.", unique_topic("bench"));
    config.topics.partitions = PARTITIONS;
    config.topics.create_catalog_topics = false;
    let prefix = config.topics.prefix.clone();
    let aggregate_topic = format!("{prefix}commerce.order");
    let seed_topic = format!("{prefix}order.created");
    create_topics(&brokers, &[&aggregate_topic, &seed_topic], PARTITIONS).await?;

    // 1. Backlog drain through the relay.
    append(db.pool(), events, 500).await?;
    let relay = Relay::new(config.clone(), db.pool().clone());
    let status = relay.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(relay.run(async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    while status.snapshot().events_published < events as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relay_elapsed = started.elapsed();

    // 2. The same messages with a bare producer.
    let raw_elapsed = raw_producer(&brokers, &aggregate_topic, &seed_topic, events).await?;

    // 3. Commit-to-Kafka latency at a steady load.
    let latencies =
        steady_latency(&brokers, db.pool(), &aggregate_topic, steady_rate, &status).await?;
    let _ = stop.send(());
    task.await??;

    let per_second = |elapsed: Duration| events as u128 * 1000 / elapsed.as_millis().max(1);
    println!("events: {events} (2 messages each), {PARTITIONS} partitions, broker {brokers}");
    println!(
        "relay backlog drain: {} events/s ({} ms)",
        per_second(relay_elapsed),
        relay_elapsed.as_millis()
    );
    println!(
        "raw rdkafka producer: {} events/s ({} ms)",
        per_second(raw_elapsed),
        raw_elapsed.as_millis()
    );
    println!(
        "commit-to-Kafka latency at {steady_rate} events/s: p50 {} ms, p99 {} ms, max {} ms ({} samples)",
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies.last().copied().unwrap_or_default(),
        latencies.len()
    );
    Ok(())
}

/// `count` single-event order streams, `per_tx` events per transaction.
async fn append(pool: &sqlx::PgPool, count: usize, per_tx: usize) -> anyhow::Result<()> {
    let mut remaining = count;
    while remaining > 0 {
        let n = remaining.min(per_tx);
        let mut tx = pool.begin().await?;
        for _ in 0..n {
            insert(&mut tx).await?;
        }
        tx.commit().await?;
        remaining -= n;
    }
    Ok(())
}

async fn insert(tx: &mut sqlx::PgConnection) -> anyhow::Result<()> {
    let metadata = serde_json::json!({
        "tenant_id": TENANT,
        "correlation_id": Uuid::new_v4().to_string(),
        "actor": "bench",
    });
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
         payload, metadata) VALUES ('order', $1, 1, 'order.created', '1', $2, $3)",
    )
    .bind(format!("{TENANT}/{}", Uuid::new_v4()))
    .bind(serde_json::json!({"event_type": "order.created", "total": {"amount_minor": 1999, "currency": "EUR"}}))
    .bind(metadata)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Sends `events` × 2 envelope-sized messages, with the relay's headers and producer settings.
async fn raw_producer(
    brokers: &str,
    aggregate_topic: &str,
    seed_topic: &str,
    events: usize,
) -> anyhow::Result<Duration> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let payload = vec![b'x'; 520];
    let started = Instant::now();
    for chunk in (0..events).collect::<Vec<_>>().chunks(1_000) {
        let mut pending = Vec::with_capacity(chunk.len() * 2);
        for _ in chunk {
            let key = format!("{TENANT}/{}", Uuid::new_v4());
            for topic in [aggregate_topic, seed_topic] {
                let record = FutureRecord::to(topic)
                    .key(&key)
                    .payload(&payload)
                    .headers(bench_headers());
                pending.push(
                    producer
                        .send_result(record)
                        .map_err(|(error, _)| error)
                        .context("enqueue")?,
                );
            }
        }
        for outcome in join_all(pending).await {
            outcome?.map_err(|(error, _)| error)?;
        }
    }
    Ok(started.elapsed())
}

/// The relay's four headers (Tansu stores one row per header, so they cost broker time too).
fn bench_headers() -> OwnedHeaders {
    let event_id = Uuid::new_v4().to_string();
    [
        (headers::EVENT_ID, event_id.as_str()),
        (headers::EVENT_TYPE, "order.created"),
        (headers::TENANT_ID, TENANT),
        (headers::CONTENT_TYPE, headers::CONTENT_TYPE_JSON),
    ]
    .into_iter()
    .fold(OwnedHeaders::new_with_capacity(4), |all, (key, value)| {
        all.insert(Header {
            key,
            value: Some(value),
        })
    })
}

/// Appends at `rate` events/s for 10 s and measures, per event, receipt time minus its
/// `timestamp` (the writer's commit clock). Returns sorted latencies in ms.
async fn steady_latency(
    brokers: &str,
    pool: &sqlx::PgPool,
    topic: &str,
    rate: u64,
    status: &commerce_relay::RelayStatus,
) -> anyhow::Result<Vec<i64>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_topic("bench-latency"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(topic, partition, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let total = rate * 10;
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            for _ in 0..total {
                ticker.tick().await;
                let mut tx = pool.begin().await?;
                insert(&mut tx).await?;
                tx.commit().await?;
                // What the engine's notifier sends after commits; raw inserts signal nothing.
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(commerce_eventstore::EVENTS_CHANNEL)
                    .execute(&pool)
                    .await?;
            }
            anyhow::Ok(())
        })
    };
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        let Ok(message) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await
        else {
            continue;
        };
        let message = message?;
        let envelope: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default())?;
        let committed = envelope["timestamp"].as_i64().unwrap_or_default();
        latencies.push(chrono::Utc::now().timestamp_millis() - committed);
        if latencies.len() % 500 == 0 {
            let snapshot = status.snapshot();
            eprintln!(
                "received {}: relay published {}, lag {} events / {:.3} s, errors {} {:?}",
                latencies.len(),
                snapshot.events_published,
                snapshot.lag_events,
                snapshot.lag_seconds,
                snapshot.publish_errors,
                snapshot.last_error
            );
        }
    }
    writer.await??;
    latencies.sort_unstable();
    Ok(latencies)
}

fn percentile(sorted: &[i64], p: usize) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = (sorted.len() * p / 100).min(sorted.len() - 1);
    sorted[index]
}
