//! The atomic append: a command's events and its idempotency record commit together, in one
//! statement (one round trip, no explicit transaction). Unkeyed commands' events go through
//! the store's `coalesce` queue, which writes the appends of concurrent commands together.
//!
//! postgres-es' own `persist` opens its own transaction, so it cannot also write the
//! idempotency row; this module inserts into the same `events` table with the same seven
//! columns (the extra columns take their defaults), in one multi-row statement.
//! A stream already past the expected version is the optimistic-concurrency conflict: the
//! statement finds the first new sequence taken and writes nothing (no error, so a cold
//! slot's wrong guess that its stream is new costs no more than a read), and the primary key
//! `(aggregate_type, aggregate_id, sequence)` still catches two writers racing for it. A
//! duplicate `(tenant_id, idempotency_key)` means a concurrent twin won.
//!
//! It also names `event_id`, `recorded_at` (microsecond precision), `prev_hash` and
//! `chain_hash`: the chain hash covers the first two, so they are chosen here rather than by
//! column defaults (see `crate::chain`).

use chrono::{DateTime, Utc};
use cqrs_es::{Aggregate, DomainEvent};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgPool, Postgres, Row};
use uuid::Uuid;

use crate::chain::{AuditKey, ChainFields, Hash};
use crate::error::{DecodeError, StoreError, sequence_from_db, sequence_to_db};
use crate::executor::coalesce;
use crate::executor::outcome::{CommandContext, CommandOutcome, StoredEvent};
use crate::store::PgEventStore;
use crate::stream::StreamId;

const EVENTS_PKEY: &str = "events_pkey";
const IDEMPOTENCY_PKEY: &str = "command_idempotency_pkey";

/// An event produced by a command, serialised and ready to append.
#[derive(Debug)]
pub(crate) struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// `event` serialised for the append.
    pub(crate) fn of<A: Aggregate>(event: &A::Event) -> Result<Self, DecodeError> {
        Ok(Self {
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(event)
                .map_err(|source| DecodeError::json(format!("{} event", A::TYPE), source))?,
        })
    }
}

/// What the append did.
#[derive(Debug)]
pub(crate) enum Appended {
    /// The outcome and the chain hash of the stream's new head.
    Committed(Box<CommandOutcome>, Option<Hash>),
    /// Another writer already holds one of the sequences: nothing was written.
    Conflict,
    /// Another execution recorded this idempotency key first: nothing was written.
    KeyTaken,
}

/// An idempotency record found for a (tenant, key).
#[derive(Debug)]
pub(crate) struct PriorExecution {
    pub request_hash: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub outcome: serde_json::Value,
}

