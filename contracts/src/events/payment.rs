//! Payment events (§3.2 of the commerce anchors): one payment intent from creation through
//! authorization, capture, refunds, voids, expiry and chargebacks, plus deduplicated provider events.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::Money;

super::event_set! {
    /// Everything that can happen to a payment.
    pub enum PaymentEvent for "payment" {
        Created(PaymentCreated) = "payment.created", version 1;
        RequiresAction(PaymentRequiresAction) = "payment.requires_action", version 1;
        Authorized(PaymentAuthorized) = "payment.authorized", version 1;
        Captured(PaymentCaptured) = "payment.captured", version 1;
        Succeeded(PaymentSucceeded) = "payment.succeeded", version 1;
        Failed(PaymentFailed) = "payment.failed", version 1;
        Voided(PaymentVoided) = "payment.voided", version 1;
        Expired(PaymentExpired) = "payment.expired", version 1;
        RefundRequested(PaymentRefundRequested) = "payment.refund_requested", version 1;
        Refunded(PaymentRefunded) = "payment.refunded", version 1;
        RefundFailed(PaymentRefundFailed) = "payment.refund_failed", version 1;
        ChargedBack(PaymentChargedBack) = "payment.charged_back", version 1;
        ProviderEventRecorded(PaymentProviderEventRecorded) = "payment.provider_event_recorded", version 1;
    }
}

/// Whether the gateway captures at authorization or the engine captures later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CapturePolicy {
    /// Authorize and capture in one step (checkout).
    Automatic,
    /// Authorize now, capture later (campaign participants, captured when the campaign closes).
    Manual,
}

/// What a payment pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentPurpose {
    Order {
        order_id: Uuid,
    },
    CampaignParticipant {
        campaign_id: Uuid,
        participant_id: Uuid,
    },
}

/// A payment intent was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCreated {
    pub payment_id: Uuid,
    pub purpose: PaymentPurpose,
    pub customer_id: String,
    pub amount: Money,
    /// Payment method token, e.g. `pm_card_ok`.
    pub method: String,
    /// Gateway name, e.g. `sandbox`.
    pub provider: String,
    pub capture_policy: CapturePolicy,
    pub created_at: DateTime<Utc>,
}

/// The provider needs the customer to act (3-D Secure and the like); a webhook settles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRequiresAction {
    pub provider_ref: String,
    pub at: DateTime<Utc>,
}

/// Funds are held; they must be captured before `auth_expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentAuthorized {
    pub amount: Money,
    pub provider_ref: String,
    pub auth_expires_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// Part or all of the authorization was captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCaptured {
    pub amount: Money,
    pub total_captured: Money,
    pub at: DateTime<Utc>,
}

/// The whole amount is captured (the seed's success event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentSucceeded {
    pub amount: Money,
    pub at: DateTime<Utc>,
}

/// The provider declined or the attempt errored; terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentFailed {
    pub reason: String,
    pub provider_ref: Option<String>,
    pub at: DateTime<Utc>,
}

/// The uncaptured part of the authorization was released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentVoided {
    pub released: Money,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The authorization lapsed before any capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentExpired {
    pub released: Money,
    pub at: DateTime<Utc>,
}

/// A refund was asked of the provider; the amount counts as pending until it settles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefundRequested {
    pub refund_id: Uuid,
    pub amount: Money,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A refund settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefunded {
    pub refund_id: Uuid,
    pub amount: Money,
    pub total_refunded: Money,
    pub at: DateTime<Utc>,
}

/// A refund was refused by the provider; its pending amount is freed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentRefundFailed {
    pub refund_id: Uuid,
    pub amount: Money,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The card holder disputed the charge and the provider took the money back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentChargedBack {
    pub amount: Money,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A provider webhook was applied; its id is remembered so a redelivery changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentProviderEventRecorded {
    pub provider_event_id: String,
    /// The provider's event kind, e.g. `payment.authorized`.
    pub kind: String,
    pub at: DateTime<Utc>,
}
