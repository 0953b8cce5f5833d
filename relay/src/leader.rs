//! Leadership and the persisted cursor.
//!
//! Only one relay of a given name publishes: it holds a session-level advisory lock
//! (`pg_try_advisory_lock(hashtextextended('commerce-relay:<name>', 0))`) on a dedicated
//! connection. When that process dies or its connection drops, PostgreSQL releases the lock
//! and a standby's next attempt takes over. The cursor is read and written on that same
//! connection, so a relay that lost its lock (its connection is gone) cannot move the cursor
//! any more: a stale leader can at worst publish duplicates, never advance past unpublished
//! events.

use commerce_eventstore::LogCursor;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool, Row};

use crate::error::RelayError;

/// The lock holder's connection.
#[derive(Debug)]
pub(crate) struct Leadership {
    connection: PgConnection,
    name: String,
}

impl Leadership {
    /// Tries once to become the publishing instance; `None` when another instance holds the lock.
    pub(crate) async fn try_acquire(pool: &PgPool, name: &str) -> Result<Option<Self>, RelayError> {
        let mut connection = PgConnection::connect_with(&pool.connect_options()).await?;
        let acquired: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtextextended('commerce-relay:' || $1, 0))",
        )
        .bind(name)
        .fetch_one(&mut connection)
        .await?;
        if !acquired {
            // Closing is best effort: dropping the connection ends the session anyway.
            let _ = connection.close().await;
            return Ok(None);
        }
        sqlx::query("INSERT INTO relay_cursor (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .execute(&mut connection)
            .await?;
        Ok(Some(Self {
            connection,
            name: name.to_owned(),
        }))
    }

    /// The persisted cursor: where publishing resumes.
    pub(crate) async fn cursor(&mut self) -> Result<LogCursor, RelayError> {
        let row = sqlx::query(
            "SELECT transaction_id::text AS transaction_id, position FROM relay_cursor WHERE name = $1",
        )
        .bind(&self.name)
        .fetch_one(&mut self.connection)
        .await?;
        let transaction_id: String = row.try_get("transaction_id")?;
        Ok(LogCursor {
            transaction_id: transaction_id.parse().map_err(|_| {
                sqlx::Error::Decode(format!("relay cursor xid8 {transaction_id:?}").into())
            })?,
            position: row.try_get("position")?,
        })
    }

    /// Persists `cursor` (only after the broker acknowledged everything up to it).
    pub(crate) async fn save(&mut self, cursor: LogCursor) -> Result<(), RelayError> {
        sqlx::query(
            "UPDATE relay_cursor SET transaction_id = $2::text::xid8, position = $3, \
             updated_at = now() WHERE name = $1",
        )
        .bind(&self.name)
        .bind(cursor.transaction_id.to_string())
        .bind(cursor.position)
        .execute(&mut self.connection)
        .await?;
        Ok(())
    }

    /// Checks that the lock connection (and so the lock) is still alive.
    pub(crate) async fn check(&mut self) -> Result<(), RelayError> {
        self.connection.ping().await?;
        Ok(())
    }

    /// Releases the lock so a standby can take over at once.
    pub(crate) async fn release(mut self) {
        let released =
            sqlx::query("SELECT pg_advisory_unlock(hashtextextended('commerce-relay:' || $1, 0))")
                .bind(&self.name)
                .execute(&mut self.connection)
                .await;
        if let Err(error) = released {
            tracing::debug!(%error, "releasing the relay lock (the session end releases it anyway)");
        }
        let _ = self.connection.close().await;
    }
}

/// Committed events after the persisted cursor of relay `name`, and the age in seconds of
/// the oldest of them (measured from any instance, active or standby).
pub(crate) async fn lag(pool: &PgPool, name: &str) -> Result<(u64, f64), RelayError> {
    let row = sqlx::query(
        "WITH cursor AS ( \
             SELECT COALESCE((SELECT transaction_id FROM relay_cursor WHERE name = $1), '0'::xid8) AS tx, \
                    COALESCE((SELECT position FROM relay_cursor WHERE name = $1), 0) AS pos) \
         SELECT count(*) AS events, \
                COALESCE(EXTRACT(EPOCH FROM now() - min(e.recorded_at))::float8, 0) AS seconds \
         FROM events e, cursor c WHERE (e.transaction_id, e.position) > (c.tx, c.pos)",
    )
    .bind(name)
    .fetch_one(pool)
    .await?;
    let events: i64 = row.try_get("events")?;
    let seconds: f64 = row.try_get("seconds")?;
    Ok((u64::try_from(events).unwrap_or(0), seconds.max(0.0)))
}
