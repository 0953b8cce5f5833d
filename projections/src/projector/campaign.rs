//! Campaign events → `campaigns` and `campaign_participants`.
//!
//! Campaign status: created → `scheduled`, then `active`, `successful`, `closed`, `failed` or
//! `cancelled` as the events say. Participant status: `joined` → `paid` → `ordered`, or `dropped`,
//! `left`, `refunded`. The participant counts of the API are computed from the participants when
//! queried (see [`crate::queries`]).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use commerce_contracts::events::{CampaignCreated, CampaignEvent, CampaignJoined};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::{Events, continues_stream};
use super::rows::{Table, micros, micros_opt};
use super::{expect_row, inconsistent, no_row, uuid_id};
use crate::error::ProjectionError;
use crate::event::EventRecord;

/// A `campaigns` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CampaignRow {
    tenant_id: String,
    campaign_id: Uuid,
    sku: String,
    product_id: Option<Uuid>,
    location: String,
    status: String,
    currency: String,
    group_price_minor: i64,
    original_price_minor: i64,
    min_participants: i64,
    max_participants: i64,
    per_customer_limit: i64,
    per_order_limit: i64,
    #[serde(serialize_with = "micros")]
    start_time: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    end_time: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    updated_at: DateTime<Utc>,
}

const CAMPAIGNS: Table = Table {
    name: "campaigns",
    key: &["tenant_id", "campaign_id"],
    columns: &[
        "tenant_id",
        "campaign_id",
        "sku",
        "product_id",
        "location",
        "status",
        "currency",
        "group_price_minor",
        "original_price_minor",
        "min_participants",
        "max_participants",
        "per_customer_limit",
        "per_order_limit",
        "start_time",
        "end_time",
        "created_at",
        "updated_at",
    ],
};

/// A `campaign_participants` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ParticipantRow {
    tenant_id: String,
    campaign_id: Uuid,
    participant_id: Uuid,
    customer_id: String,
    quantity: i64,
    currency: String,
    unit_price_minor: i64,
    amount_minor: i64,
    status: String,
    is_leader: bool,
    payment_id: Option<Uuid>,
    order_id: Option<Uuid>,
    #[serde(serialize_with = "micros_opt")]
    paid_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "micros")]
    joined_at: DateTime<Utc>,
    #[serde(serialize_with = "micros")]
    updated_at: DateTime<Utc>,
}

const PARTICIPANTS: Table = Table {
    name: "campaign_participants",
    key: &["tenant_id", "campaign_id", "participant_id"],
    columns: &[
        "tenant_id",
        "campaign_id",
        "participant_id",
        "customer_id",
        "quantity",
        "currency",
        "unit_price_minor",
        "amount_minor",
        "status",
        "is_leader",
        "payment_id",
        "order_id",
        "paid_at",
        "joined_at",
        "updated_at",
    ],
};

/// What one campaign event does: the rule both the per-event and the set-based path apply.
/// Every change but the creation also touches the campaign (its `updated_at`).
enum Change {
    Create(CampaignRow),
    /// Sets the campaign's status, or keeps it (`None`).
    Campaign(Option<&'static str>),
    Join(ParticipantRow),
    Participant {
        participant_id: Uuid,
        update: ParticipantUpdate,
        /// A participant who takes over the lead (a leader left).
        new_leader: Option<Uuid>,
    },
}

/// A participant's new status and what else the event sets on the row.
struct ParticipantUpdate {
    status: &'static str,
    payment_id: Option<Uuid>,
    paid_at: Option<DateTime<Utc>>,
    order_id: Option<Uuid>,
    became_leader: bool,
    /// Leaving gives up the lead.
    gave_up_lead: bool,
}

impl ParticipantUpdate {
    fn status(status: &'static str) -> Self {
        Self {
            status,
            payment_id: None,
            paid_at: None,
            order_id: None,
            became_leader: false,
            gave_up_lead: false,
        }
    }

