//! [`KurrentBackend`]: the engine's [`EventBackend`] contract on a KurrentDB server.
//!
//! Why `$all` is gap-free here: KurrentDB has a single writer that appends committed
//! records to one transaction log, and `$all` reads that log in order; an event can never
//! appear later at a position below one already read. Readers still pass over system events
//! (`$`-types, filtered on the server) and events other applications wrote.

use std::fmt;
use std::sync::Arc;

use commerce_eventstore::{
    AppendOutcome, BackendError, BackendEvent, EventBackend, EventSubscription, ExpectedVersion,
    NewStreamEvent, StreamRef, Upcasters, validate_batch,
};
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, ReadAllOptions, ReadStream,
    ReadStreamOptions, StreamPosition, SubscribeToAllOptions, Subscription, SubscriptionFilter,
};

use crate::mapping::{self, decode, stream_name, stream_state, version_of_revision};
use crate::position::KurrentPosition;

const BACKEND: &str = "kurrentdb";

/// An [`EventBackend`] on KurrentDB. Cheap to clone (the gRPC client is shared).
#[derive(Clone)]
pub struct KurrentBackend {
    client: Client,
    upcasters: Arc<Upcasters>,
}

impl fmt::Debug for KurrentBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KurrentBackend").finish_non_exhaustive()
    }
}

impl KurrentBackend {
    /// Connects lazily to the server named by a `kurrentdb://` (or `esdb://`) connection
    /// string, for instance `kurrentdb://localhost:2113?tls=false`. Must be called inside a
    /// tokio runtime; the first request reports an unreachable server.
    pub fn connect(connection_string: &str) -> Result<Self, BackendError> {
        let settings: ClientSettings = connection_string.parse().map_err(client_error)?;
        let client = Client::new(settings).map_err(|error| BackendError::Backend {
            backend: BACKEND,
            source: error.into(),
        })?;
        Ok(Self {
            client,
            upcasters: Arc::default(),
        })
    }

    /// Reads every event through `upcasters`, as `PgEventStore::with_upcasters` does: both
    /// backends then give readers (the relay, the projections) events in their current shape.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = Arc::new(upcasters);
        self
    }

    /// The underlying client (for operations outside the backend contract).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl EventBackend for KurrentBackend {
    type Cursor = KurrentPosition;

    const START: KurrentPosition = KurrentPosition::START;

    fn name(&self) -> &'static str {
        BACKEND
    }

    /// The commit position in `$all` (a byte offset in the server's log, far below
    /// `i64::MAX`; events of one append may share it, their stream sequences tell them apart).
    fn envelope_position(cursor: &KurrentPosition) -> i64 {
        i64::try_from(cursor.commit).unwrap_or(i64::MAX)
    }

    async fn append(
        &self,
        stream: &StreamRef,
        expected: ExpectedVersion,
        events: Vec<NewStreamEvent>,
    ) -> Result<AppendOutcome, BackendError> {
        validate_batch(stream, &events)?;
        let name = stream_name(stream)?;
        let data = events
            .iter()
            .map(|event| mapping::event_data(stream, event))
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(stream_state(expected));
        match self.client.append_to_stream(name, &options, data).await {
            Ok(written) => Ok(AppendOutcome {
                version: version_of_revision(written.next_expected_version),
            }),
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                Err(BackendError::Conflict {
                    stream: stream.to_string(),
                    expected,
                    actual: match current {
                        CurrentRevision::Current(revision) => version_of_revision(revision),
                        CurrentRevision::NoStream => 0,
                    },
                })
            }
            Err(error) => Err(client_error(error)),
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamRef,
        from: u64,
    ) -> Result<Vec<BackendEvent<KurrentPosition>>, BackendError> {
        let name = stream_name(stream)?;
        let options = ReadStreamOptions::default()
            .forwards()
            .position(StreamPosition::Position(from.saturating_sub(1)));
        let mut read = match self.client.read_stream(name, &options).await {
            Ok(read) => read,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(error) => return Err(client_error(error)),
        };
        let mut events = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    let decoded = resolved.event.as_ref().map(|e| decode(e, &self.upcasters));
                    if let Some(event) = decoded.transpose()? {
                        events.extend(event);
                    }
                }
                Ok(None) => return Ok(events),
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(error) => return Err(client_error(error)),
            }
        }
    }

    async fn read_all_after(
        &self,
        cursor: KurrentPosition,
        limit: u32,
    ) -> Result<Vec<BackendEvent<KurrentPosition>>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let wanted = usize::try_from(limit).unwrap_or(usize::MAX);
        // Reading from a position includes the event at it, hence one more.
        let page = wanted.saturating_add(1);
        let mut from = cursor;
        let mut events = Vec::new();
        loop {
            let options = ReadAllOptions::default()
                .forwards()
                .position(start_at(from))
                .filter(SubscriptionFilter::on_event_type().exclude_system_events())
                .max_count(page);
            let mut read = self.client.read_all(&options).await.map_err(client_error)?;
            let page_read = collect_page(&mut read, cursor, wanted, &self.upcasters, &mut events);
            let (raw, last) = page_read.await?;
            match last {
                // A full page of events that were not ours: look further.
                Some(last) if events.is_empty() && raw == page && last > from => from = last,
                _ => return Ok(events),
            }
        }
    }

    async fn subscribe_all(
        &self,
        from: KurrentPosition,
    ) -> Result<EventSubscription<KurrentPosition>, BackendError> {
        let options = SubscribeToAllOptions::default()
            .position(start_at(from))
            .filter(SubscriptionFilter::on_event_type().exclude_system_events());
        let subscription = self.client.subscribe_to_all(&options).await;
        let upcasters = Arc::clone(&self.upcasters);
        Ok(Box::pin(futures::stream::unfold(
            Some((subscription, from, upcasters)),
            next_event,
        )))
    }
}

