//! Order events → `orders`, `order_lines`, `order_status_history`, `daily_sales`, and the
//! analyst-stream outbox.
//!
//! Status (the contract's values): `order.created` → `placed`; `order.awaiting_payment` →
//! `awaiting_payment`; `order.confirmed` → `confirmed`; `order.shipped` → `shipped` once every line
//! is shipped in full and `order.delivered` → `delivered` once every line is delivered (partial
//! progress shows in `fulfillment_status`); `order.completed` → `completed`; `order.canceled` →
//! `canceled` with its reason; `order.expired` → `canceled` with reason `expired`. Other events
//! keep the status.
//!
//! Daily sales: an order counts on the UTC day of its `order.confirmed`, per SKU and currency
//! (quantity and quantity × unit price). A confirmed order that is canceled later is subtracted
//! from that same day again, so `daily_sales` holds net confirmed sales. Returns do not change it
//! (refunds are a payment matter).
//!
//! [`Change`] says what each event does; the per-event path ([`apply`]) carries it out in SQL,
//! the set-based one ([`apply_batch`]) on the batch's rows in memory.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use commerce_contracts::LineQuantity;
use commerce_contracts::events::{CancelReason, OrderCreated, OrderEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::{Events, continues_stream};
use super::rows::{Table, micros};
use super::{expect_row, inconsistent, no_row, uuid_id};
use crate::analytics;
use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::facets::{LineProgress, all_lines, fulfillment_status};

/// An `orders` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OrderRow {
    tenant_id: String,
    order_id: Uuid,
    customer_id: String,
    status: String,
    cancel_reason: Option<String>,
    currency: String,
    total_minor: i64,
    payment_method: Option<String>,
    campaign_id: Option<Uuid>,
    participant_id: Option<Uuid>,
    channel: String,
    fulfillment_status: String,
    sales_day: Option<NaiveDate>,
    #[serde(serialize_with = "micros")]
    expires_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    updated_at: DateTime<Utc>,
}

const ORDERS: Table = Table {
    name: "orders",
    key: &["tenant_id", "order_id"],
    columns: &[
        "tenant_id",
        "order_id",
        "customer_id",
        "status",
        "cancel_reason",
        "currency",
        "total_minor",
        "payment_method",
        "campaign_id",
        "participant_id",
        "channel",
        "fulfillment_status",
        "sales_day",
        "expires_at",
        "created_at",
        "updated_at",
    ],
};

/// An `order_lines` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LineRow {
    tenant_id: String,
    order_id: Uuid,
    line_no: i64,
    sku: String,
    product_id: Option<Uuid>,
    quantity: i64,
    unit_price_minor: i64,
    currency: String,
    fulfilled: i64,
    shipped: i64,
    delivered: i64,
    returned: i64,
}

const LINES: Table = Table {
    name: "order_lines",
    key: &["tenant_id", "order_id", "line_no"],
    columns: &[
        "tenant_id",
        "order_id",
        "line_no",
        "sku",
        "product_id",
        "quantity",
        "unit_price_minor",
        "currency",
        "fulfilled",
        "shipped",
        "delivered",
        "returned",
    ],
};

/// An `order_status_history` row.
#[derive(Debug, Clone, Serialize)]
struct HistoryRow {
    tenant_id: String,
    order_id: Uuid,
    sequence: i64,
    event_type: String,
    status: String,
    #[serde(serialize_with = "micros")]
    at: DateTime<Utc>,
}

const HISTORY: Table = Table {
    name: "order_status_history",
    key: &["tenant_id", "order_id", "sequence"],
    columns: &[
        "tenant_id",
        "order_id",
        "sequence",
        "event_type",
        "status",
        "at",
    ],
};

/// A `daily_sales` row, or an amount to add to one.
#[derive(Debug, Clone, Serialize)]
struct SalesRow {
    tenant_id: String,
    day: NaiveDate,
    sku: String,
    currency: String,
    quantity: i64,
    revenue_minor: i64,
}

const SALES: Table = Table {
    name: "daily_sales",
    key: &["tenant_id", "day", "sku", "currency"],
    columns: &[
        "tenant_id",
        "day",
        "sku",
        "currency",
        "quantity",
        "revenue_minor",
    ],
};