/// Appends `events` after `expected_version` and, when the command has an idempotency key,
/// records the outcome under it, atomically and in one round trip: one `INSERT` (the events),
/// or one statement whose data-modifying CTE inserts the events and whose outer `INSERT`
/// records the outcome built from their `RETURNING` rows, or one `INSERT` of the record alone
/// for a keyed command that appended nothing. `head` is the stream at `expected_version`: its
/// chain hash starts the new events' chain.
pub(crate) async fn append(
    store: &PgEventStore,
    aggregate_type: &'static str,
    stream: &StreamId,
    head: (u64, Option<Hash>),
    events: Vec<NewEvent>,
    context: &CommandContext,
) -> Result<Appended, StoreError> {
    let pool = store.pool();
    let events_len = events.len();
    let chain = Chain::at(store.audit_key(), aggregate_type, stream, head);
    let expected_version = chain.expected_version;
    let metadata = event_metadata(context)?;
    let rows = Rows::chain(&chain, events, vec![metadata; events_len])?;
    let head_hash = rows.head_hash;
    let idempotency_key = context.metadata.idempotency_key.as_deref();
    // What the record stores; the outer statement fills in the events and last position.
    let template = CommandOutcome {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: stream.clone(),
        last_sequence: expected_version,
        last_position: None,
        events: Vec::new(),
        replayed: false,
        metadata: context.metadata.clone(),
    };
    let inserted = match (rows.is_empty(), idempotency_key) {
        (true, None) => Ok(Vec::new()),
        (true, Some(idempotency_key)) => {
            record_alone(pool, &template, idempotency_key, context).await
        }
        (false, None) => store.coalescer().append(rows).await,
        (false, Some(idempotency_key)) => {
            let template = serde_json::to_value(&template)
                .map_err(|source| DecodeError::json("command outcome", source))?;
            rows.bind(sqlx::query(INSERT_EVENTS_AND_RECORD))
                .bind(&context.metadata.tenant_id)
                .bind(idempotency_key)
                .bind(&context.request_hash)
                .bind(template)
                .bind(rows.recorded_at_json())
                .fetch_all(pool)
                .await
        }
    };
    let inserted = match inserted {
        // The guard found the first new sequence taken: the stream moved past `expected_version`.
        Ok(inserted) if inserted.is_empty() && events_len > 0 => return Ok(Appended::Conflict),
        Ok(inserted) => inserted,
        Err(error) if violates(&error, EVENTS_PKEY) => return Ok(Appended::Conflict),
        Err(error) if violates(&error, IDEMPOTENCY_PKEY) => return Ok(Appended::KeyTaken),
        Err(error) => return Err(error.into()),
    };
    let stored = stored_events(&inserted)?;
    let outcome = CommandOutcome {
        last_sequence: stored
            .last()
            .map_or(expected_version, |event| event.sequence),
        last_position: stored.last().map(|event| event.position),
        events: stored,
        ..template
    };
    Ok(Appended::Committed(Box::new(outcome), head_hash))
}

/// Appends the events of several unkeyed commands after `expected_version`, in one
/// statement; `metadata` holds each event's metadata (its command's). Returns the stored
/// events in sequence order and the chain hash of the new head, or `None` when the stream
/// moved past `expected_version` (nothing was written). The commands are grouped already,
/// so the statement runs at once on the store's pool instead of waiting for a lane of the
/// cross-stream queue: a hot stream takes as many commands a second as round trips allow.
pub(crate) async fn append_batch(
    store: &PgEventStore,
    aggregate_type: &'static str,
    stream: &StreamId,
    head: (u64, Option<Hash>),
    events: Vec<NewEvent>,
    metadata: Vec<serde_json::Value>,
) -> Result<Option<(Vec<StoredEvent>, Option<Hash>)>, StoreError> {
    let chain = Chain::at(store.audit_key(), aggregate_type, stream, head);
    let rows = Rows::chain(&chain, events, metadata)?;
    let head_hash = rows.head_hash;
    match coalesce::append_grouped(store.pool(), &rows).await {
        Ok(inserted) if inserted.is_empty() => Ok(None),
        Ok(inserted) => Ok(Some((stored_events(&inserted)?, head_hash))),
        Err(error) if violates(&error, EVENTS_PKEY) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The metadata column of the events `context`'s command appends.
pub(crate) fn event_metadata(context: &CommandContext) -> Result<serde_json::Value, DecodeError> {
    serde_json::to_value(context.metadata.to_map())
        .map_err(|source| DecodeError::json("event metadata", source))
}

/// A keyed command's events and its idempotency record (`$12` tenant, `$13` key, `$14`
/// request hash) of the outcome `$15` completed with the inserted events (`$16` is their
/// recorded time as the outcome serialises it). The events' columns are bound as arrays;
/// `$1` aggregate type, `$2` aggregate id and `$8` recorded time are shared by every row.
/// The record's `INSERT` reads the events' `RETURNING` rows, so both commit or fail
/// together, and a conflict writes neither. As in the coalesced statement, the sequence
/// before the first must be stored, so a cache ahead of the store conflicts, not leaves a gap.
const INSERT_EVENTS_AND_RECORD: &str = "WITH ins AS (INSERT INTO events \
         (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
          event_id, recorded_at, prev_hash, chain_hash) \
     SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata, \
            e.event_id, $8, e.prev_hash, e.chain_hash \
       FROM UNNEST($3::bigint[], $4::text[], $5::text[], $7::jsonb[], $6::jsonb[], $9::uuid[], \
                   $10::bytea[], $11::bytea[]) \
            AS e(sequence, event_type, event_version, payload, metadata, event_id, prev_hash, \
                 chain_hash) \
      WHERE NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                           AND sequence = ($3::bigint[])[1]) \
        AND (($3::bigint[])[1] = 1 \
             OR EXISTS (SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                           AND sequence = ($3::bigint[])[1] - 1)) \
     RETURNING sequence, event_type, event_version, position, event_id, recorded_at), \
     rec AS (INSERT INTO command_idempotency \
         (tenant_id, idempotency_key, request_hash, aggregate_type, aggregate_id, result) \
     SELECT $12, $13, $14, $1, $2, $15::jsonb || jsonb_build_object( \
         'events', jsonb_agg(jsonb_build_object( \
             'sequence', sequence, 'position', position, 'event_id', event_id, \
             'event_type', event_type, 'event_version', event_version, 'recorded_at', $16::jsonb) \
             ORDER BY sequence), \
         'last_sequence', max(sequence), \
         'last_position', (array_agg(position ORDER BY sequence DESC))[1]) \
       FROM ins HAVING count(*) > 0) \
     SELECT sequence, event_type, event_version, position, event_id, recorded_at FROM ins";

