//! Tamper evidence: every event carries a keyed hash chained to the previous event of its
//! stream.
//!
//! `chain_hash = HMAC-SHA256(key, encoding)` where `encoding` is a domain tag followed by
//! length-prefixed fields (u64 big-endian length, then bytes): aggregate type, stored aggregate
//! id, sequence (decimal), event type, event version, canonical payload JSON, canonical
//! metadata JSON, event id (16 bytes), `recorded_at` (microseconds since the epoch, i64
//! big-endian) and `prev_hash` (empty for the first event of a stream). The executor computes
//! it at append time and stores it in `events.chain_hash` beside `prev_hash`.
//!
//! **Why keyed.** With a plain hash, a database superuser who edits an event could recompute
//! the chain. The key ([`AuditKey`], `COMMERCE_AUDIT_KEY`) lives with the engine and the
//! auditors, never in the database, so a forged or edited row cannot be given a valid hash.
//!
//! **Why canonical JSON.** PostgreSQL's `jsonb` re-orders keys and re-formats the text, so the
//! bytes sent are not the bytes read back. Both sides therefore hash [`canonical_json`] of the
//! parsed value (object keys sorted by their UTF-8 bytes, no whitespace, serde_json scalars):
//! the writer from the value it inserts, a verifier from the value read back from the database
//! or from an export line. It does not depend on serde_json's `preserve_order` feature.

use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Environment variable holding the audit key.
pub const AUDIT_KEY_ENV: &str = "COMMERCE_AUDIT_KEY";

/// The development key used when [`AUDIT_KEY_ENV`] is not set (`commerce dev`, tests).
/// Anyone can read it here: production deployments must set their own.
const DEV_AUDIT_KEY: &[u8] = b"commerce-dev-audit-key: not for production";

/// Domain tag of the event hash encoding (bumped if the encoding ever changes).
const EVENT_TAG: &[u8] = b"commerce.event.v1";

/// A SHA-256 sized hash.
pub type Hash = [u8; 32];

/// The secret that keys the chain hashes. Its `Debug` form never shows the secret.
#[derive(Clone)]
pub struct AuditKey {
    secret: Vec<u8>,
    /// HMAC's state after absorbing the key, cloned for every hash: deriving it anew costs
    /// two SHA-256 blocks per event, a good part of hashing a small one.
    keyed: Hmac<Sha256>,
}

impl AuditKey {
    /// A key from raw bytes (any length; at least 32 random bytes are recommended).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        let secret = secret.into();
        // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { secret, keyed }
    }

    /// The documented development key.
    pub fn development() -> Self {
        Self::new(DEV_AUDIT_KEY)
    }

    /// `COMMERCE_AUDIT_KEY` when set and non-empty, else the development key (with a warning).
    pub fn from_env() -> Self {
        match std::env::var(AUDIT_KEY_ENV) {
            Ok(secret) if !secret.is_empty() => Self::new(secret.into_bytes()),
            _ => {
                tracing::warn!(
                    "{AUDIT_KEY_ENV} is not set: chain hashes use the public development key"
                );
                Self::development()
            }
        }
    }

    /// HMAC-SHA256 of the concatenation of `parts` under this key.
    pub fn mac(&self, parts: &[&[u8]]) -> Hash {
        let mut mac = self.keyed.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl PartialEq for AuditKey {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret
    }
}

impl Eq for AuditKey {}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let development = self.secret == DEV_AUDIT_KEY;
        f.debug_struct("AuditKey")
            .field("development", &development)
            .finish_non_exhaustive()
    }
}

/// The fields of one stored event that its chain hash covers, exactly as stored (before any
/// upcasting).
#[derive(Clone, Copy, Debug)]
pub struct ChainFields<'a> {
    pub aggregate_type: &'a str,
    /// The stored id, `"{tenant}/{key}"`.
    pub aggregate_id: &'a str,
    pub sequence: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a serde_json::Value,
    pub metadata: &'a serde_json::Value,
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    /// The chain hash of the previous event of the stream (`None` for sequence 1).
    pub prev_hash: Option<&'a Hash>,
}

