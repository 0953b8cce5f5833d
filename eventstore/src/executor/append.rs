//! The transactional append: a command's events and its idempotency record commit together.
//!
//! postgres-es' own `persist` opens its own transaction, so it cannot also write the
//! idempotency row; this module inserts into the same `events` table with the same seven
//! columns (the extra columns take their defaults), in one multi-row statement.
//! A duplicate `(aggregate_type, aggregate_id, sequence)` is the optimistic-concurrency
//! conflict; a duplicate `(tenant_id, idempotency_key)` means a concurrent twin won.
//!
//! It also names `event_id`, `recorded_at` (microsecond precision), `prev_hash` and
//! `chain_hash`: the chain hash covers the first two, so they are chosen here rather than by
//! column defaults (see `crate::chain`).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::chain::{AuditKey, ChainFields, Hash};
use crate::error::{DecodeError, StoreError, sequence_from_db, sequence_to_db};
use crate::executor::outcome::{CommandContext, CommandOutcome, StoredEvent};
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
/// records the outcome under it, in one transaction. `head` is the stream at
/// `expected_version`: its chain hash starts the new events' chain.
pub(crate) async fn append(
    pool: &PgPool,
    key: &AuditKey,
    aggregate_type: &'static str,
    stream: &StreamId,
    head: (u64, Option<Hash>),
    events: Vec<NewEvent>,
    context: &CommandContext,
) -> Result<Appended, StoreError> {
    let (expected_version, head_hash) = head;
    let mut tx = pool.begin().await?;
    let chain = Chain {
        key,
        aggregate_type,
        stream,
        expected_version,
        head_hash,
    };
    let (stored, new_head) = match insert_events(&mut tx, &chain, events, context).await {
        Ok(stored) => stored,
        Err(error) if violates(&error, EVENTS_PKEY) => return Ok(Appended::Conflict),
        Err(error) => return Err(error.into()),
    };
    let outcome = CommandOutcome {
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: stream.clone(),
        last_sequence: stored
            .last()
            .map_or(expected_version, |event| event.sequence),
        last_position: stored.last().map(|event| event.position),
        events: stored,
        replayed: false,
        metadata: context.metadata.clone(),
    };
    if let Some(key) = &context.metadata.idempotency_key {
        let result = serde_json::to_value(&outcome)
            .map_err(|source| DecodeError::json("command outcome", source))?;
        let recorded = sqlx::query(
            "INSERT INTO command_idempotency \
                 (tenant_id, idempotency_key, request_hash, aggregate_type, aggregate_id, result) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&context.metadata.tenant_id)
        .bind(key)
        .bind(&context.request_hash)
        .bind(aggregate_type)
        .bind(stream.aggregate_id())
        .bind(result)
        .execute(&mut *tx)
        .await;
        match recorded {
            Ok(_) => {}
            Err(error) if violates(&error, IDEMPOTENCY_PKEY) => return Ok(Appended::KeyTaken),
            Err(error) => return Err(error.into()),
        }
    }
    tx.commit().await?;
    Ok(Appended::Committed(Box::new(outcome), new_head))
}

/// Where the appended events' chain starts.
struct Chain<'a> {
    key: &'a AuditKey,
    aggregate_type: &'a str,
    stream: &'a StreamId,
    expected_version: u64,
    head_hash: Option<Hash>,
}

async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    chain: &Chain<'_>,
    events: Vec<NewEvent>,
    context: &CommandContext,
) -> Result<(Vec<StoredEvent>, Option<Hash>), sqlx::Error> {
    if events.is_empty() {
        return Ok((Vec::new(), chain.head_hash));
    }
    let encode = |error: DecodeError| sqlx::Error::Encode(Box::new(error));
    let aggregate_id = chain.stream.aggregate_id();
    let metadata = serde_json::to_value(context.metadata.to_map())
        .map_err(|source| encode(DecodeError::json("event metadata", source)))?;
    // Microseconds: what `timestamptz` stores, so the hashed value is the stored value.
    let now = Utc::now();
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let mut sequences = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut versions = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut event_ids = Vec::with_capacity(events.len());
    let mut prev_hashes: Vec<Option<Vec<u8>>> = Vec::with_capacity(events.len());
    let mut chain_hashes: Vec<Vec<u8>> = Vec::with_capacity(events.len());
    let mut prev = chain.head_hash;
    let mut next = chain.expected_version;
    for event in events {
        next = next.checked_add(1).ok_or_else(|| {
            encode(DecodeError::OutOfRange {
                what: "sequence",
                value: "u64::MAX + 1".to_owned(),
            })
        })?;
        let event_id = Uuid::new_v4();
        let hash = ChainFields {
            aggregate_type: chain.aggregate_type,
            aggregate_id: &aggregate_id,
            sequence: next,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &event.payload,
            metadata: &metadata,
            event_id,
            recorded_at,
            prev_hash: prev.as_ref(),
        }
        .hash(chain.key);
        sequences.push(sequence_to_db(next).map_err(encode)?);
        types.push(event.event_type);
        versions.push(event.event_version);
        payloads.push(event.payload);
        event_ids.push(event_id);
        prev_hashes.push(prev.map(Vec::from));
        chain_hashes.push(hash.to_vec());
        prev = Some(hash);
    }
    let rows = sqlx::query(
        "INSERT INTO events \
             (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
              event_id, recorded_at, prev_hash, chain_hash) \
         SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, $6, \
                e.event_id, $8, e.prev_hash, e.chain_hash \
           FROM UNNEST($3::bigint[], $4::text[], $5::text[], $7::jsonb[], $9::uuid[], \
                       $10::bytea[], $11::bytea[]) \
                AS e(sequence, event_type, event_version, payload, event_id, prev_hash, chain_hash) \
         RETURNING sequence, event_type, event_version, position, event_id, recorded_at",
    )
    .bind(chain.aggregate_type)
    .bind(&aggregate_id)
    .bind(&sequences)
    .bind(&types)
    .bind(&versions)
    .bind(metadata)
    .bind(&payloads)
    .bind(recorded_at)
    .bind(&event_ids)
    .bind(&prev_hashes)
    .bind(&chain_hashes)
    .fetch_all(&mut **tx)
    .await?;
    let mut stored = rows
        .iter()
        .map(|row| {
            let sequence: i64 = row.try_get("sequence")?;
            let event_id: Uuid = row.try_get("event_id")?;
            let recorded_at: DateTime<Utc> = row.try_get("recorded_at")?;
            Ok(StoredEvent {
                sequence: sequence_from_db(sequence).map_err(encode)?,
                position: row.try_get("position")?,
                event_id,
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                recorded_at,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // RETURNING order is not guaranteed to follow the input order.
    stored.sort_unstable_by_key(|event| event.sequence);
    Ok((stored, prev))
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
