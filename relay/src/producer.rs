//! The idempotent producer and batch publication.
//!
//! `enable.idempotence=true` with `acks=all` and a single request in flight keeps each
//! partition's messages in send order without duplicates from the producer's own retries.
//! A batch counts as published only when every message of it was acknowledged; anything else
//! is a [`PublishError`] and the caller retries the whole batch (duplicates on Kafka are
//! acceptable, loss is not).
//!
//! A producer sends nothing to a topic before its own metadata lists every partition of it
//! with a leader ([`Publisher::route`]). Messages produced to a topic whose partitions are
//! not known yet wait in librdkafka's unassigned queue and only get their per-partition
//! message ids (which order the idempotent sequence) when the metadata arrives; messages of
//! the same partition produced meanwhile straight to it would then go first, putting a
//! stream's later events on Kafka before its earlier ones at the start of a fresh topic.

use std::collections::HashSet;
use std::time::Duration;

use commerce_contracts::envelope::headers;
use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::config::RelayConfig;
use crate::error::{PublishError, RelayError};
use crate::message::OutgoingMessage;

/// How long an enqueue waits for room in the producer's local queue before giving up.
const ENQUEUE_WAIT: Duration = Duration::from_millis(100);
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);
/// librdkafka debug contexts for the producer (e.g. `msg,eos,protocol`), to diagnose broker
/// trouble; their lines go to the `librdkafka` tracing target at debug level.
const KAFKA_DEBUG: &str = "COMMERCE_KAFKA_DEBUG";

/// A Kafka producer configured for the relay.
#[derive(Clone)]
pub(crate) struct Publisher {
    producer: FutureProducer,
    /// Topics whose every partition this producer's metadata shows with a leader.
    routed: HashSet<String>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

impl Publisher {
    pub(crate) fn new(config: &RelayConfig) -> Result<Self, RelayError> {
        let mut client = ClientConfig::new();
        if let Ok(contexts) = std::env::var(KAFKA_DEBUG) {
            client
                .set("debug", contexts)
                .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
        let producer = client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // One request in flight per connection: a retried request can never be overtaken
            // by a later one, so per-key order holds even on a broker that does not check
            // idempotent-producer sequence numbers (Tansu 0.6's SQLite storage does; it also
            // serves a connection's requests one at a time, so more in flight would gain
            // little there).
            .set("max.in.flight.requests.per.connection", "1")
            // A message that finally fails poisons the producer instead of letting later
            // messages of its partition through: the relay then republishes from its cursor.
            .set("enable.gapless.guarantee", "true")
            .set("compression.type", "none")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            // A broker that went away is retried quickly and often, up to the message timeout.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000")
            .create()
            .map_err(RelayError::Client)?;
        Ok(Self {
            producer,
            routed: HashSet::new(),
        })
    }

    /// Makes sure this producer knows the partitions of every topic in `topics` before any
    /// message goes to it (see the module documentation for why). A topic whose metadata is
    /// not complete yet is an error: the caller backs off and retries the batch.
    pub(crate) async fn route<'a>(
        &mut self,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), RelayError> {
        let mut unrouted: Vec<String> = topics
            .into_iter()
            .filter(|topic| !self.routed.contains(*topic))
            .map(str::to_owned)
            .collect();
        unrouted.sort_unstable();
        unrouted.dedup();
        for topic in unrouted {
            let producer = self.producer.clone();
            let lookup = topic.clone();
            let known =
                tokio::task::spawn_blocking(move || partitions_led(producer.client(), &lookup))
                    .await
                    .map_err(|error| RelayError::TopicNotRoutable {
                        topic: topic.clone(),
                        reason: error.to_string(),
                    })?;
            match known {
                Ok(()) => {
                    self.routed.insert(topic);
                }
                Err(reason) => return Err(RelayError::TopicNotRoutable { topic, reason }),
            }
        }
        Ok(())
    }

