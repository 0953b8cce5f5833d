//! A command abandoned half way, its future dropped (a client gone, a reaction aborted when its
//! leader stepped down), must not leave the executor's cached aggregate ahead of the store:
//! the next command has to decide on what is stored.

mod common;

use std::time::Duration;

use commerce_eventstore::{CommandExecutor, ExecuteError, PgEventStore};
use common::counter::{Counter, CounterCommand, CounterError};
use common::{context, fresh_pool, stream};

#[tokio::test]
async fn given_a_command_dropped_before_its_append_when_the_next_runs_then_it_decides_on_the_stored_state()
 {
    // Given an executor whose cache is warm at a stored value of 10
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "counter");
    executor
        .execute(s.clone(), CounterCommand::Add(10), context("t"))
        .await
        .expect("the first command");

    // When a command adding 5 is dropped while another transaction keeps its append waiting
    let mut blocker = pool.begin().await.expect("the blocking transaction");
    sqlx::query("LOCK TABLE events IN SHARE MODE")
        .execute(&mut *blocker)
        .await
        .expect("a lock that lets reads through and makes inserts wait");
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        executor.execute(s.clone(), CounterCommand::Add(5), context("t")),
    )
    .await;
    assert!(abandoned.is_err(), "the append could not run");

    // Then the cached state is what is stored, not the 15 the dropped handler decided
    let current = executor.current(&s).await.expect("the cached state");
    assert_eq!((current.aggregate.value, current.version), (10, 1));
    blocker.rollback().await.expect("release the lock");

    // And the next command decides on what is stored, whether or not the dropped append
    // reached the database before its connection went away (then 15 allows taking 12)
    let taken = executor
        .execute(s.clone(), CounterCommand::Take(12), context("t"))
        .await;
    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("the full fold");
    match taken {
        Err(ExecuteError::Domain(CounterError::NotEnough {
            have: 10,
            asked: 12,
        })) => {
            assert!([10, 15].contains(&folded.aggregate.value), "{folded:?}");
        }
        Ok(_) => assert_eq!(folded.aggregate.value, 3),
        other => panic!("the take decided on nothing stored: {other:?}"),
    }
    // And the cache is never ahead of the store (read after it: the dropped append may land
    // at any moment, and the store only grows)
    let current = executor.current(&s).await.expect("the cached state");
    let stored_after = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("the full fold");
    let stored_then = store
        .load_aggregate::<Counter>(&s, Some(current.version))
        .await
        .expect("the fold up to the cached version");
    assert!(current.version <= stored_after.version);
    assert_eq!(*current.aggregate, stored_then.aggregate);
}
