//! Leadership and the persisted cursor.
//!
//! Only one relay of a given name publishes: it holds a session-level advisory lock
//! (`pg_try_advisory_lock(hashtextextended('commerce-relay:<name>', 0))`) on a dedicated
//! connection. When that process dies or its connection drops, PostgreSQL releases the lock
//! and a standby's next attempt takes over. The cursor is read and written on that same
//! connection, so a relay that lost its lock (its connection is gone) cannot move the cursor
//! any more: a stale leader can at worst publish duplicates, never advance past unpublished
//! events.

use commerce_contracts::topics::RELAYED_CHANNEL;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, PgPool};

use crate::error::RelayError;
use crate::source::LogSource;

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
    pub(crate) async fn cursor<S: LogSource>(&mut self) -> Result<S::Cursor, RelayError> {
        S::load_cursor(&mut self.connection, &self.name).await
    }

    /// Persists `cursor` (only after the broker acknowledged everything up to it).
    pub(crate) async fn save<S: LogSource>(&mut self, cursor: S::Cursor) -> Result<(), RelayError> {
        S::save_cursor(&mut self.connection, &self.name, cursor).await
    }

    /// Tells whoever listens on [`RELAYED_CHANNEL`] that records were published.
    pub(crate) async fn announce(&mut self) -> Result<(), RelayError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(RELAYED_CHANNEL)
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
