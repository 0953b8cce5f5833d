//! The periodic checkpoint sealer: every few seconds, [`commerce_replay::seal_checkpoint`]
//! seals the events that became final since the last checkpoint.
//!
//! It runs next to the relay (`commerce relay`, `all`, `dev`). Frequent seals narrow what an
//! attacker could delete unnoticed (events after the last checkpoint). A failure is logged
//! and retried at the next tick rather than stopping the engine: a damaged log is reported
//! loudly (`commerce replay verify` names the damage), and a database hiccup passes. Several
//! sealers may run at once: a checkpoint number is taken only once.

use std::time::Duration;

use commerce_eventstore::PgEventStore;
use commerce_replay::ReplayError;

/// Seals `store`'s log every `every` until `stopped` completes.
pub async fn run(store: PgEventStore, every: Duration, stopped: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = &mut stopped => return,
            _ = ticks.tick() => {}
        }
        match commerce_replay::seal_checkpoint(store.pool(), store.audit_key()).await {
            Ok(_) => {}
            Err(error @ ReplayError::Damaged(_)) => {
                tracing::error!(%error, "the event log is damaged; not sealing");
            }
            Err(error) => tracing::warn!(%error, "sealing a checkpoint failed; retrying"),
        }
    }
}
