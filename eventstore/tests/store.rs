//! Event store behaviour against a real PostgreSQL: schema, ES-1..3, idempotency,
//! rejections, metadata, upcasting and cqrs-es compatibility.

mod common;

use commerce_eventstore::{
    CommandExecutor, ExecuteError, ExecutorConfig, PgEventStore, StreamId, Upcasters, migrate,
};
use common::counter::{Counter, CounterCommand, CounterEvent};
use common::{context, fresh_pool, keyed, stream};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{CqrsFramework, EventStore};
use postgres_es::PostgresEventRepository;
use proptest::prelude::*;
use serde_json::json;

fn executor(store: &PgEventStore) -> CommandExecutor<Counter> {
    CommandExecutor::new(store.clone(), ())
}

#[tokio::test]
async fn given_a_migrated_database_when_migrated_again_then_nothing_fails() {
    let (_db, pool) = fresh_pool().await;
    migrate(&pool).await.expect("second run is a no-op");
}

#[tokio::test]
async fn given_stored_events_when_updated_deleted_or_truncated_then_the_database_refuses() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    executor(&store)
        .execute(stream("t", "c"), CounterCommand::Add(1), context("t"))
        .await
        .expect("append");
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = sqlx::query(statement)
            .execute(&pool)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    assert_eq!(
        store
            .load_stream("Counter", &stream("t", "c"))
            .await
            .expect("load")
            .len(),
        1
    );
}

#[tokio::test]
async fn given_a_command_when_executed_then_events_carry_metadata_and_global_coordinates() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let ctx = keyed("acme", "k-1", "h").with_request_hash("h");
    let outcome = executor(&store)
        .execute(
            stream("acme", "c"),
            CounterCommand::AddMany(vec![1, 2]),
            ctx.clone(),
        )
        .await
        .expect("append");
    assert_eq!(outcome.last_sequence, 2);
    assert_eq!(outcome.events.len(), 2);
    assert_eq!(outcome.last_position, Some(outcome.events[1].position));

    let events = store
        .load_stream("Counter", &stream("acme", "c"))
        .await
        .expect("load");
    assert_eq!(events.len(), 2);
    for (event, stored) in events.iter().zip(&outcome.events) {
        assert_eq!(event.metadata, ctx.metadata);
        assert_eq!(event.event_id, stored.event_id);
        assert_eq!(event.position, stored.position);
        assert_eq!(event.stream.tenant(), "acme");
        assert_eq!(event.event_type, "counter.added");
    }
}

#[tokio::test]
async fn given_a_rejected_command_when_executed_then_nothing_is_appended() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let exec = executor(&store);
    let s = stream("t", "stock");
    exec.execute(s.clone(), CounterCommand::Add(2), context("t"))
        .await
        .expect("add");
    let rejected = exec
        .execute(s.clone(), CounterCommand::Take(5), context("t"))
        .await;
    assert!(
        matches!(rejected, Err(ExecuteError::Domain(_))),
        "{rejected:?}"
    );
    assert_eq!(
        store.load_stream("Counter", &s).await.expect("load").len(),
        1
    );
}

