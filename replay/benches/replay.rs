//! Auditor-path figures, printed (not asserted), on the server in `DATABASE_URL`:
//! - replay (history with the state after every event) of one stream of 1,000 events, in ms;
//! - `verify_database` speed in events/s, beside a raw sequential read of the same `events`
//!   table in the same run: the benchmark's (e) baseline (`bench/src/baseline.rs`,
//!   `sequential_read`): `SELECT *` in keyset batches of 5,000 in log order, rows streamed and
//!   not decoded.
//!
//! The log besides the long counter stream holds streams of 8 events (`BENCH_STREAM_EVENTS`),
//! interleaved in the log, whose payloads are the contract fixtures (`contracts/tests/fixtures`:
//! orders, inventory, payments, shipments), so verification hashes payloads of the engine's
//! real shapes and sizes, with the engine's metadata. `BENCH_PAYLOADS=counter` writes tiny
//! counter events instead (the earlier figures).
//!
//! Also printed: the bench process's own CPU time per event in each (PostgreSQL's is not
//! counted), steadier than the rates when other work shares the machine.
//!
//! Run: `cargo bench -p commerce-replay --bench replay` (add `--profile dev` to reuse the test
//! build). `BENCH_EVENTS` sets the size of the log for the verify figures (default 20,000),
//! `BENCH_ROUNDS` the rounds measured on it (default 3), `BENCH_STREAM_EVENTS` the events per
//! fixture stream (1 to 8, default 8; 1 is the shape of the full benchmark's (a), a new
//! aggregate per command). A checkpoint is sealed after every 10,000 streams, so the log has
//! many checkpoints and their heads cover every stream, as on a long-running engine's log.

#[allow(dead_code)]
#[path = "../../eventstore/tests/common/counter.rs"]
mod counter;

use std::time::Instant;

use commerce_devstack::testkit::TestDatabase;
use commerce_eventstore::{
    AuditKey, CommandContext, CommandExecutor, EventMetadata, PgEventStore, StreamId, migrate,
};
use commerce_replay::{Upto, history, seal_checkpoint, verify_database};
use counter::{Counter, CounterCommand};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

/// The allocator of the `commerce` binary, whose `replay verify` this measures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The most events per fixture stream: one per fixture (and the default).
const FIXTURE_STREAM: usize = 8;
/// Commands in flight while the fixture-shaped part is written.
const APPENDERS: usize = 16;
/// Fixture streams written between two checkpoints.
const STREAMS_PER_CHECKPOINT: usize = 10_000;

/// Payloads of the engine's real event types (each carries its `event_type`).
const FIXTURES: [&str; 8] = [
    include_str!("../../contracts/tests/fixtures/order.created.json"),
    include_str!("../../contracts/tests/fixtures/inventory.reserved.json"),
    include_str!("../../contracts/tests/fixtures/order.stock_reserved.json"),
    include_str!("../../contracts/tests/fixtures/payment.created.json"),
    include_str!("../../contracts/tests/fixtures/order.awaiting_payment.json"),
    include_str!("../../contracts/tests/fixtures/order.confirmed.json"),
    include_str!("../../contracts/tests/fixtures/order.fulfillment_created.json"),
    include_str!("../../contracts/tests/fixtures/order.shipped.json"),
];

/// A stream whose events are arbitrary JSON payloads (the fixtures).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Fixtures {
    events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct FixtureEvent(serde_json::Value);

