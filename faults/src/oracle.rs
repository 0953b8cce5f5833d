//! The checks after quiescence. The event store is the oracle:
//! - every acknowledged command's events are in the store (its log position, its stream);
//! - every stored event reached Kafka (by `event_id`), first copies in stream order;
//! - every read model equals a fresh fold of the store (snapshot, rebuild from the log,
//!   compare row by row) and `verify_projections` finds nothing;
//! - no double charge, no oversell, no leaked reservation, no saga left half way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use commerce_aggregates::inventory::{Inventory, ReservationState};
use commerce_aggregates::order::Order;
use commerce_contracts::ReservationHolder;
use commerce_eventstore::{PgEventStore, StreamId};
use commerce_projections::Rebuild;
use commerce_replay::{Upto, history, rebuild_read_models, verify_projections};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::FaultError;
use crate::kafka::read_all;
use crate::workload::{Ack, TENANT};

/// What the checks found; every list must be empty and every count zero.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub events: u64,
    pub acks_checked: u64,
    /// Acknowledged commands whose events are not in the store.
    pub lost_acks: Vec<String>,
    pub kafka_records: u64,
    /// Stored events never published.
    pub unpublished: Vec<Uuid>,
    /// Copies beyond the first (at-least-once: allowed, counted).
    pub kafka_duplicates: u64,
    /// Streams whose first copies on Kafka are out of sequence order.
    pub kafka_misordered: Vec<String>,
    /// Read-model rows that differ from a rebuild from the store (`table: row`).
    pub read_model_differences: Vec<String>,
    pub double_charges: Vec<String>,
    pub oversold: Vec<String>,
    pub leaked_reservations: Vec<String>,
    /// Orders neither confirmed (or later) nor canceled after quiescence.
    pub stuck_orders: Vec<String>,
    pub orders_by_status: BTreeMap<String, i64>,
    pub open_dead_letters: i64,
    /// Reactions the workflows parked (`workflow_dead_letters`): evidence for stuck sagas.
    pub workflow_dead_letters: Vec<String>,
    /// Set when the engine did not settle after the load (what was left behind).
    pub unsettled: Option<String>,
    /// Read-model streams behind their head: applied, head, pending sequences (evidence).
    pub behind_streams: Vec<String>,
    /// Partitions whose projection offset is short of the partition's end on Kafka (evidence).
    pub projection_offsets: Vec<String>,
}

impl Findings {
    /// Whether nothing was lost or duplicated in effect.
    pub fn clean(&self) -> bool {
        self.unsettled.is_none()
            && self.lost_acks.is_empty()
            && self.unpublished.is_empty()
            && self.kafka_misordered.is_empty()
            && self.read_model_differences.is_empty()
            && self.double_charges.is_empty()
            && self.oversold.is_empty()
            && self.leaked_reservations.is_empty()
            && self.stuck_orders.is_empty()
    }
}

