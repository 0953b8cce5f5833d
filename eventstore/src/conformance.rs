//! The conformance suite every [`EventBackend`] must pass, written once and run by each
//! backend's own integration test (`PgBackend` in this crate's tests, KurrentDB in
//! `commerce-eventstore-kurrentdb`'s).
//!
//! Each check works in a tenant of its own (a fresh UUID), so the suite can run against a
//! shared server that already holds other events: global-order checks first read to the end
//! of the log and only look at their own tenant's events after that point.
//!
//! The checks panic on failure (they are test code), with a message naming the backend.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use uuid::Uuid;

use crate::backend::{
    BackendError, BackendEvent, EventBackend, ExpectedVersion, NewStreamEvent, StreamRef,
};
use crate::metadata::EventMetadata;
use crate::stream::StreamId;

/// The aggregate type of every stream the suite writes.
pub const AGGREGATE_TYPE: &str = "conformance";
/// How long a check waits for events to become readable.
const DEADLINE: Duration = Duration::from_secs(20);

/// Runs every check against `backend`.
pub async fn run_all<B: EventBackend>(backend: &B) {
    append_with_expected_version(backend).await;
    conflicting_append_is_refused(backend).await;
    idempotent_append_by_event_id(backend).await;
    read_stream_from_revision(backend).await;
    global_log_is_gap_free(backend).await;
    catch_up_subscription(backend).await;
}

/// Appends at version 0, then at the version returned, then with `Any`.
pub async fn append_with_expected_version<B: EventBackend>(backend: &B) {
    let fixture = Fixture::new(backend);
    let stream = fixture.stream("append");
    let first = fixture
        .append(&stream, ExpectedVersion::Exact(0), fixture.events(2))
        .await;
    assert_eq!(first, 2, "{}: version after the first append", fixture.name);
    let second = fixture
        .append(&stream, ExpectedVersion::Exact(first), fixture.events(1))
        .await;
    assert_eq!(
        second, 3,
        "{}: version after the second append",
        fixture.name
    );
    let any = fixture
        .append(&stream, ExpectedVersion::Any, fixture.events(2))
        .await;
    assert_eq!(any, 5, "{}: version after an append with Any", fixture.name);
    let read = fixture.read(&stream, 1).await;
    let sequences: Vec<u64> = read.iter().map(|event| event.sequence).collect();
    assert_eq!(
        sequences,
        [1, 2, 3, 4, 5],
        "{}: stream sequences",
        fixture.name
    );
}

/// A stale or future expected version is refused with a typed conflict and writes nothing.
pub async fn conflicting_append_is_refused<B: EventBackend>(backend: &B) {
    let fixture = Fixture::new(backend);
    let stream = fixture.stream("conflict");
    fixture
        .append(&stream, ExpectedVersion::Exact(0), fixture.events(2))
        .await;
    for expected in [0, 1, 3, 7] {
        let refused = backend
            .append(&stream, ExpectedVersion::Exact(expected), fixture.events(1))
            .await;
        match refused {
            Err(BackendError::Conflict { actual, .. }) => assert_eq!(
                actual, 2,
                "{}: conflict must report the stream's version",
                fixture.name
            ),
            other => panic!(
                "{}: append expecting {expected} on a stream at 2 must conflict, got {other:?}",
                fixture.name
            ),
        }
    }
    assert_eq!(
        fixture.read(&stream, 1).await.len(),
        2,
        "{}: a refused append wrote events",
        fixture.name
    );
}

/// The same batch sent twice at the same place is stored once, and the retry succeeds.
pub async fn idempotent_append_by_event_id<B: EventBackend>(backend: &B) {
    let fixture = Fixture::new(backend);
    let stream = fixture.stream("idempotent");
    let batch = fixture.events(3);
    let first = fixture
        .append(&stream, ExpectedVersion::Exact(0), batch.clone())
        .await;
    let retried = fixture
        .append(&stream, ExpectedVersion::Exact(0), batch.clone())
        .await;
    assert_eq!(
        retried, first,
        "{}: a retried batch must report the same version",
        fixture.name
    );
    let stored = fixture.read(&stream, 1).await;
    let ids: Vec<Uuid> = stored.iter().map(|event| event.event_id).collect();
    let sent: Vec<Uuid> = batch.iter().map(|event| event.event_id).collect();
    assert_eq!(
        ids, sent,
        "{}: a retried batch was duplicated",
        fixture.name
    );
}

