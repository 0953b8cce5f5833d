//! The engine's background components, run together in one process next to (or without) the
//! HTTP API: the relay (event store → Kafka, with the checkpoint sealer), a projection worker
//! (Kafka → read models) and the workflows (process managers and deadlines).
//!
//! [`Engine::start`] migrates the components' schemas, creates the aggregate and analytics topics (so a
//! projection worker never subscribes to a topic that does not exist yet), installs the
//! process's metrics recorder (so `/metrics` shows the relay's and the projections' metrics),
//! then spawns each chosen component with a shared stop signal. Every component is stopped
//! gracefully: the first one to end, on error or not, stops the others, since a process
//! missing one of its components must not look healthy.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use commerce_aggregates::{Catalog, StoreCatalog, product};
use commerce_contracts::topics::{AGGREGATE_TOPIC_PREFIX, ANALYTICS_TOPICS};
use commerce_eventstore::{EventStoreSelection, PgEventStore};
use commerce_projections::worker::{self, WorkerConfig};
use commerce_projections::{AGGREGATE_TYPES, ProjectionError};
use commerce_relay::{Relay, RelayConfig, RelayError, RelayStatus};
use commerce_workflows::{Executors, SandboxCarrier, SandboxGateway, WorkflowError, Workflows};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;

/// How long topic creation may take before startup fails.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the background components (flags and environment, shown by `--help`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Put in front of every Kafka topic name (isolates several engines on one cluster).
    #[arg(long, env = "COMMERCE_TOPIC_PREFIX", default_value = "", global = true)]
    pub topic_prefix: String,

    /// Also publish every event on the seed's per-event topic (`order.created`, …), for
    /// workflow tools that subscribe by event name; `false` publishes to the aggregate topics
    /// only.
    #[arg(
        long,
        env = "COMMERCE_SEED_TOPICS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub seed_topics: bool,

    /// Partitions of the topics the engine creates.
    #[arg(
        long,
        env = "COMMERCE_TOPIC_PARTITIONS",
        default_value_t = 6,
        global = true
    )]
    pub topic_partitions: i32,

    /// Replication factor of the topics the engine creates (1 on a single broker).
    #[arg(
        long,
        env = "COMMERCE_TOPIC_REPLICATION",
        default_value_t = 1,
        global = true
    )]
    pub topic_replication: i32,

    /// Consumer group of the projection workers (they share the work of one group).
    #[arg(
        long,
        env = "COMMERCE_PROJECTION_GROUP",
        default_value = "commerce-projections",
        global = true
    )]
    pub projection_group: String,

    /// Longest time the broker may hold a projection worker's fetch, in milliseconds: on Tansu
    /// 0.6 every fetch lasts this long, so lower means fresher read models and a busier broker.
    #[arg(
        long,
        env = "COMMERCE_PROJECTION_FETCH_WAIT_MS",
        default_value_t = commerce_projections::worker::DEFAULT_FETCH_WAIT_MS,
        value_parser = clap::value_parser!(u64).range(1..=10_000),
        global = true
    )]
    pub projection_fetch_wait_ms: u64,

    /// How long the relay's producer waits to fill a request (`linger.ms`), in milliseconds.
    #[arg(
        long,
        env = "COMMERCE_RELAY_LINGER_MS",
        default_value_t = commerce_relay::DEFAULT_LINGER_MS,
        value_parser = clap::value_parser!(u64).range(0..=10_000),
        global = true
    )]
    pub relay_linger_ms: u64,

    /// Seconds between checkpoint seals of the event log, next to the relay (0: never).
    #[arg(
        long,
        env = "COMMERCE_SEAL_INTERVAL_SECS",
        default_value_t = 10,
        global = true
    )]
    pub seal_interval_secs: u64,
}

/// Which components to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Components {
    pub relay: bool,
    pub projections: bool,
    pub workflows: bool,
}

impl Components {
    /// Relay, projections and workflows.
    pub const ALL: Self = Self {
        relay: true,
        projections: true,
        workflows: true,
    };
    /// None: the HTTP API alone.
    pub const NONE: Self = Self {
        relay: false,
        projections: false,
        workflows: false,
    };

    fn any(self) -> bool {
        self.relay || self.projections || self.workflows
    }
}

/// What the components need besides the database.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    pub topic_prefix: String,
    /// Whether the relay also publishes to the seed's per-event topics.
    pub seed_topics: bool,
    pub partitions: i32,
    pub replication: i32,
    pub projection_group: String,
    /// How long the broker may hold a projection worker's fetch.
    pub projection_fetch_wait: Duration,
    /// How long the relay's producer waits to fill a request.
    pub relay_linger: Duration,
    /// Time between checkpoint seals, with the relay (`None`: no sealing).
    pub seal_interval: Option<Duration>,
    /// The event store the relay publishes (`COMMERCE_EVENT_STORE`; checked by
    /// [`crate::event_store::select`] before the engine starts).
    pub event_store: EventStoreSelection,
}

