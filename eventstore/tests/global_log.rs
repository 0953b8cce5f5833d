//! The global log: order, completeness, wake-ups and the F7 gap test.

mod common;

use std::time::Duration;

use commerce_eventstore::{
    CommandExecutor, EVENTS_CHANNEL, GlobalLog, LogCursor, LogEvent, PgEventStore,
};
use common::counter::{Counter, CounterCommand};
use common::{context, fresh_pool, stream};
use sqlx::{PgPool, Row};

/// Appends one counter event inside `tx` with the same insert shape as the engine.
async fn append_in(tx: &mut sqlx::PgConnection, key: &str, sequence: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('Counter', $1, $2, 'counter.added', '1', '{\"Added\":{\"amount\":1}}', $3)",
    )
    .bind(stream("t", key).aggregate_id())
    .bind(sequence)
    .bind(serde_json::json!(context("t").metadata.to_map()))
    .execute(tx)
    .await
    .expect("append");
}

/// The reader the issue warns about: follow the identity column alone.
async fn naive_read_after(pool: &PgPool, last_position: i64) -> Vec<i64> {
    sqlx::query("SELECT position FROM events WHERE position > $1 ORDER BY position")
        .bind(last_position)
        .fetch_all(pool)
        .await
        .expect("naive read")
        .iter()
        .map(|row| row.get("position"))
        .collect()
}

/// Everything readable now, in small batches.
async fn drain(log: &GlobalLog, cursor: &mut LogCursor) -> Vec<LogEvent> {
    let mut all = Vec::new();
    loop {
        let batch = log.read_after(*cursor, 2).await.expect("read");
        let Some(last) = batch.last() else { return all };
        *cursor = LogCursor::after(last);
        all.extend(batch);
    }
}

/// Reads until `expected` events arrived or 30 s passed. Other tests' transactions on the
/// same cluster may hold the horizon back for a while: the reader lags, it never skips.
async fn drain_until(log: &GlobalLog, cursor: &mut LogCursor, expected: usize) -> Vec<LogEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut all = drain(log, cursor).await;
    while all.len() < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        all.extend(drain(log, cursor).await);
    }
    all
}

