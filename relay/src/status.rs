//! What the relay is doing, for `/ready`, `/metrics` and tests.
//!
//! [`RelayStatus`] is a cheap, cloneable handle the run loop updates and anyone can read.
//! The same facts go to the `metrics` facade (the binary installs the Prometheus exporter):
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `relay_lag_events` | gauge | committed events after the persisted cursor |
//! | `relay_lag_seconds` | gauge | age of the oldest of them (0 when none) |
//! | `relay_events_published_total` | counter | events acknowledged by the broker |
//! | `relay_events_published_per_second` | gauge | the same, per second over the last interval |
//! | `relay_publish_errors_total` | counter | failed batch attempts |
//! | `relay_batches_retried_total` | counter | batches sent again after a failure |
//! | `relay_events_republished_total` | counter | events sent again (possible duplicates) |
//! | `relay_producer_recreated_total` | counter | producers replaced after a fatal error |
//! | `relay_broker_reachable` | gauge | 1 when the broker answered last time, else 0 |
//! | `relay_active` | gauge | 1 on the instance that holds the lock and publishes |

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use commerce_eventstore::LogCursor;

use crate::source::LogSource;

/// The relay's role in a group of instances sharing one name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RelayRole {
    /// Not running yet, or migrating.
    #[default]
    Starting,
    /// Waiting for the active instance's lock.
    Standby,
    /// Holds the lock and publishes.
    Active,
    /// `run` returned.
    Stopped,
}

/// A copy of the relay's state at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RelaySnapshot {
    pub role: RelayRole,
    /// `None` until the relay has talked to the broker.
    pub broker_reachable: Option<bool>,
    /// The last acknowledged (and persisted) cursor of this instance, when it reads
    /// PostgreSQL's global log.
    pub cursor: LogCursor,
    /// The same cursor in its source's text form (whatever the source: KurrentDB's
    /// `"commit:prepare"`); empty until the relay became active.
    pub source_cursor: String,
    pub last_publish: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub lag_events: u64,
    pub lag_seconds: f64,
    pub events_published: u64,
    pub publish_errors: u64,
    pub batches_retried: u64,
    pub events_republished: u64,
    pub producer_recreations: u64,
}

impl RelaySnapshot {
    /// Ready unless the broker is known to be unreachable: a standby or an idle relay that
    /// has not needed the broker yet does not hold readiness back.
    pub fn is_ready(&self) -> bool {
        self.broker_reachable != Some(false)
    }
}

/// Shared, cloneable view of a relay's state.
#[derive(Clone, Debug, Default)]
pub struct RelayStatus {
    inner: Arc<Mutex<RelaySnapshot>>,
}

impl RelayStatus {
    pub fn snapshot(&self) -> RelaySnapshot {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, RelaySnapshot> {
        // A panic while holding this lock cannot leave the plain-data snapshot inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_role(&self, role: RelayRole) {
        self.lock().role = role;
        metrics::gauge!("relay_active").set(if role == RelayRole::Active { 1 } else { 0 });
    }

    pub(crate) fn set_broker_reachable(&self, reachable: bool) {
        self.lock().broker_reachable = Some(reachable);
        metrics::gauge!("relay_broker_reachable").set(if reachable { 1 } else { 0 });
    }

    pub(crate) fn set_cursor<S: LogSource>(&self, cursor: S::Cursor) {
        let text = cursor.to_string();
        let mut state = self.lock();
        if let Some(log_cursor) = S::log_cursor(cursor) {
            state.cursor = log_cursor;
        }
        state.source_cursor = text;
    }

    pub(crate) fn published(&self, events: usize) {
        let count = u64::try_from(events).unwrap_or(u64::MAX);
        {
            let mut state = self.lock();
            state.events_published = state.events_published.saturating_add(count);
            state.last_publish = Some(Utc::now());
            state.last_error = None;
        }
        metrics::counter!("relay_events_published_total").increment(count);
        self.set_broker_reachable(true);
    }

    /// A batch attempt failed: the broker did not acknowledge everything (or was unreachable).
    pub(crate) fn publish_failed(&self, error: &str) {
        {
            let mut state = self.lock();
            state.publish_errors = state.publish_errors.saturating_add(1);
            state.last_error = Some(error.to_owned());
        }
        metrics::counter!("relay_publish_errors_total").increment(1);
        self.set_broker_reachable(false);
    }

    pub(crate) fn batch_retried(&self, events: usize) {
        let count = u64::try_from(events).unwrap_or(u64::MAX);
        {
            let mut state = self.lock();
            state.batches_retried = state.batches_retried.saturating_add(1);
            state.events_republished = state.events_republished.saturating_add(count);
        }
        metrics::counter!("relay_batches_retried_total").increment(1);
        metrics::counter!("relay_events_republished_total").increment(count);
    }

    pub(crate) fn producer_recreated(&self) {
        {
            let mut state = self.lock();
            state.producer_recreations = state.producer_recreations.saturating_add(1);
        }
        metrics::counter!("relay_producer_recreated_total").increment(1);
    }

    pub(crate) fn error(&self, error: &str) {
        self.lock().last_error = Some(error.to_owned());
    }

    pub(crate) fn set_lag(&self, events: u64, seconds: f64) {
        {
            let mut state = self.lock();
            state.lag_events = events;
            state.lag_seconds = seconds;
        }
        metrics::gauge!("relay_lag_events").set(u32::try_from(events).unwrap_or(u32::MAX));
        metrics::gauge!("relay_lag_seconds").set(seconds);
    }

    pub(crate) fn set_rate(&self, events_per_second: u64) {
        metrics::gauge!("relay_events_published_per_second")
            .set(u32::try_from(events_per_second).unwrap_or(u32::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_new_status_then_it_is_ready_and_starting() {
        let status = RelayStatus::default();
        let snapshot = status.snapshot();
        assert_eq!(snapshot.role, RelayRole::Starting);
        assert!(snapshot.is_ready());
    }

    #[test]
    fn given_a_failed_publish_with_the_broker_down_then_not_ready_until_a_success() {
        let status = RelayStatus::default();
        status.publish_failed("broker down");
        assert!(!status.snapshot().is_ready());
        assert_eq!(status.snapshot().publish_errors, 1);
        status.published(10);
        let snapshot = status.snapshot();
        assert!(snapshot.is_ready());
        assert_eq!(snapshot.events_published, 10);
        assert_eq!(snapshot.last_error, None);
    }

    #[test]
    fn clones_share_one_state() {
        let status = RelayStatus::default();
        let other = status.clone();
        other.batch_retried(5);
        assert_eq!(status.snapshot().events_republished, 5);
        assert_eq!(status.snapshot().batches_retried, 1);
    }
}
