//! Shared helpers of the relay's integration tests: a migrated database of its own, direct
//! appends to the event store's table (what postgres-es writes), a relay running in a task,
//! a Kafka reader that collects everything on a set of topics, and a private Tansu broker
//! that tests may kill and restart.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use commerce_devstack::testkit::{TestDatabase, kafka_brokers, unique_topic};
use commerce_relay::{LogSource, Relay, RelayConfig, RelayStatus, TopicConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;
pub const TENANT: &str = "tenant-a";

/// A fresh database with the event store and relay schemas.
pub async fn database() -> TestDatabase {
    let db = TestDatabase::create().await.expect("test database");
    commerce_eventstore::migrate(db.pool())
        .await
        .expect("event store migrations");
    commerce_relay::migrate(db.pool())
        .await
        .expect("relay migrations");
    db
}

/// A relay configuration on `brokers` with topics isolated behind a unique prefix.
pub fn config(brokers: &str) -> RelayConfig {
    let mut config = RelayConfig::new(brokers);
    config.topics = TopicConfig {
        prefix: format!("{}.", unique_topic("relay")),
        partitions: PARTITIONS,
        replication: 1,
        seed_topics: true,
        create_catalog_topics: false,
    };
    config.batch_size = 200;
    config.poll_interval = Duration::from_millis(200);
    config.lock_retry = Duration::from_millis(200);
    config.backoff.max = Duration::from_secs(1);
    config.delivery_timeout = Duration::from_secs(5);
    config.measure_interval = Duration::from_millis(200);
    config
}

pub fn shared_brokers() -> String {
    kafka_brokers().expect("KAFKA_BROKERS (run ./scripts/test.sh or source .local/devstack.env)")
}

/// One event to append.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub aggregate_type: &'static str,
    pub key: String,
    pub sequence: i64,
    pub event_type: &'static str,
}

impl NewEvent {
    pub fn order(key: &str, sequence: i64) -> Self {
        Self {
            aggregate_type: "order",
            key: key.to_owned(),
            sequence,
            event_type: if sequence == 1 {
                "order.created"
            } else {
                "order.confirmed"
            },
        }
    }

    pub fn stream_id(&self) -> String {
        format!("{TENANT}/{}", self.key)
    }
}

/// Appends events in one transaction, as postgres-es does (its seven columns only), then
/// announces them as the engine does after a commit (`NOTIFY commerce_events`).
pub async fn append(pool: &PgPool, events: &[NewEvent]) {
    let mut tx = pool.begin().await.expect("begin");
    insert(&mut tx, events).await;
    tx.commit().await.expect("commit");
    announce(pool).await;
}

/// What the engine's notifier sends after commits (raw inserts signal nothing by themselves).
pub async fn announce(pool: &PgPool) {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(commerce_eventstore::EVENTS_CHANNEL)
        .execute(pool)
        .await
        .expect("notify");
}

pub async fn insert(tx: &mut sqlx::PgConnection, events: &[NewEvent]) {
    for event in events {
        let metadata = serde_json::json!({
            "tenant_id": TENANT,
            "correlation_id": Uuid::new_v4().to_string(),
            "actor": "relay-test",
        });
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) VALUES ($1, $2, $3, $4, '1', $5, $6)",
        )
        .bind(event.aggregate_type)
        .bind(event.stream_id())
        .bind(event.sequence)
        .bind(event.event_type)
        .bind(serde_json::json!({"event_type": event.event_type, "n": event.sequence}))
        .bind(metadata)
        .execute(&mut *tx)
        .await
        .expect("insert event");
    }
}

/// `writers` concurrent tasks, each appending `per_writer` events in single-event
/// transactions to its own `aggregates` orders (round robin). Returns every event appended.
pub async fn concurrent_writers(
    pool: &PgPool,
    writers: usize,
    aggregates: usize,
    per_writer: usize,
) -> Vec<NewEvent> {
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let keys: Vec<String> = (0..aggregates)
                    .map(|a| format!("w{writer}-o{a}-{}", Uuid::new_v4().simple()))
                    .collect();
                let mut sequences = vec![0_i64; aggregates];
                let mut written = Vec::with_capacity(per_writer);
                for i in 0..per_writer {
                    let a = i % aggregates;
                    sequences[a] += 1;
                    let event = NewEvent::order(&keys[a], sequences[a]);
                    append(&pool, std::slice::from_ref(&event)).await;
                    written.push(event);
                }
                written
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("writer task"));
    }
    all
}

/// A relay running in a task; dropping the handle does not stop it, [`Running::stop`] and
/// [`Running::kill`] do.
pub struct Running {
    pub status: RelayStatus,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), commerce_relay::RelayError>>,
}

pub fn start(config: RelayConfig, pool: &PgPool) -> Running {
    Running::spawn(Relay::new(config, pool.clone()))
}

impl Running {
    /// Runs `relay` (on any log source) in a task.
    pub fn spawn<S: LogSource>(relay: Relay<S>) -> Self {
        let status = relay.status();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async move {
            let _ = stopped.await;
        }));
        Self {
            status,
            stop: Some(stop),
            task,
        }
    }

    /// Graceful shutdown.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .expect("relay task")
            .expect("relay ends cleanly");
    }

    /// A crash: the task is dropped wherever it is (its lock connection closes with it).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Waits until `condition` holds or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One message read back from Kafka.
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub envelope: serde_json::Value,
    pub headers: BTreeMap<String, String>,
}

impl Received {
    pub fn event_id(&self) -> &str {
        self.envelope["event_id"].as_str().expect("event_id")
    }

