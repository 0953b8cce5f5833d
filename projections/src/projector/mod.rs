//! The projector: applies one event to the read models inside a transaction the caller owns.
//!
//! Per stream (tenant, aggregate type, aggregate id) `stream_state` holds the last applied
//! sequence. An event at or below it is a duplicate and changes nothing; the next one is applied
//! and then any contiguous successors waiting in `pending_events`; one further ahead (a gap), or
//! any event of a stream blocked by a dead letter, waits in `pending_events`. Nothing is ever
//! applied out of order. The stream's next event, the common case, moves `stream_state` with one
//! conditional statement that also says whether anything is parked for the stream; only the
//! other cases lock the row and look further. The same code builds the live schema and a rebuild's shadow schema: the
//! schema is chosen by the transaction's search path ([`Projector::begin`]).
//!
//! Layout: this file holds the stream bookkeeping; one submodule per aggregate applies its events,
//! one at a time (`apply`) or a batch's set-based (`apply_batch`), both from the same
//! pure rule of the submodule (what each event changes); [`crate::facets`] holds the pure rules
//! (statuses, counters) those submodules use; `batch` plans and drives the set-based path and
//! `rows` reads and writes whole rows a batch at a time.

mod batch;
mod campaign;
mod inventory;
mod order;
mod payment;
mod product;
mod rows;
mod shipment;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::event::{AggregateEvent, DecodedEvent, EventRecord};
use crate::schema::ReadModelSchema;

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied, together with `drained` events that had been waiting behind it.
    Applied { drained: u32 },
    /// Already applied earlier (a redelivery or a republished duplicate).
    Duplicate,
    /// Ahead of a gap, or its stream is blocked: stored in `pending_events`.
    Pending,
}

/// Identifies one aggregate stream of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub tenant_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
}

impl StreamKey {
    pub(crate) fn of(record: &EventRecord) -> Self {
        Self {
            tenant_id: record.tenant_id.clone(),
            aggregate_type: record.aggregate_type.clone(),
            aggregate_id: record.aggregate_id.clone(),
        }
    }
}

/// Applies events to the read models of one schema.
#[derive(Debug, Clone, Copy)]
pub struct Projector {
    schema: ReadModelSchema,
    analytics: bool,
}

impl Projector {
    /// A projector writing into `schema`; `analytics` queues analyst-stream records in the same
    /// transaction (the live workers do, a rebuild does not republish history).
    pub fn new(schema: ReadModelSchema, analytics: bool) -> Self {
        Self { schema, analytics }
    }

