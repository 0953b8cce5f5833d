//! Pausing an idle worker's fetches.
//!
//! After [`PAUSE_AFTER`] without a record the worker pauses every partition assigned to it, so
//! its consumer stops fetching. It resumes on the event store's append notification (`NOTIFY
//! commerce_events`, which every engine process sends after its appends), and in any case after
//! [`PAUSED_AT_MOST`], for records that come without a new append (a relay working off a
//! backlog after a broker outage, another producer). A new assignment starts unpaused; the worker
//! pauses it again once idle. Without a listening connection it never pauses.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::context::WorkerContext;

/// How long a worker fetches without receiving a record before it pauses.
const PAUSE_AFTER: Duration = Duration::from_secs(1);
/// The longest pause without an append notification.
const PAUSED_AT_MOST: Duration = Duration::from_secs(5);
/// The event store's append notifications (its `EVENTS_CHANNEL`).
const APPENDS_CHANNEL: &str = "commerce_events";
/// After a failed wait for a notification: how long before the next try (and a resume).
const RETRY_LISTEN: Duration = Duration::from_secs(1);

pub(super) struct IdlePause {
    listener: Option<PgListener>,
    last_record: Instant,
    paused_at: Option<Instant>,
}

impl IdlePause {
    pub(super) async fn new(pool: &PgPool) -> Self {
        let listener = match listen(pool).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "no append notifications: the worker keeps fetching while idle");
                None
            }
        };
        Self {
            listener,
            last_record: Instant::now(),
            paused_at: None,
        }
    }

    /// Completes when the event store announces an append (or, after a lost connection, a
    /// moment later: the caller resumes either way). Never completes without a listener.
    pub(super) async fn appended(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            return std::future::pending().await;
        };
        if let Err(error) = listener.recv().await {
            tracing::debug!(%error, "append notifications interrupted; resuming meanwhile");
            tokio::time::sleep(RETRY_LISTEN).await;
        }
    }

    /// Records arrived: the worker is busy (and its partitions are not paused).
    pub(super) fn records_seen(&mut self) {
        self.last_record = Instant::now();
        self.paused_at = None;
    }

    /// Pauses an idle worker, or resumes one paused for too long. Call now and then.
    pub(super) fn check(&mut self, consumer: &StreamConsumer<WorkerContext>) {
        match self.paused_at {
            None if self.listener.is_some() && self.last_record.elapsed() >= PAUSE_AFTER => {
                if let Ok(assignment) = consumer.assignment()
                    && assignment.count() > 0
                {
                    match consumer.pause(&assignment) {
                        Ok(()) => {
                            tracing::debug!("idle: partitions paused");
                            self.paused_at = Some(Instant::now());
                        }
                        Err(error) => tracing::warn!(%error, "idle partitions not paused"),
                    }
                }
            }
            Some(at) if at.elapsed() >= PAUSED_AT_MOST => self.resume(consumer),
            _ => {}
        }
    }

    /// Fetches again (records are expected soon: the idle clock restarts).
    pub(super) fn resume(&mut self, consumer: &StreamConsumer<WorkerContext>) {
        self.last_record = Instant::now();
        if self.paused_at.take().is_some()
            && let Ok(assignment) = consumer.assignment()
            && let Err(error) = consumer.resume(&assignment)
        {
            tracing::warn!(%error, "paused partitions not resumed");
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(APPENDS_CHANNEL).await?;
    Ok(listener)
}
