//! Payment events → `payments` (amounts and status folded by [`PaymentRow::apply`]). A payment
//! made for an order also refreshes that order's analyst summary (its `payment_status` changed).
//!
//! Both paths create the row with [`created`] and fold later events with [`PaymentRow::apply`]:
//! [`apply`] per event in SQL, [`apply_batch`] on the batch's rows in memory.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use commerce_contracts::events::{CapturePolicy, PaymentCreated, PaymentEvent, PaymentPurpose};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::{Events, continues_stream};
use super::rows::{Table, micros};
use super::{expect_row, inconsistent, uuid_id};
use crate::analytics;
use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::facets::PaymentRow;

/// A `payments` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PaymentTableRow {
    tenant_id: String,
    payment_id: Uuid,
    order_id: Option<Uuid>,
    campaign_id: Option<Uuid>,
    participant_id: Option<Uuid>,
    customer_id: String,
    method: String,
    provider: String,
    capture_policy: String,
    status: String,
    currency: String,
    amount_minor: i64,
    authorized_minor: i64,
    captured_minor: i64,
    refunded_minor: i64,
    refund_pending_minor: i64,
    charged_back_minor: i64,
    failure_reason: Option<String>,
    #[serde(serialize_with = "micros")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    updated_at: DateTime<Utc>,
}

const PAYMENTS: Table = Table {
    name: "payments",
    key: &["tenant_id", "payment_id"],
    columns: &[
        "tenant_id",
        "payment_id",
        "order_id",
        "campaign_id",
        "participant_id",
        "customer_id",
        "method",
        "provider",
        "capture_policy",
        "status",
        "currency",
        "amount_minor",
        "authorized_minor",
        "captured_minor",
        "refunded_minor",
        "refund_pending_minor",
        "charged_back_minor",
        "failure_reason",
        "created_at",
        "updated_at",
    ],
};

/// status, amount, authorized, captured, refunded, refund pending, charged back, failure reason.
type PaymentColumns = (String, i64, i64, i64, i64, i64, i64, Option<String>);

fn created(record: &EventRecord, payment_id: Uuid, created: &PaymentCreated) -> PaymentTableRow {
    let (order_id, campaign_id, participant_id) = match created.purpose {
        PaymentPurpose::Order { order_id } => (Some(order_id), None, None),
        PaymentPurpose::CampaignParticipant {
            campaign_id,
            participant_id,
        } => (None, Some(campaign_id), Some(participant_id)),
    };
    let policy = match created.capture_policy {
        CapturePolicy::Automatic => "automatic",
        CapturePolicy::Manual => "manual",
    };
    PaymentTableRow {
        tenant_id: record.tenant_id.clone(),
        payment_id,
        order_id,
        campaign_id,
        participant_id,
        customer_id: created.customer_id.clone(),
        method: created.method.clone(),
        provider: created.provider.clone(),
        capture_policy: policy.to_owned(),
        status: "created".to_owned(),
        currency: created.amount.currency.clone(),
        amount_minor: created.amount.amount_minor,
        authorized_minor: 0,
        captured_minor: 0,
        refunded_minor: 0,
        refund_pending_minor: 0,
        charged_back_minor: 0,
        failure_reason: None,
        created_at: created.created_at,
        updated_at: record.occurred_at,
    }
}

fn no_payment(record: &EventRecord) -> ProjectionError {
    inconsistent(record, "the payment does not exist")
}

