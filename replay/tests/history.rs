//! History, as-of and to-seq against a real PostgreSQL: the state after each event is exactly
//! the fold of the events up to it; upcast events are shown in their current version.

mod common;

use commerce_eventstore::{PgEventStore, Upcasters};
use commerce_replay::{Upto, history};
use common::counter::Counter;
use common::{add, fresh_store, stream};
use proptest::prelude::*;

#[tokio::test]
async fn given_a_stream_when_replayed_then_each_entry_holds_the_fold_up_to_it() {
    let (_db, store) = fresh_store().await;
    let s = stream("t1", "h");
    add(&store, &s, &[3, -1, 7, 2]).await;
    let full = history::<Counter>(&store, &s, Upto::End)
        .await
        .expect("history");
    assert_eq!(full.entries.len(), 4);
    for entry in &full.entries {
        let fold = store
            .load_aggregate::<Counter>(&s, Some(entry.sequence))
            .await
            .expect("fold");
        assert_eq!(
            entry.state,
            serde_json::to_value(&fold.aggregate).expect("json")
        );
    }
    // as of the second event's time: exactly the first two events
    let moment = full.entries[1].recorded_at;
    let as_of = history::<Counter>(&store, &s, Upto::Time(moment))
        .await
        .expect("as-of");
    assert_eq!(as_of.version, 2);
    assert_eq!(as_of.state, full.entries[1].state);
    assert!(full.to_table().contains("state:"));
}

#[tokio::test]
async fn given_recorded_times_out_of_order_when_replayed_as_of_then_the_fold_stops_at_the_first_later_event()
 {
    let (_db, store) = fresh_store().await;
    let s = stream("t1", "skew");
    add(&store, &s, &[3, -1, 7]).await;
    let full = history::<Counter>(&store, &s, Upto::End)
        .await
        .expect("history");
    // given: the second event's writer had a clock ahead of the third's
    let mut tx = store.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("triggers off");
    sqlx::query(
        "UPDATE events SET recorded_at = $1 WHERE aggregate_id = 't1/skew' AND sequence = 2",
    )
    .bind(full.entries[2].recorded_at + chrono::Duration::seconds(1))
    .execute(&mut *tx)
    .await
    .expect("skewed");
    tx.commit().await.expect("commit");

    // when: replayed as of the third event's time
    let as_of = history::<Counter>(&store, &s, Upto::Time(full.entries[2].recorded_at))
        .await
        .expect("as-of");

    // then: only the first event, never the third without the second
    assert_eq!(as_of.version, 1);
    assert_eq!(as_of.state, full.entries[0].state);
}

#[tokio::test]
async fn given_another_tenant_when_replaying_then_the_stream_is_not_found() {
    let (_db, store) = fresh_store().await;
    add(&store, &stream("t1", "h"), &[1]).await;
    let other = history::<Counter>(&store, &stream("t2", "h"), Upto::End).await;
    assert!(matches!(
        other,
        Err(commerce_replay::ReplayError::NotFound(_))
    ));
}

#[tokio::test]
async fn given_an_old_event_version_when_replayed_then_it_is_shown_upcast_and_marked() {
    let (_db, store) = fresh_store().await;
    let s = stream("t1", "u");
    add(&store, &s, &[5]).await;
    sqlx::query("UPDATE events SET event_version = '0' WHERE aggregate_id = 't1/u'")
        .execute(store.pool())
        .await
        .expect_err("append-only");
    // An upcaster to a newer version of the same event type.
    let event_type: String = sqlx::query_scalar("SELECT event_type FROM events LIMIT 1")
        .fetch_one(store.pool())
        .await
        .expect("type");
    let upcasting = PgEventStore::new(store.pool().clone())
        .with_upcasters(Upcasters::new().register_fn(&event_type, "9", |payload| payload));
    let shown = history::<Counter>(&upcasting, &s, Upto::End)
        .await
        .expect("history");
    let entry = &shown.entries[0];
    assert_eq!(entry.event_version, "9.0.0");
    assert!(entry.upcasted_from.is_some());
    assert!(shown.to_table().contains("upcast from"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn to_seq_returns_exactly_the_fold_of_the_events_up_to_it(
        amounts in proptest::collection::vec(-50_i64..50, 1..12),
        cut in 0_usize..12,
    ) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let (_db, store) = fresh_store().await;
            let s = stream("p", "c");
            add(&store, &s, &amounts).await;
            let upto = (cut % amounts.len()) as u64 + 1;
            let replayed = history::<Counter>(&store, &s, Upto::Sequence(upto)).await.expect("history");
            let fold = store.load_aggregate::<Counter>(&s, Some(upto)).await.expect("fold");
            assert_eq!(replayed.version, upto);
            assert_eq!(replayed.state, serde_json::to_value(&fold.aggregate).expect("json"));
            // and by time: the moment of event `upto` gives the same state
            let moment = replayed.entries.last().expect("an entry").recorded_at;
            let by_time = history::<Counter>(&store, &s, Upto::Time(moment)).await.expect("as-of");
            let later_same_moment = by_time.version >= upto;
            assert!(later_same_moment);
            let fold_by_time = store.load_aggregate::<Counter>(&s, Some(by_time.version)).await.expect("fold");
            assert_eq!(by_time.state, serde_json::to_value(&fold_by_time.aggregate).expect("json"));
        });
    }
}
