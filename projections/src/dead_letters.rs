//! Operator actions on parked records.

use sqlx::PgPool;

use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::projector::{Projector, StreamKey};
use crate::schema::{ReadModelSchema, SWAP_LOCK_KEY};

/// A parked record, as listed for an operator.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub tenant_id: Option<String>,
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    pub reason: String,
}

/// The dead letters no operator has resolved yet, oldest first.
pub async fn open_dead_letters(pool: &PgPool) -> Result<Vec<DeadLetter>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT id, topic, partition, \"offset\", tenant_id, aggregate_type, aggregate_id, reason
         FROM rm_meta.dead_letters WHERE resolved_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// Resolves a dead letter: applies `replacement` (the event as the event store holds it) when
/// given, lifts the block of its stream (unless another open dead letter holds it), and applies
/// what waited behind it. Returns how many events were applied.
pub async fn resolve_dead_letter(
    pool: &PgPool,
    id: i64,
    replacement: Option<EventRecord>,
    resolution: &str,
) -> Result<u32, ProjectionError> {
    let projector = Projector::new(ReadModelSchema::Live, true);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(SWAP_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    projector.begin(&mut tx).await?;
    let stream: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "UPDATE rm_meta.dead_letters SET resolved_at = now(), resolution = $2
         WHERE id = $1 AND resolved_at IS NULL
         RETURNING tenant_id, aggregate_type, aggregate_id",
    )
    .bind(id)
    .bind(resolution)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((Some(tenant_id), Some(aggregate_type), Some(aggregate_id))) = stream else {
        tx.commit().await?;
        return Ok(0);
    };
    let key = StreamKey {
        tenant_id,
        aggregate_type,
        aggregate_id,
    };
    if let Some(replacement) = replacement {
        // The stream is still blocked: this stores the replacement as pending, drained below.
        projector.project(&mut tx, &replacement.decode()?).await?;
    }
    let others: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm_meta.dead_letters
         WHERE resolved_at IS NULL AND tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3",
    )
    .bind(&key.tenant_id)
    .bind(&key.aggregate_type)
    .bind(&key.aggregate_id)
    .fetch_one(&mut *tx)
    .await?;
    let applied = if others == 0 {
        projector.unblock(&mut tx, &key).await?
    } else {
        0
    };
    tx.commit().await?;
    Ok(applied)
}