/// Folds an event that follows the creation into a whole row, with the rule the per-event path
/// applies to the stored columns ([`PaymentRow::apply`]).
fn fold(
    row: &mut PaymentTableRow,
    record: &EventRecord,
    event: &PaymentEvent,
) -> Result<(), ProjectionError> {
    let mut payment = PaymentRow {
        status: std::mem::take(&mut row.status),
        amount: row.amount_minor,
        authorized: row.authorized_minor,
        captured: row.captured_minor,
        refunded: row.refunded_minor,
        refund_pending: row.refund_pending_minor,
        charged_back: row.charged_back_minor,
        failure_reason: row.failure_reason.take(),
    };
    payment.apply(event)?;
    row.status = payment.status;
    row.authorized_minor = payment.authorized;
    row.captured_minor = payment.captured;
    row.refunded_minor = payment.refunded;
    row.refund_pending_minor = payment.refund_pending;
    row.charged_back_minor = payment.charged_back;
    row.failure_reason = payment.failure_reason;
    row.updated_at = record.occurred_at;
    Ok(())
}

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &PaymentEvent,
    analytics_enabled: bool,
) -> Result<(), ProjectionError> {
    let payment_id = uuid_id(record)?;
    if let PaymentEvent::Created(e) = event {
        let row = created(record, payment_id, e);
        let inserted = sqlx::query(
            "INSERT INTO payments (tenant_id, payment_id, order_id, campaign_id, participant_id,
                 customer_id, method, provider, capture_policy, status, currency, amount_minor,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT DO NOTHING",
        )
        .bind(&row.tenant_id)
        .bind(row.payment_id)
        .bind(row.order_id)
        .bind(row.campaign_id)
        .bind(row.participant_id)
        .bind(&row.customer_id)
        .bind(&row.method)
        .bind(&row.provider)
        .bind(&row.capture_policy)
        .bind(&row.status)
        .bind(&row.currency)
        .bind(row.amount_minor)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(inconsistent(record, "the payment already exists"));
        }
    } else {
        let row: Option<PaymentColumns> = sqlx::query_as(
            "SELECT status, amount_minor, authorized_minor, captured_minor, refunded_minor,
                    refund_pending_minor, charged_back_minor, failure_reason
             FROM payments WHERE tenant_id = $1 AND payment_id = $2",
        )
        .bind(&record.tenant_id)
        .bind(payment_id)
        .fetch_optional(&mut *conn)
        .await?;
        let (
            status,
            amount,
            authorized,
            captured,
            refunded,
            refund_pending,
            charged_back,
            failure_reason,
        ) = row.ok_or_else(|| no_payment(record))?;
        let mut payment = PaymentRow {
            status,
            amount,
            authorized,
            captured,
            refunded,
            refund_pending,
            charged_back,
            failure_reason,
        };
        payment.apply(event)?;
        let result = sqlx::query(
            "UPDATE payments SET status = $3, authorized_minor = $4, captured_minor = $5,
                 refunded_minor = $6, refund_pending_minor = $7, charged_back_minor = $8,
                 failure_reason = $9, updated_at = $10
             WHERE tenant_id = $1 AND payment_id = $2",
        )
        .bind(&record.tenant_id)
        .bind(payment_id)
        .bind(&payment.status)
        .bind(payment.authorized)
        .bind(payment.captured)
        .bind(payment.refunded)
        .bind(payment.refund_pending)
        .bind(payment.charged_back)
        .bind(&payment.failure_reason)
        .bind(record.occurred_at)
        .execute(&mut *conn)
        .await?;
        expect_row(result, record)?;
    }
    if analytics_enabled {
        let order: Option<Option<uuid::Uuid>> = sqlx::query_scalar(
            "SELECT order_id FROM payments WHERE tenant_id = $1 AND payment_id = $2",
        )
        .bind(&record.tenant_id)
        .bind(payment_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(Some(order_id)) = order {
            analytics::queue_order_summary(conn, &record.tenant_id, order_id).await?;
        }
    }
    Ok(())
}

/// Applies a batch's payment events set-based: reads the payments they touch, folds, writes.
pub(super) async fn apply_batch(
    conn: &mut PgConnection,
    events: &Events<'_, PaymentEvent>,
) -> Result<(), ProjectionError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut keys = HashSet::new();
    for (record, _) in events {
        let payment_id = uuid_id(record)?;
        ids.push(payment_id);
        if continues_stream(record) {
            keys.insert((record.tenant_id.as_str(), payment_id));
        }
    }
    let keys: Vec<serde_json::Value> = keys
        .into_iter()
        .map(|(tenant_id, payment_id)| json!({"tenant_id": tenant_id, "payment_id": payment_id}))
        .collect();
    let stored: Vec<PaymentTableRow> = PAYMENTS.fetch(conn, PAYMENTS.key, &keys).await?;
    let mut rows: HashMap<(String, Uuid), PaymentTableRow> = stored
        .into_iter()
        .map(|row| ((row.tenant_id.clone(), row.payment_id), row))
        .collect();
    let mut changed = HashSet::new();
    for ((record, event), payment_id) in events.iter().zip(ids) {
        let key = (record.tenant_id.clone(), payment_id);
        if let PaymentEvent::Created(e) = event {
            if rows.contains_key(&key) {
                return Err(inconsistent(record, "the payment already exists"));
            }
            rows.insert(key.clone(), created(record, payment_id, e));
        } else {
            let row = rows.get_mut(&key).ok_or_else(|| no_payment(record))?;
            fold(row, record, event)?;
        }
        changed.insert(key);
    }
    let changed: Vec<&PaymentTableRow> = changed.iter().filter_map(|key| rows.get(key)).collect();
    PAYMENTS.upsert(conn, &changed).await
}
