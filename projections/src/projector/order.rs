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

use chrono::NaiveDate;
use commerce_contracts::LineQuantity;
use commerce_contracts::events::{CancelReason, OrderEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{expect_row, inconsistent, uuid_id};
use crate::analytics;
use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::facets::{LineProgress, all_lines, fulfillment_status};

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &OrderEvent,
    analytics_enabled: bool,
) -> Result<(), ProjectionError> {
    let order_id = uuid_id(record)?;
    let at = record.occurred_at;
    match event {
        OrderEvent::Created(created) => {
            let inserted = sqlx::query(
                "INSERT INTO orders (tenant_id, order_id, customer_id, status, currency, total_minor,
                     payment_method, campaign_id, participant_id, channel, fulfillment_status,
                     expires_at, created_at, updated_at)
                 VALUES ($1, $2, $3, 'placed', $4, $5, $6, $7, $8, $9, 'not_fulfilled', $10, $11, $12)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&record.tenant_id)
            .bind(order_id)
            .bind(&created.customer_id)
            .bind(&created.currency)
            .bind(created.total.amount_minor)
            .bind(&created.payment_method)
            .bind(created.campaign_id)
            .bind(created.participant_id)
            .bind(&created.channel)
            .bind(created.expires_at)
            .bind(created.placed_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the order already exists"));
            }
            for line in &created.lines {
                sqlx::query(
                    "INSERT INTO order_lines (tenant_id, order_id, line_no, sku, product_id, quantity,
                         unit_price_minor, currency)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&record.tenant_id)
                .bind(order_id)
                .bind(i64::from(line.line_no))
                .bind(&line.sku)
                .bind(line.product_id)
                .bind(i64::from(line.quantity))
                .bind(line.unit_price.amount_minor)
                .bind(&line.unit_price.currency)
                .execute(&mut *conn)
                .await?;
            }
            if analytics_enabled {
                analytics::queue_order_lines(conn, record, order_id, created).await?;
            }
        }
        OrderEvent::StockReserved(_)
        | OrderEvent::PaymentFailed(_)
        | OrderEvent::LabelAttached(_)
        | OrderEvent::ReturnRequested(_) => touch(conn, record, order_id, None).await?,
        OrderEvent::AwaitingPayment(_) => {
            touch(conn, record, order_id, Some("awaiting_payment")).await?
        }
        OrderEvent::Confirmed(confirmed) => {
            touch(conn, record, order_id, Some("confirmed")).await?;
            count_sales(conn, record, order_id, confirmed.confirmed_at.date_naive()).await?;
        }
        OrderEvent::FulfillmentCreated(e) => {
            add_to_lines(conn, record, order_id, "fulfilled", &e.lines).await?;
            progress(conn, record, order_id, None).await?;
        }
        OrderEvent::Shipped(e) => {
            add_to_lines(conn, record, order_id, "shipped", &e.lines).await?;
            progress(
                conn,
                record,
                order_id,
                Some(("shipped", |l: &LineProgress| l.shipped)),
            )
            .await?;
        }
        OrderEvent::Delivered(e) => {
            add_to_lines(conn, record, order_id, "delivered", &e.lines).await?;
            progress(
                conn,
                record,
                order_id,
                Some(("delivered", |l: &LineProgress| l.delivered)),
            )
            .await?;
        }
        OrderEvent::ReturnReceived(e) => {
            add_to_lines(conn, record, order_id, "returned", &e.lines).await?;
            progress(conn, record, order_id, None).await?;
        }
        OrderEvent::Completed(_) => touch(conn, record, order_id, Some("completed")).await?,
        OrderEvent::Canceled(e) => cancel(conn, record, order_id, e.reason).await?,
        OrderEvent::Expired(_) => cancel(conn, record, order_id, CancelReason::Expired).await?,
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
    .bind(at)
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

/// Adds the event's quantities to one counter column of the order's lines.
async fn add_to_lines(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    column: &'static str,
    lines: &[LineQuantity],
) -> Result<(), ProjectionError> {
    let (line_nos, quantities): (Vec<i64>, Vec<i64>) = lines
        .iter()
        .map(|line| (i64::from(line.line_no), i64::from(line.quantity)))
        .unzip();
    // `column` is one of four fixed names chosen by the caller, never input.
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
        return Err(inconsistent(
            record,
            "the event names a line the order does not have",
        ));
    }
    Ok(())
}

/// A status and the line counter that must cover every line to reach it.
type Stage = (&'static str, fn(&LineProgress) -> i64);

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

async fn cancel(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    reason: CancelReason,
) -> Result<(), ProjectionError> {
    let reason = serde_json::to_value(reason)?;
    let reason = reason.as_str().unwrap_or("operator").to_owned();
    let sales_day: Option<Option<NaiveDate>> = sqlx::query_scalar(
        "UPDATE orders SET status = 'canceled', cancel_reason = $3, updated_at = $4
         WHERE tenant_id = $1 AND order_id = $2
         RETURNING sales_day",
    )
    .bind(&record.tenant_id)
    .bind(order_id)
    .bind(&reason)
    .bind(record.occurred_at)
    .fetch_optional(&mut *conn)
    .await?;
    match sales_day {
        None => Err(inconsistent(record, "the order does not exist")),
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
