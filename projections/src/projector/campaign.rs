//! Campaign events → `campaigns` and `campaign_participants`.
//!
//! Campaign status: created → `scheduled`, then `active`, `successful`, `closed`, `failed` or
//! `cancelled` as the events say. Participant status: `joined` → `paid` → `ordered`, or `dropped`,
//! `left`, `refunded`. The participant counts of the API are computed from the participants when
//! queried (see [`crate::queries`]).

use commerce_contracts::events::CampaignEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{expect_row, inconsistent, uuid_id};
use crate::error::ProjectionError;
use crate::event::EventRecord;

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &CampaignEvent,
) -> Result<(), ProjectionError> {
    let campaign_id = uuid_id(record)?;
    let (tenant, at) = (&record.tenant_id, record.occurred_at);
    match event {
        CampaignEvent::Created(e) => {
            let inserted = sqlx::query(
                "INSERT INTO campaigns (tenant_id, campaign_id, sku, product_id, location, status,
                     currency, group_price_minor, original_price_minor, min_participants,
                     max_participants, per_customer_limit, per_order_limit, start_time, end_time,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'scheduled', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(campaign_id)
            .bind(&e.sku)
            .bind(e.product_id)
            .bind(&e.location)
            .bind(&e.group_price.currency)
            .bind(e.group_price.amount_minor)
            .bind(e.original_price.amount_minor)
            .bind(i64::from(e.min_participants))
            .bind(i64::from(e.max_participants))
            .bind(i64::from(e.per_customer_limit))
            .bind(i64::from(e.per_order_limit))
            .bind(e.start_time)
            .bind(e.end_time)
            .bind(e.created_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the campaign already exists"));
            }
            return Ok(());
        }
        CampaignEvent::Started(_) => set_status(conn, record, campaign_id, "active").await?,
        CampaignEvent::Successful(_) => set_status(conn, record, campaign_id, "successful").await?,
        CampaignEvent::Closed(_) => set_status(conn, record, campaign_id, "closed").await?,
        CampaignEvent::Failed(_) => set_status(conn, record, campaign_id, "failed").await?,
        CampaignEvent::Cancelled(_) => set_status(conn, record, campaign_id, "cancelled").await?,
        CampaignEvent::Joined(e) => {
            set_status(conn, record, campaign_id, "").await?;
            sqlx::query(
                "INSERT INTO campaign_participants (tenant_id, campaign_id, participant_id,
                     customer_id, quantity, currency, unit_price_minor, amount_minor, status,
                     joined_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'joined', $9, $10)",
            )
            .bind(tenant)
            .bind(campaign_id)
            .bind(e.participant_id)
            .bind(&e.customer_id)
            .bind(i64::from(e.quantity))
            .bind(&e.amount.currency)
            .bind(e.unit_price.amount_minor)
            .bind(e.amount.amount_minor)
            .bind(e.joined_at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        CampaignEvent::ParticipantPaid(e) => {
            let result = sqlx::query(
                "UPDATE campaign_participants SET status = 'paid', payment_id = $4, paid_at = $5,
                     is_leader = is_leader OR $6, updated_at = $7
                 WHERE tenant_id = $1 AND campaign_id = $2 AND participant_id = $3",
            )
            .bind(tenant)
            .bind(campaign_id)
            .bind(e.participant_id)
            .bind(e.payment_id)
            .bind(e.at)
            .bind(e.became_leader)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            participant_updated(conn, record, campaign_id, result).await?;
        }
        CampaignEvent::ParticipantDropped(e) => {
            set_participant(conn, record, campaign_id, e.participant_id, "dropped").await?;
        }
        CampaignEvent::ParticipantLeft(e) => {
            set_participant(conn, record, campaign_id, e.participant_id, "left").await?;
            if let Some(leader) = e.new_leader {
                let result = sqlx::query(
                    "UPDATE campaign_participants SET is_leader = true, updated_at = $4
                     WHERE tenant_id = $1 AND campaign_id = $2 AND participant_id = $3",
                )
                .bind(tenant)
                .bind(campaign_id)
                .bind(leader)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                expect_row(result, record)?;
            }
        }
        CampaignEvent::ParticipantOrdered(e) => {
            let result = sqlx::query(
                "UPDATE campaign_participants SET status = 'ordered', order_id = $4, updated_at = $5
                 WHERE tenant_id = $1 AND campaign_id = $2 AND participant_id = $3",
            )
            .bind(tenant)
            .bind(campaign_id)
            .bind(e.participant_id)
            .bind(e.order_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            participant_updated(conn, record, campaign_id, result).await?;
        }
        CampaignEvent::ParticipantRefunded(e) => {
            let result = sqlx::query(
                "UPDATE campaign_participants SET status = 'refunded',
                     payment_id = coalesce($4, payment_id), updated_at = $5
                 WHERE tenant_id = $1 AND campaign_id = $2 AND participant_id = $3",
            )
            .bind(tenant)
            .bind(campaign_id)
            .bind(e.participant_id)
            .bind(e.payment_id)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            participant_updated(conn, record, campaign_id, result).await?;
        }
    }
    Ok(())
}

/// Sets the campaign's status (an empty `status` keeps it) and `updated_at`.
async fn set_status(
    conn: &mut PgConnection,
    record: &EventRecord,
    campaign_id: Uuid,
    status: &str,
) -> Result<(), ProjectionError> {
    let result = sqlx::query(
        "UPDATE campaigns SET status = coalesce(nullif($3, ''), status), updated_at = $4
         WHERE tenant_id = $1 AND campaign_id = $2",
    )
    .bind(&record.tenant_id)
    .bind(campaign_id)
    .bind(status)
    .bind(record.occurred_at)
    .execute(&mut *conn)
    .await?;
    expect_row(result, record)
}

/// Sets a participant's status (leaving also gives up the lead).
async fn set_participant(
    conn: &mut PgConnection,
    record: &EventRecord,
    campaign_id: Uuid,
    participant_id: Uuid,
    status: &str,
) -> Result<(), ProjectionError> {
    let result = sqlx::query(
        "UPDATE campaign_participants SET status = $4,
             is_leader = is_leader AND $4 <> 'left', updated_at = $5
         WHERE tenant_id = $1 AND campaign_id = $2 AND participant_id = $3",
    )
    .bind(&record.tenant_id)
    .bind(campaign_id)
    .bind(participant_id)
    .bind(status)
    .bind(record.occurred_at)
    .execute(&mut *conn)
    .await?;
    participant_updated(conn, record, campaign_id, result).await
}

/// Checks a participant update touched its row, and touches the campaign.
async fn participant_updated(
    conn: &mut PgConnection,
    record: &EventRecord,
    campaign_id: Uuid,
    result: sqlx::postgres::PgQueryResult,
) -> Result<(), ProjectionError> {
    expect_row(result, record)?;
    set_status(conn, record, campaign_id, "").await
}
