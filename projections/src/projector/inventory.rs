//! Inventory events → `inventory_levels`, one row per stream (tenant / sku / location). The SKU
//! and location come from the stream's first event (every creating event carries them); later
//! events that do not carry them address the row by the stream key.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use commerce_contracts::events::InventoryEvent;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;

use super::batch::{Events, continues_stream};
use super::inconsistent;
use super::rows::{Table, micros};
use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::facets::StockLevel;

/// The SKU and location an event names, when it names them.
fn place_of(event: &InventoryEvent) -> Option<(&str, &str)> {
    match event {
        InventoryEvent::Received(e) => Some((&e.sku, &e.location)),
        InventoryEvent::Adjusted(e) => Some((&e.sku, &e.location)),
        InventoryEvent::PolicyChanged(e) => Some((&e.sku, &e.location)),
        InventoryEvent::Reserved(e) => Some((&e.sku, &e.location)),
        InventoryEvent::Insufficient(e) => Some((&e.sku, &e.location)),
        InventoryEvent::Restocked(e) => Some((&e.sku, &e.location)),
        InventoryEvent::ReservationExtended(_)
        | InventoryEvent::Released(_)
        | InventoryEvent::ReservationExpired(_)
        | InventoryEvent::Committed(_) => None,
    }
}

/// The `inventory_levels` row (the generated `available` aside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct InventoryRow {
    tenant_id: String,
    aggregate_id: String,
    sku: String,
    location: String,
    on_hand: i64,
    reserved: i64,
    safety_threshold: i64,
    backorder_limit: i64,
    #[serde(serialize_with = "micros")]
    updated_at: DateTime<Utc>,
}

const TABLE: Table = Table {
    name: "inventory_levels",
    key: &["tenant_id", "aggregate_id"],
    columns: &[
        "tenant_id",
        "aggregate_id",
        "sku",
        "location",
        "on_hand",
        "reserved",
        "safety_threshold",
        "backorder_limit",
        "updated_at",
    ],
};

/// The stream's row after `event` (`row`: before it, if any): the rule both paths apply.
fn fold(
    row: Option<InventoryRow>,
    record: &EventRecord,
    event: &InventoryEvent,
) -> Result<InventoryRow, ProjectionError> {
    let (mut level, place) = match row {
        Some(row) => (
            StockLevel {
                on_hand: row.on_hand,
                reserved: row.reserved,
                safety_threshold: row.safety_threshold,
                backorder_limit: row.backorder_limit,
            },
            Some((row.sku, row.location)),
        ),
        None => (StockLevel::default(), None),
    };
    level.apply(event)?;
    let (sku, location) = match place {
        Some(place) => place,
        None => place_of(event)
            .map(|(sku, location)| (sku.to_owned(), location.to_owned()))
            .ok_or_else(|| inconsistent(record, "the first event of a stock level names no SKU"))?,
    };
    Ok(InventoryRow {
        tenant_id: record.tenant_id.clone(),
        aggregate_id: record.aggregate_id.clone(),
        sku,
        location,
        on_hand: level.on_hand,
        reserved: level.reserved,
        safety_threshold: level.safety_threshold,
        backorder_limit: level.backorder_limit,
        updated_at: record.occurred_at,
    })
}

/// sku, location, on hand, reserved, safety threshold, backorder limit, updated at.
type LevelColumns = (String, String, i64, i64, i64, i64, DateTime<Utc>);

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &InventoryEvent,
) -> Result<(), ProjectionError> {
    let row: Option<LevelColumns> = sqlx::query_as(
        "SELECT sku, location, on_hand, reserved, safety_threshold, backorder_limit, updated_at
         FROM inventory_levels WHERE tenant_id = $1 AND aggregate_id = $2",
    )
    .bind(&record.tenant_id)
    .bind(&record.aggregate_id)
    .fetch_optional(&mut *conn)
    .await?;
    let exists = row.is_some();
    let row = row.map(
        |(sku, location, on_hand, reserved, safety_threshold, backorder_limit, updated_at)| {
            InventoryRow {
                tenant_id: record.tenant_id.clone(),
                aggregate_id: record.aggregate_id.clone(),
                sku,
                location,
                on_hand,
                reserved,
                safety_threshold,
                backorder_limit,
                updated_at,
            }
        },
    );
    let row = fold(row, record, event)?;
    if exists {
        sqlx::query(
            "UPDATE inventory_levels SET on_hand = $3, reserved = $4, safety_threshold = $5,
                 backorder_limit = $6, updated_at = $7
             WHERE tenant_id = $1 AND aggregate_id = $2",
        )
        .bind(&row.tenant_id)
        .bind(&row.aggregate_id)
        .bind(row.on_hand)
        .bind(row.reserved)
        .bind(row.safety_threshold)
        .bind(row.backorder_limit)
        .bind(row.updated_at)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO inventory_levels (tenant_id, aggregate_id, sku, location, on_hand, reserved,
             safety_threshold, backorder_limit, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&row.tenant_id)
    .bind(&row.aggregate_id)
    .bind(&row.sku)
    .bind(&row.location)
    .bind(row.on_hand)
    .bind(row.reserved)
    .bind(row.safety_threshold)
    .bind(row.backorder_limit)
    .bind(row.updated_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies a batch's inventory events set-based: reads the levels they touch, folds, writes.
pub(super) async fn apply_batch(
    conn: &mut PgConnection,
    events: &Events<'_, InventoryEvent>,
) -> Result<(), ProjectionError> {
    let mut rows: HashMap<(&str, &str), Option<InventoryRow>> = HashMap::new();
    let mut keys = HashSet::new();
    for (record, _) in events {
        let key = (record.tenant_id.as_str(), record.aggregate_id.as_str());
        rows.insert(key, None);
        if continues_stream(record) {
            keys.insert(key);
        }
    }
    let keys: Vec<serde_json::Value> = keys
        .into_iter()
        .map(|(tenant_id, aggregate_id)| json!({"tenant_id": tenant_id, "aggregate_id": aggregate_id}))
        .collect();
    let stored: Vec<InventoryRow> = TABLE.fetch(conn, TABLE.key, &keys).await?;
    let stored: HashMap<(String, String), InventoryRow> = stored
        .into_iter()
        .map(|row| ((row.tenant_id.clone(), row.aggregate_id.clone()), row))
        .collect();
    for ((tenant_id, aggregate_id), row) in &mut rows {
        *row = stored
            .get(&((*tenant_id).to_owned(), (*aggregate_id).to_owned()))
            .cloned();
    }
    for (record, event) in events {
        let row = rows
            .get_mut(&(record.tenant_id.as_str(), record.aggregate_id.as_str()))
            .ok_or_else(|| inconsistent(record, "the batch lost the row's key"))?;
        *row = Some(fold(row.take(), record, event)?);
    }
    let rows: Vec<InventoryRow> = rows.into_values().flatten().collect();
    TABLE.upsert(conn, &rows).await
}
