//! Integrity verification: re-derives every chain hash, follows the links, and checks the
//! checkpoints, naming each damaged stream, sequence and kind of damage.
//!
//! Per stream (events in sequence order):
//! - a missing sequence between two present ones → [`DamageKind::Deleted`];
//! - an event whose stored hash is right for *another* sequence → [`DamageKind::Reordered`];
//! - an event whose hash does not match its fields, but whose stored hash is vouched for
//!   (the next event is authentic and links to it, or a checkpoint sealed it) → the event was
//!   edited: [`DamageKind::Altered`];
//! - an event whose hash nothing vouches for (no hash, a made-up hash, or an edited head of
//!   a stream written after the last checkpoint) → [`DamageKind::Inserted`];
//! - a stream that ends before the head a checkpoint sealed → [`DamageKind::Truncated`].
//!
//! Then the log: each checkpoint's seal and its link to the previous one, and the event count
//! and cumulative hash up to its cursor (a mismatch that no stream explains is reported
//! against the pseudo-stream `log`, with the checkpoint number as sequence).
//! Events appended after the last checkpoint can only be checked stream by stream: seal often.
//!
//! [`verify_database`] overlaps the database with the hashing: a reader task walks `events`
//! in primary-key order (keyset batches, rows streamed), handing chunks of rows through a
//! bounded channel to the caller's task, which reduces each to a [`CanonicalEvent`] (payload
//! and metadata canonicalised straight from the `jsonb` text), hashes and checks them. A
//! third task re-derives the checkpoints' log figures meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use commerce_eventstore::{AuditKey, Hash};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgRow;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chained::{CANONICAL_COLUMNS, CanonicalEvent, Rehash, StreamRef};
use crate::checkpoint::{Checkpoint, accumulate, head_key, load_checkpoints};
use crate::error::ReplayError;

/// Rows per keyset query of the stream walk and of the log check: few round trips; the rows
/// are streamed, so a batch is never held in memory at once.
const STREAM_BATCH: i64 = 5_000;
const LOG_BATCH: i64 = 5_000;
/// Rows handed from the reader to the checker at a time.
const CHUNK: usize = 256;
/// Chunks the reader may run ahead of the checker (bounds the memory in flight).
const CHUNKS_AHEAD: usize = 8;

/// What happened to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    Altered,
    Deleted,
    Reordered,
    Inserted,
    Truncated,
}

/// One finding: where and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// `"{aggregate_type} {aggregate_id}"`, or `log_checkpoints` / `log`.
    pub stream: String,
    pub sequence: u64,
    pub kind: DamageKind,
    pub detail: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {} sequence {}: {}",
            self.kind, self.stream, self.sequence, self.detail
        )
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub events: u64,
    pub streams: u64,
    pub checkpoints: u64,
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Sealed heads of every stream: sequence → hash, from all checkpoints.
pub(crate) type SealedHeads = HashMap<String, BTreeMap<u64, Hash>>;

/// Checks the checkpoint chain; returns the sealed heads.
pub(crate) fn check_checkpoints(
    key: &AuditKey,
    checkpoints: &[Checkpoint],
    damage: &mut Vec<Damage>,
) -> SealedHeads {
    let mut sealed = SealedHeads::new();
    let mut previous: Option<&Checkpoint> = None;
    for checkpoint in checkpoints {
        let mut problem = |kind, detail: String| {
            damage.push(Damage {
                stream: "log_checkpoints".into(),
                sequence: checkpoint.checkpoint_no,
                kind,
                detail,
            });
        };
        let expected_no = previous.map_or(1, |previous| previous.checkpoint_no + 1);
        if checkpoint.checkpoint_no != expected_no {
            problem(
                DamageKind::Deleted,
                format!(
                    "checkpoints {expected_no}..{} are missing",
                    checkpoint.checkpoint_no
                ),
            );
        } else if checkpoint.prev_seal != previous.map(|previous| previous.seal) {
            problem(
                DamageKind::Altered,
                "does not link to the previous checkpoint".into(),
            );
        }
        if checkpoint.expected_seal(key) != checkpoint.seal || !checkpoint.heads_match_digests() {
            problem(
                DamageKind::Altered,
                "the seal does not match its contents".into(),
            );
        }
        for heads in checkpoint.heads.values() {
            for (stream, head) in heads {
                sealed
                    .entry(stream.clone())
                    .or_default()
                    .insert(head.sequence, head.hash);
            }
        }
        previous = Some(checkpoint);
    }
    sealed
}

