//! Checkpoints seal the global log: the event count and cumulative hash of every event's chain
//! hash in log order up to a cursor, plus the head of every stream that changed since the
//! previous checkpoint, all under a keyed seal chained to the previous checkpoint's seal.
//!
//! - `cumulative_k = SHA-256(cumulative_{k-1} || chain_hash_k)` (32 zero bytes start it and
//!   stand in for a missing chain hash), over `(transaction_id, position)` order: the gap-free
//!   order, so everything below a sealed cursor was final when it was sealed.
//! - heads are grouped by tenant; `heads_digest` hashes each tenant's canonical heads
//!   separately, so a one-tenant export can carry its own heads and only the digests of the
//!   others, and still let an auditor check the seal offline.
//! - `seal = HMAC(key, tag, checkpoint_no, transaction_id, position, event_count,
//!   cumulative_hash, heads_digest, prev_seal)`, each length-prefixed.
//!
//! [`seal_checkpoint`] re-checks every event it seals and refuses to seal a damaged range.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commerce_eventstore::{AuditKey, Hash, hash_from_bytes, write_hex};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{Connection, PgPool, Row};

use crate::chained::{CHAINED_COLUMNS, ChainedEvent, Rehash, hex_hash};
use crate::error::ReplayError;

const SEAL_TAG: &[u8] = b"commerce.checkpoint.v1";
const BATCH: i64 = 1_000;

/// The sealed head of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub sequence: u64,
    #[serde(with = "hex_hash::required")]
    pub hash: Hash,
}

/// Heads by tenant, then by stream (`"{aggregate_type} {aggregate_id}"`).
pub type Heads = BTreeMap<String, BTreeMap<String, Head>>;

/// One row of `log_checkpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub checkpoint_no: u64,
    pub transaction_id: u64,
    pub position: i64,
    /// Events in the log up to and including the cursor.
    pub event_count: u64,
    #[serde(with = "hex_hash::required")]
    pub cumulative_hash: Hash,
    /// Heads of the streams that changed since the previous checkpoint (in an export: only
    /// the exported tenant's).
    pub heads: Heads,
    /// The digest of every tenant's heads (what the seal covers).
    #[serde(with = "hex_map")]
    pub tenant_digests: BTreeMap<String, Hash>,
    #[serde(with = "hex_hash")]
    pub prev_seal: Option<Hash>,
    #[serde(with = "hex_hash::required")]
    pub seal: Hash,
    pub created_at: DateTime<Utc>,
}

impl Checkpoint {
    /// A row of [`load_checkpoints`]' query.
    fn from_row(row: &PgRow) -> Result<Self, ReplayError> {
        let sealed = Sealed::from_row(row)?;
        let Json(heads) = row.try_get::<Json<Heads>, _>("heads")?;
        let tenant_digests = heads
            .iter()
            .map(|(tenant, heads)| (tenant.clone(), tenant_digest(heads)))
            .collect();
        Ok(Self {
            checkpoint_no: sealed.checkpoint_no,
            transaction_id: sealed.transaction_id,
            position: sealed.position,
            event_count: sealed.event_count,
            cumulative_hash: sealed.cumulative_hash,
            heads,
            tenant_digests,
            prev_seal: hash_from_bytes(row.try_get("prev_seal")?),
            seal: sealed.seal,
            created_at: row.try_get("created_at")?,
        })
    }

