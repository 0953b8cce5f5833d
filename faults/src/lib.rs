//! Fault injection and bad input against the whole engine, run as child processes of the
//! `commerce` binary on a private PostgreSQL cluster and a private Tansu broker, so the suite
//! may kill them (SIGKILL, `pg_ctl stop -m immediate`) without touching shared services.
//!
//! Layout:
//! - `postgres`, `tansu`: the private services ([`PrivatePostgres`], [`PrivateTansu`]);
//! - `binary`, [`engine`]: the `commerce` binary and its supervised processes;
//! - `workload`: the client's mixed commands and every acknowledged answer ([`Ack`]);
//! - `kafka`: reading the topics end to end, re-producing copies (duplicates, reordering);
//! - `quiesce`: "nothing left to do", read from the database;
//! - `oracle`: the checks against the event store ([`Findings`]);
//! - `scenario`: one case from start to verdict ([`run_case`]), and the soak;
//! - `rng`: the seeded generator behind every random choice (`FAULTS_SEED` replays a run).
//!
//! `RELIABILITY.md` at the workspace root records what is injected and what was found.

mod binary;
pub mod engine;
mod error;
mod kafka;
mod oracle;
mod postgres;
mod process;
mod quiesce;
mod rng;
mod scenario;
mod tansu;
mod workload;

pub use binary::{BIN_ENV, commerce_binary, workspace_root};
pub use error::FaultError;
pub use kafka::{TopicRecord, aggregate_topics, produce_raw, read_all};
pub use oracle::Findings;
pub use postgres::{PrivatePostgres, SyncCommit};
pub use quiesce::{Backlog, backlog};
pub use rng::{Rng, SEED_ENV};
pub use scenario::{CaseConfig, Fault, Report, run_case};
pub use tansu::PrivateTansu;
pub use workload::{Ack, TENANT, Workload, WorkloadStats};
