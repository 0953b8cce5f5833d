//! The storage-level contract every event store backend fulfils, so the engine can run on
//! PostgreSQL (the default, [`PgBackend`]) or on KurrentDB (crate
//! `commerce-eventstore-kurrentdb`), and one conformance suite ([`crate::conformance`])
//! checks them all alike.
//!
//! The contract, in the backend's own terms:
//! - a stream is `(aggregate_type, StreamId)` ([`StreamRef`]); its events are numbered
//!   1, 2, 3… (the *sequence*; the *version* of a stream is the sequence of its last event,
//!   0 when it has none);
//! - [`EventBackend::append`] writes a batch atomically after an [`ExpectedVersion`], or
//!   refuses it with [`BackendError::Conflict`];
//! - appends are idempotent by event id: re-sending the same event ids at the same place
//!   succeeds and writes nothing (a client retrying after a lost reply gets its answer);
//! - [`EventBackend::read_all_after`] reads every stream in one global order from an opaque
//!   cursor, never skipping an event that becomes visible later;
//! - [`EventBackend::subscribe_all`] is the catch-up subscription over that order: history
//!   first, then live events, as one stream.
//!
//! The command executor keeps its own PostgreSQL path (it writes idempotency records and the
//! tamper-evidence chain in the same transaction); this contract is what a second store and
//! the log readers (relay, replay) need.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use sqlx::Row;
use uuid::Uuid;

use crate::error::{DecodeError, StoreError, sequence_from_db, sequence_to_db};
use crate::log::{GlobalLog, LogCursor, LogWakeups};
use crate::metadata::EventMetadata;
use crate::record::{EVENT_COLUMNS, RecordedEvent};
use crate::store::PgEventStore;
use crate::stream::StreamId;

/// One stream of one aggregate type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamRef {
    pub aggregate_type: String,
    pub stream: StreamId,
}

impl StreamRef {
    pub fn new(aggregate_type: impl Into<String>, stream: StreamId) -> Self {
        Self {
            aggregate_type: aggregate_type.into(),
            stream,
        }
    }
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.aggregate_type, self.stream)
    }
}

/// What the writer believes the stream's version is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append wherever the stream ends (no concurrency check).
    Any,
    /// The stream's last event has this sequence (0: the stream must have no event).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Exact(version) => write!(f, "{version}"),
        }
    }
}

/// An event to append, with the id that makes its append idempotent.
#[derive(Clone, Debug, PartialEq)]
pub struct NewStreamEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
}

/// An event read back from a backend, with its place in the global order.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendEvent<C> {
    /// The global-order cursor just past this event (resume reading from it).
    pub cursor: C,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub stream: StreamId,
    /// Position in the stream, contiguous from 1.
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

impl From<RecordedEvent> for BackendEvent<LogCursor> {
    fn from(event: RecordedEvent) -> Self {
        Self {
            cursor: LogCursor::after(&event),
            event_id: event.event_id,
            aggregate_type: event.aggregate_type,
            stream: event.stream,
            sequence: event.sequence,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
        }
    }
}

