//! How the engine's streams and events are laid out in KurrentDB.
//!
//! - Stream name: `{aggregate_type}-{tenant}/{key}` (for instance `order-acme/o-17`), so
//!   KurrentDB's `$by_category` projection groups each aggregate type into `$ce-order`.
//!   Aggregate types therefore may not contain `-`.
//! - Sequences: the engine numbers a stream's events from 1, KurrentDB's revisions from 0
//!   (`sequence = revision + 1`); an expected version `v` is the expected revision `v - 1`,
//!   version 0 is "no stream".
//! - Event data: the JSON payload; the event id is the engine's event id.
//! - Custom metadata: an [`Envelope`] with the aggregate type, the stored aggregate id, the
//!   payload's schema version and the engine's metadata map, plus KurrentDB's reserved
//!   `$correlationId`/`$causationId` so its `$by_correlation_id` projection works.
//!   Events without the `commerce` marker were not written by the engine: log readers pass
//!   over them.

use std::collections::HashMap;

use commerce_eventstore::{
    BackendError, BackendEvent, DecodeError, EventMetadata, ExpectedVersion, NewStreamEvent,
    SerializedEvent, StreamId, StreamRef, Upcasters,
};
use kurrentdb::{EventData, RecordedEvent, StreamState};
use serde::{Deserialize, Serialize};

use crate::position::KurrentPosition;

/// Separates the aggregate type from the stream id in a stream name.
const CATEGORY_SEPARATOR: char = '-';
/// The envelope format written by this crate.
const ENVELOPE_FORMAT: u32 = 1;

/// The custom metadata of every event the engine writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// Marks engine events (and their layout version).
    pub commerce: u32,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_version: String,
    pub metadata: HashMap<String, String>,
    #[serde(rename = "$correlationId")]
    pub correlation_id: String,
    #[serde(rename = "$causationId", skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
}

/// The KurrentDB stream name of `stream`.
pub(crate) fn stream_name(stream: &StreamRef) -> Result<String, BackendError> {
    let aggregate_type = &stream.aggregate_type;
    if aggregate_type.is_empty() || aggregate_type.contains(CATEGORY_SEPARATOR) {
        return Err(BackendError::InvalidAppend {
            stream: stream.to_string(),
            reason: format!(
                "aggregate type {aggregate_type:?} must be non-empty and free of \
                 {CATEGORY_SEPARATOR:?} (it is the KurrentDB category)"
            ),
        });
    }
    Ok(format!(
        "{aggregate_type}{CATEGORY_SEPARATOR}{}",
        stream.stream
    ))
}

/// KurrentDB's expectation for an engine expected version.
pub(crate) fn stream_state(expected: ExpectedVersion) -> StreamState {
    match expected {
        ExpectedVersion::Any => StreamState::Any,
        ExpectedVersion::Exact(0) => StreamState::NoStream,
        ExpectedVersion::Exact(version) => StreamState::StreamRevision(version - 1),
    }
}

/// The engine version of a stream whose last revision is `revision`.
pub(crate) fn version_of_revision(revision: u64) -> u64 {
    revision.saturating_add(1)
}

/// The KurrentDB event for an engine event of `stream`.
pub(crate) fn event_data(
    stream: &StreamRef,
    event: &NewStreamEvent,
) -> Result<EventData, BackendError> {
    let envelope = Envelope {
        commerce: ENVELOPE_FORMAT,
        aggregate_type: stream.aggregate_type.clone(),
        aggregate_id: stream.stream.aggregate_id(),
        event_version: event.event_version.clone(),
        metadata: event.metadata.to_map(),
        correlation_id: event.metadata.correlation_id.to_string(),
        causation_id: event.metadata.causation_id.map(|id| id.to_string()),
    };
    let encode = |what: &str, source| DecodeError::Json {
        what: format!("{what} of event {}", event.event_id),
        source,
    };
    let data = EventData::json(&event.event_type, &event.payload)
        .map_err(|source| encode("payload", source))?
        .id(event.event_id)
        .metadata_as_json(&envelope)
        .map_err(|source| encode("metadata", source))?;
    Ok(data)
}