#[tokio::test]
async fn given_a_stream_of_another_tenant_when_executing_then_tenant_mismatch() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let result = executor(&store)
        .execute(stream("a", "c"), CounterCommand::Add(1), context("b"))
        .await;
    assert!(
        matches!(result, Err(ExecuteError::TenantMismatch { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn given_a_repeated_idempotency_key_when_executed_then_the_first_outcome_is_replayed() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let exec = executor(&store);
    let s = stream("t", "c");
    let first = exec
        .execute(
            s.clone(),
            CounterCommand::Add(5),
            keyed("t", "key-1", "body-a"),
        )
        .await
        .expect("first");
    let again = exec
        .execute(
            s.clone(),
            CounterCommand::Add(5),
            keyed("t", "key-1", "body-a"),
        )
        .await
        .expect("replay");
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    assert_eq!(
        store.load_stream("Counter", &s).await.expect("load").len(),
        1
    );

    let other_body = exec
        .execute(
            s.clone(),
            CounterCommand::Add(6),
            keyed("t", "key-1", "body-b"),
        )
        .await;
    assert!(
        matches!(other_body, Err(ExecuteError::IdempotencyMismatch { .. })),
        "{other_body:?}"
    );
    let other_stream = exec
        .execute(
            stream("t", "d"),
            CounterCommand::Add(5),
            keyed("t", "key-1", "body-a"),
        )
        .await;
    assert!(matches!(
        other_stream,
        Err(ExecuteError::IdempotencyMismatch { .. })
    ));
    assert_eq!(
        store.load_stream("Counter", &s).await.expect("load").len(),
        1
    );

    // Another tenant may use the same key independently.
    let other_tenant = exec
        .execute(
            stream("u", "c"),
            CounterCommand::Add(5),
            keyed("u", "key-1", "body-a"),
        )
        .await
        .expect("other tenant");
    assert!(!other_tenant.replayed);
}

#[tokio::test]
async fn given_a_keyed_no_op_command_when_repeated_then_it_is_recorded_and_replayed() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let exec = executor(&store);
    let s = stream("t", "c");
    let first = exec
        .execute(s.clone(), CounterCommand::Noop, keyed("t", "n", "h"))
        .await
        .expect("noop");
    assert!(first.events.is_empty() && !first.replayed);
    let again = exec
        .execute(s.clone(), CounterCommand::Noop, keyed("t", "n", "h"))
        .await
        .expect("again");
    assert!(again.replayed);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM command_idempotency")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn given_a_cache_ahead_of_the_store_when_commands_append_then_they_reload_and_leave_no_gap() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let exec = executor(&store);
    for (name, keyed_command) in [("unkeyed", false), ("keyed", true)] {
        let s = stream("t", name);
        for _ in 0..3 {
            exec.execute(s.clone(), CounterCommand::Add(1), context("t"))
                .await
                .expect("add");
        }
        // given: the last two commits were lost (`synchronous_commit = off` and a crash of
        // the database), while this process kept its cache at version 3
        let mut conn = pool.acquire().await.expect("connection");
        sqlx::query("SET session_replication_role = replica")
            .execute(&mut *conn)
            .await
            .expect("triggers off for this session");
        sqlx::query("DELETE FROM events WHERE aggregate_id = $1 AND sequence > 1")
            .bind(s.aggregate_id())
            .execute(&mut *conn)
            .await
            .expect("commits lost");
        drop(conn);

        // when: the next command runs on that cache
        let context = if keyed_command {
            keyed("t", name, "h")
        } else {
            context("t")
        };
        let outcome = exec
            .execute(s.clone(), CounterCommand::Add(10), context)
            .await
            .expect("appended after a reload");

        // then: it was decided on the stored state and appended right after it
        assert_eq!(outcome.last_sequence, 2, "{name}");
        let sequences: Vec<u64> = store
            .load_stream("Counter", &s)
            .await
            .expect("load")
            .iter()
            .map(|event| event.sequence)
            .collect();
        assert_eq!(sequences, [1, 2], "{name}");
    }
}

#[tokio::test]
async fn given_twins_whose_second_run_would_be_refused_when_executed_then_the_second_replays() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let exec = executor(&store);
    for round in 0..20 {
        let s = stream("t", &format!("take-{round}"));
        exec.execute(s.clone(), CounterCommand::Add(5), context("t"))
            .await
            .expect("stock");
        // Both look for the key before either commits; the second then runs on what the first
        // left, where taking 5 again is refused.
        let key = format!("take-{round}");
        let (a, b) = tokio::join!(
            exec.execute(s.clone(), CounterCommand::Take(5), keyed("t", &key, "h")),
            exec.execute(s.clone(), CounterCommand::Take(5), keyed("t", &key, "h")),
        );
        let (a, b) = (a.expect("first"), b.expect("twin replays, not refused"));
        assert_eq!(a.events, b.events);
        assert!(a.replayed ^ b.replayed, "round {round}: exactly one replay");
    }
}

#[tokio::test]
async fn given_concurrent_twins_with_one_key_when_executed_then_one_runs_and_the_other_replays() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    // Two executors = two processes, so the twins are not serialised by one slot.
    let (left, right) = (executor(&store), executor(&store));
    let s = stream("t", "twins");
    let (a, b) = tokio::join!(
        left.execute(s.clone(), CounterCommand::Add(1), keyed("t", "twin", "h")),
        right.execute(s.clone(), CounterCommand::Add(1), keyed("t", "twin", "h")),
    );
    let (a, b) = (a.expect("left"), b.expect("right"));
    assert_eq!(a.events, b.events);
    assert!(
        a.replayed ^ b.replayed,
        "exactly one replay: {} {}",
        a.replayed,
        b.replayed
    );
    assert_eq!(
        store.load_stream("Counter", &s).await.expect("load").len(),
        1
    );
}

