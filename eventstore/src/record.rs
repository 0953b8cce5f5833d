//! Events as read back from the store, with their global coordinates.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{DecodeError, StoreError, sequence_from_db};
use crate::metadata::EventMetadata;
use crate::stream::StreamId;
use crate::upcast::{SerializedEvent, Upcasters};

/// The columns every full-event read selects (the xid8 is read as text: it may exceed `i64`).
pub(crate) const EVENT_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, position, transaction_id::text AS transaction_id, \
     event_id, recorded_at";

/// One stored event with everything a consumer needs: identity, stream coordinates, global log
/// coordinates, the (upcast) payload and the metadata. It is what [`crate::GlobalLog`] and
/// [`crate::PgEventStore::load_stream`] return, and what the relay turns into a Kafka envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    pub aggregate_type: String,
    /// Tenant and key; `stream.aggregate_id()` is the stored `aggregate_id`.
    pub stream: StreamId,
    /// Position in the stream, contiguous from 1.
    pub sequence: u64,
    /// Global identity value (insert order; unique, but not gap-free and not commit order).
    pub position: i64,
    /// The writing transaction's id (xid8). With `position` it forms the log order.
    pub transaction_id: u64,
    pub event_type: String,
    /// The version after upcasting.
    pub event_version: String,
    /// The payload after upcasting.
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Decodes a row selected with [`EVENT_COLUMNS`], upcasting its payload.
    pub(crate) fn from_row(row: &PgRow, upcasters: &Upcasters) -> Result<Self, StoreError> {
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let stream = StreamId::parse(&aggregate_id).map_err(DecodeError::from)?;
        let sequence = sequence_from_db(row.try_get("sequence")?)?;
        let serialized = SerializedEvent::new(
            aggregate_id,
            usize::try_from(sequence).map_err(|_| DecodeError::OutOfRange {
                what: "sequence",
                value: sequence.to_string(),
            })?,
            row.try_get("aggregate_type")?,
            row.try_get("event_type")?,
            row.try_get("event_version")?,
            row.try_get("payload")?,
            row.try_get("metadata")?,
        );
        let event = upcasters.upcast(serialized);
        let map: HashMap<String, String> = serde_json::from_value(event.metadata)
            .map_err(|source| DecodeError::json("event metadata", source))?;
        let transaction_id: String = row.try_get("transaction_id")?;
        Ok(Self {
            event_id: row.try_get("event_id")?,
            aggregate_type: event.aggregate_type,
            stream,
            sequence,
            position: row.try_get("position")?,
            transaction_id: parse_xid8(&transaction_id)?,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: EventMetadata::from_map(&map).map_err(DecodeError::from)?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

pub(crate) fn parse_xid8(text: &str) -> Result<u64, DecodeError> {
    text.parse().map_err(|_| DecodeError::OutOfRange {
        what: "transaction_id",
        value: text.to_owned(),
    })
}