    /// The seal these fields should carry.
    pub fn expected_seal(&self, key: &AuditKey) -> Hash {
        let mut digest = Sha256::new();
        for (tenant, tenant_digest) in &self.tenant_digests {
            digest.update((tenant.len() as u64).to_be_bytes());
            digest.update(tenant.as_bytes());
            digest.update(tenant_digest);
        }
        let heads_digest: Hash = digest.finalize().into();
        let no = self.checkpoint_no.to_be_bytes();
        let txid = self.transaction_id.to_be_bytes();
        let position = self.position.to_be_bytes();
        let count = self.event_count.to_be_bytes();
        let prev: &[u8] = self.prev_seal.as_ref().map_or(&[], |seal| seal.as_slice());
        let fields: [&[u8]; 7] = [
            &no,
            &txid,
            &position,
            &count,
            &self.cumulative_hash,
            &heads_digest,
            prev,
        ];
        let lengths: Vec<[u8; 8]> = fields
            .iter()
            .map(|field| (field.len() as u64).to_be_bytes())
            .collect();
        let mut parts: Vec<&[u8]> = vec![SEAL_TAG];
        for (length, field) in lengths.iter().zip(fields) {
            parts.push(length);
            parts.push(field);
        }
        key.mac(&parts)
    }

    /// Whether the heads given for each tenant match the digests the seal covers.
    pub fn heads_match_digests(&self) -> bool {
        self.heads
            .iter()
            .all(|(tenant, heads)| self.tenant_digests.get(tenant) == Some(&tenant_digest(heads)))
    }

    /// This checkpoint as one tenant may see it: its heads, everyone's digests.
    pub(crate) fn for_tenant(&self, tenant: &str) -> Self {
        let mut copy = self.clone();
        copy.heads.retain(|name, _| name == tenant);
        copy
    }
}

/// The digest of one tenant's heads: SHA-256 of their canonical JSON,
/// `{"<stream>":{"hash":"<hex>","sequence":<n>},…}` (streams in byte order, as a `BTreeMap`
/// keeps them; `hash` before `sequence`), written straight from the map: this runs for every
/// head of every checkpoint a verification loads. The text is hashed a block at a time, so a
/// checkpoint of a million heads needs no buffer of its size.
pub(crate) fn tenant_digest(heads: &BTreeMap<String, Head>) -> Hash {
    const BLOCK: usize = 64 * 1024;
    let mut digest = Sha256::new();
    let mut text = Vec::with_capacity(BLOCK + 512);
    text.push(b'{');
    for (index, (stream, head)) in heads.iter().enumerate() {
        if index > 0 {
            text.push(b',');
        }
        serde_json::to_writer(&mut text, stream)
            .expect("a string always serialises, and a Vec never fails a write");
        text.extend_from_slice(b":{\"hash\":\"");
        write_hex(&head.hash, &mut text);
        text.extend_from_slice(b"\",\"sequence\":");
        serde_json::to_writer(&mut text, &head.sequence)
            .expect("a number always serialises, and a Vec never fails a write");
        text.push(b'}');
        if text.len() >= BLOCK {
            digest.update(&text);
            text.clear();
        }
    }
    text.push(b'}');
    digest.update(&text);
    digest.finalize().into()
}

/// The stream key used in heads.
pub(crate) fn head_key(aggregate_type: &str, aggregate_id: &str) -> String {
    let mut key = String::new();
    write_head_key(&mut key, aggregate_type, aggregate_id);
    key
}

/// [`head_key`] into a buffer the caller reuses (one look-up per stream of the log).
pub(crate) fn write_head_key(key: &mut String, aggregate_type: &str, aggregate_id: &str) {
    key.clear();
    key.reserve(aggregate_type.len() + 1 + aggregate_id.len());
    key.push_str(aggregate_type);
    key.push(' ');
    key.push_str(aggregate_id);
}

/// The next cumulative hash.
pub(crate) fn accumulate(cumulative: &Hash, chain_hash: Option<&Hash>) -> Hash {
    let mut digest = Sha256::new();
    digest.update(cumulative);
    digest.update(chain_hash.unwrap_or(&[0; 32]));
    digest.finalize().into()
}

/// Where a checkpoint ends, without its heads: all that the next checkpoint continues from.
#[derive(Debug, Clone, Copy)]
struct Sealed {
    checkpoint_no: u64,
    transaction_id: u64,
    position: i64,
    event_count: u64,
    cumulative_hash: Hash,
    seal: Hash,
}

/// The `log_checkpoints` columns of [`Sealed`].
const SEALED_COLUMNS: &str = "checkpoint_no, transaction_id::text AS transaction_id, position, \
                              event_count, cumulative_hash, seal";

