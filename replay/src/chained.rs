//! Events exactly as stored (before upcasting), with their chain hashes: what verification
//! re-hashes and what an export carries.

use chrono::{DateTime, Utc};
use commerce_eventstore::{AuditKey, ChainFields, Hash, hash_from_bytes};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
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

    /// Whether `other` belongs to the same stream (without building [`StreamRef`]s).
    pub(crate) fn same_stream(&self, other: &Self) -> bool {
        self.aggregate_id == other.aggregate_id && self.aggregate_type == other.aggregate_type
    }

    /// The chain hash these fields should have if the event sat at `sequence`.
    pub(crate) fn expected_hash(&self, key: &AuditKey, sequence: u64) -> Hash {
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

    /// Whether the stored chain hash is the one its fields and sequence give.
    pub(crate) fn is_authentic(&self, key: &AuditKey) -> bool {
        self.chain_hash == Some(self.expected_hash(key, self.sequence))
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
    use commerce_eventstore::{Hash, hash_from_hex, to_hex};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &Option<Hash>, serializer: S) -> Result<S::Ok, S::Error> {
        match hash {
            Some(hash) => serializer.serialize_str(&to_hex(hash)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Hash>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                hash_from_hex(&text)
                    .ok_or_else(|| serde::de::Error::custom("not a 32-byte hex hash"))
            })
            .transpose()
    }

    /// The same for a hash that must be present.
    pub mod required {
        use commerce_eventstore::{Hash, hash_from_hex, to_hex};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(hash: &Hash, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(&to_hex(hash))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hash, D::Error> {
            let text = String::deserialize(deserializer)?;
            hash_from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a 32-byte hex hash"))
        }
    }
}
