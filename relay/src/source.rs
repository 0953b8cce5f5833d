//! Where the relay reads events from: a [`LogSource`].
//!
//! - [`PgLogSource`] (the default): PostgreSQL's gap-free [`GlobalLog`], woken by
//!   [`LogWakeups`]; its cursor is kept in `relay_cursor`'s typed `(transaction_id, position)`
//!   columns, exactly as before sources were pluggable.
//! - [`BackendLogSource`]: the global order of any [`EventBackend`] (KurrentDB's `$all` in
//!   production), read with [`EventBackend::read_all_after`] and woken by a catch-up
//!   subscription ([`EventBackend::subscribe_all`]); its cursor is persisted as the backend
//!   cursor's text form in `relay_cursor.source_cursor`.
//!
//! Either way the relay's contract is the same: it reads a batch after its persisted cursor,
//! publishes it, and persists the cursor of the batch's last event only after the broker
//! acknowledged everything. A wake-up is only a hint; the relay also polls.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use commerce_eventstore::{
    BackendEvent, EventBackend, EventMetadata, EventSubscription, GlobalLog, LogCursor, LogEvent,
    LogWakeups, StreamId,
};
use futures::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::RelayError;

/// How many events after the cursor the lag measurement of a [`BackendLogSource`] counts at
/// most (a backend offers no cheap count; the age of the oldest is exact).
const BACKEND_LAG_PROBE: u32 = 1_000;

/// An event as the relay publishes it, borrowed from whatever the source read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelayedEvent<'a> {
    pub event_id: Uuid,
    pub aggregate_type: &'a str,
    pub stream: &'a StreamId,
    /// Position in the stream, contiguous from 1.
    pub sequence: u64,
    /// The envelope's global `position`.
    pub position: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a serde_json::Value,
    pub metadata: &'a EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

impl<'a> From<&'a LogEvent> for RelayedEvent<'a> {
    fn from(event: &'a LogEvent) -> Self {
        Self {
            event_id: event.event_id,
            aggregate_type: &event.aggregate_type,
            stream: &event.stream,
            sequence: event.sequence,
            position: event.position,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &event.payload,
            metadata: &event.metadata,
            recorded_at: event.recorded_at,
        }
    }
}

/// A global, gap-free order of events the relay can tail (see the module doc).
pub trait LogSource: Clone + Send + Sync + 'static {
    /// Where the relay stands; its text form is what logs and the status show.
    type Cursor: Copy + Eq + fmt::Debug + fmt::Display + Send + Sync + 'static;
    /// An event as read.
    type Event: Send + Sync + 'static;
    /// What an idle relay waits on for new events.
    type Wakeups: Send + 'static;

    /// A short name for logs ("postgres", "kurrentdb").
    fn name(&self) -> &'static str;

    /// Up to `limit` events after `cursor`, in the global order; empty: nothing more yet.
    fn read_after(
        &self,
        cursor: Self::Cursor,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Self::Event>, RelayError>> + Send;

    /// The cursor just past `event`.
    fn cursor_after(event: &Self::Event) -> Self::Cursor;

    /// `event` as the relay maps it into the outgoing envelope.
    fn relayed(event: &Self::Event) -> RelayedEvent<'_>;

    /// Subscribes to wake-ups for events after `from`; `None` when that failed (the relay
    /// then polls and tries again on its next idle round).
    fn wakeups(&self, from: Self::Cursor) -> impl Future<Output = Option<Self::Wakeups>> + Send;

    /// Waits until an event after `cursor` may be readable. `false`: the subscription broke
    /// and must be replaced.
    fn wait(wakeups: &mut Self::Wakeups, cursor: Self::Cursor)
    -> impl Future<Output = bool> + Send;

    /// The persisted cursor of relay `relay` (its `relay_cursor` row exists).
    fn load_cursor(
        connection: &mut PgConnection,
        relay: &str,
    ) -> impl Future<Output = Result<Self::Cursor, RelayError>> + Send;

    /// Persists `cursor` as relay `relay`'s position.
    fn save_cursor(
        connection: &mut PgConnection,
        relay: &str,
        cursor: Self::Cursor,
    ) -> impl Future<Output = Result<(), RelayError>> + Send;

    /// Events after relay `relay`'s persisted cursor and the age in seconds of the oldest.
    fn lag(
        &self,
        pool: &PgPool,
        relay: &str,
    ) -> impl Future<Output = Result<(u64, f64), RelayError>> + Send;

    /// The cursor as a PostgreSQL log cursor, for [`crate::RelaySnapshot::cursor`].
    fn log_cursor(cursor: Self::Cursor) -> Option<LogCursor>;
}

