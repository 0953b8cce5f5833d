//! Events exactly as stored (before upcasting), with their chain hashes: what verification
//! re-hashes and what an export carries.
//!
//! - [`ChainedEvent`]: a whole row, documents parsed (exports, history, sealing);
//! - [`CanonicalEvent`]: only what the hash covers, documents kept as their canonical text
//!   (the database walk of verification, which must not spend its time building `Value`s);
//! - [`Rehash`]: what the stream check needs of either.

use chrono::{DateTime, Utc};
use commerce_eventstore::{
    AuditKey, CanonicalChainFields, ChainFields, Hash, hash_from_bytes, write_canonical_text,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::{PgRow, PgValueFormat};
use uuid::Uuid;

use crate::error::ReplayError;

/// The columns [`ChainedEvent::from_row`] reads.
pub(crate) const CHAINED_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, position, transaction_id::text AS transaction_id, \
     event_id, recorded_at, prev_hash, chain_hash";

/// One stored row of `events`, unmodified.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainedEvent {
    pub aggregate_type: String,
    /// The stored id, `"{tenant}/{key}"`.
    pub aggregate_id: String,
    pub sequence: u64,
    pub event_type: String,
    /// The stored version (history shows the upcast one).
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub position: i64,
    pub transaction_id: u64,
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    #[serde(with = "hex_hash")]
    pub prev_hash: Option<Hash>,
    #[serde(with = "hex_hash")]
    pub chain_hash: Option<Hash>,
}

impl ChainedEvent {
    pub(crate) fn from_row(row: &PgRow) -> Result<Self, ReplayError> {
        let sequence: i64 = row.try_get("sequence")?;
        let transaction_id: String = row.try_get("transaction_id")?;
        Ok(Self {
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: u64::try_from(sequence)
                .map_err(|_| ReplayError::Value(format!("negative sequence {sequence}")))?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            position: row.try_get("position")?,
            transaction_id: transaction_id
                .parse()
                .map_err(|_| ReplayError::Value(format!("bad xid8 {transaction_id}")))?,
            event_id: row.try_get("event_id")?,
            recorded_at: row.try_get("recorded_at")?,
            prev_hash: hash_from_bytes(row.try_get("prev_hash")?),
            chain_hash: hash_from_bytes(row.try_get("chain_hash")?),
        })
    }

    /// The stream this event belongs to.
    pub fn stream(&self) -> StreamRef {
        StreamRef {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
        }
    }
}

/// An event as the stream check sees it: its place, its hashes, and its fields re-hashed.
pub(crate) trait Rehash {
    fn sequence(&self) -> u64;
    fn event_id(&self) -> Uuid;
    fn prev_hash(&self) -> Option<&Hash>;
    fn chain_hash(&self) -> Option<&Hash>;

    /// The chain hash these fields should have if the event sat at `sequence`.
    fn expected_hash(&self, key: &AuditKey, sequence: u64) -> Hash;

    /// Whether the stored chain hash is the one its fields and sequence give.
    fn is_authentic(&self, key: &AuditKey) -> bool {
        self.chain_hash() == Some(&self.expected_hash(key, self.sequence()))
    }
}

impl Rehash for ChainedEvent {
    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn event_id(&self) -> Uuid {
        self.event_id
    }

    fn prev_hash(&self) -> Option<&Hash> {
        self.prev_hash.as_ref()
    }

    fn chain_hash(&self) -> Option<&Hash> {
        self.chain_hash.as_ref()
    }

    fn expected_hash(&self, key: &AuditKey, sequence: u64) -> Hash {
        ChainFields {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            prev_hash: self.prev_hash.as_ref(),
        }
        .hash(key)
    }
}

/// The columns [`CanonicalEvent::from_row`] reads, in this order.
pub(crate) const CANONICAL_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload, metadata, event_id, recorded_at, prev_hash, chain_hash";
/// How many columns [`CANONICAL_COLUMNS`] names: a query may select more after them.
pub(crate) const CANONICAL_COLUMN_COUNT: usize = count_columns(CANONICAL_COLUMNS);

const fn count_columns(list: &str) -> usize {
    let bytes = list.as_bytes();
    let (mut index, mut columns) = (0, 1);
    while index < bytes.len() {
        if bytes[index] == b',' {
            columns += 1;
        }
        index += 1;
    }
    columns
}

/// A stored event reduced to what its chain hash covers, payload and metadata as canonical
/// text: built straight from the `jsonb` text, never parsed into `serde_json::Value`.
#[derive(Debug, Clone)]
pub(crate) struct CanonicalEvent {
    aggregate_type: String,
    aggregate_id: String,
    sequence: u64,
    event_type: String,
    event_version: String,
    /// The payload's canonical text followed by the metadata's.
    documents: Vec<u8>,
    payload_len: usize,
    event_id: Uuid,
    recorded_at: DateTime<Utc>,
    prev_hash: Option<Hash>,
    chain_hash: Option<Hash>,
}

