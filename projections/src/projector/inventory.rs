//! Inventory events → `inventory_levels`, one row per stream (tenant / sku / location). The SKU
//! and location come from the stream's first event (every creating event carries them); later
//! events that do not carry them address the row by the stream key.

use commerce_contracts::events::InventoryEvent;
use sqlx::PgConnection;

use super::inconsistent;
use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::facets::StockLevel;

/// The SKU and location an event names, when it names them.
fn place(event: &InventoryEvent) -> Option<(&str, &str)> {
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

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &InventoryEvent,
) -> Result<(), ProjectionError> {
    let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT on_hand, reserved, safety_threshold, backorder_limit FROM inventory_levels
         WHERE tenant_id = $1 AND aggregate_id = $2",
    )
    .bind(&record.tenant_id)
    .bind(&record.aggregate_id)
    .fetch_optional(&mut *conn)
    .await?;
    let exists = row.is_some();
    let mut level = row.map_or_else(
        StockLevel::default,
        |(on_hand, reserved, safety_threshold, backorder_limit)| StockLevel {
            on_hand,
            reserved,
            safety_threshold,
            backorder_limit,
        },
    );
    level.apply(event)?;
    if exists {
        sqlx::query(
            "UPDATE inventory_levels SET on_hand = $3, reserved = $4, safety_threshold = $5,
                 backorder_limit = $6, updated_at = $7
             WHERE tenant_id = $1 AND aggregate_id = $2",
        )
        .bind(&record.tenant_id)
        .bind(&record.aggregate_id)
        .bind(level.on_hand)
        .bind(level.reserved)
        .bind(level.safety_threshold)
        .bind(level.backorder_limit)
        .bind(record.occurred_at)
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    let (sku, location) = place(event)
        .ok_or_else(|| inconsistent(record, "the first event of a stock level names no SKU"))?;
    sqlx::query(
        "INSERT INTO inventory_levels (tenant_id, aggregate_id, sku, location, on_hand, reserved,
             safety_threshold, backorder_limit, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&record.tenant_id)
    .bind(&record.aggregate_id)
    .bind(sku)
    .bind(location)
    .bind(level.on_hand)
    .bind(level.reserved)
    .bind(level.safety_threshold)
    .bind(level.backorder_limit)
    .bind(record.occurred_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
