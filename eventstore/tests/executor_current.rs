//! `CommandExecutor::current`: the state commands see, read through the executor's cache, on
//! PostgreSQL, as a shared snapshot that reads never copy and writes never change.

mod common;

use std::sync::Arc;

use commerce_eventstore::{CommandExecutor, ExecutorConfig, PgEventStore};
use common::counter::{Counter, CounterCommand};
use common::{context, fresh_pool, stream};

#[tokio::test]
async fn given_streams_cold_warm_and_stale_when_read_then_the_state_equals_the_full_fold() {
    // Given a store, an executor with snapshots every 3 events, and a second executor
    // standing for another process
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let config = ExecutorConfig {
        snapshot_every: 3,
        ..ExecutorConfig::default()
    };
    let executor = CommandExecutor::<Counter>::with_config(store.clone(), (), config.clone());
    let other = CommandExecutor::<Counter>::with_config(store.clone(), (), config);
    let s = stream("t", "c");

    // When the stream does not exist yet, then its state is the default at version 0
    let empty = executor.current(&s).await.expect("read an empty stream");
    assert_eq!((&*empty.aggregate, empty.version), (&Counter::default(), 0));

    // When the other process wrote 7 events (a snapshot at 6), then a cold read folds
    // snapshot and tail
    for n in 1..=7 {
        other
            .execute(s.clone(), CounterCommand::Add(n), context("t"))
            .await
            .expect("the other process writes");
    }
    let cold = executor.current(&s).await.expect("cold read");
    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("full fold");
    assert_eq!((&*cold.aggregate, cold.version), (&folded.aggregate, 7));

    // When this executor then writes on the cached state, then the read is the cached state
    executor
        .execute(s.clone(), CounterCommand::Add(100), context("t"))
        .await
        .expect("append on the cached state");
    let warm = executor.current(&s).await.expect("warm read");
    assert_eq!((warm.aggregate.value, warm.version), (128, 8));

    // When the other process wrote behind the cache's back, then the read catches up
    other
        .execute(s.clone(), CounterCommand::Add(1_000), context("t"))
        .await
        .expect("the other process writes again");
    let caught_up = executor.current(&s).await.expect("stale read");
    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("full fold");
    assert_eq!(
        (&*caught_up.aggregate, caught_up.version),
        (&folded.aggregate, 9)
    );
    assert_eq!(caught_up.aggregate.value, 1_128);

    // And the caught-up cache appends at the true head (no conflict, no lost update)
    executor
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("append after catching up");
    let last = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("full fold");
    assert_eq!((last.aggregate.value, last.version), (1_129, 10));
}

#[tokio::test]
async fn given_a_snapshot_when_read_again_and_written_then_reads_share_it_and_writes_leave_it_alone()
 {
    // Given a stream this executor wrote once
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::new(store, ());
    let s = stream("t", "shared");
    executor
        .execute(s.clone(), CounterCommand::Add(5), context("t"))
        .await
        .expect("first write");

    // When it is read twice with no write in between, then both reads are the same
    // allocation (a read copies a pointer, not the aggregate)
    let first = executor.current(&s).await.expect("first read");
    let second = executor.current(&s).await.expect("second read");
    assert!(Arc::ptr_eq(&first.aggregate, &second.aggregate));
    drop(second);

    // When a command runs while the first snapshot is held, then that snapshot still shows
    // the state it was read at, and the next read shows the new state
    executor
        .execute(s.clone(), CounterCommand::Add(10), context("t"))
        .await
        .expect("write under a held snapshot");
    assert_eq!((first.aggregate.value, first.version), (5, 1));
    let after = executor.current(&s).await.expect("read after the write");
    assert_eq!((after.aggregate.value, after.version), (15, 2));
    assert!(!Arc::ptr_eq(&first.aggregate, &after.aggregate));

    // When every snapshot is dropped before the next command, then the command mutates the
    // cached aggregate in place (a copy would live at another address: the cache still held
    // this one while copying)
    let address = Arc::as_ptr(&after.aggregate);
    drop((first, after));
    executor
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("write with no snapshot held");
    let last = executor.current(&s).await.expect("last read");
    assert_eq!((last.aggregate.value, last.version), (16, 3));
    assert_eq!(Arc::as_ptr(&last.aggregate), address);
}
