//! The envelope every published event travels in (the API contract's Kafka section), and the
//! names of the Kafka headers that repeat its routing fields.
//!
//! The same envelope is used on the aggregate topics (`commerce.order`, ...), the seed's
//! per-event topics (`order.created`, ...) and in exports, so a consumer decodes one shape
//! everywhere. Bookkeeping (ids, stream and log coordinates, tenant, correlation, clocks) lives
//! here; the business facts live in `payload`, the aggregate's event enum tagged by `event_type`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka header names and values set on every event message.
pub mod headers {
    /// The envelope's `event_id`, so consumers can dedupe without parsing the value.
    pub const EVENT_ID: &str = "event_id";
    /// The envelope's `event_type`, so consumers can filter without parsing the value.
    pub const EVENT_TYPE: &str = "event_type";
    /// The envelope's `tenant_id`.
    pub const TENANT_ID: &str = "tenant_id";
    /// The content-type header name.
    pub const CONTENT_TYPE: &str = "content-type";
    /// The value of the content-type header: the envelope is JSON.
    pub const CONTENT_TYPE_JSON: &str = "application/json";
}

/// One published event. `P` is the payload type: an aggregate's event enum
/// (`EventEnvelope<OrderEvent>`) for typed consumers, or [`serde_json::Value`] (the default) for
/// code that routes without decoding the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventEnvelope<P = serde_json::Value> {
    /// Stable id of the event: redeliveries carry the same one, so consumers dedupe on it.
    pub event_id: Uuid,
    /// The topic this copy was published on (aggregate or seed topic).
    pub topic: String,
    /// The published event name, e.g. `order.created`; equals `payload.event_type`.
    pub event_type: String,
    /// The version of the payload shape.
    pub event_version: u32,
    /// The aggregate type that emitted the event, e.g. `order`.
    pub aggregate_type: String,
    /// The aggregate's key within its tenant (a UUID for orders, `sku/location` for inventory).
    pub aggregate_id: String,
    /// Position in the aggregate's stream, contiguous from 1: consumers apply an aggregate's
    /// events in this order and skip any sequence they have already applied.
    pub sequence: u64,
    /// Position in the global log (commit order across all streams); the `Consistency-Token`
    /// of the HTTP API refers to it.
    pub position: i64,
    /// The tenant that owns the aggregate.
    pub tenant_id: String,
    /// Id shared by every event caused, directly or not, by one request.
    pub correlation_id: Uuid,
    /// The event or command that caused this one, if any.
    pub causation_id: Option<Uuid>,
    /// When the event was recorded, in milliseconds since the Unix epoch (as the seed).
    pub timestamp: i64,
    /// The same instant as `timestamp`, as RFC 3339 UTC.
    pub occurred_at: DateTime<Utc>,
    /// The event itself: its fields plus `event_type`.
    pub payload: P,
}

/// The envelope's `event_version` of a stored version: stored versions are cqrs-es strings
/// (`"1"`; older writers may use `"1.0"`), the envelope carries the leading integer. An
/// unparseable version becomes 0 rather than stopping a reader of the log.
#[must_use]
pub fn published_version(stored: &str) -> u32 {
    stored
        .split('.')
        .next()
        .and_then(|major| major.trim().parse().ok())
        .unwrap_or(0)
}

impl EventEnvelope<serde_json::Value> {
    /// Decodes the payload into a typed event, keeping the bookkeeping fields.
    ///
    /// # Errors
    /// The payload does not match `P` (an unknown `event_type` or a malformed event): park the
    /// message as undecodable rather than skipping it.
    pub fn decode<P: DeserializeOwned>(self) -> Result<EventEnvelope<P>, serde_json::Error> {
        let payload = serde_json::from_value(self.payload)?;
        Ok(EventEnvelope {
            event_id: self.event_id,
            topic: self.topic,
            event_type: self.event_type,
            event_version: self.event_version,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            position: self.position,
            tenant_id: self.tenant_id,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            timestamp: self.timestamp,
            occurred_at: self.occurred_at,
            payload,
        })
    }
}

#[cfg(test)]
mod version_tests {
    use super::published_version;

    #[test]
    fn given_stored_versions_when_published_then_their_major_number_is_carried() {
        assert_eq!(published_version("1"), 1);
        assert_eq!(published_version("2.0.0"), 2);
        assert_eq!(published_version("x"), 0);
    }
}