    /// Points the transaction at this projector's schema. Call once per transaction, first.
    pub async fn begin(&self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        sqlx::query("SELECT set_config('search_path', $1, true)")
            .bind(self.schema.name())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Applies `event` (or stores it as pending, or ignores a duplicate), then drains the
    /// successors it unblocked. Runs inside the caller's transaction; on error the caller rolls back.
    pub async fn project(
        &self,
        conn: &mut PgConnection,
        event: &DecodedEvent,
    ) -> Result<Outcome, ProjectionError> {
        let key = StreamKey::of(&event.record);
        let sequence = event.record.sequence;
        let position = event.record.position;
        // The common case, the stream's next event with nothing parked behind a block, costs
        // one statement of bookkeeping; everything else takes the locked path below.
        if let Some(waiting) = advance(conn, &key, sequence, position).await? {
            self.apply(conn, event).await?;
            if !waiting {
                return Ok(Outcome::Applied { drained: 0 });
            }
            let mut last = (sequence, position);
            let drained = self.drain(conn, &key, &mut last).await?;
            save_stream(conn, &key, last).await?;
            return Ok(Outcome::Applied { drained });
        }
        let state = lock_stream(conn, &key).await?;
        if sequence <= state.last_sequence {
            return Ok(Outcome::Duplicate);
        }
        if state.blocked || sequence > state.last_sequence + 1 {
            store_pending(conn, &key, &event.record).await?;
            return Ok(Outcome::Pending);
        }
        self.apply(conn, event).await?;
        let mut last = (event.record.sequence, event.record.position);
        let drained = self.drain(conn, &key, &mut last).await?;
        save_stream(conn, &key, last).await?;
        Ok(Outcome::Applied { drained })
    }

    /// Marks a stream blocked by dead letter `dead_letter_id`: its later events wait as pending.
    pub async fn block(
        &self,
        conn: &mut PgConnection,
        key: &StreamKey,
        dead_letter_id: i64,
    ) -> Result<(), ProjectionError> {
        sqlx::query(
            "INSERT INTO stream_state (tenant_id, aggregate_type, aggregate_id, blocked_by)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id, aggregate_type, aggregate_id)
             DO UPDATE SET blocked_by = EXCLUDED.blocked_by, updated_at = now()",
        )
        .bind(&key.tenant_id)
        .bind(&key.aggregate_type)
        .bind(&key.aggregate_id)
        .bind(dead_letter_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Lifts a stream's block and applies whatever contiguous events waited behind it.
    /// Returns how many were applied.
    pub async fn unblock(
        &self,
        conn: &mut PgConnection,
        key: &StreamKey,
    ) -> Result<u32, ProjectionError> {
        let state = lock_stream(conn, key).await?;
        sqlx::query(
            "UPDATE stream_state SET blocked_by = NULL
             WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(&key.tenant_id)
        .bind(&key.aggregate_type)
        .bind(&key.aggregate_id)
        .execute(&mut *conn)
        .await?;
        let mut last = (state.last_sequence, state.last_position);
        let drained = self.drain(conn, key, &mut last).await?;
        save_stream(conn, key, last).await?;
        Ok(drained)
    }

    /// Applies the pending successors of `last` in sequence order while they are contiguous.
    async fn drain(
        &self,
        conn: &mut PgConnection,
        key: &StreamKey,
        last: &mut (i64, i64),
    ) -> Result<u32, ProjectionError> {
        let mut drained = 0_u32;
        // Duplicates of already-applied events may have been parked while a gap was open.
        sqlx::query(
            "DELETE FROM pending_events
             WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND sequence <= $4",
        )
        .bind(&key.tenant_id)
        .bind(&key.aggregate_type)
        .bind(&key.aggregate_id)
        .bind(last.0)
        .execute(&mut *conn)
        .await?;
        loop {
            let next: Option<serde_json::Value> = sqlx::query_scalar(
                "DELETE FROM pending_events
                 WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND sequence = $4
                 RETURNING envelope",
            )
            .bind(&key.tenant_id)
            .bind(&key.aggregate_type)
            .bind(&key.aggregate_id)
            .bind(last.0 + 1)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(envelope) = next else {
                return Ok(drained);
            };
            let record: EventRecord = serde_json::from_value(envelope)?;
            let event = record.decode()?;
            self.apply(conn, &event).await?;
            *last = (event.record.sequence, event.record.position);
            drained = drained.saturating_add(1);
        }
    }

    /// Whether applying `event` queues analyst records (see [`crate::analytics`]).
    fn queues_analytics(&self, event: &DecodedEvent) -> bool {
        self.analytics
            && matches!(
                event.event,
                AggregateEvent::Order(_) | AggregateEvent::Payment(_)
            )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &DecodedEvent,
    ) -> Result<(), ProjectionError> {
        let record = &event.record;
        match &event.event {
            AggregateEvent::Order(e) => order::apply(conn, record, e, self.analytics).await,
            AggregateEvent::Payment(e) => payment::apply(conn, record, e, self.analytics).await,
            AggregateEvent::Inventory(e) => inventory::apply(conn, record, e).await,
            AggregateEvent::Campaign(e) => campaign::apply(conn, record, e).await,
            AggregateEvent::Product(e) => product::apply(conn, record, e).await,
            AggregateEvent::Shipment(e) => shipment::apply(conn, record, e).await,
        }
    }
}

/// Moves an unblocked stream from `sequence - 1` to `sequence` (creating it for sequence 1),
/// locking its row. `None`: the stream is elsewhere or blocked, nothing changed. `Some(waiting)`:
/// moved; `waiting` tells whether events are parked in `pending_events` for it.
async fn advance(
    conn: &mut PgConnection,
    key: &StreamKey,
    sequence: i64,
    position: i64,
) -> Result<Option<bool>, ProjectionError> {
    let sql = if sequence == 1 {
        "INSERT INTO stream_state AS s (tenant_id, aggregate_type, aggregate_id, last_sequence, last_position)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant_id, aggregate_type, aggregate_id)
         DO UPDATE SET last_sequence = EXCLUDED.last_sequence, last_position = EXCLUDED.last_position,
             updated_at = now()
         WHERE s.last_sequence = 0 AND s.blocked_by IS NULL
         RETURNING EXISTS (SELECT 1 FROM pending_events p
             WHERE p.tenant_id = $1 AND p.aggregate_type = $2 AND p.aggregate_id = $3)"
    } else {
        "UPDATE stream_state AS s SET last_sequence = $4, last_position = $5, updated_at = now()
         WHERE s.tenant_id = $1 AND s.aggregate_type = $2 AND s.aggregate_id = $3
             AND s.last_sequence = $4 - 1 AND s.blocked_by IS NULL
         RETURNING EXISTS (SELECT 1 FROM pending_events p
             WHERE p.tenant_id = $1 AND p.aggregate_type = $2 AND p.aggregate_id = $3)"
    };
    Ok(sqlx::query_scalar(sql)
        .bind(&key.tenant_id)
        .bind(&key.aggregate_type)
        .bind(&key.aggregate_id)
        .bind(sequence)
        .bind(position)
        .fetch_optional(&mut *conn)
        .await?)
}

struct StreamState {
    last_sequence: i64,
    last_position: i64,
    blocked: bool,
}

/// Creates the stream's row if needed and locks it for the rest of the transaction, so two
/// workers can never apply events of one stream concurrently.
async fn lock_stream(
    conn: &mut PgConnection,
    key: &StreamKey,
) -> Result<StreamState, ProjectionError> {
    let (last_sequence, last_position, blocked_by): (i64, i64, Option<i64>) = sqlx::query_as(
        "INSERT INTO stream_state AS s (tenant_id, aggregate_type, aggregate_id)
         VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, aggregate_type, aggregate_id)
         DO UPDATE SET last_sequence = s.last_sequence
         RETURNING last_sequence, last_position, blocked_by",
    )
    .bind(&key.tenant_id)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(StreamState {
        last_sequence,
        last_position,
        blocked: blocked_by.is_some(),
    })
}

async fn store_pending(
    conn: &mut PgConnection,
    key: &StreamKey,
    record: &EventRecord,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO pending_events (tenant_id, aggregate_type, aggregate_id, sequence, envelope)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
    )
    .bind(&key.tenant_id)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .bind(record.sequence)
    .bind(serde_json::to_value(record)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn save_stream(
    conn: &mut PgConnection,
    key: &StreamKey,
    last: (i64, i64),
) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE stream_state SET last_sequence = $4, last_position = $5, updated_at = now()
         WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3",
    )
    .bind(&key.tenant_id)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .bind(last.0)
    .bind(last.1)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The aggregate id of a uuid-keyed aggregate (order, payment, campaign, shipment).
fn uuid_id(record: &EventRecord) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(&record.aggregate_id)
        .map_err(|_| inconsistent(record, "the aggregate id is not a UUID"))
}

fn inconsistent(record: &EventRecord, reason: &str) -> ProjectionError {
    ProjectionError::Inconsistent {
        aggregate_type: record.aggregate_type.clone(),
        aggregate_id: record.aggregate_id.clone(),
        reason: format!(
            "{} (sequence {}): {reason}",
            record.event_type, record.sequence
        ),
    }
}

/// Fails with [`ProjectionError::Inconsistent`] when an update touched no row.
fn expect_row(
    result: sqlx::postgres::PgQueryResult,
    record: &EventRecord,
) -> Result<(), ProjectionError> {
    if result.rows_affected() == 0 {
        return Err(no_row(record));
    }
    Ok(())
}

/// An event updates a read-model row that does not exist.
fn no_row(record: &EventRecord) -> ProjectionError {
    inconsistent(record, "the read-model row it updates does not exist")
}

#[cfg(test)]
mod tests;