/// A successful append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append (the sequence of the batch's last event).
    pub version: u64,
}

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Optimistic concurrency: the stream is not at the expected version; nothing was written.
    #[error("stream {stream} is at version {actual}, not at the expected {expected}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    /// An event id of the batch is already stored elsewhere (another stream or position).
    #[error("event id {event_id} is already stored elsewhere than at this append's place")]
    DuplicateEventId { event_id: Uuid },
    /// The batch itself is invalid (for instance its metadata names another tenant).
    #[error("invalid append to {stream}: {reason}")]
    InvalidAppend { stream: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A failure of another backend's client (connection, server error).
    #[error("{backend} event store error: {source}")]
    Backend {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<sqlx::Error> for BackendError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}

/// A catch-up subscription: every event after the starting cursor, then live ones, in global
/// order. It ends only after yielding an error.
pub type EventSubscription<C> = BoxStream<'static, Result<BackendEvent<C>, BackendError>>;

/// The storage contract of an event store (see the module doc).
pub trait EventBackend: Send + Sync {
    /// A position in the global order. Its text form (`Display`/`FromStr`) is what readers
    /// persist as their checkpoint.
    type Cursor: Copy + Ord + fmt::Debug + fmt::Display + FromStr + Send + Sync + 'static;

    /// The cursor before the first event.
    const START: Self::Cursor;

    /// A short name for logs ("postgres", "kurrentdb").
    fn name(&self) -> &'static str;

    /// The global log `position` a published envelope carries for the event at `cursor`
    /// (the contract's single number; the cursor itself may be finer).
    fn envelope_position(cursor: &Self::Cursor) -> i64;

    /// Appends `events` atomically to `stream` if it is at `expected`; re-sending a batch
    /// that is already stored there (same event ids, same place) succeeds and writes nothing.
    fn append(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: Vec<NewStreamEvent>,
    ) -> impl Future<Output = Result<AppendOutcome, BackendError>> + Send;

    /// The events of `stream` from sequence `from` (inclusive, 1 = the first) to its end.
    fn read_stream(
        &self,
        stream: &StreamRef,
        from: u64,
    ) -> impl Future<Output = Result<Vec<BackendEvent<Self::Cursor>>, BackendError>> + Send;

    /// Up to `limit` events after `cursor` in global order. An empty result means "nothing
    /// more yet"; events that become visible later always sort after the cursors handed out.
    fn read_all_after(
        &self,
        cursor: Self::Cursor,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<BackendEvent<Self::Cursor>>, BackendError>> + Send;

    /// A catch-up subscription from `from` (exclusive).
    fn subscribe_all(
        &self,
        from: Self::Cursor,
    ) -> impl Future<Output = Result<EventSubscription<Self::Cursor>, BackendError>> + Send;
}

/// Checks shared by backends before they write: a batch must belong to its stream's tenant.
pub fn validate_batch(stream: &StreamRef, events: &[NewStreamEvent]) -> Result<(), BackendError> {
    if let Some(event) = events
        .iter()
        .find(|event| event.metadata.tenant_id != stream.stream.tenant())
    {
        return Err(BackendError::InvalidAppend {
            stream: stream.to_string(),
            reason: format!(
                "event {} carries tenant {:?}",
                event.event_id, event.metadata.tenant_id
            ),
        });
    }
    Ok(())
}

const EVENTS_PKEY: &str = "events_pkey";
const EVENT_ID_KEY: &str = "events_event_id_key";
/// Appends with [`ExpectedVersion::Any`] retry this often when a concurrent writer takes
/// the sequence they computed.
const ANY_VERSION_ATTEMPTS: u32 = 5;
/// Page size of the PostgreSQL subscription's reads.
const SUBSCRIPTION_BATCH: u32 = 500;
/// The subscription re-reads this often even without a notification: the log horizon also
/// moves when an unrelated long transaction ends.
const SUBSCRIPTION_POLL: Duration = Duration::from_millis(250);

/// [`EventBackend`] on the PostgreSQL `events` table (the engine's default store).
///
/// Appends write the same rows as the command executor, with the caller's event ids; they
/// carry no tamper-evidence hash (only the executor writes those), so an auditor's verify
/// reports them as unauthenticated.
#[derive(Clone, Debug)]
pub struct PgBackend {
    store: PgEventStore,
}

impl PgBackend {
    pub fn new(store: PgEventStore) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &PgEventStore {
        &self.store
    }

    async fn insert(
        &self,
        stream: &StreamRef,
        after: u64,
        events: &[NewStreamEvent],
    ) -> Result<u64, sqlx::Error> {
        let encode = |error: DecodeError| sqlx::Error::Encode(Box::new(error));
        let mut sequences = Vec::with_capacity(events.len());
        let mut next = after;
        for _ in events {
            next = next.checked_add(1).ok_or_else(|| {
                encode(DecodeError::OutOfRange {
                    what: "sequence",
                    value: "u64::MAX + 1".to_owned(),
                })
            })?;
            sequences.push(sequence_to_db(next).map_err(encode)?);
        }
        let metadata = events
            .iter()
            .map(|event| serde_json::to_value(event.metadata.to_map()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| encode(DecodeError::json("event metadata", source)))?;
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata, event_id) \
             SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata, \
                 e.event_id \
               FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], \
                    $8::uuid[]) AS e(sequence, event_type, event_version, payload, metadata, event_id)",
        )
        .bind(&stream.aggregate_type)
        .bind(stream.stream.aggregate_id())
        .bind(&sequences)
        .bind(events.iter().map(|e| e.event_type.clone()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_version.clone()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>())
        .bind(&metadata)
        .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
        .execute(self.store.pool())
        .await?;
        Ok(next)
    }

    /// The version the batch left the stream at, if exactly this batch is already stored in
    /// `stream` (same ids, contiguous, in order, right after `expected`).
    async fn already_appended(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: &[NewStreamEvent],
    ) -> Result<Option<u64>, BackendError> {
        let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
        let rows = sqlx::query(
            "SELECT event_id, sequence FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_id = ANY($3) \
             ORDER BY sequence",
        )
        .bind(&stream.aggregate_type)
        .bind(stream.stream.aggregate_id())
        .bind(&ids)
        .fetch_all(self.store.pool())
        .await?;
        if rows.len() != ids.len() {
            return Ok(None);
        }
        let mut stored = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: Uuid = row.try_get("event_id")?;
            stored.push((id, sequence_from_db(row.try_get("sequence")?)?));
        }
        let Some(&(_, first)) = stored.first() else {
            return Ok(None);
        };
        let in_place = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::Exact(version) => version.checked_add(1) == Some(first),
        };
        let contiguous = stored
            .iter()
            .zip(&ids)
            .zip(first..)
            .all(|((&(id, sequence), &wanted), at)| id == wanted && sequence == at);
        Ok((in_place && contiguous).then(|| stored.last().map_or(first, |&(_, last)| last)))
    }

    async fn conflict_or_duplicate(
        &self,
        error: sqlx::Error,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: &[NewStreamEvent],
    ) -> Result<Option<AppendOutcome>, BackendError> {
        let duplicate_id = violates(&error, EVENT_ID_KEY);
        if !duplicate_id && !violates(&error, EVENTS_PKEY) {
            return Err(error.into());
        }
        if let Some(version) = self.already_appended(stream, expected, events).await? {
            return Ok(Some(AppendOutcome { version }));
        }
        if duplicate_id {
            let stored: Option<Uuid> =
                sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1) LIMIT 1")
                    .bind(
                        events
                            .iter()
                            .map(|event| event.event_id)
                            .collect::<Vec<_>>(),
                    )
                    .fetch_optional(self.store.pool())
                    .await?;
            if let Some(event_id) = stored {
                return Err(BackendError::DuplicateEventId { event_id });
            }
        }
        Ok(None)
    }
}

