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

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use commerce_eventstore::{AuditKey, Hash};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::chained::{CHAINED_COLUMNS, ChainedEvent, StreamRef};
use crate::checkpoint::{Checkpoint, accumulate, head_key, load_checkpoints};
use crate::error::ReplayError;

const BATCH: i64 = 1_000;

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
pub(crate) fn check_stream(
    key: &AuditKey,
    stream: &StreamRef,
    events: &[ChainedEvent],
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
    let max = events.last().map_or(0, |event| event.sequence);
    let mut expected = match (partial, events.first()) {
        (true, Some(first)) => first.sequence,
        _ => 1,
    };
    for (index, event) in events.iter().enumerate() {
        for missing in expected..event.sequence {
            report(
                damage,
                missing,
                DamageKind::Deleted,
                "the event is missing".into(),
            );
        }
        expected = event.sequence + 1;
        if event.is_authentic(key) {
            continue;
        }
        let Some(stored) = event.chain_hash else {
            report(
                damage,
                event.sequence,
                DamageKind::Inserted,
                format!("event {} carries no chain hash", event.event_id),
            );
            continue;
        };
        if let Some(original) =
            (1..=max + 1).find(|&s| s != event.sequence && event.expected_hash(key, s) == stored)
        {
            report(
                damage,
                event.sequence,
                DamageKind::Reordered,
                format!(
                    "event {} was written at sequence {original}",
                    event.event_id
                ),
            );
            continue;
        }
        let next = events
            .get(index + 1)
            .filter(|next| next.sequence == event.sequence + 1);
        let vouched_by_next =
            next.is_some_and(|next| next.prev_hash == Some(stored) && next.is_authentic(key));
        let vouched_by_seal = sealed
            .and_then(|heads| heads.get(&event.sequence))
            .is_some_and(|hash| *hash == stored);
        if vouched_by_next || vouched_by_seal {
            report(
                damage,
                event.sequence,
                DamageKind::Altered,
                format!("event {} no longer matches its chain hash", event.event_id),
            );
        } else {
            report(
                damage,
                event.sequence,
                DamageKind::Inserted,
                format!("event {} has a hash nothing vouches for", event.event_id),
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

    let sql = format!(
        "SELECT {CHAINED_COLUMNS} FROM events \
         WHERE (aggregate_type, aggregate_id, sequence) > ($1, $2, $3) \
         ORDER BY aggregate_type, aggregate_id, sequence LIMIT $4"
    );
    let mut after = (String::new(), String::new(), 0_i64);
    let mut current: Option<StreamRef> = None;
    let mut events: Vec<ChainedEvent> = Vec::new();
    loop {
        let rows = sqlx::query(&sql)
            .bind(&after.0)
            .bind(&after.1)
            .bind(after.2)
            .bind(BATCH)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = ChainedEvent::from_row(row)?;
            report.events += 1;
            let stream = event.stream();
            if current.as_ref() != Some(&stream) {
                if let Some(done) = current.replace(stream) {
                    finish_stream(key, &done, &events, &mut sealed, &mut report);
                }
                events.clear();
            }
            after = (
                event.aggregate_type.clone(),
                event.aggregate_id.clone(),
                i64::try_from(event.sequence).unwrap_or(i64::MAX),
            );
            events.push(event);
        }
    }
    if let Some(done) = current {
        finish_stream(key, &done, &events, &mut sealed, &mut report);
    }
    // Sealed streams that have no event left at all.
    let mut vanished: Vec<_> = sealed.into_iter().collect();
    vanished.sort_unstable_by(|(a, _), (b, _)| a.cmp(b));
    for (name, heads) in vanished {
        check_sealed_tail(&name, 0, Some(&heads), &mut report.damage);
    }
    if report.damage.is_empty() {
        check_log(pool, &checkpoints, &mut report.damage).await?;
    }
    Ok(report)
}

fn finish_stream(
    key: &AuditKey,
    stream: &StreamRef,
    events: &[ChainedEvent],
    sealed: &mut SealedHeads,
    report: &mut VerifyReport,
) {
    let heads = sealed.remove(&head_key(&stream.aggregate_type, &stream.aggregate_id));
    check_stream(
        key,
        stream,
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
        let rows: Vec<(String, i64, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT transaction_id::text, position, chain_hash FROM events \
             WHERE (transaction_id, position) > ($1::text::xid8, $2) \
               AND (transaction_id, position) <= ($3::text::xid8, $4) \
             ORDER BY events.transaction_id, events.position LIMIT $5",
        )
        .bind(cursor.0.to_string())
        .bind(cursor.1)
        .bind(last.transaction_id.to_string())
        .bind(last.position)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        for (txid, position, hash) in &rows {
            let txid: u64 = txid
                .parse()
                .map_err(|_| ReplayError::Value(format!("bad xid8 {txid}")))?;
            // Checkpoints whose cursor lies before this event are complete.
            while let Some(checkpoint) =
                pending.next_if(|c| (txid, *position) > (c.transaction_id, c.position))
            {
                compare(checkpoint, count, &cumulative, damage);
            }
            let hash = commerce_eventstore::hash_from_bytes(hash.clone());
            cumulative = accumulate(&cumulative, hash.as_ref());
            count += 1;
            cursor = (txid, *position);
        }
        if rows.is_empty() {
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