#[tokio::test]
async fn f7_an_open_transaction_holds_the_log_reader_back_but_not_the_naive_reader() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let log = store.global_log();

    // A transaction appends (drawing the lower position) and stays open.
    let mut slow = pool.begin().await.expect("begin");
    append_in(&mut slow, "slow", 1).await;
    // Others append and commit meanwhile (higher positions).
    for n in 0..3 {
        let mut tx = pool.begin().await.expect("begin");
        append_in(&mut tx, &format!("fast-{n}"), 1).await;
        tx.commit().await.expect("commit");
    }

    // The naive reader sees the later positions now and moves its checkpoint past the gap ...
    let naive_seen = naive_read_after(&pool, 0).await;
    let naive_checkpoint = *naive_seen.last().expect("naive reader saw committed rows");
    assert_eq!(naive_seen.len(), 3);

    // ... while the horizon reader does not pass the open transaction.
    let mut cursor = LogCursor::START;
    let before_commit = drain(&log, &mut cursor).await;
    assert!(
        before_commit.is_empty(),
        "nothing may pass an open transaction: {before_commit:?}"
    );

    slow.commit().await.expect("commit the slow transaction");

    // After the commit, the naive reader never sees the slow event: it is lost to it.
    let naive_after = naive_read_after(&pool, naive_checkpoint).await;
    assert!(
        naive_after.is_empty(),
        "the naive reader skipped the slow event for ever"
    );
    let slow_position: i64 =
        sqlx::query_scalar("SELECT position FROM events WHERE aggregate_id = 't/slow'")
            .fetch_one(&pool)
            .await
            .expect("slow row");
    assert!(
        slow_position < naive_checkpoint,
        "the slow event drew the lower position"
    );

    // The horizon reader returns all four, the slow one included, exactly once.
    let after_commit = drain_until(&log, &mut cursor, 4).await;
    let mut positions: Vec<i64> = after_commit.iter().map(|event| event.position).collect();
    assert_eq!(after_commit.len(), 4);
    assert!(positions.contains(&slow_position));
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), 4);
    assert!(drain(&log, &mut cursor).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_concurrent_writers_when_tailing_then_every_event_is_read_exactly_once_in_a_stable_order()
 {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    let log = store.global_log();

    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let executor = executor.clone();
            tokio::spawn(async move {
                for n in 0..25 {
                    let s = stream("t", &format!("w{writer}-{}", n % 3));
                    executor
                        .execute(s, CounterCommand::AddMany(vec![1, 1]), context("t"))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    let reader = tokio::spawn({
        let log = log.clone();
        async move {
            let mut cursor = LogCursor::START;
            let mut seen = Vec::new();
            while seen.len() < 400 {
                let batch = log.read_after(cursor, 37).await.expect("read");
                if let Some(last) = batch.last() {
                    cursor = LogCursor::after(last);
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen.extend(batch);
            }
            seen
        }
    });
    for writer in writers {
        writer.await.expect("writer");
    }
    let tailed = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("reader finishes")
        .expect("reader");
    let mut ids: Vec<_> = tailed.iter().map(|event| event.event_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 400, "every event exactly once");

    // A second reader from the start gets the same order.
    let mut cursor = LogCursor::START;
    let replayed = drain_until(&log, &mut cursor, 400).await;
    let order = |events: &[LogEvent]| events.iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(order(&replayed), order(&tailed));
    // Per stream, sequences appear in order.
    for window in replayed.windows(2) {
        assert!(
            (window[0].transaction_id, window[0].position)
                < (window[1].transaction_id, window[1].position)
        );
    }
}

#[tokio::test]
async fn given_a_listener_when_an_event_is_appended_then_it_is_woken() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let mut wakeups = store.global_log().wakeups().await.expect("listen");
    CommandExecutor::<Counter>::new(store.clone(), ())
        .execute(stream("t", "c"), CounterCommand::Add(1), context("t"))
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(10), wakeups.next())
        .await
        .expect("woken within 10 s")
        .expect("notification");
}

/// Wake-ups left the commit path: no trigger NOTIFYs inside append transactions, yet a tailer
/// in another process (a bare LISTEN connection, which the in-process signal cannot reach)
/// still hears about an append, from the store's notifier after the commit.
#[tokio::test]
async fn given_a_listener_elsewhere_when_an_event_is_appended_then_a_notify_follows_the_commit() {
    let (_db, pool) = fresh_pool().await;
    let in_commit_triggers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_trigger WHERE tgname = 'events_notify'")
            .fetch_one(&pool)
            .await
            .expect("triggers");
    assert_eq!(in_commit_triggers, 0);
    let mut elsewhere = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .expect("listener");
    elsewhere.listen(EVENTS_CHANNEL).await.expect("listen");

    CommandExecutor::<Counter>::new(PgEventStore::new(pool), ())
        .execute(stream("t", "c"), CounterCommand::Add(1), context("t"))
        .await
        .expect("append");

    let notification = tokio::time::timeout(Duration::from_secs(10), elsewhere.recv())
        .await
        .expect("notified within 10 s")
        .expect("notification");
    assert_eq!(notification.channel(), EVENTS_CHANNEL);
}

/// On a young cluster the transaction ids pass 999 → 1000 (and 9999 → 10000) while the engine
/// runs. Every reader must still get the log in numeric `(transaction_id, position)` order:
/// sorted as text, "1000"… would come before "900"…, and a cursor moved to the end of such a
/// batch would pass over the rest for ever (RELIABILITY.md findings 4, 8 and 9).
#[tokio::test]
async fn given_transaction_ids_across_a_power_of_ten_then_batches_read_every_event_once_in_order() {
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool.clone());
    let log = store.global_log();
    for n in 0..300 {
        let mut tx = pool.begin().await.expect("begin");
        append_in(&mut tx, &format!("s-{n}"), 1).await;
        tx.commit().await.expect("commit");
    }
    // Renumbered 900, 901, … in log order, as a fresh cluster's are; the append-only guard is
    // lifted for the renumbering only, and every id stays below the read horizon.
    for statement in [
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "UPDATE events e SET transaction_id = (899 + r.rank)::text::xid8 \
         FROM (SELECT position, row_number() OVER (ORDER BY events.transaction_id, \
               events.position) AS rank FROM events) r \
         WHERE e.position = r.position",
        "ALTER TABLE events ENABLE TRIGGER events_append_only",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect("renumbered");
    }

    let mut cursor = LogCursor::START;
    let mut read = Vec::new();
    loop {
        let batch = log.read_after(cursor, 7).await.expect("read");
        let Some(last) = batch.last() else { break };
        cursor = LogCursor::after(last);
        read.extend(
            batch
                .iter()
                .map(|event| (event.transaction_id, event.position)),
        );
    }

    let expected: Vec<(u64, i64)> = (900..1200)
        .zip(
            sqlx::query_scalar::<_, i64>("SELECT position FROM events ORDER BY position")
                .fetch_all(&pool)
                .await
                .expect("positions"),
        )
        .collect();
    assert_eq!(read, expected);
}
