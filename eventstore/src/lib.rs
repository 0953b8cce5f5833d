//! The PostgreSQL event store of the commerce engine: migrations, tenant-scoped streams,
//! command execution with caching, optimistic concurrency, idempotency and upcasting, and
//! the gap-free global log that the relay and replay build on.
//!
//! It stores events in postgres-es' `events` table (so cqrs-es' plain event-store mode can
//! read them) extended with a global `position`, the writer's `transaction_id` (xid8), an
//! `event_id` and `recorded_at`; the table is append-only (triggers reject UPDATE, DELETE and
//! TRUNCATE) and tamper-evident: each event carries `chain_hash`, a keyed HMAC chained to the
//! previous event of its stream (`prev_hash`), and `log_checkpoints` seal the global log
//! (written and checked by `commerce-replay`). The migration also creates the `commerce_app`
//! role, which may SELECT and INSERT events but never UPDATE, DELETE or TRUNCATE them.
//!
//! Modules:
//! - [`migrate`] creates the schema (`migrations/`, run by `sqlx::migrate!`).
//! - `stream` ([`StreamId`]): stored aggregate ids are `"{tenant}/{key}"`, so tenants never
//!   share a stream.
//! - `metadata` ([`EventMetadata`]): tenant, correlation, causation, actor, idempotency key,
//!   in the cqrs-es `HashMap<String, String>` shape.
//! - `executor` ([`CommandExecutor`]): runs `cqrs_es::Aggregate` commands; see its doc for
//!   the caching, retry and idempotency rules.
//! - `store` ([`PgEventStore`]): stream and aggregate reads, engine-built snapshots;
//!   `snapshot_write` streams a snapshot to PostgreSQL in bounded memory.
//! - `log` ([`GlobalLog`]): all events in `(transaction_id, position)` order, gap-free;
//!   `wakeup`: appends wake [`LogWakeups`] in-process and by a debounced `NOTIFY` sent outside
//!   the append transaction (a `NOTIFY` inside it would serialise commits).
//! - `upcast` ([`Upcasters`]): old event versions rewritten on every read path.
//! - `backend` ([`EventBackend`], [`PgBackend`]): the storage contract a second store
//!   (KurrentDB, crate `commerce-eventstore-kurrentdb`) also fulfils; [`conformance`] is the
//!   suite every backend's tests run; `selection` ([`EventStoreSelection`]) parses
//!   `COMMERCE_EVENT_STORE`.
//! - `chain` ([`AuditKey`], [`ChainFields`]): the keyed chain hash and its canonical encoding.
//! - `plans`: connections that plan a statement once, for the appends and the log reads.
//!
//! ```no_run
//! # use commerce_eventstore::*;
//! # async fn demo<A: cqrs_es::Aggregate<Services = ()> + Clone + 'static>(pool: sqlx::PgPool, command: A::Command)
//! # -> Result<(), Box<dyn std::error::Error>> where A::Command: Clone + Send + Sync, A::Error: Send + 'static {
//! migrate(&pool).await?;
//! let store = PgEventStore::new(pool);
//! let executor = CommandExecutor::<A>::new(store.clone(), ());
//! let stream = StreamId::new("tenant-a", "order-1")?;
//! let context = CommandContext::new(EventMetadata::new("tenant-a", "user-7"));
//! let outcome = executor.execute(stream, command, context).await?;
//! let _events = store.global_log().read_after(LogCursor::START, 100).await?;
//! # let _ = outcome; Ok(()) }
//! ```

mod backend;
mod chain;
pub mod conformance;
mod error;
mod executor;
mod log;
mod metadata;
mod plans;
mod record;
mod selection;
mod snapshot_write;
mod store;
mod stream;
mod upcast;
mod wakeup;

pub use backend::{
    AppendOutcome, BackendError, BackendEvent, EventBackend, EventSubscription, ExpectedVersion,
    NewStreamEvent, PgBackend, StreamRef, validate_batch,
};
pub use chain::{
    AUDIT_KEY_ENV, AuditKey, CanonicalChainFields, ChainFields, Hash, RunningMac, canonical_json,
    hash_from_bytes, hash_from_hex, to_hex, write_canonical_text, write_hex,
};
pub use error::{DecodeError, StoreError};
pub use executor::{
    CommandContext, CommandExecutor, CommandOutcome, ExecuteError, ExecutorConfig, StoredEvent,
    request_hash,
};
pub use log::{EVENTS_CHANNEL, GlobalLog, LogCursor, LogCursorError, LogEvent, LogWakeups};
pub use metadata::{EventMetadata, MetadataError};
pub use record::RecordedEvent;
pub use selection::{EVENT_STORE_ENV, EventStoreSelection, SelectionError};
pub use store::{LoadedAggregate, PgEventStore};
pub use stream::{StreamId, StreamIdError};
pub use upcast::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent, Upcasters};

/// Creates or updates the event store schema (idempotent; safe to run at every start).
///
/// Other crates may keep their own migrations in the same database: versions they applied
/// are not treated as missing here.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}