#[tokio::test]
async fn given_another_process_appended_when_a_stale_cache_appends_then_it_catches_up() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let no_retry = ExecutorConfig {
        max_attempts: 1,
        ..ExecutorConfig::default()
    };
    let stale = CommandExecutor::<Counter>::with_config(store.clone(), (), no_retry);
    let retrying = executor(&store);
    let other = executor(&store);
    let s = stream("t", "c");
    stale
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("warm cache");
    retrying
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("warm cache");
    other
        .execute(s.clone(), CounterCommand::Add(10), context("t"))
        .await
        .expect("other writes");

    // ES-2: a stale expected version is rejected and nothing of the batch is written.
    let result = stale
        .execute(
            s.clone(),
            CounterCommand::AddMany(vec![100, 100, 100]),
            context("t"),
        )
        .await;
    assert!(
        matches!(result, Err(ExecuteError::Conflict { attempts: 1, .. })),
        "{result:?}"
    );
    assert_eq!(
        store.load_stream("Counter", &s).await.expect("load").len(),
        3
    );

    // With retries, the stale cache reloads and the command applies on the true state.
    let outcome = retrying
        .execute(
            s.clone(),
            CounterCommand::AddMany(vec![100, 100]),
            context("t"),
        )
        .await
        .expect("retried");
    assert_eq!(outcome.last_sequence, 5);
    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("fold");
    assert_eq!(folded.aggregate.value, 212);

    // A rejection decided on a stale cache is re-checked against the store.
    other
        .execute(s.clone(), CounterCommand::Add(1000), context("t"))
        .await
        .expect("other");
    let take = stale
        .execute(s.clone(), CounterCommand::Take(1000), context("t"))
        .await;
    assert!(
        take.is_ok(),
        "stale rejection must be re-evaluated: {take:?}"
    );
}

#[tokio::test]
async fn given_a_v1_event_in_the_store_when_read_then_it_is_upcast_to_v2() {
    let (_db, pool) = fresh_pool().await;
    let s = stream("t", "old");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Counter', $1, 1, 'counter.noted', '1', $2, $3)",
    )
    .bind(s.aggregate_id())
    .bind(json!({"Noted": {"note": "legacy"}}))
    .bind(json!(context("t").metadata.to_map()))
    .execute(&pool)
    .await
    .expect("insert a v1 event");
    let upcasters = Upcasters::new().register_fn("counter.noted", "2", |mut payload| {
        if let Some(note) = payload["Noted"]["note"].as_str().map(str::to_owned) {
            payload["Noted"] = json!({"text": note, "lang": "en"});
        }
        payload
    });
    let store = PgEventStore::new(pool).with_upcasters(upcasters);

    let folded = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("fold v1 as v2");
    assert_eq!(
        folded.aggregate.notes,
        vec![("legacy".to_owned(), "en".to_owned())]
    );
    let events = store.load_stream("Counter", &s).await.expect("stream");
    assert_eq!(events[0].event_version, "2.0.0");
    // Other tests' open transactions on the cluster may hold the log horizon back briefly.
    let mut logged = Vec::new();
    for _ in 0..1500 {
        logged = store
            .global_log()
            .read_after(commerce_eventstore::LogCursor::START, 10)
            .await
            .expect("log");
        if !logged.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        logged[0].payload,
        json!({"Noted": {"text": "legacy", "lang": "en"}})
    );

    // The executor's cold load goes through the same registry.
    let outcome = executor(&store)
        .execute(s.clone(), CounterCommand::Note("new".into()), context("t"))
        .await
        .expect("append after a v1 event");
    assert_eq!(outcome.last_sequence, 2);
}

