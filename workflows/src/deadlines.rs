//! Durable deadlines (ES-5): one row per (tenant, aggregate, key, kind) in `deadlines`.
//!
//! - Scheduling is an upsert that keeps a row that already fired, so re-processing the event
//!   that scheduled a deadline never re-arms it; a not-yet-fired row takes the newest due time.
//! - The runner selects due, unfired rows (`FOR UPDATE SKIP LOCKED`, so concurrent runners split
//!   the work), issues the deadline's command with the idempotency key
//!   `deadline:{aggregate}:{key}:{kind}` and marks the row fired, one row per short
//!   transaction. A crash between the command and the mark re-fires the same key: the store
//!   replays the first outcome, so the command takes effect exactly once.
//! - A command refused because the aggregate moved on (a paid order, a closed campaign) counts
//!   as fired: a late fire after a terminal state does nothing.
//! - Transactions are kept short on purpose: an open transaction holds back the global log's
//!   horizon that every log tailer (relay, process managers) waits for.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::engine::Cause;
use crate::error::WorkflowError;

/// What a deadline does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadlineKind {
    /// Expire an unpaid order (`order`, key = order id).
    OrderExpiry,
    /// Expire due reservations on an inventory stream (`inventory`, key = `{sku}:{location}`);
    /// one row per reservation.
    ReservationExpiry(Uuid),
    /// Start a scheduled campaign.
    CampaignStart,
    /// Close, or fail, a campaign at its end time.
    CampaignEnd,
    /// Let an uncaptured authorization lapse (`payment`).
    AuthorizationExpiry,
}

impl DeadlineKind {
    pub fn aggregate_type(self) -> &'static str {
        match self {
            Self::OrderExpiry => "order",
            Self::ReservationExpiry(_) => "inventory",
            Self::CampaignStart | Self::CampaignEnd => "campaign",
            Self::AuthorizationExpiry => "payment",
        }
    }

    pub fn name(self) -> String {
        match self {
            Self::OrderExpiry => "order_expiry".to_owned(),
            Self::ReservationExpiry(id) => format!("reservation_expiry:{id}"),
            Self::CampaignStart => "campaign_start".to_owned(),
            Self::CampaignEnd => "campaign_end".to_owned(),
            Self::AuthorizationExpiry => "authorization_expiry".to_owned(),
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "order_expiry" => Self::OrderExpiry,
            "campaign_start" => Self::CampaignStart,
            "campaign_end" => Self::CampaignEnd,
            "authorization_expiry" => Self::AuthorizationExpiry,
            other => Self::ReservationExpiry(
                other
                    .strip_prefix("reservation_expiry:")
                    .and_then(|id| Uuid::parse_str(id).ok())?,
            ),
        })
    }
}

/// A due deadline, as read by the runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DueDeadline {
    pub kind: DeadlineKind,
    pub aggregate_key: String,
    pub due_at: DateTime<Utc>,
    pub cause: Cause,
}

/// A `deadlines` row: tenant, aggregate type, key, kind, due time, correlation, causation.
type DeadlineRow = (String, String, String, String, DateTime<Utc>, Uuid, Uuid);

/// The `deadlines` table.
#[derive(Debug, Clone)]
pub(crate) struct Deadlines {
    pool: PgPool,
}

impl Deadlines {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Arms (or re-times, while unfired) the deadline `kind` of `aggregate_key` for `cause`.
    pub async fn schedule(
        &self,
        cause: &Cause,
        kind: DeadlineKind,
        aggregate_key: &str,
        due_at: DateTime<Utc>,
    ) -> Result<(), WorkflowError> {
        sqlx::query(
            "INSERT INTO deadlines \
               (tenant_id, aggregate_type, aggregate_key, kind, due_at, correlation_id, causation_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, aggregate_type, aggregate_key, kind) DO UPDATE \
               SET due_at = EXCLUDED.due_at \
               WHERE deadlines.fired_at IS NULL",
        )
        .bind(&cause.tenant)
        .bind(kind.aggregate_type())
        .bind(aggregate_key)
        .bind(kind.name())
        .bind(due_at)
        .bind(cause.correlation_id)
        .bind(cause.causation_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether any deadline is due at `now` and not fired yet.
    pub async fn any_due(&self, now: DateTime<Utc>) -> Result<bool, WorkflowError> {
        let due = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM deadlines WHERE fired_at IS NULL AND due_at <= $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(due)
    }

    /// Claims the next due deadline, runs `fire` on it and records its outcome, in one short
    /// transaction (the row lock keeps other runners off it). `None` when nothing is due.
    pub async fn fire_next<F, Fut>(
        &self,
        now: DateTime<Utc>,
        fire: F,
    ) -> Result<Option<String>, WorkflowError>
    where
        F: FnOnce(DueDeadline) -> Fut,
        Fut: Future<Output = Result<String, WorkflowError>>,
    {
        let mut tx = self.pool.begin().await?;
        let row: Option<DeadlineRow> =
            sqlx::query_as(
                "SELECT tenant_id, aggregate_type, aggregate_key, kind, due_at, correlation_id, causation_id \
                 FROM deadlines WHERE fired_at IS NULL AND due_at <= $1 \
                 ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            )
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((
            tenant,
            aggregate_type,
            aggregate_key,
            kind_name,
            due_at,
            correlation,
            causation,
        )) = row
        else {
            return Ok(None);
        };
        let outcome = match DeadlineKind::parse(&kind_name) {
            Some(kind) => {
                let cause = Cause {
                    key_prefix: format!("deadline:{aggregate_type}:{aggregate_key}:{kind_name}"),
                    tenant: tenant.clone(),
                    causation_id: causation,
                    correlation_id: correlation,
                };
                fire(DueDeadline {
                    kind,
                    aggregate_key: aggregate_key.clone(),
                    due_at,
                    cause,
                })
                .await?
            }
            None => format!("unknown deadline kind {kind_name:?}"),
        };
        sqlx::query(
            "UPDATE deadlines SET fired_at = $5, outcome = $6 \
             WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_key = $3 AND kind = $4",
        )
        .bind(&tenant)
        .bind(&aggregate_type)
        .bind(&aggregate_key)
        .bind(&kind_name)
        .bind(now)
        .bind(&outcome)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_every_kind_when_named_and_parsed_then_it_round_trips() {
        for kind in [
            DeadlineKind::OrderExpiry,
            DeadlineKind::ReservationExpiry(Uuid::from_u128(7)),
            DeadlineKind::CampaignStart,
            DeadlineKind::CampaignEnd,
            DeadlineKind::AuthorizationExpiry,
        ] {
            assert_eq!(DeadlineKind::parse(&kind.name()), Some(kind));
        }
        assert_eq!(DeadlineKind::parse("reservation_expiry:nope"), None);
    }
}
