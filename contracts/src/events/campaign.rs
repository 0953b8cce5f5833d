//! Campaign events (§3.4 of the commerce anchors): social group buying, from creation through
//! joins, payments, the tipping point, closing with orders, or failure with refunds.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::Money;

super::event_set! {
    /// Everything that can happen to a group-buying campaign.
    pub enum CampaignEvent for "campaign" {
        Created(CampaignCreated) = "campaign.created", version 1;
        Started(CampaignStarted) = "campaign.started", version 1;
        Joined(CampaignJoined) = "campaign.joined", version 1;
        ParticipantPaid(CampaignParticipantPaid) = "campaign.participant_paid", version 1;
        ParticipantDropped(CampaignParticipantDropped) = "campaign.participant_dropped", version 1;
        ParticipantLeft(CampaignParticipantLeft) = "campaign.participant_left", version 1;
        Successful(CampaignSuccessful) = "campaign.successful", version 1;
        Closed(CampaignClosed) = "campaign.closed", version 1;
        ParticipantOrdered(CampaignParticipantOrdered) = "campaign.participant_ordered", version 1;
        Failed(CampaignFailed) = "campaign.failed", version 1;
        Cancelled(CampaignCancelled) = "campaign.cancelled", version 1;
        ParticipantRefunded(CampaignParticipantRefunded) = "campaign.participant_refunded", version 1;
    }
}

/// A campaign was configured and scheduled; its configuration never changes afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignCreated {
    pub campaign_id: Uuid,
    pub sku: String,
    pub product_id: Option<Uuid>,
    /// Inventory location the participants' stock is reserved at.
    pub location: String,
    pub group_price: Money,
    pub original_price: Money,
    pub min_participants: u32,
    pub max_participants: u32,
    pub per_customer_limit: u32,
    pub per_order_limit: u32,
    /// 0 disables virtual completion; otherwise the percentage of `min_participants` that suffices at the end.
    pub virtual_completion_pct: u8,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// The campaign reached its start time and accepts joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignStarted {
    pub at: DateTime<Utc>,
}

/// A customer joined at the group price (snapshotted here); stock and payment follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignJoined {
    pub participant_id: Uuid,
    pub customer_id: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub amount: Money,
    pub payment_method: Option<String>,
    pub joined_at: DateTime<Utc>,
}

/// A participant's payment was authorized or captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignParticipantPaid {
    pub participant_id: Uuid,
    pub payment_id: Uuid,
    pub amount: Money,
    /// The first paid participant leads the group.
    pub became_leader: bool,
    pub at: DateTime<Utc>,
}

/// An unpaid participant was dropped (payment failed, stock unavailable or reservation expired).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignParticipantDropped {
    pub participant_id: Uuid,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A participant left before the campaign succeeded; leadership passes on if needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignParticipantLeft {
    pub participant_id: Uuid,
    pub new_leader: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// The minimum of paid participants was reached (emitted once); joins stay open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignSuccessful {
    pub paid_participants: u32,
    /// Reached through virtual completion at the end time rather than real payments.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    pub at: DateTime<Utc>,
}

/// A successful campaign closed: every paid participant is captured and gets an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignClosed {
    pub paid_participants: u32,
    pub at: DateTime<Utc>,
}

/// A paid participant's order was created after the campaign closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignParticipantOrdered {
    pub participant_id: Uuid,
    pub order_id: Uuid,
    pub at: DateTime<Utc>,
}

/// The campaign ended below its minimum: every participant is refunded or voided and released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignFailed {
    pub paid_participants: u32,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// An operator cancelled the campaign; compensation as for failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignCancelled {
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A participant of a failed or cancelled campaign got their money back (or the hold voided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CampaignParticipantRefunded {
    pub participant_id: Uuid,
    pub payment_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}