/// A line counter an event adds to.
#[derive(Debug, Clone, Copy)]
enum Counter {
    Fulfilled,
    Shipped,
    Delivered,
    Returned,
}

impl Counter {
    fn column(self) -> &'static str {
        match self {
            Self::Fulfilled => "fulfilled",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Returned => "returned",
        }
    }

    fn of(self, line: &mut LineRow) -> &mut i64 {
        match self {
            Self::Fulfilled => &mut line.fulfilled,
            Self::Shipped => &mut line.shipped,
            Self::Delivered => &mut line.delivered,
            Self::Returned => &mut line.returned,
        }
    }
}

/// A status and the line counter that must cover every line to reach it.
type Stage = (&'static str, fn(&LineProgress) -> i64);

/// What one order event does: the rule both paths apply. Every event then records the order's
/// status in its history.
enum Change<'a> {
    Create(Box<OrderRow>, Vec<LineRow>),
    /// Sets `updated_at` and, when given, the status.
    Touch(Option<&'static str>),
    /// Confirmed: counts the order's sales on that day, once.
    Confirm(NaiveDate),
    /// Adds the quantities to a line counter, recomputes the fulfilment facet and moves the
    /// status to the stage when every line reached it.
    Lines(Counter, &'a [LineQuantity], Option<Stage>),
    /// Canceled for the reason given; confirmed sales are taken back from their day.
    Cancel(String),
}

fn change<'a>(
    record: &EventRecord,
    order_id: Uuid,
    event: &'a OrderEvent,
) -> Result<Change<'a>, ProjectionError> {
    Ok(match event {
        OrderEvent::Created(created) => {
            let (order, lines) = create(record, order_id, created);
            Change::Create(Box::new(order), lines)
        }
        OrderEvent::StockReserved(_)
        | OrderEvent::PaymentFailed(_)
        | OrderEvent::LabelAttached(_)
        | OrderEvent::ReturnRequested(_) => Change::Touch(None),
        OrderEvent::AwaitingPayment(_) => Change::Touch(Some("awaiting_payment")),
        OrderEvent::Confirmed(confirmed) => Change::Confirm(confirmed.confirmed_at.date_naive()),
        OrderEvent::FulfillmentCreated(e) => Change::Lines(Counter::Fulfilled, &e.lines, None),
        OrderEvent::Shipped(e) => Change::Lines(
            Counter::Shipped,
            &e.lines,
            Some(("shipped", |l: &LineProgress| l.shipped)),
        ),
        OrderEvent::Delivered(e) => Change::Lines(
            Counter::Delivered,
            &e.lines,
            Some(("delivered", |l: &LineProgress| l.delivered)),
        ),
        OrderEvent::ReturnReceived(e) => Change::Lines(Counter::Returned, &e.lines, None),
        OrderEvent::Completed(_) => Change::Touch(Some("completed")),
        OrderEvent::Canceled(e) => Change::Cancel(reason(e.reason)?),
        OrderEvent::Expired(_) => Change::Cancel(reason(CancelReason::Expired)?),
    })
}

fn reason(reason: CancelReason) -> Result<String, ProjectionError> {
    let reason = serde_json::to_value(reason)?;
    Ok(reason.as_str().unwrap_or("operator").to_owned())
}

fn create(
    record: &EventRecord,
    order_id: Uuid,
    created: &OrderCreated,
) -> (OrderRow, Vec<LineRow>) {
    let order = OrderRow {
        tenant_id: record.tenant_id.clone(),
        order_id,
        customer_id: created.customer_id.clone(),
        status: "placed".to_owned(),
        cancel_reason: None,
        currency: created.currency.clone(),
        total_minor: created.total.amount_minor,
        payment_method: created.payment_method.clone(),
        campaign_id: created.campaign_id,
        participant_id: created.participant_id,
        channel: created.channel.clone(),
        fulfillment_status: "not_fulfilled".to_owned(),
        sales_day: None,
        expires_at: created.expires_at,
        created_at: created.placed_at,
        updated_at: record.occurred_at,
    };
    let lines = created
        .lines
        .iter()
        .map(|line| LineRow {
            tenant_id: record.tenant_id.clone(),
            order_id,
            line_no: i64::from(line.line_no),
            sku: line.sku.clone(),
            product_id: line.product_id,
            quantity: i64::from(line.quantity),
            unit_price_minor: line.unit_price.amount_minor,
            currency: line.unit_price.currency.clone(),
            fulfilled: 0,
            shipped: 0,
            delivered: 0,
            returned: 0,
        })
        .collect();
    (order, lines)
}