/// The record of a keyed command that appended nothing.
async fn record_alone(
    pool: &PgPool,
    outcome: &CommandOutcome,
    idempotency_key: &str,
    context: &CommandContext,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let encode = |error: DecodeError| sqlx::Error::Encode(Box::new(error));
    let result = serde_json::to_value(outcome)
        .map_err(|source| encode(DecodeError::json("command outcome", source)))?;
    sqlx::query(
        "INSERT INTO command_idempotency \
             (tenant_id, idempotency_key, request_hash, aggregate_type, aggregate_id, result) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&context.metadata.tenant_id)
    .bind(idempotency_key)
    .bind(&context.request_hash)
    .bind(&outcome.aggregate_type)
    .bind(outcome.aggregate_id.aggregate_id())
    .bind(result)
    .execute(pool)
    .await?;
    Ok(Vec::new())
}

/// Where the appended events' chain starts.
struct Chain<'a> {
    key: &'a AuditKey,
    aggregate_type: &'a str,
    stream: &'a StreamId,
    expected_version: u64,
    head_hash: Option<Hash>,
}

impl<'a> Chain<'a> {
    /// The chain continuing `stream` from `head` (its version and chain hash).
    fn at(
        key: &'a AuditKey,
        aggregate_type: &'a str,
        stream: &'a StreamId,
        (expected_version, head_hash): (u64, Option<Hash>),
    ) -> Self {
        Self {
            key,
            aggregate_type,
            stream,
            expected_version,
            head_hash,
        }
    }
}

/// The new events as the statement's parameters, chained, and the chain hash of the last.
pub(super) struct Rows {
    pub(super) aggregate_type: String,
    pub(super) aggregate_id: String,
    pub(super) metadata: Vec<serde_json::Value>,
    pub(super) recorded_at: DateTime<Utc>,
    pub(super) sequences: Vec<i64>,
    pub(super) types: Vec<String>,
    pub(super) versions: Vec<String>,
    pub(super) payloads: Vec<serde_json::Value>,
    pub(super) event_ids: Vec<Uuid>,
    pub(super) prev_hashes: Vec<Option<Vec<u8>>>,
    pub(super) chain_hashes: Vec<Vec<u8>>,
    head_hash: Option<Hash>,
}

