//! From a stored event to Kafka messages: the contract's envelope, key and headers.
//!
//! - **Key**: the aggregate id, as the contract has it (the envelope's `aggregate_id`, without
//!   the tenant). Kafka orders messages per partition and picks the partition from the key, so
//!   every event of a stream lands in one partition, in sequence order. Two tenants' aggregates
//!   that share an id (a SKU) share a partition too, which costs nothing: consumers tell them
//!   apart by the `tenant_id` header and field.
//! - **Envelope**: [`EventEnvelope`] of `commerce-contracts` (the published language), with the
//!   payload left as stored JSON. `aggregate_id` is the aggregate's own key *without* the
//!   tenant, and `tenant_id` carries the tenant; `topic` is the topic the message is published
//!   on; `timestamp` (epoch ms) and `occurred_at` (RFC 3339, the same millisecond) are the
//!   commit-time clock of the writer (`recorded_at`). The same value is the Kafka message
//!   timestamp.
//! - **Source**: events of every log source ([`crate::LogSource`]) arrive as a
//!   [`RelayedEvent`], so PostgreSQL's log and KurrentDB's `$all` publish identical envelopes
//!   (KurrentDB's `position` is its commit position in `$all`).
//! - **Headers**: the contract's [`commerce_contracts::envelope::headers`]: `event_id`, `event_type`, `tenant_id`,
//!   `content-type: application/json`.

use chrono::{DateTime, Utc};
use commerce_contracts::envelope::{EventEnvelope, published_version};

use crate::error::RelayError;
use crate::source::RelayedEvent;
use crate::topics::TopicNames;

/// One message ready for the producer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutgoingMessage {
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) timestamp_ms: i64,
    pub(crate) event_id: String,
    pub(crate) event_type: String,
    pub(crate) tenant_id: String,
}

/// The messages of one event: its aggregate topic first, then its seed topic if enabled.
pub(crate) fn messages_for(
    event: &RelayedEvent<'_>,
    names: &TopicNames,
) -> Result<Vec<OutgoingMessage>, RelayError> {
    let mut topics = vec![names.aggregate(event.aggregate_type)];
    topics.extend(names.seed(event.event_type));
    topics
        .into_iter()
        .map(|topic| message(event, topic))
        .collect()
}

fn message(event: &RelayedEvent<'_>, topic: String) -> Result<OutgoingMessage, RelayError> {
    let timestamp_ms = event.recorded_at.timestamp_millis();
    // `occurred_at` is the same instant as `timestamp`: the commit clock cut to milliseconds.
    let occurred_at =
        DateTime::<Utc>::from_timestamp_millis(timestamp_ms).unwrap_or(event.recorded_at);
    let envelope = EventEnvelope {
        event_id: event.event_id,
        topic,
        event_type: event.event_type.to_owned(),
        event_version: published_version(event.event_version),
        aggregate_type: event.aggregate_type.to_owned(),
        aggregate_id: event.stream.key().to_owned(),
        sequence: event.sequence,
        position: event.position,
        tenant_id: event.stream.tenant().to_owned(),
        correlation_id: event.metadata.correlation_id,
        causation_id: event.metadata.causation_id,
        timestamp: timestamp_ms,
        occurred_at,
        payload: event.payload,
    };
    let payload = serde_json::to_vec(&envelope).map_err(|source| RelayError::Encode {
        event_id: event.event_id,
        source,
    })?;
    Ok(OutgoingMessage {
        key: envelope.aggregate_id.clone(),
        payload,
        timestamp_ms,
        event_id: event.event_id.to_string(),
        event_type: envelope.event_type,
        tenant_id: envelope.tenant_id,
        topic: envelope.topic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicConfig;
    use crate::source::{BackendLogSource, LogSource};
    use chrono::{TimeZone, Utc};
    use commerce_eventstore::{
        BackendEvent, EventMetadata, LogCursor, LogEvent, PgBackend, StreamId,
    };
    use uuid::Uuid;

    fn event() -> LogEvent {
        LogEvent {
            event_id: Uuid::from_u128(7),
            aggregate_type: "order".to_owned(),
            stream: StreamId::new("acme", "o-1").expect("valid stream"),
            sequence: 3,
            position: 42,
            transaction_id: 900,
            event_type: "order.created".to_owned(),
            event_version: "1".to_owned(),
            payload: serde_json::json!({"event_type": "order.created", "total": 5}),
            metadata: EventMetadata::new("acme", "alice").with_causation(Uuid::from_u128(9)),
            recorded_at: Utc
                .timestamp_millis_opt(1_700_000_000_123)
                .single()
                .expect("valid time"),
        }
    }

    #[test]
    fn given_an_event_when_mapped_then_it_goes_to_its_aggregate_and_seed_topics() {
        let names = TopicNames::new(&TopicConfig::default());
        let messages = messages_for(&RelayedEvent::from(&event()), &names).expect("encodes");
        let topics: Vec<_> = messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(topics, ["commerce.order", "order.created"]);
        assert!(messages.iter().all(|m| m.key == "o-1"));
    }

    #[test]
    fn given_an_event_when_mapped_then_the_envelope_matches_the_contract() {
        let names = TopicNames::new(&TopicConfig::default());
        let source = event();
        let message = &messages_for(&RelayedEvent::from(&source), &names).expect("encodes")[0];
        let envelope: serde_json::Value =
            serde_json::from_slice(&message.payload).expect("valid json");
        assert_eq!(
            envelope,
            serde_json::json!({
                "event_id": Uuid::from_u128(7).to_string(),
                "topic": "commerce.order",
                "event_type": "order.created",
                "event_version": 1,
                "aggregate_type": "order",
                "aggregate_id": "o-1",
                "sequence": 3,
                "position": 42,
                "tenant_id": "acme",
                "correlation_id": source.metadata.correlation_id.to_string(),
                "causation_id": Uuid::from_u128(9).to_string(),
                "timestamp": 1_700_000_000_123_i64,
                "occurred_at": "2023-11-14T22:13:20.123Z",
                "payload": {"event_type": "order.created", "total": 5},
            })
        );
        assert_eq!(message.timestamp_ms, 1_700_000_000_123);
        assert_eq!(message.tenant_id, "acme");
        assert_eq!(message.event_type, "order.created");
    }

    #[test]
    fn given_an_event_when_mapped_then_the_payload_decodes_as_the_contract_envelope() {
        let names = TopicNames::new(&TopicConfig::default());
        let source = event();
        for message in messages_for(&RelayedEvent::from(&source), &names).expect("encodes") {
            let envelope: EventEnvelope =
                serde_json::from_slice(&message.payload).expect("a contract envelope");
            assert_eq!(envelope.topic, message.topic);
            assert_eq!(envelope.event_id, source.event_id);
            assert_eq!(envelope.timestamp, envelope.occurred_at.timestamp_millis());
            assert_eq!(envelope.payload, source.payload);
        }
    }

    #[test]
    fn given_a_backend_event_when_mapped_then_the_envelope_equals_the_global_log_one() {
        let names = TopicNames::new(&TopicConfig::default());
        let source = event();
        let from_log = messages_for(&RelayedEvent::from(&source), &names).expect("encodes");
        let backend_event = BackendEvent::from(source);
        let relayed = BackendLogSource::<PgBackend>::relayed(&backend_event);
        let from_backend = messages_for(&relayed, &names).expect("encodes");
        assert_eq!(from_backend, from_log);
        assert_eq!(
            backend_event.cursor,
            LogCursor {
                transaction_id: 900,
                position: 42
            }
        );
    }
}