/// Analyses one stream's events (sorted by sequence). With `partial`, the first event is
/// taken as the start (an export from a later time).
pub(crate) fn check_stream<E: Rehash>(
    key: &AuditKey,
    stream: &StreamRef,
    events: &[E],
    sealed: Option<&BTreeMap<u64, Hash>>,
    partial: bool,
    damage: &mut Vec<Damage>,
) {
    let name = stream.to_string();
    let report = |damage: &mut Vec<Damage>, sequence, kind, detail: String| {
        damage.push(Damage {
            stream: name.clone(),
            sequence,
            kind,
            detail,
        });
    };
    let max = events.last().map_or(0, |event| event.sequence());
    let mut expected = match (partial, events.first()) {
        (true, Some(first)) => first.sequence(),
        _ => 1,
    };
    for (index, event) in events.iter().enumerate() {
        for missing in expected..event.sequence() {
            report(
                damage,
                missing,
                DamageKind::Deleted,
                "the event is missing".into(),
            );
        }
        expected = event.sequence() + 1;
        if event.is_authentic(key) {
            continue;
        }
        let Some(&stored) = event.chain_hash() else {
            report(
                damage,
                event.sequence(),
                DamageKind::Inserted,
                format!("event {} carries no chain hash", event.event_id()),
            );
            continue;
        };
        if let Some(original) =
            (1..=max + 1).find(|&s| s != event.sequence() && event.expected_hash(key, s) == stored)
        {
            report(
                damage,
                event.sequence(),
                DamageKind::Reordered,
                format!(
                    "event {} was written at sequence {original}",
                    event.event_id()
                ),
            );
            continue;
        }
        let next = events
            .get(index + 1)
            .filter(|next| next.sequence() == event.sequence() + 1);
        let vouched_by_next =
            next.is_some_and(|next| next.prev_hash() == Some(&stored) && next.is_authentic(key));
        let vouched_by_seal = sealed
            .and_then(|heads| heads.get(&event.sequence()))
            .is_some_and(|hash| *hash == stored);
        if vouched_by_next || vouched_by_seal {
            report(
                damage,
                event.sequence(),
                DamageKind::Altered,
                format!(
                    "event {} no longer matches its chain hash",
                    event.event_id()
                ),
            );
        } else {
            report(
                damage,
                event.sequence(),
                DamageKind::Inserted,
                format!("event {} has a hash nothing vouches for", event.event_id()),
            );
        }
    }
    check_sealed_tail(&name, max, sealed, damage);
}

/// A stream shorter than a head some checkpoint sealed lost its tail.
pub(crate) fn check_sealed_tail(
    name: &str,
    head: u64,
    sealed: Option<&BTreeMap<u64, Hash>>,
    damage: &mut Vec<Damage>,
) {
    let sealed_head = sealed
        .and_then(|heads| heads.keys().next_back().copied())
        .unwrap_or(0);
    for sequence in head + 1..=sealed_head {
        damage.push(Damage {
            stream: name.to_owned(),
            sequence,
            kind: DamageKind::Truncated,
            detail: format!("a checkpoint sealed this stream up to sequence {sealed_head}"),
        });
    }
}

