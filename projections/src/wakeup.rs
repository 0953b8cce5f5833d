//! Wake-ups for read-your-writes waits ([`crate::queries::wait_for`]), so a query returns as soon
//! as its command is projected instead of on its next poll.
//!
//! - In this process: a worker that committed a batch reports the last sequence it applied on
//!   each stream of the batch ([`applied`]); waiters on those streams are released at once,
//!   without a query.
//! - From other processes: the batch's transaction also sends `NOTIFY commerce_projected` with
//!   this process's id. A query process whose read models are written by workers elsewhere
//!   (`commerce api` beside `commerce projections`) runs [`listen_for_projections`]; on another
//!   process's notification its waiters re-check their stream (their own process's
//!   notifications are skipped: the local release already covered them).
//! - Waiters also poll on a growing pause, so a lost wake-up (a reconnect, a rebuild's swap)
//!   only delays them.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::projector::StreamKey;

/// The `NOTIFY` channel of committed projection batches.
pub(crate) const PROJECTED_CHANNEL: &str = "commerce_projected";

/// Tells this process's notifications from the others'.
pub(crate) static PROCESS_ID: LazyLock<String> =
    LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// Counts other processes' notifications; waiters re-check on each.
static ELSEWHERE: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

static WAITERS: LazyLock<Mutex<Waiters>> = LazyLock::new(|| Mutex::new(Waiters::default()));

#[derive(Default)]
struct Waiters {
    next_id: u64,
    by_stream: HashMap<StreamKey, Vec<Waiter>>,
}

struct Waiter {
    id: u64,
    sequence: i64,
    release: oneshot::Sender<()>,
}

fn waiters() -> std::sync::MutexGuard<'static, Waiters> {
    // The map stays consistent across a panic elsewhere: every update is a single insert/retain.
    WAITERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A query waiting for `sequence` of a stream; leaves the registry when dropped.
pub(crate) struct Registration {
    key: StreamKey,
    id: u64,
    /// Completes when a worker of this process committed the sequence (or a later one).
    pub(crate) released: oneshot::Receiver<()>,
    /// Changes when another process's worker committed a batch.
    pub(crate) elsewhere: watch::Receiver<u64>,
}

/// Registers a wait for `sequence` of `key`; register before the first check, so a commit
/// between the check and the wait is not missed.
pub(crate) fn register(key: StreamKey, sequence: i64) -> Registration {
    let (release, released) = oneshot::channel();
    let mut waiters = waiters();
    let id = waiters.next_id;
    waiters.next_id = waiters.next_id.wrapping_add(1);
    waiters
        .by_stream
        .entry(key.clone())
        .or_default()
        .push(Waiter {
            id,
            sequence,
            release,
        });
    Registration {
        key,
        id,
        released,
        elsewhere: ELSEWHERE.subscribe(),
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waiters = waiters();
        if let Some(list) = waiters.by_stream.get_mut(&self.key) {
            list.retain(|waiter| waiter.id != self.id);
            if list.is_empty() {
                waiters.by_stream.remove(&self.key);
            }
        }
    }
}

/// A worker of this process committed these streams up to these sequences: releases their
/// waiters. Call only after the commit.
pub(crate) fn applied(streams: impl IntoIterator<Item = (StreamKey, i64)>) {
    let mut waiters = waiters();
    if waiters.by_stream.is_empty() {
        return;
    }
    for (key, last) in streams {
        let Some(list) = waiters.by_stream.get_mut(&key) else {
            continue;
        };
        let (done, waiting): (Vec<Waiter>, Vec<Waiter>) =
            list.drain(..).partition(|waiter| waiter.sequence <= last);
        *list = waiting;
        if list.is_empty() {
            waiters.by_stream.remove(&key);
        }
        for waiter in done {
            // The query may have given up meanwhile: nobody to tell then.
            let _ = waiter.release.send(());
        }
    }
}

/// Listens for other processes' committed projection batches and lets this process's waiters
/// re-check; reconnects after a lost connection. Runs until the returned task is aborted or
/// the runtime ends.
pub fn listen_for_projections(pool: PgPool) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = listen(&pool).await {
                tracing::debug!(%error, "projection notifications lost; waiters poll meanwhile");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn listen(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(PROJECTED_CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        if notification.payload() != PROCESS_ID.as_str() {
            ELSEWHERE.send_modify(|seen| *seen = seen.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> StreamKey {
        StreamKey {
            tenant_id: "t".into(),
            aggregate_type: "inventory".into(),
            aggregate_id: id.into(),
        }
    }

    #[test]
    fn given_waiters_when_their_stream_is_applied_far_enough_then_only_they_are_released() {
        let mut short = register(key("wakeup-a"), 2);
        let mut long = register(key("wakeup-a"), 5);
        let mut other = register(key("wakeup-b"), 1);
        applied([(key("wakeup-a"), 3)]);
        assert!(short.released.try_recv().is_ok());
        assert!(long.released.try_recv().is_err());
        assert!(other.released.try_recv().is_err());
        applied([(key("wakeup-a"), 5), (key("wakeup-b"), 1)]);
        assert!(long.released.try_recv().is_ok());
        assert!(other.released.try_recv().is_ok());
    }

    #[tokio::test]
    async fn given_a_listener_when_another_process_notifies_then_waiters_recheck_but_not_for_its_own()
     {
        let db = commerce_devstack::testkit::TestDatabase::create()
            .await
            .expect("test database");
        let listener = listen_for_projections(db.pool().clone());
        let mut registration = register(key("wakeup-d"), 1);
        let notify = |payload: String| {
            let pool = db.pool().clone();
            async move {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(PROJECTED_CHANNEL)
                    .bind(payload)
                    .execute(&pool)
                    .await
                    .expect("notify");
            }
        };
        // The listener connects in the background: notify until it has heard one.
        let heard = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                notify("another-process".into()).await;
                if tokio::time::timeout(
                    Duration::from_millis(200),
                    registration.elsewhere.changed(),
                )
                .await
                .is_ok()
                {
                    return;
                }
            }
        })
        .await;
        assert!(
            heard.is_ok(),
            "another process's notification reached the waiter"
        );
        notify(PROCESS_ID.clone()).await;
        let own =
            tokio::time::timeout(Duration::from_millis(500), registration.elsewhere.changed())
                .await;
        assert!(own.is_err(), "this process's own notification is skipped");
        listener.abort();
    }

    #[test]
    fn given_a_dropped_registration_then_the_registry_forgets_it() {
        let registration = register(key("wakeup-c"), 1);
        assert!(waiters().by_stream.contains_key(&key("wakeup-c")));
        drop(registration);
        assert!(!waiters().by_stream.contains_key(&key("wakeup-c")));
    }
}
