//! Group commit on a hot stream: the commands queued behind the one running are decided
//! together and appended in one statement.
//!
//! Commands on one stream run one after another in this process (the slot's lock), so a
//! stream takes at most one append round trip per command: a few hundred commands a second
//! whatever the machine. While a command runs, the next ones queue in the slot, and whoever
//! finishes hands the queue to a driver task, which takes everything queued and:
//! 1. runs each command's handler on the cached aggregate in queue order, so each decides on
//!    the state the earlier ones left (exactly as if they had run one by one);
//! 2. appends all their events with one statement at `version + 1..`, each event with its own
//!    command's metadata; the primary key vouches for every decision of the batch, the
//!    refusals and no-ops included (they were decided on the state the append proved current);
//! 3. answers each command with its own events, or its refusal.
//!
//! A conflict re-runs the whole batch after a reload, like a single command's. A handler that
//! appended events and then failed leaves the cached aggregate unusable for the rest of the
//! batch, so the batch then runs command by command. Keyed commands (their idempotency record
//! is written with their events) run by themselves, in their place in the queue.
//!
//! The driver is a task of its own so that no client's disconnect (which drops that client's
//! request future) can abandon the commands of others half-done.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use tokio::sync::oneshot;

use super::append::{self, NewEvent};
use super::cache::Cached;
use super::{CommandExecutor, metrics};
use crate::error::{DecodeError, StoreError};
use crate::executor::error::ExecuteError;
use crate::executor::outcome::{CommandContext, CommandOutcome};
use crate::stream::StreamId;

/// What a queued command gets back.
pub(super) type Answer<A> = Result<CommandOutcome, ExecuteError<<A as Aggregate>::Error>>;

/// One command waiting for its stream.
pub(super) struct Queued<A: Aggregate> {
    pub command: A::Command,
    pub context: CommandContext,
    pub reply: oneshot::Sender<Answer<A>>,
}

/// The commands queued on a stream, and whether someone is running them.
pub(super) struct Queue<A: Aggregate> {
    pub items: Vec<Queued<A>>,
    /// A command or a driver holds the stream's turn: new commands queue behind it.
    pub driven: bool,
}

/// One stream's slot: the cached aggregate (`None`: load before use) and its queue.
pub(crate) struct StreamSlot<A: Aggregate> {
    pub state: tokio::sync::Mutex<Option<Cached<A>>>,
    queue: Mutex<Queue<A>>,
}

impl<A: Aggregate> Default for StreamSlot<A> {
    fn default() -> Self {
        Self {
            state: tokio::sync::Mutex::new(None),
            queue: Mutex::new(Queue {
                items: Vec::new(),
                driven: false,
            }),
        }
    }
}

