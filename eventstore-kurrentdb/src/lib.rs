//! The KurrentDB (EventStoreDB) backend of the commerce event store, on the official
//! `kurrentdb` client: [`KurrentBackend`] fulfils `commerce_eventstore::EventBackend` and
//! passes the same conformance suite as PostgreSQL (run with `KURRENTDB_URL` set).
//!
//! Modules:
//! - `mapping`: stream names (`{aggregate_type}-{tenant}/{key}`), expected-revision mapping
//!   and the custom-metadata envelope that carries the engine's metadata;
//! - `position` ([`KurrentPosition`]): the `$all` cursor readers persist;
//! - `backend` ([`KurrentBackend`]): appends, stream reads, `$all` reads and catch-up
//!   subscriptions. The relay's KurrentDB mode tails `$all` through
//!   `EventBackend::read_all_after` (or `subscribe_all`) and persists the cursor's text form.
//!
//! The backend is selected with `COMMERCE_EVENT_STORE=kurrentdb://host:2113?tls=false`
//! (see `commerce_eventstore::EventStoreSelection`) in a binary built with the `kurrentdb`
//! feature.

mod backend;
mod mapping;
mod position;

pub use backend::KurrentBackend;
pub use position::{KurrentPosition, PositionError};

/// The environment variable naming the KurrentDB server the conformance test runs against.
pub const KURRENTDB_URL_ENV: &str = "KURRENTDB_URL";
