//! The projector against a real PostgreSQL (a fresh database per test, from the devstack testkit).

use commerce_devstack::testkit::TestDatabase;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sqlx::PgPool;

use super::*;
use crate::queries::{self, OrderFilter};
use crate::schema::{create_schema, migrate};
use crate::testing::{History, Rng, dump};

async fn database() -> TestDatabase {
    let db = TestDatabase::create()
        .await
        .expect("a test database (set DATABASE_URL)");
    migrate(db.pool()).await.expect("migrations apply");
    db
}

async fn reset(pool: &PgPool, schema: ReadModelSchema) {
    let mut tx = pool.begin().await.expect("begin");
    create_schema(&mut tx, schema).await.expect("create schema");
    tx.commit().await.expect("commit");
}

/// Projects each record in its own transaction, as a worker does.
async fn project_each(
    pool: &PgPool,
    projector: Projector,
    records: &[EventRecord],
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for record in records {
        let mut tx = pool.begin().await.expect("begin");
        projector.begin(&mut tx).await.expect("search path");
        let decoded = record.clone().decode().expect("generated events decode");
        outcomes.push(projector.project(&mut tx, &decoded).await.expect("project"));
        tx.commit().await.expect("commit");
    }
    outcomes
}

/// Projects all records in one transaction, as a rebuild batch does.
async fn project_batch(pool: &PgPool, projector: Projector, records: &[EventRecord]) {
    let mut tx = pool.begin().await.expect("begin");
    projector.begin(&mut tx).await.expect("search path");
    for record in records {
        let decoded = record.clone().decode().expect("generated events decode");
        projector.project(&mut tx, &decoded).await.expect("project");
    }
    tx.commit().await.expect("commit");
}

fn live() -> Projector {
    Projector::new(ReadModelSchema::Live, true)
}

fn stream_of<'a>(log: &'a [EventRecord], aggregate_type: &str) -> Vec<&'a EventRecord> {
    let first = log
        .iter()
        .find(|r| {
            r.aggregate_type == aggregate_type
                && log
                    .iter()
                    .filter(|o| o.aggregate_id == r.aggregate_id)
                    .count()
                    >= 3
        })
        .expect("a stream with three events");
    log.iter()
        .filter(|r| r.aggregate_id == first.aggregate_id)
        .collect()
}

