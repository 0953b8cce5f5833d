//! Tenant-scoped reads of the live read models (schema `rm`), shaped like the contract's GET
//! responses, and the read-your-writes wait.
//!
//! Every function takes the caller's tenant (from the token) and filters on it: another tenant's
//! object is simply not found. Lists use keyset pagination with an opaque cursor.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use commerce_contracts::Money;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::facets::{PaymentRow, order_payment_status};
use crate::projector::StreamKey;
use crate::wakeup;

/// Default and maximum page sizes of list endpoints.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// Why a query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The cursor was not issued by this service (→ 400).
    #[error("invalid cursor")]
    InvalidCursor,
    /// The read model did not reach the requested stream position in time (→ 503 + Retry-After).
    #[error("the read model has not caught up yet")]
    NotCaughtUp,
}

fn money(amount_minor: i64, currency: &str) -> Money {
    Money {
        amount_minor,
        currency: currency.to_owned(),
    }
}

/// `GET /products/{id}`, `GET /products?sku=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductView {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub discontinued: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type ProductRow = (
    Uuid,
    String,
    String,
    Option<String>,
    i64,
    String,
    bool,
    DateTime<Utc>,
    DateTime<Utc>,
);

const PRODUCT_COLUMNS: &str = "product_id, sku, name, description, price_minor, currency, discontinued, created_at, updated_at";

fn product(row: ProductRow) -> ProductView {
    let (id, sku, name, description, price, currency, discontinued, created_at, updated_at) = row;
    ProductView {
        id,
        sku,
        name,
        description,
        price: money(price, &currency),
        discontinued,
        created_at,
        updated_at,
    }
}

/// The product with this id, in this tenant.
pub async fn product_by_id(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<ProductView>, QueryError> {
    let row: Option<ProductRow> = sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM rm.products WHERE tenant_id = $1 AND product_id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(product))
}

/// The product with this SKU, in this tenant.
pub async fn product_by_sku(
    pool: &PgPool,
    tenant: &str,
    sku: &str,
) -> Result<Option<ProductView>, QueryError> {
    let row: Option<ProductRow> = sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM rm.products WHERE tenant_id = $1 AND sku = $2"
    ))
    .bind(tenant)
    .bind(sku)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(product))
}

/// One location of `GET /inventory/{sku}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationLevel {
    pub location: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

/// `GET /inventory/{sku}`: totals over the locations, and each location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryView {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    pub locations: Vec<LocationLevel>,
}

/// The stock of a SKU in this tenant, or `None` when no location holds any record of it.
pub async fn inventory_by_sku(
    pool: &PgPool,
    tenant: &str,
    sku: &str,
) -> Result<Option<InventoryView>, QueryError> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT location, on_hand, reserved, available FROM rm.inventory_levels
         WHERE tenant_id = $1 AND sku = $2 ORDER BY location",
    )
    .bind(tenant)
    .bind(sku)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let locations: Vec<LocationLevel> = rows
        .into_iter()
        .map(|(location, on_hand, reserved, available)| LocationLevel {
            location,
            on_hand,
            reserved,
            available,
        })
        .collect();
    let sum = |pick: fn(&LocationLevel) -> i64| {
        locations.iter().map(pick).fold(0_i64, i64::saturating_add)
    };
    Ok(Some(InventoryView {
        sku: sku.to_owned(),
        on_hand: sum(|l| l.on_hand),
        reserved: sum(|l| l.reserved),
        available: sum(|l| l.available),
        locations,
    }))
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLineView {
    pub line_no: i64,
    pub sku: String,
    pub product_id: Option<Uuid>,
    pub quantity: i64,
    pub unit_price: Money,
    pub fulfilled: i64,
    pub shipped: i64,
    pub delivered: i64,
    pub returned: i64,
}

