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
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
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

    /// An HMAC-SHA256 under this key fed piece by piece, starting with the domain `tag` (for
    /// what is too long to hold at once, such as an export file).
    pub fn running_mac(&self, tag: &[u8]) -> RunningMac {
        let mut mac = self.keyed.clone();
        mac.update(tag);
        RunningMac(mac)
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

/// An HMAC under an [`AuditKey`] in progress ([`AuditKey::running_mac`]).
#[derive(Clone)]
pub struct RunningMac(Hmac<Sha256>);

impl RunningMac {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Hash {
        self.0.finalize().into_bytes().into()
    }
}

impl fmt::Debug for RunningMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningMac").finish_non_exhaustive()
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
        // Both documents in one buffer: one allocation per event.
        let mut json = Vec::with_capacity(1_024);
        write_canonical(self.payload, &mut json);
        let payload_end = json.len();
        write_canonical(self.metadata, &mut json);
        let (payload, metadata) = json.split_at(payload_end);
        CanonicalChainFields {
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload,
            metadata,
            event_id: self.event_id,
            recorded_at: self.recorded_at,
            prev_hash: self.prev_hash,
        }
        .hash(key)
    }
}

/// [`ChainFields`] with the payload and metadata already in canonical text: for a verifier
/// that canonicalises the stored text directly ([`write_canonical_text`]) instead of
/// building `serde_json::Value`s. Both hash through [`CanonicalChainFields::hash`].
#[derive(Clone, Copy, Debug)]
pub struct CanonicalChainFields<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// The payload's canonical JSON text.
    pub payload: &'a [u8],
    /// The metadata's canonical JSON text.
    pub metadata: &'a [u8],
    pub event_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    pub prev_hash: Option<&'a Hash>,
}

