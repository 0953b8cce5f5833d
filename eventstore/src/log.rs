//! The global log: every event of every stream in one gap-free order.
//!
//! Identity values are drawn at INSERT time but become visible at COMMIT, so a reader that
//! follows `position > last` can see position 11 before 10 commits and skip 10 for ever.
//! This reader instead orders by `(transaction_id, position)` and only returns rows whose
//! writing transaction is older than the oldest transaction still running
//! (`pg_snapshot_xmin(pg_current_snapshot())`): every such row is final (committed or never
//! visible), and every row that becomes visible later carries a larger transaction id than any
//! cursor handed out. Nothing is skipped and no timeout is involved. The price: a long
//! transaction anywhere in the cluster holds the reader back (it lags, it never loses events).
//!
//! [`LogWakeups`] is the push side: appends through the engine wake tailers of the same
//! process directly and others by a `NOTIFY` on [`EVENTS_CHANNEL`] sent outside the append
//! transaction (`crate::wakeup`). Tailers should still poll periodically, because the horizon
//! can also move when an unrelated long transaction ends, and writers outside the engine
//! signal nothing unless they `NOTIFY` themselves.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::error::StoreError;
use crate::record::{EVENT_COLUMNS, RecordedEvent};
use crate::upcast::Upcasters;

/// The notification channel appends are announced on (`NOTIFY commerce_events`).
pub const EVENTS_CHANNEL: &str = "commerce_events";

/// An event as read from the global log.
pub type LogEvent = RecordedEvent;

/// A position in the global log: the `(transaction_id, position)` of the last event read.
///
/// Persist it after handling a batch; [`LogCursor::START`] reads from the beginning. Its text
/// form is `"{transaction_id}:{position}"`. xid8 values are only comparable within one
/// cluster's history: a logical dump/restore into a fresh cluster needs a cursor rebase.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogCursor {
    pub transaction_id: u64,
    pub position: i64,
}

impl LogCursor {
    pub const START: Self = Self {
        transaction_id: 0,
        position: 0,
    };

    /// The cursor just past `event`.
    pub fn after(event: &LogEvent) -> Self {
        Self {
            transaction_id: event.transaction_id,
            position: event.position,
        }
    }
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transaction_id, self.position)
    }
}

/// A cursor string that is not `"{u64}:{i64}"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log cursor {0:?}: expected \"transaction_id:position\"")]
pub struct LogCursorError(String);

impl FromStr for LogCursor {
    type Err = LogCursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || LogCursorError(s.to_owned());
        let (transaction_id, position) = s.split_once(':').ok_or_else(invalid)?;
        Ok(Self {
            transaction_id: transaction_id.parse().map_err(|_| invalid())?,
            position: position.parse().map_err(|_| invalid())?,
        })
    }
}

/// Reads the global log. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GlobalLog {
    pool: PgPool,
    upcasters: Arc<Upcasters>,
}

impl GlobalLog {
    pub(crate) fn new(pool: PgPool, upcasters: Arc<Upcasters>) -> Self {
        Self { pool, upcasters }
    }

    /// Up to `limit` events after `cursor`, in log order, only from transactions that can no
    /// longer change (see the module doc). An empty result means "nothing final yet".
    pub async fn read_after(
        &self,
        cursor: LogCursor,
        limit: u32,
    ) -> Result<Vec<LogEvent>, StoreError> {
        let mut rows = sqlx::query(&READ_AFTER)
            .bind(cursor.transaction_id.to_string())
            .bind(cursor.position)
            .bind(i64::from(limit))
            .fetch(&self.pool);
        let mut events = Vec::new();
        while let Some(row) = rows.try_next().await? {
            events.push(RecordedEvent::from_row(&row, &self.upcasters)?);
        }
        Ok(events)
    }

    /// Subscribes to append notifications (one dedicated connection) and to the appends of
    /// this process.
    pub async fn wakeups(&self) -> Result<LogWakeups, StoreError> {
        let local = crate::wakeup::in_process();
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(EVENTS_CHANNEL).await?;
        Ok(LogWakeups { listener, local })
    }
}

/// [`GlobalLog::read_after`]'s statement, built once: the tailers run it at every commit.
static READ_AFTER: LazyLock<String> = LazyLock::new(read_after_sql);

/// [`GlobalLog::read_after`]'s statement: cursor `$1` (transaction id as text) and `$2`
/// (position), limit `$3`.
fn read_after_sql() -> String {
    // `events.` is load-bearing: the select list outputs `transaction_id::text AS
    // transaction_id`, and a bare `ORDER BY transaction_id` would sort by that text ("1000"
    // before "999"), so a batch taken across a power of ten skipped rows for ever.
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, position) > ($1::text::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.transaction_id, events.position \
         LIMIT $3"
    )
}

/// "New events may be readable": wake-ups for a log tailer.
#[derive(Debug)]
pub struct LogWakeups {
    listener: PgListener,
    /// Commits of this process, seen before their `NOTIFY` is sent.
    local: watch::Receiver<u64>,
}

impl LogWakeups {
    /// Waits for the next append notification or in-process commit. Several appends may
    /// collapse into one wake-up, one append may wake twice (signal and `NOTIFY`), and after a
    /// reconnect notifications sent meanwhile are lost: callers re-read from their cursor on
    /// every wake-up and also poll on a timer.
    pub async fn next(&mut self) -> Result<(), StoreError> {
        tokio::select! {
            received = self.listener.recv() => {
                received?;
            }
            // The sender is a process-wide static: this never reports it closed.
            _ = self.local.changed() => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_cursor_when_printed_and_parsed_then_it_round_trips() {
        let cursor = LogCursor {
            transaction_id: u64::MAX,
            position: 42,
        };
        assert_eq!(cursor.to_string().parse::<LogCursor>(), Ok(cursor));
        assert!("12".parse::<LogCursor>().is_err());
        assert!("a:1".parse::<LogCursor>().is_err());
    }

    #[test]
    fn cursors_order_by_transaction_then_position() {
        let early_tx_late_pos = LogCursor {
            transaction_id: 10,
            position: 99,
        };
        let late_tx_early_pos = LogCursor {
            transaction_id: 11,
            position: 5,
        };
        assert!(early_tx_late_pos < late_tx_early_pos);
    }

    /// The plan the store's log connections (`crate::plans`) keep for the tailers' read,
    /// whatever the cursor and the limit: the log-order index walked forward from the
    /// cursor, never the table scanned and sorted.
    #[tokio::test]
    async fn given_the_generic_plan_when_reading_after_a_cursor_then_the_log_index_is_walked() {
        let db = commerce_devstack::testkit::TestDatabase::create()
            .await
            .expect("test database");
        crate::migrate(db.pool()).await.expect("schema");
        crate::plans::analysed_events(db.pool(), 20_000).await;
        let top = crate::plans::generic_plan(
            db.pool(),
            &read_after_sql(),
            "text, bigint, bigint",
            "'0', 0, 1000",
        )
        .await;
        assert_eq!(top["Node Type"], "Limit", "{top}");
        let scan = &top["Plans"][0];
        assert_eq!(scan["Node Type"], "Index Scan", "{top}");
        assert_eq!(scan["Index Name"], "events_log_order", "{top}");
        assert_eq!(scan["Scan Direction"], "Forward", "{top}");
    }
}
