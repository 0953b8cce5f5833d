//! The backend conformance suite ([`commerce_eventstore::conformance`]) on PostgreSQL, plus
//! PostgreSQL-specific cases of the idempotent append.

mod common;

use commerce_devstack::testkit::TestDatabase;
use commerce_eventstore::conformance::{self, AGGREGATE_TYPE};
use commerce_eventstore::{
    BackendError, EventBackend, EventMetadata, ExpectedVersion, NewStreamEvent, PgBackend,
    PgEventStore, StreamRef,
};
use uuid::Uuid;

async fn backend() -> (TestDatabase, PgBackend) {
    let (db, pool) = common::fresh_pool().await;
    (db, PgBackend::new(PgEventStore::new(pool)))
}

fn event(tenant: &str) -> NewStreamEvent {
    NewStreamEvent {
        event_id: Uuid::new_v4(),
        event_type: "conformance.event".to_owned(),
        event_version: "1.0".to_owned(),
        payload: serde_json::json!({}),
        metadata: EventMetadata::new(tenant, "tester"),
    }
}

#[tokio::test]
async fn postgres_passes_the_backend_conformance_suite() {
    let (_db, backend) = backend().await;
    conformance::run_all(&backend).await;
}

#[tokio::test]
async fn given_an_event_id_stored_in_another_stream_when_appended_then_it_is_refused() {
    let (_db, backend) = backend().await;
    let first = StreamRef::new(AGGREGATE_TYPE, common::stream("t", "a"));
    let second = StreamRef::new(AGGREGATE_TYPE, common::stream("t", "b"));
    let shared = event("t");
    backend
        .append(&first, ExpectedVersion::Exact(0), vec![shared.clone()])
        .await
        .expect("first append");

    let refused = backend
        .append(&second, ExpectedVersion::Exact(0), vec![shared.clone()])
        .await;

    assert!(
        matches!(refused, Err(BackendError::DuplicateEventId { event_id }) if event_id == shared.event_id),
        "{refused:?}"
    );
    assert!(
        backend
            .read_stream(&second, 1)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn given_a_stored_batch_when_resent_with_any_then_it_is_not_duplicated() {
    let (_db, backend) = backend().await;
    let stream = StreamRef::new(AGGREGATE_TYPE, common::stream("t", "any"));
    let batch = vec![event("t"), event("t")];
    backend
        .append(&stream, ExpectedVersion::Any, batch.clone())
        .await
        .expect("first append");

    let retried = backend
        .append(&stream, ExpectedVersion::Any, batch)
        .await
        .expect("retry");

    assert_eq!(retried.version, 2);
    assert_eq!(
        backend.read_stream(&stream, 1).await.expect("read").len(),
        2
    );
}

#[tokio::test]
async fn given_metadata_of_another_tenant_when_appended_then_nothing_is_written() {
    let (_db, backend) = backend().await;
    let stream = StreamRef::new(AGGREGATE_TYPE, common::stream("t", "x"));

    let refused = backend
        .append(&stream, ExpectedVersion::Exact(0), vec![event("intruder")])
        .await;

    assert!(
        matches!(refused, Err(BackendError::InvalidAppend { .. })),
        "{refused:?}"
    );
    assert!(
        backend
            .read_stream(&stream, 1)
            .await
            .expect("read")
            .is_empty()
    );
}
