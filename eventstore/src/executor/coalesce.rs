//! Group commit across streams: the unkeyed appends of concurrent commands, whatever their
//! streams, are written by one statement.
//!
//! A command on its own stream used to be one statement and one commit: a round trip, a
//! commit record and a WAL flush each. Under concurrency PostgreSQL then spent more CPU on
//! statements and commits than on rows: about 130 µs per command against 45 µs per plain
//! single-row `INSERT` commit (BENCHMARKS.md, 2026-11-29 05:10).
//!
//! Here at most [`LANES`] statements are in flight at once. An append that finds a lane free
//! and nobody waiting writes its rows at once, from its own task. Otherwise it joins a queue,
//! and a driver takes everything queued (up to [`MAX_EVENTS`] events) into one `INSERT`, and
//! the queue again until it is empty. One command at a time thus waits for nobody, and the
//! more commands arrive together, the more each statement carries. The statement keeps each
//! command's guarantees:
//! - every row carries its stream and the first sequence its command writes. A command whose
//!   first sequence is already taken writes nothing and finds none of its rows in the
//!   `RETURNING`: that is its conflict, and the others' rows are written all the same;
//! - two writers racing for one sequence still meet on the primary key. That error (any error
//!   PostgreSQL reports) aborted the whole statement, so nothing of it was written. Each of its
//!   commands is then appended again alone and gets its own answer;
//! - a lost connection leaves the commit unknown, so every command of the statement gets that
//!   error, as a lone append would. A retry under the same idempotency key is safe.
//!
//! The statements run on [`LANES`] connections of the coalescer's own, which plan them once
//! (`crate::plans`): the custom plan, knowing the arrays hold one command's rows, always
//! looked cheaper than the generic one, so PostgreSQL re-planned every call. Drivers are
//! tasks of their own, so a caller that goes away cannot leave the appends of the others
//! half-done. Keyed commands keep their own statement (`append`), which writes the
//! idempotency record in the same statement as the events. A hot stream's batch (`batch`)
//! is grouped already and runs the same `INSERT` at once on the store's pool
//! ([`append_grouped`]): queueing it behind other streams' appends would lengthen every
//! round of that stream.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::append::Rows;
use crate::plans::generic_plan_pool;

/// Statements in flight at once. Two keep both of the database's cores busy while the next
/// statement's commands gather; more lanes split the queue into smaller statements.
const LANES: usize = 2;

/// The most events one statement carries (a command's events are never split).
const MAX_EVENTS: usize = 1_000;

/// What a command's append gets back: its stored rows (none when its first sequence was
/// taken), or the error of its statement.
pub(super) type Written = Result<Vec<PgRow>, sqlx::Error>;

/// The cross-stream append queue of one store (clones share it).
#[derive(Clone)]
pub(crate) struct Coalescer {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Request>,
    /// Lanes held by drivers and by appends written from their callers' tasks.
    lanes_taken: usize,
}

struct Request {
    rows: Rows,
    reply: oneshot::Sender<Written>,
}

impl fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