/// `GET /orders/{id}` (and the items of `GET /orders`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: Uuid,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub lines: Vec<OrderLineView>,
    pub total: Money,
    pub payment_status: String,
    pub fulfillment_status: String,
    pub customer_id: String,
    pub campaign_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A page of a list endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Filters of `GET /orders`. `customer_id` is forced to the caller for customers (by the API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<String>,
    pub customer_id: Option<String>,
    /// Orders created at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Orders created before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Page size; `None` means [`DEFAULT_LIMIT`]; clamped to `1..=MAX_LIMIT`.
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

type OrderRow = (
    Uuid,
    String,
    Option<String>,
    String,
    i64,
    String,
    String,
    Option<Uuid>,
    DateTime<Utc>,
    DateTime<Utc>,
);

const ORDER_COLUMNS: &str =
    "order_id, status, cancel_reason, currency, total_minor, fulfillment_status,
    customer_id, campaign_id, created_at, updated_at";

/// The order with this id, in this tenant.
pub async fn order_by_id(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<OrderView>, QueryError> {
    let row: Option<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm.orders WHERE tenant_id = $1 AND order_id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(complete_orders(pool, tenant, vec![row]).await?.pop())
}

/// Newest orders first, filtered, one page at a time.
pub async fn list_orders(
    pool: &PgPool,
    tenant: &str,
    filter: &OrderFilter,
) -> Result<Page<OrderView>, QueryError> {
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let after = filter.cursor.as_deref().map(Cursor::decode).transpose()?;
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm.orders
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR status = $2)
           AND ($3::text IS NULL OR customer_id = $3)
           AND ($4::timestamptz IS NULL OR created_at >= $4)
           AND ($5::timestamptz IS NULL OR created_at < $5)
           AND ($6::timestamptz IS NULL OR (created_at, order_id) < ($6, $7))
         ORDER BY created_at DESC, order_id DESC
         LIMIT $8"
    ))
    .bind(tenant)
    .bind(&filter.status)
    .bind(&filter.customer_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after.as_ref().map(|c| c.created_at))
    .bind(after.as_ref().map(|c| c.id))
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let mut items = complete_orders(pool, tenant, rows).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| {
            Cursor {
                created_at: last.created_at,
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// order id, line no, sku, product id, quantity, unit price, currency, and the four counters.
type LineColumns = (
    Uuid,
    i64,
    String,
    Option<Uuid>,
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
    i64,
);

/// Adds lines and the payment facet to order rows (two queries for the whole page).
async fn complete_orders(
    pool: &PgPool,
    tenant: &str,
    rows: Vec<OrderRow>,
) -> Result<Vec<OrderView>, QueryError> {
    let ids: Vec<Uuid> = rows.iter().map(|row| row.0).collect();
    let lines: Vec<LineColumns> = sqlx::query_as(
        "SELECT order_id, line_no, sku, product_id, quantity, unit_price_minor, currency,
                fulfilled, shipped, delivered, returned
         FROM rm.order_lines WHERE tenant_id = $1 AND order_id = ANY($2) ORDER BY order_id, line_no",
    )
    .bind(tenant)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut lines_of: HashMap<Uuid, Vec<OrderLineView>> = HashMap::new();
    for (
        order_id,
        line_no,
        sku,
        product_id,
        quantity,
        price,
        currency,
        fulfilled,
        shipped,
        delivered,
        returned,
    ) in lines
    {
        lines_of.entry(order_id).or_default().push(OrderLineView {
            line_no,
            sku,
            product_id,
            quantity,
            unit_price: money(price, &currency),
            fulfilled,
            shipped,
            delivered,
            returned,
        });
    }
    let payments: Vec<(Uuid, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT order_id, status, amount_minor, authorized_minor, captured_minor, refunded_minor
         FROM rm.payments WHERE tenant_id = $1 AND order_id = ANY($2)",
    )
    .bind(tenant)
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut payments_of: HashMap<Uuid, Vec<PaymentRow>> = HashMap::new();
    for (order_id, status, amount, authorized, captured, refunded) in payments {
        payments_of.entry(order_id).or_default().push(PaymentRow {
            status,
            amount,
            authorized,
            captured,
            refunded,
            ..PaymentRow::default()
        });
    }
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                status,
                cancel_reason,
                currency,
                total,
                fulfillment_status,
                customer_id,
                campaign_id,
                created_at,
                updated_at,
            )| {
                let payments = payments_of.remove(&id).unwrap_or_default();
                OrderView {
                    id,
                    status,
                    cancel_reason,
                    lines: lines_of.remove(&id).unwrap_or_default(),
                    payment_status: order_payment_status(total, &payments).to_owned(),
                    total: money(total, &currency),
                    fulfillment_status,
                    customer_id,
                    campaign_id,
                    created_at,
                    updated_at,
                }
            },
        )
        .collect())
}

/// Keyset position of the last item of a page; opaque to clients (hex of `micros:uuid`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    created_at: DateTime<Utc>,
    id: Uuid,
}