    /// Sends every message and waits for all acknowledgements.
    ///
    /// A message the producer refuses to enqueue (e.g. its topic's metadata is not known yet
    /// just after the topic was created) ends the enqueueing: sending the messages after it
    /// would put later events of its stream on Kafka before it. Only a prefix of the batch is
    /// ever in flight, so the republication after a failure keeps each stream's first copies
    /// in sequence order.
    pub(crate) async fn publish(&self, messages: &[OutgoingMessage]) -> Result<(), PublishError> {
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        let mut errors: Vec<KafkaError> = Vec::new();
        for message in messages {
            match self.enqueue(message).await {
                Ok(delivery) => pending.push(delivery),
                Err(error) => {
                    errors.push(error);
                    break;
                }
            }
        }
        let mut delivered = 0_usize;
        for outcome in join_all(pending).await {
            match outcome {
                Ok(Ok(_delivery)) => delivered += 1,
                Ok(Err((error, _message))) => errors.push(error),
                // The producer dropped the delivery report: treat as not delivered.
                Err(_canceled) => errors.push(KafkaError::Canceled),
            }
        }
        match errors.first() {
            None => Ok(()),
            Some(first) => Err(PublishError {
                failed: messages.len() - delivered,
                total: messages.len(),
                fatal: self.is_fatal(&errors),
                first: first.clone(),
            }),
        }
    }

    /// Enqueues one message, waiting (bounded, asynchronously) while the local queue is full.
    async fn enqueue(&self, message: &OutgoingMessage) -> Result<DeliveryFuture, KafkaError> {
        loop {
            let headers = OwnedHeaders::new_with_capacity(4)
                .insert(Header {
                    key: headers::EVENT_ID,
                    value: Some(message.event_id.as_str()),
                })
                .insert(Header {
                    key: headers::EVENT_TYPE,
                    value: Some(message.event_type.as_str()),
                })
                .insert(Header {
                    key: headers::TENANT_ID,
                    value: Some(message.tenant_id.as_str()),
                })
                .insert(Header {
                    key: headers::CONTENT_TYPE,
                    value: Some(headers::CONTENT_TYPE_JSON),
                });
            let record = FutureRecord::to(&message.topic)
                .key(&message.key)
                .payload(&message.payload)
                .timestamp(message.timestamp_ms)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(ENQUEUE_WAIT).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Fatal errors poison an idempotent producer for good: it must be recreated.
    fn is_fatal(&self, errors: &[KafkaError]) -> bool {
        self.producer.client().fatal_error().is_some() || errors.iter().any(is_fatal_error)
    }

    /// One metadata round trip: does any broker answer? (blocking; run off the runtime)
    pub(crate) fn probe(&self) -> bool {
        let client: &Client<_> = self.producer.client();
        client
            .fetch_metadata(None, Timeout::After(METADATA_TIMEOUT))
            .is_ok()
    }

    /// Hands every queued message to the broker (bounded by `timeout`) before a drop.
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(Timeout::After(timeout)) {
            tracing::debug!(%error, "flush before closing the producer");
        }
    }
}

/// Asks the broker for `topic`'s metadata through `client`, which also fills the client's
/// metadata cache that a first message to the topic is routed with (blocking).
fn partitions_led<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<(), String> {
    let metadata = client
        .fetch_metadata(Some(topic), Timeout::After(METADATA_TIMEOUT))
        .map_err(|error| error.to_string())?;
    let described = metadata
        .topics()
        .iter()
        .find(|described| described.name() == topic)
        .ok_or_else(|| "not in the broker's metadata".to_owned())?;
    if let Some(error) = described.error() {
        return Err(RDKafkaErrorCode::from(error).to_string());
    }
    let partitions = described.partitions();
    if partitions.is_empty() {
        return Err("no partitions in the broker's metadata".to_owned());
    }
    match partitions
        .iter()
        .find(|partition| partition.error().is_some() || partition.leader() < 0)
    {
        Some(partition) => Err(format!("partition {} has no leader yet", partition.id())),
        None => Ok(()),
    }
}

/// Errors that leave an idempotent producer unusable (sequence or epoch trouble, or librdkafka's
/// own fatal flag).
pub(crate) fn is_fatal_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::DuplicateSequenceNumber
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerIdMapping
                | RDKafkaErrorCode::ProducerFenced
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_and_epoch_errors_are_fatal() {
        for code in [
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
            RDKafkaErrorCode::InvalidProducerEpoch,
        ] {
            assert!(is_fatal_error(&KafkaError::MessageProduction(code)));
        }
    }

    #[test]
    fn timeouts_and_transport_errors_are_not_fatal() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            assert!(!is_fatal_error(&KafkaError::MessageProduction(code)));
        }
        assert!(!is_fatal_error(&KafkaError::Canceled));
    }
}
