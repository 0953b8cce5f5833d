//! Each kind of tampering, done in SQL as a superuser around the append-only triggers, is
//! detected and named; an untouched log is clean.

mod common;

use commerce_eventstore::AuditKey;
use commerce_replay::{DamageKind, VerifyReport, seal_checkpoint, verify_database};
use common::{add, fresh_store, seal_all, splice_histories, stream, tamper};

const A: &str = "Counter t1/a";

async fn given_a_sealed_log() -> (
    commerce_devstack::testkit::TestDatabase,
    commerce_eventstore::PgEventStore,
) {
    let (db, store) = fresh_store().await;
    add(&store, &stream("t1", "a"), &[1, 2, 3, 4, 5]).await;
    add(&store, &stream("t1", "b"), &[10, 20]).await;
    add(&store, &stream("t2", "a"), &[7]).await;
    seal_all(&store).await;
    (db, store)
}

async fn verify(store: &commerce_eventstore::PgEventStore) -> VerifyReport {
    verify_database(store.pool(), &AuditKey::development())
        .await
        .expect("verify")
}

fn assert_named(report: &VerifyReport, stream: &str, sequence: u64, kind: DamageKind) {
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.stream == stream && d.sequence == sequence && d.kind == kind),
        "expected {kind:?} at {stream} #{sequence}, got {:#?}",
        report.damage
    );
}

#[tokio::test]
async fn given_an_untouched_log_when_verified_then_it_is_clean() {
    let (_db, store) = given_a_sealed_log().await;
    add(&store, &stream("t1", "a"), &[6]).await;
    let report = verify(&store).await;
    assert!(report.is_clean(), "{:#?}", report.damage);
    // Sealing may take more than one checkpoint: the log horizon is cluster-wide, so other
    // databases' open transactions can hold a first seal short of the last event.
    let sealed: i64 = sqlx::query_scalar("SELECT count(*) FROM log_checkpoints")
        .fetch_one(store.pool())
        .await
        .expect("checkpoints");
    assert!(sealed >= 1);
    assert_eq!(
        (report.events, report.streams, report.checkpoints),
        (9, 3, u64::try_from(sealed).expect("count"))
    );
}

#[tokio::test]
async fn given_an_updated_payload_when_verified_then_the_event_is_altered() {
    let (_db, store) = given_a_sealed_log().await;
    tamper(
        store.pool(),
        &[
            "UPDATE events SET payload = jsonb_set(payload, '{Added,amount}', '1000') \
           WHERE aggregate_id = 't1/a' AND sequence = 3",
        ],
    )
    .await;
    assert_named(&verify(&store).await, A, 3, DamageKind::Altered);
}

#[tokio::test]
async fn given_an_updated_last_event_when_verified_then_the_seal_names_it_altered() {
    let (_db, store) = given_a_sealed_log().await;
    tamper(
        store.pool(),
        &[
            "UPDATE events SET metadata = jsonb_set(metadata, '{actor}', '\"mallory\"') \
           WHERE aggregate_id = 't1/a' AND sequence = 5",
        ],
    )
    .await;
    assert_named(&verify(&store).await, A, 5, DamageKind::Altered);
}

#[tokio::test]
async fn given_a_deleted_event_when_verified_then_it_is_deleted() {
    let (_db, store) = given_a_sealed_log().await;
    tamper(
        store.pool(),
        &["DELETE FROM events WHERE aggregate_id = 't1/a' AND sequence = 2"],
    )
    .await;
    assert_named(&verify(&store).await, A, 2, DamageKind::Deleted);
}

#[tokio::test]
async fn given_two_swapped_sequences_when_verified_then_both_are_reordered() {
    let (_db, store) = given_a_sealed_log().await;
    tamper(
        store.pool(),
        &[
            "UPDATE events SET sequence = 1000 WHERE aggregate_id = 't1/a' AND sequence = 2",
            "UPDATE events SET sequence = 2 WHERE aggregate_id = 't1/a' AND sequence = 3",
            "UPDATE events SET sequence = 3 WHERE aggregate_id = 't1/a' AND sequence = 1000",
        ],
    )
    .await;
    let report = verify(&store).await;
    assert_named(&report, A, 2, DamageKind::Reordered);
    assert_named(&report, A, 3, DamageKind::Reordered);
}

#[tokio::test]
async fn given_a_forged_event_when_verified_then_it_is_inserted() {
    let (_db, store) = given_a_sealed_log().await;
    // The forger copies a real row's hash as prev_hash and makes up its own (no key).
    tamper(
        store.pool(),
        &["INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
               payload, metadata, prev_hash, chain_hash) \
           SELECT aggregate_type, aggregate_id, 6, event_type, event_version, \
                  '{\"Added\": {\"amount\": 1000000}}', metadata, chain_hash, \
                  sha256(chain_hash) \
           FROM events WHERE aggregate_id = 't1/a' AND sequence = 5"],
    )
    .await;
    assert_named(&verify(&store).await, A, 6, DamageKind::Inserted);
}

#[tokio::test]
async fn given_a_forged_event_without_hash_in_a_new_stream_when_verified_then_it_is_inserted() {
    let (_db, store) = given_a_sealed_log().await;
    tamper(
        store.pool(),
        &["INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
               payload, metadata) \
           VALUES ('Counter', 't1/z', 1, 'counter.added', '1', '{}', '{}')"],
    )
    .await;
    assert_named(
        &verify(&store).await,
        "Counter t1/z",
        1,
        DamageKind::Inserted,
    );
}