impl Cursor {
    fn encode(&self) -> String {
        let plain = format!(
            "{}:{}",
            self.created_at.timestamp_micros(),
            self.id.simple()
        );
        plain.bytes().map(|byte| format!("{byte:02x}")).collect()
    }

    fn decode(text: &str) -> Result<Self, QueryError> {
        if !text.len().is_multiple_of(2) || text.len() > 128 {
            return Err(QueryError::InvalidCursor);
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|at| {
                text.get(at..at + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or(QueryError::InvalidCursor)?;
        let plain = String::from_utf8(bytes).map_err(|_| QueryError::InvalidCursor)?;
        let (micros, id) = plain.split_once(':').ok_or(QueryError::InvalidCursor)?;
        let micros: i64 = micros.parse().map_err(|_| QueryError::InvalidCursor)?;
        let created_at = DateTime::from_timestamp_micros(micros)
            // Only the years of a real order: PostgreSQL refuses instants chrono accepts.
            .filter(|at| (1..=9999).contains(&at.year()))
            .ok_or(QueryError::InvalidCursor)?;
        Ok(Self {
            created_at,
            id: Uuid::parse_str(id).map_err(|_| QueryError::InvalidCursor)?,
        })
    }
}

/// `GET /campaigns/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignView {
    pub id: Uuid,
    pub status: String,
    pub sku: String,
    /// Participants currently in the campaign (not dropped, not left).
    pub participants: i64,
    /// Of those, the ones whose payment went through.
    pub paid_participants: i64,
    pub min_participants: i32,
    pub max_participants: i32,
    pub per_customer_limit: i32,
    pub group_price: Money,
    pub original_price: Money,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
}

type CampaignRow = (
    Uuid,
    String,
    String,
    i64,
    i64,
    i32,
    i32,
    i32,
    String,
    i64,
    i64,
    DateTime<Utc>,
    DateTime<Utc>,
);

/// The campaign with this id, in this tenant.
pub async fn campaign_by_id(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<CampaignView>, QueryError> {
    let row: Option<CampaignRow> = sqlx::query_as(
        "SELECT c.campaign_id, c.status, c.sku,
                count(p.participant_id) FILTER (WHERE p.status NOT IN ('dropped', 'left')),
                count(p.participant_id) FILTER (WHERE p.status NOT IN ('dropped', 'left') AND p.paid_at IS NOT NULL),
                c.min_participants, c.max_participants, c.per_customer_limit, c.currency,
                c.group_price_minor, c.original_price_minor, c.start_time, c.end_time
         FROM rm.campaigns c
         LEFT JOIN rm.campaign_participants p ON p.tenant_id = c.tenant_id AND p.campaign_id = c.campaign_id
         WHERE c.tenant_id = $1 AND c.campaign_id = $2
         GROUP BY c.tenant_id, c.campaign_id",
    )
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(
            id,
            status,
            sku,
            participants,
            paid_participants,
            min,
            max,
            per_customer_limit,
            currency,
            group,
            original,
            start_time,
            end_time,
        )| {
            CampaignView {
                id,
                status,
                sku,
                participants,
                paid_participants,
                min_participants: min,
                max_participants: max,
                per_customer_limit,
                group_price: money(group, &currency),
                original_price: money(original, &currency),
                start_time,
                end_time,
            }
        },
    ))
}

/// `GET /payments/{id}`, `GET /orders/{id}/payments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentView {
    pub id: Uuid,
    pub order_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub participant_id: Option<Uuid>,
    pub customer_id: String,
    pub status: String,
    pub method: String,
    pub provider: String,
    pub amount: Money,
    pub authorized: Money,
    pub captured: Money,
    pub refunded: Money,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const PAYMENT_COLUMNS: &str = "payment_id, order_id, campaign_id, participant_id, customer_id, status, method,
    provider, currency, amount_minor, authorized_minor, captured_minor, refunded_minor, failure_reason,
    created_at, updated_at";

#[derive(sqlx::FromRow)]
struct PaymentRecord {
    payment_id: Uuid,
    order_id: Option<Uuid>,
    campaign_id: Option<Uuid>,
    participant_id: Option<Uuid>,
    customer_id: String,
    status: String,
    method: String,
    provider: String,
    currency: String,
    amount_minor: i64,
    authorized_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PaymentRecord> for PaymentView {
    fn from(p: PaymentRecord) -> Self {
        Self {
            id: p.payment_id,
            order_id: p.order_id,
            campaign_id: p.campaign_id,
            participant_id: p.participant_id,
            customer_id: p.customer_id,
            status: p.status,
            method: p.method,
            provider: p.provider,
            amount: money(p.amount_minor, &p.currency),
            authorized: money(p.authorized_minor, &p.currency),
            captured: money(p.captured_minor, &p.currency),
            refunded: money(p.refunded_minor, &p.currency),
            failure_reason: p.failure_reason,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// The payment with this id, in this tenant.
pub async fn payment_by_id(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<PaymentView>, QueryError> {
    let row: Option<PaymentRecord> = sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM rm.payments WHERE tenant_id = $1 AND payment_id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(PaymentView::from))
}

/// The payments made for an order, oldest first.
pub async fn payments_by_order(
    pool: &PgPool,
    tenant: &str,
    order_id: Uuid,
) -> Result<Vec<PaymentView>, QueryError> {
    let rows: Vec<PaymentRecord> = sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM rm.payments WHERE tenant_id = $1 AND order_id = $2
         ORDER BY created_at, payment_id"
    ))
    .bind(tenant)
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(PaymentView::from).collect())
}

/// `GET /shipments/{id}`, `GET /orders/{id}/shipments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ShipmentView {
    #[sqlx(rename = "shipment_id")]
    pub id: Uuid,
    pub order_id: Uuid,
    pub fulfillment_id: Option<Uuid>,
    pub carrier: String,
    pub service: String,
    pub tracking_number: String,
    pub label_url: String,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

const SHIPMENT_COLUMNS: &str =
    "shipment_id, order_id, fulfillment_id, carrier, service, tracking_number,
    label_url, status, cancel_reason, created_at, shipped_at, delivered_at, updated_at";

/// The shipment with this id, in this tenant.
pub async fn shipment_by_id(
    pool: &PgPool,
    tenant: &str,
    id: Uuid,
) -> Result<Option<ShipmentView>, QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SHIPMENT_COLUMNS} FROM rm.shipments WHERE tenant_id = $1 AND shipment_id = $2"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// The shipments of an order, oldest first.
pub async fn shipments_by_order(
    pool: &PgPool,
    tenant: &str,
    order_id: Uuid,
) -> Result<Vec<ShipmentView>, QueryError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {SHIPMENT_COLUMNS} FROM rm.shipments WHERE tenant_id = $1 AND order_id = $2
         ORDER BY created_at, shipment_id"
    ))
    .bind(tenant)
    .bind(order_id)
    .fetch_all(pool)
    .await?)
}

