//! Append wake-ups for log tailers, kept off the commit path.
//!
//! A `NOTIFY` sent inside an append transaction takes a cluster-wide lock when it commits and so
//! serialises every committing writer (about half the command throughput at 8-32 writers).
//! Appends therefore only signal, and the `NOTIFY` goes out later, from its own connection:
//! - [`AppendSignal::committed`], called after each successful append commit, wakes every
//!   [`LogWakeups`](crate::LogWakeups) of this process at once and marks a `NOTIFY` as due;
//! - a notifier task per store (started on the first commit, ended with the last clone of
//!   the store) sends `NOTIFY commerce_events` outside any append transaction, then waits
//!   [`NOTIFY_EVERY`]: while commits keep coming, one `NOTIFY` per interval covers them all.
//!
//! Writers outside the engine (fixtures, tools) can send `NOTIFY commerce_events` themselves;
//! tailers also poll, so a lost wake-up only delays them.

use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::log::EVENTS_CHANNEL;

/// Shortest pause between two `NOTIFY`s of one store while commits happen.
const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// Counts commits in this process. Every in-process tailer watches it, whatever its database:
/// a wake-up only means "re-read from your cursor", so a foreign one costs one empty read.
static COMMITTED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// A receiver that changes after every commit signalled in this process.
pub(crate) fn in_process() -> watch::Receiver<u64> {
    COMMITTED.subscribe()
}

/// The append side of the wake-ups (one per store; clones share it).
#[derive(Clone)]
pub(crate) struct AppendSignal {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// Changed by each commit; the notifier task holds the only receiver.
    due: watch::Sender<()>,
    notifier: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for AppendSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendSignal").finish_non_exhaustive()
    }
}

impl AppendSignal {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                due: watch::Sender::new(()),
                notifier: Mutex::new(None),
            }),
        }
    }

    /// Events were committed: wake in-process tailers now and the others soon.
    pub(crate) fn committed(&self) {
        COMMITTED.send_modify(|commits| *commits = commits.wrapping_add(1));
        self.ensure_notifier();
        self.inner.due.send_replace(());
    }

    /// Starts the notifier task if none runs (first commit, or its runtime has shut down).
    fn ensure_notifier(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut notifier = self
            .inner
            .notifier
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if notifier.as_ref().is_none_or(JoinHandle::is_finished) {
            let task = notify_loop(self.inner.pool.clone(), self.inner.due.subscribe());
            *notifier = Some(runtime.spawn(task));
        }
    }
}

/// Sends one `NOTIFY` per burst of commits, at most every [`NOTIFY_EVERY`]; ends when the
/// store (the sender) is gone.
async fn notify_loop(pool: PgPool, mut due: watch::Receiver<()>) {
    while due.changed().await.is_ok() {
        let sent = sqlx::query("SELECT pg_notify($1, '')")
            .bind(EVENTS_CHANNEL)
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            tracing::debug!(%error, "append notification not sent (tailers poll meanwhile)");
        }
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}
