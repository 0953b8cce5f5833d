//! Shipment events → `shipments` (status `label_created` → `shipped` → `delivered`, or `canceled`).

use commerce_contracts::events::ShipmentEvent;
use sqlx::PgConnection;

use super::{expect_row, inconsistent, uuid_id};
use crate::error::ProjectionError;
use crate::event::EventRecord;

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &ShipmentEvent,
) -> Result<(), ProjectionError> {
    let shipment_id = uuid_id(record)?;
    let (tenant, at) = (&record.tenant_id, record.occurred_at);
    let (status, shipped_at, delivered_at, cancel_reason) = match event {
        ShipmentEvent::LabelCreated(e) => {
            let inserted = sqlx::query(
                "INSERT INTO shipments (tenant_id, shipment_id, order_id, fulfillment_id, carrier,
                     service, tracking_number, label_url, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'label_created', $9, $10)
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(shipment_id)
            .bind(e.order_id)
            .bind(e.fulfillment_id)
            .bind(&e.carrier)
            .bind(&e.service)
            .bind(&e.tracking_number)
            .bind(&e.label_url)
            .bind(e.created_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the shipment already exists"));
            }
            return Ok(());
        }
        ShipmentEvent::Shipped(e) => ("shipped", Some(e.at), None, None),
        ShipmentEvent::Delivered(e) => ("delivered", None, Some(e.at), None),
        ShipmentEvent::Canceled(e) => ("canceled", None, None, Some(e.reason.as_str())),
    };
    let result = sqlx::query(
        "UPDATE shipments SET status = $3, shipped_at = coalesce($4, shipped_at),
             delivered_at = coalesce($5, delivered_at), cancel_reason = coalesce($6, cancel_reason),
             updated_at = $7
         WHERE tenant_id = $1 AND shipment_id = $2",
    )
    .bind(tenant)
    .bind(shipment_id)
    .bind(status)
    .bind(shipped_at)
    .bind(delivered_at)
    .bind(cancel_reason)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    expect_row(result, record)
}
