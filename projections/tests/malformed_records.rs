//! Malformed Kafka records against a real projection worker, PostgreSQL and Tansu (F11 and the
//! bad-record cases of the bad-input matrix): undecodable JSON, an envelope of an unknown event
//! version whose payload does not fit, and a record without the headers that name its stream.
//! Each is parked in `rm_meta.dead_letters` with its reason (and counted there), its own stream
//! waits behind it, and every other stream goes on. An oversized field (bounded by the broker's
//! record size) is applied as it is; an oversized stream key, which no index can hold, must not
//! stall its partition.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use commerce_devstack::testkit::{TestDatabase, create_topics, kafka_brokers, unique_topic};
use commerce_projections::worker::{WorkerConfig, run};
use commerce_projections::{DeadLetter, migrate, open_dead_letters};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use uuid::Uuid;

const TENANT: &str = "t1";

struct Bench {
    config: WorkerConfig,
    producer: FutureProducer,
    /// Next offset to reach per partition: what was produced.
    ends: HashMap<(String, i32), i64>,
    positions: i64,
    /// Produce every record to this partition (otherwise the key decides).
    partition: Option<i32>,
    /// Last, so the database goes after everything that still uses it.
    db: TestDatabase,
}

impl Bench {
    async fn start() -> Self {
        let db = TestDatabase::create()
            .await
            .expect("test database (DATABASE_URL)");
        migrate(db.pool()).await.expect("migrate");
        let brokers = kafka_brokers().expect("KAFKA_BROKERS");
        let mut config = WorkerConfig::new(&brokers);
        config.topic_prefix = format!("{}.", unique_topic("bad"));
        config.group_id = unique_topic("group");
        config.publish_analytics = false;
        let topics = config.topics();
        let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        create_topics(&brokers, &refs, 2)
            .await
            .expect("create topics");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("message.max.bytes", "4000000")
            .create()
            .expect("producer");
        Self {
            db,
            config,
            producer,
            ends: HashMap::new(),
            positions: 0,
            partition: None,
        }
    }

    /// Produces `value` keyed `key` to the product topic, with the tenant header or none.
    async fn produce(&mut self, key: &str, value: &[u8], tenant_header: bool) {
        let topic = format!("{}commerce.product", self.config.topic_prefix);
        let mut record = FutureRecord::to(&topic).key(key).payload(value);
        if let Some(partition) = self.partition {
            record = record.partition(partition);
        }
        if tenant_header {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "tenant_id",
                value: Some(TENANT),
            }));
        }
        let (partition, offset) = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .expect("produce");
        let end = self.ends.entry((topic, partition)).or_insert(0);
        *end = (*end).max(offset + 1);
    }

    /// A contract envelope of the product `sku`.
    fn envelope(&mut self, sku: &str, sequence: i64, version: u32, payload: Value) -> Value {
        self.positions += 1;
        json!({
            "event_id": Uuid::new_v4(), "topic": "commerce.product",
            "event_type": payload["event_type"], "event_version": version,
            "aggregate_type": "product", "aggregate_id": sku, "sequence": sequence,
            "position": self.positions, "tenant_id": TENANT, "correlation_id": null,
            "causation_id": null, "timestamp": 1_767_225_600_000_i64,
            "occurred_at": "2026-01-01T00:00:00Z", "payload": payload
        })
    }

    async fn created(&mut self, sku: &str) {
        let payload = json!({"event_type": "product.created", "product_id": Uuid::new_v4(),
            "sku": sku, "name": "Tee", "description": null,
            "price": {"amount_minor": 1999, "currency": "EUR"},
            "created_at": "2026-01-01T00:00:00Z"});
        let record = self.envelope(sku, 1, 2, payload);
        self.publish(&record, sku).await;
    }

    fn renamed(&mut self, sku: &str, sequence: i64, name: &str) -> Value {
        let payload = json!({"event_type": "product.details_changed", "name": name,
            "description": null, "at": "2026-01-02T00:00:00Z"});
        self.envelope(sku, sequence, 1, payload)
    }

    async fn publish(&mut self, record: &Value, key: &str) {
        let bytes = serde_json::to_vec(record).expect("serialise");
        self.produce(key, &bytes, true).await;
    }

    /// Waits until the stored offsets reach everything produced: a partition that stalls on
    /// one record fails here.
    async fn caught_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let rows: Vec<(String, i32, i64)> = sqlx::query_as(
                "SELECT topic, partition, next_offset FROM rm_meta.projection_offsets WHERE group_id = $1",
            )
            .bind(&self.config.group_id)
            .fetch_all(self.db.pool())
            .await
            .expect("offsets");
            let stored: HashMap<(String, i32), i64> =
                rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
            if self
                .ends
                .iter()
                .all(|(key, end)| stored.get(key).is_some_and(|o| o >= end))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not get past every record: stored {stored:?}, produced {:?}",
                self.ends
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn name_of(&self, sku: &str) -> Option<String> {
        sqlx::query_scalar("SELECT name FROM rm.products WHERE tenant_id = $1 AND sku = $2")
            .bind(TENANT)
            .bind(sku)
            .fetch_optional(self.db.pool())
            .await
            .expect("products")
    }

    async fn applied(&self, sku: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(max(last_sequence), 0) FROM rm.stream_state \
             WHERE tenant_id = $1 AND aggregate_type = 'product' AND aggregate_id = $2",
        )
        .bind(TENANT)
        .bind(sku)
        .fetch_one(self.db.pool())
        .await
        .expect("stream state")
    }

    async fn pending(&self, sku: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM rm.pending_events WHERE tenant_id = $1 AND aggregate_id = $2",
        )
        .bind(TENANT)
        .bind(sku)
        .fetch_one(self.db.pool())
        .await
        .expect("pending events")
    }
}

