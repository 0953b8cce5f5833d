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
}

impl LogSource {
    /// A source over `store`'s log (its upcasters apply: read models see current shapes).
    pub fn new(store: &PgEventStore) -> Self {
        Self {
            log: store.global_log(),
            pool: store.pool().clone(),
            cursor: LogCursor::START,
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
        let limit = u32::try_from(max).unwrap_or(u32::MAX);
        let events = self.log.read_after(self.cursor, limit).await?;
        if let Some(last) = events.last() {
            self.cursor = LogCursor::after(last);
        }
        Ok(events.into_iter().map(event_record).collect())
    }

    async fn estimated_total(&mut self) -> Option<u64> {
        let count: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await;
        count.ok().and_then(|count| u64::try_from(count).ok())
    }
}
