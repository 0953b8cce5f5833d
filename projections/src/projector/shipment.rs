//! Shipment events → `shipments` (status `label_created` → `shipped` → `delivered`, or `canceled`).
//!
//! [`Change`] says what each event does; [`apply`] carries it out in SQL, [`apply_batch`] on the
//! batch's rows in memory.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use commerce_contracts::events::{ShipmentEvent, ShippingLabelCreated};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::{Events, continues_stream};
use super::rows::{Table, micros, micros_opt};
use super::{expect_row, inconsistent, no_row, uuid_id};
use crate::error::ProjectionError;
use crate::event::EventRecord;

/// A `shipments` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ShipmentRow {
    tenant_id: String,
    shipment_id: Uuid,
    order_id: Uuid,
    fulfillment_id: Option<Uuid>,
    carrier: String,
    service: String,
    tracking_number: String,
    label_url: String,
    status: String,
    cancel_reason: Option<String>,
    #[serde(serialize_with = "micros")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros_opt")]
    shipped_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "micros_opt")]
    delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "micros")]
    updated_at: DateTime<Utc>,
}

const SHIPMENTS: Table = Table {
    name: "shipments",
    key: &["tenant_id", "shipment_id"],
    columns: &[
        "tenant_id",
        "shipment_id",
        "order_id",
        "fulfillment_id",
        "carrier",
        "service",
        "tracking_number",
        "label_url",
        "status",
        "cancel_reason",
        "created_at",
        "shipped_at",
        "delivered_at",
        "updated_at",
    ],
};

/// What one shipment event does: the rule both paths apply.
enum Change<'a> {
    Create(Box<ShipmentRow>),
    Update(Update<'a>),
}

/// Sets the status and `updated_at`, and the times and reason the event gives.
struct Update<'a> {
    status: &'static str,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    cancel_reason: Option<&'a str>,
}

fn change<'a>(record: &EventRecord, shipment_id: Uuid, event: &'a ShipmentEvent) -> Change<'a> {
    let update = |status| Update {
        status,
        shipped_at: None,
        delivered_at: None,
        cancel_reason: None,
    };
    match event {
        ShipmentEvent::LabelCreated(e) => Change::Create(Box::new(created(record, shipment_id, e))),
        ShipmentEvent::Shipped(e) => Change::Update(Update {
            shipped_at: Some(e.at),
            ..update("shipped")
        }),
        ShipmentEvent::Delivered(e) => Change::Update(Update {
            delivered_at: Some(e.at),
            ..update("delivered")
        }),
        ShipmentEvent::Canceled(e) => Change::Update(Update {
            cancel_reason: Some(e.reason.as_str()),
            ..update("canceled")
        }),
    }
}

fn created(record: &EventRecord, shipment_id: Uuid, e: &ShippingLabelCreated) -> ShipmentRow {
    ShipmentRow {
        tenant_id: record.tenant_id.clone(),
        shipment_id,
        order_id: e.order_id,
        fulfillment_id: e.fulfillment_id,
        carrier: e.carrier.clone(),
        service: e.service.clone(),
        tracking_number: e.tracking_number.clone(),
        label_url: e.label_url.clone(),
        status: "label_created".to_owned(),
        cancel_reason: None,
        created_at: e.created_at,
        shipped_at: None,
        delivered_at: None,
        updated_at: record.occurred_at,
    }
}

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &ShipmentEvent,
) -> Result<(), ProjectionError> {
    let shipment_id = uuid_id(record)?;
    match change(record, shipment_id, event) {
        Change::Create(row) => {
            let inserted = sqlx::query(
                "INSERT INTO shipments (tenant_id, shipment_id, order_id, fulfillment_id, carrier,
                     service, tracking_number, label_url, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&row.tenant_id)
            .bind(row.shipment_id)
            .bind(row.order_id)
            .bind(row.fulfillment_id)
            .bind(&row.carrier)
            .bind(&row.service)
            .bind(&row.tracking_number)
            .bind(&row.label_url)
            .bind(&row.status)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the shipment already exists"));
            }
            Ok(())
        }
        Change::Update(Update {
            status,
            shipped_at,
            delivered_at,
            cancel_reason,
        }) => {
            let result = sqlx::query(
                "UPDATE shipments SET status = $3, shipped_at = coalesce($4, shipped_at),
                     delivered_at = coalesce($5, delivered_at), cancel_reason = coalesce($6, cancel_reason),
                     updated_at = $7
                 WHERE tenant_id = $1 AND shipment_id = $2",
            )
            .bind(&record.tenant_id)
            .bind(shipment_id)
            .bind(status)
            .bind(shipped_at)
            .bind(delivered_at)
            .bind(cancel_reason)
            .bind(record.occurred_at)
            .execute(&mut *conn)
            .await?;
            expect_row(result, record)
        }
    }
}

/// Applies a batch's shipment events set-based: reads the shipments they touch, folds, writes.
pub(super) async fn apply_batch(
    conn: &mut PgConnection,
    events: &Events<'_, ShipmentEvent>,
) -> Result<(), ProjectionError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut keys = HashSet::new();
    for (record, _) in events {
        let shipment_id = uuid_id(record)?;
        ids.push(shipment_id);
        if continues_stream(record) {
            keys.insert((record.tenant_id.as_str(), shipment_id));
        }
    }
    let keys: Vec<serde_json::Value> = keys
        .into_iter()
        .map(|(tenant_id, shipment_id)| json!({"tenant_id": tenant_id, "shipment_id": shipment_id}))
        .collect();
    let stored: Vec<ShipmentRow> = SHIPMENTS.fetch(conn, SHIPMENTS.key, &keys).await?;
    let mut rows: HashMap<(String, Uuid), ShipmentRow> = stored
        .into_iter()
        .map(|row| ((row.tenant_id.clone(), row.shipment_id), row))
        .collect();
    let mut changed = HashSet::new();
    for ((record, event), shipment_id) in events.iter().zip(ids) {
        let key = (record.tenant_id.clone(), shipment_id);
        match change(record, shipment_id, event) {
            Change::Create(row) => {
                if rows.contains_key(&key) {
                    return Err(inconsistent(record, "the shipment already exists"));
                }
                rows.insert(key.clone(), *row);
            }
            Change::Update(Update {
                status,
                shipped_at,
                delivered_at,
                cancel_reason,
            }) => {
                let row = rows.get_mut(&key).ok_or_else(|| no_row(record))?;
                status.clone_into(&mut row.status);
                row.shipped_at = shipped_at.or(row.shipped_at);
                row.delivered_at = delivered_at.or(row.delivered_at);
                if let Some(reason) = cancel_reason {
                    row.cancel_reason = Some(reason.to_owned());
                }
                row.updated_at = record.occurred_at;
            }
        }
        changed.insert(key);
    }
    let changed: Vec<&ShipmentRow> = changed.iter().filter_map(|key| rows.get(key)).collect();
    SHIPMENTS.upsert(conn, &changed).await
}
