//! Workers against a real PostgreSQL and a real Kafka-protocol broker (Tansu via the devstack):
//! redelivery and republished duplicates (F4), out-of-order sequences (F5), an undecodable record
//! (F11), workers killed at random points (F2) and a second worker joining and leaving (F9).
//! Afterwards the read models equal a rebuild from the log (the oracle).

use std::collections::HashMap;
use std::time::Duration;

use commerce_contracts::topics::ANALYTICS_TOPICS;
use commerce_devstack::testkit::{TestDatabase, create_topics, kafka_brokers, unique_topic};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::Connection;

use super::*;
use crate::rebuild::{Rebuild, rebuild};
use crate::schema::migrate;
use crate::testing::{History, Rng, VecSource, dump};
use crate::{open_dead_letters, resolve_dead_letter};

struct Setup {
    config: WorkerConfig,
    producer: FutureProducer,
    /// Next offset to reach per partition: what was produced.
    ends: HashMap<(String, i32), i64>,
    /// Last, so the database goes after everything that still uses it.
    db: TestDatabase,
}

async fn setup() -> Setup {
    let db = TestDatabase::create()
        .await
        .expect("test database (DATABASE_URL)");
    migrate(db.pool()).await.expect("migrate");
    let brokers = kafka_brokers().expect("KAFKA_BROKERS");
    let mut config = WorkerConfig::new(&brokers);
    config.topic_prefix = format!("{}.", unique_topic("t"));
    config.group_id = unique_topic("group");
    config.publish_analytics = false;
    let topics = config.topics();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    create_topics(&brokers, &refs, 3)
        .await
        .expect("create topics");
    let producer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    Setup {
        db,
        config,
        producer,
        ends: HashMap::new(),
    }
}

impl Setup {
    async fn produce(&mut self, key: &str, tenant: &str, aggregate_type: &str, value: &[u8]) {
        let topic = format!(
            "{}{AGGREGATE_TOPIC_PREFIX}{aggregate_type}",
            self.config.topic_prefix
        );
        let headers = OwnedHeaders::new().insert(Header {
            key: headers::TENANT_ID,
            value: Some(tenant),
        });
        let record = FutureRecord::to(&topic)
            .key(key)
            .payload(value)
            .headers(headers);
        let (partition, offset) = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .expect("produce");
        let end = self.ends.entry((topic, partition)).or_insert(0);
        *end = (*end).max(offset + 1);
    }

    /// Publishes `record` keyed as the relay keys it, by aggregate id.
    async fn publish(&mut self, record: &EventRecord) {
        let value = serde_json::to_vec(record).expect("serialise");
        self.produce(
            &record.aggregate_id,
            &record.tenant_id,
            &record.aggregate_type,
            &value,
        )
        .await;
    }

    /// Produces `record` to one chosen partition of `topic`.
    async fn publish_to(&mut self, topic: &str, partition: i32, record: &EventRecord) {
        let value = serde_json::to_vec(record).expect("serialise");
        let delivery = FutureRecord::to(topic)
            .key(&record.aggregate_id)
            .payload(&value)
            .partition(partition);
        let (partition, offset) = self
            .producer
            .send(delivery, Duration::from_secs(10))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .expect("produce");
        let end = self.ends.entry((topic.to_owned(), partition)).or_insert(0);
        *end = (*end).max(offset + 1);
    }

    /// Waits until the stored offsets reach everything produced.
    async fn quiescent(&self) {
        self.quiescent_within(Duration::from_secs(90)).await;
    }

