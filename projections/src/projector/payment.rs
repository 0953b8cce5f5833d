//! Payment events → `payments` (amounts and status folded by [`PaymentRow::apply`]). A payment
//! made for an order also refreshes that order's analyst summary (its `payment_status` changed).

use commerce_contracts::events::{CapturePolicy, PaymentEvent, PaymentPurpose};
use sqlx::PgConnection;

use super::{expect_row, inconsistent, uuid_id};
use crate::analytics;
use crate::error::ProjectionError;
use crate::event::EventRecord;
use crate::facets::PaymentRow;

/// status, amount, authorized, captured, refunded, refund pending, charged back, failure reason.
type PaymentColumns = (String, i64, i64, i64, i64, i64, i64, Option<String>);

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &PaymentEvent,
    analytics_enabled: bool,
) -> Result<(), ProjectionError> {
    let payment_id = uuid_id(record)?;
    if let PaymentEvent::Created(created) = event {
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
        let inserted = sqlx::query(
            "INSERT INTO payments (tenant_id, payment_id, order_id, campaign_id, participant_id,
                 customer_id, method, provider, capture_policy, status, currency, amount_minor,
                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'created', $10, $11, $12, $13)
             ON CONFLICT DO NOTHING",
        )
        .bind(&record.tenant_id)
        .bind(payment_id)
        .bind(order_id)
        .bind(campaign_id)
        .bind(participant_id)
        .bind(&created.customer_id)
        .bind(&created.method)
        .bind(&created.provider)
        .bind(policy)
        .bind(&created.amount.currency)
        .bind(created.amount.amount_minor)
        .bind(created.created_at)
        .bind(record.occurred_at)
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
        ) = row.ok_or_else(|| inconsistent(record, "the payment does not exist"))?;
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