/// Runs every check. The engine's processes must be stopped (the read models are rebuilt).
pub async fn check(
    pool: &PgPool,
    brokers: &str,
    topics: &[String],
    acks: &[Ack],
) -> Result<Findings, FaultError> {
    let mut findings = Findings::default();
    check_acks(pool, acks, &mut findings).await?;
    let kafka_ends = check_kafka(pool, brokers, topics, &mut findings).await?;
    // Evidence for a case that did not settle, taken before the rebuild swaps the read models.
    findings.behind_streams = sqlx::query_scalar(
        "WITH heads AS (SELECT aggregate_type, aggregate_id, max(sequence) AS head \
                        FROM events GROUP BY aggregate_type, aggregate_id) \
         SELECT format('%s %s: applied %s of %s, pending %s', h.aggregate_type, h.aggregate_id, \
                       coalesce(s.last_sequence, 0), h.head, \
                       (SELECT array_agg(p.sequence ORDER BY p.sequence) FROM rm.pending_events p \
                         WHERE p.aggregate_type = h.aggregate_type \
                           AND p.tenant_id || '/' || p.aggregate_id = h.aggregate_id)) \
         FROM heads h LEFT JOIN rm.stream_state s \
           ON s.aggregate_type = h.aggregate_type \
          AND s.tenant_id || '/' || s.aggregate_id = h.aggregate_id \
         WHERE s.last_sequence IS DISTINCT FROM h.head ORDER BY 1 LIMIT 10",
    )
    .fetch_all(pool)
    .await?;
    let offsets: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT topic, partition, next_offset FROM rm_meta.projection_offsets \
         ORDER BY topic, partition",
    )
    .fetch_all(pool)
    .await?;
    let stored: BTreeMap<(String, i32), i64> = offsets
        .into_iter()
        .map(|(topic, partition, next)| ((topic, partition), next))
        .collect();
    findings.projection_offsets = kafka_ends
        .iter()
        .filter_map(
            |((topic, partition), end)| match stored.get(&(topic.clone(), *partition)) {
                Some(next) if next >= end => None,
                Some(next) => Some(format!("{topic}/{partition}: next {next} of end {end}")),
                None => Some(format!("{topic}/{partition}: never consumed, end {end}")),
            },
        )
        .collect();
    let store =
        PgEventStore::new(pool.clone()).with_upcasters(commerce_aggregates::product::upcasters());
    check_read_models(&store, &mut findings).await?;
    check_invariants(&store, &mut findings).await?;
    findings.open_dead_letters =
        sqlx::query_scalar("SELECT count(*) FROM rm_meta.dead_letters WHERE resolved_at IS NULL")
            .fetch_one(pool)
            .await?;
    findings.workflow_dead_letters = sqlx::query_scalar(
        "SELECT format('%s %s@%s: %s', event_type, aggregate_id, position, reason) \
         FROM workflow_dead_letters ORDER BY position LIMIT 50",
    )
    .fetch_all(pool)
    .await?;
    Ok(findings)
}

async fn check_acks(
    pool: &PgPool,
    acks: &[Ack],
    findings: &mut Findings,
) -> Result<(), FaultError> {
    let positions: Vec<i64> = acks.iter().filter_map(|ack| ack.position).collect();
    let found: BTreeSet<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE position = ANY($1)")
            .bind(&positions)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let streams: BTreeSet<(String, String)> =
        sqlx::query("SELECT DISTINCT aggregate_type, aggregate_id FROM events")
            .fetch_all(pool)
            .await?
            .iter()
            .filter_map(|row| {
                Some((
                    row.try_get("aggregate_type").ok()?,
                    row.try_get("aggregate_id").ok()?,
                ))
            })
            .collect();
    for ack in acks {
        findings.acks_checked += 1;
        if let Some(position) = ack.position
            && !found.contains(&position)
        {
            findings
                .lost_acks
                .push(format!("{} at position {position}", ack.kind));
        }
        if let Some((aggregate_type, key)) = &ack.stream
            && !streams.contains(&((*aggregate_type).to_owned(), format!("{TENANT}/{key}")))
        {
            findings
                .lost_acks
                .push(format!("{}: no stream {aggregate_type} {key}", ack.kind));
        }
    }
    Ok(())
}