    /// Waits until the stored offsets reach everything produced, for at most `limit`.
    async fn quiescent_within(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
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
                "workers did not catch up: {stored:?} vs {:?}",
                self.ends
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until two workers of one Kafka group each consume some partitions, and together all.
    async fn shared_by_two(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let shares: Vec<(i64, i64, i64)> = sqlx::query_as(
                "SELECT epoch, jsonb_array_length(partitions)::bigint,
                        (SELECT count(*) FROM rm_meta.projection_members o
                         WHERE o.group_id = m.group_id AND o.epoch = m.epoch
                           AND o.seen_at > now() - interval '3 seconds')
                 FROM rm_meta.projection_members m
                 WHERE group_id = $1 AND seen_at > now() - interval '3 seconds'",
            )
            .bind(&self.config.group_id)
            .fetch_all(self.db.pool())
            .await
            .expect("members");
            let total: i64 = shares.iter().map(|(_, n, _)| n).sum();
            let all = i64::try_from(self.config.topics().len() * 3).expect("small");
            if shares.len() == 2
                && shares.iter().all(|(_, n, peers)| *n > 0 && *peers == 2)
                && total == all
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the partitions were not shared by two workers: {shares:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn spawn_worker(&self) -> tokio::task::JoinHandle<Result<(), ProjectionError>> {
        let (pool, config) = (self.db.pool().clone(), self.config.clone());
        tokio::spawn(async move { run(pool, config, std::future::pending()).await })
    }

    /// The incremental read models, then the same after a rebuild from `log`: they must be equal.
    async fn incremental_and_rebuilt(
        &self,
        log: &[EventRecord],
    ) -> (serde_json::Value, serde_json::Value) {
        let pool = self.db.pool();
        let incremental = dump(&mut pool.acquire().await.expect("conn"), "rm").await;
        let mut source = VecSource(log.iter().cloned());
        rebuild(pool, &mut source, Rebuild::All, |_| {})
            .await
            .expect("rebuild");
        let rebuilt = dump(&mut pool.acquire().await.expect("conn"), "rm").await;
        (incremental, rebuilt)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_disorder_and_poison_leave_the_read_models_equal_to_the_log() {
    let mut setup = setup().await;
    let mut rng = Rng::new(42);
    let log = History::random(&mut rng, 30).interleave(&mut rng);
    // F5: one order stream's second and third events are published the other way round.
    let order_id = log
        .iter()
        .find(|r| r.aggregate_type == "order" && r.sequence == 3)
        .map(|r| r.aggregate_id.clone())
        .expect("an order with three events");
    let mut published: Vec<EventRecord> = log.clone();
    let second = published
        .iter()
        .position(|r| r.aggregate_id == order_id && r.sequence == 2)
        .expect("seq 2");
    let third = published
        .iter()
        .position(|r| r.aggregate_id == order_id && r.sequence == 3)
        .expect("seq 3");
    published.swap(second, third);
    // F11: an undecodable record in the middle of another order's stream blocks only that stream.
    let victim = log
        .iter()
        .find(|r| r.aggregate_type == "order" && r.aggregate_id != order_id && r.sequence == 2)
        .cloned()
        .expect("a second order");
    let poison_at = published
        .iter()
        .position(|r| r.aggregate_id == victim.aggregate_id && r.sequence == 2)
        .expect("victim");
    for (index, record) in published.iter().enumerate() {
        if index == poison_at {
            setup
                .produce(
                    &victim.aggregate_id,
                    &victim.tenant_id,
                    "order",
                    b"\x00{not json",
                )
                .await;
        }
        setup.publish(record).await;
        // F4: 10 % of the events are republished.
        if rng.chance(10) {
            setup.publish(record).await;
        }
    }
    let worker = setup.spawn_worker();
    setup.quiescent().await;
    // Then the poisoned stream waits with its later events pending; the dead letter says why.
    let dead = open_dead_letters(setup.db.pool())
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].aggregate_id.as_deref(),
        Some(victim.aggregate_id.as_str())
    );
    let applied: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM rm.stream_state WHERE aggregate_id = $1")
            .bind(&victim.aggregate_id)
            .fetch_one(setup.db.pool())
            .await
            .expect("victim state");
    assert_eq!(applied, 1, "events behind the poison wait");
    // When an operator resolves it, the waiting events apply
    resolve_dead_letter(
        setup.db.pool(),
        dead[0].id,
        None,
        "garbage record, event store is complete",
    )
    .await
    .expect("resolve");
    worker.abort();
    // Then the read models equal a rebuild from the log
    let (incremental, rebuilt) = setup.incremental_and_rebuilt(&log).await;
    assert_eq!(incremental, rebuilt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_points_and_a_second_worker_change_nothing() {
    let mut setup = setup().await;
    let mut rng = Rng::new(7);
    let log = History::random(&mut rng, 40).interleave(&mut rng);
    for record in &log {
        setup.publish(record).await;
    }
    // F2: a worker is killed (its task aborted, mid-transaction or between commit and the Kafka
    // commit) at random moments and restarted, while F9: a second worker joins and leaves.
    let mut second = None;
    for round in 0..6 {
        let worker = setup.spawn_worker();
        if round == 1 {
            second = Some(setup.spawn_worker());
        }
        if round == 4
            && let Some(second) = second.take()
        {
            second.abort();
        }
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1500))).await;
        worker.abort();
        let _ = worker.await;
    }
    let last = setup.spawn_worker();
    setup.quiescent().await;
    last.abort();
    let (incremental, rebuilt) = setup.incremental_and_rebuilt(&log).await;
    assert_eq!(incremental, rebuilt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_quiet_long_enough_to_pause_projects_what_comes_later_announced_or_not() {
    let mut setup = setup().await;
    let mut rng = Rng::new(11);
    let log = History::random(&mut rng, 12).interleave(&mut rng);
    let (first, rest) = log.split_at(log.len() / 3);
    let (unannounced, announced) = rest.split_at(rest.len() / 2);
    let worker = setup.spawn_worker();
    for record in first {
        setup.publish(record).await;
    }
    setup.quiescent().await;
    // Given the worker quiet for longer than its spell: its partitions are paused
    tokio::time::sleep(quiet::QUIET + Duration::from_millis(500)).await;
    // When records come that nobody announces, its own looks find them
    for record in unannounced {
        setup.publish(record).await;
    }
    setup.quiescent().await;
    // And once paused again, records the relay announces are fetched from where it stopped
    tokio::time::sleep(quiet::QUIET + Duration::from_millis(500)).await;
    for record in announced {
        setup.publish(record).await;
    }
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(commerce_contracts::topics::RELAYED_CHANNEL)
        .execute(setup.db.pool())
        .await
        .expect("announce");
    setup.quiescent().await;
    worker.abort();
    // Then nothing was skipped or applied twice
    let (incremental, rebuilt) = setup.incremental_and_rebuilt(&log).await;
    assert_eq!(incremental, rebuilt);
}

/// Terminates every other connection to the test database, as a PostgreSQL restart would.
async fn terminate_connections(admin: &mut sqlx::PgConnection, database: &str) -> u64 {
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .execute(&mut *admin)
    .await
    .expect("terminate backends")
    .rows_affected()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_connections_are_all_terminated_reconnects_and_catches_up() {
    // Given a worker applying a history that is still being published
    let mut setup = setup().await;
    let mut rng = Rng::new(11);
    let log = History::random(&mut rng, 40).interleave(&mut rng);
    let worker = setup.spawn_worker();
    let mut admin = sqlx::PgConnection::connect(
        &commerce_devstack::testkit::database_url().expect("DATABASE_URL"),
    )
    .await
    .expect("admin connection");
    // When every database connection is terminated again and again meanwhile (F3's effect on
    // the worker: broken transactions, commits whose answer never arrives, a pool to refill)
    let mut terminated = 0;
    for (index, record) in log.iter().enumerate() {
        setup.publish(record).await;
        if index % 15 == 0 {
            terminated += terminate_connections(&mut admin, setup.db.name()).await;
            tokio::time::sleep(Duration::from_millis(rng.below(200))).await;
        }
    }
    terminated += terminate_connections(&mut admin, setup.db.name()).await;
    assert!(terminated > 0, "connections were terminated");
    // Then the same worker, still running, catches up, and its models equal the log's fold
    setup.quiescent().await;
    assert!(!worker.is_finished(), "the worker survived");
    worker.abort();
    let (incremental, rebuilt) = setup.incremental_and_rebuilt(&log).await;
    assert_eq!(incremental, rebuilt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_answer_was_lost_counts_as_done_and_the_partition_goes_on() {
    // Given a worker that applied the first event of a stream on partition 0
    let mut setup = setup().await;
    let mut rng = Rng::new(5);
    let log = History::random(&mut rng, 12).interleave(&mut rng);
    let stream: Vec<EventRecord> = {
        let order = log
            .iter()
            .find(|r| r.aggregate_type == "order" && r.sequence == 3)
            .map(|r| r.aggregate_id.clone())
            .expect("an order with three events");
        log.iter()
            .filter(|r| r.aggregate_id == order)
            .take(3)
            .cloned()
            .collect()
    };
    let topic = format!("{}{AGGREGATE_TOPIC_PREFIX}order", setup.config.topic_prefix);
    let worker = setup.spawn_worker();
    setup.publish_to(&topic, 0, &stream[0]).await;
    setup.quiescent().await;
    // When its next commit reaches PostgreSQL but the answer does not reach the worker (a crash
    // during COMMIT): the second event is applied and the offset moved, behind its back
    let mut tx = setup.db.pool().begin().await.expect("begin");
    let projector = Projector::new(ReadModelSchema::Live, false);
    projector.begin(&mut tx).await.expect("search path");
    projector
        .project(&mut tx, &stream[1].clone().decode().expect("decodes"))
        .await
        .expect("apply");
    let moved = sqlx::query(
        "UPDATE rm_meta.projection_offsets SET next_offset = 2
         WHERE group_id = $1 AND topic = $2 AND partition = 0 AND next_offset = 1",
    )
    .bind(&setup.config.group_id)
    .bind(&topic)
    .execute(&mut *tx)
    .await
    .expect("move the offset");
    assert_eq!(moved.rows_affected(), 1);
    tx.commit().await.expect("commit");
    // and the worker then receives that record (its retry) and the next one
    setup.publish_to(&topic, 0, &stream[1]).await;
    setup.publish_to(&topic, 0, &stream[2]).await;
    // Then it counts the record as done instead of fencing itself, and goes on
    setup.quiescent().await;
    let applied: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM rm.stream_state WHERE aggregate_id = $1")
            .bind(&stream[0].aggregate_id)
            .fetch_one(setup.db.pool())
            .await
            .expect("stream state");
    assert_eq!(applied, 3);
    worker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_worker_creates_the_analytics_topics_and_drains_its_outbox() {
    // Given a worker that publishes the analyst streams under a prefix nobody created topics for
    let mut setup = setup().await;
    setup.config.publish_analytics = true;
    setup.config.topic_partitions = 2;
    let mut rng = Rng::new(3);
    let log = History::random(&mut rng, 12).interleave(&mut rng);
    assert!(log.iter().any(|r| r.event_type == "order.created"));
    // When it projects orders
    for record in &log {
        setup.publish(record).await;
    }
    let worker = setup.spawn_worker();
    setup.quiescent().await;
    // Then the analytics topics exist and every queued analyst record was published
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_meta.analytics_outbox")
            .fetch_one(setup.db.pool())
            .await
            .expect("outbox");
        if queued == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{queued} analyst records stayed queued"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let admin: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.config.brokers)
        .set("group.id", unique_topic("metadata"))
        .create()
        .expect("metadata client");
    for stream in ANALYTICS_TOPICS {
        let topic = format!("{}{stream}", setup.config.topic_prefix);
        let metadata = admin
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len());
        assert_eq!(partitions, Some(2), "{topic}");
    }
    worker.abort();
}

/// Environment of a worker process started by [`a_member_killed_without_leaving_leaves_no_partition_unconsumed`].
const CHILD_DATABASE: &str = "COMMERCE_TEST_CHILD_WORKER_DATABASE";
const CHILD_GROUP: &str = "COMMERCE_TEST_CHILD_WORKER_GROUP";
const CHILD_PREFIX: &str = "COMMERCE_TEST_CHILD_WORKER_PREFIX";
const CHILD_TEST: &str = "worker::tests::child_worker_process";

/// Not a test of its own: the body of the worker process that
/// [`a_member_killed_without_leaving_leaves_no_partition_unconsumed`] starts from this same test
/// binary and SIGKILLs. Without the child's environment it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker_process() {
    let (Ok(url), Ok(group), Ok(prefix)) = (
        std::env::var(CHILD_DATABASE),
        std::env::var(CHILD_GROUP),
        std::env::var(CHILD_PREFIX),
    ) else {
        return;
    };
    let pool = PgPool::connect(&url).await.expect("child pool");
    let mut config = WorkerConfig::new(kafka_brokers().expect("KAFKA_BROKERS"));
    config.group_id = group;
    config.topic_prefix = prefix;
    config.publish_analytics = false;
    run(pool, config, std::future::pending())
        .await
        .expect("child worker");
}

/// A worker process of this test's group, killed by [`Drop`] if the test ends first.
struct ChildWorker(std::process::Child);

impl ChildWorker {
    fn start(setup: &Setup) -> Self {
        let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
            .env(CHILD_DATABASE, setup.db.url())
            .env(CHILD_GROUP, &setup.config.group_id)
            .env(CHILD_PREFIX, &setup.config.topic_prefix)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the child worker");
        Self(child)
    }

    /// SIGKILL: the process sends nothing more, in particular no LeaveGroup.
    fn kill(mut self) {
        self.0.kill().expect("SIGKILL the child worker");
        self.0.wait().expect("reap the child worker");
    }
}

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_without_leaving_leaves_no_partition_unconsumed() {
    // Given two worker processes of one group, each consuming a share of the partitions
    let mut setup = setup().await;
    let mut rng = Rng::new(23);
    let log = History::random(&mut rng, 60).interleave(&mut rng);
    let (before, after) = log.split_at(log.len() / 2);
    for record in before {
        setup.publish(record).await;
    }
    let child = ChildWorker::start(&setup);
    setup.quiescent().await;
    let worker = setup.spawn_worker();
    setup.shared_by_two().await;
    // When one of them is killed with SIGKILL (it never leaves the group) and records arrive on
    // every partition
    child.kill();
    let killed = Instant::now();
    for record in after {
        setup.publish(record).await;
    }
    // Then every partition is consumed again within the session timeout and 30 s
    setup
        .quiescent_within(membership::LIVENESS + Duration::from_secs(30))
        .await;
    eprintln!("caught up {:?} after the kill", killed.elapsed());
    assert!(!worker.is_finished(), "the survivor runs on");
    worker.abort();
    // and the read models equal the fold of the log
    let (incremental, rebuilt) = setup.incremental_and_rebuilt(&log).await;
    assert_eq!(incremental, rebuilt);
}