    fn apply(&self, row: &mut ParticipantRow, at: DateTime<Utc>) {
        row.status = self.status.to_owned();
        row.payment_id = self.payment_id.or(row.payment_id);
        row.paid_at = self.paid_at.or(row.paid_at);
        row.order_id = self.order_id.or(row.order_id);
        row.is_leader = (row.is_leader || self.became_leader) && !self.gave_up_lead;
        row.updated_at = at;
    }
}

fn change(record: &EventRecord, campaign_id: Uuid, event: &CampaignEvent) -> Change {
    let participant = |participant_id, update| Change::Participant {
        participant_id,
        update,
        new_leader: None,
    };
    match event {
        CampaignEvent::Created(e) => Change::Create(created(record, campaign_id, e)),
        CampaignEvent::Started(_) => Change::Campaign(Some("active")),
        CampaignEvent::Successful(_) => Change::Campaign(Some("successful")),
        CampaignEvent::Closed(_) => Change::Campaign(Some("closed")),
        CampaignEvent::Failed(_) => Change::Campaign(Some("failed")),
        CampaignEvent::Cancelled(_) => Change::Campaign(Some("cancelled")),
        CampaignEvent::Joined(e) => Change::Join(joined(record, campaign_id, e)),
        CampaignEvent::ParticipantPaid(e) => participant(
            e.participant_id,
            ParticipantUpdate {
                payment_id: Some(e.payment_id),
                paid_at: Some(e.at),
                became_leader: e.became_leader,
                ..ParticipantUpdate::status("paid")
            },
        ),
        CampaignEvent::ParticipantDropped(e) => {
            participant(e.participant_id, ParticipantUpdate::status("dropped"))
        }
        CampaignEvent::ParticipantLeft(e) => Change::Participant {
            participant_id: e.participant_id,
            update: ParticipantUpdate {
                gave_up_lead: true,
                ..ParticipantUpdate::status("left")
            },
            new_leader: e.new_leader,
        },
        CampaignEvent::ParticipantOrdered(e) => participant(
            e.participant_id,
            ParticipantUpdate {
                order_id: Some(e.order_id),
                ..ParticipantUpdate::status("ordered")
            },
        ),
        CampaignEvent::ParticipantRefunded(e) => participant(
            e.participant_id,
            ParticipantUpdate {
                payment_id: e.payment_id,
                ..ParticipantUpdate::status("refunded")
            },
        ),
    }
}

fn created(record: &EventRecord, campaign_id: Uuid, e: &CampaignCreated) -> CampaignRow {
    CampaignRow {
        tenant_id: record.tenant_id.clone(),
        campaign_id,
        sku: e.sku.clone(),
        product_id: e.product_id,
        location: e.location.clone(),
        status: "scheduled".to_owned(),
        currency: e.group_price.currency.clone(),
        group_price_minor: e.group_price.amount_minor,
        original_price_minor: e.original_price.amount_minor,
        min_participants: i64::from(e.min_participants),
        max_participants: i64::from(e.max_participants),
        per_customer_limit: i64::from(e.per_customer_limit),
        per_order_limit: i64::from(e.per_order_limit),
        start_time: e.start_time,
        end_time: e.end_time,
        created_at: e.created_at,
        updated_at: record.occurred_at,
    }
}

fn joined(record: &EventRecord, campaign_id: Uuid, e: &CampaignJoined) -> ParticipantRow {
    ParticipantRow {
        tenant_id: record.tenant_id.clone(),
        campaign_id,
        participant_id: e.participant_id,
        customer_id: e.customer_id.clone(),
        quantity: i64::from(e.quantity),
        currency: e.amount.currency.clone(),
        unit_price_minor: e.unit_price.amount_minor,
        amount_minor: e.amount.amount_minor,
        status: "joined".to_owned(),
        is_leader: false,
        payment_id: None,
        order_id: None,
        paid_at: None,
        joined_at: e.joined_at,
        updated_at: record.occurred_at,
    }
}

pub(super) async fn apply(
    conn: &mut PgConnection,
    record: &EventRecord,
    event: &CampaignEvent,
) -> Result<(), ProjectionError> {
    let campaign_id = uuid_id(record)?;
    match change(record, campaign_id, event) {
        Change::Create(row) => {
            let inserted = sqlx::query(
                "INSERT INTO campaigns (tenant_id, campaign_id, sku, product_id, location, status,
                     currency, group_price_minor, original_price_minor, min_participants,
                     max_participants, per_customer_limit, per_order_limit, start_time, end_time,
                     created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&row.tenant_id)
            .bind(row.campaign_id)
            .bind(&row.sku)
            .bind(row.product_id)
            .bind(&row.location)
            .bind(&row.status)
            .bind(&row.currency)
            .bind(row.group_price_minor)
            .bind(row.original_price_minor)
            .bind(row.min_participants)
            .bind(row.max_participants)
            .bind(row.per_customer_limit)
            .bind(row.per_order_limit)
            .bind(row.start_time)
            .bind(row.end_time)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *conn)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(inconsistent(record, "the campaign already exists"));
            }
        }
        Change::Campaign(status) => set_status(conn, record, campaign_id, status).await?,
        Change::Join(row) => {
            set_status(conn, record, campaign_id, None).await?;
            sqlx::query(
                "INSERT INTO campaign_participants (tenant_id, campaign_id, participant_id,
                     customer_id, quantity, currency, unit_price_minor, amount_minor, status,
                     joined_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&row.tenant_id)
            .bind(row.campaign_id)
            .bind(row.participant_id)
            .bind(&row.customer_id)
            .bind(row.quantity)
            .bind(&row.currency)
            .bind(row.unit_price_minor)
            .bind(row.amount_minor)
            .bind(&row.status)
            .bind(row.joined_at)
            .bind(row.updated_at)
            .execute(&mut *conn)
            .await?;
        }
        Change::Participant {
            participant_id,
            update,
            new_leader,
        } => {
            let result = sqlx::query(
                "UPDATE campaign_participants SET status = $4,
                     payment_id = coalesce($5, payment_id), paid_at = coalesce($6, paid_at),
                     order_id = coalesce($7, order_id),
                     is_leader = (is_leader OR $8) AND NOT $9, updated_at = $10
                 WHERE tenant_id = $1 AND campaign_id = $2 AND participant_id = $3",
            )
            .bind(&record.tenant_id)
            .bind(campaign_id)
            .bind(participant_id)
            .bind(update.status)
            .bind(update.payment_id)
            .bind(update.paid_at)
            .bind(update.order_id)
            .bind(update.became_leader)
            .bind(update.gave_up_lead)
            .bind(record.occurred_at)
            .execute(&mut *conn)
            .await?;
            expect_row(result, record)?;
            set_status(conn, record, campaign_id, None).await?;
            if let Some(leader) = new_leader {
                let result = sqlx::query(
                    "UPDATE campaign_participants SET is_leader = true, updated_at = $4
                     WHERE tenant_id = $1 AND campaign_id = $2 AND participant_id = $3",
                )
                .bind(&record.tenant_id)
                .bind(campaign_id)
                .bind(leader)
                .bind(record.occurred_at)
                .execute(&mut *conn)
                .await?;
                expect_row(result, record)?;
            }
        }
    }
    Ok(())
}

