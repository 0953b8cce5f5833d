//! Isolation for integration tests that run in parallel against the real services.
//!
//! Every test creates its own database ([`TestDatabase::create`]) on the server named by
//! `DATABASE_URL`, and its own topics ([`unique_topic`], [`create_topics`]) on the cluster named by
//! `KAFKA_BROKERS`. Both variables are set by `./scripts/test.sh` (via `devstack up`). A test's
//! database is dropped when its [`TestDatabase`] is, so a run holds only the databases of the
//! tests still running; one left behind by a killed test goes the next time the private cluster
//! starts.
//!
//! ```no_run
//! # async fn example() -> Result<(), commerce_devstack::testkit::TestkitError> {
//! use commerce_devstack::testkit::{TestDatabase, create_topics, kafka_brokers, unique_topic};
//!
//! let db = TestDatabase::create().await?;
//! sqlx::query("CREATE TABLE t (id int)").execute(db.pool()).await?;
//! let topic = unique_topic("orders");
//! create_topics(&kafka_brokers()?, &[&topic], 3).await?;
//! # Ok(())
//! # }
//! ```

use std::str::FromStr;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use uuid::Uuid;

use crate::postgres::scratch_database_name;
use crate::{DATABASE_URL, KAFKA_BROKERS, env_setting};

/// Connections per test database: tests run in parallel against one server.
const POOL_SIZE: u32 = 5;

/// Why the test harness could not provide a database or topics.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The variable that names the service is unset.
    #[error(
        "{0} is not set: run the tests with ./scripts/test.sh (it starts PostgreSQL and Tansu), or `source .local/devstack.env` after `devstack up`"
    )]
    NotConfigured(&'static str),
    /// PostgreSQL refused or failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// No runtime could be started to drop a test's database.
    #[error("starting a runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The broker refused or failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker refused to create a topic.
    #[error("creating topic {topic}: {reason}")]
    TopicCreation {
        /// The topic.
        topic: String,
        /// The broker's answer.
        reason: String,
    },
}

/// The PostgreSQL server the tests use (`DATABASE_URL`).
pub fn database_url() -> Result<String, TestkitError> {
    env_setting(DATABASE_URL).ok_or(TestkitError::NotConfigured(DATABASE_URL))
}

/// The Kafka bootstrap servers the tests use (`KAFKA_BROKERS`).
pub fn kafka_brokers() -> Result<String, TestkitError> {
    env_setting(KAFKA_BROKERS).ok_or(TestkitError::NotConfigured(KAFKA_BROKERS))
}

/// A topic name no other test (or earlier run) uses: `<prefix>-<uuid>`.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}", Uuid::new_v4().simple())
}

/// Creates `topics` with `partitions` partitions each (replication 1: a single-node broker).
/// Tansu 0.6.0 does not create topics on first use, so tests create theirs explicitly.
pub async fn create_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
) -> Result<(), TestkitError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        result.map_err(|(topic, code)| TestkitError::TopicCreation {
            topic,
            reason: code.to_string(),
        })?;
    }
    Ok(())
}

/// A fresh database of its own for one test, with a small pool onto it. Dropping it drops the
/// database, closing whatever connections are still open onto it: keep it alive as long as
/// anything uses [`TestDatabase::url`] or a pool made from it.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    server: PgConnectOptions,
    pool: PgPool,
}

impl TestDatabase {
    /// Creates a uniquely named, empty database on the server in `DATABASE_URL`.
    pub async fn create() -> Result<Self, TestkitError> {
        let server_url = database_url()?;
        let name = scratch_database_name("");
        let server = PgConnectOptions::from_str(&server_url)?;
        let mut admin = server.connect().await?;
        // The name is generated above from hex digits only, so quoting it is enough.
        admin
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        admin.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(server.clone().database(&name))
            .await?;
        Ok(Self {
            url: with_database(&server_url, &name),
            name,
            server,
            pool,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for this database (to hand to the component under test).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool of connections to this database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl Drop for TestDatabase {
    /// Drops the database now rather than at the cluster's next start: hundreds of tests each
    /// leaving 8 MB behind filled the disk of a CI machine that keeps its build folder. `Drop`
    /// cannot wait on the test's runtime, so the statement runs on a runtime of its own, in a
    /// thread of its own (one may not start a runtime inside another), and the test waits for it.
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = std::mem::take(&mut self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = server.connect().await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await?;
                admin.close().await?;
                Ok::<_, TestkitError>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not drop a test database; the cluster's next start will");
            }
            Err(_) => tracing::warn!("dropping a test database panicked"),
        }
    }
}

/// `url` with its database (the path) replaced by `database`, keeping user, host and parameters.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let mut result = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "test_1"),
            "postgres://u:p@h:5432/test_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "test_1"),
            "postgres://h:1/test_1"
        );
        assert_eq!(with_database("postgresql://h/db", "x"), "postgresql://h/x");
    }

    #[test]
    fn topic_names_are_unique_and_valid() {
        let a = unique_topic("orders");
        let b = unique_topic("orders");
        assert_ne!(a, b);
        assert!(a.starts_with("orders-"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
