//! Reads of the event store: streams for audit, aggregates folded from events, and the
//! engine-built snapshots that make cold loads of long streams cheap.
//!
//! All event payloads pass through the store's [`Upcasters`] before they are deserialised.

use std::sync::Arc;

use cqrs_es::Aggregate;
use futures::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::chain::{AuditKey, Hash, hash_from_bytes};
use crate::error::{DecodeError, StoreError, sequence_from_db, sequence_to_db};
use crate::executor::Coalescer;
use crate::log::GlobalLog;
use crate::plans::generic_plan_pool;
use crate::record::{EVENT_COLUMNS, RecordedEvent};
use crate::stream::StreamId;
use crate::upcast::{SerializedEvent, Upcasters};
use crate::wakeup::AppendSignal;

/// The PostgreSQL event store (tables created by [`crate::migrate`]).
///
/// Cheap to clone: a pool handle, a shared upcaster registry and the audit key that keys the
/// chain hashes of appended events (`crate::chain`).
#[derive(Clone, Debug)]
pub struct PgEventStore {
    pool: PgPool,
    upcasters: Arc<Upcasters>,
    audit_key: Arc<AuditKey>,
    /// Wakes log tailers after appends through this store (`crate::wakeup`).
    appended: AppendSignal,
    /// Writes the unkeyed appends of concurrent commands together.
    coalescer: Coalescer,
    /// The log tailers' connections: their read runs thousands of times a second, and
    /// planned afresh it cost more than it ran (`crate::plans`).
    log_pool: PgPool,
}

/// Connections of this store's [`PgEventStore::global_log`] readers, opened as needed: each
/// reader (the relay, the process managers, a rebuild) runs one statement at a time, and a
/// store may serve several.
const LOG_CONNECTIONS: u32 = 4;

/// An aggregate folded up to `version` (the sequence of the last applied event; 0 = no events).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedAggregate<A> {
    pub aggregate: A,
    pub version: u64,
}

impl<A: Default> Default for LoadedAggregate<A> {
    fn default() -> Self {
        Self {
            aggregate: A::default(),
            version: 0,
        }
    }
}

impl PgEventStore {
    /// A store keyed by [`AuditKey::from_env`] (`COMMERCE_AUDIT_KEY`, else the development key).
    pub fn new(pool: PgPool) -> Self {
        Self {
            appended: AppendSignal::new(pool.clone()),
            coalescer: Coalescer::new(&pool),
            log_pool: generic_plan_pool(&pool, LOG_CONNECTIONS),
            pool,
            upcasters: Arc::new(Upcasters::new()),
            audit_key: Arc::new(AuditKey::from_env()),
        }
    }

    /// Keys the chain hashes of events appended through this store with `key`.
    pub fn with_audit_key(mut self, key: AuditKey) -> Self {
        self.audit_key = Arc::new(key);
        self
    }

    pub fn audit_key(&self) -> &AuditKey {
        &self.audit_key
    }

    /// Uses these upcasters on every read path of this store (and of executors built on it).
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    pub(crate) fn coalescer(&self) -> &Coalescer {
        &self.coalescer
    }

    /// Call after events were committed through this store: wakes log tailers in this
    /// process now and in others by a `NOTIFY` sent soon after, outside the append.
    pub(crate) fn signal_appended(&self) {
        self.appended.committed();
    }

    /// The gap-free global log reader over this store.
    pub fn global_log(&self) -> GlobalLog {
        GlobalLog::new(self.log_pool.clone(), Arc::clone(&self.upcasters))
    }