impl Sealed {
    fn from_row(row: &PgRow) -> Result<Self, ReplayError> {
        let no: i64 = row.try_get("checkpoint_no")?;
        let count: i64 = row.try_get("event_count")?;
        let txid: String = row.try_get("transaction_id")?;
        let bad = |what: &str| ReplayError::Value(format!("checkpoint {no}: bad {what}"));
        Ok(Self {
            checkpoint_no: u64::try_from(no).map_err(|_| bad("number"))?,
            transaction_id: txid.parse().map_err(|_| bad("transaction id"))?,
            position: row.try_get("position")?,
            event_count: u64::try_from(count).map_err(|_| bad("count"))?,
            cumulative_hash: hash_from_bytes(row.try_get("cumulative_hash")?)
                .ok_or_else(|| bad("cumulative hash"))?,
            seal: hash_from_bytes(row.try_get("seal")?).ok_or_else(|| bad("seal"))?,
        })
    }
}

/// Every checkpoint, oldest first.
pub async fn load_checkpoints(pool: &PgPool) -> Result<Vec<Checkpoint>, ReplayError> {
    let sql = format!(
        "SELECT {SEALED_COLUMNS}, heads, prev_seal, created_at \
         FROM log_checkpoints ORDER BY checkpoint_no"
    );
    let mut rows = sqlx::query(&sql).fetch(pool);
    let mut checkpoints = Vec::new();
    while let Some(row) = rows.try_next().await? {
        checkpoints.push(Checkpoint::from_row(&row)?);
    }
    Ok(checkpoints)
}

/// The newest checkpoint's end; `None` before the first. Its heads are not read: a seal must
/// cost the same however many checkpoints, and streams in them, came before (the sealer runs
/// every few seconds for the engine's whole life).
async fn last_sealed(pool: &PgPool) -> Result<Option<Sealed>, ReplayError> {
    sqlx::query(&format!(
        "SELECT {SEALED_COLUMNS} FROM log_checkpoints ORDER BY checkpoint_no DESC LIMIT 1"
    ))
    .fetch_optional(pool)
    .await?
    .map(|row| Sealed::from_row(&row))
    .transpose()
}