/// Verifies the whole store: every stream, every checkpoint, and the log up to the last one.
pub async fn verify_database(pool: &PgPool, key: &AuditKey) -> Result<VerifyReport, ReplayError> {
    let checkpoints = load_checkpoints(pool).await?;
    let mut report = VerifyReport {
        checkpoints: checkpoints.len() as u64,
        ..VerifyReport::default()
    };
    let mut sealed = check_checkpoints(key, &checkpoints, &mut report.damage);
    // The log check only counts when nothing else is damaged, but it is a second pass over
    // the table: run it beside the stream walk and drop it if the walk finds damage.
    let log_check = report.damage.is_empty().then(|| {
        let pool = pool.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut damage = Vec::new();
            check_log(&pool, &checkpoints, &mut damage)
                .await
                .map(|()| damage)
        }))
    });

    let (sender, mut chunks) = mpsc::channel(CHUNKS_AHEAD);
    let mut reader = AbortOnDrop(tokio::spawn(read_in_stream_order(pool.clone(), sender)));
    // The events of the stream being collected (the walk gives each stream contiguously).
    let mut events: Vec<CanonicalEvent> = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        for row in chunk? {
            let event = CanonicalEvent::from_row(&row)?;
            report.events += 1;
            if events.last().is_some_and(|last| !last.same_stream(&event)) {
                finish_stream(key, &events, &mut sealed, &mut report);
                events.clear();
            }
            events.push(event);
        }
    }
    // The channel closes when the reader is done, or when it died: only the join tells.
    (&mut reader.0)
        .await
        .map_err(|error| ReplayError::Value(format!("the event reader failed: {error}")))?;
    if !events.is_empty() {
        finish_stream(key, &events, &mut sealed, &mut report);
    }
    // Sealed streams that have no event left at all.
    let mut vanished: Vec<_> = sealed.into_iter().collect();
    vanished.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    for (name, heads) in vanished {
        check_sealed_tail(&name, 0, Some(&heads), &mut report.damage);
    }
    if let Some(mut log_check) = log_check
        && report.damage.is_empty()
    {
        report.damage = (&mut log_check.0)
            .await
            .map_err(|error| ReplayError::Value(format!("the log check failed: {error}")))??;
    }
    Ok(report)
}

/// Aborts a spawned task when dropped: an early return (an error, or damage that makes the
/// log check moot) must not leave it reading the table.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Streams every row of [`CANONICAL_COLUMNS`] in `(aggregate_type, aggregate_id, sequence)`
/// order to `sender`, in chunks; a failure is sent as the last item. Stops early when the
/// receiver is gone. The rows go undecoded: the receiver's side canonicalises them, which
/// splits the CPU work about evenly between the two tasks.
async fn read_in_stream_order(pool: PgPool, sender: mpsc::Sender<Result<Vec<PgRow>, ReplayError>>) {
    if let Err(error) = walk_streams(&pool, &sender).await {
        // The receiver may be gone already: then nobody is left to tell.
        let _ = sender.send(Err(error)).await;
    }
}

