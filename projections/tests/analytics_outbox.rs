//! The analyst streams' outbox against PostgreSQL and Tansu: `publish_outbox` has a whole batch
//! in flight at once, and each order's records must still reach the topic in outbox order, all
//! of them, once each, with the outbox emptied, also when two workers publish at the same time.

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

/// A migrated database whose outbox holds [`RECORDS`] records of [`KEYS`] orders, interleaved,
/// the topic they go to, and a producer like the worker's.
async fn queued_outbox() -> (TestDatabase, String, String, FutureProducer) {
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
    (db, prefix, topic, producer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_queued_outbox_when_published_in_batches_then_every_record_arrives_in_order_per_key()
 {
    // Given analyst records of a few orders, interleaved, queued in the outbox
    let (db, prefix, topic, producer) = queued_outbox().await;

    // When the outbox is published batch by batch
    let mut published = Vec::new();
    loop {
        let count = publish_outbox(db.pool(), &producer, &prefix, BATCH)
            .await
            .expect("published")
            .expect("the only publisher");
        published.push(count);
        if count < usize::try_from(BATCH).expect("batch") {
            break;
        }
    }

    // Then every record was acknowledged and deleted, and is on the topic once, in order
    assert_eq!(published, [500, 500, 200]);
    assert_published_once_in_order(&db, &topic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_two_workers_publishing_at_once_when_the_outbox_drains_then_each_record_arrives_once()
{
    // Given a queued outbox and two workers' publishers
    let (db, prefix, topic, producer) = queued_outbox().await;
    let second: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers().expect("KAFKA_BROKERS"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "1")
        .create()
        .expect("producer");

    // When both drain it at the same time, in batches small enough to overlap
    let drain = |producer: &FutureProducer| {
        let (pool, prefix) = (db.pool().clone(), prefix.clone());
        let producer = producer.clone();
        async move {
            let mut turns_waited = 0;
            loop {
                match publish_outbox(&pool, &producer, &prefix, 100)
                    .await
                    .expect("published")
                {
                    Some(0) => return turns_waited,
                    Some(_) => {}
                    None => {
                        turns_waited += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }
    };
    let (first_waited, second_waited) =
        tokio::join!(tokio::spawn(drain(&producer)), tokio::spawn(drain(&second)));
    let waited = first_waited.expect("first") + second_waited.expect("second");

    // Then every record is on the topic once, in order per order, and they took turns
    assert_published_once_in_order(&db, &topic).await;
    assert!(waited > 0, "the publishers never met");
}

/// The outbox is empty and `topic` holds each queued record once, in queue order per key.
async fn assert_published_once_in_order(db: &TestDatabase, topic: &str) {
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_meta.analytics_outbox")
        .fetch_one(db.pool())
        .await
        .expect("outbox");
    assert_eq!(queued, 0);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers().expect("KAFKA_BROKERS"))
        .set("group.id", unique_topic("outbox-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
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
