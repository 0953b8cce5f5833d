//! Metadata carried by every event: who, for which tenant, why (correlation and causation),
//! and under which idempotency key.
//!
//! cqrs-es models metadata as `HashMap<String, String>`; [`EventMetadata`] converts to and from
//! that shape losslessly so events written here stay readable by cqrs-es and postgres-es.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

const TENANT_ID: &str = "tenant_id";
const CORRELATION_ID: &str = "correlation_id";
const CAUSATION_ID: &str = "causation_id";
const ACTOR: &str = "actor";
const IDEMPOTENCY_KEY: &str = "idempotency_key";

/// The metadata stored with each event of a command (all events of one command share it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// The tenant, taken from the caller's token; must match the stream's tenant.
    pub tenant_id: String,
    /// Groups every command and event of one business flow.
    pub correlation_id: Uuid,
    /// The event or request that caused this command, when there is one.
    pub causation_id: Option<Uuid>,
    /// Who issued the command (token subject, or a process manager's name).
    pub actor: String,
    /// The client's idempotency key, when the command was sent with one.
    pub idempotency_key: Option<String>,
}

/// A metadata map that lacks a required entry or holds a malformed one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("event metadata has no {0:?} entry")]
    Missing(&'static str),
    #[error("event metadata entry {key:?} is not a UUID: {value:?}")]
    InvalidUuid { key: &'static str, value: String },
}

impl EventMetadata {
    /// Metadata for a new flow: a fresh correlation id, no causation, no idempotency key.
    pub fn new(tenant_id: impl Into<String>, actor: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            actor: actor.into(),
            idempotency_key: None,
        }
    }

    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn with_causation(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    pub fn with_correlation(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// The cqrs-es shape. Absent optional fields are left out of the map.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::with_capacity(5);
        map.insert(TENANT_ID.to_owned(), self.tenant_id.clone());
        map.insert(CORRELATION_ID.to_owned(), self.correlation_id.to_string());
        if let Some(causation) = self.causation_id {
            map.insert(CAUSATION_ID.to_owned(), causation.to_string());
        }
        map.insert(ACTOR.to_owned(), self.actor.clone());
        if let Some(key) = &self.idempotency_key {
            map.insert(IDEMPOTENCY_KEY.to_owned(), key.clone());
        }
        map
    }

    /// Reads the cqrs-es shape back. Unknown keys are ignored (forward compatibility).
    pub fn from_map(map: &HashMap<String, String>) -> Result<Self, MetadataError> {
        let required = |key: &'static str| map.get(key).ok_or(MetadataError::Missing(key));
        let uuid = |key: &'static str, value: &String| {
            Uuid::parse_str(value).map_err(|_| MetadataError::InvalidUuid {
                key,
                value: value.clone(),
            })
        };
        Ok(Self {
            tenant_id: required(TENANT_ID)?.clone(),
            correlation_id: uuid(CORRELATION_ID, required(CORRELATION_ID)?)?,
            causation_id: map
                .get(CAUSATION_ID)
                .map(|value| uuid(CAUSATION_ID, value))
                .transpose()?,
            actor: required(ACTOR)?.clone(),
            idempotency_key: map.get(IDEMPOTENCY_KEY).cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn metadata() -> impl Strategy<Value = EventMetadata> {
        (
            "[a-z0-9-]{1,10}",
            any::<u128>(),
            proptest::option::of(any::<u128>()),
            ".{0,12}",
            proptest::option::of(".{0,12}"),
        )
            .prop_map(|(tenant_id, corr, cause, actor, key)| EventMetadata {
                tenant_id,
                correlation_id: Uuid::from_u128(corr),
                causation_id: cause.map(Uuid::from_u128),
                actor,
                idempotency_key: key,
            })
    }

    proptest! {
        #[test]
        fn metadata_round_trips_through_the_cqrs_es_map(meta in metadata()) {
            prop_assert_eq!(EventMetadata::from_map(&meta.to_map()), Ok(meta));
        }
    }

    #[test]
    fn given_a_map_without_tenant_when_read_then_missing_is_reported() {
        let mut map = EventMetadata::new("t", "a").to_map();
        map.remove(TENANT_ID);
        assert_eq!(
            EventMetadata::from_map(&map),
            Err(MetadataError::Missing(TENANT_ID))
        );
    }

    #[test]
    fn given_all_fields_when_mapped_then_the_documented_keys_are_used() {
        let meta = EventMetadata::new("t", "alice")
            .with_causation(Uuid::nil())
            .with_idempotency_key("k-1");
        let map = meta.to_map();
        let mut keys: Vec<_> = map.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "actor",
                "causation_id",
                "correlation_id",
                "idempotency_key",
                "tenant_id"
            ]
        );
    }
}
