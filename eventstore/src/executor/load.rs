//! A cold slot's load in one round trip: the newest snapshot, the events after it and the chain
//! hash of the stream's head, read by a single statement instead of three.

use cqrs_es::Aggregate;
use futures::TryStreamExt;
use sqlx::Row;

use crate::chain::{Hash, hash_from_bytes};
use crate::error::{StoreError, sequence_from_db};
use crate::store::{LoadedAggregate, PgEventStore, snapshot_state};
use crate::stream::StreamId;

/// The snapshot row first (`sequence` NULL), then the events from the snapshot's own sequence
/// on (that first event only lends its chain hash; with no snapshot, from the first event).
const LOAD_HEAD: &str = "\
    WITH snap AS ( \
        SELECT last_sequence, payload FROM aggregate_snapshots \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND state_version = $3) \
    SELECT NULL::bigint AS sequence, NULL::text AS event_type, NULL::text AS event_version, \
           payload, last_sequence AS snapshot_sequence, NULL::bytea AS chain_hash \
      FROM snap \
    UNION ALL \
    SELECT sequence, event_type, event_version, payload, NULL, chain_hash FROM events \
     WHERE aggregate_type = $1 AND aggregate_id = $2 \
       AND sequence >= COALESCE((SELECT last_sequence FROM snap), 1) \
    ORDER BY sequence NULLS FIRST";

/// The aggregate at the stream's head and that head's chain hash (`None` for an empty stream).
///
/// Falls back to folding the whole stream when the snapshot no longer deserialises (a state
/// shape change makes old snapshots unusable, not fatal).
pub(crate) async fn load_head<A: Aggregate>(
    store: &PgEventStore,
    stream: &StreamId,
    state_version: &str,
) -> Result<(LoadedAggregate<A>, Option<Hash>), StoreError> {
    let aggregate_id = stream.aggregate_id();
    let mut rows = sqlx::query(LOAD_HEAD)
        .bind(A::TYPE)
        .bind(&aggregate_id)
        .bind(state_version)
        .fetch(store.pool());
    let mut loaded = LoadedAggregate::<A>::default();
    let mut head_hash = None;
    while let Some(row) = rows.try_next().await? {
        let sequence: Option<i64> = row.try_get("sequence")?;
        match sequence {
            None => {
                let version = sequence_from_db(row.try_get("snapshot_sequence")?)?;
                match snapshot_state::<A>(&row, stream)? {
                    Some(aggregate) => loaded = LoadedAggregate { aggregate, version },
                    None => {
                        drop(rows);
                        return fold_all(store, stream).await;
                    }
                }
            }
            Some(sequence) if sequence_from_db(sequence)? == loaded.version => {}
            Some(_) => store.apply_row(&aggregate_id, &mut loaded, &row)?,
        }
        let hash: Option<Vec<u8>> = row.try_get("chain_hash")?;
        head_hash = hash_from_bytes(hash);
    }
    if loaded.version == 0 {
        head_hash = None;
    }
    Ok((loaded, head_hash))
}

/// The slow path: every event from the first, and the head's chain hash.
async fn fold_all<A: Aggregate>(
    store: &PgEventStore,
    stream: &StreamId,
) -> Result<(LoadedAggregate<A>, Option<Hash>), StoreError> {
    let loaded = store.load_aggregate::<A>(stream, None).await?;
    let head_hash = store.chain_hash_at(A::TYPE, stream, loaded.version).await?;
    Ok((loaded, head_hash))
}
