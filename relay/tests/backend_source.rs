//! The relay on an `EventBackend`'s global order ([`Relay::on_backend`]) rather than on
//! PostgreSQL's `GlobalLog`, against the real PostgreSQL and the shared Tansu broker.
//!
//! The backend here is `PgBackend`: the same generic path KurrentDB's `$all` takes in
//! production (`BackendLogSource`, a text cursor in `relay_cursor.source_cursor`, wake-ups
//! from a catch-up subscription), checked end to end on the services every CI run has. The
//! KurrentDB backend itself is checked by its conformance suite when `KURRENTDB_URL` is set.

mod support;

use std::time::Duration;

use commerce_eventstore::{
    EventBackend, EventMetadata, ExpectedVersion, LogCursor, NewStreamEvent, PgBackend,
    PgEventStore, StreamId, StreamRef,
};
use commerce_relay::{Relay, RelayConfig, RelayRole};
use sqlx::PgPool;
use support::*;
use uuid::Uuid;

const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Appends `events` through the backend contract, one append per event.
async fn append(backend: &PgBackend, events: &[NewEvent]) {
    for event in events {
        let stream = StreamRef::new(
            event.aggregate_type,
            StreamId::new(TENANT, &event.key).expect("valid stream id"),
        );
        let sequence = u64::try_from(event.sequence).expect("positive sequence");
        backend
            .append(
                &stream,
                ExpectedVersion::Exact(sequence - 1),
                vec![NewStreamEvent {
                    event_id: Uuid::new_v4(),
                    event_type: event.event_type.to_owned(),
                    event_version: "1".to_owned(),
                    payload: serde_json::json!({"event_type": event.event_type, "n": event.sequence}),
                    metadata: EventMetadata::new(TENANT, "relay-test"),
                }],
            )
            .await
            .expect("append");
    }
}

/// `aggregates` orders with `per_aggregate` events each, interleaved across orders.
fn orders(aggregates: usize, per_aggregate: i64) -> Vec<NewEvent> {
    let keys: Vec<String> = (0..aggregates)
        .map(|a| format!("o{a}-{}", Uuid::new_v4().simple()))
        .collect();
    (1..=per_aggregate)
        .flat_map(|sequence| keys.iter().map(move |key| NewEvent::order(key, sequence)))
        .collect()
}

fn start_on_backend(config: RelayConfig, pool: &PgPool) -> (Running, PgBackend) {
    let backend = PgBackend::new(PgEventStore::new(pool.clone()));
    let relay = Relay::on_backend(config, pool.clone(), backend.clone());
    (Running::spawn(relay), backend)
}

async fn persisted(pool: &PgPool, relay: &str) -> (Option<String>, String) {
    sqlx::query_as("SELECT source_cursor, transaction_id::text FROM relay_cursor WHERE name = $1")
        .bind(relay)
        .fetch_one(pool)
        .await
        .expect("relay cursor row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_backend_source_then_every_event_is_published_in_order_and_its_cursor_persisted_as_text()
 {
    let db = database().await;
    let brokers = shared_brokers();
    let config = config(&brokers);
    let (relay, backend) = start_on_backend(config.clone(), db.pool());

    let written = orders(5, 20);
    append(&backend, &written).await;
    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    assert_complete_and_ordered(&config, &written, &received);
    let envelope = &received[0].envelope;
    assert!(
        envelope["position"].as_i64().is_some_and(|p| p > 0),
        "{envelope}"
    );
    assert_eq!(envelope["tenant_id"], TENANT);

    let status = relay.status.clone();
    eventually(Duration::from_secs(10), "everything published", || {
        let snapshot = status.snapshot();
        snapshot.lag_events == 0 && snapshot.events_published >= written.len() as u64
    })
    .await;
    let snapshot = status.snapshot();
    assert_eq!(snapshot.role, RelayRole::Active);
    relay.stop().await;

    let (source_cursor, transaction_id) = persisted(db.pool(), &config.name).await;
    let source_cursor = source_cursor.expect("the backend cursor is persisted");
    assert_eq!(source_cursor, snapshot.source_cursor);
    let parsed: LogCursor = source_cursor.parse().expect("the backend's cursor text");
    assert!(parsed > LogCursor::START);
    assert_eq!(
        transaction_id, "0",
        "the PostgreSQL log cursor columns are not used by a backend source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_restarted_backend_relay_then_it_resumes_after_its_persisted_cursor() {
    let db = database().await;
    let brokers = shared_brokers();
    let config = config(&brokers);

    let (relay, backend) = start_on_backend(config.clone(), db.pool());
    let before = orders(3, 5);
    append(&backend, &before).await;
    read_all(&brokers, &config, &before, READ_TIMEOUT);
    let status = relay.status.clone();
    eventually(Duration::from_secs(10), "first run published", || {
        status.snapshot().events_published >= before.len() as u64
    })
    .await;
    relay.stop().await;
    let (stopped_at, _) = persisted(db.pool(), &config.name).await;

    let after = orders(3, 5);
    append(&backend, &after).await;
    let (relay, _) = start_on_backend(config.clone(), db.pool());
    let everything: Vec<NewEvent> = before.iter().chain(&after).cloned().collect();
    let received = read_all(&brokers, &config, &everything, READ_TIMEOUT);
    assert_complete_and_ordered(&config, &everything, &received);
    let status = relay.status.clone();
    eventually(Duration::from_secs(10), "second run published", || {
        status.snapshot().events_published >= after.len() as u64
    })
    .await;
    assert_eq!(
        status.snapshot().events_published,
        after.len() as u64,
        "the second run starts after {stopped_at:?}: nothing of the first run again"
    );
    relay.stop().await;
}
