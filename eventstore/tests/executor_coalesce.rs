//! Group commit across streams: concurrent commands on different streams are appended by one
//! statement, and each still gets exactly its own events, its own conflict or its own error.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use commerce_eventstore::{
    AuditKey, ChainFields, CommandExecutor, CommandOutcome, ExecuteError, PgEventStore,
    hash_from_bytes,
};
use common::counter::{Counter, CounterCommand, CounterError};
use common::{context, fresh_pool, stream};
use futures::future::join_all;
use sqlx::Row;

type Answer = Result<CommandOutcome, ExecuteError<CounterError>>;

/// Runs `Add(amount)` on each `(key, amount)` at once, each command with its own actor.
async fn add_all(executor: &CommandExecutor<Counter>, adds: &[(String, i64)]) -> Vec<Answer> {
    join_all(adds.iter().map(|(key, amount)| {
        let mut context = context("t");
        context.metadata.actor = format!("actor-{key}");
        executor.execute(stream("t", key), CounterCommand::Add(*amount), context)
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_commands_on_many_new_streams_when_they_append_at_once_then_each_gets_its_own_chained_events_in_shared_transactions()
 {
    // Given an executor and 300 commands, each on a stream of its own
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let adds: Vec<(String, i64)> = (1..=300).map(|n| (format!("s{n}"), n)).collect();

    // When they run at once
    let answers = add_all(&executor, &adds).await;

    // Then each is answered with one event at sequence 1 of its own stream
    for ((key, _), answer) in adds.iter().zip(&answers) {
        let outcome = answer.as_ref().expect("appended");
        assert_eq!(outcome.aggregate_id, stream("t", key));
        assert_eq!(outcome.events.len(), 1);
        assert_eq!(outcome.events[0].sequence, 1);
        assert_eq!(outcome.last_position, Some(outcome.events[0].position));
    }
    // And the store holds exactly those events: each with its command's amount, actor, id
    // and position, and a chain hash over the values stored
    let rows = sqlx::query(
        "SELECT aggregate_id, sequence, event_type, event_version, payload, metadata, \
                event_id, recorded_at, prev_hash, chain_hash, position, \
                transaction_id::text AS tx \
           FROM events WHERE aggregate_type = 'Counter'",
    )
    .fetch_all(store.pool())
    .await
    .expect("read the events");
    assert_eq!(rows.len(), adds.len());
    let mut transactions = HashSet::new();
    for row in &rows {
        let aggregate_id: String = row.get("aggregate_id");
        let key = aggregate_id.trim_start_matches("t/");
        let (index, (_, amount)) = adds
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k == key)
            .expect("a stream of the test");
        let outcome = answers[index].as_ref().expect("appended");
        let payload: serde_json::Value = row.get("payload");
        let metadata: serde_json::Value = row.get("metadata");
        assert_eq!(payload["Added"]["amount"].as_i64(), Some(*amount));
        assert_eq!(
            metadata["actor"].as_str(),
            Some(format!("actor-{key}").as_str())
        );
        assert_eq!(
            row.get::<uuid::Uuid, _>("event_id"),
            outcome.events[0].event_id
        );
        assert_eq!(row.get::<i64, _>("position"), outcome.events[0].position);
        assert_eq!(row.get::<Option<Vec<u8>>, _>("prev_hash"), None);
        let chain_hash = hash_from_bytes(row.get("chain_hash"));
        let expected = ChainFields {
            aggregate_type: "Counter",
            aggregate_id: &aggregate_id,
            sequence: 1,
            event_type: &row.get::<String, _>("event_type"),
            event_version: &row.get::<String, _>("event_version"),
            payload: &payload,
            metadata: &metadata,
            event_id: row.get("event_id"),
            recorded_at: row.get("recorded_at"),
            prev_hash: None,
        }
        .hash(&AuditKey::from_env());
        assert_eq!(chain_hash, Some(expected), "chain hash of {aggregate_id}");
        transactions.insert(row.get::<String, _>("tx"));
    }
    // And concurrent commands shared statements (and so transactions)
    assert!(
        transactions.len() < adds.len(),
        "{} transactions for {} commands",
        transactions.len(),
        adds.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_stream_another_process_moved_on_when_its_command_appends_with_new_streams_then_only_it_retries()
 {
    // Given a stream at 10 in this process's cache, which another process then adds 1 to
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let other = CommandExecutor::<Counter>::new(PgEventStore::new(pool.clone()), ());
    let moved = stream("t", "moved");
    executor
        .execute(moved.clone(), CounterCommand::Add(10), context("t"))
        .await
        .expect("the first add");
    other
        .execute(moved.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("the other process's add");

    // When this process adds 5 to it together with commands on 100 new streams
    let adds: Vec<(String, i64)> = std::iter::once(("moved".to_owned(), 5))
        .chain((1..=100).map(|n| (format!("new{n}"), n)))
        .collect();
    let answers = add_all(&executor, &adds).await;

    // Then every command succeeds: the stale one after reloading, at sequence 3
    for answer in &answers {
        answer.as_ref().expect("appended");
    }
    let stale = answers[0].as_ref().expect("appended");
    assert_eq!(stale.events[0].sequence, 3);
    let folded = store
        .load_aggregate::<Counter>(&moved, None)
        .await
        .expect("fold");
    assert_eq!((folded.aggregate.value, folded.version), (16, 3));
    // And each new stream holds its one event
    for (key, amount) in &adds[1..] {
        let folded = store
            .load_aggregate::<Counter>(&stream("t", key), None)
            .await
            .expect("fold");
        assert_eq!((folded.aggregate.value, folded.version), (*amount, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_writer_racing_for_a_sequence_when_its_statement_fails_on_the_key_then_the_others_of_it_are_still_appended()
 {
    // Given a stream at 10 in this process's cache, and another transaction holding its
    // sequence 2 uncommitted
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let raced = stream("t", "raced");
    executor
        .execute(raced.clone(), CounterCommand::Add(10), context("t"))
        .await
        .expect("the first add");
    let mut racer = pool.begin().await.expect("the racing transaction");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('Counter', $1, 2, 'counter.added', '1', '{\"Added\":{\"amount\":1}}', $2)",
    )
    .bind(raced.aggregate_id())
    .bind(serde_json::json!({"tenant_id": "t", "actor": "racer"}))
    .execute(&mut *racer)
    .await
    .expect("the racing insert");

    // When this process appends to it and to 60 new streams at once, and the racer commits
    // while their statements wait on its key
    let adds: Vec<(String, i64)> = (1..=30)
        .map(|n| (format!("before{n}"), n))
        .chain(std::iter::once(("raced".to_owned(), 5)))
        .chain((1..=30).map(|n| (format!("after{n}"), n)))
        .collect();
    let committing = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        racer.commit().await.expect("the racer commits");
    };
    let (answers, ()) = tokio::join!(add_all(&executor, &adds), committing);

    // Then every command succeeds, the raced one after reloading the racer's event
    for answer in &answers {
        answer.as_ref().expect("appended");
    }
    let folded = store
        .load_aggregate::<Counter>(&raced, None)
        .await
        .expect("fold");
    assert_eq!((folded.aggregate.value, folded.version), (16, 3));
    // And each new stream holds its one event, once
    for (key, amount) in adds.iter().filter(|(key, _)| key != "raced") {
        let folded = store
            .load_aggregate::<Counter>(&stream("t", key), None)
            .await
            .expect("fold");
        assert_eq!((folded.aggregate.value, folded.version), (*amount, 1));
    }
}
