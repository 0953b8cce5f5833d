//! Product events → `products`, keyed by SKU (the product stream's key).
//!
//! [`Change`] says what each event does; [`apply`] carries it out in SQL, [`apply_batch`] on the
//! batch's rows in memory.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use commerce_contracts::events::ProductEvent;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::Events;
use super::rows::{Table, micros};
use super::{expect_row, inconsistent, no_row};
use crate::error::ProjectionError;
use crate::event::EventRecord;

/// A `products` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProductRow {
    tenant_id: String,
    sku: String,
    product_id: Uuid,
    name: String,
    description: Option<String>,
    price_minor: i64,
    currency: String,
    discontinued: bool,
    #[serde(serialize_with = "micros")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    updated_at: DateTime<Utc>,
}

const PRODUCTS: Table = Table {
    name: "products",
    key: &["tenant_id", "sku"],
    columns: &[
        "tenant_id",
        "sku",
        "product_id",
        "name",
        "description",
        "price_minor",
        "currency",
        "discontinued",
        "created_at",
        "updated_at",
    ],
};

/// What one product event does: the rule both paths apply. All but the creation address the
/// row by the stream's SKU and set its `updated_at`.
enum Change<'a> {
    Create(ProductRow),
    Update(Update<'a>),
}

enum Update<'a> {
    Details(&'a str, Option<&'a str>),
    Price(i64, &'a str),
    Discontinue,
}

fn change<'a>(record: &EventRecord, event: &'a ProductEvent) -> Change<'a> {
    match event {
        ProductEvent::Created(e) => Change::Create(ProductRow {
            tenant_id: record.tenant_id.clone(),
            sku: e.sku.clone(),
            product_id: e.product_id,
            name: e.name.clone(),
            description: e.description.clone(),
            price_minor: e.price.amount_minor,
            currency: e.price.currency.clone(),
            discontinued: false,
            created_at: e.created_at,
            updated_at: record.occurred_at,
        }),
        ProductEvent::DetailsChanged(e) => {
            Change::Update(Update::Details(&e.name, e.description.as_deref()))
        }
        ProductEvent::PriceChanged(e) => {
            Change::Update(Update::Price(e.price.amount_minor, &e.price.currency))
        }
        ProductEvent::Discontinued(_) => Change::Update(Update::Discontinue),
    }
}

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &ProductEvent,
) -> Result<(), ProjectionError> {
    let (tenant, sku, at) = (&record.tenant_id, &record.aggregate_id, record.occurred_at);
    let result = match change(record, event) {
        Change::Create(row) => {
            let inserted = sqlx::query(
                "INSERT INTO products (tenant_id, sku, product_id, name, description, price_minor,
                     currency, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&row.tenant_id)
            .bind(&row.sku)
            .bind(row.product_id)
            .bind(&row.name)
            .bind(&row.description)
            .bind(row.price_minor)
            .bind(&row.currency)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the product already exists"));
            }
            return Ok(());
        }
        Change::Update(Update::Details(name, description)) => {
            sqlx::query(
                "UPDATE products SET name = $3, description = $4, updated_at = $5
                 WHERE tenant_id = $1 AND sku = $2",
            )
            .bind(tenant)
            .bind(sku)
            .bind(name)
            .bind(description)
            .bind(at)
            .execute(&mut *conn)
            .await?
        }
        Change::Update(Update::Price(price_minor, currency)) => {
            sqlx::query(
                "UPDATE products SET price_minor = $3, currency = $4, updated_at = $5
                 WHERE tenant_id = $1 AND sku = $2",
            )
            .bind(tenant)
            .bind(sku)
            .bind(price_minor)
            .bind(currency)
            .bind(at)
            .execute(&mut *conn)
            .await?
        }
        Change::Update(Update::Discontinue) => {
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

/// Applies a batch's product events set-based: reads the products they touch, folds, writes.
pub(super) async fn apply_batch(
    conn: &mut PgConnection,
    events: &Events<'_, ProductEvent>,
) -> Result<(), ProjectionError> {
    // A creation names its SKU in the payload, the other events by the stream key.
    let mut keys = HashSet::new();
    for (record, event) in events {
        keys.insert((record.tenant_id.as_str(), record.aggregate_id.as_str()));
        if let ProductEvent::Created(e) = event {
            keys.insert((record.tenant_id.as_str(), e.sku.as_str()));
        }
    }
    let keys: Vec<serde_json::Value> = keys
        .into_iter()
        .map(|(tenant_id, sku)| json!({"tenant_id": tenant_id, "sku": sku}))
        .collect();
    let stored: Vec<ProductRow> = PRODUCTS.fetch(conn, PRODUCTS.key, &keys).await?;
    let mut rows: HashMap<(String, String), ProductRow> = stored
        .into_iter()
        .map(|row| ((row.tenant_id.clone(), row.sku.clone()), row))
        .collect();
    let mut changed = HashSet::new();
    for (record, event) in events {
        let key = (record.tenant_id.clone(), record.aggregate_id.clone());
        let update = match change(record, event) {
            Change::Create(row) => {
                let key = (row.tenant_id.clone(), row.sku.clone());
                if rows.contains_key(&key) {
                    return Err(inconsistent(record, "the product already exists"));
                }
                rows.insert(key.clone(), row);
                changed.insert(key);
                continue;
            }
            Change::Update(update) => update,
        };
        let row = rows.get_mut(&key).ok_or_else(|| no_row(record))?;
        match update {
            Update::Details(name, description) => {
                name.clone_into(&mut row.name);
                row.description = description.map(str::to_owned);
            }
            Update::Price(price_minor, currency) => {
                row.price_minor = price_minor;
                currency.clone_into(&mut row.currency);
            }
            Update::Discontinue => row.discontinued = true,
        }
        row.updated_at = record.occurred_at;
        changed.insert(key);
    }
    let changed: Vec<&ProductRow> = changed.iter().filter_map(|key| rows.get(key)).collect();
    PRODUCTS.upsert(conn, &changed).await
}