fn history(seed: u64, size: u64) -> Vec<EventRecord> {
    let mut rng = Rng::new(seed);
    let history = History::random(&mut rng, size);
    history.interleave(&mut rng)
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing() {
    // Given a projected history
    let db = database().await;
    let log = history(7, 30);
    project_each(db.pool(), live(), &log).await;
    let before = dump(&mut db.pool().acquire().await.expect("conn"), "rm").await;
    // When every event is delivered again
    let outcomes = project_each(db.pool(), live(), &log).await;
    // Then each is a duplicate and the read models are unchanged
    assert!(outcomes.iter().all(|o| *o == Outcome::Duplicate));
    let after = dump(&mut db.pool().acquire().await.expect("conn"), "rm").await;
    assert_eq!(before, after);
}

#[tokio::test]
async fn an_event_ahead_of_a_gap_waits_until_the_gap_fills() {
    // Given an order stream's first three events
    let db = database().await;
    let log = history(11, 40);
    let order = stream_of(&log, "order");
    let (first, second, third) = (order[0].clone(), order[1].clone(), order[2].clone());
    // When 1, 3 then 2 arrive
    let outcomes = project_each(db.pool(), live(), &[first.clone(), third, second]).await;
    // Then 3 waits and is applied right after 2
    assert_eq!(
        outcomes,
        vec![
            Outcome::Applied { drained: 0 },
            Outcome::Pending,
            Outcome::Applied { drained: 1 }
        ]
    );
    let last: i64 =
        sqlx::query_scalar("SELECT last_sequence FROM rm.stream_state WHERE aggregate_id = $1")
            .bind(&first.aggregate_id)
            .fetch_one(db.pool())
            .await
            .expect("stream state");
    assert_eq!(last, 3);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.pending_events")
        .fetch_one(db.pool())
        .await
        .expect("pending count");
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn a_blocked_stream_waits_and_resumes_when_unblocked() {
    // Given an inventory stream blocked by a dead letter after its first event
    let db = database().await;
    let log = history(13, 40);
    let stream = stream_of(&log, "order");
    project_each(db.pool(), live(), &[stream[0].clone()]).await;
    let key = StreamKey::of(stream[0]);
    let mut tx = db.pool().begin().await.expect("begin");
    live().begin(&mut tx).await.expect("search path");
    live().block(&mut tx, &key, 1).await.expect("block");
    tx.commit().await.expect("commit");
    // When its next event arrives, it waits
    let outcomes = project_each(db.pool(), live(), &[stream[1].clone()]).await;
    assert_eq!(outcomes, vec![Outcome::Pending]);
    // Then unblocking applies it
    let mut tx = db.pool().begin().await.expect("begin");
    live().begin(&mut tx).await.expect("search path");
    let drained = live().unblock(&mut tx, &key).await.expect("unblock");
    tx.commit().await.expect("commit");
    assert_eq!(drained, 1);
}

#[tokio::test]
async fn queries_answer_from_the_read_models_and_only_for_the_tenant() {
    // Given a projected history over two tenants
    let db = database().await;
    let log = history(21, 60);
    project_each(db.pool(), live(), &log).await;
    let pool = db.pool();
    let order = log
        .iter()
        .find(|r| r.aggregate_type == "order")
        .expect("an order");
    let order_id = Uuid::parse_str(&order.aggregate_id).expect("uuid");
    let other = if order.tenant_id == "tenant-a" {
        "tenant-b"
    } else {
        "tenant-a"
    };
    // When the owner tenant and the other tenant ask for it
    let own = queries::order_by_id(pool, &order.tenant_id, order_id)
        .await
        .expect("query");
    let foreign = queries::order_by_id(pool, other, order_id)
        .await
        .expect("query");
    // Then only the owner sees it, with its lines
    let own = own.expect("the owner sees its order");
    assert!(!own.lines.is_empty());
    assert!(foreign.is_none());
    assert!(
        queries::payments_by_order(pool, other, order_id)
            .await
            .expect("query")
            .is_empty()
    );
    assert!(
        queries::shipments_by_order(pool, other, order_id)
            .await
            .expect("query")
            .is_empty()
    );
    // And pages of the list cover every order of the tenant exactly once
    let expected: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.orders WHERE tenant_id = $1")
        .bind(&order.tenant_id)
        .fetch_one(pool)
        .await
        .expect("count");
    let mut filter = OrderFilter {
        limit: Some(2),
        ..OrderFilter::default()
    };
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = queries::list_orders(pool, &order.tenant_id, &filter)
            .await
            .expect("list");
        for item in &page.items {
            assert!(seen.insert(item.id), "an order appears twice");
        }
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(seen.len() as i64, expected);
    // And the read-your-writes wait returns at once for an applied sequence, times out beyond it
    let wait = |sequence| {
        queries::wait_for(
            pool,
            &order.tenant_id,
            "order",
            &order.aggregate_id,
            sequence,
            std::time::Duration::from_millis(50),
        )
    };
    assert!(wait(1).await.is_ok());
    assert!(matches!(
        wait(1_000).await,
        Err(queries::QueryError::NotCaughtUp)
    ));
}

/// Empties both the live and the shadow read models.
async fn reset_both(pool: &PgPool) {
    reset(pool, ReadModelSchema::Live).await;
    reset(pool, ReadModelSchema::Shadow).await;
}

/// Dumps of `rm` and `rm_shadow`.
async fn dump_both(pool: &PgPool) -> (serde_json::Value, serde_json::Value) {
    let mut conn = pool.acquire().await.expect("conn");
    (
        dump(&mut conn, "rm").await,
        dump(&mut conn, "rm_shadow").await,
    )
}

/// A random log whose events are, some of them, repeated later in it (redeliveries).
fn log_with_repeats(rng: &mut Rng, size: u64) -> Vec<EventRecord> {
    let mut log = History::random(rng, size).interleave(rng);
    let again: Vec<EventRecord> = log.iter().filter(|_| rng.chance(15)).cloned().collect();
    log.extend(again);
    log
}

/// Dumps of `rm` (built incrementally from `deliveries`) and `rm_shadow` (built in log order).
async fn compare(
    pool: &PgPool,
    log: &[EventRecord],
    deliveries: &[EventRecord],
) -> (serde_json::Value, serde_json::Value) {
    reset_both(pool).await;
    project_each(pool, live(), deliveries).await;
    project_batch(pool, Projector::new(ReadModelSchema::Shadow, false), log).await;
    dump_both(pool).await
}

#[test]
fn incremental_with_duplicates_and_disorder_equals_a_rebuild() {
    // ES-2 and idempotence: for random histories, delivering every event twice, or in a random
    // order with duplicates (out of order within aggregates too), builds exactly the read models
    // a rebuild in log order builds.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(database());
    let mut runner = TestRunner::new(Config {
        cases: 12,
        ..Config::default()
    });
    runner
        .run(
            &(any::<u64>(), 5_u64..25, any::<bool>()),
            |(seed, size, twice)| {
                let mut rng = Rng::new(seed);
                let log = History::random(&mut rng, size).interleave(&mut rng);
                let deliveries: Vec<EventRecord> = if twice {
                    log.iter().flat_map(|r| [r.clone(), r.clone()]).collect()
                } else {
                    let mut shuffled: Vec<EventRecord> = log
                        .iter()
                        .chain(log.iter().filter(|_| rng.chance(20)))
                        .cloned()
                        .collect();
                    for i in (1..shuffled.len()).rev() {
                        let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
                        shuffled.swap(i, j);
                    }
                    shuffled
                };
                let (incremental, rebuilt) =
                    runtime.block_on(compare(db.pool(), &log, &deliveries));
                prop_assert_eq!(incremental, rebuilt);
                Ok(())
            },
        )
        .expect("incremental equals rebuilt");
}

/// Applies `log` to the shadow set-based, in consecutive batches of `size` events, one
/// transaction each, as a rebuild does.
async fn project_set_based(pool: &PgPool, log: &[EventRecord], size: usize) {
    project_in_batches(
        pool,
        Projector::new(ReadModelSchema::Shadow, false),
        log,
        size,
    )
    .await;
}

/// Applies `log` with `projector` in consecutive batches of `size` events, one transaction
/// each; returns every event's outcome.
async fn project_in_batches(
    pool: &PgPool,
    projector: Projector,
    log: &[EventRecord],
    size: usize,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for chunk in log.chunks(size.max(1)) {
        let events: Vec<DecodedEvent> = chunk
            .iter()
            .map(|record| record.clone().decode().expect("generated events decode"))
            .collect();
        let mut tx = pool.begin().await.expect("begin");
        projector.begin(&mut tx).await.expect("search path");
        outcomes.extend(
            projector
                .project_batch(&mut tx, &events)
                .await
                .expect("project a batch"),
        );
        tx.commit().await.expect("commit");
    }
    outcomes
}

/// The analyst records queued so far, in queue order, and the queue emptied.
async fn take_outbox(pool: &PgPool) -> Vec<(String, String, serde_json::Value)> {
    sqlx::query_as(
        "WITH taken AS (DELETE FROM rm_meta.analytics_outbox RETURNING id, stream, record_key, payload)
         SELECT stream, record_key, payload FROM taken ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("analytics outbox")
}

#[test]
fn live_batches_build_and_queue_what_the_per_event_projector_does() {
    // A live worker's batches (orders and payments one by one for their analyst records, the
    // rest set-based) build the same tables, queue the same analyst records in the same order,
    // and report the same outcomes as applying each event in turn, with redeliveries mixed in.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(database());
    let mut runner = TestRunner::new(Config {
        cases: 12,
        ..Config::default()
    });
    runner
        .run(
            &(any::<u64>(), 10_u64..60, 1_usize..80),
            |(seed, size, batch)| {
                let log = log_with_repeats(&mut Rng::new(seed), size);
                let (per_event, batched) = runtime.block_on(async {
                    reset_both(db.pool()).await;
                    take_outbox(db.pool()).await;
                    let each = project_each(db.pool(), live(), &log).await;
                    let each_queued = take_outbox(db.pool()).await;
                    let batched = project_in_batches(
                        db.pool(),
                        Projector::new(ReadModelSchema::Shadow, true),
                        &log,
                        batch,
                    )
                    .await;
                    let batched_queued = take_outbox(db.pool()).await;
                    let (live_tables, shadow_tables) = dump_both(db.pool()).await;
                    (
                        (live_tables, each_queued, each),
                        (shadow_tables, batched_queued, batched),
                    )
                });
                prop_assert_eq!(per_event, batched);
                Ok(())
            },
        )
        .expect("live batches equal per event");
}

#[test]
fn set_based_batches_build_what_the_per_event_projector_builds() {
    // For random histories of all six aggregates (several events per stream, streams spanning
    // batch boundaries, many orders confirmed and canceled on the same day), applying the log in
    // batches set-based builds exactly the tables the per-event projector builds, also when
    // events are repeated later in the log (they are skipped as duplicates).
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(database());
    let mut runner = TestRunner::new(Config {
        cases: 16,
        ..Config::default()
    });
    runner
        .run(
            &(any::<u64>(), 10_u64..80, 1_usize..120, any::<bool>()),
            |(seed, size, batch, repeat)| {
                let mut rng = Rng::new(seed);
                let log = if repeat {
                    log_with_repeats(&mut rng, size)
                } else {
                    History::random(&mut rng, size).interleave(&mut rng)
                };
                let (per_event, set_based) = runtime.block_on(async {
                    reset_both(db.pool()).await;
                    project_each(db.pool(), live(), &log).await;
                    project_set_based(db.pool(), &log, batch).await;
                    dump_both(db.pool()).await
                });
                prop_assert_eq!(per_event, set_based);
                Ok(())
            },
        )
        .expect("set-based equals per event");
}

#[tokio::test]
async fn a_batch_with_a_gap_waits_like_the_per_event_projector() {
    // Given an order stream's first event applied, and a batch holding its third but not its second
    let db = database().await;
    let log = history(11, 40);
    let order = stream_of(&log, "order");
    reset(db.pool(), ReadModelSchema::Shadow).await;
    project_set_based(db.pool(), &[order[0].clone()], 10).await;
    // When that batch is applied, then the missing second one
    project_set_based(db.pool(), &[order[2].clone()], 10).await;
    project_set_based(db.pool(), &[order[1].clone()], 10).await;
    // Then the third waited as pending and was applied right after the second
    let last: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM rm_shadow.stream_state WHERE aggregate_id = $1",
    )
    .bind(&order[0].aggregate_id)
    .fetch_one(db.pool())
    .await
    .expect("stream state");
    assert_eq!(last, 3);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_shadow.pending_events")
        .fetch_one(db.pool())
        .await
        .expect("pending count");
    assert_eq!(pending, 0);
}

#[tokio::test]
async fn summaries_of_one_order_take_turns_and_other_orders_do_not_wait() {
    // An order's events and its payments' events may be applied by two workers at once; each
    // summary reads the other's tables, so the second must wait for the first to commit.
    let db = database().await;
    let (order, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let begin = |pool: PgPool| async move {
        let mut tx = pool.begin().await.expect("begin");
        live().begin(&mut tx).await.expect("search path");
        tx
    };
    let mut first = begin(db.pool().clone()).await;
    crate::analytics::queue_order_summary(&mut first, "t", order)
        .await
        .expect("first summary");
    let second = tokio::spawn({
        let pool = db.pool().clone();
        async move {
            let mut tx = begin(pool).await;
            crate::analytics::queue_order_summary(&mut tx, "t", order)
                .await
                .expect("second summary");
            tx.commit().await.expect("commit");
        }
    });
    let mut unrelated = begin(db.pool().clone()).await;
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::analytics::queue_order_summary(&mut unrelated, "t", other),
    )
    .await
    .expect("another order's summary does not wait")
    .expect("unrelated summary");
    unrelated.rollback().await.expect("rollback");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second summary waits");
    first.commit().await.expect("commit");
    tokio::time::timeout(std::time::Duration::from_secs(5), second)
        .await
        .expect("the second summary goes on once the first commits")
        .expect("second task");
}
