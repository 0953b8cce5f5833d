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
//! - two authentic neighbours where the later one was chained after some other event (its
//!   `prev_hash` is not the earlier one's hash: histories spliced from two copies of the log,
//!   such as a restored backup and the live store) → [`DamageKind::Spliced`], at the later;
//!   so is an authentic event where a checkpoint sealed another one (a stream rolled back to
//!   a backup and written again);
//! - a stream that ends before the head a checkpoint sealed → [`DamageKind::Truncated`].
//!
//! Then the log: each checkpoint's seal and its link to the previous one, and the event count
//! and cumulative hash up to its cursor (a mismatch that no stream explains is reported
//! against the pseudo-stream `log`, with the checkpoint number as sequence).
//! Events appended after the last checkpoint can only be checked stream by stream: seal often.
//!
//! [`verify_database`] reads the table once, in log order, and overlaps the database with the
//! hashing: a reader task walks `events` by `(transaction_id, position)` (keyset batches, rows
//! streamed; the order the rows were written in, so the heap is read front to back), handing
//! chunks of rows through a bounded channel to the caller's task, which reduces each to a
//! [`CanonicalEvent`] (payload and metadata canonicalised straight from the `jsonb` text),
//! hashes it, feeds the checkpoints' log figures and follows its stream: a stream whose events
//! arrive as 1, 2, 3, … each authentic and chained after the one before is whole. The first
//! event that does not follow on cleanly makes its stream a suspect, and suspects are read
//! again whole, in sequence order, after the walk, to name their damage exactly as an export's
//! check does. The walk keeps one small entry per stream, in the same map as the stream's
//! sealed heads (its key, its heads, and its last sequence or suspicion), so the end of the
//! walk reads each stream once.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use commerce_eventstore::{AuditKey, Hash};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chained::{
    CANONICAL_COLUMN_COUNT, CANONICAL_COLUMNS, CanonicalEvent, Rehash, StreamRef,
};
use crate::checkpoint::{Checkpoint, accumulate, load_checkpoints, write_head_key};
use crate::error::ReplayError;

/// Rows per keyset query of the walk: few round trips; the rows are streamed, so a batch is
/// never held in memory at once.
const WALK_BATCH: i64 = 5_000;
/// Streams re-read whole per query, when the walk found them suspect.
const SUSPECTS_BATCH: usize = 256;
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
    /// Authentic, but chained after another event than the one now before it.
    Spliced,
}

/// One finding: where and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// `"{aggregate_type} {aggregate_id}"`, or `log_checkpoints` / `log`, or `export` (an
    /// export file's own seal).
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

/// Sealed heads of every stream, by `"{aggregate_type} {aggregate_id}"`, from all checkpoints.
pub(crate) type SealedHeads = foldhash::HashMap<String, StreamHeads>;

/// The heads the checkpoints sealed for one stream, by ascending sequence: a vector, not a
/// map, because a stream usually has one or two (a log of a million streams has a million
/// of these), and the first is kept inline, so a stream sealed once costs no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StreamHeads(SmallVec<[(u64, Hash); 1]>);

impl StreamHeads {
    /// Records a sealed head; a later checkpoint's hash for the same sequence wins.
    pub(crate) fn insert(&mut self, sequence: u64, hash: Hash) {
        // Checkpoints come oldest first, so a new head usually goes at the end.
        match self.0.last() {
            Some(&(last, _)) if last >= sequence => {
                match self
                    .0
                    .binary_search_by_key(&sequence, |&(sealed, _)| sealed)
                {
                    Ok(index) => self.0[index].1 = hash,
                    Err(index) => self.0.insert(index, (sequence, hash)),
                }
            }
            _ => self.0.push((sequence, hash)),
        }
    }

    /// The hash sealed for `sequence`, if a checkpoint sealed the stream there.
    fn get(&self, sequence: u64) -> Option<&Hash> {
        self.0
            .binary_search_by_key(&sequence, |&(sealed, _)| sealed)
            .ok()
            .map(|index| &self.0[index].1)
    }

    /// The highest sealed sequence.
    fn last(&self) -> u64 {
        self.0.last().map_or(0, |&(sequence, _)| sequence)
    }
}