    /// Every event of one stream in sequence order, with global coordinates and metadata
    /// (for audit history and replay).
    pub async fn load_stream(
        &self,
        aggregate_type: &str,
        stream: &StreamId,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
        );
        let mut rows = sqlx::query(&sql)
            .bind(aggregate_type)
            .bind(stream.aggregate_id())
            .fetch(&self.pool);
        let mut events = Vec::new();
        while let Some(row) = rows.try_next().await? {
            events.push(RecordedEvent::from_row(&row, &self.upcasters)?);
        }
        Ok(events)
    }

    /// Folds the stream from its first event, without snapshots: the reference state.
    /// With `up_to`, stops after that sequence (the state "as of" that event).
    pub async fn load_aggregate<A: Aggregate>(
        &self,
        stream: &StreamId,
        up_to: Option<u64>,
    ) -> Result<LoadedAggregate<A>, StoreError> {
        let mut loaded = LoadedAggregate::default();
        self.fold_after(stream, &mut loaded, up_to).await?;
        Ok(loaded)
    }

    /// The current state the fast way: the newest engine-built snapshot written with
    /// `state_version` (if it still deserialises) plus the events after it.
    pub async fn load_latest<A: Aggregate>(
        &self,
        stream: &StreamId,
        state_version: &str,
    ) -> Result<LoadedAggregate<A>, StoreError> {
        let mut loaded = self
            .read_snapshot::<A>(stream, state_version)
            .await?
            .unwrap_or_default();
        self.fold_after(stream, &mut loaded, None).await?;
        Ok(loaded)
    }

    /// The head of a stream: the sequence of its last event (0 when empty).
    ///
    /// `ORDER BY … LIMIT 1`, not `max(sequence)`: a prepared statement keeps the generic plan
    /// it chose while the table was small, and for `max` that plan was an aggregate over every
    /// index entry of the stream, so each look at a hot stream's head cost O(stream) (25 ms at
    /// 8,000 events). This form is one backward step of the primary key whatever the plan.
    pub async fn stream_version(
        &self,
        aggregate_type: &str,
        stream: &StreamId,
    ) -> Result<u64, StoreError> {
        let head: Option<i64> = sqlx::query_scalar(STREAM_HEAD)
            .bind(aggregate_type)
            .bind(stream.aggregate_id())
            .fetch_optional(&self.pool)
            .await?;
        Ok(sequence_from_db(head.unwrap_or(0))?)
    }

    /// The chain hash of the event at `sequence` of the stream (`None` for sequence 0, or for
    /// an event written without one).
    pub(crate) async fn chain_hash_at(
        &self,
        aggregate_type: &str,
        stream: &StreamId,
        sequence: u64,
    ) -> Result<Option<Hash>, StoreError> {
        if sequence == 0 {
            return Ok(None);
        }
        let hash: Option<Option<Vec<u8>>> = sqlx::query_scalar(
            "SELECT chain_hash FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
        )
        .bind(aggregate_type)
        .bind(stream.aggregate_id())
        .bind(sequence_to_db(sequence)?)
        .fetch_optional(&self.pool)
        .await?;
        Ok(hash_from_bytes(hash.flatten()))
    }

    /// Applies the events after `loaded.version` (up to `up_to`) to `loaded`, checking that
    /// sequences are contiguous.
    pub(crate) async fn fold_after<A: Aggregate>(
        &self,
        stream: &StreamId,
        loaded: &mut LoadedAggregate<A>,
        up_to: Option<u64>,
    ) -> Result<(), StoreError> {
        let aggregate_id = stream.aggregate_id();
        let upper = up_to.map_or(Ok(i64::MAX), sequence_to_db)?;
        let mut rows = sqlx::query(
            "SELECT sequence, event_type, event_version, payload FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence <= $4 \
             ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(&aggregate_id)
        .bind(sequence_to_db(loaded.version)?)
        .bind(upper)
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            self.apply_row(&aggregate_id, loaded, &row)?;
        }
        Ok(())
    }

    /// Upcasts and applies one event row (`sequence`, `event_type`, `event_version`,
    /// `payload`) to `loaded`, which must be at the previous sequence.
    pub(crate) fn apply_row<A: Aggregate>(
        &self,
        aggregate_id: &str,
        loaded: &mut LoadedAggregate<A>,
        row: &PgRow,
    ) -> Result<(), StoreError> {
        let sequence = sequence_from_db(row.try_get("sequence")?)?;
        let expected = loaded.version.saturating_add(1);
        if sequence != expected {
            return Err(DecodeError::Gap {
                stream: aggregate_id.to_owned(),
                expected,
                found: sequence,
            }
            .into());
        }
        let serialized = SerializedEvent::new(
            aggregate_id.to_owned(),
            usize::try_from(sequence).map_err(|_| DecodeError::OutOfRange {
                what: "sequence",
                value: sequence.to_string(),
            })?,
            A::TYPE.to_owned(),
            row.try_get("event_type")?,
            row.try_get("event_version")?,
            row.try_get("payload")?,
            serde_json::Value::Null,
        );
        let event = self.upcasters.upcast(serialized);
        let payload: A::Event = serde_json::from_value(event.payload).map_err(|source| {
            DecodeError::json(
                format!(
                    "{} {} v{} at sequence {sequence}",
                    aggregate_id, event.event_type, event.event_version
                ),
                source,
            )
        })?;
        loaded.aggregate.apply(payload);
        loaded.version = sequence;
        Ok(())
    }

    /// The newest engine-built snapshot, if one exists for `state_version` and still
    /// deserialises (a state shape change makes old snapshots unusable, not fatal).
    pub(crate) async fn read_snapshot<A: Aggregate>(
        &self,
        stream: &StreamId,
        state_version: &str,
    ) -> Result<Option<LoadedAggregate<A>>, StoreError> {
        let row = sqlx::query(
            "SELECT last_sequence, payload FROM aggregate_snapshots \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND state_version = $3",
        )
        .bind(A::TYPE)
        .bind(stream.aggregate_id())
        .bind(state_version)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let version = sequence_from_db(row.try_get("last_sequence")?)?;
        Ok(snapshot_state::<A>(&row, stream)?
            .map(|aggregate| LoadedAggregate { aggregate, version }))
    }
}

