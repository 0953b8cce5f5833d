//! Connections to the backing services, checked at startup so that a wrong address fails fast
//! with one line naming the setting instead of surfacing later as failed requests.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{Connection, PgPool};

use crate::config::{KafkaBrokers, Settings};

/// How long startup waits for each service before declaring it unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections the HTTP API keeps to PostgreSQL.
const POOL_SIZE: u32 = 16;
/// Connections of the background components (relay, sealer, projections, workflows' intake).
const BACKGROUND_POOL_SIZE: u32 = 8;

/// A backing service cannot be reached with the configured address.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// PostgreSQL refused or rejected the credentials.
    #[error("cannot connect to the database in DATABASE_URL")]
    Database(#[source] sqlx::Error),
    /// PostgreSQL did not answer in time.
    #[error("cannot connect to the database in DATABASE_URL: no answer within {} s", REACH_TIMEOUT.as_secs())]
    DatabaseTimeout,
    /// No broker in the list answered a metadata request.
    #[error("cannot reach the Kafka brokers in KAFKA_BROKERS ({brokers}): {reason}")]
    Broker {
        /// The configured list (not secret).
        brokers: KafkaBrokers,
        /// The client's last error.
        reason: String,
    },
}

/// The connections a component needs, opened and checked.
#[derive(Debug, Clone)]
pub struct Backends {
    /// PostgreSQL connections of the HTTP API (commands and queries).
    pub pool: PgPool,
    /// PostgreSQL connections of the background components, apart from the API's: under load
    /// the API's pool has a queue of waiting requests, and a projection worker waiting in that
    /// queue for each transaction makes every read-your-writes query wait longer still.
    pub background: PgPool,
}

impl Backends {
    /// Opens the database pool and checks that the broker answers.
    pub async fn connect(settings: &Settings) -> Result<Self, ConnectError> {
        // One direct connection first: a pool would report any failure as "timed out",
        // hiding "connection refused" or "password authentication failed".
        let probe = tokio::time::timeout(
            REACH_TIMEOUT,
            PgConnection::connect_with(&settings.database),
        )
        .await
        .map_err(|_| ConnectError::DatabaseTimeout)?
        .map_err(ConnectError::Database)?;
        // The probe proved the settings; how it closes does not matter.
        let _ = probe.close().await;
        // No ping before each acquire: it doubles the round trips of a one-statement
        // command; a connection that died fails its next query, which the caller retries.
        let pool_of = |size| {
            PgPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(REACH_TIMEOUT)
                .test_before_acquire(false)
                .connect_lazy_with(settings.database.clone())
        };
        let (pool, background) = (pool_of(POOL_SIZE), pool_of(BACKGROUND_POOL_SIZE));
        check_broker(&settings.kafka_brokers).await?;
        Ok(Self { pool, background })
    }
}

/// One metadata round trip; librdkafka blocks, so it runs off the async workers.
pub async fn check_broker(brokers: &KafkaBrokers) -> Result<(), ConnectError> {
    let list = brokers.as_str().to_owned();
    let outcome = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &list)
            .create()
            .map_err(|error| error.to_string())?;
        consumer
            .fetch_metadata(None, REACH_TIMEOUT)
            .map(drop)
            .map_err(|error| error.to_string())
    })
    .await
    .unwrap_or_else(|join_error| Err(join_error.to_string()));
    outcome.map_err(|reason| ConnectError::Broker {
        brokers: brokers.clone(),
        reason,
    })
}
