//! (e) Read-model rebuild and log verification over everything the run appended, each beside a
//! raw sequential read of the `events` table taken right before it. Both call the auditor
//! tooling in-process (`commerce-replay`, the code behind `commerce replay rebuild all` and
//! `commerce replay verify`) on the run's database, while the engine keeps running.
//!
//! Why a raw read before each: the engine may still be settling an earlier scenario, so the
//! machine's load changes over the ~10 s the rebuild takes; each tool is compared with a
//! baseline measured under the conditions it met (raw → rebuild, raw → verify).

use commerce_eventstore::{AuditKey, PgEventStore};
use commerce_projections::Rebuild;
use serde::Serialize;

use super::Bench;
use crate::baseline;
use crate::engine::audit_key;
use crate::stats::{rate, ratio};

/// The results of (e).
#[derive(Debug, Clone, Serialize)]
pub struct RebuildResult {
    pub events: u64,
    /// Baseline of the rebuild: rows/s of a raw keyset read of `events`, right before it.
    pub raw_read_events_per_s: f64,
    pub rebuild_events_per_s: f64,
    /// Rebuild rate over [`Self::raw_read_events_per_s`].
    pub rebuild_ratio: Option<f64>,
    /// Baseline of the verification: the same raw read, repeated right before it.
    pub raw_read_before_verify_events_per_s: f64,
    pub verify_events_per_s: f64,
    /// Verification rate over [`Self::raw_read_before_verify_events_per_s`].
    pub verify_ratio: Option<f64>,
    /// Damage the verification reported (0 on an untouched log).
    pub verify_damage: usize,
}

/// Runs (e).
pub async fn run(bench: &Bench) -> anyhow::Result<RebuildResult> {
    let raw = baseline::sequential_read(&bench.pool).await?;
    let store = PgEventStore::new(bench.pool.clone());
    let rebuilt = commerce_replay::rebuild_read_models(&store, Rebuild::All, |_| {}).await?;
    let raw_before_verify = baseline::sequential_read(&bench.pool).await?;
    let verify_started = std::time::Instant::now();
    let report =
        commerce_replay::verify_database(&bench.pool, &AuditKey::new(audit_key().as_bytes()))
            .await?;
    let verify_elapsed = verify_started.elapsed();
    let raw_rate = rate(raw.events, raw.elapsed);
    let rebuild_rate = rate(rebuilt.events, rebuilt.elapsed);
    let raw_before_verify_rate = rate(raw_before_verify.events, raw_before_verify.elapsed);
    let verify_rate = rate(report.events, verify_elapsed);
    let result = RebuildResult {
        events: raw.events,
        raw_read_events_per_s: raw_rate,
        rebuild_events_per_s: rebuild_rate,
        rebuild_ratio: ratio(rebuild_rate, raw_rate),
        raw_read_before_verify_events_per_s: raw_before_verify_rate,
        verify_events_per_s: verify_rate,
        verify_ratio: ratio(verify_rate, raw_before_verify_rate),
        verify_damage: report.damage.len(),
    };
    eprintln!(
        "(e) {} events: raw read {raw_rate:.0}/s, rebuild {rebuild_rate:.0}/s; \
         raw read {raw_before_verify_rate:.0}/s, verify {verify_rate:.0}/s",
        result.events
    );
    Ok(result)
}
