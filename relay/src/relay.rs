//! The run loop: take the lock, then read, publish, acknowledge, persist, repeat.
//!
//! One batch at a time: read up to `batch_size` final events after the cursor, publish each to
//! its topics, wait for every acknowledgement, then persist the cursor at the batch's last
//! event. After a failed batch the relay backs off (capped exponential), replaces the
//! producer and resumes from the persisted cursor (which did not move, so nothing is skipped;
//! messages acknowledged before the failure are published again: duplicates are counted).
//! Memory stays bounded by one batch however long the broker is away. When the log is
//! drained the loop sleeps until a wake-up ([`LogWakeups`]: an append committed by this
//! process, or a `NOTIFY commerce_events` from another) or the polling interval, whichever
//! comes first. After persisting a batch's cursor the relay announces it on
//! [`RELAYED_CHANNEL`](commerce_contracts::topics::RELAYED_CHANNEL), at most every
//! [`ANNOUNCE_EVERY`]: projection workers that stopped fetching while nothing came resume on it.
//!
//! The loop is generic over its [`LogSource`]: PostgreSQL's global log by default
//! ([`Relay::new`]), or another event store's global order ([`Relay::on_backend`]).

use std::future::Future;
use std::time::{Duration, Instant};

use commerce_eventstore::{EventBackend, GlobalLog, PgEventStore};
use sqlx::PgPool;

use crate::backoff::Backoff;
use crate::config::RelayConfig;
use crate::error::RelayError;
use crate::leader::Leadership;
use crate::message::{OutgoingMessage, messages_for};
use crate::producer::Publisher;
use crate::shutdown::Shutdown;
use crate::source::{BackendLogSource, LogSource, PgLogSource};
use crate::status::{RelayRole, RelayStatus};
use crate::topics::{TopicAdmin, TopicNames};

/// How often an idle active relay checks that the broker still answers.
const IDLE_PROBE_EVERY: Duration = Duration::from_secs(5);
/// The least time between two announcements of published records. A worker resumes for
/// longer than this (`commerce_projections`' quiet spell), so one announcement covers every
/// batch published until the next.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);
/// How long a producer being replaced may still hand over queued messages.
const RETIRE_FLUSH: Duration = Duration::from_millis(500);

/// The store → Kafka relay. Build it with [`Relay::new`] (or [`Relay::on_backend`]), keep
/// [`Relay::status`] for health and metrics, then [`Relay::run`] it until shutdown.
///
/// Whatever the source, `pool` holds the relay's cursor and its leadership lock.
#[derive(Debug)]
pub struct Relay<S = PgLogSource> {
    config: RelayConfig,
    pool: PgPool,
    source: S,
    status: RelayStatus,
}

/// Why an active period ended.
enum Ended {
    Shutdown,
    /// The lock connection failed or the relay could not set itself up: become a standby.
    Lost(RelayError),
}

/// What a batch attempt loop decided.
enum Published<C> {
    Done,
    /// The producer was recreated: re-read from the persisted cursor.
    Resume(C),
    Shutdown,
}

impl Relay {
    /// A relay reading the global log of `pool`'s event store (without upcasters; see
    /// [`Relay::with_global_log`]).
    pub fn new(config: RelayConfig, pool: PgPool) -> Self {
        let log = PgEventStore::new(pool.clone()).global_log();
        Self {
            config,
            pool,
            source: PgLogSource::new(log),
            status: RelayStatus::default(),
        }
    }

    /// Reads from `log` instead (an event store configured with the engine's upcasters).
    pub fn with_global_log(mut self, log: GlobalLog) -> Self {
        self.source = PgLogSource::new(log);
        self
    }
}

impl<B> Relay<BackendLogSource<B>>
where
    BackendLogSource<B>: LogSource,
    B: EventBackend,
{
    /// A relay publishing the global order of `backend` (KurrentDB's `$all`); its cursor
    /// (the backend cursor's text form) and its lock stay in `pool`'s PostgreSQL.
    pub fn on_backend(config: RelayConfig, pool: PgPool, backend: B) -> Self {
        Self {
            config,
            pool,
            source: BackendLogSource::new(backend),
            status: RelayStatus::default(),
        }
    }
}

impl<S: LogSource> Relay<S> {
    /// A handle on the relay's live state.
    pub fn status(&self) -> RelayStatus {
        self.status.clone()
    }

