//! A command abandoned half way, its future dropped (a client gone, a reaction aborted when its
//! leader stepped down), must not leave the executor's cached aggregate ahead of the store:
//! the next command has to decide on what is stored.

mod common;

use std::time::Duration;

use commerce_eventstore::{CommandExecutor, ExecuteError, PgEventStore};
use common::counter::{Counter, CounterCommand, CounterError};
use common::{context, fresh_pool, stream};
use sqlx::postgres::PgPoolOptions;

#[tokio::test]
async fn given_a_command_dropped_before_its_append_when_the_next_runs_then_it_decides_on_the_stored_state()
 {
    // Given an executor on a pool of one connection, its cache warm at a stored value of 10
    let pool = fresh_pool().await;
    let narrow = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .expect("a pool of one connection");
    let store = PgEventStore::new(narrow.clone());
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "counter");
    executor
        .execute(s.clone(), CounterCommand::Add(10), context("t"))
        .await
        .expect("the first command");

    // When a command adding 5 is dropped while its append waits for the only connection
    let held = narrow.acquire().await.expect("the only connection");
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        executor.execute(s.clone(), CounterCommand::Add(5), context("t")),
    )
    .await;
    assert!(abandoned.is_err(), "the append had no connection to run on");
    drop(held);
    // and the next command takes 12, which only the 5 never stored would allow
    let taken = executor
        .execute(s.clone(), CounterCommand::Take(12), context("t"))
        .await;

    // Then it is refused on the stored 10, and the cached state is the store's fold
    assert!(
        matches!(
            taken,
            Err(ExecuteError::Domain(CounterError::NotEnough {
                have: 10,
                asked: 12
            }))
        ),
        "{taken:?}"
    );
    let current = executor.current(&s).await.expect("the cached state");
    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("the full fold");
    assert_eq!(
        (&*current.aggregate, current.version),
        (&folded.aggregate, 1)
    );
}