fn progress_of(line: &LineRow) -> LineProgress {
    LineProgress {
        quantity: line.quantity,
        fulfilled: line.fulfilled,
        shipped: line.shipped,
        delivered: line.delivered,
        returned: line.returned,
    }
}

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &OrderEvent,
    analytics_enabled: bool,
) -> Result<(), ProjectionError> {
    let order_id = uuid_id(record)?;
    match change(record, order_id, event)? {
        Change::Create(order, lines) => {
            let inserted = sqlx::query(
                "INSERT INTO orders (tenant_id, order_id, customer_id, status, currency, total_minor,
                     payment_method, campaign_id, participant_id, channel, fulfillment_status,
                     expires_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&order.tenant_id)
            .bind(order.order_id)
            .bind(&order.customer_id)
            .bind(&order.status)
            .bind(&order.currency)
            .bind(order.total_minor)
            .bind(&order.payment_method)
            .bind(order.campaign_id)
            .bind(order.participant_id)
            .bind(&order.channel)
            .bind(&order.fulfillment_status)
            .bind(order.expires_at)
            .bind(order.created_at)
            .bind(order.updated_at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the order already exists"));
            }
            for line in &lines {
                sqlx::query(
                    "INSERT INTO order_lines (tenant_id, order_id, line_no, sku, product_id, quantity,
                         unit_price_minor, currency)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&line.tenant_id)
                .bind(line.order_id)
                .bind(line.line_no)
                .bind(&line.sku)
                .bind(line.product_id)
                .bind(line.quantity)
                .bind(line.unit_price_minor)
                .bind(&line.currency)
                .execute(&mut *conn)
                .await?;
            }
            if analytics_enabled && let OrderEvent::Created(created) = event {
                analytics::queue_order_lines(conn, record, order_id, created).await?;
            }
        }
        Change::Touch(status) => touch(conn, record, order_id, status).await?,
        Change::Confirm(day) => {
            touch(conn, record, order_id, Some("confirmed")).await?;
            count_sales(conn, record, order_id, day).await?;
        }
        Change::Lines(counter, lines, stage) => {
            add_to_lines(conn, record, order_id, counter, lines).await?;
            progress(conn, record, order_id, stage).await?;
        }
        Change::Cancel(reason) => cancel(conn, record, order_id, &reason).await?,
    }
    let status: String =
        sqlx::query_scalar("SELECT status FROM orders WHERE tenant_id = $1 AND order_id = $2")
            .bind(&record.tenant_id)
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO order_status_history (tenant_id, order_id, sequence, event_type, status, at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&record.tenant_id)
    .bind(order_id)
    .bind(record.sequence)
    .bind(&record.event_type)
    .bind(&status)
    .bind(record.occurred_at)
    .execute(&mut *conn)
    .await?;
    if analytics_enabled {
        analytics::queue_order_summary(conn, &record.tenant_id, order_id).await?;
    }
    Ok(())
}

/// Sets `updated_at` and, when given, the status.
async fn touch(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    status: Option<&str>,
) -> Result<(), ProjectionError> {
    let result = sqlx::query(
        "UPDATE orders SET status = coalesce($3, status), updated_at = $4
         WHERE tenant_id = $1 AND order_id = $2",
    )
    .bind(&record.tenant_id)
    .bind(order_id)
    .bind(status)
    .bind(record.occurred_at)
    .execute(&mut *conn)
    .await?;
    expect_row(result, record)
}

fn unknown_line(record: &EventRecord) -> ProjectionError {
    inconsistent(record, "the event names a line the order does not have")
}

