//! The real components, end to end: PostgreSQL through sqlx and the Kafka-protocol broker through
//! rdkafka (produce, consume in a group, commit, and resume after the committed offset).
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (set by `./scripts/test.sh`).

use std::time::Duration;

use commerce_devstack::testkit::{TestDatabase, create_topics, kafka_brokers, unique_topic};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const RECORDS: i64 = 10;
/// The first consumer commits after this many records, then leaves.
const COMMITTED: i64 = 4;
const WAIT: Duration = Duration::from_secs(60);

fn consumer(brokers: &str, group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer configuration is valid");
    consumer.subscribe(&[topic]).expect("subscription accepted");
    consumer
}

/// Receives the next record as (offset, payload).
async fn next_record(consumer: &StreamConsumer) -> (i64, String) {
    let message = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .expect("a record arrives in time")
        .expect("the broker delivers the record");
    let payload = String::from_utf8(message.payload().expect("records have a payload").to_vec())
        .expect("utf-8 payload");
    (message.offset(), payload)
}

#[tokio::test]
async fn postgres_and_kafka_round_trip_with_committed_offsets() {
    // Given a database of our own and a fresh one-partition topic
    let db = TestDatabase::create().await.expect("test database");
    sqlx::query("CREATE TABLE received (kafka_offset BIGINT PRIMARY KEY, payload TEXT NOT NULL)")
        .execute(db.pool())
        .await
        .expect("table created");
    let brokers = kafka_brokers().expect("KAFKA_BROKERS is set");
    let topic = unique_topic("real-components");
    let group = unique_topic("group");
    create_topics(&brokers, &[&topic], 1)
        .await
        .expect("topic created");

    // When records are produced by an idempotent producer and acknowledged
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .create()
        .expect("producer configuration is valid");
    for n in 0..RECORDS {
        let payload = format!("record-{n}");
        let key = format!("key-{n}");
        producer
            .send(FutureRecord::to(&topic).key(&key).payload(&payload), WAIT)
            .await
            .expect("the broker acknowledges the record");
    }

    // And a first consumer of the group stores some of them in PostgreSQL, then commits
    let first = consumer(&brokers, &group, &topic);
    for expected in 0..COMMITTED {
        let (offset, payload) = next_record(&first).await;
        assert_eq!(
            (offset, payload.as_str()),
            (expected, format!("record-{expected}").as_str())
        );
        sqlx::query("INSERT INTO received (kafka_offset, payload) VALUES ($1, $2)")
            .bind(offset)
            .bind(&payload)
            .execute(db.pool())
            .await
            .expect("row written");
    }
    let mut position = TopicPartitionList::new();
    position
        .add_partition_offset(&topic, 0, Offset::Offset(COMMITTED))
        .expect("valid offset");
    first
        .commit(&position, CommitMode::Sync)
        .expect("offsets committed");
    drop(first);

    // Then a second consumer of the same group resumes right after the committed offset
    let second = consumer(&brokers, &group, &topic);
    for expected in COMMITTED..RECORDS {
        let (offset, payload) = next_record(&second).await;
        assert_eq!(
            (offset, payload.as_str()),
            (expected, format!("record-{expected}").as_str())
        );
        sqlx::query("INSERT INTO received (kafka_offset, payload) VALUES ($1, $2)")
            .bind(offset)
            .bind(&payload)
            .execute(db.pool())
            .await
            .expect("row written (a redelivered offset would violate the primary key)");
    }
    let committed = second
        .committed(Duration::from_secs(10))
        .expect("committed offsets readable");
    assert_eq!(
        committed.find_partition(&topic, 0).map(|p| p.offset()),
        Some(Offset::Offset(COMMITTED))
    );

    // And PostgreSQL holds every record exactly once
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT payload) FROM received")
            .fetch_one(db.pool())
            .await
            .expect("count read");
    assert_eq!((rows, distinct), (RECORDS, RECORDS));
}

#[tokio::test]
async fn every_test_gets_its_own_database() {
    let a = TestDatabase::create().await.expect("first database");
    let b = TestDatabase::create().await.expect("second database");
    assert_ne!(a.name(), b.name());
    sqlx::query("CREATE TABLE only_in_a (id INT)")
        .execute(a.pool())
        .await
        .expect("table created in a");
    let (in_b,): (Option<String>,) = sqlx::query_as("SELECT to_regclass('only_in_a')::text")
        .fetch_one(b.pool())
        .await
        .expect("catalog readable");
    assert_eq!(in_b, None);
    let connected: (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&sqlx::PgPool::connect(a.url()).await.expect("url connects"))
        .await
        .expect("name readable");
    assert_eq!(connected.0, a.name());
}