impl EventBackend for PgBackend {
    type Cursor = LogCursor;

    const START: LogCursor = LogCursor::START;

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn envelope_position(cursor: &LogCursor) -> i64 {
        cursor.position
    }

    async fn append(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: Vec<NewStreamEvent>,
    ) -> Result<AppendOutcome, BackendError> {
        validate_batch(stream, &events)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head = self
                .store
                .stream_version(&stream.aggregate_type, &stream.stream)
                .await?;
            let after = match expected {
                ExpectedVersion::Any => head,
                // Writing past the end would leave a hole in the sequence: refuse it here
                // (the primary key only catches writes below the head).
                ExpectedVersion::Exact(version) if version > head => {
                    return Err(conflict(stream, expected, head));
                }
                ExpectedVersion::Exact(version) => version,
            };
            if events.is_empty() {
                return match expected {
                    ExpectedVersion::Exact(version) if version != head => {
                        Err(conflict(stream, expected, head))
                    }
                    _ => Ok(AppendOutcome { version: head }),
                };
            }
            let error = match self.insert(stream, after, &events).await {
                Ok(version) => {
                    self.store.signal_appended();
                    return Ok(AppendOutcome { version });
                }
                Err(error) => error,
            };
            if let Some(outcome) = self
                .conflict_or_duplicate(error, stream, expected, &events)
                .await?
            {
                return Ok(outcome);
            }
            if matches!(expected, ExpectedVersion::Any) && attempt < ANY_VERSION_ATTEMPTS {
                continue;
            }
            let actual = self
                .store
                .stream_version(&stream.aggregate_type, &stream.stream)
                .await?;
            return Err(conflict(stream, expected, actual));
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamRef,
        from: u64,
    ) -> Result<Vec<BackendEvent<LogCursor>>, BackendError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3 \
             ORDER BY sequence"
        );
        let mut rows = sqlx::query(&sql)
            .bind(&stream.aggregate_type)
            .bind(stream.stream.aggregate_id())
            .bind(sequence_to_db(from)?)
            .fetch(self.store.pool());
        let mut events = Vec::new();
        while let Some(row) = rows.try_next().await? {
            events.push(RecordedEvent::from_row(&row, self.store.upcasters())?.into());
        }
        Ok(events)
    }

    async fn read_all_after(
        &self,
        cursor: LogCursor,
        limit: u32,
    ) -> Result<Vec<BackendEvent<LogCursor>>, BackendError> {
        let events = self.store.global_log().read_after(cursor, limit).await?;
        Ok(events.into_iter().map(BackendEvent::from).collect())
    }

    async fn subscribe_all(
        &self,
        from: LogCursor,
    ) -> Result<EventSubscription<LogCursor>, BackendError> {
        let log = self.store.global_log();
        let wakeups = log.wakeups().await?;
        let tail = Tail {
            log,
            cursor: from,
            buffer: VecDeque::new(),
            wakeups: Some(wakeups),
        };
        Ok(Box::pin(futures::stream::unfold(Some(tail), Tail::step)))
    }
}