impl EngineConfig {
    /// The configuration from the command line, for `brokers`.
    pub fn from_args(args: &EngineArgs, brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: args.topic_prefix.clone(),
            seed_topics: args.seed_topics,
            partitions: args.topic_partitions.max(1),
            replication: args.topic_replication.max(1),
            projection_group: args.projection_group.clone(),
            projection_fetch_wait: Duration::from_millis(args.projection_fetch_wait_ms),
            relay_linger: Duration::from_millis(args.relay_linger_ms),
            seal_interval: (args.seal_interval_secs > 0)
                .then(|| Duration::from_secs(args.seal_interval_secs)),
            event_store: EventStoreSelection::Postgres,
        }
    }

    /// Production defaults for `brokers` (no prefix, seed topics on, 6 partitions).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic_prefix: String::new(),
            seed_topics: true,
            partitions: 6,
            replication: 1,
            projection_group: "commerce-projections".to_owned(),
            projection_fetch_wait: Duration::from_millis(
                commerce_projections::worker::DEFAULT_FETCH_WAIT_MS,
            ),
            relay_linger: Duration::from_millis(commerce_relay::DEFAULT_LINGER_MS),
            seal_interval: Some(Duration::from_secs(10)),
            event_store: EventStoreSelection::Postgres,
        }
    }

    fn relay(&self) -> RelayConfig {
        let mut config = RelayConfig::new(self.brokers.clone());
        config.topics.prefix.clone_from(&self.topic_prefix);
        config.topics.seed_topics = self.seed_topics;
        config.topics.partitions = self.partitions;
        config.topics.replication = self.replication;
        config.linger = self.relay_linger;
        config
    }

    fn worker(&self) -> WorkerConfig {
        let mut config = WorkerConfig::new(self.brokers.clone());
        config.group_id.clone_from(&self.projection_group);
        config.topic_prefix.clone_from(&self.topic_prefix);
        config.topic_partitions = self.partitions;
        config.topic_replication = self.replication;
        config.fetch_wait = self.projection_fetch_wait;
        config
    }
}

