//! Analyst streams: `analytics.orders` (an order's current summary, keyed by order id, on every
//! change of the order or of one of its payments) and `analytics.order_lines` (one fact per line,
//! at order creation, keyed `order_id:line_no`).
//!
//! Delivery is at-least-once through an outbox: the projector queues the records in
//! `rm_meta.analytics_outbox` inside the read-model transaction, and [`publish_outbox`] produces
//! and then deletes them. A crash between produce and delete republishes; consumers key on the
//! record key (the orders topic is compactable, so the latest summary wins).
//!
//! Brokers that do not create topics on first use (Tansu) would refuse every record: the
//! worker creates the analytics topics ([`create_topics`]) before it publishes.

use chrono::{DateTime, Utc};
use commerce_contracts::events::OrderCreated;
use commerce_contracts::{AnalyticsOrder, AnalyticsOrderLine, Money};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::facets::{PaymentRow, order_payment_status};

use commerce_contracts::topics::{
    ANALYTICS_ORDER_LINES as ORDER_LINES_STREAM, ANALYTICS_ORDERS as ORDERS_STREAM,
    ANALYTICS_TOPICS,
};

async fn queue(
    conn: &mut PgConnection,
    stream: &str,
    key: &str,
    payload: serde_json::Value,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO rm_meta.analytics_outbox (stream, record_key, payload) VALUES ($1, $2, $3)",
    )
    .bind(stream)
    .bind(key)
    .bind(payload)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn queue_order_lines(
    conn: &mut PgConnection,
    record: &EventRecord,
    order_id: Uuid,
    created: &OrderCreated,
) -> Result<(), ProjectionError> {
    for line in &created.lines {
        let fact = AnalyticsOrderLine {
            tenant_id: record.tenant_id.clone(),
            order_id,
            line_no: line.line_no,
            sku: line.sku.clone(),
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price: line.unit_price.clone(),
            currency: created.currency.clone(),
            campaign_id: created.campaign_id,
            ordered_at: created.placed_at,
        };
        let key = fact.record_key();
        queue(conn, ORDER_LINES_STREAM, &key, serde_json::to_value(fact)?).await?;
    }
    Ok(())
}

/// Serialises the summaries of one order across workers: a transaction-level advisory lock in
/// the two-key space, "aord" in ASCII and the order's hash. An order's events and its payments'
/// events sit in partitions that different workers may own, and each summary reads the other's
/// tables. Whoever takes the lock second reads what the first committed (every statement of a
/// read-committed transaction sees the commits before it) and queues after it, so the last
/// summary of an order is never missing a change the read models hold.
const LOCK_ORDER_SUMMARY: &str =
    "SELECT pg_advisory_xact_lock(1634693732, hashtext($1 || '/' || $2::text))";

/// Queues the order's current summary, when the order is projected (a payment may come first).
pub(crate) async fn queue_order_summary(
    conn: &mut PgConnection,
    tenant_id: &str,
    order_id: Uuid,
) -> Result<(), ProjectionError> {
    sqlx::query(LOCK_ORDER_SUMMARY)
        .bind(tenant_id)
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    if let Some(summary) = order_summary(conn, tenant_id, order_id).await? {
        queue(
            conn,
            ORDERS_STREAM,
            &summary.record_key(),
            serde_json::to_value(summary)?,
        )
        .await?;
    }
    Ok(())
}

/// An order whose events a rebuild applied further than the live models had, so no live
/// worker queued their analyst records (after the swap it finds them applied).
pub(crate) struct RebuiltOrder {
    pub tenant_id: String,
    pub order_id: Uuid,
    /// The live models had not applied `order.created`: its line facts were never queued.
    pub created_unseen: bool,
}

