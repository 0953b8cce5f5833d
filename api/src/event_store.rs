//! The event store selection of the `commerce` binary (`COMMERCE_EVENT_STORE`): which
//! commands may run on which store, and the relay on a store other than PostgreSQL.
//!
//! PostgreSQL (the default) runs everything. A KurrentDB server
//! (`COMMERCE_EVENT_STORE=kurrentdb://host:2113?tls=false`, in a binary built with the
//! `kurrentdb` feature) is supported by `commerce relay`, which publishes KurrentDB's `$all`
//! to Kafka with its cursor kept in PostgreSQL, and by the commands that never touch the event
//! store (`project`, `migrate`, `token`, `tenant`). The command path cannot run on KurrentDB:
//! the executor writes a command's events, its idempotency record and the tamper-evidence
//! chain in one PostgreSQL transaction (`commerce_eventstore` executor, `append` module), the
//! workflows command through that executor, and replay reads PostgreSQL's log and chain.
//! Those commands refuse a KurrentDB selection at start with one line saying so.
//!
//! A deployment that keeps its commands on PostgreSQL and also has events written to KurrentDB
//! (by other services through `commerce-eventstore-kurrentdb`) runs two relays: `commerce
//! relay` on PostgreSQL and `commerce relay` with `COMMERCE_EVENT_STORE=kurrentdb://…`; they
//! hold different locks and cursors and publish to the same topics.

use std::future::Future;
use std::pin::Pin;

use commerce_eventstore::{EVENT_STORE_ENV, EventStoreSelection, SelectionError};
use commerce_relay::{RelayConfig, RelayError, RelayStatus};
use sqlx::PgPool;

/// The subcommands that run on a KurrentDB event store (shown in the refusal).
const KURRENTDB_COMMANDS: &str = "relay, project, migrate, token and tenant";

/// Why the selected event store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EventStoreError {
    /// `COMMERCE_EVENT_STORE` names no known store.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// KurrentDB was selected in a binary built without it.
    #[error(
        "{EVENT_STORE_ENV}={store}: this commerce binary was built without the kurrentdb \
         feature; supported: postgres (rebuild with `cargo build -p commerce-api --features \
         kurrentdb` to use KurrentDB)"
    )]
    NotBuiltIn { store: String },
    /// The command cannot run on the selected store.
    #[error(
        "{EVENT_STORE_ENV}={store}: `commerce {command}` runs on PostgreSQL only (commands \
         write events, idempotency records and the tamper-evidence chain in one PostgreSQL \
         transaction); on KurrentDB only {KURRENTDB_COMMANDS} are supported"
    )]
    Unsupported {
        store: String,
        command: &'static str,
    },
    /// The KurrentDB client refused the connection string or the server did not answer.
    #[error("{EVENT_STORE_ENV}={store}: {reason}")]
    Unreachable { store: String, reason: String },
}

/// How a subcommand uses the event store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreUse {
    /// It writes commands or reads PostgreSQL's log and chain: PostgreSQL only.
    PostgresOnly(&'static str),
    /// It reads the store's global order (the relay) or never touches the store.
    AnyStore,
}

/// Parses `value` (the `COMMERCE_EVENT_STORE` setting) and checks that this binary and the
/// command `usage` can run on it.
pub fn select(value: &str, usage: StoreUse) -> Result<EventStoreSelection, EventStoreError> {
    let selection = if value.trim().is_empty() {
        EventStoreSelection::Postgres
    } else {
        value.parse::<EventStoreSelection>()?
    };
    if selection == EventStoreSelection::Postgres {
        return Ok(selection);
    }
    let store = selection.to_string();
    if !cfg!(feature = "kurrentdb") {
        return Err(EventStoreError::NotBuiltIn { store });
    }
    match usage {
        StoreUse::AnyStore => Ok(selection),
        StoreUse::PostgresOnly(command) => Err(EventStoreError::Unsupported { store, command }),
    }
}

/// A relay on a store other than PostgreSQL, ready to run (its source type hidden).
pub struct BackendRelay {
    status: RelayStatus,
    run: RunRelay,
}

type RelayRun = Pin<Box<dyn Future<Output = Result<(), RelayError>> + Send>>;
type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;
type RunRelay = Box<dyn FnOnce(Stop) -> RelayRun + Send>;

impl std::fmt::Debug for BackendRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendRelay")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl BackendRelay {
    /// The relay's live state.
    pub fn status(&self) -> RelayStatus {
        self.status.clone()
    }

    /// Runs it until `shutdown` completes (see `commerce_relay::Relay::run`).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RelayError> {
        (self.run)(Box::pin(shutdown)).await
    }
}