    pub fn sequence(&self) -> i64 {
        self.envelope["sequence"].as_i64().expect("sequence")
    }
}

/// Reads `topics` (all [`PARTITIONS`] partitions, from the beginning) until `done` says the
/// collected messages are complete or `timeout` passes; returns them in receipt order
/// (which is offset order within each partition).
pub fn read_topics(
    brokers: &str,
    topics: &[String],
    timeout: Duration,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique_topic("relay-reader"))
        .set("enable.auto.commit", "false")
        // If the broker ever answers "offset out of range", restart from the beginning rather
        // than jumping to the end (librdkafka's default), which would look like lost events.
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("partition offset");
        }
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    while Instant::now() < deadline && !done(&received) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                eprintln!("consumer error (retrying): {error}");
                continue;
            }
        };
        let headers = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        let value = header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        (header.key.to_owned(), value.unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        received.push(Received {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            envelope: serde_json::from_slice(message.payload().unwrap_or_default())
                .expect("envelope is JSON"),
            headers,
        });
    }
    received
}

/// The topics events of `written` go to under `config`'s prefix.
pub fn topics_of(config: &RelayConfig, written: &[NewEvent]) -> Vec<String> {
    let prefix = &config.topics.prefix;
    let mut topics: Vec<String> = written
        .iter()
        .flat_map(|e| {
            [
                format!("{prefix}commerce.{}", e.aggregate_type),
                format!("{prefix}{}", e.event_type),
            ]
        })
        .collect();
    topics.sort();
    topics.dedup();
    topics
}

/// Reads until every written event was seen on its aggregate topic and on its seed topic.
pub fn read_all(
    brokers: &str,
    config: &RelayConfig,
    written: &[NewEvent],
    timeout: Duration,
) -> Vec<Received> {
    let topics = topics_of(config, written);
    let expected = written.len() * 2;
    read_topics(brokers, &topics, timeout, |received| {
        received.len() >= expected && distinct(received) >= expected
    })
}

fn distinct(received: &[Received]) -> usize {
    let mut seen: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for message in received {
        seen.insert((message.topic.as_str(), message.event_id()));
    }
    seen.len()
}

/// The invariants every relay test checks: every written event is on its aggregate topic and
/// its seed topic at least once, and on the aggregate topic the first occurrences of each
/// aggregate's events are in sequence order 1..n. Returns the number of duplicates seen.
pub fn assert_complete_and_ordered(
    config: &RelayConfig,
    written: &[NewEvent],
    received: &[Received],
) -> usize {
    let prefix = &config.topics.prefix;
    let mut first_sequences: HashMap<(String, String), Vec<i64>> = HashMap::new();
    let mut seen: std::collections::HashSet<(String, String, i64)> = Default::default();
    let mut duplicates = 0;
    for message in received {
        let identity = (
            message.topic.clone(),
            message.key.clone(),
            message.sequence(),
        );
        if seen.insert(identity) {
            first_sequences
                .entry((message.topic.clone(), message.key.clone()))
                .or_default()
                .push(message.sequence());
        } else {
            duplicates += 1;
        }
    }
    let mut expected: HashMap<String, i64> = HashMap::new();
    for event in written {
        let last = expected.entry(event.key.clone()).or_default();
        *last = (*last).max(event.sequence);
    }
    for (stream, count) in &expected {
        let aggregate_topic = format!("{prefix}commerce.order");
        let firsts = first_sequences
            .get(&(aggregate_topic, stream.clone()))
            .unwrap_or_else(|| panic!("nothing received for {stream}"));
        let in_order: Vec<i64> = (1..=*count).collect();
        if firsts != &in_order {
            let partition_of: Vec<(i32, i64, i64, String)> = received
                .iter()
                .filter(|m| &m.key == stream && m.topic.ends_with("commerce.order"))
                .map(|m| {
                    let id = m.event_id().chars().take(8).collect();
                    (m.partition, m.offset, m.sequence(), id)
                })
                .collect();
            eprintln!("{stream}: (partition, offset, sequence, event id) = {partition_of:?}");
            let mut lowest: BTreeMap<(String, i32), i64> = BTreeMap::new();
            for m in received {
                let low = lowest
                    .entry((m.topic.clone(), m.partition))
                    .or_insert(i64::MAX);
                *low = (*low).min(m.offset);
            }
            eprintln!("lowest offsets read: {lowest:?}");
        }
        assert_eq!(
            firsts, &in_order,
            "first occurrences of {stream} out of order or missing"
        );
    }
    for event in written {
        let seed_topic = format!("{prefix}{}", event.event_type);
        assert!(
            seen.contains(&(seed_topic.clone(), event.key.clone(), event.sequence)),
            "{} #{} missing on {seed_topic}",
            event.stream_id(),
            event.sequence
        );
    }
    duplicates
}

/// A Tansu broker of the test's own, on a fixed port and storage folder, so it can be killed
/// (SIGKILL) and restarted with its data.
pub struct PrivateTansu {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateTansu {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("relay-tansu-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data")).expect("tansu folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let mut broker = Self {
            dir,
            port,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker process (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        let binary = commerce_devstack::ensure_tansu().expect("tansu binary");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("log file");
        let child = Command::new(binary.path())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Tansu 0.6.0 resolves the storage path against its working folder: keep it relative.
            .args(["--storage-engine", "sqlite://data/tansu.db"])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Without it every fetched record scans all stored headers and produce requests queue
        // behind those fetches (see `commerce_devstack::index_tansu_storage`).
        commerce_devstack::index_tansu_storage(&self.dir).expect("index Tansu's storage");
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL tansu");
            child.wait().expect("reap tansu");
        }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