impl ChainFields<'_> {
    /// The chain hash of these fields under `key`.
    pub fn hash(&self, key: &AuditKey) -> Hash {
        let sequence = self.sequence.to_string();
        // Both documents in one buffer: one allocation per event.
        let mut json = Vec::with_capacity(1_024);
        write_canonical(self.payload, &mut json);
        let (payload, metadata) = {
            let payload_end = json.len();
            write_canonical(self.metadata, &mut json);
            json.split_at(payload_end)
        };
        let recorded_at = self.recorded_at.timestamp_micros().to_be_bytes();
        let prev: &[u8] = self.prev_hash.map_or(&[], |hash| hash.as_slice());
        let fields: [&[u8]; 10] = [
            self.aggregate_type.as_bytes(),
            self.aggregate_id.as_bytes(),
            sequence.as_bytes(),
            self.event_type.as_bytes(),
            self.event_version.as_bytes(),
            payload,
            metadata,
            self.event_id.as_bytes(),
            &recorded_at,
            prev,
        ];
        let mut mac = key.keyed.clone();
        mac.update(EVENT_TAG);
        for field in fields {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.finalize().into_bytes().into()
    }
}

/// The canonical text of a JSON value: object keys sorted by bytes, no insignificant
/// whitespace, strings and numbers as serde_json writes them.
pub fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8 and the punctuation is ASCII")
}

/// Appends the canonical text of `value` to `out`. Keys, strings and scalars go through
/// serde_json's own writer, so they come out exactly as `Value::to_string` writes them.
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's map is a `BTreeMap<String, _>`, already in byte order (`str`'s
            // `Ord`), unless some crate turns on its `preserve_order` feature: sort only then.
            if map.keys().is_sorted() {
                write_entries(map.iter(), out);
            } else {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
                write_entries(entries.into_iter(), out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a serde_json::Value)>,
    out: &mut Vec<u8>,
) {
    for (index, (key, value)) in entries.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_json(key, out);
        out.push(b':');
        write_canonical(value, out);
    }
}

fn write_json<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    serde_json::to_writer(out, value)
        .expect("a string or a JSON scalar always serialises, and a Vec never fails a write");
}

