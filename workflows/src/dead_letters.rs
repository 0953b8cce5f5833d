//! Dead letters: where a reaction that can never succeed is parked instead of being skipped.
//!
//! A permanent failure (see [`WorkflowError::is_transient`]) would fail the same way on every
//! retry, so retrying would stall every later event for ever. The event is recorded in
//! `workflow_dead_letters` (event id, log position, stream, type, the reason and when) and
//! counted as `workflow_parked_total{aggregate, event_type}`; only then does the cursor move
//! past it. Parking is idempotent by event id: a leader that crashed after parking and
//! before moving its cursor parks nothing twice (and counts nothing twice).

use commerce_eventstore::LogEvent;
use sqlx::PgPool;

use crate::error::WorkflowError;

/// Records that the reaction to `event` failed permanently with `reason`.
///
/// # Errors
/// The row could not be written: the caller must not move past the event.
pub(crate) async fn park(
    pool: &PgPool,
    event: &LogEvent,
    reason: &WorkflowError,
) -> Result<(), WorkflowError> {
    let transaction_id = i64::try_from(event.transaction_id)
        .map_err(|error| WorkflowError::decode("log transaction id", error))?;
    let inserted = sqlx::query(
        "INSERT INTO workflow_dead_letters (event_id, position, transaction_id, tenant_id, \
             aggregate_type, aggregate_id, event_type, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event.event_id)
    .bind(event.position)
    .bind(transaction_id)
    .bind(event.stream.tenant())
    .bind(&event.aggregate_type)
    .bind(event.stream.aggregate_id())
    .bind(&event.event_type)
    .bind(reason.to_string())
    .execute(pool)
    .await?
    .rows_affected();
    if inserted > 0 {
        metrics::counter!(
            "workflow_parked_total",
            "aggregate" => event.aggregate_type.clone(),
            "event_type" => event.event_type.clone()
        )
        .increment(1);
    }
    Ok(())
}