/// Queues, from the read models of the current search path, what the live workers would have
/// queued for `orders`: each order's current summary, and the line facts of those created
/// unseen. Intermediate summaries are not replayed; the compacted topic keeps the latest.
pub(crate) async fn queue_rebuilt(
    conn: &mut PgConnection,
    orders: &[RebuiltOrder],
) -> Result<(), ProjectionError> {
    for order in orders {
        if order.created_unseen {
            let lines: Vec<LineRow> = sqlx::query_as(
                "SELECT l.line_no, l.sku, l.product_id, l.quantity, l.unit_price_minor, l.currency,
                        o.campaign_id, o.created_at
                 FROM order_lines l JOIN orders o USING (tenant_id, order_id)
                 WHERE l.tenant_id = $1 AND l.order_id = $2 ORDER BY l.line_no",
            )
            .bind(&order.tenant_id)
            .bind(order.order_id)
            .fetch_all(&mut *conn)
            .await?;
            for (
                line_no,
                sku,
                product_id,
                quantity,
                unit_price,
                currency,
                campaign_id,
                ordered_at,
            ) in lines
            {
                let out_of_range = |what: &str| {
                    ProjectionError::Rebuild(format!("order line {what} out of range"))
                };
                let fact = AnalyticsOrderLine {
                    tenant_id: order.tenant_id.clone(),
                    order_id: order.order_id,
                    line_no: u32::try_from(line_no).map_err(|_| out_of_range("number"))?,
                    sku,
                    product_id,
                    quantity: u32::try_from(quantity).map_err(|_| out_of_range("quantity"))?,
                    unit_price: Money {
                        amount_minor: unit_price,
                        currency: currency.clone(),
                    },
                    currency,
                    campaign_id,
                    ordered_at,
                };
                let key = fact.record_key();
                queue(conn, ORDER_LINES_STREAM, &key, serde_json::to_value(fact)?).await?;
            }
        }
        queue_order_summary(conn, &order.tenant_id, order.order_id).await?;
    }
    Ok(())
}

type LineRow = (
    i64,
    String,
    Option<Uuid>,
    i64,
    i64,
    String,
    Option<Uuid>,
    DateTime<Utc>,
);

type SummaryRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    Option<Uuid>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    i64,
    i64,
    i64,
);

/// The order's summary from the read models of the current search path.
pub(crate) async fn order_summary(
    conn: &mut PgConnection,
    tenant_id: &str,
    order_id: Uuid,
) -> Result<Option<AnalyticsOrder>, ProjectionError> {
    let row: Option<SummaryRow> = sqlx::query_as(
        "SELECT o.customer_id, o.status, o.cancel_reason, o.fulfillment_status, o.currency,
                o.total_minor, o.campaign_id, o.channel, o.created_at, o.updated_at,
                (SELECT count(*) FROM order_lines l WHERE l.tenant_id = o.tenant_id AND l.order_id = o.order_id),
                (SELECT coalesce(sum(quantity), 0)::bigint FROM order_lines l
                  WHERE l.tenant_id = o.tenant_id AND l.order_id = o.order_id),
                (SELECT coalesce(max(sequence), 0) FROM order_status_history h
                  WHERE h.tenant_id = o.tenant_id AND h.order_id = o.order_id)
         FROM orders o WHERE o.tenant_id = $1 AND o.order_id = $2",
    )
    .bind(tenant_id)
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((
        customer_id,
        status,
        cancel_reason,
        fulfillment_status,
        currency,
        total,
        campaign_id,
        channel,
        created_at,
        updated_at,
        line_count,
        item_count,
        last_sequence,
    )) = row
    else {
        return Ok(None);
    };
    let payments = payments_of_order(conn, tenant_id, order_id).await?;
    let wire = |text: &str| serde_json::Value::String(text.to_owned());
    Ok(Some(AnalyticsOrder {
        tenant_id: tenant_id.to_owned(),
        order_id,
        customer_id,
        status: serde_json::from_value(wire(&status))?,
        cancel_reason: cancel_reason
            .map(|reason| serde_json::from_value(wire(&reason)))
            .transpose()?,
        payment_status: serde_json::from_value(wire(order_payment_status(total, &payments)))?,
        fulfillment_status: serde_json::from_value(wire(&fulfillment_status))?,
        total: Money {
            amount_minor: total,
            currency,
        },
        line_count: u32::try_from(line_count)
            .map_err(|_| ProjectionError::Overflow("line count"))?,
        item_count: u64::try_from(item_count)
            .map_err(|_| ProjectionError::Overflow("item count"))?,
        campaign_id,
        channel,
        created_at,
        updated_at,
        last_sequence: u64::try_from(last_sequence)
            .map_err(|_| ProjectionError::Overflow("sequence"))?,
    }))
}

