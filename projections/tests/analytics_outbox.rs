//! The analyst streams' outbox against PostgreSQL and Tansu: `publish_outbox` has a whole batch
//! in flight at once, and each order's records must still reach the topic in outbox order, all
//! of them, with the outbox emptied.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use commerce_devstack::testkit::{TestDatabase, create_topics, kafka_brokers, unique_topic};
use commerce_projections::{migrate, publish_outbox};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message};

const RECORDS: i64 = 1_200;
const KEYS: i64 = 7;
const BATCH: i64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_queued_outbox_when_published_in_batches_then_every_record_arrives_in_order_per_key()
 {
    // Given analyst records of a few orders, interleaved, queued in the outbox
    let db = TestDatabase::create().await.expect("test database");
    migrate(db.pool()).await.expect("migrate");
    let brokers = kafka_brokers().expect("KAFKA_BROKERS");
    let prefix = format!("{}.", unique_topic("outbox"));
    let topic = format!("{prefix}analytics.orders");
    create_topics(&brokers, &[topic.as_str()], 3)
        .await
        .expect("create topic");
    sqlx::query(
        "INSERT INTO rm_meta.analytics_outbox (stream, record_key, payload) \
         SELECT 'analytics.orders', 'order-' || (n % $2), jsonb_build_object('n', n) \
         FROM generate_series(0, $1 - 1) AS n ORDER BY n",
    )
    .bind(RECORDS)
    .bind(KEYS)
    .execute(db.pool())
    .await
    .expect("queue records");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "1")
        .set("enable.gapless.guarantee", "true")
        .create()
        .expect("producer");

    // When the outbox is published batch by batch
    let mut published = Vec::new();
    loop {
        let count = publish_outbox(db.pool(), &producer, &prefix, BATCH)
            .await
            .expect("published");
        published.push(count);
        if count < usize::try_from(BATCH).expect("batch") {
            break;
        }
    }

    // Then every record was acknowledged and deleted
    assert_eq!(published, [500, 500, 200]);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_meta.analytics_outbox")
        .fetch_one(db.pool())
        .await
        .expect("outbox");
    assert_eq!(queued, 0);
    // And each order's records are on the topic once each, in the order they were queued
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique_topic("outbox-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic.as_str()]).expect("subscribe");
    let mut by_key: HashMap<String, Vec<i64>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0;
    while received < RECORDS {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {received} of {RECORDS} records arrived"))
            .expect("record");
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
        let payload: serde_json::Value =
            serde_json::from_slice(message.payload().expect("payload")).expect("json");
        by_key
            .entry(key)
            .or_default()
            .push(payload["n"].as_i64().expect("n"));
        received += 1;
    }
    for k in 0..KEYS {
        let expected: Vec<i64> = (0..RECORDS).filter(|n| n % KEYS == k).collect();
        assert_eq!(
            by_key.remove(&format!("order-{k}")),
            Some(expected),
            "order-{k}"
        );
    }
    assert!(by_key.is_empty(), "unexpected keys {:?}", by_key.keys());
}