/// Where a read of `$all` after `cursor` starts.
fn start_at(cursor: KurrentPosition) -> StreamPosition<kurrentdb::Position> {
    if cursor == KurrentPosition::START {
        StreamPosition::Start
    } else {
        StreamPosition::Position(cursor.into())
    }
}

/// Reads one page into `events` (engine events after `cursor`, up to `wanted`); returns how
/// many records the page held and the position of the last one.
async fn collect_page(
    read: &mut ReadStream,
    cursor: KurrentPosition,
    wanted: usize,
    upcasters: &Upcasters,
    events: &mut Vec<BackendEvent<KurrentPosition>>,
) -> Result<(usize, Option<KurrentPosition>), BackendError> {
    let mut raw = 0;
    let mut last = None;
    while let Some(resolved) = read.next().await.map_err(client_error)? {
        raw += 1;
        let Some(recorded) = resolved.event.as_ref() else {
            continue;
        };
        let position = KurrentPosition::from(recorded.position);
        last = Some(position);
        if position <= cursor || events.len() >= wanted {
            continue;
        }
        events.extend(decode(recorded, upcasters)?);
    }
    Ok((raw, last))
}

type SubscriptionState = Option<(Subscription, KurrentPosition, Arc<Upcasters>)>;

/// The next engine event of a subscription; after an error the stream ends.
async fn next_event(
    state: SubscriptionState,
) -> Option<(
    Result<BackendEvent<KurrentPosition>, BackendError>,
    SubscriptionState,
)> {
    let (mut subscription, cursor, upcasters) = state?;
    loop {
        let resolved = match subscription.next().await {
            Ok(resolved) => resolved,
            Err(error) => return Some((Err(client_error(error)), None)),
        };
        let Some(recorded) = resolved.event.as_ref() else {
            continue;
        };
        if KurrentPosition::from(recorded.position) <= cursor {
            continue;
        }
        match decode(recorded, &upcasters) {
            Ok(Some(event)) => {
                let next = event.cursor;
                return Some((Ok(event), Some((subscription, next, upcasters))));
            }
            Ok(None) => {}
            Err(error) => return Some((Err(error), None)),
        }
    }
}

fn client_error(error: impl std::error::Error + Send + Sync + 'static) -> BackendError {
    BackendError::Backend {
        backend: BACKEND,
        source: Box::new(error),
    }
}
