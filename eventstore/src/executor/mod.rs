//! Command execution: load (or reuse) the aggregate, handle the command, append its events
//! with optimistic concurrency, retry conflicts, and make keyed commands idempotent.
//!
//! Layout: `cache` (per-stream slots and the bounded LRU of folded aggregates), `load` (a
//! cold slot's snapshot, events and head hash in one statement), `append` (the one-statement
//! append and idempotency record), `coalesce` (the unkeyed appends of concurrent commands on
//! any streams written by one statement), `batch` (the slot's queue and the group commit of the
//! commands queued on a busy stream), `speculation` (when a cold slot guesses its stream is
//! new), `backoff` (retry delays), `metrics` (retry counters), `outcome` (context and
//! results), `error`.
//!
//! How a command runs (design decision 8, "hot aggregates"):
//! 1. A repeated idempotency key returns the stored outcome (or `IdempotencyMismatch`).
//! 2. The stream's slot is taken: commands on one stream run one after another in this
//!    process, so they never conflict with each other. A command finding the stream busy
//!    queues; the queued commands then run as one batch with one append (see `batch`), each
//!    deciding on the state the earlier ones left.
//! 3. The cached aggregate is used as is. A cold slot first guesses that its stream is new
//!    and runs the command on the empty aggregate (see `speculation`); when that decides
//!    nothing, or the append finds the stream not new after all, it loads the newest engine
//!    snapshot plus the events after it and runs the command again at once.
//! 4. The cache is trusted only through the database: appends insert at `version + 1..`,
//!    and the primary key rejects them if another process wrote first. Outcomes that append
//!    nothing (rejections, no-ops) first check the stream head with one indexed query, unless
//!    the attempt itself just loaded the stream.
//! 5. On a conflict the aggregate is reloaded (snapshot + tail; the handler already applied
//!    its events to the cached copy) and the command re-run after a jittered exponential
//!    backoff, up to `max_attempts` times, then `Conflict`. When a rejection was decided on a
//!    stale cache, only the missing events are applied before re-running.
//! 6. After commit, every `snapshot_every` events a snapshot is written (outside the
//!    command's transaction; cqrs-es' own snapshot modes are never used), less often as the
//!    stream grows (see [`snapshot_step`]). A background task writes it from the shared,
//!    immutable state, so neither the stream nor the callers wait for it.
//!
//! The slot also keeps the chain hash of the stream's head (read once on a cold load), so
//! the append can chain the new events' hashes without re-reading the stream.
//!
//! In-process readers (the process managers) get the cached aggregate through
//! [`CommandExecutor::current`] as a shared `Arc` snapshot: a read copies a pointer, never the
//! aggregate, and holds the slot no longer than that. The command path mutates the cached
//! aggregate with `Arc::make_mut`, which copies it only while a reader still holds an older
//! snapshot (that reader keeps seeing the state it read). Readers should therefore drop a
//! snapshot before they command the same stream, or the command pays for a copy.

mod append;
mod backoff;
mod batch;
mod cache;
mod coalesce;
mod error;
mod load;
mod metrics;
mod outcome;
mod speculation;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

use crate::error::{DecodeError, StoreError};
use crate::store::{LoadedAggregate, PgEventStore};
use crate::stream::StreamId;
use append::{Appended, NewEvent};
use batch::{Queued, StreamSlot, Turn};
use cache::{Cached, StreamSlots};
use speculation::{Guess, Speculation};

pub(crate) use coalesce::Coalescer;
pub use error::ExecuteError;
pub use outcome::{CommandContext, CommandOutcome, StoredEvent, request_hash};

/// Tuning of a [`CommandExecutor`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Tries per command before `Conflict` (at least 1).
    pub max_attempts: u32,
    /// First retry delay; doubles per retry.
    pub backoff_base: Duration,
    /// Upper bound of a retry delay.
    pub backoff_max: Duration,
    /// Write an engine snapshot each time a stream crosses a multiple of this many events
    /// (0 disables snapshots).
    pub snapshot_every: u64,
    /// About how many streams keep a cached aggregate.
    pub cache_capacity: usize,
    /// Tag of the aggregate's state shape and fold; bump it when either changes so older
    /// snapshots are ignored.
    pub state_version: String,
    /// Let a cold slot assume its stream is new, saving the load's round trip when it is
    /// (see the `speculation` module); throttled by itself when the guesses keep missing.
    pub speculate_new_streams: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff_base: Duration::from_millis(2),
            backoff_max: Duration::from_millis(100),
            snapshot_every: 100,
            // Enough for the hot streams of a process; every other stream is one round trip
            // to load, so a larger cache mostly adds memory (and keeps growing it longer).
            cache_capacity: 2_048,
            state_version: "1".to_owned(),
            speculate_new_streams: true,
        }
    }
}