#[tokio::test]
async fn given_events_written_by_the_engine_when_cqrs_es_loads_them_then_state_is_equal() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let s = stream("t", "compat");
    executor(&store)
        .execute(
            s.clone(),
            CounterCommand::AddMany(vec![3, 4, 5]),
            context("t"),
        )
        .await
        .expect("append");

    let cqrs_store = PersistedEventStore::<_, Counter>::new_event_store(
        PostgresEventRepository::new(pool.clone()),
    );
    let context = cqrs_store
        .load_aggregate(&s.aggregate_id())
        .await
        .expect("cqrs-es load");
    assert_eq!(context.current_sequence, 3);
    let ours = store
        .load_aggregate::<Counter>(&s, None)
        .await
        .expect("ours");
    assert_eq!(context.aggregate, ours.aggregate);

    // cqrs-es can also append to the same table (its insert names only its seven columns).
    let framework = CqrsFramework::new(
        PersistedEventStore::<_, Counter>::new_event_store(PostgresEventRepository::new(pool)),
        vec![],
        (),
    );
    framework
        .execute_with_metadata(&s.aggregate_id(), CounterCommand::Add(1), context_map())
        .await
        .expect("cqrs-es append");
    let events = store.load_stream("Counter", &s).await.expect("reread");
    assert_eq!(events.len(), 4);
    assert!(events[3].position > events[2].position);
}

fn context_map() -> std::collections::HashMap<String, String> {
    context("t").metadata.to_map()
}

fn command() -> impl Strategy<Value = CounterCommand> {
    prop_oneof![
        (-50_i64..50).prop_map(CounterCommand::Add),
        proptest::collection::vec(-50_i64..50, 0..4).prop_map(CounterCommand::AddMany),
        (0_i64..30).prop_map(CounterCommand::Take),
        Just(CounterCommand::Noop),
    ]
}

/// ES-1 and ES-3 over random command histories, on one database per property.
#[test]
fn es1_es3_properties() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (_db, pool) = runtime.block_on(fresh_pool());
    let store = PgEventStore::new(pool);
    let exec = executor(&store);
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest!(config, |(commands in proptest::collection::vec(command(), 1..12), key in "[a-z0-9-]{1,8}")| {
        runtime.block_on(async {
            let case = uuid::Uuid::new_v4().simple().to_string();
            let key = format!("{key}-{case}");
            let (a, b) = (stream("tenant-a", &key), stream("tenant-b", &key));
            let mut expected = Counter::default();
            for command in &commands {
                // Tenant B gets every command doubled: its history must stay its own.
                for s in [&a, &b, &b] {
                    let _ = exec.execute(s.clone(), command.clone(), context(s.tenant())).await;
                }
                if let CounterCommand::Take(n) = command && expected.value < *n { continue; }
                apply_expected(&mut expected, command);
            }
            for (s, expected_events) in [(&a, expected.events), (&b, 0)] {
                let events = store.load_stream("Counter", s).await.expect("load");
                // ES-1: versions contiguous from 1.
                for (index, event) in events.iter().enumerate() {
                    prop_assert_eq!(event.sequence, index as u64 + 1);
                    prop_assert_eq!(event.stream.tenant(), s.tenant());
                    prop_assert_eq!(&event.metadata.tenant_id, s.tenant());
                }
                if s == &a {
                    prop_assert_eq!(events.len() as u64, expected_events);
                }
            }
            // ES-3: tenant A's state is exactly the single history, whatever B did.
            let folded = store.load_aggregate::<Counter>(&a, None).await.expect("fold");
            prop_assert_eq!(folded.aggregate, expected);
            Ok(())
        })?;
    });
}

fn apply_expected(state: &mut Counter, command: &CounterCommand) {
    use cqrs_es::Aggregate;
    let amounts = match command {
        CounterCommand::Add(n) => vec![*n],
        CounterCommand::AddMany(ns) => ns.clone(),
        CounterCommand::Take(n) => vec![-n],
        CounterCommand::Note(_) | CounterCommand::Noop => vec![],
        CounterCommand::AddThenPanic(_) => {
            unreachable!("the model never sends a panicking command")
        }
    };
    for amount in amounts {
        state.apply(CounterEvent::Added { amount });
    }
}

#[tokio::test]
async fn given_stream_ids_with_the_same_key_when_loaded_per_tenant_then_they_are_separate() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let exec = executor(&store);
    exec.execute(stream("a", "SKU-1"), CounterCommand::Add(1), context("a"))
        .await
        .expect("a");
    exec.execute(stream("b", "SKU-1"), CounterCommand::Add(7), context("b"))
        .await
        .expect("b");
    let a = store
        .load_aggregate::<Counter>(&stream("a", "SKU-1"), None)
        .await
        .expect("a");
    let b = store
        .load_aggregate::<Counter>(&stream("b", "SKU-1"), None)
        .await
        .expect("b");
    assert_eq!((a.aggregate.value, b.aggregate.value), (1, 7));
    assert_eq!(
        StreamId::parse("a/SKU-1").expect("parse"),
        stream("a", "SKU-1")
    );
}
