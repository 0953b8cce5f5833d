//! `CommandExecutor::current`: the state commands see, read through the executor's cache, on
//! PostgreSQL.

mod common;

use commerce_eventstore::{CommandExecutor, ExecutorConfig, PgEventStore};
use common::counter::{Counter, CounterCommand};
use common::{context, fresh_pool, stream};

#[tokio::test]
async fn given_streams_cold_warm_and_stale_when_read_then_the_state_equals_the_full_fold() {
    // Given a store, an executor with snapshots every 3 events, and a second executor
    // standing for another process
    let store = PgEventStore::new(fresh_pool().await);
    let config = ExecutorConfig {
        snapshot_every: 3,
        ..ExecutorConfig::default()
    };
    let executor = CommandExecutor::<Counter>::with_config(store.clone(), (), config.clone());
    let other = CommandExecutor::<Counter>::with_config(store.clone(), (), config);
    let s = stream("t", "c");

    // When the stream does not exist yet, then its state is the default at version 0
    let empty = executor.current(&s).await.expect("read an empty stream");
    assert_eq!((empty.aggregate, empty.version), (Counter::default(), 0));

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
    assert_eq!((&cold.aggregate, cold.version), (&folded.aggregate, 7));

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
        (&caught_up.aggregate, caught_up.version),
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