impl CanonicalEvent {
    /// Reads a row of [`CANONICAL_COLUMNS`] (by position: no name look-ups per row).
    pub(crate) fn from_row(row: &PgRow) -> Result<Self, ReplayError> {
        let sequence: i64 = row.try_get(2)?;
        let mut documents = Vec::with_capacity(1_024);
        write_canonical_text(jsonb_text(row, 5)?, &mut documents)?;
        let payload_len = documents.len();
        write_canonical_text(jsonb_text(row, 6)?, &mut documents)?;
        Ok(Self {
            aggregate_type: row.try_get(0)?,
            aggregate_id: row.try_get(1)?,
            sequence: u64::try_from(sequence)
                .map_err(|_| ReplayError::Value(format!("negative sequence {sequence}")))?,
            event_type: row.try_get(3)?,
            event_version: row.try_get(4)?,
            documents,
            payload_len,
            event_id: row.try_get(7)?,
            recorded_at: row.try_get(8)?,
            prev_hash: stored_hash(row, 9)?,
            chain_hash: stored_hash(row, 10)?,
        })
    }

    /// The stream's aggregate type and stored id.
    pub(crate) fn stream_names(&self) -> (&str, &str) {
        (&self.aggregate_type, &self.aggregate_id)
    }

    /// Whether `other` belongs to the same stream (without building [`StreamRef`]s).
    pub(crate) fn same_stream(&self, other: &Self) -> bool {
        self.aggregate_id == other.aggregate_id && self.aggregate_type == other.aggregate_type
    }

    /// The stream this event belongs to.
    pub(crate) fn stream(&self) -> StreamRef {
        StreamRef {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
        }
    }
}

impl Rehash for CanonicalEvent {
    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn event_id(&self) -> Uuid {
        self.event_id
    }

    fn prev_hash(&self) -> Option<&Hash> {
        self.prev_hash.as_ref()
    }

    fn chain_hash(&self) -> Option<&Hash> {
        self.chain_hash.as_ref()
    }

    fn expected_hash(&self, key: &AuditKey, sequence: u64) -> Hash {
        let (payload, metadata) = self.documents.split_at(self.payload_len);
        CanonicalChainFields {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload,
            metadata,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            prev_hash: self.prev_hash.as_ref(),
        }
        .hash(key)
    }
}

/// A `bytea` hash column read in place, as [`hash_from_bytes`] reads it: `None` when absent or
/// not 32 bytes long.
fn stored_hash(row: &PgRow, column: usize) -> Result<Option<Hash>, ReplayError> {
    let bytes: Option<&[u8]> = row.try_get(column)?;
    Ok(bytes.and_then(|bytes| Hash::try_from(bytes).ok()))
}

/// The JSON text of a `jsonb` column, as sqlx's own `jsonb` decoding finds it: in the binary
/// format behind a version byte (1), in the text format as is.
fn jsonb_text(row: &PgRow, column: usize) -> Result<&[u8], ReplayError> {
    let value = row.try_get_raw(column)?;
    let binary = value.format() == PgValueFormat::Binary;
    let bytes = value
        .as_bytes()
        .map_err(|error| ReplayError::Value(format!("jsonb column {column}: {error}")))?;
    match (binary, bytes.split_first()) {
        (false, _) => Ok(bytes),
        (true, Some((1, text))) => Ok(text),
        (true, _) => Err(ReplayError::Value(format!(
            "jsonb column {column}: unsupported binary format version"
        ))),
    }
}

/// A stream of the store: aggregate type and stored id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamRef {
    pub aggregate_type: String,
    pub aggregate_id: String,
}

impl StreamRef {
    /// The tenant part of the stored id.
    pub fn tenant(&self) -> &str {
        self.aggregate_id
            .split_once('/')
            .map_or(self.aggregate_id.as_str(), |(tenant, _)| tenant)
    }
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.aggregate_type, self.aggregate_id)
    }
}

/// Serde of an optional hash as lower-case hex (or null).
pub(crate) mod hex_hash {
    use std::fmt;

    use commerce_eventstore::{Hash, hash_from_hex, to_hex};
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &Option<Hash>, serializer: S) -> Result<S::Ok, S::Error> {
        match hash {
            Some(hash) => serializer.serialize_str(&to_hex(hash)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Hash>, D::Error> {
        deserializer.deserialize_option(HexVisitor)
    }

    /// The same for a hash that must be present.
    pub mod required {
        use commerce_eventstore::{Hash, to_hex};
        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(&to_hex(hash))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
            deserializer
                .deserialize_str(super::HexVisitor)?
                .ok_or_else(|| serde::de::Error::custom("not a 32-byte hex hash"))
        }
    }

    /// Parses the hex where it lies: a checkpoint's heads hold one hash per stream, and an
    /// owned `String` for each would be most of the cost of reading them.
    struct HexVisitor;

    impl<'de> Visitor<'de> for HexVisitor {
        type Value = Option<Hash>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a 32-byte hash in hex")
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
            hash_from_hex(text)
                .map(Some)
                .ok_or_else(|| E::custom("not a 32-byte hex hash"))
        }

        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(HexVisitor)
        }
    }
}
