//! F6: many concurrent writers on one aggregate, in one process and across "processes"
//! (separate executors with separate caches): versions stay contiguous, no update is lost.

mod common;

use std::time::Duration;

use commerce_eventstore::{CommandExecutor, ExecutorConfig, PgEventStore};
use common::counter::{Counter, CounterCommand};
use common::{context, fresh_pool, stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_many_tasks_on_one_aggregate_when_they_add_then_no_update_is_lost() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    // Three executors stand for three processes sharing the database.
    let config = ExecutorConfig {
        max_attempts: 50,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        snapshot_every: 7,
        ..ExecutorConfig::default()
    };
    let executors: Vec<_> = (0..3)
        .map(|_| CommandExecutor::<Counter>::with_config(store.clone(), (), config.clone()))
        .collect();
    let s = stream("t", "hot");
    let tasks = 48;
    let per_task = 5;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let executor = executors[task % executors.len()].clone();
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..per_task {
                match executor
                    .execute(s.clone(), CounterCommand::Add(1), context("t"))
                    .await
                {
                    Ok(_) => {}
                    Err(commerce_eventstore::ExecuteError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for handle in handles {
        conflicts += handle.await.expect("task");
    }
    assert_eq!(
        conflicts, 0,
        "bounded retries should absorb three-process contention"
    );

    let events = store.load_stream("Counter", &s).await.expect("load");
    let total = (tasks * per_task) as u64;
    assert_eq!(events.len() as u64, total);
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event.sequence,
            index as u64 + 1,
            "versions contiguous from 1"
        );
    }
    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("fold");
    assert_eq!(folded.aggregate.value, total as i64, "no lost update");
    for executor in &executors {
        // Each process converges on the true state at its next command.
        executor
            .execute(s.clone(), CounterCommand::Noop, context("t"))
            .await
            .expect("noop");
        let (state, version) = executor.cached_state(&s).await.expect("cached");
        assert_eq!(version, total);
        assert_eq!(
            state,
            serde_json::to_value(&folded.aggregate).expect("json")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_one_process_when_many_tasks_hit_one_stream_then_they_are_serialised_without_retries()
{
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let no_retry = ExecutorConfig {
        max_attempts: 1,
        ..ExecutorConfig::default()
    };
    let executor = CommandExecutor::<Counter>::with_config(store.clone(), (), no_retry);
    let s = stream("t", "flash-sale");
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let executor = executor.clone();
            let s = s.clone();
            tokio::spawn(async move {
                executor
                    .execute(s, CounterCommand::Add(1), context("t"))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for handle in handles {
        handle
            .await
            .expect("task")
            .expect("no conflict inside one process, even with no retries");
    }
    assert_eq!(store.stream_version("Counter", &s).await.expect("head"), 64);
}
