//! Hot aggregates: engine-built snapshots and the in-process cache must always equal the
//! full fold; a 10,000-event stream must not make commands slower (printed, not asserted).

mod common;

use std::time::{Duration, Instant};

use commerce_eventstore::{CommandExecutor, ExecutorConfig, PgEventStore};
use common::counter::{Counter, CounterCommand};
use common::{context, fresh_pool, stream};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config(snapshot_every: u64) -> ExecutorConfig {
    ExecutorConfig {
        snapshot_every,
        ..ExecutorConfig::default()
    }
}

fn command() -> impl Strategy<Value = CounterCommand> {
    prop_oneof![
        (-20_i64..20).prop_map(CounterCommand::Add),
        proptest::collection::vec(-20_i64..20, 0..6).prop_map(CounterCommand::AddMany),
        (0_i64..10).prop_map(CounterCommand::Take),
        "[a-z]{0,4}".prop_map(CounterCommand::Note),
        Just(CounterCommand::Noop),
    ]
}

fn json_of(counter: &Counter) -> Value {
    serde_json::to_value(counter).expect("state serialises")
}

#[test]
fn snapshot_loaded_and_cached_state_equal_the_full_fold() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_db, pool) = runtime.block_on(fresh_pool());
    let store = PgEventStore::new(pool);
    let proptest_config = ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    };
    proptest!(proptest_config, |(commands in proptest::collection::vec(command(), 1..25), every in 1_u64..8)| {
        runtime.block_on(async {
            let s = stream("t", &uuid::Uuid::new_v4().simple().to_string());
            let warm = CommandExecutor::<Counter>::with_config(store.clone(), (), config(every));
            for command in commands {
                let _ = warm.execute(s.clone(), command, context("t")).await;
            }
            warm.snapshots_written().await;
            let full = store.load_aggregate::<Counter>(&s, None).await.expect("full fold");
            let from_snapshot = store.load_latest::<Counter>(&s, "1").await.expect("snapshot load");
            prop_assert_eq!(json_of(&from_snapshot.aggregate), json_of(&full.aggregate));
            prop_assert_eq!(from_snapshot.version, full.version);
            if let Some((cached, version)) = warm.cached_state(&s).await {
                prop_assert_eq!(cached, json_of(&full.aggregate));
                prop_assert_eq!(version, full.version);
            }
            // A cold process (snapshot + tail) reaches the same state.
            let cold = CommandExecutor::<Counter>::with_config(store.clone(), (), config(every));
            cold.execute(s.clone(), CounterCommand::Noop, context("t")).await.expect("noop");
            let (cold_state, cold_version) = cold.cached_state(&s).await.expect("loaded");
            prop_assert_eq!(cold_state, json_of(&full.aggregate));
            prop_assert_eq!(cold_version, full.version);
            let snapshot_at: Option<i64> = sqlx::query_scalar(
                "SELECT last_sequence FROM aggregate_snapshots WHERE aggregate_id = $1",
            )
            .bind(s.aggregate_id())
            .fetch_optional(store.pool())
            .await
            .expect("snapshot row");
            if full.version >= every {
                prop_assert!(snapshot_at.is_some(), "a snapshot after {} events", full.version);
            }
            Ok(())
        })?;
    });
}

#[tokio::test]
async fn given_unusable_snapshots_when_loading_then_the_events_are_folded_instead() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let s = stream("t", "c");
    let executor = CommandExecutor::<Counter>::with_config(store.clone(), (), config(2));
    executor
        .execute(
            s.clone(),
            CounterCommand::AddMany(vec![1, 2, 3]),
            context("t"),
        )
        .await
        .expect("append");
    executor.snapshots_written().await;
    let full = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("fold");
    // Another state version: ignored.
    let other = store.load_latest::<Counter>(&s, "2").await.expect("load");
    assert_eq!(other, full);
    // A snapshot that no longer deserialises: ignored, not fatal.
    let corrupted = sqlx::query("UPDATE aggregate_snapshots SET payload = $1")
        .bind(json!({"unexpected": true}))
        .execute(store.pool())
        .await
        .expect("corrupt the snapshot");
    assert_eq!(corrupted.rows_affected(), 1, "the snapshot was written");
    assert_eq!(
        store.load_latest::<Counter>(&s, "1").await.expect("load"),
        full
    );
    // A cold executor's one-statement load falls back to the fold too.
    let cold = CommandExecutor::<Counter>::with_config(store.clone(), (), config(2));
    cold.execute(s.clone(), CounterCommand::Noop, context("t"))
        .await
        .expect("a command on the stream");
    let (state, version) = cold.cached_state(&s).await.expect("loaded");
    assert_eq!((state, version), (json_of(&full.aggregate), full.version));
}

