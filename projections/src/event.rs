//! What the projections read from a published event: the envelope's bookkeeping fields and the
//! payload decoded into the aggregate's event enum.
//!
//! The wire shape is the contract's Kafka envelope (`commerce_contracts` envelope). Decoding here
//! reads only the fields the read side needs and ignores the rest, so the envelope may grow.

use chrono::{DateTime, Utc};
use commerce_contracts::EventEnvelope;
use commerce_contracts::events::{
    CampaignEvent, InventoryEvent, OrderEvent, PaymentEvent, ProductEvent, ShipmentEvent,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope fields the projections use; `payload` is the event enum's JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_type: String,
    /// The aggregate's own key: order id, `sku:location` for inventory, SKU for a product.
    pub aggregate_id: String,
    /// 1-based position of the event in its aggregate's stream.
    pub sequence: i64,
    /// Position in the event store's global log.
    pub position: i64,
    pub tenant_id: String,
    /// Epoch milliseconds at which the event was recorded.
    pub timestamp: i64,
    pub occurred_at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

/// An event of one of the six aggregates.
#[derive(Debug, Clone, PartialEq)]
pub enum AggregateEvent {
    Order(OrderEvent),
    Payment(PaymentEvent),
    Inventory(InventoryEvent),
    Campaign(CampaignEvent),
    Product(ProductEvent),
    Shipment(ShipmentEvent),
}

/// Why a record cannot be projected: it is parked, never skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the record is not an event envelope: {0}")]
    Envelope(String),
    #[error("unknown aggregate type `{0}`")]
    UnknownAggregate(String),
    #[error("the {aggregate_type} payload does not decode: {reason}")]
    Payload {
        aggregate_type: String,
        reason: String,
    },
    #[error("sequence {0} is not a valid stream sequence (must be >= 1)")]
    Sequence(i64),
}

/// An envelope whose payload decoded: ready for the projector.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedEvent {
    pub record: EventRecord,
    pub event: AggregateEvent,
}

impl TryFrom<EventEnvelope> for EventRecord {
    type Error = DecodeError;

    fn try_from(envelope: EventEnvelope) -> Result<Self, DecodeError> {
        let sequence =
            i64::try_from(envelope.sequence).map_err(|_| DecodeError::Sequence(i64::MAX))?;
        Ok(Self {
            event_id: envelope.event_id,
            event_type: envelope.event_type,
            aggregate_type: envelope.aggregate_type,
            aggregate_id: envelope.aggregate_id,
            sequence,
            position: envelope.position,
            tenant_id: envelope.tenant_id,
            timestamp: envelope.timestamp,
            occurred_at: envelope.occurred_at,
            payload: envelope.payload,
        })
    }
}

impl EventRecord {
    /// Parses a Kafka record value (the JSON envelope).
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|error| DecodeError::Envelope(error.to_string()))
    }

    /// Decodes the payload into the event enum named by `aggregate_type`.
    pub fn decode(self) -> Result<DecodedEvent, DecodeError> {
        if self.sequence < 1 {
            return Err(DecodeError::Sequence(self.sequence));
        }
        let event = AggregateEvent::from_payload(&self.aggregate_type, &self.payload)?;
        Ok(DecodedEvent {
            record: self,
            event,
        })
    }
}

impl AggregateEvent {
    fn from_payload(
        aggregate_type: &str,
        payload: &serde_json::Value,
    ) -> Result<Self, DecodeError> {
        fn parse<T: serde::de::DeserializeOwned>(
            aggregate_type: &str,
            payload: &serde_json::Value,
        ) -> Result<T, DecodeError> {
            T::deserialize(payload).map_err(|error| DecodeError::Payload {
                aggregate_type: aggregate_type.to_owned(),
                reason: error.to_string(),
            })
        }
        Ok(match aggregate_type {
            "order" => Self::Order(parse(aggregate_type, payload)?),
            "payment" => Self::Payment(parse(aggregate_type, payload)?),
            "inventory" => Self::Inventory(parse(aggregate_type, payload)?),
            "campaign" => Self::Campaign(parse(aggregate_type, payload)?),
            "product" => Self::Product(parse(aggregate_type, payload)?),
            "shipment" => Self::Shipment(parse(aggregate_type, payload)?),
            other => return Err(DecodeError::UnknownAggregate(other.to_owned())),
        })
    }
}

/// The aggregate types the projections follow, in the order their topics are listed.
pub const AGGREGATE_TYPES: [&str; 6] = [
    "order",
    "inventory",
    "campaign",
    "payment",
    "product",
    "shipment",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(aggregate_type: &str, payload: serde_json::Value) -> serde_json::Value {
        json!({
            "event_id": Uuid::nil(), "topic": "commerce.product", "event_type": "product.discontinued",
            "event_version": 1, "aggregate_type": aggregate_type, "aggregate_id": "SKU-1",
            "sequence": 2, "position": 7, "tenant_id": "t1", "correlation_id": null,
            "causation_id": null, "timestamp": 1_700_000_000_000_i64,
            "occurred_at": "2026-01-01T00:00:00Z", "payload": payload
        })
    }

    #[test]
    fn a_contract_envelope_decodes_into_its_aggregate_event() {
        // Given a product envelope with extra fields the projections do not read
        let bytes = envelope(
            "product",
            json!({"event_type": "product.discontinued", "at": "2026-01-01T00:00:00Z"}),
        )
        .to_string();
        // When it is decoded
        let decoded = EventRecord::from_json(bytes.as_bytes()).and_then(EventRecord::decode);
        // Then the payload is a product event
        let decoded = decoded.expect("a valid envelope decodes");
        assert!(matches!(
            decoded.event,
            AggregateEvent::Product(ProductEvent::Discontinued(_))
        ));
        assert_eq!(decoded.record.sequence, 2);
    }

    #[test]
    fn a_payload_of_the_wrong_shape_is_a_decode_error() {
        let bytes = envelope("product", json!({"event_type": "product.discontinued"})).to_string();
        let result = EventRecord::from_json(bytes.as_bytes()).and_then(EventRecord::decode);
        assert!(matches!(result, Err(DecodeError::Payload { .. })));
    }

    #[test]
    fn garbage_is_an_envelope_error() {
        assert!(matches!(
            EventRecord::from_json(b"\xff not json"),
            Err(DecodeError::Envelope(_))
        ));
    }
}
