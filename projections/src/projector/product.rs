//! Product events → `products`, keyed by SKU (the product stream's key).

use commerce_contracts::events::ProductEvent;
use sqlx::PgConnection;

use super::{expect_row, inconsistent};
use crate::error::ProjectionError;
use crate::event::EventRecord;

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &ProductEvent,
) -> Result<(), ProjectionError> {
    let (tenant, sku, at) = (&record.tenant_id, &record.aggregate_id, record.occurred_at);
    let result = match event {
        ProductEvent::Created(e) => {
            let inserted = sqlx::query(
                "INSERT INTO products (tenant_id, sku, product_id, name, description, price_minor,
                     currency, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(&e.sku)
            .bind(e.product_id)
            .bind(&e.name)
            .bind(&e.description)
            .bind(e.price.amount_minor)
            .bind(&e.price.currency)
            .bind(e.created_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the product already exists"));
            }
            return Ok(());
        }
        ProductEvent::DetailsChanged(e) => {
            sqlx::query(
                "UPDATE products SET name = $3, description = $4, updated_at = $5
                 WHERE tenant_id = $1 AND sku = $2",
            )
            .bind(tenant)
            .bind(sku)
            .bind(&e.name)
            .bind(&e.description)
            .bind(at)
            .execute(&mut *conn)
            .await?
        }
        ProductEvent::PriceChanged(e) => {
            sqlx::query(
                "UPDATE products SET price_minor = $3, currency = $4, updated_at = $5
                 WHERE tenant_id = $1 AND sku = $2",
            )
            .bind(tenant)
            .bind(sku)
            .bind(e.price.amount_minor)
            .bind(&e.price.currency)
            .bind(at)
            .execute(&mut *conn)
            .await?
        }
        ProductEvent::Discontinued(_) => {
            sqlx::query(
                "UPDATE products SET discontinued = true, updated_at = $3 WHERE tenant_id = $1 AND sku = $2",
            )
            .bind(tenant)
            .bind(sku)
            .bind(at)
            .execute(&mut *conn)
            .await?
        }
    };
    expect_row(result, record)
}