/// A restored fork ([`splice_histories`]): only the link from 4 to the new 3 is broken.
#[tokio::test]
async fn given_two_histories_spliced_when_verified_then_the_break_is_named() {
    let (_db, store) = fresh_store().await;
    splice_histories(&store).await;

    let report = verify(&store).await;
    let found: Vec<_> = report
        .damage
        .iter()
        .map(|d| (d.stream.as_str(), d.sequence, d.kind))
        .collect();
    assert_eq!(found, [(A, 4, DamageKind::Spliced)], "{:#?}", report.damage);
}

/// A stream rolled back past its sealed head (a restored backup) and written again: every
/// event is authentic and linked, but not the one the checkpoint sealed.
#[tokio::test]
async fn given_a_sealed_stream_rolled_back_and_rewritten_when_verified_then_it_is_spliced() {
    let (_db, store) = given_a_sealed_log().await;
    tamper(
        store.pool(),
        &["DELETE FROM events WHERE aggregate_id = 't1/a' AND sequence >= 4"],
    )
    .await;
    add(&store, &stream("t1", "a"), &[40, 50]).await;

    let report = verify(&store).await;
    assert_named(&report, A, 5, DamageKind::Spliced);
}

#[tokio::test]
async fn given_a_truncated_tail_when_verified_then_the_missing_events_are_named() {
    let (_db, store) = given_a_sealed_log().await;
    // The newest three events of the log: t1/b #2 and t2/a #1 and t1/b #1.
    tamper(
        store.pool(),
        &["DELETE FROM events WHERE position IN \
           (SELECT position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 3)"],
    )
    .await;
    let report = verify(&store).await;
    assert_named(&report, "Counter t2/a", 1, DamageKind::Truncated);
    assert_named(&report, "Counter t1/b", 1, DamageKind::Truncated);
    assert_named(&report, "Counter t1/b", 2, DamageKind::Truncated);
}

#[tokio::test]
async fn given_a_damaged_log_when_sealing_then_it_refuses() {
    let (_db, store) = given_a_sealed_log().await;
    add(&store, &stream("t1", "a"), &[6]).await;
    tamper(
        store.pool(),
        &["UPDATE events SET payload = '{}' WHERE aggregate_id = 't1/a' AND sequence = 6"],
    )
    .await;
    // Other tests' transactions may hold the cluster-wide horizon back for a moment.
    let mut sealed = Ok(None);
    for _ in 0..200 {
        sealed = seal_checkpoint(store.pool(), &AuditKey::development()).await;
        if !matches!(sealed, Ok(None)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        matches!(sealed, Err(commerce_replay::ReplayError::Damaged(1))),
        "{sealed:?}"
    );
}

#[tokio::test]
async fn given_a_verifier_with_another_key_when_verifying_then_nothing_authenticates() {
    let (_db, store) = given_a_sealed_log().await;
    let report = verify_database(store.pool(), &AuditKey::new("wrong"))
        .await
        .expect("verify");
    assert!(!report.is_clean());
}

#[tokio::test]
async fn given_the_engine_role_when_it_updates_or_deletes_events_then_postgres_refuses() {
    let (_db, store) = given_a_sealed_log().await;
    let mut tx = store.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("bypass triggers");
    sqlx::query("SET LOCAL ROLE commerce_app")
        .execute(&mut *tx)
        .await
        .expect("become the engine role");
    sqlx::query("SELECT count(*) FROM events")
        .execute(&mut *tx)
        .await
        .expect("the engine may read");
    sqlx::query("SAVEPOINT attempt")
        .execute(&mut *tx)
        .await
        .expect("savepoint");
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "DELETE FROM log_checkpoints",
    ] {
        let error = sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("permission denied"),
            "{statement}: {error}"
        );
        sqlx::query("ROLLBACK TO SAVEPOINT attempt")
            .execute(&mut *tx)
            .await
            .expect("rollback to savepoint");
    }
}

/// A young cluster's transaction ids pass 999 → 1000 while events are appended: sealing and
/// verification walk the log in numeric `(transaction_id, position)` order, so a second seal
/// adds nothing twice and the log verifies clean (sorted as text, "1000"… came before "990"…).
#[tokio::test]
async fn given_transaction_ids_across_a_power_of_ten_when_sealed_twice_then_the_log_is_clean() {
    let (_db, store) = fresh_store().await;
    for n in 0..30 {
        add(&store, &stream("t1", &format!("s{n}")), &[1, 2]).await;
    }
    tamper(
        store.pool(),
        &[
            "UPDATE events e SET transaction_id = (989 + r.rank)::text::xid8 \
           FROM (SELECT position, row_number() OVER (ORDER BY events.transaction_id, \
                 events.position) AS rank FROM events) r \
           WHERE e.position = r.position",
        ],
    )
    .await;

    seal_all(&store).await;
    seal_checkpoint(store.pool(), &AuditKey::development())
        .await
        .expect("second seal");

    let counts: Vec<i64> =
        sqlx::query_scalar("SELECT event_count FROM log_checkpoints ORDER BY checkpoint_no")
            .fetch_all(store.pool())
            .await
            .expect("checkpoints");
    assert_eq!(counts.last(), Some(&60), "checkpoint counts {counts:?}");
    let report = verify(&store).await;
    assert!(report.is_clean(), "{:#?}", report.damage);
    assert_eq!(report.events, 60);
}
