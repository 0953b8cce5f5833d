//! Baselines measured in the same run, on the same PostgreSQL: what the hardware and the
//! database give without the engine.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::task::JoinSet;

/// A payload about the size of an inventory event's, so both write similar rows.
const PAYLOAD: &str = r#"{"event_type":"inventory.stock_set","sku":"BENCH-0-0000000","location":"default","on_hand":12345,"reason":"set by operator","at":"2026-01-01T00:00:00Z"}"#;

/// Creates the baseline's table (one identity key, one jsonb column).
pub async fn prepare(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_plain \
         (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Single-row INSERT commits (autocommit) from `clients` connections for `duration`;
/// returns commits per second.
pub async fn plain_inserts(url: &str, clients: usize, duration: Duration) -> anyhow::Result<f64> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(PgConnection::connect(url).await?);
    }
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for mut connection in connections {
        tasks.spawn(async move {
            let mut commits = 0_u64;
            while started.elapsed() < duration {
                sqlx::query("INSERT INTO bench_plain (payload) VALUES ($1::jsonb)")
                    .bind(PAYLOAD)
                    .execute(&mut connection)
                    .await?;
                commits += 1;
            }
            connection.close().await?;
            anyhow::Ok(commits)
        });
    }
    let mut commits = 0;
    while let Some(joined) = tasks.join_next().await {
        commits += joined??;
    }
    Ok(crate::stats::rate(commits, started.elapsed()))
}

/// What a raw read of the whole `events` table gave.
#[derive(Debug, Clone, Copy)]
pub struct SequentialRead {
    pub events: u64,
    pub elapsed: Duration,
}

/// Reads every row of `events` in log order, every column, in keyset batches (as a reader
/// that must not hold one long transaction does); decodes nothing beyond the row.
pub async fn sequential_read(pool: &PgPool) -> anyhow::Result<SequentialRead> {
    const BATCH: i64 = 5_000;
    let started = Instant::now();
    let mut after = 0_i64;
    let mut events = 0_u64;
    loop {
        let mut rows =
            sqlx::query("SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2")
                .bind(after)
                .bind(BATCH)
                .fetch(pool);
        let mut in_batch = 0_i64;
        while let Some(row) = rows.try_next().await? {
            after = row.try_get("position")?;
            in_batch += 1;
        }
        events += u64::try_from(in_batch)?;
        if in_batch < BATCH {
            break;
        }
    }
    Ok(SequentialRead {
        events,
        elapsed: started.elapsed(),
    })
}
