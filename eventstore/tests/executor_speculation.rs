//! The speculative first write: a cold slot assumes its stream is new, and every way that
//! guess can be wrong still ends exactly where loading first would have.

mod common;

use commerce_eventstore::{CommandExecutor, ExecuteError, ExecutorConfig, PgEventStore, StreamId};
use common::counter::{Counter, CounterCommand, CounterError};
use common::{context, fresh_pool, keyed, stream};
use sqlx::Row;

/// Every event's `prev_hash` is the previous event's `chain_hash` (none before the first).
async fn assert_chained(store: &PgEventStore, s: &StreamId) {
    let rows = sqlx::query(
        "SELECT prev_hash, chain_hash FROM events \
         WHERE aggregate_type = 'Counter' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(s.aggregate_id())
    .fetch_all(store.pool())
    .await
    .expect("read the chain");
    let mut previous: Option<Vec<u8>> = None;
    for row in rows {
        let prev: Option<Vec<u8>> = row.get("prev_hash");
        assert_eq!(prev, previous, "the chain is unbroken");
        previous = Some(row.get("chain_hash"));
    }
}

async fn folded(store: &PgEventStore, s: &StreamId) -> (i64, u64) {
    let loaded = store
        .load_aggregate::<Counter>(s, None)
        .await
        .expect("full fold");
    (loaded.aggregate.value, loaded.version)
}

#[tokio::test]
async fn given_a_new_stream_when_a_cold_slot_appends_then_it_lands_first_and_chained() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "new");

    let outcome = executor
        .execute(s.clone(), CounterCommand::AddMany(vec![2, 3]), context("t"))
        .await
        .expect("append to a new stream");

    assert_eq!(outcome.last_sequence, 2);
    assert_eq!(folded(&store, &s).await, (5, 2));
    assert_chained(&store, &s).await;
}

#[tokio::test]
async fn given_a_stream_another_process_wrote_when_a_cold_slot_appends_then_it_lands_after_it() {
    // Given events written by another process (an executor this one shares nothing with)
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let other = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "existing");
    for amount in [10, 20] {
        other
            .execute(s.clone(), CounterCommand::Add(amount), context("t"))
            .await
            .expect("the other process writes");
    }
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());

    // When this process appends with a cold slot (guessing the stream is new)
    let outcome = executor
        .execute(s.clone(), CounterCommand::Add(5), context("t"))
        .await
        .expect("the wrong guess is corrected");

    // Then the event follows the stored ones, on the stored state, chained to them
    assert_eq!(outcome.last_sequence, 3);
    assert_eq!(folded(&store, &s).await, (35, 3));
    assert_chained(&store, &s).await;
    // And the slot is warm: the next command appends on the cached state
    let next = executor
        .execute(s.clone(), CounterCommand::Take(35), context("t"))
        .await
        .expect("take on the cached state");
    assert_eq!(next.last_sequence, 4);
    assert_eq!(folded(&store, &s).await, (0, 4));
}

#[tokio::test]
async fn given_a_stream_with_stock_when_a_cold_slot_takes_then_the_stored_state_decides() {
    // Given a stream holding 7, written by another process
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let other = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "stock");
    other
        .execute(s.clone(), CounterCommand::Add(7), context("t"))
        .await
        .expect("stock");
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());

    // When a cold slot takes 5 (refused on the assumed-empty stream, allowed on the stored)
    let outcome = executor
        .execute(s.clone(), CounterCommand::Take(5), context("t"))
        .await
        .expect("the stored stream allows it");

    // Then it is taken from the stored stock
    assert_eq!(outcome.last_sequence, 2);
    assert_eq!(folded(&store, &s).await, (2, 2));
}

#[tokio::test]
async fn given_a_new_stream_when_a_cold_slot_takes_then_it_is_refused_on_the_stored_state() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "empty");

    let refused = executor
        .execute(s.clone(), CounterCommand::Take(1), context("t"))
        .await;

    assert!(matches!(
        refused,
        Err(ExecuteError::Domain(CounterError::NotEnough {
            have: 0,
            asked: 1
        }))
    ));
    assert_eq!(folded(&store, &s).await, (0, 0));
}

#[tokio::test]
async fn given_an_existing_stream_when_a_cold_keyed_command_appends_then_its_record_names_the_true_sequence()
 {
    // Given a stream another process wrote
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let other = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "keyed");
    other
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("the other process writes");
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());

    // When a keyed command runs on a cold slot (its guess misses), then is sent again
    let first = executor
        .execute(s.clone(), CounterCommand::Add(2), keyed("t", "k-1", "h"))
        .await
        .expect("first execution");
    let again = other
        .execute(s.clone(), CounterCommand::Add(2), keyed("t", "k-1", "h"))
        .await
        .expect("replayed");

    // Then one event was appended, at sequence 2, and the replay names that same event
    assert_eq!(first.last_sequence, 2);
    assert!(again.replayed);
    assert_eq!(again.last_sequence, 2);
    assert_eq!(again.events, first.events);
    assert_eq!(folded(&store, &s).await, (3, 2));
    let records: i64 = sqlx::query_scalar("SELECT count(*) FROM command_idempotency")
        .fetch_one(store.pool())
        .await
        .expect("count records");
    assert_eq!(records, 1, "the missed guess recorded nothing");
}

#[tokio::test]
async fn given_guessing_disabled_when_cold_slots_append_then_they_load_first_and_agree() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let config = ExecutorConfig {
        speculate_new_streams: false,
        ..ExecutorConfig::default()
    };
    let other = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "plain");
    other
        .execute(s.clone(), CounterCommand::Add(4), context("t"))
        .await
        .expect("the other process writes");
    let executor = CommandExecutor::<Counter>::with_config(store.clone(), (), config);

    let outcome = executor
        .execute(s.clone(), CounterCommand::Take(4), context("t"))
        .await
        .expect("take on the loaded state");

    assert_eq!(outcome.last_sequence, 2);
    assert_eq!(folded(&store, &s).await, (0, 2));
}

#[tokio::test]
async fn given_two_processes_racing_to_create_a_stream_when_both_guess_then_both_commands_land() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let left = CommandExecutor::<Counter>::new(store.clone(), ());
    let right = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "race");

    let (a, b) = tokio::join!(
        left.execute(s.clone(), CounterCommand::Add(1), context("t")),
        right.execute(s.clone(), CounterCommand::Add(10), context("t")),
    );

    let mut sequences = [
        a.expect("left lands").last_sequence,
        b.expect("right lands").last_sequence,
    ];
    sequences.sort_unstable();
    assert_eq!(sequences, [1, 2]);
    assert_eq!(folded(&store, &s).await, (11, 2));
    assert_chained(&store, &s).await;
}
