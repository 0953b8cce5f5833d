//! Consumer offsets stored in PostgreSQL (`rm_meta.projection_offsets`), moved only by a
//! compare-and-set inside the read-model transaction.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use crate::error::ProjectionError;

/// The stored `next_offset` of each of `partitions` that has one.
pub(super) async fn load(
    pool: &PgPool,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, ProjectionError> {
    let (topics, numbers): (Vec<String>, Vec<i32>) = partitions.iter().cloned().unzip();
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT o.topic, o.partition, o.next_offset FROM rm_meta.projection_offsets o
         JOIN unnest($2::text[], $3::int[]) AS a(topic, partition) USING (topic, partition)
         WHERE o.group_id = $1",
    )
    .bind(group)
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(topic, partition, next)| ((topic, partition), next))
        .collect())
}

/// Moves the partition's offset from `expected` to `next`; [`ProjectionError::Fenced`] when the
/// stored offset is no longer `expected` (another worker owns the partition now).
pub(super) async fn advance(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    expected: Option<i64>,
    next: i64,
) -> Result<(), ProjectionError> {
    let moved = match expected {
        Some(expected) => sqlx::query(
            "UPDATE rm_meta.projection_offsets SET next_offset = $4, updated_at = now()
             WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $5",
        )
        .bind(group)
        .bind(topic)
        .bind(partition)
        .bind(next)
        .bind(expected)
        .execute(&mut *conn)
        .await?
        .rows_affected(),
        None => sqlx::query(
            "INSERT INTO rm_meta.projection_offsets (group_id, topic, partition, next_offset)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(topic)
        .bind(partition)
        .bind(next)
        .execute(&mut *conn)
        .await?
        .rows_affected(),
    };
    if moved == 0 {
        return Err(ProjectionError::Fenced {
            topic: topic.to_owned(),
            partition,
        });
    }
    Ok(())
}
