//! Quiescence: the point after the faults where the engine has nothing left to do. Read from
//! the database, which every component writes its progress to:
//! - the relay's cursor is past every event of the log (relay lag 0);
//! - every stream's applied sequence in the read models equals its head, and nothing is
//!   pending behind a gap (projections caught up);
//! - every workflow cursor is past every event, and no deadline is due and unfired;
//! - the analyst streams' outbox is empty (everything queued reached its topic);
//! - and the log's head did not move between two polls.

use sqlx::{PgPool, Row};

use crate::FaultError;

/// Where the engine stands; all zero and a stable head means quiescent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub events: i64,
    pub head: i64,
    pub relay_behind: i64,
    pub streams_behind: i64,
    pub pending: i64,
    pub workflows_behind: i64,
    pub deadlines_due: i64,
    pub analytics_queued: i64,
}

impl Backlog {
    /// Nothing left to publish, project or react to.
    pub fn is_settled(&self) -> bool {
        self.relay_behind == 0
            && self.streams_behind == 0
            && self.pending == 0
            && self.workflows_behind == 0
            && self.deadlines_due == 0
            && self.analytics_queued == 0
    }
}

/// One reading of the backlog; a database error reads as "not yet" (it may be restarting).
pub async fn backlog(pool: &PgPool) -> Result<Backlog, FaultError> {
    let head =
        sqlx::query("SELECT count(*) AS events, coalesce(max(position), 0) AS head FROM events")
            .fetch_one(pool)
            .await?;
    let relay_behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e WHERE NOT EXISTS ( \
             SELECT 1 FROM relay_cursor c WHERE (e.transaction_id, e.position) <= (c.transaction_id, c.position))",
    )
    .fetch_one(pool)
    .await?;
    let streams_behind: i64 = sqlx::query_scalar(
        "WITH heads AS (SELECT aggregate_type, aggregate_id, max(sequence) AS head \
                        FROM events GROUP BY aggregate_type, aggregate_id) \
         SELECT count(*) FROM heads h LEFT JOIN rm.stream_state s \
           ON s.aggregate_type = h.aggregate_type \
          AND s.tenant_id = split_part(h.aggregate_id, '/', 1) \
          AND s.aggregate_id = substr(h.aggregate_id, strpos(h.aggregate_id, '/') + 1) \
         WHERE s.last_sequence IS DISTINCT FROM h.head",
    )
    .fetch_one(pool)
    .await?;
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.pending_events")
        .fetch_one(pool)
        .await?;
    let workflows_behind: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e WHERE NOT EXISTS ( \
             SELECT 1 FROM workflow_cursor c \
             WHERE (e.transaction_id::text::bigint, e.position) <= (c.transaction_id, c.position))",
    )
    .fetch_one(pool)
    .await?;
    let deadlines_due: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deadlines WHERE fired_at IS NULL AND due_at <= now()",
    )
    .fetch_one(pool)
    .await?;
    let analytics_queued: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_meta.analytics_outbox")
        .fetch_one(pool)
        .await?;
    Ok(Backlog {
        events: head.try_get("events")?,
        head: head.try_get("head")?,
        relay_behind,
        streams_behind,
        pending,
        workflows_behind,
        deadlines_due,
        analytics_queued,
    })
}