/// PostgreSQL's global log (the engine's default source).
#[derive(Clone, Debug)]
pub struct PgLogSource {
    log: GlobalLog,
}

impl PgLogSource {
    pub fn new(log: GlobalLog) -> Self {
        Self { log }
    }
}

impl LogSource for PgLogSource {
    type Cursor = LogCursor;
    type Event = LogEvent;
    type Wakeups = LogWakeups;

    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn read_after(&self, cursor: LogCursor, limit: u32) -> Result<Vec<LogEvent>, RelayError> {
        Ok(self.log.read_after(cursor, limit).await?)
    }

    fn cursor_after(event: &LogEvent) -> LogCursor {
        LogCursor::after(event)
    }

    fn relayed(event: &LogEvent) -> RelayedEvent<'_> {
        RelayedEvent::from(event)
    }

    async fn wakeups(&self, _from: LogCursor) -> Option<LogWakeups> {
        self.log.wakeups().await.ok()
    }

    async fn wait(wakeups: &mut LogWakeups, _cursor: LogCursor) -> bool {
        wakeups.next().await.is_ok()
    }

    async fn load_cursor(
        connection: &mut PgConnection,
        relay: &str,
    ) -> Result<LogCursor, RelayError> {
        let row = sqlx::query(
            "SELECT transaction_id::text AS transaction_id, position FROM relay_cursor WHERE name = $1",
        )
        .bind(relay)
        .fetch_one(connection)
        .await?;
        let transaction_id: String = row.try_get("transaction_id")?;
        Ok(LogCursor {
            transaction_id: transaction_id.parse().map_err(|_| {
                sqlx::Error::Decode(format!("relay cursor xid8 {transaction_id:?}").into())
            })?,
            position: row.try_get("position")?,
        })
    }

    async fn save_cursor(
        connection: &mut PgConnection,
        relay: &str,
        cursor: LogCursor,
    ) -> Result<(), RelayError> {
        sqlx::query(
            "UPDATE relay_cursor SET transaction_id = $2::text::xid8, position = $3, \
             updated_at = now() WHERE name = $1",
        )
        .bind(relay)
        .bind(cursor.transaction_id.to_string())
        .bind(cursor.position)
        .execute(connection)
        .await?;
        Ok(())
    }

    async fn lag(&self, pool: &PgPool, relay: &str) -> Result<(u64, f64), RelayError> {
        let row = sqlx::query(
            "WITH cursor AS ( \
                 SELECT COALESCE((SELECT transaction_id FROM relay_cursor WHERE name = $1), '0'::xid8) AS tx, \
                        COALESCE((SELECT position FROM relay_cursor WHERE name = $1), 0) AS pos) \
             SELECT count(*) AS events, \
                    COALESCE(EXTRACT(EPOCH FROM now() - min(e.recorded_at))::float8, 0) AS seconds \
             FROM events e, cursor c WHERE (e.transaction_id, e.position) > (c.tx, c.pos)",
        )
        .bind(relay)
        .fetch_one(pool)
        .await?;
        let events: i64 = row.try_get("events")?;
        let seconds: f64 = row.try_get("seconds")?;
        Ok((u64::try_from(events).unwrap_or(0), seconds.max(0.0)))
    }

    fn log_cursor(cursor: LogCursor) -> Option<LogCursor> {
        Some(cursor)
    }
}

/// The global order of an [`EventBackend`] (KurrentDB's `$all`).
///
/// The envelope's `position` is [`EventBackend::envelope_position`] of the event's cursor.
#[derive(Clone, Debug)]
pub struct BackendLogSource<B> {
    backend: B,
}

impl<B: EventBackend> BackendLogSource<B> {
    pub fn new(backend: B) -> Self {
        Self { backend }
    }
}

/// An idle [`BackendLogSource`]'s catch-up subscription.
pub struct BackendWakeups<C> {
    subscription: EventSubscription<C>,
}

