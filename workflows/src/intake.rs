//! Intake: the process managers tail the event store's gap-free global log.
//!
//! Why the log and not the Kafka topics: the log is the source of truth, exactly ordered
//! across aggregates (a reaction to `order.created` always completes before the reaction to
//! that order's `order.canceled` starts, which is what makes compensation find everything;
//! `schedule` keeps that order within each flow while different flows run side by side),
//! readable without a broker, and it lets one PostgreSQL transaction-free protocol decide who
//! processes: a session advisory lock.
//!
//! - Leadership: a dedicated connection holds `pg_try_advisory_lock(LEADER_LOCK)`. Only the
//!   holder reacts and fires deadlines; other engine processes wait as standbys and take over
//!   when the holder's session ends (crash, kill, network loss), so two processes never
//!   process the same events at the same time in normal operation. Even if they briefly did
//!   (a partitioned leader still finishing a step), every command is idempotent by key.
//! - Cursor: `workflow_cursor` holds the `(transaction_id, position)` up to which every event
//!   has been handled (reactions run concurrently, so later ones may be done too), saved at
//!   most once a second. A crash re-handles the events after it, whose commands replay.
//! - Failures: a transient failure (database, conflict, gateway) retries the same event with a
//!   capped backoff and never skips it; a permanent one (undecodable payload) would fail the
//!   same way for ever, so it is parked in `workflow_dead_letters` (see `dead_letters`) and the
//!   cursor moves on only once the row is written.

use std::time::Duration;

use commerce_eventstore::{GlobalLog, LogCursor, LogEvent};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

use crate::error::WorkflowError;

/// The advisory lock key of the process-manager leader ("cmwf" in ASCII).
const LEADER_LOCK: i64 = 0x636d_7766;

/// The name of the process managers' cursor row.
pub(crate) const CURSOR_NAME: &str = "process_managers";

/// The leader's lock, held by a session of its own.
#[derive(Debug)]
pub(crate) struct Leadership {
    connection: PgConnection,
}

impl Leadership {
    /// Tries once to become the leader.
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<Self>, WorkflowError> {
        let mut connection = PgConnection::connect_with(&pool.connect_options()).await?;
        let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK)
            .fetch_one(&mut connection)
            .await?;
        if acquired {
            Ok(Some(Self { connection }))
        } else {
            connection.close().await?;
            Ok(None)
        }
    }

    /// Whether the session that holds the lock is still alive.
    pub async fn still_held(&mut self) -> bool {
        self.connection.ping().await.is_ok()
    }

    /// Gives the lock back (also happens when the session ends).
    pub async fn release(mut self) {
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(LEADER_LOCK)
            .execute(&mut self.connection)
            .await;
        if let Err(error) = unlocked {
            tracing::warn!(%error, "could not release the workflows leader lock");
        }
        // Closing ends the session, which releases the lock anyway.
        let _closed = self.connection.close().await;
    }
}

/// The persisted position of the process managers in the global log.
pub(crate) async fn load_cursor(pool: &PgPool) -> Result<LogCursor, WorkflowError> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT transaction_id, position FROM workflow_cursor WHERE name = $1")
            .bind(CURSOR_NAME)
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some((transaction_id, position)) => LogCursor {
            transaction_id: u64::try_from(transaction_id)
                .map_err(|error| WorkflowError::decode("workflow cursor", error))?,
            position,
        },
        None => LogCursor::START,
    })
}

pub(crate) async fn save_cursor(pool: &PgPool, cursor: LogCursor) -> Result<(), WorkflowError> {
    let transaction_id = i64::try_from(cursor.transaction_id)
        .map_err(|error| WorkflowError::decode("log cursor", error))?;
    sqlx::query(
        "INSERT INTO workflow_cursor (name, transaction_id, position) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, \
           position = EXCLUDED.position, updated_at = now()",
    )
    .bind(CURSOR_NAME)
    .bind(transaction_id)
    .bind(cursor.position)
    .execute(pool)
    .await?;
    Ok(())
}

/// Reads the next batch after `cursor`.
pub(crate) async fn next_batch(
    log: &GlobalLog,
    cursor: LogCursor,
    limit: u32,
) -> Result<Vec<LogEvent>, WorkflowError> {
    Ok(log.read_after(cursor, limit).await?)
}

/// The delay before retry number `attempt` (1-based) of a transiently failing event.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(6);
    Duration::from_millis(50_u64 << exponent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_repeated_failures_when_backing_off_then_the_delay_grows_and_is_capped() {
        assert_eq!(retry_delay(1), Duration::from_millis(50));
        assert_eq!(retry_delay(2), Duration::from_millis(100));
        assert_eq!(retry_delay(50), Duration::from_millis(3200));
    }
}