/// Executes commands of one aggregate type against the PostgreSQL event store.
///
/// Cheap to clone; clones share the cache. Use one executor per aggregate type per process.
pub struct CommandExecutor<A: Aggregate> {
    inner: Arc<Inner<A>>,
}

struct Inner<A: Aggregate> {
    store: PgEventStore,
    services: A::Services,
    config: ExecutorConfig,
    slots: StreamSlots<StreamSlot<A>>,
    speculation: Speculation,
    /// One permit per snapshot being written in the background.
    snapshot_writes: Arc<Semaphore>,
}

/// Snapshots an executor writes at once. A stream that crosses a step while all are busy
/// skips that snapshot (its next step writes one): a cold load then folds more events, and
/// writes never pile up behind a slow database.
const SNAPSHOT_WRITES: u32 = 4;

impl<A: Aggregate> Clone for CommandExecutor<A> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<A: Aggregate> fmt::Debug for CommandExecutor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandExecutor")
            .field("aggregate_type", &A::TYPE)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What one attempt ended with.
enum Attempt<A: Aggregate> {
    Done(Box<CommandOutcome>),
    Rejected(A::Error),
    /// The decision was taken on a stale cache (the slot is already fixed): run again now.
    Stale,
    /// The append lost a race: back off, then run again.
    Conflict,
    /// A concurrent execution with the same idempotency key committed first.
    KeyTaken(String),
    /// The attempt assumed a new stream and that did not settle the command (the slot is
    /// cold again): run again now, loading the stream.
    Unproven,
}