    /// Runs the relay until `shutdown` completes: migrates its table, waits for the lock as a
    /// standby if another instance holds it, then publishes. Failures of the broker, the
    /// database or the lock are retried inside; only a failed migration ends it with an error.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RelayError> {
        crate::migrate(&self.pool).await?;
        let mut shutdown = Shutdown::new(shutdown);
        let measurer = tokio::spawn(measure(
            self.source.clone(),
            self.pool.clone(),
            self.config.name.clone(),
            self.status.clone(),
            self.config.measure_interval,
        ));
        let mut backoff = Backoff::new(self.config.backoff);
        while let Some(leader) = shutdown.guard(self.acquire()).await {
            self.status.set_role(RelayRole::Active);
            tracing::info!(relay = %self.config.name, source = self.source.name(), "relay active");
            match self.lead(leader, &mut shutdown).await {
                Ended::Shutdown => break,
                Ended::Lost(error) => {
                    tracing::warn!(relay = %self.config.name, %error, "relay stepped down");
                    self.status.error(&error.to_string());
                    self.status.set_role(RelayRole::Standby);
                    if !shutdown.sleep(backoff.next_delay()).await {
                        break;
                    }
                }
            }
        }
        measurer.abort();
        self.status.set_role(RelayRole::Stopped);
        Ok(())
    }

    /// Waits until this instance holds the lock.
    async fn acquire(&self) -> Leadership {
        loop {
            match Leadership::try_acquire(&self.pool, &self.config.name).await {
                Ok(Some(leader)) => return leader,
                Ok(None) => self.status.set_role(RelayRole::Standby),
                Err(error) => {
                    tracing::warn!(%error, "relay lock attempt failed");
                    self.status.error(&error.to_string());
                }
            }
            tokio::time::sleep(self.config.lock_retry).await;
        }
    }

    /// Publishes while holding the lock.
    async fn lead(&self, mut leader: Leadership, shutdown: &mut Shutdown) -> Ended {
        let ended = self.publish_loop(&mut leader, shutdown).await;
        leader.release().await;
        match ended {
            Ok(()) => Ended::Shutdown,
            Err(error) => Ended::Lost(error),
        }
    }

    /// `Ok` on shutdown; `Err` when leadership must be given up.
    async fn publish_loop(
        &self,
        leader: &mut Leadership,
        shutdown: &mut Shutdown,
    ) -> Result<(), RelayError> {
        let names = TopicNames::new(&self.config.topics);
        let mut admin = TopicAdmin::new(&self.config.brokers, &self.config.topics)?;
        if self.config.topics.create_catalog_topics {
            let catalog = names.catalog();
            match shutdown
                .guard(admin.ensure(catalog.iter().map(String::as_str)))
                .await
            {
                None => return Ok(()),
                // Not fatal: missing topics are created again before the batch that needs them.
                Some(Err(error)) => tracing::warn!(%error, "creating the catalog topics"),
                Some(Ok(())) => tracing::info!(topics = catalog.len(), "catalog topics ready"),
            }
        }
        let mut publisher = Publisher::new(&self.config)?;
        let mut cursor = leader.cursor::<S>().await?;
        self.status.set_cursor::<S>(cursor);
        let mut idle = Idle::new(self.source.wakeups(cursor).await);
        let mut backoff = Backoff::new(self.config.backoff);
        let mut announced: Option<Instant> = None;
        loop {
            let batch = match shutdown
                .guard(self.source.read_after(cursor, self.config.batch_size))
                .await
            {
                None => return Ok(()),
                Some(Ok(batch)) => batch,
                Some(Err(error)) => {
                    tracing::warn!(%error, source = self.source.name(), "reading the global log");
                    self.status.error(&error.to_string());
                    if !shutdown.sleep(backoff.next_delay()).await {
                        return Ok(());
                    }
                    leader.check().await?;
                    continue;
                }
            };
            let Some(last) = batch.last().map(S::cursor_after) else {
                if !self
                    .wait_for_events(&mut idle, cursor, &publisher, shutdown)
                    .await
                {
                    return Ok(());
                }
                leader.check().await?;
                continue;
            };
            let messages = encode::<S>(&batch, &names)?;
            match self
                .publish_batch(
                    batch.len(),
                    &messages,
                    &mut publisher,
                    &mut admin,
                    leader,
                    (&mut backoff, &mut *shutdown),
                )
                .await?
            {
                Published::Shutdown => return Ok(()),
                Published::Resume(persisted) => {
                    cursor = persisted;
                    continue;
                }
                Published::Done => {}
            }
            leader.save::<S>(last).await?;
            if announced.is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY) {
                // Best effort: a worker that misses it still looks now and then.
                if let Err(error) = leader.announce().await {
                    tracing::warn!(%error, "announcing published records");
                }
                announced = Some(Instant::now());
            }
            cursor = last;
            backoff.reset();
            self.status.set_cursor::<S>(cursor);
            self.status.published(batch.len());
        }
    }

    /// Publishes one batch. On failure, after a backoff, replaces the producer and resumes
    /// from the persisted cursor: a producer that failed may keep idempotence state (sequence
    /// numbers of timed-out messages) the broker no longer agrees with (Tansu then rejects
    /// every later batch), and a fresh producer id is cheap and always consistent.
    async fn publish_batch(
        &self,
        batch_events: usize,
        messages: &[OutgoingMessage],
        publisher: &mut Publisher,
        admin: &mut TopicAdmin,
        leader: &mut Leadership,
        (backoff, shutdown): (&mut Backoff, &mut Shutdown),
    ) -> Result<Published<S::Cursor>, RelayError> {
        let attempt = async {
            admin
                .ensure(messages.iter().map(|message| message.topic.as_str()))
                .await?;
            publisher
                .route(messages.iter().map(|message| message.topic.as_str()))
                .await?;
            publisher.publish(messages).await?;
            Ok::<(), RelayError>(())
        };
        let error = match shutdown.guard(attempt).await {
            None => return Ok(Published::Shutdown),
            Some(Ok(())) => return Ok(Published::Done),
            Some(Err(error)) => error,
        };
        let fatal = matches!(&error, RelayError::Publish(failure) if failure.fatal);
        tracing::warn!(%error, fatal, messages = messages.len(), "publishing a batch failed");
        self.status.publish_failed(&error.to_string());
        if !shutdown.sleep(backoff.next_delay()).await {
            return Ok(Published::Shutdown);
        }
        // Still the leader? A standby may have taken over while the broker was away.
        leader.check().await?;
        publisher.flush(RETIRE_FLUSH);
        *publisher = Publisher::new(&self.config)?;
        self.status.producer_recreated();
        // The batch goes out again: messages acknowledged before the failure duplicate.
        self.status.batch_retried(batch_events);
        Ok(Published::Resume(leader.cursor::<S>().await?))
    }

    /// Waits for a notification, the polling interval or shutdown (`false`); probes the
    /// broker now and then so readiness reflects it while nothing is published.
    async fn wait_for_events(
        &self,
        idle: &mut Idle<S::Wakeups>,
        cursor: S::Cursor,
        publisher: &Publisher,
        shutdown: &mut Shutdown,
    ) -> bool {
        if idle.last_probe.elapsed() >= IDLE_PROBE_EVERY {
            idle.last_probe = Instant::now();
            let probe = publisher.clone();
            if let Ok(reachable) = tokio::task::spawn_blocking(move || probe.probe()).await {
                self.status.set_broker_reachable(reachable);
            }
        }
        if idle.wakeups.is_none() {
            idle.wakeups = self.source.wakeups(cursor).await;
        }
        let poll = self.config.poll_interval;
        let wake = async {
            let lost = match idle.wakeups.as_mut() {
                Some(wakeups) => tokio::select! {
                    woke = S::wait(wakeups, cursor) => !woke,
                    () = tokio::time::sleep(poll) => false,
                },
                None => {
                    tokio::time::sleep(poll).await;
                    false
                }
            };
            if lost {
                // Resubscribe on the next idle round; polling covers the gap.
                idle.wakeups = None;
            }
        };
        shutdown.guard(wake).await.is_some()
    }
}