impl DomainEvent for FixtureEvent {
    fn event_type(&self) -> String {
        self.0["event_type"]
            .as_str()
            .unwrap_or("fixture")
            .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl Aggregate for Fixtures {
    const TYPE: &'static str = "Fixtures";
    type Command = Vec<serde_json::Value>;
    type Event = FixtureEvent;
    type Error = Never;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for payload in command {
            sink.write(FixtureEvent(payload), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, _event: Self::Event) {
        self.events += 1;
    }
}

/// The (e) baseline: every row of `events`, every column, in keyset batches; nothing decoded
/// beyond the row.
async fn raw_sequential_read(pool: &PgPool) -> u64 {
    const BATCH: i64 = 5_000;
    let mut after = 0_i64;
    let mut events = 0_u64;
    loop {
        let mut rows =
            sqlx::query("SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2")
                .bind(after)
                .bind(BATCH)
                .fetch(pool);
        let mut in_batch = 0_i64;
        while let Some(row) = rows.try_next().await.expect("raw read") {
            after = row.try_get("position").expect("position");
            in_batch += 1;
        }
        events += u64::try_from(in_batch).expect("non-negative");
        if in_batch < BATCH {
            return events;
        }
    }
}

/// CPU time this process's threads have used, in nanoseconds (the first field of every
/// `/proc/self/task/*/schedstat`; `None` where that is not readable): how much of its own CPU a
/// reader spends per event, a figure the other load on a shared machine disturbs far less
/// than the wall clock (and finer than `/proc/self/stat`'s 10 ms ticks).
fn cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split(' ').next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Microseconds of CPU per event between two [`cpu_ns`] readings.
fn cpu_us_per_event(before: Option<u64>, after: Option<u64>, events: u64) -> String {
    match (before, after) {
        (Some(before), Some(after)) => {
            let hundredths = after.saturating_sub(before) / 10 / events.max(1);
            format!("{}.{:02}", hundredths / 100, hundredths % 100)
        }
        _ => "n/a".to_owned(),
    }
}

fn context() -> CommandContext {
    CommandContext::new(EventMetadata::new("bench", "bench"))
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000);
    let counter_payloads = std::env::var("BENCH_PAYLOADS").is_ok_and(|value| value == "counter");
    let db = TestDatabase::create()
        .await
        .expect("a database in DATABASE_URL");
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(db.url())
        .await
        .expect("connect");
    migrate(&pool).await.expect("migrate");
    let key = AuditKey::development();
    let store = PgEventStore::new(pool.clone()).with_audit_key(key.clone());
    let counters = CommandExecutor::<Counter>::new(store.clone(), ());
    let fixtures = CommandExecutor::<Fixtures>::new(store.clone(), ());
    let payloads: Vec<serde_json::Value> = FIXTURES
        .iter()
        .map(|text| serde_json::from_str(text).expect("fixture JSON"))
        .collect();

    // One long stream: 1,000 events in 100 commands of 10.
    let long = StreamId::new("bench", "long").expect("stream");
    for _ in 0..100 {
        counters
            .execute(
                long.clone(),
                CounterCommand::AddMany(vec![1; 10]),
                context(),
            )
            .await
            .expect("append");
    }
    // The rest of the log.
    let written = if counter_payloads {
        let mut written = 1_000;
        let mut n = 0;
        while written < total {
            let stream = StreamId::new("bench", format!("s{n}")).expect("stream");
            counters
                .execute(stream, CounterCommand::AddMany(vec![1; 50]), context())
                .await
                .expect("append");
            written += 50;
            n += 1;
        }
        written
    } else {
        // One event per command, the streams interleaved in the log as the engine's are
        // (orders, payments and stock advance side by side), so the verifier's walk in
        // stream order jumps around the table as it does on a real log.
        let per_stream: usize = std::env::var("BENCH_STREAM_EVENTS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(FIXTURE_STREAM)
            .clamp(1, FIXTURE_STREAM);
        let streams: Vec<StreamId> = (0..total.saturating_sub(1_000).div_ceil(per_stream))
            .map(|n| StreamId::new("bench", format!("s{n}")).expect("stream"))
            .collect();
        for some in streams.chunks(STREAMS_PER_CHECKPOINT) {
            for payload in &payloads[..per_stream] {
                futures::stream::iter(some)
                    .map(|stream| {
                        fixtures.execute(stream.clone(), vec![payload.clone()], context())
                    })
                    .buffer_unordered(APPENDERS)
                    .try_collect::<Vec<_>>()
                    .await
                    .expect("append");
            }
            while seal_checkpoint(&pool, &key).await.expect("seal").is_some() {}
        }
        1_000 + streams.len() * per_stream
    };
    while seal_checkpoint(&pool, &key).await.expect("seal").is_some() {}
    println!(
        "log: {written} events ({} payloads)",
        if counter_payloads {
            "counter"
        } else {
            "fixture"
        }
    );

    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3);
    for round in 1..=rounds {
        let started = Instant::now();
        let replayed = history::<Counter>(&store, &long, Upto::End)
            .await
            .expect("history");
        let replay_us = started.elapsed().as_micros();
        assert_eq!(replayed.entries.len(), 1_000);

        let (started, cpu_before) = (Instant::now(), cpu_ns());
        let raw = raw_sequential_read(&pool).await;
        let raw_us = started.elapsed().as_micros().max(1);
        let raw_cpu = cpu_us_per_event(cpu_before, cpu_ns(), raw);

        let (started, cpu_before) = (Instant::now(), cpu_ns());
        let report = verify_database(&pool, &key).await.expect("verify");
        let verify_us = started.elapsed().as_micros().max(1);
        let verify_cpu = cpu_us_per_event(cpu_before, cpu_ns(), report.events);
        assert!(report.is_clean());
        let verify_rate = u128::from(report.events) * 1_000_000 / verify_us;
        let raw_rate = u128::from(raw) * 1_000_000 / raw_us;
        println!(
            "round {round}: replay of 1,000 events {}.{:03} ms | verify {verify_rate} events/s \
             ({} events, {} ms) | raw sequential read {raw_rate} events/s | verify/raw {} % \
             | bench process CPU per event: verify {verify_cpu} us, raw read {raw_cpu} us",
            replay_us / 1_000,
            replay_us % 1_000,
            report.events,
            verify_us / 1_000,
            verify_rate * 100 / raw_rate.max(1),
        );
    }
}