/// Where a checkpoint's tenant digests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digests {
    /// Computed from the checkpoint's own heads when it was loaded (the database): the seal
    /// check covers the heads, and comparing the digests again would prove nothing.
    FromHeads,
    /// Given beside the heads (an export): the heads must be checked against them.
    Given,
}

/// Checks the checkpoint chain and moves each head out of the checkpoints (only their
/// cursors, counts and hashes are needed afterwards) into `seal`, as `(stream, sequence,
/// hash)`, oldest checkpoint first.
pub(crate) fn check_checkpoints(
    key: &AuditKey,
    checkpoints: &mut [Checkpoint],
    digests: Digests,
    damage: &mut Vec<Damage>,
    mut seal: impl FnMut(String, u64, Hash),
) {
    let mut previous: Option<(u64, Hash)> = None;
    for checkpoint in checkpoints {
        let mut problem = |kind, detail: String| {
            damage.push(Damage {
                stream: "log_checkpoints".into(),
                sequence: checkpoint.checkpoint_no,
                kind,
                detail,
            });
        };
        let expected_no = previous.map_or(1, |(previous_no, _)| previous_no + 1);
        if checkpoint.checkpoint_no != expected_no {
            problem(
                DamageKind::Deleted,
                format!(
                    "checkpoints {expected_no}..{} are missing",
                    checkpoint.checkpoint_no
                ),
            );
        } else if checkpoint.prev_seal != previous.map(|(_, previous_seal)| previous_seal) {
            problem(
                DamageKind::Altered,
                "does not link to the previous checkpoint".into(),
            );
        }
        let heads_match = digests == Digests::FromHeads || checkpoint.heads_match_digests();
        if checkpoint.expected_seal(key) != checkpoint.seal || !heads_match {
            problem(
                DamageKind::Altered,
                "the seal does not match its contents".into(),
            );
        }
        for heads in std::mem::take(&mut checkpoint.heads).into_values() {
            for (stream, head) in heads {
                seal(stream, head.sequence, head.hash);
            }
        }
        previous = Some((checkpoint.checkpoint_no, checkpoint.seal));
    }
}