impl Rows {
    /// `metadata` holds each event's metadata, in the order of `events`.
    fn chain(
        chain: &Chain<'_>,
        events: Vec<NewEvent>,
        metadata: Vec<serde_json::Value>,
    ) -> Result<Self, DecodeError> {
        let aggregate_id = chain.stream.aggregate_id();
        // Microseconds: what `timestamptz` stores, so the hashed value is the stored value.
        let now = Utc::now();
        let recorded_at =
            DateTime::<Utc>::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let mut rows = Self {
            aggregate_type: chain.aggregate_type.to_owned(),
            aggregate_id,
            metadata,
            recorded_at,
            sequences: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            event_ids: Vec::with_capacity(events.len()),
            prev_hashes: Vec::with_capacity(events.len()),
            chain_hashes: Vec::with_capacity(events.len()),
            head_hash: chain.head_hash,
        };
        let mut next = chain.expected_version;
        for (event, metadata) in events.into_iter().zip(&rows.metadata) {
            next = next.checked_add(1).ok_or_else(|| DecodeError::OutOfRange {
                what: "sequence",
                value: "u64::MAX + 1".to_owned(),
            })?;
            let event_id = Uuid::new_v4();
            let prev = rows.head_hash;
            let hash = ChainFields {
                aggregate_type: chain.aggregate_type,
                aggregate_id: &rows.aggregate_id,
                sequence: next,
                event_type: &event.event_type,
                event_version: &event.event_version,
                payload: &event.payload,
                metadata,
                event_id,
                recorded_at,
                prev_hash: prev.as_ref(),
            }
            .hash(chain.key);
            rows.sequences.push(sequence_to_db(next)?);
            rows.types.push(event.event_type);
            rows.versions.push(event.event_version);
            rows.payloads.push(event.payload);
            rows.event_ids.push(event_id);
            rows.prev_hashes.push(prev.map(Vec::from));
            rows.chain_hashes.push(hash.to_vec());
            rows.head_hash = Some(hash);
        }
        Ok(rows)
    }

    fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.sequences.len()
    }

    /// The stream these rows extend and the sequences they take.
    pub(super) fn span(&self) -> (&str, &str, std::ops::RangeInclusive<i64>) {
        let first = self.sequences.first().copied().unwrap_or_default();
        let last = self.sequences.last().copied().unwrap_or_default();
        (&self.aggregate_type, &self.aggregate_id, first..=last)
    }

    /// The recorded time as the outcome serialises it (so a replayed outcome is identical).
    fn recorded_at_json(&self) -> serde_json::Value {
        serde_json::to_value(self.recorded_at).unwrap_or(serde_json::Value::Null)
    }

    /// Binds `$1` to `$11` of [`INSERT_EVENTS_AND_RECORD`].
    fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.aggregate_type)
            .bind(&self.aggregate_id)
            .bind(&self.sequences)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.metadata)
            .bind(&self.payloads)
            .bind(self.recorded_at)
            .bind(&self.event_ids)
            .bind(&self.prev_hashes)
            .bind(&self.chain_hashes)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The inserted events, in sequence order (`RETURNING` order is not guaranteed to follow
/// the input order).
fn stored_events(rows: &[PgRow]) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stored = rows
        .iter()
        .map(|row| {
            let sequence: i64 = row.try_get("sequence")?;
            Ok(StoredEvent {
                sequence: sequence_from_db(sequence)?,
                position: row.try_get("position")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    stored.sort_unstable_by_key(|event| event.sequence);
    Ok(stored)
}

/// The earlier execution recorded under (tenant, key), if any.
pub(crate) async fn prior_execution(
    pool: &PgPool,
    tenant_id: &str,
    key: &str,
) -> Result<Option<PriorExecution>, StoreError> {
    let row = sqlx::query(
        "SELECT request_hash, aggregate_type, aggregate_id, result FROM command_idempotency \
         WHERE tenant_id = $1 AND idempotency_key = $2",
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(PriorExecution {
            request_hash: row.try_get("request_hash")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            outcome: row.try_get("result")?,
        })
    })
    .transpose()
}

fn violates(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation() && db.constraint() == Some(constraint))
}