/// Adds the event's quantities to one counter column of the order's lines.
async fn add_to_lines(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    counter: Counter,
    lines: &[LineQuantity],
) -> Result<(), ProjectionError> {
    let (line_nos, quantities): (Vec<i64>, Vec<i64>) = lines
        .iter()
        .map(|line| (i64::from(line.line_no), i64::from(line.quantity)))
        .unzip();
    // The column is one of four fixed names, never input.
    let column = counter.column();
    let statement = format!(
        "UPDATE order_lines AS l SET {column} = l.{column} + u.quantity
         FROM unnest($3::bigint[], $4::bigint[]) AS u(line_no, quantity)
         WHERE l.tenant_id = $1 AND l.order_id = $2 AND l.line_no = u.line_no"
    );
    let result = sqlx::query(&statement)
        .bind(&record.tenant_id)
        .bind(order_id)
        .bind(&line_nos)
        .bind(&quantities)
        .execute(&mut *conn)
        .await?;
    if result.rows_affected() != line_nos.len() as u64 {
        return Err(unknown_line(record));
    }
    Ok(())
}

/// Recomputes the fulfilment facet; moves the status to `stage` when every line reached it.
async fn progress(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    stage: Option<Stage>,
) -> Result<(), ProjectionError> {
    let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT quantity, fulfilled, shipped, delivered, returned FROM order_lines
         WHERE tenant_id = $1 AND order_id = $2 ORDER BY line_no",
    )
    .bind(&record.tenant_id)
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    let lines: Vec<LineProgress> = rows
        .into_iter()
        .map(
            |(quantity, fulfilled, shipped, delivered, returned)| LineProgress {
                quantity,
                fulfilled,
                shipped,
                delivered,
                returned,
            },
        )
        .collect();
    let status = stage.and_then(|(status, pick)| all_lines(&lines, pick).then_some(status));
    let result = sqlx::query(
        "UPDATE orders SET fulfillment_status = $3, status = coalesce($4, status), updated_at = $5
         WHERE tenant_id = $1 AND order_id = $2",
    )
    .bind(&record.tenant_id)
    .bind(order_id)
    .bind(fulfillment_status(&lines))
    .bind(status)
    .bind(record.occurred_at)
    .execute(&mut *conn)
    .await?;
    expect_row(result, record)
}

fn no_order(record: &EventRecord) -> ProjectionError {
    inconsistent(record, "the order does not exist")
}

async fn cancel(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    reason: &str,
) -> Result<(), ProjectionError> {
    let sales_day: Option<Option<NaiveDate>> = sqlx::query_scalar(
        "UPDATE orders SET status = 'canceled', cancel_reason = $3, updated_at = $4
         WHERE tenant_id = $1 AND order_id = $2
         RETURNING sales_day",
    )
    .bind(&record.tenant_id)
    .bind(order_id)
    .bind(reason)
    .bind(record.occurred_at)
    .fetch_optional(&mut *conn)
    .await?;
    match sales_day {
        None => Err(no_order(record)),
        Some(Some(day)) => move_sales(conn, record, order_id, day, -1, None).await,
        Some(None) => Ok(()),
    }
}

async fn count_sales(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    day: NaiveDate,
) -> Result<(), ProjectionError> {
    let already: Option<NaiveDate> =
        sqlx::query_scalar("SELECT sales_day FROM orders WHERE tenant_id = $1 AND order_id = $2")
            .bind(&record.tenant_id)
            .bind(order_id)
            .fetch_one(&mut *conn)
            .await?;
    if already.is_some() {
        return Ok(());
    }
    move_sales(conn, record, order_id, day, 1, Some(day)).await
}

/// Adds (`sign` 1) or subtracts (`sign` -1) the order's lines to `daily_sales` of `day`, and
/// records `sales_day` on the order.
async fn move_sales(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    day: NaiveDate,
    sign: i64,
    sales_day: Option<NaiveDate>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO daily_sales AS d (tenant_id, day, sku, currency, quantity, revenue_minor)
         SELECT tenant_id, $3, sku, currency, $4 * sum(quantity), $4 * sum(quantity * unit_price_minor)
         FROM order_lines WHERE tenant_id = $1 AND order_id = $2
         GROUP BY tenant_id, sku, currency
         ON CONFLICT (tenant_id, day, sku, currency) DO UPDATE
         SET quantity = d.quantity + EXCLUDED.quantity,
             revenue_minor = d.revenue_minor + EXCLUDED.revenue_minor",
    )
    .bind(&record.tenant_id)
    .bind(order_id)
    .bind(day)
    .bind(sign)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE orders SET sales_day = $3 WHERE tenant_id = $1 AND order_id = $2")
        .bind(&record.tenant_id)
        .bind(order_id)
        .bind(sales_day)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

