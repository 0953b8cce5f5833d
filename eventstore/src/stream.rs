//! Stream identity: which tenant's which aggregate instance.
//!
//! postgres-es keys a stream by `(aggregate_type, aggregate_id)`. The engine stores
//! `aggregate_id = "{tenant}/{key}"`, so two tenants that choose the same key (a SKU, a
//! client-chosen order id) always write to different streams.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

const SEPARATOR: char = '/';

/// A tenant-scoped stream id, stored as `"{tenant}/{key}"` in the `aggregate_id` column.
///
/// Neither part may be empty or contain `/`, which makes the stored form unambiguous.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId {
    tenant: String,
    key: String,
}

/// Why a tenant, key or stored aggregate id is not a valid stream id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("the {part} of a stream id is empty")]
    Empty { part: &'static str },
    #[error("the {part} of a stream id contains '/': {value:?}")]
    ContainsSeparator { part: &'static str, value: String },
    #[error("stored aggregate id {0:?} is not of the form tenant/key")]
    Malformed(String),
}

impl StreamId {
    /// Builds a stream id from a tenant and a per-tenant key.
    pub fn new(tenant: impl Into<String>, key: impl Into<String>) -> Result<Self, StreamIdError> {
        let tenant = validated("tenant", tenant.into())?;
        let key = validated("key", key.into())?;
        Ok(Self { tenant, key })
    }

    /// Parses the stored form `"{tenant}/{key}"`.
    pub fn parse(aggregate_id: &str) -> Result<Self, StreamIdError> {
        let (tenant, key) = aggregate_id
            .split_once(SEPARATOR)
            .ok_or_else(|| StreamIdError::Malformed(aggregate_id.to_owned()))?;
        Self::new(tenant, key).map_err(|_| StreamIdError::Malformed(aggregate_id.to_owned()))
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value stored in the `aggregate_id` column.
    pub fn aggregate_id(&self) -> String {
        self.to_string()
    }
}

fn validated(part: &'static str, value: String) -> Result<String, StreamIdError> {
    if value.is_empty() {
        return Err(StreamIdError::Empty { part });
    }
    if value.contains(SEPARATOR) {
        return Err(StreamIdError::ContainsSeparator { part, value });
    }
    Ok(value)
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SEPARATOR}{}", self.tenant, self.key)
    }
}

impl FromStr for StreamId {
    type Err = StreamIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn given_tenant_and_key_when_formatted_then_stored_form_is_tenant_slash_key() {
        let stream = StreamId::new("acme", "SKU-1").expect("valid");
        assert_eq!(stream.aggregate_id(), "acme/SKU-1");
    }

    #[test]
    fn given_a_slash_in_a_part_when_built_then_rejected() {
        assert!(matches!(
            StreamId::new("a/b", "k"),
            Err(StreamIdError::ContainsSeparator { part: "tenant", .. })
        ));
        assert!(matches!(
            StreamId::new("t", ""),
            Err(StreamIdError::Empty { part: "key" })
        ));
        assert!(StreamId::parse("no-separator").is_err());
        assert!(StreamId::parse("t/k/extra").is_err());
    }

    proptest! {
        #[test]
        fn stored_form_round_trips(tenant in "[^/]{1,12}", key in "[^/]{1,12}") {
            let stream = StreamId::new(tenant.clone(), key.clone()).expect("valid parts");
            let parsed = StreamId::parse(&stream.aggregate_id()).expect("round trip");
            prop_assert_eq!(parsed.tenant(), tenant.as_str());
            prop_assert_eq!(parsed.key(), key.as_str());
        }

        #[test]
        fn different_tenants_never_share_a_stream(a in "[a-z]{1,6}", b in "[a-z]{1,6}", key in "[^/]{1,8}") {
            prop_assume!(a != b);
            let left = StreamId::new(a, key.clone()).expect("valid");
            let right = StreamId::new(b, key).expect("valid");
            prop_assert_ne!(left.aggregate_id(), right.aggregate_id());
        }
    }
}