/// The relay for `selection` when it is not PostgreSQL (`None`: the engine's own
/// PostgreSQL relay applies). Checks that the server answers before the relay starts.
///
/// Its name (cursor row and lock) is the configured one plus `-kurrentdb`, so it runs next to
/// a relay on PostgreSQL's log without taking its lock: both publish to the same topics.
pub async fn relay_on(
    selection: &EventStoreSelection,
    config: RelayConfig,
    pool: PgPool,
) -> Result<Option<BackendRelay>, EventStoreError> {
    match selection {
        EventStoreSelection::Postgres => Ok(None),
        EventStoreSelection::KurrentDb { connection_string } => {
            kurrentdb_relay(selection, connection_string, config, pool)
                .await
                .map(Some)
        }
    }
}

#[cfg(feature = "kurrentdb")]
async fn kurrentdb_relay(
    selection: &EventStoreSelection,
    connection_string: &str,
    mut config: RelayConfig,
    pool: PgPool,
) -> Result<BackendRelay, EventStoreError> {
    use commerce_eventstore::EventBackend;
    use commerce_eventstore_kurrentdb::{KurrentBackend, KurrentPosition};
    use commerce_relay::Relay;

    /// How long the start-up probe waits for the server.
    const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

    let unreachable = |reason: String| EventStoreError::Unreachable {
        store: selection.to_string(),
        reason,
    };
    let backend = KurrentBackend::connect(connection_string)
        .map_err(|error| unreachable(error.to_string()))?
        .with_upcasters(commerce_aggregates::product::upcasters());
    match tokio::time::timeout(
        PROBE_TIMEOUT,
        backend.read_all_after(KurrentPosition::START, 1),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(unreachable(error.to_string())),
        Err(_) => {
            return Err(unreachable(format!(
                "no answer from the server within {PROBE_TIMEOUT:?}"
            )));
        }
    }
    config.name = format!("{}-{}", config.name, backend.name());
    let relay = Relay::on_backend(config, pool, backend);
    Ok(BackendRelay {
        status: relay.status(),
        run: Box::new(move |stop| Box::pin(relay.run(stop))),
    })
}

#[cfg(not(feature = "kurrentdb"))]
async fn kurrentdb_relay(
    selection: &EventStoreSelection,
    _connection_string: &str,
    _config: RelayConfig,
    _pool: PgPool,
) -> Result<BackendRelay, EventStoreError> {
    Err(EventStoreError::NotBuiltIn {
        store: selection.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KURRENTDB: &str = "kurrentdb://admin:changeit@kdb:2113?tls=false";

    #[test]
    fn given_no_setting_or_postgres_then_every_command_runs_on_postgres() {
        for value in ["", "postgres", " PostgreSQL "] {
            for usage in [StoreUse::AnyStore, StoreUse::PostgresOnly("serve")] {
                assert_eq!(
                    select(value, usage).expect("postgres"),
                    EventStoreSelection::Postgres
                );
            }
        }
    }

    #[test]
    fn given_an_unknown_store_then_the_error_names_the_setting() {
        let error = select("mysql://db", StoreUse::AnyStore).expect_err("unknown store");
        assert!(
            error.to_string().starts_with("COMMERCE_EVENT_STORE="),
            "{error}"
        );
    }

    #[cfg(not(feature = "kurrentdb"))]
    #[test]
    fn given_kurrentdb_without_the_feature_then_every_command_refuses_it() {
        for usage in [StoreUse::AnyStore, StoreUse::PostgresOnly("serve")] {
            let message = select(KURRENTDB, usage)
                .expect_err("not built in")
                .to_string();
            assert!(
                message.contains("built without the kurrentdb feature"),
                "{message}"
            );
            assert!(message.starts_with("COMMERCE_EVENT_STORE="), "{message}");
            assert!(!message.contains("changeit"), "no password: {message}");
        }
    }

    #[cfg(feature = "kurrentdb")]
    #[test]
    fn given_kurrentdb_then_the_relay_accepts_it_and_the_command_path_refuses_it() {
        assert!(matches!(
            select(KURRENTDB, StoreUse::AnyStore),
            Ok(EventStoreSelection::KurrentDb { .. })
        ));
        let message = select(KURRENTDB, StoreUse::PostgresOnly("serve"))
            .expect_err("the executor needs PostgreSQL")
            .to_string();
        assert!(message.starts_with("COMMERCE_EVENT_STORE="), "{message}");
        assert!(
            message.contains("`commerce serve` runs on PostgreSQL only"),
            "{message}"
        );
        assert!(
            message.contains("relay"),
            "names what is supported: {message}"
        );
        assert!(!message.contains("changeit"), "no password: {message}");
    }

    #[cfg(feature = "kurrentdb")]
    #[tokio::test]
    async fn given_an_unreachable_kurrentdb_then_the_relay_does_not_start() {
        let selection: EventStoreSelection = "kurrentdb://127.0.0.1:1?tls=false"
            .parse()
            .expect("valid selection");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("lazy pool");
        let error = relay_on(&selection, RelayConfig::new("127.0.0.1:1"), pool)
            .await
            .expect_err("nothing listens on port 1");
        assert!(
            error.to_string().starts_with("COMMERCE_EVENT_STORE="),
            "{error}"
        );
    }
}