impl CanonicalChainFields<'_> {
    /// The chain hash of these fields under `key` (the encoding of the module docs).
    pub fn hash(&self, key: &AuditKey) -> Hash {
        let sequence = self.sequence.to_string();
        let recorded_at = self.recorded_at.timestamp_micros().to_be_bytes();
        let prev: &[u8] = self.prev_hash.map_or(&[], |hash| hash.as_slice());
        let fields: [&[u8]; 10] = [
            self.aggregate_type.as_bytes(),
            self.aggregate_id.as_bytes(),
            sequence.as_bytes(),
            self.event_type.as_bytes(),
            self.event_version.as_bytes(),
            self.payload,
            self.metadata,
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

/// Appends to `out` the canonical text of the JSON document `text`: the very bytes of
/// [`canonical_json`] of `serde_json::from_slice(text)`, but without building a `Value`
/// (strings are borrowed from `text` where they hold no escapes, objects are sorted vectors).
/// Verification canonicalises every stored payload: this is most of its CPU time.
pub fn write_canonical_text(text: &[u8], out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match serde_json::from_slice::<Node<'_>>(text) {
        Ok(mut node) => node.write(out),
        // Malformed text fails here again with serde_json's own error; a document that only
        // the fast path refuses (a key `Value` gives a special meaning) comes out as `Value`
        // reads it.
        Err(_) => write_canonical(&serde_json::from_slice(text)?, out),
    }
    Ok(())
}

/// A JSON document parsed just enough to write it canonically. Scalars are built exactly as
/// serde_json's `Value` builds them, so they write identically.
enum Node<'a> {
    Scalar(serde_json::Value),
    String(Text<'a>),
    Array(Vec<Node<'a>>),
    /// In document order; sorted when written.
    Object(Vec<(Text<'a>, Node<'a>)>),
}

impl Node<'_> {
    /// Writes the canonical text (sorting objects in place: the node is spent).
    fn write(&mut self, out: &mut Vec<u8>) {
        match self {
            Node::Scalar(scalar) => write_json(scalar, out),
            Node::String(text) => text.write(out),
            Node::Array(items) => {
                out.push(b'[');
                for (index, item) in items.iter_mut().enumerate() {
                    if index > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Node::Object(entries) => {
                // Stable, so of a duplicated key the last entry stays last: the one `Value`'s
                // map keeps (its inserts overwrite).
                entries.sort_by(|(a, _), (b, _)| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
                out.push(b'{');
                let mut first = true;
                for index in 0..entries.len() {
                    let duplicated = entries
                        .get(index + 1)
                        .is_some_and(|(next, _)| next.as_str() == entries[index].0.as_str());
                    if duplicated {
                        continue;
                    }
                    let (key, value) = &mut entries[index];
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    key.write(out);
                    out.push(b':');
                    value.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// A string of the document: borrowed from the source text when it held no escape sequence.
enum Text<'a> {
    Raw(&'a str),
    Unescaped(String),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Raw(raw) => raw,
            Text::Unescaped(text) => text,
        }
    }

    /// The string as serde_json writes it. A raw one held no escape sequence, hence (JSON
    /// forbids raw control characters, quotes and backslashes in strings) nothing serde_json
    /// would escape: its bytes go out as they came in.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Text::Raw(raw) => {
                out.push(b'"');
                out.extend_from_slice(raw.as_bytes());
                out.push(b'"');
            }
            Text::Unescaped(text) => write_json(text.as_str(), out),
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

/// Mirrors the visitor of `serde_json::Value` (`value/de.rs`) call for call.
struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Node::Scalar(serde_json::Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Node::Scalar(serde_json::Value::Number(value.into())))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Node::Scalar(serde_json::Value::Number(value.into())))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        Ok(Node::Scalar(
            serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, Into::into),
        ))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Node::String(Text::Raw(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Node::String(Text::Unescaped(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Node::String(Text::Unescaped(value)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Scalar(serde_json::Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Scalar(serde_json::Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // serde_json gives no size hint for objects; most events' hold a handful of keys.
        let mut entries = Vec::with_capacity(8);
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Object(entries))
    }
}

/// An object key, borrowed when it holds no escapes.
struct Key<'a>(Text<'a>);

/// serde_json's `Value` treats a (first) key with this prefix specially (its `raw_value` and
/// `arbitrary_precision` tokens): such documents take the `Value` path.
const SERDE_JSON_PRIVATE: &str = "$serde_json::private::";

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl KeyVisitor {
    fn check<E: serde::de::Error>(key: Text<'_>) -> Result<Key<'_>, E> {
        if key.as_str().starts_with(SERDE_JSON_PRIVATE) {
            return Err(E::custom("a key serde_json reserves"));
        }
        Ok(Key(key))
    }
}

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Self::check(Text::Raw(key))
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Self::check(Text::Unescaped(key.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, key: String) -> Result<Self::Value, E> {
        Self::check(Text::Unescaped(key))
    }
}

/// Lower-case hex of bytes (hashes in exports, reports and logs).
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    write_hex(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Appends the lower-case hex of `bytes` to `out` (where many hashes go into one text).
pub fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
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

    fn canonical_from_text(text: &str) -> String {
        let mut out = Vec::new();
        write_canonical_text(text.as_bytes(), &mut out).expect("valid JSON");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn given_stored_text_when_canonicalised_directly_then_it_matches_the_value_path() {
        let texts = [
            r#"{"b": 1, "a": {"y": [1, "x"], "x": null}}"#,
            r#"{"k": 1, "k": 2, "a": [], "k": 3}"#,
            r#"{"$serde_json::private::RawValue": "{\"b\":1,\"a\":2}"}"#,
            r#"{"a": "\u00e9\n\"", "\u00e9": 1e400}"#,
            r#"[1.0, -0.0, 1e2, 100000000000000000000, -9223372036854775809, 0.1e-3]"#,
            "\"just a string\"",
            "null",
        ];
        for text in texts {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => {
                    assert_eq!(canonical_from_text(text), canonical_json(&value), "{text}")
                }
                Err(_) => assert!(write_canonical_text(text.as_bytes(), &mut Vec::new()).is_err()),
            }
        }
        let awkward = serde_json::to_string_pretty(&awkward_payload()).expect("json");
        assert_eq!(
            canonical_from_text(&awkward),
            canonical_json(&awkward_payload())
        );
    }

    #[test]
    fn given_canonical_texts_when_hashed_then_the_hash_is_the_value_paths() {
        let payload = awkward_payload();
        let meta = json!({"tenant_id": "t"});
        let key = AuditKey::development();
        let (payload_text, meta_text) = (
            canonical_from_text(&payload.to_string()),
            canonical_from_text(&meta.to_string()),
        );
        let base = fields(&payload, &meta);
        let canonical = CanonicalChainFields {
            aggregate_type: base.aggregate_type,
            aggregate_id: base.aggregate_id,
            sequence: base.sequence,
            event_type: base.event_type,
            event_version: base.event_version,
            payload: payload_text.as_bytes(),
            metadata: meta_text.as_bytes(),
            event_id: base.event_id,
            recorded_at: base.recorded_at,
            prev_hash: base.prev_hash,
        };
        assert_eq!(canonical.hash(&key), base.hash(&key));
    }

    proptest! {
        #[test]
        fn the_canonical_text_is_the_reference_text(value in any_json()) {
            prop_assert_eq!(canonical_json(&value), reference_canonical(&value));
        }

        #[test]
        fn text_canonicalised_directly_is_the_value_paths_text(value in any_json(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).expect("json")
            } else {
                value.to_string()
            };
            let reparsed: serde_json::Value = serde_json::from_str(&text).expect("json");
            prop_assert_eq!(canonical_from_text(&text), canonical_json(&reparsed));
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