/// Reading from a revision returns that event and everything after it, with the payload,
/// type, version and metadata that were written.
pub async fn read_stream_from_revision<B: EventBackend>(backend: &B) {
    let fixture = Fixture::new(backend);
    let stream = fixture.stream("read");
    let batch = fixture.events(4);
    fixture
        .append(&stream, ExpectedVersion::Exact(0), batch.clone())
        .await;
    let tail = fixture.read(&stream, 3).await;
    assert_eq!(
        tail.iter().map(|event| event.sequence).collect::<Vec<_>>(),
        [3, 4],
        "{}: read from revision 3",
        fixture.name
    );
    for (read, written) in tail.iter().zip(&batch[2..]) {
        assert_eq!(
            read.event_id, written.event_id,
            "{}: event id",
            fixture.name
        );
        assert_eq!(
            read.event_type, written.event_type,
            "{}: type",
            fixture.name
        );
        assert_eq!(
            read.event_version, written.event_version,
            "{}: event version",
            fixture.name
        );
        assert_eq!(read.payload, written.payload, "{}: payload", fixture.name);
        assert_eq!(
            read.metadata, written.metadata,
            "{}: metadata",
            fixture.name
        );
        assert_eq!(
            read.aggregate_type, AGGREGATE_TYPE,
            "{}: type",
            fixture.name
        );
        assert_eq!(read.stream, stream.stream, "{}: stream id", fixture.name);
    }
    assert!(
        fixture.read(&stream, 5).await.is_empty(),
        "{}: reading past the end returns nothing",
        fixture.name
    );
    let missing = fixture.stream("never-written");
    assert!(
        fixture.read(&missing, 1).await.is_empty(),
        "{}: a missing stream reads as empty",
        fixture.name
    );
}

/// Concurrent appends to several streams all appear in the global log exactly once, in
/// per-stream order, with increasing cursors, whatever the page size; reading from a cursor
/// in the middle continues right after it.
pub async fn global_log_is_gap_free<B: EventBackend>(backend: &B) {
    const STREAMS: usize = 4;
    const APPENDS: u64 = 5;
    const PER_APPEND: usize = 2;
    let fixture = Fixture::new(backend);
    let start = fixture.end_of_log().await;
    let streams: Vec<StreamRef> = (0..STREAMS)
        .map(|index| fixture.stream(&format!("log-{index}")))
        .collect();
    let writers = streams.iter().map(|stream| async {
        let mut ids = Vec::new();
        for round in 0..APPENDS {
            let batch = fixture.events(PER_APPEND);
            ids.extend(batch.iter().map(|event| event.event_id));
            let version = u64::try_from(PER_APPEND).expect("small") * round;
            fixture
                .append(stream, ExpectedVersion::Exact(version), batch)
                .await;
        }
        ids
    });
    let written: Vec<Uuid> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flatten()
        .collect();

    let ours = fixture.collect_after(start, written.len(), 3).await;
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for event in &ours {
        *seen.entry(event.event_id).or_default() += 1;
    }
    for id in &written {
        assert_eq!(
            seen.get(id),
            Some(&1),
            "{}: event {id} must appear exactly once in the global log",
            fixture.name
        );
    }
    let mut heads: HashMap<&StreamId, u64> = HashMap::new();
    for event in &ours {
        let head = heads.entry(&event.stream).or_default();
        assert_eq!(
            event.sequence,
            *head + 1,
            "{}: {} out of order in the global log",
            fixture.name,
            event.stream
        );
        *head = event.sequence;
    }
    assert!(
        ours.windows(2).all(|pair| pair[0].cursor < pair[1].cursor),
        "{}: global cursors must increase",
        fixture.name
    );

    let middle = ours.len() / 2;
    let resumed = fixture
        .collect_after(ours[middle - 1].cursor, ours.len() - middle, 5)
        .await;
    assert_eq!(
        resumed.first().map(|event| event.event_id),
        Some(ours[middle].event_id),
        "{}: reading from a cursor continues right after it",
        fixture.name
    );
}

