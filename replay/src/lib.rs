//! Auditor tooling: order history, as-of state, integrity verification, export and read-model
//! rebuilds. The `commerce replay …` subcommands and the `/audit/*` routes are thin wrappers
//! over these functions.
//!
//! Layout:
//! - [`history()`] ([`History`], [`Upto`]): every event of a stream with the state after it,
//!   to the end, a sequence (`--to-seq`) or a moment (`--as-of`), upcast events marked, and
//!   the streams reachable through correlation ids.
//! - `chained` ([`ChainedEvent`]): events exactly as stored, with `prev_hash`/`chain_hash`.
//! - `checkpoint` ([`seal_checkpoint`], [`Checkpoint`]): sealing the global log.
//! - `verify` ([`verify_database`], [`Damage`]): re-deriving chains and checkpoints.
//! - `export` ([`export()`], [`verify_export`]): JSON Lines export, sealed as a whole, and
//!   its offline check.
//! - `source` ([`LogSource`]): the global log as the projections' `EventSource`.
//! - `rebuild` ([`rebuild_read_models`], [`verify_projections`]).
//!
//! # Tamper evidence
//! The executor of `commerce-eventstore` stores with every event a keyed chain hash
//! (HMAC-SHA256 under `COMMERCE_AUDIT_KEY`, over the event's stored fields and the previous
//! event's hash; see `commerce_eventstore::ChainFields`). Checkpoints (`log_checkpoints`) seal
//! the log: count, cumulative hash in gap-free log order, the heads of changed streams, and a
//! keyed seal chained to the previous checkpoint. Verification needs the same key, so an
//! attacker with full database rights but without the key cannot forge or edit events, nor
//! cover a deletion, unnoticed. What it cannot see: events appended after the last checkpoint
//! and then deleted from a stream's tail, or the removal of the newest checkpoints together
//! with the events they sealed; the engine therefore seals frequently and logs every seal, and
//! auditors keep the last seal of each export to compare.
//!
//! Key handling: the engine and auditors read `COMMERCE_AUDIT_KEY`; without it the public
//! development key is used (fine for `commerce dev` and tests, never for production).

mod chained;
mod checkpoint;
mod error;
mod export;
mod history;
mod rebuild;
mod source;
mod verify;

pub use chained::{ChainedEvent, StreamRef};
pub use checkpoint::{Checkpoint, Head, Heads, load_checkpoints, seal_checkpoint};
pub use error::ReplayError;
pub use export::{ExportLine, ExportOptions, ExportSummary, export, verify_export};
pub use history::{History, HistoryEntry, RelatedStream, Upto, history};
pub use rebuild::{
    ProjectionDifference, RebuildSummary, progress_line, rebuild_read_models, verify_projections,
};
pub use source::{LogSource, event_record};
pub use verify::{Damage, DamageKind, VerifyReport, verify_database};