fn parked_for<'a>(dead: &'a [DeadLetter], sku: &str) -> Vec<&'a DeadLetter> {
    dead.iter()
        .filter(|letter| letter.aggregate_id.as_deref() == Some(sku))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_malformed_records_when_projected_then_each_is_parked_its_stream_waits_and_others_go_on()
 {
    // Given four product streams that start well, and a healthy one
    let mut bench = Bench::start().await;
    for sku in ["SKU-JSON", "SKU-VERSION", "SKU-BIG", "SKU-OK"] {
        bench.created(sku).await;
    }
    // When each victim's second record is malformed, followed by a valid third event
    bench.produce("SKU-JSON", b"\x00{not json", true).await;
    let unknown_version = bench.envelope(
        "SKU-VERSION",
        2,
        99,
        json!({"event_type": "product.details_changed", "title": {"en": "Tee"}}),
    );
    bench.publish(&unknown_version, "SKU-VERSION").await;
    let oversized = bench.renamed("SKU-BIG", 2, &"N".repeat(600_000));
    bench.publish(&oversized, "SKU-BIG").await;
    for sku in ["SKU-JSON", "SKU-VERSION", "SKU-BIG"] {
        let third = bench.renamed(sku, 3, "after the bad one");
        bench.publish(&third, sku).await;
    }
    // And a record without headers and without a readable envelope names no stream at all
    bench.produce("SKU-NOBODY", b"garbage", false).await;
    // And the healthy stream goes on after all of them
    let renamed = bench.renamed("SKU-OK", 2, "Tee v2");
    bench.publish(&renamed, "SKU-OK").await;
    let worker = {
        let (pool, config) = (bench.db.pool().clone(), bench.config.clone());
        tokio::spawn(async move { run(pool, config, std::future::pending()).await })
    };
    bench.caught_up().await;
    worker.abort();

    // Then every malformed record is parked once, with a reason that says why
    let dead = open_dead_letters(bench.db.pool())
        .await
        .expect("dead letters");
    let reasons: Vec<(Option<&str>, &str)> = dead
        .iter()
        .map(|letter| (letter.aggregate_id.as_deref(), letter.reason.as_str()))
        .collect();
    assert_eq!(dead.len(), 3, "one dead letter per bad record: {reasons:?}");
    let json = parked_for(&dead, "SKU-JSON");
    assert_eq!(json.len(), 1, "{reasons:?}");
    assert!(
        json[0].reason.contains("not an event envelope"),
        "{reasons:?}"
    );
    let version = parked_for(&dead, "SKU-VERSION");
    assert_eq!(version.len(), 1, "{reasons:?}");
    assert!(version[0].reason.contains("does not decode"), "{reasons:?}");
    assert!(parked_for(&dead, "SKU-BIG").is_empty(), "{reasons:?}");
    let nobody: Vec<&DeadLetter> = dead
        .iter()
        .filter(|letter| letter.aggregate_id.is_none())
        .collect();
    assert_eq!(nobody.len(), 1, "{reasons:?}");
    assert_eq!(nobody[0].tenant_id, None);
    assert!(
        nobody[0].reason.contains("not an event envelope"),
        "{reasons:?}"
    );
    // And each victim's stream waits at its last good event with the later one pending
    for sku in ["SKU-JSON", "SKU-VERSION"] {
        assert_eq!(bench.applied(sku).await, 1, "{sku} waits");
        assert_eq!(bench.pending(sku).await, 1, "{sku}'s third event waits");
        assert_eq!(bench.name_of(sku).await.as_deref(), Some("Tee"), "{sku}");
    }
    // And the oversized name was applied, and the stream went on behind it
    assert_eq!(bench.applied("SKU-BIG").await, 3);
    assert_eq!(
        bench.name_of("SKU-BIG").await.as_deref(),
        Some("after the bad one")
    );
    // And the healthy stream went on
    assert_eq!(bench.applied("SKU-OK").await, 2);
    assert_eq!(bench.name_of("SKU-OK").await.as_deref(), Some("Tee v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_an_oversized_stream_key_when_projected_then_it_is_parked_and_its_partition_goes_on()
{
    // Given records on one partition, so a record that stalls would stall everything behind it
    let mut bench = Bench::start().await;
    bench.partition = Some(0);
    // Random hex does not compress: the key is far over a B-tree row's 2,704 bytes.
    let huge: String = (0..250)
        .map(|_| Uuid::new_v4().simple().to_string())
        .collect();
    // When a record's stream key is larger than an index row may be
    bench.created(&huge).await;
    bench.created("SKU-AFTER").await;
    let worker = {
        let (pool, config) = (bench.db.pool().clone(), bench.config.clone());
        tokio::spawn(async move { run(pool, config, std::future::pending()).await })
    };
    // Then the worker gets past it: it is parked with its reason, not retried for ever
    bench.caught_up().await;
    worker.abort();
    let dead = open_dead_letters(bench.db.pool())
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    // And the next stream was projected
    assert_eq!(bench.applied("SKU-AFTER").await, 1);
}
