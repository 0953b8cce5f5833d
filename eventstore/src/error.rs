//! Errors of the storage layer (reads, appends, migrations).

use crate::metadata::MetadataError;
use crate::stream::StreamIdError;

/// A stored row that cannot be turned back into the engine's types.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    StreamId(#[from] StreamIdError),
    #[error("{what} is out of range: {value}")]
    OutOfRange { what: &'static str, value: String },
    #[error("stream {stream} is not contiguous: expected sequence {expected}, found {found}")]
    Gap {
        stream: String,
        expected: u64,
        found: u64,
    },
}

impl DecodeError {
    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json {
            what: what.into(),
            source,
        }
    }
}

/// Failure of a read or write against the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event store data cannot be decoded: {0}")]
    Decode(#[from] DecodeError),
}

impl From<serde_json::Error> for StoreError {
    fn from(source: serde_json::Error) -> Self {
        Self::Decode(DecodeError::json("a JSON value", source))
    }
}

/// Sequences are `u64` in the API and `bigint` in PostgreSQL.
pub(crate) fn sequence_to_db(sequence: u64) -> Result<i64, DecodeError> {
    i64::try_from(sequence).map_err(|_| DecodeError::OutOfRange {
        what: "sequence",
        value: sequence.to_string(),
    })
}

pub(crate) fn sequence_from_db(sequence: i64) -> Result<u64, DecodeError> {
    u64::try_from(sequence).map_err(|_| DecodeError::OutOfRange {
        what: "sequence",
        value: sequence.to_string(),
    })
}