/// The state of a PostgreSQL catch-up subscription.
struct Tail {
    log: GlobalLog,
    cursor: LogCursor,
    buffer: VecDeque<RecordedEvent>,
    wakeups: Option<LogWakeups>,
}

type TailItem = Result<BackendEvent<LogCursor>, BackendError>;

impl Tail {
    /// Yields the next buffered event, reading (and waiting) when the buffer is empty; after
    /// an error the subscription ends.
    async fn step(state: Option<Self>) -> Option<(TailItem, Option<Self>)> {
        let mut tail = state?;
        loop {
            if let Some(event) = tail.buffer.pop_front() {
                tail.cursor = LogCursor::after(&event);
                return Some((Ok(event.into()), Some(tail)));
            }
            match tail.log.read_after(tail.cursor, SUBSCRIPTION_BATCH).await {
                Ok(batch) if batch.is_empty() => tail.wait().await,
                Ok(batch) => tail.buffer.extend(batch),
                Err(error) => return Some((Err(error.into()), None)),
            }
        }
    }

    /// Waits for an append notification or the poll interval; a broken listener is
    /// reconnected on a later wait, polling covers the meantime.
    async fn wait(&mut self) {
        if self.wakeups.is_none() {
            self.wakeups = self.log.wakeups().await.ok();
        }
        let lost = match self.wakeups.as_mut() {
            Some(wakeups) => tokio::select! {
                woke = wakeups.next() => woke.is_err(),
                () = tokio::time::sleep(SUBSCRIPTION_POLL) => false,
            },
            None => {
                tokio::time::sleep(SUBSCRIPTION_POLL).await;
                false
            }
        };
        if lost {
            self.wakeups = None;
        }
    }
}

fn conflict(stream: &StreamRef, expected: ExpectedVersion, actual: u64) -> BackendError {
    BackendError::Conflict {
        stream: stream.to_string(),
        expected,
        actual,
    }
}

fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}
