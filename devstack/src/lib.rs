//! Local services without Docker: a private PostgreSQL cluster and a Tansu broker, installed when
//! missing, plus the per-test isolation harness ([`testkit`]).
//!
//! Layout:
//! - [`install`](ensure_postgres) finds the PostgreSQL and Tansu binaries, installing them when absent;
//! - `postgres` / `tansu` start, reuse and stop one service each, under `<project>/.local/`;
//! - `tansu_index` ([`index_tansu_storage`]) works around Tansu 0.6.0's unindexed headers and watermarks;
//! - `services` starts both together and writes the shell environment that points at them;
//! - [`cargo`] starts cargo from a program cargo runs, without rebuilding what a plain build made;
//! - [`testkit`] gives every integration test its own database and unique topic names.
//!
//! `DATABASE_URL` and `KAFKA_BROKERS`, when set, name existing servers: nothing is started then,
//! and one that does not answer is an error (`given`).

mod cargo;
mod error;
mod given;
mod install;
mod layout;
mod postgres;
mod process;
mod services;
mod tansu;
mod tansu_index;
pub mod testkit;

pub use cargo::cargo;
pub use error::DevstackError;
pub use install::{PostgresBinaries, TansuBinary, ensure_postgres, ensure_tansu};
pub use layout::Layout;
pub use postgres::{LocalPostgres, scratch_database_name};
pub use services::{LocalServices, ServiceStatus, status, stop_detached};
pub use tansu::LocalTansu;
pub use tansu_index::index_tansu_storage;

/// Name of the environment variable that points at an existing PostgreSQL server.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Name of the environment variable that points at an existing Kafka-protocol cluster.
pub const KAFKA_BROKERS: &str = "KAFKA_BROKERS";

/// Reads a configuration variable, treating an empty value as unset.
fn env_setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}