/// The payment facts of one order, for its `payment_status`.
pub(crate) async fn payments_of_order(
    conn: &mut PgConnection,
    tenant_id: &str,
    order_id: Uuid,
) -> Result<Vec<PaymentRow>, ProjectionError> {
    let rows: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT status, amount_minor, authorized_minor, captured_minor, refunded_minor,
                refund_pending_minor, charged_back_minor
         FROM payments WHERE tenant_id = $1 AND order_id = $2",
    )
    .bind(tenant_id)
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(status, amount, authorized, captured, refunded, refund_pending, charged_back)| {
                PaymentRow {
                    status,
                    amount,
                    authorized,
                    captured,
                    refunded,
                    refund_pending,
                    charged_back,
                    failure_reason: None,
                }
            },
        )
        .collect())
}

/// Produces up to `batch` queued analyst records (oldest first) and deletes the acknowledged ones.
/// `topic_prefix` is prepended to the stream names (tests use unique topics). Returns how many
/// records were published, or `None` when another worker is publishing.
///
/// One publisher at a time, whichever worker holds the outbox's lock: two publishing the same
/// rows would send each record twice, and the older summary of an order could be acknowledged
/// after the newer one and stay last in the compacted topic.
///
/// The records are in flight together, handed to the producer in outbox order: awaiting each
/// acknowledgement before sending the next made the worker's housekeeping one broker round trip
/// per record, and the projection waited for it (about 100 records/s on Tansu). `producer`
/// must keep a partition in the order it was handed (the worker's has one request in flight
/// and gapless delivery), and the order handed over is the outbox's unless the producer's
/// queue is full (100,000 records by default, against a batch of 500). Only the acknowledged
/// records before the first failure are deleted; the rest are sent again, and a copy sent
/// twice is what at-least-once allows.
pub async fn publish_outbox(
    pool: &PgPool,
    producer: &FutureProducer,
    topic_prefix: &str,
    batch: i64,
) -> Result<Option<usize>, ProjectionError> {
    let mut tx = pool.begin().await?;
    // Held until the deletes commit; a transaction that only reads until then has no
    // transaction id, so it does not hold back the log readers' horizon while records fly.
    let publisher: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(PUBLISHER_LOCK_KEY)
        .fetch_one(&mut *tx)
        .await?;
    if !publisher {
        return Ok(None);
    }
    let rows: Vec<(i64, String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT id, stream, record_key, payload FROM rm_meta.analytics_outbox ORDER BY id LIMIT $1",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let deliveries = rows.iter().map(|(id, stream, key, payload)| async move {
        let topic = format!("{topic_prefix}{stream}");
        let body = payload.to_string();
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(&body),
                DELIVERY_TIMEOUT,
            )
            .await
            .map(|_| *id)
            .map_err(|(error, _)| (error, topic))
    });
    let mut published = Vec::with_capacity(rows.len());
    for delivery in futures::future::join_all(deliveries).await {
        match delivery {
            Ok(id) => published.push(id),
            Err((error, topic)) => {
                tracing::warn!(%error, %topic, "analyst record not acknowledged; will retry");
                break;
            }
        }
    }
    if !published.is_empty() {
        sqlx::query("DELETE FROM rm_meta.analytics_outbox WHERE id = ANY($1)")
            .bind(&published)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Some(published.len()))
}

/// The outbox publisher's transaction-level advisory lock ("commaout" in ASCII).
const PUBLISHER_LOCK_KEY: i64 = 0x636f_6d6d_616f_7574;

/// How long an analyst record may wait for room in the producer's queue.
const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long topic creation may take.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Creates the analyst topics (`<prefix>analytics.*`) that are missing; an existing topic is
/// left as it is.
pub async fn create_topics(
    brokers: &str,
    prefix: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), ProjectionError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let names: Vec<String> = ANALYTICS_TOPICS
        .iter()
        .map(|topic| format!("{prefix}{topic}"))
        .collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                partitions.max(1),
                TopicReplication::Fixed(replication.max(1)),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(ADMIN_TIMEOUT))
        .request_timeout(Some(ADMIN_TIMEOUT));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(ProjectionError::Topic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}
