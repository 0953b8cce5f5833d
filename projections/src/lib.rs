//! Read side of the engine: Kafka consumer groups that build the PostgreSQL read models, the
//! tenant-scoped queries over them, rebuilds from the event store, and the analyst streams.
//!
//! This crate depends on the published language (`commerce-contracts`) only, never on the write
//! side: the event store reaches it through the [`EventSource`] trait that other crates implement.
//!
//! Layout:
//! - [`schema`](migrate): `rm_meta` migrations and the read-model DDL (schema `rm`, or `rm_shadow`);
//! - `event`: the envelope fields the read side uses and payload decoding;
//! - [`Projector`]: applies one event in a caller's transaction, exactly once per stream sequence;
//! - `facets`: pure status and counter rules;
//! - [`worker`]: the consumer-group loop (offsets in PostgreSQL, fencing, dead letters, metrics,
//!   and a move to a fresh Kafka group when the broker's group leaves partitions unconsumed);
//! - [`queries`]: the contract's GET shapes and the read-your-writes wait, woken by `wakeup`
//!   ([`listen_for_projections`] for workers of other processes);
//! - [`rebuild`](rebuild()): shadow build from an [`EventSource`] and an atomic swap;
//! - `dead_letters`: listing and resolving parked records;
//! - `analytics`: analyst-stream records, queued in an outbox and published at least once.

mod analytics;
mod dead_letters;
mod error;
mod event;
mod facets;
mod projector;
pub mod queries;
mod rebuild;
mod schema;
#[cfg(test)]
mod testing;
mod wakeup;
pub mod worker;

pub use analytics::{create_topics, publish_outbox};
pub use dead_letters::{DeadLetter, open_dead_letters, resolve_dead_letter};
pub use error::ProjectionError;
pub use event::{AGGREGATE_TYPES, AggregateEvent, DecodeError, DecodedEvent, EventRecord};
pub use facets::{LineProgress, PaymentRow, StockLevel, fulfillment_status, order_payment_status};
pub use projector::{Outcome, Projector, StreamKey};
pub use rebuild::{EventSource, Progress, ReadModel, Rebuild, rebuild};
pub use schema::{READ_MODEL_VERSION, ReadModelSchema, migrate};
pub use wakeup::listen_for_projections;