impl<A: Aggregate> StreamSlot<A> {
    /// A poisoned queue only means a panic elsewhere while the queue was consistent.
    pub fn queue(&self) -> MutexGuard<'_, Queue<A>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The stream's turn, held by the command running inline or by a driver: when it ends (or
/// its holder is dropped or panics), the queued commands get a driver, or the turn is free.
pub(super) struct Turn<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone + Send + Sync,
    A::Error: Send,
{
    pub executor: CommandExecutor<A>,
    pub stream: StreamId,
    pub slot: Arc<StreamSlot<A>>,
}

impl<A> Drop for Turn<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone + Send + Sync,
    A::Error: Send,
{
    fn drop(&mut self) {
        let mut queue = self.slot.queue();
        if queue.items.is_empty() {
            queue.driven = false;
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // The runtime is gone: dropping the queued replies tells their callers.
            queue.items.clear();
            queue.driven = false;
            return;
        };
        drop(queue);
        let turn = Turn {
            executor: self.executor.clone(),
            stream: self.stream.clone(),
            slot: Arc::clone(&self.slot),
        };
        runtime.spawn(turn.drive());
    }
}

/// Commands decided and appended together at most: a conflict re-runs the whole batch, and
/// one statement of this many commands still commits in milliseconds.
const MAX_BATCH: usize = 1_000;

/// What one try of a batch ended with.
enum BatchAttempt<A: Aggregate> {
    Done(Vec<Answer<A>>),
    /// Decided on a cache another process had overtaken (the slot is fixed): run again now.
    Stale,
    /// The append lost a race: back off, then run again.
    Conflict,
    /// A handler failed after appending events to the cached aggregate, or one command's
    /// events could not be stored: run one by one.
    OneByOne,
}

/// What one command of a batch decided.
enum Decision<E> {
    Refused(E),
    /// Appends this many events (0: a no-op).
    Appends(usize),
}

impl<A> Turn<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone + Send + Sync,
    A::Error: Send,
{
    /// Runs the queue until it is empty, then gives the turn back (on drop).
    async fn drive(self) {
        loop {
            let mut cached = self.slot.state.lock().await;
            let items: Vec<_> = {
                let mut queue = self.slot.queue();
                let taken = queue.items.len().min(MAX_BATCH);
                queue.items.drain(..taken).collect()
            };
            if items.is_empty() {
                return;
            }
            self.executor
                .run_queued(&self.stream, &mut cached, items)
                .await;
        }
    }
}

impl<A> CommandExecutor<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone + Send + Sync,
    A::Error: Send,
{
    /// Runs queued commands in order: keyed ones alone, runs of unkeyed ones as batches.
    async fn run_queued(
        &self,
        stream: &StreamId,
        slot: &mut Option<Cached<A>>,
        items: Vec<Queued<A>>,
    ) {
        let mut batch: Vec<Queued<A>> = Vec::with_capacity(items.len());
        for item in items {
            if item.context.metadata.idempotency_key.is_none() {
                batch.push(item);
                continue;
            }
            self.run_batch(stream, slot, std::mem::take(&mut batch))
                .await;
            self.run_each_alone(stream, slot, vec![item]).await;
        }
        self.run_batch(stream, slot, batch).await;
    }

    /// Runs `items` one at a time, in order, and answers each.
    async fn run_each_alone(
        &self,
        stream: &StreamId,
        slot: &mut Option<Cached<A>>,
        items: Vec<Queued<A>>,
    ) {
        for item in items {
            let answer = self
                .run_alone(stream, slot, item.command, &item.context)
                .await;
            // A caller that went away no longer wants the answer.
            let _unwanted = item.reply.send(answer);
        }
    }

    async fn run_batch(
        &self,
        stream: &StreamId,
        slot: &mut Option<Cached<A>>,
        batch: Vec<Queued<A>>,
    ) {
        if batch.len() < 2 {
            return self.run_each_alone(stream, slot, batch).await;
        }
        let max_attempts = self.inner.config.max_attempts.max(1);
        let mut attempt = 1;
        let answers = loop {
            match self.attempt_batch(stream, slot, &batch).await {
                Ok(BatchAttempt::Done(answers)) => break answers,
                Ok(BatchAttempt::OneByOne) => {
                    return self.run_each_alone(stream, slot, batch).await;
                }
                Ok(BatchAttempt::Stale | BatchAttempt::Conflict) if attempt >= max_attempts => {
                    break batch
                        .iter()
                        .map(|_| {
                            Err(ExecuteError::Conflict {
                                stream: stream.clone(),
                                attempts: attempt,
                            })
                        })
                        .collect();
                }
                Ok(BatchAttempt::Stale) => {
                    metrics::retried(A::TYPE, metrics::Retry::Stale);
                    attempt += 1;
                }
                Ok(BatchAttempt::Conflict) => {
                    self.back_off_after_conflict(attempt).await;
                    attempt += 1;
                }
                Err(error) => {
                    tracing::warn!(%stream, %error, commands = batch.len(), "a batch of commands failed");
                    // The database error is not `Clone`: each command gets its text.
                    let message = error.to_string();
                    break batch
                        .iter()
                        .map(|_| Err(ExecuteError::Store(sqlx::Error::Protocol(message.clone()))))
                        .collect();
                }
            }
        };
        for (item, answer) in batch.into_iter().zip(answers) {
            let _unwanted = item.reply.send(answer);
        }
    }

    /// Decides every command of `batch` on the cached aggregate, then appends all their
    /// events at once.
    ///
    /// The cached aggregate is out of the slot while the handlers apply their events to it,
    /// and goes back only while it matches the store, as in a single command's attempt: a
    /// handler that panics halfway leaves the slot empty, and the next command reloads instead
    /// of deciding on events never stored.
    async fn attempt_batch(
        &self,
        stream: &StreamId,
        slot: &mut Option<Cached<A>>,
        batch: &[Queued<A>],
    ) -> Result<BatchAttempt<A>, StoreError> {
        let store = &self.inner.store;
        let loaded_now = slot.is_none();
        let mut cached = match slot.take() {
            Some(cached) => cached,
            None => self.load_cached(stream).await?,
        };
        let before = cached.version;
        let mut decisions = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut metadata = Vec::new();
        for item in batch {
            let sink = EventSink::default();
            let handled = Arc::make_mut(&mut cached.aggregate)
                .handle(item.command.clone(), &self.inner.services, &sink)
                .await;
            let appended = sink.collect().await;
            match handled {
                Err(_) if !appended.is_empty() => return Ok(BatchAttempt::OneByOne),
                Err(error) => decisions.push(Decision::Refused(error)),
                Ok(()) => {
                    decisions.push(Decision::Appends(appended.len()));
                    let encoded = encode::<A>(&appended, &item.context, &mut events, &mut metadata);
                    if encoded.is_err() {
                        // One command's events cannot be stored: alone, only it fails.
                        return Ok(BatchAttempt::OneByOne);
                    }
                }
            }
        }

        if events.is_empty() {
            *slot = Some(cached);
            // Nothing to append, so no primary key vouches for the cache: check the head.
            if !loaded_now && store.stream_version(A::TYPE, stream).await? != before {
                self.catch_up(stream, slot, false).await?;
                return Ok(BatchAttempt::Stale);
            }
            return Ok(BatchAttempt::Done(answers(
                stream,
                before,
                batch,
                decisions,
                Vec::new(),
            )));
        }
        let head = (before, cached.head_hash);
        let appended = append::append_batch(store, A::TYPE, stream, head, events, metadata).await;
        let (stored, head_hash) = match appended {
            Ok(Some(appended)) => appended,
            Ok(None) => return Ok(BatchAttempt::Conflict),
            // PostgreSQL refused the statement, so nothing of it was written: alone, only the
            // command whose row it refused fails. Any other error leaves the outcome unknown,
            // and every command of the batch is told so.
            Err(StoreError::Database(sqlx::Error::Database(error))) => {
                tracing::warn!(%stream, %error, commands = batch.len(), "a batch's append was refused; running its commands one by one");
                return Ok(BatchAttempt::OneByOne);
            }
            Err(error) => return Err(error),
        };
        store.signal_appended();
        cached.version = stored.last().map_or(before, |event| event.sequence);
        cached.head_hash = head_hash;
        self.maybe_snapshot(stream, &cached, before);
        *slot = Some(cached);
        Ok(BatchAttempt::Done(answers(
            stream, before, batch, decisions, stored,
        )))
    }
}

/// Serialises one command's `appended` events onto the batch's, each with the command's
/// metadata.
fn encode<A: Aggregate>(
    appended: &[A::Event],
    context: &CommandContext,
    events: &mut Vec<NewEvent>,
    metadata: &mut Vec<serde_json::Value>,
) -> Result<(), DecodeError> {
    let of_command = append::event_metadata(context)?;
    for event in appended {
        events.push(NewEvent::of::<A>(event)?);
        metadata.push(of_command.clone());
    }
    Ok(())
}

/// Each command's answer: its own slice of the stored events (in sequence order), or its
/// refusal.
fn answers<A: Aggregate>(
    stream: &StreamId,
    before: u64,
    batch: &[Queued<A>],
    decisions: Vec<Decision<A::Error>>,
    stored: Vec<crate::executor::outcome::StoredEvent>,
) -> Vec<Answer<A>> {
    let mut stored = stored.into_iter();
    let mut version = before;
    batch
        .iter()
        .zip(decisions)
        .map(|(item, decision)| match decision {
            Decision::Refused(error) => Err(ExecuteError::Domain(error)),
            Decision::Appends(count) => {
                let events: Vec<_> = stored.by_ref().take(count).collect();
                version = events.last().map_or(version, |last| last.sequence);
                Ok(CommandOutcome {
                    aggregate_type: A::TYPE.to_owned(),
                    aggregate_id: stream.clone(),
                    last_position: events.last().map(|last| last.position),
                    events,
                    last_sequence: version,
                    replayed: false,
                    metadata: item.context.metadata.clone(),
                })
            }
        })
        .collect()
}
