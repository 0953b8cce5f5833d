//! Shared helpers: a fresh migrated database, the event store's counter aggregate, and a
//! superuser connection that bypasses the append-only triggers (the attacker of the tests).
#![allow(dead_code)]

#[path = "../../../eventstore/tests/common/counter.rs"]
pub mod counter;

use commerce_devstack::testkit::TestDatabase;
use commerce_eventstore::{
    AuditKey, CommandContext, CommandExecutor, EventMetadata, PgEventStore, StreamId, migrate,
};
use counter::{Counter, CounterCommand};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub async fn fresh_store() -> (TestDatabase, PgEventStore) {
    let db = TestDatabase::create()
        .await
        .expect("test database (is DATABASE_URL set?)");
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(db.url())
        .await
        .expect("connect to test database");
    migrate(&pool).await.expect("migrate");
    let store = PgEventStore::new(pool).with_audit_key(AuditKey::development());
    (db, store)
}

pub fn stream(tenant: &str, key: &str) -> StreamId {
    StreamId::new(tenant, key).expect("valid stream id")
}

/// Appends `amounts.len()` events to the stream, one command each.
pub async fn add(store: &PgEventStore, stream: &StreamId, amounts: &[i64]) {
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());
    for amount in amounts {
        executor
            .execute(
                stream.clone(),
                CounterCommand::Add(*amount),
                CommandContext::new(EventMetadata::new(stream.tenant(), "tester")),
            )
            .await
            .expect("append");
    }
}

/// Runs `statements` as a superuser with the user triggers switched off for the session.
pub async fn tamper(pool: &PgPool, statements: &[&str]) {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("bypass triggers");
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    tx.commit().await.expect("commit tampering");
}

/// Seals until a checkpoint covers every event: the log horizon is cluster-wide, so other
/// tests' open transactions can hold a seal back for a moment.
pub async fn seal_all(store: &PgEventStore) {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(store.pool())
        .await
        .expect("count");
    for _ in 0..200 {
        commerce_replay::seal_checkpoint(store.pool(), &AuditKey::development())
            .await
            .expect("seal");
        let sealed: Option<i64> =
            sqlx::query_scalar("SELECT max(event_count) FROM log_checkpoints")
                .fetch_one(store.pool())
                .await
                .expect("sealed count");
        if sealed == Some(total) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the log horizon never reached the last event");
}

/// Stream `t1/a` put together from two histories, as a restored backup spliced into the live
/// store would be: events 1–5 are written, 3–5 set aside, the engine appends another 3
/// (authentic, chained after 2), and the old 4 and 5 are put back. Every event is authentic
/// on its own and the sequences are whole; only the link from 4 to the new 3 is broken.
pub async fn splice_histories(store: &PgEventStore) {
    add(store, &stream("t1", "a"), &[1, 2, 3, 4, 5]).await;
    let columns = "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
                   metadata, event_id, recorded_at, prev_hash, chain_hash";
    let set_aside = format!(
        "CREATE TABLE set_aside AS SELECT {columns} FROM events \
         WHERE aggregate_id = 't1/a' AND sequence >= 3"
    );
    tamper(
        store.pool(),
        &[
            &set_aside,
            "DELETE FROM events WHERE aggregate_id = 't1/a' AND sequence >= 3",
        ],
    )
    .await;
    add(store, &stream("t1", "a"), &[99]).await;
    let put_back = format!(
        "INSERT INTO events ({columns}) SELECT {columns} FROM set_aside WHERE sequence >= 4"
    );
    tamper(store.pool(), &[&put_back]).await;
}
