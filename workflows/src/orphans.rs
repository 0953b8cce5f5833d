//! Money a provider took for a payment the engine had already closed.
//!
//! A customer can finish 3-D Secure just before the compensation's void reaches the provider:
//! the provider then captures (or holds) money for a payment the engine shows voided, failed
//! or expired, and the late webhook finds a payment that takes no event (PAY-9). The webhook
//! route records such a webhook here ([`record`]); the process managers' leader gives the
//! money back at the provider (`settle_due`: a refund of what was captured, a void of a
//! hold), keyed by the provider event, and marks the row settled. A provider that does not
//! answer is asked again after a pause that grows with each failed attempt (5 s more each
//! time, at most 5 minutes). The passes run beside the leader's loop, one at a time, so a
//! slow provider never holds up the reactions.

use commerce_domain::{Currency, Money, PaymentId};
use sqlx::PgPool;

use crate::engine::Engine;
use crate::error::WorkflowError;

/// Rows given back per pass, at most: each is a provider call.
const SETTLE_PER_PASS: i64 = 16;
/// A row whose provider call failed waits this long per failed attempt (up to
/// [`RETRY_ATTEMPTS_CAP`] of them) before it is tried again, so a provider outage is not
/// asked about every poll.
const RETRY_STEP_SECS: i32 = 5;
const RETRY_ATTEMPTS_CAP: i32 = 60;

/// A provider's word about a closed payment, as its webhook carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanedFunds {
    pub tenant: String,
    pub provider_event_id: String,
    pub payment_id: PaymentId,
    pub provider_ref: String,
    /// What the provider captured; `None` when it only holds an authorization.
    pub captured: Option<Money>,
    /// The currency of `captured`, else the payment's.
    pub currency: Currency,
}

/// Records `funds` once per provider event; a redelivery changes nothing.
///
/// # Errors
/// The database's: the webhook must then fail, so the provider delivers it again.
pub async fn record(pool: &PgPool, funds: &OrphanedFunds) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_orphans \
           (tenant_id, provider_event_id, payment_id, provider_ref, captured_minor, currency) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, provider_event_id) DO NOTHING",
    )
    .bind(&funds.tenant)
    .bind(&funds.provider_event_id)
    .bind(funds.payment_id.as_uuid())
    .bind(&funds.provider_ref)
    .bind(funds.captured.map(|money| money.amount_minor()))
    .bind(funds.currency.code())
    .execute(pool)
    .await?;
    Ok(())
}

/// An unsettled row: tenant, provider event, provider reference, captured minor units,
/// currency.
type OrphanRow = (String, String, String, Option<i64>, String);

/// Gives back, at the provider, what the oldest unsettled rows hold. A failed provider call
/// (or a row that cannot be read back) is recorded on its row, which is tried again after a
/// pause that grows with its failed attempts.
pub(crate) async fn settle_due(engine: &Engine) -> Result<(), WorkflowError> {
    let rows: Vec<OrphanRow> = sqlx::query_as(
        "SELECT tenant_id, provider_event_id, provider_ref, captured_minor, currency \
         FROM provider_orphans \
         WHERE settled_at IS NULL \
           AND (attempted_at IS NULL \
                OR attempted_at + make_interval(secs => $2 * least(attempts, $3)) <= now()) \
         ORDER BY recorded_at LIMIT $1",
    )
    .bind(SETTLE_PER_PASS)
    .bind(RETRY_STEP_SECS)
    .bind(RETRY_ATTEMPTS_CAP)
    .fetch_all(&engine.pool)
    .await?;
    for (tenant, provider_event_id, provider_ref, captured_minor, currency) in rows {
        let key = format!("orphan:{provider_event_id}");
        let failure = match captured_minor {
            Some(minor) => match Currency::from_code(&currency) {
                Ok(currency) => engine
                    .gateway
                    .refund(&provider_ref, Money::new(minor, currency), &key)
                    .await
                    .err()
                    .map(|error| error.to_string()),
                Err(reason) => Some(reason.to_string()),
            },
            None => engine
                .gateway
                .void(&provider_ref, &key)
                .await
                .err()
                .map(|error| error.to_string()),
        };
        sqlx::query(
            "UPDATE provider_orphans SET \
               settled_at = CASE WHEN $3::text IS NULL THEN now() END, \
               attempts = attempts + 1, attempted_at = now(), last_error = $3 \
             WHERE tenant_id = $1 AND provider_event_id = $2",
        )
        .bind(&tenant)
        .bind(&provider_event_id)
        .bind(&failure)
        .execute(&engine.pool)
        .await?;
        match failure {
            None => {
                tracing::info!(%tenant, %provider_event_id, %provider_ref, "workflows: money a provider took for a closed payment given back");
            }
            Some(error) => {
                tracing::warn!(%tenant, %provider_event_id, %error, "workflows: orphaned provider funds not given back yet");
            }
        }
    }
    Ok(())
}