/// Analyses one stream's events (sorted by sequence). With `partial`, the first event is
/// taken as the start (an export from a later time).
pub(crate) fn check_stream<E: Rehash>(
    key: &AuditKey,
    stream: &StreamRef,
    events: &[E],
    sealed: Option<&StreamHeads>,
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
    // The event before the one in hand, when it is authentic and at the sequence before.
    let mut authentic_predecessor: Option<&E> = None;
    for (index, event) in events.iter().enumerate() {
        for missing in expected..event.sequence() {
            report(
                damage,
                missing,
                DamageKind::Deleted,
                "the event is missing".into(),
            );
        }
        let predecessor = authentic_predecessor
            .take()
            .filter(|previous| previous.sequence() + 1 == event.sequence());
        expected = event.sequence() + 1;
        if event.is_authentic(key) {
            authentic_predecessor = Some(event);
            // Sequence 1 links to nothing, a later event to its authentic predecessor; a
            // predecessor that is missing or damaged is reported for itself.
            let spliced = match predecessor {
                Some(previous) => event.prev_hash() != previous.chain_hash(),
                None => event.sequence() == 1 && event.prev_hash().is_some(),
            };
            let sealed_other = sealed
                .and_then(|heads| heads.get(event.sequence()))
                .is_some_and(|hash| Some(hash) != event.chain_hash());
            if spliced {
                report(
                    damage,
                    event.sequence(),
                    DamageKind::Spliced,
                    format!(
                        "event {} was chained after another event than the one now before it",
                        event.event_id()
                    ),
                );
            } else if sealed_other {
                // Authentic and linked, but not the event a checkpoint sealed here: the
                // stream was rolled back (a restored backup) and written again.
                report(
                    damage,
                    event.sequence(),
                    DamageKind::Spliced,
                    format!(
                        "event {} is not the event a checkpoint sealed at this sequence",
                        event.event_id()
                    ),
                );
            }
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
            .and_then(|heads| heads.get(event.sequence()))
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
    sealed: Option<&StreamHeads>,
    damage: &mut Vec<Damage>,
) {
    let sealed_head = sealed.map_or(0, StreamHeads::last);
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
    let mut checkpoints = load_checkpoints(pool).await?;
    let mut report = VerifyReport {
        checkpoints: checkpoints.len() as u64,
        ..VerifyReport::default()
    };
    // Every stream a checkpoint sealed gets an entry: room for all of them at once (an upper
    // bound, as a stream may be sealed by several) spares the map its growth by doubling.
    let sealed_heads = checkpoints
        .iter()
        .flat_map(|checkpoint| checkpoint.heads.values())
        .map(BTreeMap::len)
        .sum();
    let mut streams = Streams::with_capacity(sealed_heads);
    check_checkpoints(
        key,
        &mut checkpoints,
        Digests::FromHeads,
        &mut report.damage,
        |stream, sequence, hash| streams.seal(stream, sequence, hash),
    );
    let checkpoint_damage = report.damage.len();
    let mut log = LogCheck::new(&checkpoints);

    let (sender, mut chunks) = mpsc::channel(CHUNKS_AHEAD);
    let mut reader = AbortOnDrop(tokio::spawn(read_in_log_order(pool.clone(), sender)));
    while let Some(chunk) = chunks.recv().await {
        for row in chunk? {
            let event = CanonicalEvent::from_row(&row)?;
            log.push(log_place(&row)?, event.chain_hash());
            report.events += 1;
            streams.follow(key, &event);
        }
    }
    // The channel closes when the reader is done, or when it died: only the join tells.
    (&mut reader.0)
        .await
        .map_err(|error| ReplayError::Value(format!("the event reader failed: {error}")))?;

    // Only streams that did not follow on cleanly, clean ones whose sealed head lies beyond
    // their last event, and sealed streams with no event left have damage to name.
    let mut suspects = Vec::new();
    for (name, stream) in streams.by_name {
        let Some(walk) = stream.walk else {
            check_sealed_tail(&name, 0, stream.sealed.as_ref(), &mut report.damage);
            continue;
        };
        report.streams += 1;
        match walk {
            StreamWalk::Following { head, .. } => {
                check_sealed_tail(&name, head, stream.sealed.as_ref(), &mut report.damage);
            }
            StreamWalk::Suspect { type_len } => {
                let (aggregate_type, rest) = name.split_at(type_len);
                let stream_ref = StreamRef {
                    aggregate_type: aggregate_type.to_owned(),
                    aggregate_id: rest[1..].to_owned(),
                };
                suspects.push((stream_ref, stream.sealed));
            }
        }
    }
    for batch in suspects.chunks(SUSPECTS_BATCH) {
        recheck_streams(pool, key, batch, &mut report.damage).await?;
    }
    report.damage[checkpoint_damage..]
        .sort_by(|a, b| (&a.stream, a.sequence).cmp(&(&b.stream, b.sequence)));
    // The log's figures only mean something when every stream and checkpoint is whole.
    if report.damage.is_empty() {
        report.damage = log.finish();
    }
    Ok(report)
}
/// Aborts a spawned task when dropped: an early return (an error) must not leave it reading
/// the table.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the walk in log order knows of one stream.
#[derive(Debug, Clone, Copy)]
enum StreamWalk {
    /// Every event so far followed on cleanly from sequence 1, each chained after the one
    /// before, up to `head`, whose chain hash starts with `link` (`None` before the first
    /// event). A prefix, not the hash: the walk keeps one entry per stream of the log, and a
    /// suspect is checked in full afterwards; a different hash of an authentic event that
    /// shares these 8 bytes is a one-in-2⁶⁴ chance, not something a forger can choose.
    Following { head: u64, link: Option<Link> },
    /// An event did not follow on cleanly (not authentic, or not the next sequence): the
    /// stream is checked whole, in sequence order, after the walk. The aggregate type is
    /// the first `type_len` bytes of its head key.
    Suspect { type_len: usize },
}

/// Every stream of the log by head key, `"{aggregate_type} {aggregate_id}"`: what the
/// checkpoints sealed of it and what the walk found. One map for both, so a stream costs one
/// look-up per event and none after the walk (the log may hold millions of streams).
#[derive(Debug)]
struct Streams {
    by_name: foldhash::HashMap<String, StreamState>,
    /// The head key of the event in hand, built here to look it up without allocating.
    name: String,
}

#[derive(Debug)]
struct StreamState {
    sealed: Option<StreamHeads>,
    /// `None` while the walk has met no event of the stream.
    walk: Option<StreamWalk>,
}

/// The first bytes of a chain hash, by which the walk follows a stream's links.
type Link = [u8; 8];

fn link_of(hash: &Hash) -> Link {
    let mut link = Link::default();
    link.copy_from_slice(&hash[..8]);
    link
}

impl StreamWalk {
    /// A stream before its first event.
    const START: Self = Self::Following {
        head: 0,
        link: None,
    };

    /// What the walk knows once `event`, the stream's next in log order, is taken in; `sealed`
    /// are the stream's sealed heads.
    fn then(self, key: &AuditKey, event: &CanonicalEvent, sealed: Option<&StreamHeads>) -> Self {
        let as_sealed = || {
            sealed
                .and_then(|heads| heads.get(event.sequence()))
                .is_none_or(|hash| Some(hash) == event.chain_hash())
        };
        match self {
            Self::Following { head, link }
                if event.sequence() == head + 1
                    && event.prev_hash().map(link_of) == link
                    && event.is_authentic(key)
                    && as_sealed() =>
            {
                Self::Following {
                    head: head + 1,
                    link: event.chain_hash().map(link_of),
                }
            }
            _ => Self::Suspect {
                type_len: event.stream_names().0.len(),
            },
        }
    }
}

impl Streams {
    /// No stream yet, with room for `streams`.
    fn with_capacity(streams: usize) -> Self {
        Self {
            by_name: foldhash::HashMap::with_capacity_and_hasher(streams, Default::default()),
            name: String::new(),
        }
    }

    /// Records a head a checkpoint sealed (before the walk meets any event).
    fn seal(&mut self, stream: String, sequence: u64, hash: Hash) {
        self.by_name
            .entry(stream)
            .or_insert(StreamState {
                sealed: None,
                walk: None,
            })
            .sealed
            .get_or_insert_default()
            .insert(sequence, hash);
    }

    /// Takes in `event`, its stream's next in log order.
    fn follow(&mut self, key: &AuditKey, event: &CanonicalEvent) {
        let (aggregate_type, aggregate_id) = event.stream_names();
        write_head_key(&mut self.name, aggregate_type, aggregate_id);
        let walk = |walk: Option<StreamWalk>, sealed| {
            Some(walk.unwrap_or(StreamWalk::START).then(key, event, sealed))
        };
        match self.by_name.get_mut(self.name.as_str()) {
            Some(stream) => stream.walk = walk(stream.walk, stream.sealed.as_ref()),
            None => {
                let state = StreamState {
                    sealed: None,
                    walk: walk(None, None),
                };
                self.by_name.insert(self.name.clone(), state);
            }
        }
    }
}

/// A walked row's place in the log, `(transaction_id, position)`: the two columns after
/// [`CANONICAL_COLUMNS`].
fn log_place(row: &PgRow) -> Result<(u64, i64), ReplayError> {
    let txid: &str = row.try_get(CANONICAL_COLUMN_COUNT)?;
    let txid = txid
        .parse()
        .map_err(|_| ReplayError::Value(format!("bad xid8 {txid}")))?;
    Ok((txid, row.try_get(CANONICAL_COLUMN_COUNT + 1)?))
}

/// Streams every row of `events` in log order, `(transaction_id, position)`, to `sender`, in
/// chunks; a failure is sent as the last item. Stops early when the receiver is gone. The
/// rows go undecoded: the receiver's side canonicalises them, which splits the CPU work
/// about evenly between the two tasks.
async fn read_in_log_order(pool: PgPool, sender: mpsc::Sender<Result<Vec<PgRow>, ReplayError>>) {
    if let Err(error) = walk_log(&pool, &sender).await {
        // The receiver may be gone already: then nobody is left to tell.
        let _ = sender.send(Err(error)).await;
    }
}

/// The keyset walk of [`read_in_log_order`]; `Ok` also when the receiver hung up.
async fn walk_log(
    pool: &PgPool,
    sender: &mpsc::Sender<Result<Vec<PgRow>, ReplayError>>,
) -> Result<(), ReplayError> {
    // `events.` in the ORDER BY: the select list's `txid` is text, and a bare name could be
    // taken for it.
    let sql = format!(
        "SELECT {CANONICAL_COLUMNS}, transaction_id::text AS txid, position FROM events \
         WHERE (transaction_id, position) > ($1::text::xid8, $2) \
         ORDER BY events.transaction_id, events.position LIMIT $3"
    );
    let mut after = (0_u64, 0_i64);
    loop {
        let mut rows = sqlx::query(&sql)
            .bind(after.0.to_string())
            .bind(after.1)
            .bind(WALK_BATCH)
            .fetch(pool);
        let mut in_batch = 0_i64;
        let mut chunk = Vec::with_capacity(CHUNK);
        while let Some(row) = rows.try_next().await? {
            in_batch += 1;
            if in_batch == WALK_BATCH {
                after = log_place(&row)?;
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
        if in_batch < WALK_BATCH {
            return Ok(());
        }
    }
}

/// Reads the given streams whole, in sequence order, and names their damage; one stream's
/// events in memory at a time.
async fn recheck_streams(
    pool: &PgPool,
    key: &AuditKey,
    streams: &[(StreamRef, Option<StreamHeads>)],
    damage: &mut Vec<Damage>,
) -> Result<(), ReplayError> {
    let (types, ids): (Vec<&str>, Vec<&str>) = streams
        .iter()
        .map(|(stream, _)| (stream.aggregate_type.as_str(), stream.aggregate_id.as_str()))
        .unzip();
    let mut unread: HashMap<&StreamRef, Option<&StreamHeads>> = streams
        .iter()
        .map(|(stream, heads)| (stream, heads.as_ref()))
        .collect();
    let mut check = |events: &[CanonicalEvent], damage: &mut Vec<Damage>| {
        if let Some(first) = events.first() {
            let stream = first.stream();
            let heads = unread.remove(&stream).flatten();
            check_stream(key, &stream, events, heads, false, damage);
        }
    };
    let sql = format!(
        "SELECT {CANONICAL_COLUMNS} FROM events \
         WHERE (aggregate_type, aggregate_id) IN \
               (SELECT * FROM UNNEST($1::text[], $2::text[])) \
         ORDER BY aggregate_type, aggregate_id, sequence"
    );
    let mut rows = sqlx::query(&sql).bind(types).bind(ids).fetch(pool);
    let mut events: Vec<CanonicalEvent> = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let event = CanonicalEvent::from_row(&row)?;
        if events.last().is_some_and(|last| !last.same_stream(&event)) {
            check(&events, damage);
            events.clear();
        }
        events.push(event);
    }
    check(&events, damage);
    // Streams whose every event went while the walk ran.
    for (stream, heads) in unread {
        check_stream::<CanonicalEvent>(key, stream, &[], heads, false, damage);
    }
    Ok(())
}

/// Re-derives each checkpoint's count and cumulative hash from the events walked in log
/// order, up to the last checkpoint's cursor.
struct LogCheck<'a> {
    pending: std::iter::Peekable<std::slice::Iter<'a, Checkpoint>>,
    last: Option<(u64, i64)>,
    cumulative: Hash,
    count: u64,
    damage: Vec<Damage>,
}

impl<'a> LogCheck<'a> {
    fn new(checkpoints: &'a [Checkpoint]) -> Self {
        Self {
            pending: checkpoints.iter().peekable(),
            last: checkpoints
                .last()
                .map(|last| (last.transaction_id, last.position)),
            cumulative: [0; 32],
            count: 0,
            damage: Vec::new(),
        }
    }

    /// The next event of the log (the walk gives them in order).
    fn push(&mut self, place: (u64, i64), chain_hash: Option<&Hash>) {
        if self.last.is_none_or(|last| place > last) {
            return;
        }
        // Checkpoints whose cursor lies before this event are complete.
        while let Some(checkpoint) = self
            .pending
            .next_if(|c| place > (c.transaction_id, c.position))
        {
            compare(checkpoint, self.count, &self.cumulative, &mut self.damage);
        }
        self.cumulative = accumulate(&self.cumulative, chain_hash);
        self.count += 1;
    }

    fn finish(mut self) -> Vec<Damage> {
        for checkpoint in self.pending {
            compare(checkpoint, self.count, &self.cumulative, &mut self.damage);
        }
        self.damage
    }
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

    #[test]
    fn given_heads_sealed_out_of_order_and_again_when_read_then_each_sequence_has_the_latest() {
        let mut heads = StreamHeads::default();
        for (sequence, byte) in [(5, 1), (2, 2), (9, 3), (5, 4), (7, 5)] {
            heads.insert(sequence, [byte; 32]);
        }
        let sealed: Vec<_> = [2, 5, 7, 9]
            .into_iter()
            .map(|sequence| heads.get(sequence).map(|hash| hash[0]))
            .collect();
        assert_eq!(sealed, [Some(2), Some(4), Some(5), Some(3)]);
        assert_eq!((heads.get(6), heads.last()), (None, 9));
    }

    /// Writes streams `Test t/s{i}` of the given lengths, every event with its authentic
    /// chain hash, in one statement: in stream order, or with `backwards` the other way
    /// round (each stream's later events earlier in the log).
    async fn write_streams(pool: &PgPool, key: &AuditKey, lengths: &[u64], backwards: bool) {
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
        if backwards {
            rows.0.reverse();
            rows.1.reverse();
            rows.2.reverse();
            rows.3.reverse();
            hashes.0.reverse();
            hashes.1.reverse();
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

    /// A database of its own with the event store's schema (dropped with the handle).
    async fn migrated_database() -> (TestDatabase, PgPool) {
        let db = TestDatabase::create()
            .await
            .expect("test database (is DATABASE_URL set?)");
        let pool = PgPool::connect(db.url()).await.expect("connect");
        migrate(&pool).await.expect("migrate");
        (db, pool)
    }

    /// The walk's keyset batches end inside a stream (row 5,000 is `t/s1` sequence 2): every
    /// event is checked exactly once, the stream is checked whole, and damage right after the
    /// batch boundary is found.
    #[tokio::test]
    async fn given_a_log_longer_than_a_batch_when_verified_then_each_event_is_checked_once() {
        let (_db, pool) = migrated_database().await;
        let key = AuditKey::development();
        write_streams(&pool, &key, &[4_998, 5, 300], false).await;

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

    /// Streams whose events the log holds in an order other than their sequences' are read
    /// again in sequence order, and found whole.
    #[tokio::test]
    async fn given_streams_written_backwards_in_the_log_when_verified_then_they_are_clean() {
        let (_db, pool) = migrated_database().await;
        let key = AuditKey::development();
        write_streams(&pool, &key, &[3, 1, 40], true).await;

        let report = verify_database(&pool, &key).await.expect("verify");
        assert!(report.is_clean(), "{:#?}", report.damage);
        assert_eq!((report.events, report.streams), (44, 3));
    }

    /// With the wrong key every stream is a suspect: more of them than one re-read takes, each
    /// named once, in stream order.
    #[tokio::test]
    async fn given_the_wrong_key_when_verified_then_every_stream_is_named_in_order() {
        let (_db, pool) = migrated_database().await;
        let lengths = vec![1; SUSPECTS_BATCH + 44];
        write_streams(&pool, &AuditKey::development(), &lengths, false).await;

        let report = verify_database(&pool, &AuditKey::new("wrong"))
            .await
            .expect("verify");
        let mut expected: Vec<String> =
            (0..lengths.len()).map(|i| format!("Test t/s{i}")).collect();
        expected.sort_unstable();
        let named: Vec<&str> = report.damage.iter().map(|d| d.stream.as_str()).collect();
        assert_eq!(named, expected);
        assert!(
            report
                .damage
                .iter()
                .all(|d| d.sequence == 1 && d.kind == DamageKind::Inserted),
            "{:#?}",
            report.damage
        );
    }
}