/// A component could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("migrating the {component} schema failed: {reason}")]
    Migrate {
        component: &'static str,
        reason: String,
    },
    #[error("cannot create the Kafka topics: {0}")]
    Topics(String),
    #[error("the relay failed")]
    Relay(#[from] RelayError),
    #[error("the projection worker failed")]
    Projections(#[from] ProjectionError),
    #[error("the workflows failed")]
    Workflows(#[from] WorkflowError),
    #[error("the {0} task panicked or was cancelled")]
    Task(&'static str),
    /// The selected event store cannot be used (see [`crate::event_store`]).
    #[error(transparent)]
    EventStore(#[from] crate::event_store::EventStoreError),
}

/// Creates or updates the schemas of the relay, the read models and the workflows (idempotent).
pub async fn migrate(pool: &PgPool) -> Result<(), EngineError> {
    commerce_relay::migrate(pool)
        .await
        .map_err(|error| migrate_error("relay", error))?;
    commerce_projections::migrate(pool)
        .await
        .map_err(|error| migrate_error("read model", error))?;
    commerce_workflows::migrate(pool)
        .await
        .map_err(|error| migrate_error("workflow", error))
}

fn migrate_error(component: &'static str, error: impl std::fmt::Display) -> EngineError {
    EngineError::Migrate {
        component,
        reason: error.to_string(),
    }
}

/// Creates the aggregate topics (`<prefix>commerce.<aggregate>`) and the analyst streams
/// (`<prefix>analytics.*`, which the projections publish) that are missing: brokers such as
/// Tansu do not create a topic on first use.
pub async fn create_topics(config: &EngineConfig) -> Result<(), EngineError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .map_err(|error| EngineError::Topics(error.to_string()))?;
    let names: Vec<String> = AGGREGATE_TYPES
        .iter()
        .map(|aggregate| format!("{}{AGGREGATE_TOPIC_PREFIX}{aggregate}", config.topic_prefix))
        .chain(
            ANALYTICS_TOPICS
                .iter()
                .map(|topic| format!("{}{topic}", config.topic_prefix)),
        )
        .collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&topics, &options)
        .await
        .map_err(|error| EngineError::Topics(error.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(EngineError::Topics(format!("{topic}: {code}"))),
        }
    }
    Ok(())
}

/// The running components of one process.
#[derive(Debug)]
pub struct Engine {
    tasks: JoinSet<(&'static str, Result<(), EngineError>)>,
    stop: Arc<watch::Sender<bool>>,
    relay: Option<RelayStatus>,
}

impl Engine {
    /// Migrates, creates the topics and starts `components` on `pool`.
    pub async fn start(
        pool: PgPool,
        config: &EngineConfig,
        components: Components,
    ) -> Result<Self, EngineError> {
        Self::start_sharing(pool, config, components, None).await
    }

    /// Like [`Engine::start`], with the workflows commanding through `executors` when given:
    /// the HTTP API's executors when it runs in this process, so that a stream written by both
    /// has one cached aggregate and one command queue (two executors would make each other's
    /// cache stale on every write and reload hot aggregates over and over).
    pub async fn start_sharing(
        pool: PgPool,
        config: &EngineConfig,
        components: Components,
        executors: Option<Executors>,
    ) -> Result<Self, EngineError> {
        // Before any component records a metric: the facade drops what comes before.
        Metrics::global();
        let (stop, _) = watch::channel(false);
        let mut engine = Self {
            tasks: JoinSet::new(),
            stop: Arc::new(stop),
            relay: None,
        };
        if !components.any() {
            return Ok(engine);
        }
        migrate(&pool).await?;
        if components.relay || components.projections {
            create_topics(config).await?;
        }
        // A relay on another event store (KurrentDB's `$all`); PostgreSQL's is below.
        let backend_relay = if components.relay {
            crate::event_store::relay_on(&config.event_store, config.relay(), pool.clone()).await?
        } else {
            None
        };
        if let Some(relay) = backend_relay {
            engine.relay = Some(relay.status());
            let stopped = engine.stopped();
            engine.spawn("relay", async move {
                relay.run(stopped).await.map_err(EngineError::from)
            });
        }
        if components.relay && config.event_store == EventStoreSelection::Postgres {
            let store = PgEventStore::new(pool.clone()).with_upcasters(product::upcasters());
            let relay =
                Relay::new(config.relay(), pool.clone()).with_global_log(store.global_log());
            engine.relay = Some(relay.status());
            let stopped = engine.stopped();
            engine.spawn("relay", async move {
                relay.run(stopped).await.map_err(EngineError::from)
            });
            if let Some(every) = config.seal_interval {
                let stopped = engine.stopped();
                engine.spawn("checkpoint sealer", async move {
                    crate::sealer::run(store, every, stopped).await;
                    Ok(())
                });
            }
        }
        if components.projections {
            let (pool, worker_config, stopped) = (pool.clone(), config.worker(), engine.stopped());
            engine.spawn("projections", async move {
                worker::run(pool, worker_config, stopped)
                    .await
                    .map_err(EngineError::from)
            });
        }
        if components.workflows {
            let workflows = match executors {
                Some(executors) => Workflows::with_executors(
                    pool,
                    executors,
                    Arc::new(SandboxGateway),
                    Arc::new(SandboxCarrier),
                ),
                None => {
                    let store =
                        PgEventStore::new(pool.clone()).with_upcasters(product::upcasters());
                    let catalog: Arc<dyn Catalog> = Arc::new(StoreCatalog::new(store));
                    Workflows::sandbox(pool, catalog)
                }
            };
            let stopped = engine.stopped();
            engine.spawn("workflows", async move {
                workflows.run(stopped).await.map_err(EngineError::from)
            });
        }
        tracing::info!(?components, "engine components started");
        Ok(engine)
    }

    /// The in-process relay's live state, when the relay runs here.
    pub fn relay_status(&self) -> Option<RelayStatus> {
        self.relay.clone()
    }

    /// Completes once the engine is asked to stop or one of its components ended.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.stop.subscribe();
        async move {
            // A dropped sender means the engine is gone: stop as well.
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    }

    fn spawn(
        &mut self,
        name: &'static str,
        component: impl Future<Output = Result<(), EngineError>> + Send + 'static,
    ) {
        let stop = Arc::clone(&self.stop);
        self.tasks.spawn(async move {
            let outcome = component.await;
            match &outcome {
                Ok(()) => tracing::info!(component = name, "stopped"),
                Err(error) => tracing::error!(component = name, error = %error, "failed"),
            }
            stop.send_replace(true);
            (name, outcome)
        });
    }

    /// Stops every component gracefully and waits for them; the first failure is returned.
    pub async fn stop(mut self) -> Result<(), EngineError> {
        self.stop.send_replace(true);
        let mut first = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let outcome = match joined {
                Ok((_, outcome)) => outcome,
                Err(_) => Err(EngineError::Task("engine component")),
            };
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }

    /// Runs until `shutdown` completes or a component ends, then stops everything.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<(), EngineError> {
        tokio::select! {
            () = shutdown => {}
            () = self.stopped() => {}
        }
        self.stop().await
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn relay_of(args: &[&str]) -> RelayConfig {
        let args = Args::try_parse_from(std::iter::once("commerce").chain(args.iter().copied()))
            .expect("valid arguments");
        EngineConfig::from_args(&args.engine, "localhost:9092").relay()
    }

    #[test]
    fn given_no_setting_when_configured_then_the_relay_publishes_seed_topics() {
        assert!(relay_of(&[]).topics.seed_topics);
        assert!(relay_of(&["--seed-topics", "true"]).topics.seed_topics);
    }

    #[test]
    fn given_seed_topics_off_when_configured_then_the_relay_publishes_aggregate_topics_only() {
        assert!(!relay_of(&["--seed-topics", "false"]).topics.seed_topics);
    }
}