/// Idle-wait state: the notification subscription and the last broker probe.
struct Idle<W> {
    wakeups: Option<W>,
    last_probe: Instant,
}

impl<W> Idle<W> {
    fn new(wakeups: Option<W>) -> Self {
        Self {
            wakeups,
            last_probe: Instant::now(),
        }
    }
}

fn encode<S: LogSource>(
    batch: &[S::Event],
    names: &TopicNames,
) -> Result<Vec<OutgoingMessage>, RelayError> {
    let mut messages = Vec::with_capacity(batch.len().saturating_mul(2));
    for event in batch {
        messages.extend(messages_for(&S::relayed(event), names)?);
    }
    Ok(messages)
}

/// Measures lag and throughput every `interval` for as long as the relay runs.
async fn measure<S: LogSource>(
    source: S,
    pool: PgPool,
    name: String,
    status: RelayStatus,
    interval: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = (Instant::now(), status.snapshot().events_published);
    loop {
        ticker.tick().await;
        match source.lag(&pool, &name).await {
            Ok((events, seconds)) => status.set_lag(events, seconds),
            Err(error) => tracing::debug!(%error, "measuring relay lag"),
        }
        let now = (Instant::now(), status.snapshot().events_published);
        let elapsed_ms = now.0.duration_since(previous.0).as_millis().max(1);
        let published = u128::from(now.1.saturating_sub(previous.1));
        let rate = published.saturating_mul(1000) / elapsed_ms;
        status.set_rate(u64::try_from(rate).unwrap_or(u64::MAX));
        previous = now;
    }
}