/// A subscription from a cursor delivers the history after it, then live appends.
pub async fn catch_up_subscription<B: EventBackend>(backend: &B) {
    let fixture = Fixture::new(backend);
    let start = fixture.end_of_log().await;
    let stream = fixture.stream("subscription");
    let history = fixture.events(3);
    fixture
        .append(&stream, ExpectedVersion::Exact(0), history.clone())
        .await;
    let mut subscription = backend
        .subscribe_all(start)
        .await
        .unwrap_or_else(|error| panic!("{}: subscribe: {error}", fixture.name));
    let mut next_ours = async || loop {
        let event = tokio::time::timeout(DEADLINE, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("{}: no event within {DEADLINE:?}", fixture.name))
            .unwrap_or_else(|| panic!("{}: subscription ended", fixture.name))
            .unwrap_or_else(|error| panic!("{}: subscription failed: {error}", fixture.name));
        if event.stream.tenant() == fixture.tenant {
            return event;
        }
    };
    let mut received = Vec::new();
    for _ in &history {
        received.push(next_ours().await);
    }
    let live = fixture.events(2);
    fixture
        .append(&stream, ExpectedVersion::Exact(3), live.clone())
        .await;
    for _ in &live {
        received.push(next_ours().await);
    }
    let sent: Vec<Uuid> = history.iter().chain(&live).map(|e| e.event_id).collect();
    let got: Vec<Uuid> = received.iter().map(|e| e.event_id).collect();
    assert_eq!(got, sent, "{}: catch-up then live, in order", fixture.name);

    let mut from_middle = backend
        .subscribe_all(received[1].cursor)
        .await
        .unwrap_or_else(|error| panic!("{}: subscribe: {error}", fixture.name));
    let third = loop {
        let event = tokio::time::timeout(DEADLINE, from_middle.next())
            .await
            .unwrap_or_else(|_| panic!("{}: no event within {DEADLINE:?}", fixture.name))
            .unwrap_or_else(|| panic!("{}: subscription ended", fixture.name))
            .unwrap_or_else(|error| panic!("{}: subscription failed: {error}", fixture.name));
        if event.stream.tenant() == fixture.tenant {
            break event;
        }
    };
    assert_eq!(
        third.event_id, sent[2],
        "{}: a subscription from a cursor starts right after it",
        fixture.name
    );
}

/// One check's backend and tenant.
struct Fixture<'a, B> {
    backend: &'a B,
    name: &'static str,
    tenant: String,
}

impl<'a, B: EventBackend> Fixture<'a, B> {
    fn new(backend: &'a B) -> Self {
        Self {
            backend,
            name: backend.name(),
            tenant: format!("conf{}", Uuid::new_v4().simple()),
        }
    }

    fn stream(&self, key: &str) -> StreamRef {
        let stream = StreamId::new(self.tenant.clone(), key).expect("suite stream ids are valid");
        StreamRef::new(AGGREGATE_TYPE, stream)
    }

    fn events(&self, count: usize) -> Vec<NewStreamEvent> {
        (0..count)
            .map(|index| NewStreamEvent {
                event_id: Uuid::new_v4(),
                event_type: format!("conformance.event_{}", index % 2),
                event_version: "1.0".to_owned(),
                payload: serde_json::json!({ "index": index, "note": "é ✓" }),
                metadata: EventMetadata::new(self.tenant.clone(), "conformance")
                    .with_causation(Uuid::new_v4()),
            })
            .collect()
    }

    async fn append(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: Vec<NewStreamEvent>,
    ) -> u64 {
        self.backend
            .append(stream, expected, events)
            .await
            .unwrap_or_else(|error| {
                panic!("{}: append to {stream} at {expected}: {error}", self.name)
            })
            .version
    }

    async fn read(&self, stream: &StreamRef, from: u64) -> Vec<BackendEvent<B::Cursor>> {
        self.backend
            .read_stream(stream, from)
            .await
            .unwrap_or_else(|error| panic!("{}: read {stream}: {error}", self.name))
    }

    /// The cursor of the last event readable now.
    async fn end_of_log(&self) -> B::Cursor {
        let mut cursor = B::START;
        loop {
            let page = self
                .backend
                .read_all_after(cursor, 1000)
                .await
                .unwrap_or_else(|error| panic!("{}: read the log: {error}", self.name));
            match page.last() {
                Some(last) => cursor = last.cursor,
                None => return cursor,
            }
        }
    }

    /// Reads the log after `cursor` in pages of `page` until `count` events of this tenant
    /// were seen (waiting for them to become readable, up to the deadline).
    async fn collect_after(
        &self,
        mut cursor: B::Cursor,
        count: usize,
        page: u32,
    ) -> Vec<BackendEvent<B::Cursor>> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut ours = Vec::new();
        while ours.len() < count {
            let events = self
                .backend
                .read_all_after(cursor, page)
                .await
                .unwrap_or_else(|error| panic!("{}: read the log: {error}", self.name));
            assert!(
                events.len() <= usize::try_from(page).expect("small"),
                "{}: a log page exceeded its limit",
                self.name
            );
            let Some(last) = events.last() else {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{}: only {} of {count} events readable after {DEADLINE:?}",
                    self.name,
                    ours.len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            assert!(
                last.cursor > cursor,
                "{}: the log went backwards",
                self.name
            );
            cursor = last.cursor;
            ours.extend(
                events
                    .into_iter()
                    .filter(|event| event.stream.tenant() == self.tenant),
            );
        }
        ours
    }
}
