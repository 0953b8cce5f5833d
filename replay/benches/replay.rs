//! Auditor-path figures, printed (not asserted), on the server in `DATABASE_URL`:
//! - replay (history with the state after every event) of one stream of 1,000 events, in ms;
//! - `verify_database` speed in events/s, beside a raw sequential read of the same `events`
//!   table (`SELECT *` in keyset batches, rows decoded) in the same run.
//!
//! Run: `cargo bench -p commerce-replay --bench replay` (add `--profile dev` to reuse the test
//! build). `BENCH_EVENTS` sets the size of the log for the verify figures (default 20,000).

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
use sqlx::postgres::PgPoolOptions;

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000);
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
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());

    // One long stream: 1,000 events in 100 commands of 10.
    let long = StreamId::new("bench", "long").expect("stream");
    for _ in 0..100 {
        executor
            .execute(
                long.clone(),
                CounterCommand::AddMany(vec![1; 10]),
                CommandContext::new(EventMetadata::new("bench", "bench")),
            )
            .await
            .expect("append");
    }
    // The rest of the log: streams of 50 events.
    let mut written = 1_000;
    let mut n = 0;
    while written < total {
        let stream = StreamId::new("bench", format!("s{n}")).expect("stream");
        executor
            .execute(
                stream,
                CounterCommand::AddMany(vec![1; 50]),
                CommandContext::new(EventMetadata::new("bench", "bench")),
            )
            .await
            .expect("append");
        written += 50;
        n += 1;
    }
    while seal_checkpoint(&pool, &key).await.expect("seal").is_some() {}

    for round in 1..=3 {
        let started = Instant::now();
        let replayed = history::<Counter>(&store, &long, Upto::End)
            .await
            .expect("history");
        let replay_us = started.elapsed().as_micros();
        assert_eq!(replayed.entries.len(), 1_000);

        let started = Instant::now();
        let mut after = 0_i64;
        let mut raw = 0_u64;
        loop {
            let rows: Vec<(i64, serde_json::Value, serde_json::Value, Option<Vec<u8>>)> =
                sqlx::query_as(
                    "SELECT position, payload, metadata, chain_hash FROM events \
                     WHERE position > $1 ORDER BY position LIMIT 1000",
                )
                .bind(after)
                .fetch_all(&pool)
                .await
                .expect("raw read");
            let Some(last) = rows.last() else { break };
            after = last.0;
            raw += rows.len() as u64;
        }
        let raw_us = started.elapsed().as_micros().max(1);

        let started = Instant::now();
        let report = verify_database(&pool, &key).await.expect("verify");
        let verify_us = started.elapsed().as_micros().max(1);
        assert!(report.is_clean());
        println!(
            "round {round}: replay of 1,000 events {}.{:03} ms | verify {} events/s \
             ({} events, {} ms) | raw sequential read {} events/s",
            replay_us / 1_000,
            replay_us % 1_000,
            u128::from(report.events) * 1_000_000 / verify_us,
            report.events,
            verify_us / 1_000,
            u128::from(raw) * 1_000_000 / raw_us,
        );
    }
}