impl<C> fmt::Debug for BackendWakeups<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendWakeups").finish_non_exhaustive()
    }
}

impl<B> LogSource for BackendLogSource<B>
where
    B: EventBackend + Clone + 'static,
    <B::Cursor as FromStr>::Err: fmt::Display,
{
    type Cursor = B::Cursor;
    type Event = BackendEvent<B::Cursor>;
    type Wakeups = BackendWakeups<B::Cursor>;

    fn name(&self) -> &'static str {
        self.backend.name()
    }

    async fn read_after(
        &self,
        cursor: B::Cursor,
        limit: u32,
    ) -> Result<Vec<BackendEvent<B::Cursor>>, RelayError> {
        Ok(self.backend.read_all_after(cursor, limit).await?)
    }

    fn cursor_after(event: &BackendEvent<B::Cursor>) -> B::Cursor {
        event.cursor
    }

    fn relayed(event: &BackendEvent<B::Cursor>) -> RelayedEvent<'_> {
        RelayedEvent {
            event_id: event.event_id,
            aggregate_type: &event.aggregate_type,
            stream: &event.stream,
            sequence: event.sequence,
            position: B::envelope_position(&event.cursor),
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &event.payload,
            metadata: &event.metadata,
            recorded_at: event.recorded_at,
        }
    }

    async fn wakeups(&self, from: B::Cursor) -> Option<BackendWakeups<B::Cursor>> {
        match self.backend.subscribe_all(from).await {
            Ok(subscription) => Some(BackendWakeups { subscription }),
            Err(error) => {
                tracing::debug!(%error, "subscribing to the event store's global order");
                None
            }
        }
    }

    /// The subscription started at an older cursor replays what the relay already read:
    /// those events are passed over, the first later one wakes the relay.
    async fn wait(wakeups: &mut BackendWakeups<B::Cursor>, cursor: B::Cursor) -> bool {
        loop {
            match wakeups.subscription.next().await {
                Some(Ok(event)) if event.cursor <= cursor => {}
                Some(Ok(_)) => return true,
                Some(Err(error)) => {
                    tracing::debug!(%error, "event store subscription ended");
                    return false;
                }
                None => return false,
            }
        }
    }

    async fn load_cursor(
        connection: &mut PgConnection,
        relay: &str,
    ) -> Result<B::Cursor, RelayError> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT source_cursor FROM relay_cursor WHERE name = $1")
                .bind(relay)
                .fetch_one(connection)
                .await?;
        parse_cursor(stored, B::START)
    }

    async fn save_cursor(
        connection: &mut PgConnection,
        relay: &str,
        cursor: B::Cursor,
    ) -> Result<(), RelayError> {
        sqlx::query(
            "UPDATE relay_cursor SET source_cursor = $2, updated_at = now() WHERE name = $1",
        )
        .bind(relay)
        .bind(cursor.to_string())
        .execute(connection)
        .await?;
        Ok(())
    }

    async fn lag(&self, pool: &PgPool, relay: &str) -> Result<(u64, f64), RelayError> {
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT source_cursor FROM relay_cursor WHERE name = $1")
                .bind(relay)
                .fetch_optional(pool)
                .await?;
        let cursor = parse_cursor(stored.flatten(), B::START)?;
        let pending = self
            .backend
            .read_all_after(cursor, BACKEND_LAG_PROBE)
            .await?;
        let seconds = pending.first().map_or(0.0, |oldest| {
            (Utc::now() - oldest.recorded_at)
                .to_std()
                .map_or(0.0, |age| age.as_secs_f64())
        });
        Ok((u64::try_from(pending.len()).unwrap_or(u64::MAX), seconds))
    }

    fn log_cursor(_cursor: B::Cursor) -> Option<LogCursor> {
        None
    }
}

/// A backend cursor from its persisted text form; `None` is `start`.
fn parse_cursor<C>(stored: Option<String>, start: C) -> Result<C, RelayError>
where
    C: FromStr,
    C::Err: fmt::Display,
{
    match stored {
        None => Ok(start),
        Some(text) => text.parse().map_err(|error: C::Err| {
            RelayError::Database(sqlx::Error::Decode(
                format!("relay cursor {text:?}: {error}").into(),
            ))
        }),
    }
}