type OrderKey = (String, Uuid);
type SalesKey = (String, NaiveDate, String, String);

/// The orders (with their lines) a batch touches, and what it appends, in memory.
#[derive(Default)]
struct Rows {
    orders: HashMap<OrderKey, OrderRow>,
    /// Each order's lines, by line number.
    lines: HashMap<OrderKey, BTreeMap<i64, LineRow>>,
    changed_orders: HashSet<OrderKey>,
    changed_lines: HashSet<OrderKey>,
    history: Vec<HistoryRow>,
    /// Amounts to add per day, SKU and currency (a key stays even when its amounts cancel out:
    /// the per-event path leaves such a row behind too).
    sales: BTreeMap<SalesKey, (i64, i64)>,
}

impl Rows {
    /// Applies `change` as [`apply`] does in SQL.
    fn apply(
        &mut self,
        record: &EventRecord,
        order_id: Uuid,
        change: Change<'_>,
    ) -> Result<(), ProjectionError> {
        let key = (record.tenant_id.clone(), order_id);
        let at = record.occurred_at;
        match change {
            Change::Create(order, lines) => {
                if self.orders.contains_key(&key) {
                    return Err(inconsistent(record, "the order already exists"));
                }
                let mut by_no = BTreeMap::new();
                for line in lines {
                    if by_no.insert(line.line_no, line).is_some() {
                        return Err(inconsistent(record, "the order names a line twice"));
                    }
                }
                self.orders.insert(key.clone(), *order);
                self.lines.insert(key.clone(), by_no);
                self.changed_lines.insert(key.clone());
            }
            Change::Touch(status) => self.touch(record, &key, status)?,
            Change::Confirm(day) => {
                self.touch(record, &key, Some("confirmed"))?;
                let counted = self.order(record, &key)?.sales_day.is_some();
                if !counted {
                    self.move_sales(record, &key, day, 1, Some(day))?;
                }
            }
            Change::Lines(counter, quantities, stage) => {
                let lines = self.lines.entry(key.clone()).or_default();
                let mut named = HashSet::new();
                for line in quantities {
                    let line_no = i64::from(line.line_no);
                    let row = lines
                        .get_mut(&line_no)
                        .filter(|_| named.insert(line_no))
                        .ok_or_else(|| unknown_line(record))?;
                    let value = counter.of(row);
                    *value = value
                        .checked_add(i64::from(line.quantity))
                        .ok_or(ProjectionError::Overflow("line quantity"))?;
                }
                let progress: Vec<LineProgress> = lines.values().map(progress_of).collect();
                self.changed_lines.insert(key.clone());
                let status =
                    stage.and_then(|(status, pick)| all_lines(&progress, pick).then_some(status));
                let order = self.orders.get_mut(&key).ok_or_else(|| no_row(record))?;
                fulfillment_status(&progress).clone_into(&mut order.fulfillment_status);
                if let Some(status) = status {
                    status.clone_into(&mut order.status);
                }
                order.updated_at = at;
            }
            Change::Cancel(reason) => {
                let order = self.orders.get_mut(&key).ok_or_else(|| no_order(record))?;
                "canceled".clone_into(&mut order.status);
                order.cancel_reason = Some(reason);
                order.updated_at = at;
                if let Some(day) = order.sales_day {
                    self.move_sales(record, &key, day, -1, None)?;
                }
            }
        }
        let status = self.order(record, &key)?.status.clone();
        self.changed_orders.insert(key);
        self.history.push(HistoryRow {
            tenant_id: record.tenant_id.clone(),
            order_id,
            sequence: record.sequence,
            event_type: record.event_type.clone(),
            status,
            at,
        });
        Ok(())
    }

    fn order(&self, record: &EventRecord, key: &OrderKey) -> Result<&OrderRow, ProjectionError> {
        self.orders.get(key).ok_or_else(|| no_row(record))
    }