/// The engine's view of a KurrentDB event, in its current shape (through `upcasters`), or
/// `None` when the engine did not write it.
pub(crate) fn decode(
    event: &RecordedEvent,
    upcasters: &Upcasters,
) -> Result<Option<BackendEvent<KurrentPosition>>, BackendError> {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(&event.custom_metadata) else {
        return Ok(None);
    };
    let context = || format!("event {} of {}", event.id, event.stream_id());
    let payload = serde_json::from_slice(&event.data).map_err(|source| DecodeError::Json {
        what: format!("payload of {}", context()),
        source,
    })?;
    let stream = StreamId::parse(&envelope.aggregate_id).map_err(DecodeError::from)?;
    let sequence = version_of_revision(event.revision);
    let (event_version, payload) =
        current_shape(upcasters, &envelope, sequence, &event.event_type, payload);
    Ok(Some(BackendEvent {
        cursor: event.position.into(),
        event_id: event.id,
        aggregate_type: envelope.aggregate_type,
        stream,
        sequence,
        event_type: event.event_type.clone(),
        event_version,
        payload,
        metadata: EventMetadata::from_map(&envelope.metadata).map_err(DecodeError::from)?,
        recorded_at: event.created,
    }))
}

/// The stored version and payload, upcast to the current shape.
fn current_shape(
    upcasters: &Upcasters,
    envelope: &Envelope,
    sequence: u64,
    event_type: &str,
    payload: serde_json::Value,
) -> (String, serde_json::Value) {
    if upcasters.is_empty() {
        return (envelope.event_version.clone(), payload);
    }
    let upcast = upcasters.upcast(SerializedEvent::new(
        envelope.aggregate_id.clone(),
        usize::try_from(sequence).unwrap_or(usize::MAX),
        envelope.aggregate_type.clone(),
        event_type.to_owned(),
        envelope.event_version.clone(),
        payload,
        serde_json::Value::Null,
    ));
    (upcast.event_version, upcast.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(aggregate_type: &str) -> StreamRef {
        StreamRef::new(
            aggregate_type,
            StreamId::new("acme", "o-17").expect("valid stream id"),
        )
    }

    #[test]
    fn given_a_stream_when_named_then_the_aggregate_type_is_the_category() {
        assert_eq!(
            stream_name(&stream("order")).expect("valid"),
            "order-acme/o-17"
        );
    }

    #[test]
    fn given_an_aggregate_type_with_a_dash_when_named_then_it_is_refused() {
        assert!(stream_name(&stream("sales-order")).is_err());
        assert!(stream_name(&stream("")).is_err());
    }

    #[test]
    fn given_engine_versions_when_mapped_then_revisions_are_one_lower() {
        assert_eq!(stream_state(ExpectedVersion::Any), StreamState::Any);
        assert_eq!(
            stream_state(ExpectedVersion::Exact(0)),
            StreamState::NoStream
        );
        assert_eq!(
            stream_state(ExpectedVersion::Exact(3)),
            StreamState::StreamRevision(2)
        );
        assert_eq!(version_of_revision(2), 3);
    }

    #[test]
    fn given_an_old_event_when_decoded_then_it_is_read_in_its_current_shape() {
        let upcasters = Upcasters::new().register_fn("thing.renamed", "2", |mut payload| {
            payload["display_name"] = payload["name"].clone();
            payload
        });
        let envelope = Envelope {
            commerce: ENVELOPE_FORMAT,
            aggregate_type: "thing".to_owned(),
            aggregate_id: "acme/t-1".to_owned(),
            event_version: "1".to_owned(),
            metadata: EventMetadata::new("acme", "alice").to_map(),
            correlation_id: uuid::Uuid::nil().to_string(),
            causation_id: None,
        };
        let stored = serde_json::json!({"name": "lamp"});
        let (version, payload) =
            current_shape(&upcasters, &envelope, 1, "thing.renamed", stored.clone());
        assert_eq!(version, "2.0.0");
        assert_eq!(payload["display_name"], "lamp");
        let untouched = current_shape(&Upcasters::new(), &envelope, 1, "thing.renamed", stored);
        assert_eq!(untouched.0, "1");
    }

    #[test]
    fn given_metadata_when_enveloped_then_kurrentdb_reserved_keys_are_set() {
        let metadata = EventMetadata::new("acme", "alice").with_causation(uuid::Uuid::nil());
        let envelope = Envelope {
            commerce: ENVELOPE_FORMAT,
            aggregate_type: "order".to_owned(),
            aggregate_id: "acme/o-17".to_owned(),
            event_version: "1.0".to_owned(),
            metadata: metadata.to_map(),
            correlation_id: metadata.correlation_id.to_string(),
            causation_id: metadata.causation_id.map(|id| id.to_string()),
        };
        let json = serde_json::to_value(&envelope).expect("serialise");
        assert_eq!(json["$correlationId"], metadata.correlation_id.to_string());
        assert_eq!(json["$causationId"], uuid::Uuid::nil().to_string());
        let back: Envelope = serde_json::from_value(json).expect("deserialise");
        assert_eq!(EventMetadata::from_map(&back.metadata), Ok(metadata));
    }
}