impl<A> CommandExecutor<A>
where
    // `Clone` only so a command can mutate the cached aggregate while a reader still holds a
    // snapshot of it (`Arc::make_mut`).
    A: Aggregate + Clone + 'static,
    A::Command: Clone + Send + Sync,
    // Queued commands are answered from the stream's driver task.
    A::Error: Send,
{
    pub fn new(store: PgEventStore, services: A::Services) -> Self {
        Self::with_config(store, services, ExecutorConfig::default())
    }

    pub fn with_config(store: PgEventStore, services: A::Services, config: ExecutorConfig) -> Self {
        let slots = StreamSlots::new(config.cache_capacity);
        let speculation = Speculation::new(config.speculate_new_streams);
        Self {
            inner: Arc::new(Inner {
                store,
                services,
                config,
                slots,
                speculation,
                snapshot_writes: Arc::new(Semaphore::new(SNAPSHOT_WRITES as usize)),
            }),
        }
    }

    pub fn store(&self) -> &PgEventStore {
        &self.inner.store
    }

    pub fn services(&self) -> &A::Services {
        &self.inner.services
    }

    /// Runs `command` on `stream` (see the module doc for the exact steps).
    ///
    /// The command is cloned for each retry, so it must be side-effect free to build.
    pub async fn execute(
        &self,
        stream: StreamId,
        command: A::Command,
        context: CommandContext,
    ) -> Result<CommandOutcome, ExecuteError<A::Error>> {
        if stream.tenant() != context.metadata.tenant_id {
            return Err(ExecuteError::TenantMismatch {
                stream,
                metadata_tenant: context.metadata.tenant_id.clone(),
            });
        }
        if let Some(key) = &context.metadata.idempotency_key
            && let Some(outcome) = self.replay(&stream, &context, key).await?
        {
            return Ok(outcome);
        }
        let slot = self.inner.slots.slot(&stream);
        let waiting = {
            let mut queue = slot.queue();
            if queue.driven {
                let (reply, answer) = tokio::sync::oneshot::channel();
                queue.items.push(Queued {
                    command,
                    context,
                    reply,
                });
                Err(answer)
            } else {
                queue.driven = true;
                Ok((command, context))
            }
        };
        match waiting {
            Ok((command, context)) => {
                // Declared first, dropped last: the state is unlocked when the turn passes on.
                let _turn = Turn {
                    executor: self.clone(),
                    stream: stream.clone(),
                    slot: Arc::clone(&slot),
                };
                let mut cached = slot.state.lock().await;
                self.run_alone(&stream, &mut cached, command, &context)
                    .await
            }
            Err(answer) => answer.await.unwrap_or_else(|_| {
                Err(ExecuteError::Store(sqlx::Error::Protocol(
                    "the task running this command ended before it answered".to_owned(),
                )))
            }),
        }
    }

    /// Runs one command on the locked slot, retrying as the module doc describes.
    async fn run_alone(
        &self,
        stream: &StreamId,
        cached: &mut Option<Cached<A>>,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<CommandOutcome, ExecuteError<A::Error>> {
        let config = &self.inner.config;
        let max_attempts = config.max_attempts.max(1);
        let mut attempt = 1;
        let mut may_guess = true;
        loop {
            match self
                .attempt(stream, cached, command.clone(), context, may_guess)
                .await?
            {
                Attempt::Done(outcome) => return Ok(*outcome),
                Attempt::Rejected(error) => {
                    // A twin with the same key may have committed since this call looked for
                    // it (queued before it on this slot, or in another process): its outcome
                    // is the answer, not a refusal decided on the state the twin left.
                    if let Some(key) = &context.metadata.idempotency_key
                        && let Some(outcome) = self.replay(stream, context, key).await?
                    {
                        return Ok(outcome);
                    }
                    return Err(ExecuteError::Domain(error));
                }
                Attempt::KeyTaken(key) => {
                    return match self.replay(stream, context, &key).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(StoreError::Decode(DecodeError::OutOfRange {
                            what: "idempotency record",
                            value: format!("{key} vanished after a duplicate-key error"),
                        })
                        .into()),
                    };
                }
                // A guess is not a try: it never counts against `max_attempts`.
                Attempt::Unproven => may_guess = false,
                Attempt::Stale | Attempt::Conflict if attempt >= max_attempts => {
                    return Err(ExecuteError::Conflict {
                        stream: stream.clone(),
                        attempts: attempt,
                    });
                }
                Attempt::Stale => {
                    metrics::retried(A::TYPE, metrics::Retry::Stale);
                    attempt += 1;
                }
                Attempt::Conflict => {
                    self.back_off_after_conflict(attempt).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One load-handle-append round on the locked slot.
    ///
    /// The cached aggregate is taken out of the slot for the round and put back only while it
    /// matches the store: untouched by the handler, or with its events committed. The handler
    /// applies its events in place before they are appended, so if this future is dropped in
    /// between (a client gone, a reaction aborted when its leader stepped down), the slot is
    /// left empty and the next command reloads, instead of deciding on events never stored.
    async fn attempt(
        &self,
        stream: &StreamId,
        slot: &mut Option<Cached<A>>,
        command: A::Command,
        context: &CommandContext,
        may_guess: bool,
    ) -> Result<Attempt<A>, ExecuteError<A::Error>> {
        let store = &self.inner.store;
        let guessing = slot.is_none() && may_guess && self.inner.speculation.should_guess();
        let loaded_now = slot.is_none() && !guessing;
        let mut cached = match slot.take() {
            Some(cached) => cached,
            None if guessing => Cached {
                aggregate: Arc::default(),
                version: 0,
                head_hash: None,
            },
            None => self.load_cached(stream).await?,
        };
        let before = cached.version;
        let sink = EventSink::default();
        // Copies the aggregate only if a reader still holds the current snapshot.
        let handled = Arc::make_mut(&mut cached.aggregate)
            .handle(command, &self.inner.services, &sink)
            .await;
        let events = sink.collect().await;
        // The sink already applied `events` to the cached aggregate: until they commit, the
        // cached copy is ahead of the store and must not go back into the slot.
        let touched = !events.is_empty();
        if guessing && (handled.is_err() || !touched) {
            // A refusal or a no-op on an assumed-empty stream says nothing about the stored one.
            return Ok(Attempt::Unproven);
        }
        let head = (before, cached.head_hash);
        // Untouched, it still matches the store: back into the slot at once. Touched, it
        // stays out until its events commit.
        let mut pending = if touched {
            Some(cached)
        } else {
            *slot = Some(cached);
            None
        };
        if (handled.is_err() || !touched) && !loaded_now {
            // Nothing to append, so no primary key vouches for the cache: check the head.
            if store.stream_version(A::TYPE, stream).await? != before {
                self.catch_up(stream, slot, touched).await?;
                return Ok(Attempt::Stale);
            }
        }
        if handled.is_err() || !touched {
            if let Err(error) = handled {
                return Ok(Attempt::Rejected(error));
            }
            if context.metadata.idempotency_key.is_none() {
                return Ok(Attempt::Done(Box::new(CommandOutcome {
                    aggregate_type: A::TYPE.to_owned(),
                    aggregate_id: stream.clone(),
                    events: Vec::new(),
                    last_sequence: before,
                    last_position: None,
                    replayed: false,
                    metadata: context.metadata.clone(),
                })));
            }
        }

        let new_events = events
            .iter()
            .map(NewEvent::of::<A>)
            .collect::<Result<Vec<_>, DecodeError>>();
        let appended = match new_events {
            Ok(new_events) => {
                append::append(store, A::TYPE, stream, head, new_events, context).await
            }
            Err(error) => Err(error.into()),
        };
        match appended {
            Ok(Appended::Committed(outcome, head_hash)) => {
                if guessing {
                    self.inner.speculation.record(Guess::Hit);
                }
                store.signal_appended();
                if let Some(committed) = pending.take() {
                    *slot = Some(committed);
                }
                if let Some(cached) = slot.as_mut() {
                    cached.version = outcome.last_sequence;
                    cached.head_hash = head_hash;
                    self.maybe_snapshot(stream, cached, before);
                }
                Ok(Attempt::Done(outcome))
            }
            Ok(Appended::Conflict) if guessing => {
                // Not a race: the stream existed before this command. Load it and run again.
                *slot = None;
                self.inner.speculation.record(Guess::Missed);
                metrics::retried(A::TYPE, metrics::Retry::Cold);
                Ok(Attempt::Unproven)
            }
            Ok(Appended::Conflict) => {
                *slot = None;
                Ok(Attempt::Conflict)
            }
            Ok(Appended::KeyTaken) => {
                let key = context.metadata.idempotency_key.clone().unwrap_or_default();
                Ok(Attempt::KeyTaken(key))
            }
            Err(error) => {
                *slot = None;
                Err(error.into())
            }
        }
    }

    /// A cold slot's aggregate: the newest snapshot and the events after it.
    async fn load_cached(&self, stream: &StreamId) -> Result<Cached<A>, StoreError> {
        let (loaded, head_hash) =
            load::load_head::<A>(&self.inner.store, stream, &self.inner.config.state_version)
                .await?;
        Ok(Cached {
            aggregate: Arc::new(loaded.aggregate),
            version: loaded.version,
            head_hash,
        })
    }

    /// Brings a stale slot up to date: only the missing events when the cached aggregate is
    /// untouched, a reload when the handler already applied uncommitted events to it.
    async fn catch_up(
        &self,
        stream: &StreamId,
        slot: &mut Option<Cached<A>>,
        touched: bool,
    ) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let current = slot.take().filter(|_| !touched);
        let (loaded, head_hash) = match current {
            Some(cached) => {
                let mut loaded = LoadedAggregate {
                    aggregate: Arc::unwrap_or_clone(cached.aggregate),
                    version: cached.version,
                };
                store.fold_after(stream, &mut loaded, None).await?;
                let head_hash = store.chain_hash_at(A::TYPE, stream, loaded.version).await?;
                (loaded, head_hash)
            }
            None => load::load_head::<A>(store, stream, &self.inner.config.state_version).await?,
        };
        *slot = Some(Cached {
            aggregate: Arc::new(loaded.aggregate),
            version: loaded.version,
            head_hash,
        });
        Ok(())
    }

    /// Counts a conflict and waits the jittered backoff of `attempt` before the next one.
    async fn back_off_after_conflict(&self, attempt: u32) {
        metrics::retried(A::TYPE, metrics::Retry::Conflict);
        let config = &self.inner.config;
        tokio::time::sleep(backoff::delay(
            attempt,
            config.backoff_base,
            config.backoff_max,
        ))
        .await;
    }

    /// Starts writing a snapshot when the command crossed a multiple of [`snapshot_step`].
    ///
    /// The write runs in its own task from the cached `Arc` (later commands copy on write, so
    /// it stays the state at `cached.version`): a large aggregate's snapshot (a flash sale's
    /// campaign is tens of megabytes of JSON) would otherwise hold the stream, and the callers
    /// whose events are already committed, for as long as it takes. A failure only costs a
    /// slower cold load later, so it is logged, not returned.
    fn maybe_snapshot(&self, stream: &StreamId, cached: &Cached<A>, before: u64) {
        let step = snapshot_step(self.inner.config.snapshot_every, before);
        if step == 0 || before / step == cached.version / step {
            return;
        }
        let Ok(permit) = Arc::clone(&self.inner.snapshot_writes).try_acquire_owned() else {
            tracing::debug!(%stream, "snapshot skipped: earlier snapshots are still being written");
            return;
        };
        let inner = Arc::clone(&self.inner);
        let stream = stream.clone();
        let aggregate = Arc::clone(&cached.aggregate);
        let version = cached.version;
        tokio::spawn(async move {
            let written = inner
                .store
                .write_snapshot(&stream, aggregate, version, &inner.config.state_version)
                .await;
            if let Err(error) = written {
                tracing::warn!(%stream, %error, "could not write an aggregate snapshot");
            }
            drop(permit);
        });
    }

    /// Waits until the snapshots started so far are written (or failed), for callers that
    /// read them back.
    pub async fn snapshots_written(&self) {
        // Every permit free means no write in flight; the semaphore is never closed.
        if let Ok(all) = self
            .inner
            .snapshot_writes
            .acquire_many(SNAPSHOT_WRITES)
            .await
        {
            drop(all);
        }
    }

    /// The stored outcome for a repeated key, or `IdempotencyMismatch`.
    async fn replay(
        &self,
        stream: &StreamId,
        context: &CommandContext,
        key: &str,
    ) -> Result<Option<CommandOutcome>, ExecuteError<A::Error>> {
        let prior =
            append::prior_execution(self.inner.store.pool(), &context.metadata.tenant_id, key)
                .await?;
        let Some(prior) = prior else {
            return Ok(None);
        };
        let same_request = prior.request_hash == context.request_hash
            && prior.aggregate_type == A::TYPE
            && prior.aggregate_id == stream.aggregate_id();
        if !same_request {
            return Err(ExecuteError::IdempotencyMismatch {
                key: key.to_owned(),
            });
        }
        let mut outcome: CommandOutcome =
            serde_json::from_value(prior.outcome).map_err(|source| {
                StoreError::from(DecodeError::json("stored command outcome", source))
            })?;
        outcome.replayed = true;
        Ok(Some(outcome))
    }

    /// The cached state and version of `stream`, if this process holds one (serialised, for
    /// diagnostics and tests). Waits for a command running on the stream to finish.
    pub async fn cached_state(&self, stream: &StreamId) -> Option<(serde_json::Value, u64)> {
        let (aggregate, version) = {
            let slot = self.inner.slots.slot(stream);
            let cached = slot.state.lock().await;
            let cached = cached.as_ref()?;
            (Arc::clone(&cached.aggregate), cached.version)
        };
        // Serialised outside the slot, so commands on the stream do not wait for it.
        serde_json::to_value(aggregate.as_ref())
            .ok()
            .map(|state| (state, version))
    }

    /// The current state of `stream` (the default state and version 0 when it has no
    /// events), for readers in this process that need the state the commands see (the
    /// process managers): the cached aggregate when one indexed look at the stream's head
    /// (taken before the call waits for the stream) finds nothing newer, else only the
    /// missing events (or a cold load), which then stay cached. Much cheaper than
    /// [`PgEventStore::load_latest`] on a long stream, which decodes a whole snapshot. Waits
    /// for a command running on the stream to finish.
    ///
    /// The state is a shared, immutable snapshot: a warm read costs a pointer copy whatever
    /// the aggregate's size, and later commands never change what the caller holds. A
    /// command on the stream copies the aggregate once while any such snapshot is alive, so
    /// drop it (keep what you need from it) before commanding the same stream.
    pub async fn current(&self, stream: &StreamId) -> Result<LoadedAggregate<Arc<A>>, StoreError> {
        let store = &self.inner.store;
        // Read before taking the slot, so the commands queued on a hot stream do not wait
        // for this round trip: a cache at least this far along is current for this call.
        let head = store.stream_version(A::TYPE, stream).await?;
        let slot = self.inner.slots.slot(stream);
        let mut cached = slot.state.lock().await;
        match cached.as_ref() {
            Some(current) if current.version >= head => {}
            Some(_) => self.catch_up(stream, &mut cached, false).await?,
            None => *cached = Some(self.load_cached(stream).await?),
        }
        Ok(cached
            .as_ref()
            .map(|current| LoadedAggregate {
                aggregate: Arc::clone(&current.aggregate),
                version: current.version,
            })
            .unwrap_or_default())
    }

    /// Forgets the cached aggregate of `stream` (the next command reloads it).
    pub async fn evict(&self, stream: &StreamId) {
        *self.inner.slots.slot(stream).state.lock().await = None;
    }
}

/// The longest gap between snapshots, in multiples of `snapshot_every`: a cold load never
/// folds more than `1024 * snapshot_every` events (102,400 by default, reached only by
/// streams of 102,400 events and more).
///
/// A lower cap brings back the cost it is meant to avoid: at 64 (6,400 events), a flash
/// sale's campaign, whose snapshot grows with its participants, wrote a 30 MB snapshot every
/// 6,400 events from 51,200 events on, and the joins slowed as it grew.
const SNAPSHOT_STEP_MAX_FACTOR: u64 = 1024;

/// A stream's snapshot step grows until it is this fraction of the stream (1/`n`).
///
/// Between `v` and `2v` events a stream then writes `n` snapshots of up to `2v` events'
/// worth of state: each event pays for about `1.5 * n` times its own share of the state,
/// and a cold load folds at most `v / n` events after the snapshot. At 8, a flash sale's
/// campaign and its inventory (11 MB and 9 MB of JSON at 38,000 joins) were rewritten 34
/// times in 4 s of joins, 400 ms of PostgreSQL's time, while the joins kept both cores
/// busy. At 2 they write a quarter of the bytes, and a cold load of such a stream folds at
/// most a third of it, once per process.
const SNAPSHOT_STEP_SHARE: u64 = 2;

/// Events between snapshots of a stream at `version`: `every` until the stream is
/// [`SNAPSHOT_STEP_SHARE`] times that long, then doubling each time the stream doubles (at
/// most [`SNAPSHOT_STEP_MAX_FACTOR`] times `every`); 0 when snapshots are off.
///
/// Some states grow with their stream (a campaign's participants, a flash sale's
/// reservations), so a fixed step would make each event pay for a snapshot as large as the
/// whole stream: with the step growing with the stream, each event pays a bounded share.
fn snapshot_step(every: u64, version: u64) -> u64 {
    let mut step = every;
    while step > 0
        && step < every.saturating_mul(SNAPSHOT_STEP_MAX_FACTOR)
        && version / SNAPSHOT_STEP_SHARE >= step
    {
        step *= 2;
    }
    step
}

#[cfg(test)]
mod tests {
    use super::snapshot_step;

    #[test]
    fn given_a_short_stream_when_stepping_then_snapshots_come_every_configured_events() {
        assert_eq!(snapshot_step(100, 0), 100);
        assert_eq!(snapshot_step(100, 199), 100);
    }

    #[test]
    fn given_a_growing_stream_when_stepping_then_the_step_doubles_with_it_up_to_the_cap() {
        assert_eq!(snapshot_step(100, 200), 200);
        assert_eq!(snapshot_step(100, 400), 400);
        assert_eq!(snapshot_step(100, 10_000), 6_400);
        assert_eq!(snapshot_step(100, 190_000), 102_400);
        assert_eq!(snapshot_step(100, 10_000_000), 102_400);
    }

    #[test]
    fn given_snapshots_off_when_stepping_then_the_step_is_zero() {
        assert_eq!(snapshot_step(0, 1_000_000), 0);
    }
}