    fn touch(
        &mut self,
        record: &EventRecord,
        key: &OrderKey,
        status: Option<&str>,
    ) -> Result<(), ProjectionError> {
        let order = self.orders.get_mut(key).ok_or_else(|| no_row(record))?;
        if let Some(status) = status {
            status.clone_into(&mut order.status);
        }
        order.updated_at = record.occurred_at;
        Ok(())
    }

    /// Adds (`sign` 1) or subtracts (`sign` -1) the order's lines to the sales of `day`, and
    /// records `sales_day` on the order.
    fn move_sales(
        &mut self,
        record: &EventRecord,
        key: &OrderKey,
        day: NaiveDate,
        sign: i64,
        sales_day: Option<NaiveDate>,
    ) -> Result<(), ProjectionError> {
        let overflow = || ProjectionError::Overflow("daily sales");
        for line in self.lines.get(key).into_iter().flat_map(BTreeMap::values) {
            let revenue = line
                .quantity
                .checked_mul(line.unit_price_minor)
                .and_then(|revenue| revenue.checked_mul(sign))
                .ok_or_else(overflow)?;
            let quantity = line.quantity.checked_mul(sign).ok_or_else(overflow)?;
            let sales = self
                .sales
                .entry((
                    line.tenant_id.clone(),
                    day,
                    line.sku.clone(),
                    line.currency.clone(),
                ))
                .or_default();
            sales.0 = sales.0.checked_add(quantity).ok_or_else(overflow)?;
            sales.1 = sales.1.checked_add(revenue).ok_or_else(overflow)?;
        }
        self.orders
            .get_mut(key)
            .ok_or_else(|| no_row(record))?
            .sales_day = sales_day;
        Ok(())
    }
}

/// Applies a batch's order events set-based: reads the orders they touch and their lines (one
/// statement each), folds, then writes orders, lines, status history and the summed daily-sales
/// amounts with one statement each.
pub(super) async fn apply_batch(
    conn: &mut PgConnection,
    events: &Events<'_, OrderEvent>,
) -> Result<(), ProjectionError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut keys = HashSet::new();
    for (record, _) in events {
        let order_id = uuid_id(record)?;
        ids.push(order_id);
        if continues_stream(record) {
            keys.insert((record.tenant_id.as_str(), order_id));
        }
    }
    let keys: Vec<serde_json::Value> = keys
        .into_iter()
        .map(|(tenant_id, order_id)| json!({"tenant_id": tenant_id, "order_id": order_id}))
        .collect();
    let orders: Vec<OrderRow> = ORDERS.fetch(conn, ORDERS.key, &keys).await?;
    let lines: Vec<LineRow> = LINES.fetch(conn, ORDERS.key, &keys).await?;
    let mut rows = Rows {
        orders: orders
            .into_iter()
            .map(|row| ((row.tenant_id.clone(), row.order_id), row))
            .collect(),
        ..Rows::default()
    };
    for line in lines {
        rows.lines
            .entry((line.tenant_id.clone(), line.order_id))
            .or_default()
            .insert(line.line_no, line);
    }
    for ((record, event), order_id) in events.iter().zip(ids) {
        rows.apply(record, order_id, change(record, order_id, event)?)?;
    }
    let orders: Vec<&OrderRow> = rows
        .changed_orders
        .iter()
        .filter_map(|key| rows.orders.get(key))
        .collect();
    ORDERS.upsert(conn, &orders).await?;
    let lines: Vec<&LineRow> = rows
        .changed_lines
        .iter()
        .filter_map(|key| rows.lines.get(key))
        .flat_map(BTreeMap::values)
        .collect();
    LINES.upsert(conn, &lines).await?;
    HISTORY.insert(conn, &rows.history).await?;
    let sales: Vec<SalesRow> = rows
        .sales
        .into_iter()
        .map(
            |((tenant_id, day, sku, currency), (quantity, revenue_minor))| SalesRow {
                tenant_id,
                day,
                sku,
                currency,
                quantity,
                revenue_minor,
            },
        )
        .collect();
    SALES
        .add(conn, &sales, &["quantity", "revenue_minor"])
        .await
}