/// The keyset walk of [`read_in_stream_order`]; `Ok` also when the receiver hung up.
async fn walk_streams(
    pool: &PgPool,
    sender: &mpsc::Sender<Result<Vec<PgRow>, ReplayError>>,
) -> Result<(), ReplayError> {
    let sql = format!(
        "SELECT {CANONICAL_COLUMNS} FROM events \
         WHERE (aggregate_type, aggregate_id, sequence) > ($1, $2, $3) \
         ORDER BY aggregate_type, aggregate_id, sequence LIMIT $4"
    );
    let mut after = (String::new(), String::new(), 0_i64);
    loop {
        let mut rows = sqlx::query(&sql)
            .bind(after.0.clone())
            .bind(after.1.clone())
            .bind(after.2)
            .bind(STREAM_BATCH)
            .fetch(pool);
        let mut in_batch = 0_i64;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(row) = rows.try_next().await? {
            in_batch += 1;
            if in_batch == STREAM_BATCH {
                after = CanonicalEvent::stream_key(&row)?;
            }
            chunk.push(row);
            if chunk.len() == CHUNK {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                if sender.send(Ok(full)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if !chunk.is_empty() && sender.send(Ok(chunk)).await.is_err() {
            return Ok(());
        }
        if in_batch < STREAM_BATCH {
            return Ok(());
        }
    }
}

/// Checks one complete stream (`events` non-empty, all of one stream).
fn finish_stream(
    key: &AuditKey,
    events: &[CanonicalEvent],
    sealed: &mut SealedHeads,
    report: &mut VerifyReport,
) {
    let Some(first) = events.first() else {
        return;
    };
    let stream = first.stream();
    let heads = sealed.remove(&head_key(&stream.aggregate_type, &stream.aggregate_id));
    check_stream(
        key,
        &stream,
        events,
        heads.as_ref(),
        false,
        &mut report.damage,
    );
    report.streams += 1;
}

/// Re-derives each checkpoint's count and cumulative hash from the log.
async fn check_log(
    pool: &PgPool,
    checkpoints: &[Checkpoint],
    damage: &mut Vec<Damage>,
) -> Result<(), ReplayError> {
    let Some(last) = checkpoints.last() else {
        return Ok(());
    };
    let mut pending = checkpoints.iter().peekable();
    let mut cumulative = [0_u8; 32];
    let mut count = 0_u64;
    let mut cursor = (0_u64, 0_i64);
    loop {
        // `events.` in the ORDER BY: the select list's `transaction_id` is text, and sorted as
        // text ("1000" before "999") the walk would skip events at a power of ten.
        let mut rows = sqlx::query_as::<_, (String, i64, Option<Vec<u8>>)>(
            "SELECT transaction_id::text, position, chain_hash FROM events \
             WHERE (transaction_id, position) > ($1::text::xid8, $2) \
               AND (transaction_id, position) <= ($3::text::xid8, $4) \
             ORDER BY events.transaction_id, events.position LIMIT $5",
        )
        .bind(cursor.0.to_string())
        .bind(cursor.1)
        .bind(last.transaction_id.to_string())
        .bind(last.position)
        .bind(LOG_BATCH)
        .fetch(pool);
        let mut in_batch = 0_i64;
        while let Some((txid, position, hash)) = rows.try_next().await? {
            in_batch += 1;
            let txid: u64 = txid
                .parse()
                .map_err(|_| ReplayError::Value(format!("bad xid8 {txid}")))?;
            // Checkpoints whose cursor lies before this event are complete.
            while let Some(checkpoint) =
                pending.next_if(|c| (txid, position) > (c.transaction_id, c.position))
            {
                compare(checkpoint, count, &cumulative, damage);
            }
            let hash = commerce_eventstore::hash_from_bytes(hash);
            cumulative = accumulate(&cumulative, hash.as_ref());
            count += 1;
            cursor = (txid, position);
        }
        if in_batch < LOG_BATCH {
            break;
        }
    }
    for checkpoint in pending {
        compare(checkpoint, count, &cumulative, damage);
    }
    Ok(())
}

fn compare(checkpoint: &Checkpoint, count: u64, cumulative: &Hash, damage: &mut Vec<Damage>) {
    if checkpoint.event_count == count && checkpoint.cumulative_hash == *cumulative {
        return;
    }
    let kind = match count.cmp(&checkpoint.event_count) {
        std::cmp::Ordering::Less => DamageKind::Deleted,
        std::cmp::Ordering::Greater => DamageKind::Inserted,
        std::cmp::Ordering::Equal => DamageKind::Reordered,
    };
    damage.push(Damage {
        stream: "log".into(),
        sequence: checkpoint.checkpoint_no,
        kind,
        detail: format!(
            "the log up to checkpoint {} holds {count} events (sealed: {}) or a different order",
            checkpoint.checkpoint_no, checkpoint.event_count
        ),
    });
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use commerce_devstack::testkit::TestDatabase;
    use commerce_eventstore::{ChainFields, migrate};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    /// Writes streams `Test t/s{i}` of the given lengths, every event with its authentic
    /// chain hash, in one statement.
    async fn write_streams(pool: &PgPool, key: &AuditKey, lengths: &[u64]) {
        let recorded_at = Utc
            .timestamp_micros(1_700_000_000_000_001)
            .single()
            .expect("a valid instant");
        let metadata = json!({"tenant_id": "t", "actor": "test"});
        let mut rows: (Vec<String>, Vec<i64>, Vec<String>, Vec<Uuid>) = Default::default();
        let mut hashes: (Vec<Option<Vec<u8>>>, Vec<Vec<u8>>) = Default::default();
        for (stream, &length) in lengths.iter().enumerate() {
            let aggregate_id = format!("t/s{stream}");
            let mut prev: Option<Hash> = None;
            for sequence in 1..=length {
                let payload = json!({"n": sequence, "stream": stream, "note": "é\n"});
                let event_id = Uuid::new_v4();
                let hash = ChainFields {
                    aggregate_type: "Test",
                    aggregate_id: &aggregate_id,
                    sequence,
                    event_type: "test.happened",
                    event_version: "1",
                    payload: &payload,
                    metadata: &metadata,
                    event_id,
                    recorded_at,
                    prev_hash: prev.as_ref(),
                }
                .hash(key);
                rows.0.push(aggregate_id.clone());
                rows.1.push(i64::try_from(sequence).expect("small"));
                rows.2.push(payload.to_string());
                rows.3.push(event_id);
                hashes.0.push(prev.map(Vec::from));
                hashes.1.push(hash.to_vec());
                prev = Some(hash);
            }
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata, event_id, recorded_at, prev_hash, chain_hash) \
             SELECT 'Test', id, seq, 'test.happened', '1', payload::jsonb, $5, event_id, $6, \
                 prev, hash \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::uuid[], $7::bytea[], \
                 $8::bytea[]) AS t(id, seq, payload, event_id, prev, hash)",
        )
        .bind(rows.0)
        .bind(rows.1)
        .bind(rows.2)
        .bind(rows.3)
        .bind(metadata)
        .bind(recorded_at)
        .bind(hashes.0)
        .bind(hashes.1)
        .execute(pool)
        .await
        .expect("insert the streams");
    }

    /// The walk's keyset batches end inside a stream (row 5,000 is `t/s1` sequence 2): every
    /// event is checked exactly once, the stream is checked whole, and damage right after the
    /// batch boundary is found.
    #[tokio::test]
    async fn given_a_log_longer_than_a_batch_when_verified_then_each_event_is_checked_once() {
        let db = TestDatabase::create()
            .await
            .expect("test database (is DATABASE_URL set?)");
        let pool = PgPool::connect(db.url()).await.expect("connect");
        migrate(&pool).await.expect("migrate");
        let key = AuditKey::development();
        write_streams(&pool, &key, &[4_998, 5, 300]).await;

        let report = verify_database(&pool, &key).await.expect("verify");
        assert!(report.is_clean(), "{:#?}", report.damage);
        assert_eq!((report.events, report.streams), (5_303, 3));

        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("SET LOCAL session_replication_role = replica")
            .execute(&mut *tx)
            .await
            .expect("bypass the append-only trigger");
        sqlx::query("DELETE FROM events WHERE aggregate_id = 't/s1' AND sequence = 3")
            .execute(&mut *tx)
            .await
            .expect("delete");
        tx.commit().await.expect("commit");

        let report = verify_database(&pool, &key).await.expect("verify");
        assert_eq!((report.events, report.streams), (5_302, 3));
        assert_eq!(
            report.damage,
            vec![Damage {
                stream: "Test t/s1".into(),
                sequence: 3,
                kind: DamageKind::Deleted,
                detail: "the event is missing".into(),
            }]
        );
    }
}