async fn check_kafka(
    pool: &PgPool,
    brokers: &str,
    topics: &[String],
    findings: &mut Findings,
) -> Result<BTreeMap<(String, i32), i64>, FaultError> {
    let stored: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(pool)
        .await?;
    findings.events = stored.len() as u64;
    let brokers = brokers.to_owned();
    let topics = topics.to_vec();
    let records =
        tokio::task::spawn_blocking(move || read_all(&brokers, &topics, Duration::from_secs(60)))
            .await
            .map_err(|error| FaultError::Unexpected(error.to_string()))??;
    findings.kafka_records = records.len() as u64;
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for record in &records {
        let end = ends
            .entry((record.topic.clone(), record.partition))
            .or_default();
        *end = (*end).max(record.offset + 1);
    }
    let mut seen: HashMap<Uuid, u64> = HashMap::new();
    let mut last_sequence: HashMap<String, i64> = HashMap::new();
    let mut misordered: BTreeSet<String> = BTreeSet::new();
    // Every copy of a stream, in reading order (partition order: same key, same partition):
    // the evidence attached to a misordered stream.
    let mut copies_of: HashMap<String, Vec<String>> = HashMap::new();
    for record in &records {
        let Some(event_id) = record.event_id else {
            continue;
        };
        let copies = seen.entry(event_id).or_default();
        *copies += 1;
        let first = *copies == 1;
        if !first {
            findings.kafka_duplicates += 1;
        }
        let Some((aggregate, sequence)) = &record.stream else {
            continue;
        };
        copies_of
            .entry(aggregate.clone())
            .or_default()
            .push(format!(
                "{}{sequence}@{}/{}",
                if first { "" } else { "dup " },
                record.partition,
                record.offset
            ));
        if !first {
            continue;
        }
        let last = last_sequence.entry(aggregate.clone()).or_default();
        if *sequence <= *last {
            misordered.insert(aggregate.clone());
        }
        *last = (*last).max(*sequence);
    }
    for aggregate in misordered {
        let trail = copies_of
            .get(&aggregate)
            .map_or_else(String::new, |copies| {
                copies
                    .iter()
                    .take(40)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        findings
            .kafka_misordered
            .push(format!("{aggregate}: sequence@partition/offset [{trail}]"));
    }
    findings.unpublished = stored
        .into_iter()
        .filter(|id| !seen.contains_key(id))
        .collect();
    Ok(ends)
}

/// Columns a rebuild legitimately writes differently: bookkeeping clocks of the worker.
const VOLATILE: &[(&str, &str)] = &[
    ("stream_state", "updated_at"),
    ("pending_events", "received_at"),
];

async fn snapshot(pool: &PgPool) -> Result<BTreeMap<String, Vec<String>>, FaultError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'rm' AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut rows = BTreeMap::new();
    for table in tables {
        let drop_keys: Vec<&str> = VOLATILE
            .iter()
            .filter(|(name, _)| *name == table)
            .map(|(_, column)| *column)
            .collect();
        // The table names come from the catalog, quoted as identifiers.
        let sql = format!(
            "SELECT (to_jsonb(t) - $1::text[])::text FROM rm.\"{}\" t ORDER BY 1",
            table.replace('"', "\"\"")
        );
        let mut values: Vec<String> = sqlx::query_scalar(&sql)
            .bind(&drop_keys)
            .fetch_all(pool)
            .await?;
        values.sort();
        rows.insert(table, values);
    }
    Ok(rows)
}

async fn check_read_models(
    store: &PgEventStore,
    findings: &mut Findings,
) -> Result<(), FaultError> {
    for difference in verify_projections(store).await? {
        findings
            .read_model_differences
            .push(format!("verify_projections: {difference:?}"));
    }
    let live = snapshot(store.pool()).await?;
    if let Err(error) = rebuild_read_models(store, Rebuild::All, |_| {}).await {
        findings
            .read_model_differences
            .push(format!("rebuild from the store failed: {error}"));
        let behind: Vec<String> = sqlx::query_scalar(
            "SELECT format('%s %s/%s live %s rebuilt %s', l.aggregate_type, l.tenant_id, l.aggregate_id,                            l.last_sequence, s.last_sequence)              FROM rm.stream_state l              LEFT JOIN rm_shadow.stream_state s USING (tenant_id, aggregate_type, aggregate_id)              WHERE l.last_sequence > coalesce(s.last_sequence, 0) LIMIT 20",
        )
        .fetch_all(store.pool())
        .await
        .unwrap_or_default();
        findings.read_model_differences.extend(behind);
        return Ok(());
    }
    let rebuilt = snapshot(store.pool()).await?;
    let tables: BTreeSet<&String> = live.keys().chain(rebuilt.keys()).collect();
    for table in tables {
        let empty = Vec::new();
        let before: BTreeSet<&String> = live.get(table).unwrap_or(&empty).iter().collect();
        let after: BTreeSet<&String> = rebuilt.get(table).unwrap_or(&empty).iter().collect();
        for row in before.difference(&after) {
            findings
                .read_model_differences
                .push(format!("{table}: live only {row}"));
        }
        for row in after.difference(&before) {
            findings
                .read_model_differences
                .push(format!("{table}: rebuilt only {row}"));
        }
    }
    Ok(())
}

async fn check_invariants(store: &PgEventStore, findings: &mut Findings) -> Result<(), FaultError> {
    let pool = store.pool();
    // No double charge: at most one captured payment per order or participant, never more
    // captured than authorized for, never more refunded than captured.
    for row in sqlx::query(
        "SELECT coalesce(order_id::text, participant_id::text, payment_id::text) AS owner, \
                count(*) FILTER (WHERE captured_minor > 0) AS captures, \
                bool_or(captured_minor > amount_minor OR refunded_minor > captured_minor) AS over \
         FROM rm.payments GROUP BY 1 \
         HAVING count(*) FILTER (WHERE captured_minor > 0) > 1 \
             OR bool_or(captured_minor > amount_minor OR refunded_minor > captured_minor)",
    )
    .fetch_all(pool)
    .await?
    {
        let owner: String = row.try_get("owner")?;
        let captures: i64 = row.try_get("captures")?;
        findings
            .double_charges
            .push(format!("{owner}: {captures} captures"));
    }
    // Orders: fold each one; none may be left half way.
    let mut order_status: HashMap<Uuid, String> = HashMap::new();
    for (key,) in sqlx::query_as::<_, (String,)>(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'order'",
    )
    .fetch_all(pool)
    .await?
    {
        let Some((tenant, id)) = key.split_once('/') else {
            continue;
        };
        let stream =
            StreamId::new(tenant, id).map_err(|error| FaultError::Unexpected(error.to_string()))?;
        let folded = history::<Order>(store, &stream, Upto::End).await?;
        let status = folded
            .state
            .get("status")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("unknown")
            .to_owned();
        *findings.orders_by_status.entry(status.clone()).or_default() += 1;
        if matches!(status.as_str(), "placed" | "awaiting_payment" | "unknown") {
            let trail = event_trail(pool, id).await?;
            let workflow = workflow_trail(pool, id).await?;
            findings
                .stuck_orders
                .push(format!("{id}: {status} [{trail}] workflow [{workflow}]"));
        }
        if let Ok(uuid) = Uuid::parse_str(id) {
            order_status.insert(uuid, status);
        }
    }
    // Inventory: fold each stream; never below the back-order bound, and no active
    // reservation held for an order that ended.
    for (key,) in sqlx::query_as::<_, (String,)>(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'inventory'",
    )
    .fetch_all(pool)
    .await?
    {
        let Some((tenant, id)) = key.split_once('/') else {
            continue;
        };
        let stream =
            StreamId::new(tenant, id).map_err(|error| FaultError::Unexpected(error.to_string()))?;
        let folded = history::<Inventory>(store, &stream, Upto::End).await?;
        let inventory: Inventory = serde_json::from_value(folded.state)
            .map_err(|error| FaultError::Unexpected(format!("inventory state of {id}: {error}")))?;
        let floor = -i64::try_from(inventory.backorder_limit()).unwrap_or(i64::MAX);
        if inventory.available() < floor {
            findings.oversold.push(format!(
                "{id}: on hand {}, reserved {}, available {}",
                inventory.on_hand(),
                inventory.reserved(),
                inventory.available()
            ));
        }
        for reservation in inventory.reservations() {
            if reservation.state() != ReservationState::Active {
                continue;
            }
            if let ReservationHolder::Order(order) = reservation.holder()
                && order_status
                    .get(&order)
                    .is_none_or(|status| status == "canceled")
            {
                let trail = event_trail(pool, &order.to_string()).await?;
                findings.leaked_reservations.push(format!(
                    "{id}: {} units for order {order} ({}) [{trail}]",
                    reservation.quantity(),
                    order_status
                        .get(&order)
                        .map_or("no such order", String::as_str)
                ));
            }
        }
    }
    Ok(())
}

/// What the workflows recorded for order `id`: its deadlines (kind, fired or not) and its links
/// (reservations, payments). Empty when the reaction to `order.created` never started.
async fn workflow_trail(pool: &PgPool, id: &str) -> Result<String, FaultError> {
    let trail: Option<String> = sqlx::query_scalar(
        "SELECT concat_ws(' ', \
             (SELECT string_agg(format('deadline %s %s', kind, \
                     CASE WHEN fired_at IS NULL THEN 'pending' ELSE 'fired' END), ' ') \
              FROM deadlines WHERE aggregate_key = $1), \
             (SELECT string_agg(format('link %s', link_kind), ' ') \
              FROM workflow_links WHERE owner_id::text = $1))",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(trail.unwrap_or_default())
}

/// Every event that names `id` (its own stream and the others), in log order: the evidence
/// attached to a finding.
async fn event_trail(pool: &PgPool, id: &str) -> Result<String, FaultError> {
    let trail: Option<String> = sqlx::query_scalar(
        "SELECT string_agg(format('%s#%s@%s', event_type, sequence, position), ' ' ORDER BY position) \
         FROM events WHERE aggregate_id LIKE '%' || $1 || '%' OR payload::text LIKE '%' || $1 || '%'",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(trail.unwrap_or_default())
}