/// Sets the campaign's status (`None` keeps it) and `updated_at`.
async fn set_status(
    conn: &mut PgConnection,
    record: &EventRecord,
    campaign_id: Uuid,
    status: Option<&str>,
) -> Result<(), ProjectionError> {
    let result = sqlx::query(
        "UPDATE campaigns SET status = coalesce($3, status), updated_at = $4
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

type CampaignKey = (String, Uuid);
type ParticipantKey = (String, Uuid, Uuid);

/// The campaigns and participants a batch touches, in memory.
#[derive(Default)]
struct Rows {
    campaigns: HashMap<CampaignKey, CampaignRow>,
    participants: HashMap<ParticipantKey, ParticipantRow>,
    changed_campaigns: HashSet<CampaignKey>,
    changed_participants: HashSet<ParticipantKey>,
}

impl Rows {
    /// Applies `change` as [`apply`] does in SQL.
    fn apply(
        &mut self,
        record: &EventRecord,
        campaign_id: Uuid,
        change: Change,
    ) -> Result<(), ProjectionError> {
        let campaign = (record.tenant_id.clone(), campaign_id);
        let at = record.occurred_at;
        match change {
            Change::Create(row) => {
                if self.campaigns.contains_key(&campaign) {
                    return Err(inconsistent(record, "the campaign already exists"));
                }
                self.campaigns.insert(campaign.clone(), row);
                self.changed_campaigns.insert(campaign);
                return Ok(());
            }
            Change::Campaign(status) => return self.touch(record, campaign, status),
            Change::Join(row) => {
                self.touch(record, campaign, None)?;
                let key = (row.tenant_id.clone(), row.campaign_id, row.participant_id);
                if self.participants.contains_key(&key) {
                    return Err(inconsistent(record, "the participant already exists"));
                }
                self.participants.insert(key.clone(), row);
                self.changed_participants.insert(key);
            }
            Change::Participant {
                participant_id,
                update,
                new_leader,
            } => {
                let key = (record.tenant_id.clone(), campaign_id, participant_id);
                let row = self
                    .participants
                    .get_mut(&key)
                    .ok_or_else(|| no_row(record))?;
                update.apply(row, at);
                self.changed_participants.insert(key);
                self.touch(record, campaign, None)?;
                if let Some(leader) = new_leader {
                    let key = (record.tenant_id.clone(), campaign_id, leader);
                    let row = self
                        .participants
                        .get_mut(&key)
                        .ok_or_else(|| no_row(record))?;
                    row.is_leader = true;
                    row.updated_at = at;
                    self.changed_participants.insert(key);
                }
            }
        }
        Ok(())
    }

    fn touch(
        &mut self,
        record: &EventRecord,
        campaign: CampaignKey,
        status: Option<&str>,
    ) -> Result<(), ProjectionError> {
        let row = self
            .campaigns
            .get_mut(&campaign)
            .ok_or_else(|| no_row(record))?;
        if let Some(status) = status {
            status.clone_into(&mut row.status);
        }
        row.updated_at = record.occurred_at;
        self.changed_campaigns.insert(campaign);
        Ok(())
    }
}

/// Applies a batch's campaign events set-based: reads the campaigns they touch and the
/// participants they name (one statement each, so a live batch on a campaign of thousands of
/// participants reads only the few it changes), folds, writes the changed rows (one statement
/// each).
pub(super) async fn apply_batch(
    conn: &mut PgConnection,
    events: &Events<'_, CampaignEvent>,
) -> Result<(), ProjectionError> {
    let mut changes = Vec::with_capacity(events.len());
    let mut campaign_keys = HashSet::new();
    let mut participant_keys = HashSet::new();
    for (record, event) in events {
        let campaign_id = uuid_id(record)?;
        if continues_stream(record) {
            campaign_keys.insert((record.tenant_id.as_str(), campaign_id));
        }
        let change = change(record, campaign_id, event);
        match &change {
            Change::Join(row) => {
                participant_keys.insert((
                    record.tenant_id.as_str(),
                    campaign_id,
                    row.participant_id,
                ));
            }
            Change::Participant {
                participant_id,
                new_leader,
                ..
            } => {
                participant_keys.insert((record.tenant_id.as_str(), campaign_id, *participant_id));
                if let Some(leader) = new_leader {
                    participant_keys.insert((record.tenant_id.as_str(), campaign_id, *leader));
                }
            }
            Change::Create(_) | Change::Campaign(_) => {}
        }
        changes.push((record, campaign_id, change));
    }
    let campaign_keys: Vec<serde_json::Value> = campaign_keys
        .into_iter()
        .map(|(tenant_id, campaign_id)| json!({"tenant_id": tenant_id, "campaign_id": campaign_id}))
        .collect();
    let participant_keys: Vec<serde_json::Value> = participant_keys
        .into_iter()
        .map(|(tenant_id, campaign_id, participant_id)| {
            json!({"tenant_id": tenant_id, "campaign_id": campaign_id, "participant_id": participant_id})
        })
        .collect();
    let campaigns: Vec<CampaignRow> = CAMPAIGNS.fetch(conn, CAMPAIGNS.key, &campaign_keys).await?;
    let participants: Vec<ParticipantRow> = PARTICIPANTS
        .fetch(conn, PARTICIPANTS.key, &participant_keys)
        .await?;
    let mut rows = Rows {
        campaigns: campaigns
            .into_iter()
            .map(|row| ((row.tenant_id.clone(), row.campaign_id), row))
            .collect(),
        participants: participants
            .into_iter()
            .map(|row| {
                (
                    (row.tenant_id.clone(), row.campaign_id, row.participant_id),
                    row,
                )
            })
            .collect(),
        ..Rows::default()
    };
    for (record, campaign_id, change) in changes {
        rows.apply(record, campaign_id, change)?;
    }
    let changed: Vec<&CampaignRow> = rows
        .changed_campaigns
        .iter()
        .filter_map(|key| rows.campaigns.get(key))
        .collect();
    CAMPAIGNS.upsert(conn, &changed).await?;
    let changed: Vec<&ParticipantRow> = rows
        .changed_participants
        .iter()
        .filter_map(|key| rows.participants.get(key))
        .collect();
    PARTICIPANTS.upsert(conn, &changed).await
}