/// Lower-case hex of bytes (hashes in exports, reports and logs).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Parses the hex of a 32-byte hash.
pub fn hash_from_hex(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut hash = [0_u8; 32];
    for (slot, pair) in hash.iter_mut().zip(bytes.chunks_exact(2)) {
        *slot = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(hash)
}

/// A stored `bytea` hash as a [`Hash`] (`None` when absent or not 32 bytes long).
pub fn hash_from_bytes(bytes: Option<Vec<u8>>) -> Option<Hash> {
    bytes.and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    fn fields<'a>(payload: &'a serde_json::Value, meta: &'a serde_json::Value) -> ChainFields<'a> {
        ChainFields {
            aggregate_type: "order",
            aggregate_id: "t/o-1",
            sequence: 1,
            event_type: "order.created",
            event_version: "1",
            payload,
            metadata: meta,
            event_id: Uuid::from_u128(1),
            recorded_at: Utc
                .timestamp_micros(1_700_000_000_000_001)
                .single()
                .expect("valid"),
            prev_hash: None,
        }
    }

    #[test]
    fn given_objects_with_different_key_order_when_canonicalised_then_texts_are_equal() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, "x"], "x": null}}"#).expect("json");
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,"x"]},"b":1}"#);
    }

    #[test]
    fn given_an_event_when_any_field_changes_then_the_hash_changes() {
        let key = AuditKey::development();
        let (payload, meta) = (json!({"total": 5}), json!({"tenant_id": "t"}));
        let base = fields(&payload, &meta).hash(&key);
        let other_payload = json!({"total": 6});
        let prev = [7_u8; 32];
        let variants = [
            ChainFields {
                sequence: 2,
                ..fields(&payload, &meta)
            },
            ChainFields {
                payload: &other_payload,
                ..fields(&payload, &meta)
            },
            ChainFields {
                prev_hash: Some(&prev),
                ..fields(&payload, &meta)
            },
            ChainFields {
                aggregate_id: "t/o-2",
                ..fields(&payload, &meta)
            },
        ];
        for variant in variants {
            assert_ne!(variant.hash(&key), base);
        }
        assert_ne!(fields(&payload, &meta).hash(&AuditKey::new("other")), base);
        assert_eq!(fields(&payload, &meta).hash(&key), base);
    }

    /// A payload exercising every branch of the canonicaliser: nested objects and arrays,
    /// keys out of order (non-ASCII and escaped ones too), integers of both signs, floats,
    /// strings that need escaping, booleans and null.
    fn awkward_payload() -> serde_json::Value {
        json!({
            "zeta": [1, -2, 3.5, 1.0e21, 18446744073709551615_u64, -9223372036854775808_i64],
            "é": {"b": true, "a": false, "": null},
            "a\"quote\\": "line\nbreak\ttab \u{1} \u{7f} \u{2028} ünï 🦀 </script>",
            "Z": {"nested": {"deeper": [{"y": 0.1, "x": 2e-7}, [], {}]}},
            "10": "ten",
            "9": 9
        })
    }

    #[test]
    fn given_an_awkward_value_when_canonicalised_then_the_text_is_pinned() {
        assert_eq!(
            canonical_json(&awkward_payload()),
            concat!(
                r#"{"10":"ten","9":9,"Z":{"nested":{"deeper":[{"x":2e-7,"y":0.1},[],{}]}},"#,
                r#""a\"quote\\":"line\nbreak\ttab \u0001 "#,
                "\u{7f} \u{2028} ünï 🦀 </script>\",",
                r#""zeta":[1,-2,3.5,1e+21,18446744073709551615,-9223372036854775808],"#,
                r#""é":{"":null,"a":false,"b":true}}"#,
            )
        );
    }

    /// The chain hash of a fixed event, pinned: events already stored carry hashes of this
    /// encoding, so any change to the bytes hashed (canonical JSON, framing, key handling)
    /// must fail here rather than turn every stored event into "damage".
    #[test]
    fn given_a_fixed_event_when_hashed_then_the_hash_is_pinned() {
        let key = AuditKey::development();
        let payload = awkward_payload();
        let meta = json!({"tenant_id": "t", "correlation_id": "c-1", "actor": {"id": "u", "roles": ["a", "b"]}});
        let prev = [0xab_u8; 32];
        let first = fields(&payload, &meta).hash(&key);
        let second = ChainFields {
            sequence: 2,
            prev_hash: Some(&prev),
            ..fields(&payload, &meta)
        }
        .hash(&AuditKey::new(vec![0x5a_u8; 100]));
        assert_eq!(
            to_hex(&first),
            "dbca3635cc4e72c3fc3a54caef1ab70f31803e8648a1ae979047f87de99bda49"
        );
        assert_eq!(
            to_hex(&second),
            "6012cb76dff5529c4bf9e41fd8fe61b328dee066e4f4db8c9950fc4a24959b01"
        );
    }

    #[test]
    fn the_debug_form_hides_the_secret() {
        assert!(!format!("{:?}", AuditKey::new("s3cr3t")).contains("s3cr3t"));
    }

    /// The canonicaliser as first written (allocating, sorting every object): the oracle the
    /// faster one must match byte for byte.
    fn reference_canonical(value: &serde_json::Value) -> String {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
                let inner: Vec<String> = entries
                    .into_iter()
                    .map(|(key, value)| {
                        format!(
                            "{}:{}",
                            Value::String(key.clone()),
                            reference_canonical(value)
                        )
                    })
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            Value::Array(items) => {
                let inner: Vec<String> = items.iter().map(reference_canonical).collect();
                format!("[{}]", inner.join(","))
            }
            scalar => scalar.to_string(),
        }
    }

    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_canonical_text_is_the_reference_text(value in any_json()) {
            prop_assert_eq!(canonical_json(&value), reference_canonical(&value));
        }

        #[test]
        fn hashes_round_trip_through_hex(bytes in any::<[u8; 32]>()) {
            prop_assert_eq!(hash_from_hex(&to_hex(&bytes)), Some(bytes));
        }

        #[test]
        fn canonical_text_survives_a_parse(keys in proptest::collection::btree_map("[a-zA-Zé]{0,6}", any::<i64>(), 0..6)) {
            let value = serde_json::to_value(&keys).expect("json");
            let text = canonical_json(&value);
            let reparsed: serde_json::Value = serde_json::from_str(&text).expect("json");
            prop_assert_eq!(canonical_json(&reparsed), text);
        }
    }
}
