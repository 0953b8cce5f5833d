//! Reading the engine's aggregate topics end to end (every partition from its first offset to
//! its high watermark), and writing duplicated or reordered copies of their records (F4, F5).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commerce_projections::AGGREGATE_TYPES;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::FaultError;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// One record of an aggregate topic.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub event_id: Option<Uuid>,
    /// `(aggregate_id, sequence)` from the envelope, when it decodes.
    pub stream: Option<(String, i64)>,
}

/// The aggregate topic names of an engine whose topics start with `prefix`.
pub fn aggregate_topics(prefix: &str) -> Vec<String> {
    AGGREGATE_TYPES
        .iter()
        .map(|aggregate| format!("{prefix}commerce.{aggregate}"))
        .collect()
}

/// Every record of `topics`, read up to the high watermarks taken at the start.
pub fn read_all(
    brokers: &str,
    topics: &[String],
    within: Duration,
) -> Result<Vec<TopicRecord>, FaultError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("faults-reader-{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
        for described in metadata.topics() {
            for partition in described.partitions() {
                let (low, high) =
                    consumer.fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)?;
                if high > low {
                    assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
                    remaining.insert((topic.clone(), partition.id()), high);
                }
            }
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + within;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(FaultError::Timeout {
                what: format!(
                    "reading the topics ({} partitions unfinished)",
                    remaining.len()
                ),
                seconds: within.as_secs(),
            });
        }
        let Some(polled) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = polled?;
        let place = (message.topic().to_owned(), message.partition());
        if let Some(high) = remaining.get(&place)
            && message.offset() + 1 >= *high
        {
            remaining.remove(&place);
        }
        let headers: Vec<(String, Vec<u8>)> = message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|header| {
                        (
                            header.key.to_owned(),
                            header.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let envelope: Option<serde_json::Value> = message
            .payload()
            .and_then(|payload| serde_json::from_slice(payload).ok());
        let event_id = headers
            .iter()
            .find(|(key, _)| key == "event_id")
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .and_then(|text| Uuid::parse_str(text).ok())
            .or_else(|| {
                envelope
                    .as_ref()
                    .and_then(|value| value.get("event_id")?.as_str().map(str::to_owned))
                    .and_then(|text| Uuid::parse_str(&text).ok())
            });
        let stream = envelope.as_ref().and_then(|value| {
            Some((
                value.get("aggregate_id")?.as_str()?.to_owned(),
                value.get("sequence")?.as_i64()?,
            ))
        });
        records.push(TopicRecord {
            topic: place.0,
            partition: place.1,
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            event_id,
            stream,
        });
    }
    Ok(records)
}

/// Produces `records` again, in the given order, to their own topic and partition.
pub fn produce_copies(brokers: &str, records: &[TopicRecord]) -> Result<usize, FaultError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()?;
    for record in records {
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(rdkafka::message::Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let mut outgoing: BaseRecord<'_, Vec<u8>, Vec<u8>> = BaseRecord::to(&record.topic)
            .partition(record.partition)
            .headers(headers);
        if let Some(key) = &record.key {
            outgoing = outgoing.key(key);
        }
        if let Some(payload) = &record.payload {
            outgoing = outgoing.payload(payload);
        }
        producer.send(outgoing).map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(records.len())
}

/// Produces raw records (poison: undecodable or oversized) to `topic`, keyed by `key`.
pub fn produce_raw(
    brokers: &str,
    topic: &str,
    key: &str,
    payloads: &[Vec<u8>],
) -> Result<(), FaultError> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", "10000000")
        .create()?;
    for payload in payloads {
        producer
            .send(BaseRecord::to(topic).key(key).payload(payload))
            .map_err(|(error, _)| error)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}