/// The state in a snapshot row's `payload`, deserialised straight from the `jsonb` text: a
/// flash sale's campaign is tens of megabytes of JSON, and a `serde_json::Value` of it first
/// would take several times that at once. `None` (logged) when it no longer deserialises (a
/// state shape change makes old snapshots unusable, not fatal).
pub(crate) fn snapshot_state<A: Aggregate>(
    row: &PgRow,
    stream: &StreamId,
) -> Result<Option<A>, StoreError> {
    match row.try_get::<sqlx::types::Json<A>, _>("payload") {
        Ok(state) => Ok(Some(state.0)),
        Err(sqlx::Error::ColumnDecode { source, .. }) => {
            tracing::warn!(%stream, error = %source, "ignoring a snapshot that no longer deserialises");
            Ok(None)
        }
        Err(other) => Err(other.into()),
    }
}

/// The sequence of a stream's last event (no row when the stream is empty).
const STREAM_HEAD: &str = "SELECT sequence FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
     ORDER BY sequence DESC LIMIT 1";

#[cfg(test)]
mod tests {
    use commerce_devstack::testkit::TestDatabase;

    use super::STREAM_HEAD;

    /// The plan a long-lived pooled connection ends up with, however long the stream grew
    /// since it was prepared: one backward step of the primary key.
    #[tokio::test]
    async fn given_the_generic_plan_when_reading_a_stream_head_then_it_is_one_index_step() {
        let db = TestDatabase::create().await.expect("test database");
        crate::migrate(db.pool()).await.expect("schema");
        let top =
            crate::plans::generic_plan(db.pool(), STREAM_HEAD, "text, text", "'order', 't/o'")
                .await;
        assert_eq!(top["Node Type"], "Limit", "{top}");
        let scan = &top["Plans"][0];
        assert_eq!(scan["Index Name"], "events_pkey", "{top}");
        assert_eq!(scan["Scan Direction"], "Backward", "{top}");
    }
}
