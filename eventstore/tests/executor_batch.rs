//! Group commit on a hot stream: commands queued behind a running one are decided in queue
//! order on the cached aggregate and appended together, and each caller still gets exactly
//! its own events, its own refusal, and its own metadata on its events.

mod common;

use std::collections::{BTreeMap, HashSet};

use commerce_eventstore::{
    CommandContext, CommandExecutor, EventMetadata, ExecuteError, PgEventStore,
};
use common::counter::{Counter, CounterCommand, CounterError};
use common::{context, fresh_pool, stream};
use sqlx::Row;

/// The command task `n` sends, and how many events it appends when accepted.
fn command_of(n: usize) -> (CounterCommand, usize) {
    match n % 6 {
        0 | 1 => (CounterCommand::Add(3), 1),
        2 => (CounterCommand::AddMany(vec![1, 1]), 2),
        3 | 4 => (CounterCommand::Take(4), 1),
        _ => (CounterCommand::Noop, 0),
    }
}

/// Whether command `n` comes from the second process (one in forty).
fn from_other_process(n: usize) -> bool {
    n % 40 == 39
}

fn context_of(n: usize) -> CommandContext {
    let metadata = EventMetadata::new("t", format!("actor-{n}"));
    if n % 10 == 7 {
        CommandContext::new(metadata.with_idempotency_key(format!("key-{n}")))
            .with_request_hash(format!("hash-{n}"))
    } else {
        CommandContext::new(metadata)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_many_commands_on_one_stream_when_they_queue_then_each_gets_its_own_outcome() {
    // Given one process hitting one stream with 240 mixed commands at once, and a second
    // process writing to it now and then (so some batches conflict and are re-run)
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let other = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "hot");
    let tasks: Vec<_> = (0..240)
        .map(|n| {
            let executor = if from_other_process(n) {
                other.clone()
            } else {
                executor.clone()
            };
            let s = s.clone();
            tokio::spawn(async move {
                let (command, _) = command_of(n);
                executor.execute(s, command, context_of(n)).await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(tasks.len());
    for task in tasks {
        answers.push(task.await.expect("task"));
    }

    // Then every accepted command appended exactly what it asked for; refusals were real
    let mut outcome_of_event = BTreeMap::new();
    let mut refused = 0;
    for (n, answer) in answers.iter().enumerate() {
        match answer {
            Ok(outcome) => {
                assert_eq!(outcome.events.len(), command_of(n).1, "command {n}");
                assert_eq!(outcome.metadata.actor, format!("actor-{n}"));
                if let Some(last) = outcome.events.last() {
                    assert_eq!(outcome.last_sequence, last.sequence);
                    assert_eq!(outcome.last_position, Some(last.position));
                }
                for event in &outcome.events {
                    assert!(
                        outcome_of_event
                            .insert(event.sequence, (n, event.event_id))
                            .is_none()
                    );
                }
            }
            Err(ExecuteError::Domain(CounterError::NotEnough { have, asked })) => {
                assert!(have < asked, "command {n} refused with enough stock");
                refused += 1;
            }
            // The second process races the first one's batches with a single command at a
            // time: it may lose every one of its attempts, and is then told so (appending
            // nothing, which the check of the stream below relies on). The first process,
            // whose commands queue behind each other, never gives up.
            Err(ExecuteError::Conflict { .. }) if from_other_process(n) => {}
            Err(error) => panic!("command {n} failed: {error}"),
        }
    }
    assert!(refused > 0, "some takes found too little stock");

    // And the stream holds exactly those events, each with its own command's metadata,
    // contiguous, chained, and never below zero
    let rows = sqlx::query(
        "SELECT sequence, event_id, metadata->>'actor' AS actor, payload, prev_hash, \
                chain_hash, transaction_id::text AS tx \
           FROM events WHERE aggregate_type = 'Counter' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(s.aggregate_id())
    .fetch_all(store.pool())
    .await
    .expect("read the stream");
    assert_eq!(rows.len(), outcome_of_event.len());
    let mut value = 0_i64;
    let mut previous: Option<Vec<u8>> = None;
    let mut transactions = HashSet::new();
    for (row, (&sequence, &(n, event_id))) in rows.iter().zip(&outcome_of_event) {
        assert_eq!(
            u64::try_from(row.get::<i64, _>("sequence")).ok(),
            Some(sequence)
        );
        assert_eq!(row.get::<uuid::Uuid, _>("event_id"), event_id);
        assert_eq!(row.get::<String, _>("actor"), format!("actor-{n}"));
        let payload: serde_json::Value = row.get("payload");
        value += payload["Added"]["amount"].as_i64().expect("an amount");
        assert!(value >= 0, "oversold at sequence {sequence}");
        assert_eq!(row.get::<Option<Vec<u8>>, _>("prev_hash"), previous);
        previous = Some(row.get("chain_hash"));
        transactions.insert(row.get::<String, _>("tx"));
    }
    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("fold");
    assert_eq!(folded.aggregate.value, value);
    let appending = answers
        .iter()
        .filter(|answer| {
            answer
                .as_ref()
                .is_ok_and(|outcome| !outcome.events.is_empty())
        })
        .count();
    assert!(
        transactions.len() < appending,
        "queued commands were committed together ({} transactions, {appending} commands)",
        transactions.len()
    );

    // And a keyed command sent again gets its first answer back
    let again = executor
        .execute(s.clone(), command_of(7).0, context_of(7))
        .await;
    match (&answers[7], again) {
        (Ok(first), Ok(again)) => {
            assert!(again.replayed);
            assert_eq!(again.events, first.events);
        }
        (Err(_), Err(_)) => {}
        (first, again) => panic!("replay differs: {first:?} then {again:?}"),
    }
}

/// `commands` sent at once on one stream of a warm executor: the first runs, the rest queue
/// behind it and are decided as one batch. Each caller's answer, in order.
async fn queued_at_once(
    executor: &CommandExecutor<Counter>,
    key: &str,
    commands: Vec<CounterCommand>,
) -> Vec<Result<commerce_eventstore::CommandOutcome, ExecuteError<CounterError>>> {
    let s = stream("t", key);
    executor
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("warm the cache");
    futures::future::join_all(commands.into_iter().map(|command| {
        let (executor, s) = (executor.clone(), s.clone());
        async move {
            tokio::spawn(async move { executor.execute(s, command, context("t")).await })
                .await
                .unwrap_or_else(|_| {
                    Err(ExecuteError::Store(sqlx::Error::Protocol(
                        "the caller's task panicked".to_owned(),
                    )))
                })
        }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_batch_with_one_event_the_database_refuses_when_appended_then_only_that_command_fails()
 {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    // jsonb holds no NUL character: PostgreSQL refuses the row of the note
    let mut commands = vec![CounterCommand::Add(1); 20];
    commands.insert(10, CounterCommand::Note("\u{0}".to_owned()));

    let answers = queued_at_once(&executor, "nul", commands).await;

    let failed: Vec<usize> = (0..answers.len())
        .filter(|&n| answers[n].is_err())
        .collect();
    assert_eq!(failed, [10], "only the note fails: {answers:?}");
    let stored = store
        .load_stream("Counter", &stream("t", "nul"))
        .await
        .expect("load");
    assert_eq!(stored.len(), 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_handler_that_panics_after_adding_when_batched_then_the_cache_never_holds_its_event()
 {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let mut commands = vec![CounterCommand::Add(1); 8];
    commands.insert(4, CounterCommand::AddThenPanic(1_000));

    let _answers = queued_at_once(&executor, "panic", commands).await;
    let next = executor
        .execute(
            stream("t", "panic"),
            CounterCommand::Take(1_000),
            context("t"),
        )
        .await;

    // then: the panicking command's 1,000 was never stored, so nothing decides on it
    assert!(
        matches!(
            next,
            Err(ExecuteError::Domain(CounterError::NotEnough { .. }))
        ),
        "{next:?}"
    );
}