/// Waits until the live read models have applied `sequence` of the stream (read-your-writes),
/// up to `timeout`; then [`QueryError::NotCaughtUp`]. Released at once by a worker of this
/// process that commits the sequence, re-checked on another process's commit notification
/// (see `wakeup`), and polled on a growing pause in case a wake-up is lost.
pub async fn wait_for(
    pool: &PgPool,
    tenant: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    timeout: Duration,
) -> Result<(), QueryError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut registration = wakeup::register(
        StreamKey {
            tenant_id: tenant.to_owned(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
        },
        sequence,
    );
    let mut released_open = true;
    // Only a fallback for lost wake-ups: thousands of queries waiting on a lagging read model
    // must not keep the pool busy (the commands share it).
    let mut pause = Duration::from_millis(50);
    loop {
        let applied: Option<i64> = sqlx::query_scalar(
            "SELECT last_sequence FROM rm.stream_state
             WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(tenant)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(pool)
        .await?;
        if applied.is_some_and(|applied| applied >= sequence) {
            return Ok(());
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Err(QueryError::NotCaughtUp);
        }
        tokio::select! {
            released = &mut registration.released, if released_open => {
                if released.is_ok() {
                    return Ok(());
                }
                released_open = false;
            }
            // The sender is a process-wide static: this never reports it closed.
            _ = registration.elsewhere.changed() => {}
            () = tokio::time::sleep(pause.min(deadline - now)) => {
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456)
                .expect("valid instant"),
            id: Uuid::new_v4(),
        };
        assert_eq!(
            Cursor::decode(&cursor.encode()).expect("own cursor decodes"),
            cursor
        );
        for bad in ["", "zz", "abc", "' OR 1=1 --", &"ab".repeat(100)] {
            assert!(
                matches!(Cursor::decode(bad), Err(QueryError::InvalidCursor)),
                "{bad}"
            );
        }
    }
}