#[tokio::test]
async fn given_a_history_when_loaded_as_of_a_sequence_then_later_events_are_left_out() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let s = stream("t", "c");
    CommandExecutor::<Counter>::new(store.clone(), ())
        .execute(
            s.clone(),
            CounterCommand::AddMany(vec![1, 10, 100]),
            context("t"),
        )
        .await
        .expect("append");
    let as_of = store
        .load_aggregate::<Counter>(&s, Some(2))
        .await
        .expect("as of 2");
    assert_eq!((as_of.aggregate.value, as_of.version), (11, 2));
}

async fn median_latency(
    executor: &CommandExecutor<Counter>,
    s: &commerce_eventstore::StreamId,
) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        executor
            .execute(s.clone(), CounterCommand::Add(1), context("t"))
            .await
            .expect("add");
        samples.push(started.elapsed());
    }
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn a_10000_event_stream_stays_fast() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::with_config(store.clone(), (), config(100));
    let short = stream("t", "short");
    let long = stream("t", "long");
    executor
        .execute(short.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("short");
    for _ in 0..20 {
        executor
            .execute(
                long.clone(),
                CounterCommand::AddMany(vec![1; 500]),
                context("t"),
            )
            .await
            .expect("bulk");
    }
    assert_eq!(
        store.stream_version("Counter", &long).await.expect("head"),
        10_000
    );

    let short_warm = median_latency(&executor, &short).await;
    let long_warm = median_latency(&executor, &long).await;

    let started = Instant::now();
    let full = store
        .load_aggregate::<Counter>(&long, None)
        .await
        .expect("full");
    let full_fold = started.elapsed();
    let started = Instant::now();
    let latest = store
        .load_latest::<Counter>(&long, "1")
        .await
        .expect("snapshot");
    let snapshot_load = started.elapsed();
    assert_eq!(latest, full);

    let cold = CommandExecutor::<Counter>::with_config(store.clone(), (), config(100));
    let started = Instant::now();
    cold.execute(long.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("cold");
    let cold_command = started.elapsed();

    println!(
        "10k-event stream: warm command median {long_warm:?} (1-event stream: {short_warm:?}); \
         cold command {cold_command:?}; snapshot+tail load {snapshot_load:?} vs full fold of {} events {full_fold:?}",
        full.version
    );
}

#[tokio::test]
async fn given_a_snapshot_large_enough_to_compress_when_written_then_it_is_stored_with_lz4() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::with_config(store.clone(), (), config(2));
    let s = stream("t", "noted");
    // Notes make the state grow with the stream, as a campaign's participants do.
    let notes = (0..400)
        .map(|n| CounterCommand::Note(format!("participant-{n:04}")))
        .collect::<Vec<_>>();
    for note in notes {
        executor
            .execute(s.clone(), note, context("t"))
            .await
            .expect("note");
    }
    executor.snapshots_written().await;
    let (compression, stored, raw): (Option<String>, i32, i32) = sqlx::query_as(
        "SELECT pg_column_compression(payload), pg_column_size(payload), \
                octet_length(payload::text) FROM aggregate_snapshots WHERE aggregate_id = $1",
    )
    .bind(s.aggregate_id())
    .fetch_one(store.pool())
    .await
    .expect("the snapshot row");
    assert_eq!(
        compression.as_deref(),
        Some("lz4"),
        "{stored} of {raw} bytes"
    );
}