/// Seals the events that became final since the last checkpoint; `None` when there were none
/// (or a concurrent sealer won). Fails with [`ReplayError::Damaged`] when one of them does
/// not carry its authentic chain hash. Run it periodically (the engine) and before exports.
pub async fn seal_checkpoint(
    pool: &PgPool,
    key: &AuditKey,
) -> Result<Option<Checkpoint>, ReplayError> {
    let last = last_sealed(pool).await?;
    let (mut txid, mut position) = last
        .as_ref()
        .map_or((0, 0), |last| (last.transaction_id, last.position));
    let mut cumulative = last.as_ref().map_or([0; 32], |last| last.cumulative_hash);
    let mut count = last.as_ref().map_or(0, |last| last.event_count);
    let mut heads = Heads::new();
    let mut damaged = 0_usize;
    let mut sealed_any = false;
    // `events.` in the ORDER BY: the select list's `transaction_id` is text, and sorted as
    // text ("1000" before "999") the walk would skip events at a power of ten.
    let sql = format!(
        "SELECT {CHAINED_COLUMNS} FROM events \
         WHERE (transaction_id, position) > ($1::text::xid8, $2) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY events.transaction_id, events.position LIMIT $3"
    );
    loop {
        let rows = sqlx::query(&sql)
            .bind(txid.to_string())
            .bind(position)
            .bind(BATCH)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = ChainedEvent::from_row(row)?;
            if !event.is_authentic(key) {
                damaged += 1;
            }
            cumulative = accumulate(&cumulative, event.chain_hash.as_ref());
            count += 1;
            if let Some(hash) = event.chain_hash {
                let stream = event.stream();
                heads.entry(stream.tenant().to_owned()).or_default().insert(
                    head_key(&event.aggregate_type, &event.aggregate_id),
                    Head {
                        sequence: event.sequence,
                        hash,
                    },
                );
            }
            (txid, position) = (event.transaction_id, event.position);
            sealed_any = true;
        }
    }
    if damaged > 0 {
        return Err(ReplayError::Damaged(damaged));
    }
    if !sealed_any {
        return Ok(None);
    }
    let mut checkpoint = Checkpoint {
        checkpoint_no: last.as_ref().map_or(1, |last| last.checkpoint_no + 1),
        transaction_id: txid,
        position,
        event_count: count,
        cumulative_hash: cumulative,
        tenant_digests: heads
            .iter()
            .map(|(tenant, heads)| (tenant.clone(), tenant_digest(heads)))
            .collect(),
        heads,
        prev_seal: last.map(|last| last.seal),
        seal: [0; 32],
        created_at: Utc::now(),
    };
    checkpoint.seal = checkpoint.expected_seal(key);
    // The heads list every stream changed since the last seal: megabytes after a burst of new
    // aggregates. They are encoded straight into the statement, and the connection gives the
    // capacity back afterwards (it keeps that of the largest message it sent, for good).
    let mut connection = pool.acquire().await?;
    let inserted = sqlx::query(
        "INSERT INTO log_checkpoints (checkpoint_no, transaction_id, position, event_count, \
             cumulative_hash, heads, prev_seal, seal) \
         VALUES ($1, $2::text::xid8, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (checkpoint_no) DO NOTHING RETURNING created_at",
    )
    .bind(
        i64::try_from(checkpoint.checkpoint_no)
            .map_err(|_| ReplayError::Value("checkpoint number".into()))?,
    )
    .bind(checkpoint.transaction_id.to_string())
    .bind(checkpoint.position)
    .bind(
        i64::try_from(checkpoint.event_count)
            .map_err(|_| ReplayError::Value("event count".into()))?,
    )
    .bind(checkpoint.cumulative_hash.to_vec())
    .bind(Json(&checkpoint.heads))
    .bind(checkpoint.prev_seal.map(Vec::from))
    .bind(checkpoint.seal.to_vec())
    .fetch_optional(&mut *connection)
    .await;
    connection.shrink_buffers();
    let Some(row) = inserted? else {
        return Ok(None);
    };
    checkpoint.created_at = row.try_get("created_at")?;
    tracing::info!(
        checkpoint = checkpoint.checkpoint_no,
        events = checkpoint.event_count,
        seal = %commerce_eventstore::to_hex(&checkpoint.seal),
        "sealed the event log"
    );
    Ok(Some(checkpoint))
}

/// Serde of a map of hashes as hex strings.
mod hex_map {
    use std::collections::BTreeMap;

    use commerce_eventstore::{Hash, hash_from_hex, to_hex};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Hash>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter()
            .map(|(name, hash)| (name, to_hex(hash)))
            .collect::<BTreeMap<_, _>>()
            .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Hash>, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer)?
            .into_iter()
            .map(|(name, text)| {
                hash_from_hex(&text)
                    .map(|hash| (name, hash))
                    .ok_or_else(|| serde::de::Error::custom("not a 32-byte hex hash"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use commerce_eventstore::canonical_json;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The digest written straight from the map is the one of its definition, the
        /// canonical JSON of the heads as a document, for any stream names (quotes,
        /// backslashes, control characters, non-ASCII): seals already stored must still verify.
        #[test]
        fn tenant_digest_is_the_digest_of_the_canonical_document(
            heads in prop::collection::btree_map(
                any::<String>(),
                (any::<u64>(), any::<[u8; 32]>())
                    .prop_map(|(sequence, hash)| Head { sequence, hash }),
                0..8,
            )
        ) {
            let document = serde_json::to_value(&heads).expect("heads serialise");
            let defined: Hash = Sha256::digest(canonical_json(&document).as_bytes()).into();
            prop_assert_eq!(tenant_digest(&heads), defined);
        }
    }
}
