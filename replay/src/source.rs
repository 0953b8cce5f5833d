//! The event store's global log as the projections' [`EventSource`]: rebuilds read the
//! source of truth (Kafka retention is finite), in the same gap-free order the relay uses.

use async_trait::async_trait;
use commerce_eventstore::{GlobalLog, LogCursor, LogEvent, PgEventStore};
use commerce_projections::{EventRecord, EventSource};

/// Reads the global log from the start, batch by batch.
#[derive(Debug)]
pub struct LogSource {
    log: GlobalLog,
    pool: sqlx::PgPool,
    cursor: LogCursor,
    /// The first transaction id not yet started when the first batch was asked for
    /// (`pg_snapshot_xmax`): everything committed before then has a lower one.
    start: Option<u64>,
    /// Whether the log's horizon had passed [`Self::start`] before the last read, so that read
    /// saw every transaction committed before the start.
    past_start: bool,
}

impl LogSource {
    /// A source over `store`'s log (its upcasters apply: read models see current shapes).
    pub fn new(store: &PgEventStore) -> Self {
        Self {
            log: store.global_log(),
            pool: store.pool().clone(),
            cursor: LogCursor::START,
            start: None,
            past_start: false,
        }
    }
}

/// The envelope fields the read side uses, from a stored event (moved, not copied: a rebuild
/// turns every event of the store into one).
///
/// `timestamp` and `occurred_at` are the commit clock cut to milliseconds, exactly as the relay
/// puts them in the Kafka envelope: the read models keep these instants, so a rebuild must give
/// the very values the live workers wrote.
pub fn event_record(event: LogEvent) -> EventRecord {
    let timestamp = event.recorded_at.timestamp_millis();
    let occurred_at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(timestamp)
        .unwrap_or(event.recorded_at);
    EventRecord {
        event_id: event.event_id,
        event_type: event.event_type,
        aggregate_type: event.aggregate_type,
        aggregate_id: event.stream.key().to_owned(),
        sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
        position: event.position,
        tenant_id: event.stream.tenant().to_owned(),
        timestamp,
        occurred_at,
        payload: event.payload,
    }
}

#[async_trait]
impl EventSource for LogSource {
    async fn next_batch(
        &mut self,
        max: usize,
    ) -> Result<Vec<EventRecord>, Box<dyn std::error::Error + Send + Sync>> {
        if !self.past_start {
            let (xmin, xmax): (String, String) = sqlx::query_as(
                "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text \
                 FROM pg_current_snapshot() AS s",
            )
            .fetch_one(&self.pool)
            .await?;
            let xmin: u64 = xmin.parse()?;
            let start = *self.start.get_or_insert(xmax.parse()?);
            // Every transaction below the horizon is final, and the read below sees them all.
            self.past_start = xmin >= start;
        }
        let limit = u32::try_from(max).unwrap_or(u32::MAX);
        let events = self.log.read_after(self.cursor, limit).await?;
        if let Some(last) = events.last() {
            self.cursor = LogCursor::after(last);
        }
        Ok(events.into_iter().map(event_record).collect())
    }

    fn has_everything_from_start(&self) -> bool {
        self.past_start
    }

    async fn estimated_total(&mut self) -> Option<u64> {
        let count: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await;
        count.ok().and_then(|count| u64::try_from(count).ok())
    }
}