impl Coalescer {
    /// Appends to `pool`'s database on [`LANES`] connections of its own, opened when first
    /// needed.
    pub(crate) fn new(pool: &PgPool) -> Self {
        let lanes = generic_plan_pool(pool, u32::try_from(LANES).unwrap_or(u32::MAX));
        Self {
            inner: Arc::new(Inner {
                pool: lanes,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Appends one command's `rows` (at least one) with the others queued meanwhile.
    pub(super) async fn append(&self, rows: Rows) -> Written {
        let (reply, written) = oneshot::channel();
        let (rows, start_driver) = {
            let mut state = self.inner.state();
            let lane_free = state.lanes_taken < LANES;
            if lane_free {
                state.lanes_taken += 1;
            }
            if lane_free && state.queue.is_empty() {
                (Some(rows), false)
            } else {
                state.queue.push_back(Request { rows, reply });
                (None, lane_free)
            }
        };
        if let Some(rows) = rows {
            // Nobody to wait for: written from this task, without the two cross-thread
            // wake-ups of a hand-off to a driver (a tenth of a millisecond here).
            let _lane = OwnLane(Arc::clone(&self.inner));
            return insert(&self.inner.pool, &[&rows]).await;
        }
        if start_driver {
            tokio::spawn(Driver::new(Arc::clone(&self.inner)).run());
        }
        // The driver was dropped with this append's statement (its runtime shut down).
        written.await.unwrap_or(Err(sqlx::Error::WorkerCrashed))
    }
}

/// A lane taken by an append written from its caller's task. Released when that append is
/// done or its caller goes away; appends queued meanwhile (every lane was busy) are then
/// handed to a driver with the lane.
struct OwnLane(Arc<Inner>);

impl Drop for OwnLane {
    fn drop(&mut self) {
        let mut state = self.0.state();
        if !state.queue.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(state);
            runtime.spawn(Driver::new(Arc::clone(&self.0)).run());
            return;
        }
        state.lanes_taken -= 1;
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a push, a pop or a count, so the state stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One lane: writes queued appends until the queue is empty.
struct Driver {
    inner: Arc<Inner>,
    /// Its lane is given back already (under the lock that found the queue empty).
    retired: bool,
}

impl Driver {
    fn new(inner: Arc<Inner>) -> Self {
        Self {
            inner,
            retired: false,
        }
    }

    async fn run(mut self) {
        while let Some(batch) = self.next_batch() {
            write(&self.inner.pool, batch).await;
        }
    }

    /// The queued appends up to [`MAX_EVENTS`] events (at least one append); `None` retires
    /// the driver, in the same critical section that found the queue empty, so an append
    /// queued right after starts a driver of its own.
    fn next_batch(&mut self) -> Option<Vec<Request>> {
        let mut state = self.inner.state();
        if state.queue.is_empty() {
            state.lanes_taken -= 1;
            self.retired = true;
            return None;
        }
        let mut batch = Vec::new();
        let mut events = 0;
        while let Some(request) = state.queue.pop_front() {
            events += request.rows.len();
            batch.push(request);
            let fits = state
                .queue
                .front()
                .is_some_and(|next| events + next.rows.len() <= MAX_EVENTS);
            if !fits {
                break;
            }
        }
        Some(batch)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropped mid-batch (its runtime shut down): free the lane for the next append.
        if !self.retired {
            self.inner.state().lanes_taken -= 1;
        }
    }
}

/// Writes `batch` in one statement and answers each append.
async fn write(pool: &PgPool, batch: Vec<Request>) {
    let rows: Vec<&Rows> = batch.iter().map(|request| &request.rows).collect();
    let result = insert(pool, &rows).await;
    match result {
        Ok(rows) => answer_each(batch, rows),
        Err(sqlx::Error::Database(_)) if batch.len() > 1 => {
            // The statement was aborted as a whole: nothing of it is stored.
            futures::future::join_all(batch.into_iter().map(|request| async move {
                let written = insert(pool, &[&request.rows]).await;
                // The caller may have gone away meanwhile: nobody to tell then.
                let _ = request.reply.send(written);
            }))
            .await;
        }
        Err(error) => {
            let mut batch = batch.into_iter();
            if let Some(first) = batch.next() {
                for request in batch {
                    let _ = request.reply.send(Err(unknown_outcome(&error)));
                }
                let _ = first.reply.send(Err(error));
            }
        }
    }
}

/// Hands each append the rows of its stream within its sequences (one pass over the rows,
/// then one lookup per append: a statement can carry a thousand appends).
fn answer_each(batch: Vec<Request>, rows: Vec<PgRow>) {
    let mut by_stream: HashMap<(String, String), Vec<PgRow>> = HashMap::new();
    for row in rows {
        let stream = row
            .try_get::<String, _>("aggregate_type")
            .and_then(|aggregate_type| Ok((aggregate_type, row.try_get("aggregate_id")?)));
        match stream {
            Ok(stream) => by_stream.entry(stream).or_default().push(row),
            Err(error) => {
                // The rows are stored, but whose they are is unknown: no append may take
                // the missing ones for a conflict (and run its command again).
                for request in batch {
                    let _ = request.reply.send(Err(unknown_outcome(&error)));
                }
                return;
            }
        }
    }
    for request in batch {
        let (aggregate_type, aggregate_id, sequences) = request.rows.span();
        let own = by_stream
            .get_mut(&(aggregate_type.to_owned(), aggregate_id.to_owned()))
            .map(|stream| {
                let (own, others) = std::mem::take(stream).into_iter().partition(|row| {
                    row.try_get::<i64, _>("sequence")
                        .is_ok_and(|sequence| sequences.contains(&sequence))
                });
                *stream = others;
                own
            })
            .unwrap_or_default();
        let _ = request.reply.send(Ok(own));
    }
}

/// The same failure for another append of the statement (`sqlx::Error` is not `Clone`).
fn unknown_outcome(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => sqlx::Error::Protocol(format!("a batched append failed: {other}")),
    }
}

/// Appends `rows`, already grouped by their caller, on `pool` without queueing.
pub(super) async fn append_grouped(pool: &PgPool, rows: &Rows) -> Written {
    insert(pool, &[rows]).await
}

/// One `INSERT` of the rows of every append of `appends`.
async fn insert(pool: &PgPool, appends: &[&Rows]) -> Result<Vec<PgRow>, sqlx::Error> {
    let columns = Columns::of(appends);
    sqlx::query(INSERT_EVENTS)
        .bind(&columns.aggregate_types)
        .bind(&columns.aggregate_ids)
        .bind(&columns.sequences)
        .bind(&columns.event_types)
        .bind(&columns.event_versions)
        .bind(&columns.payloads)
        .bind(&columns.metadata)
        .bind(&columns.event_ids)
        .bind(&columns.recorded_at)
        .bind(&columns.prev_hashes)
        .bind(&columns.chain_hashes)
        .bind(&columns.first_sequences)
        .fetch_all(pool)
        .await
}

/// The events' columns, one array element per event; `$12` is the first sequence its
/// command writes, whose being taken means the command's stream moved on. The sequence
/// before it must be stored: a cache ahead of the store (commits lost by
/// `synchronous_commit = off` or a failover) would otherwise write a gap no reader gets past,
/// and instead it conflicts and reloads. `OFFSET 0` keeps both checks a primary-key probe per
/// row: without it the planner turns `NOT EXISTS` into an anti-join and, not knowing how many
/// rows the arrays hold, hashes the whole `events` table.
const INSERT_EVENTS: &str = "INSERT INTO events \
         (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, \
          event_id, recorded_at, prev_hash, chain_hash) \
     SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, \
            e.payload, e.metadata, e.event_id, e.recorded_at, e.prev_hash, e.chain_hash \
       FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                   $6::jsonb[], $7::jsonb[], $8::uuid[], $9::timestamptz[], $10::bytea[], \
                   $11::bytea[], $12::bigint[]) \
            AS e(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
                 metadata, event_id, recorded_at, prev_hash, chain_hash, first_sequence) \
      WHERE NOT EXISTS (SELECT 1 FROM events x \
                         WHERE x.aggregate_type = e.aggregate_type \
                           AND x.aggregate_id = e.aggregate_id \
                           AND x.sequence = e.first_sequence OFFSET 0) \
        AND (e.first_sequence = 1 \
             OR EXISTS (SELECT 1 FROM events p \
                         WHERE p.aggregate_type = e.aggregate_type \
                           AND p.aggregate_id = e.aggregate_id \
                           AND p.sequence = e.first_sequence - 1 OFFSET 0)) \
     RETURNING aggregate_type, aggregate_id, sequence, event_type, event_version, position, \
               event_id, recorded_at";

/// The statement's parameters, borrowed from the appends.
#[derive(Default)]
struct Columns<'a> {
    aggregate_types: Vec<&'a str>,
    aggregate_ids: Vec<&'a str>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    event_versions: Vec<&'a str>,
    payloads: Vec<&'a serde_json::Value>,
    metadata: Vec<&'a serde_json::Value>,
    event_ids: Vec<Uuid>,
    recorded_at: Vec<DateTime<Utc>>,
    prev_hashes: Vec<Option<&'a [u8]>>,
    chain_hashes: Vec<&'a [u8]>,
    first_sequences: Vec<i64>,
}

impl<'a> Columns<'a> {
    fn of(appends: &[&'a Rows]) -> Self {
        let mut columns = Self::default();
        for rows in appends {
            let first = rows.sequences.first().copied().unwrap_or_default();
            let n = rows.len();
            columns
                .aggregate_types
                .extend(std::iter::repeat_n(rows.aggregate_type.as_str(), n));
            columns
                .aggregate_ids
                .extend(std::iter::repeat_n(rows.aggregate_id.as_str(), n));
            columns
                .recorded_at
                .extend(std::iter::repeat_n(rows.recorded_at, n));
            columns
                .first_sequences
                .extend(std::iter::repeat_n(first, n));
            columns.sequences.extend(&rows.sequences);
            columns
                .event_types
                .extend(rows.types.iter().map(String::as_str));
            columns
                .event_versions
                .extend(rows.versions.iter().map(String::as_str));
            columns.payloads.extend(&rows.payloads);
            columns.metadata.extend(&rows.metadata);
            columns.event_ids.extend(&rows.event_ids);
            columns
                .prev_hashes
                .extend(rows.prev_hashes.iter().map(Option::as_deref));
            columns
                .chain_hashes
                .extend(rows.chain_hashes.iter().map(Vec::as_slice));
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use commerce_devstack::testkit::TestDatabase;
    use serde_json::Value;

    use super::INSERT_EVENTS;

    /// Every node of a JSON plan, depth first.
    fn nodes(plan: &Value) -> Vec<&Value> {
        let mut all = vec![plan];
        if let Some(children) = plan["Plans"].as_array() {
            all.extend(children.iter().flat_map(nodes));
        }
        all
    }

    /// The plan the coalescer's lanes keep, whatever the arrays hold: each row's stream is
    /// probed on the primary key, and `events` is never read whole into a hash.
    #[tokio::test]
    async fn given_the_generic_plan_when_appending_then_each_row_probes_the_primary_key() {
        let db = TestDatabase::create().await.expect("test database");
        crate::migrate(db.pool()).await.expect("schema");
        crate::plans::analysed_events(db.pool(), 20_000).await;
        let top = crate::plans::generic_plan(
            db.pool(),
            INSERT_EVENTS,
            "text[], text[], bigint[], text[], text[], jsonb[], jsonb[], uuid[], \
             timestamptz[], bytea[], bytea[], bigint[]",
            &["'{}'"; 12].join(", "),
        )
        .await;
        let nodes = nodes(&top);
        assert!(
            nodes
                .iter()
                .all(|node| !node["Node Type"].as_str().unwrap_or("").contains("Hash")),
            "{top}"
        );
        assert!(
            nodes.iter().any(|node| node["Index Name"] == "events_pkey"),
            "{top}"
        );
        assert!(
            nodes.iter().all(|node| node["Node Type"] != "Seq Scan"),
            "{top}"
        );
    }
}
