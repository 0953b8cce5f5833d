//! What can be asked of a payment: the engine's own commands and the provider's webhooks.

use chrono::{DateTime, Utc};
use commerce_contracts::events::{CapturePolicy, PaymentPurpose};
use commerce_domain::{CustomerId, Money, PaymentId};
use uuid::Uuid;

/// The commands of the Payment aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentCommand {
    /// Open a payment intent.
    Create(CreatePayment),
    /// The provider needs the customer to act (3-D Secure); a webhook will settle it.
    RecordRequiresAction {
        provider_ref: String,
        at: DateTime<Utc>,
    },
    /// The provider holds `amount` until `auth_expires_at`.
    RecordAuthorization {
        amount: Money,
        provider_ref: String,
        auth_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Capture part or all of the authorization.
    RecordCapture { amount: Money, at: DateTime<Utc> },
    /// The provider authorized and captured the whole amount at once (automatic capture policy).
    RecordCharge {
        provider_ref: String,
        at: DateTime<Utc>,
    },
    /// The provider declined the payment; terminal.
    RecordFailure {
        reason: String,
        provider_ref: Option<String>,
        at: DateTime<Utc>,
    },
    /// Release the uncaptured part of the authorization (or abandon an unauthorized intent).
    Void { reason: String, at: DateTime<Utc> },
    /// The authorization deadline passed with nothing captured.
    ExpireAuthorization { at: DateTime<Utc> },
    /// Ask the provider to give back part of the captured money.
    RequestRefund {
        refund_id: Uuid,
        amount: Money,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A requested refund went through.
    RecordRefundSettled { refund_id: Uuid, at: DateTime<Utc> },
    /// A requested refund was refused; its amount is refundable again.
    RecordRefundFailed {
        refund_id: Uuid,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The card holder disputed the charge and the provider took money back.
    RecordChargeback {
        amount: Money,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A provider webhook, deduplicated by its id.
    ApplyProviderEvent(ProviderEvent),
}

/// A new payment intent.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePayment {
    pub payment_id: PaymentId,
    pub purpose: PaymentPurpose,
    pub customer: CustomerId,
    /// Must be above zero; its currency is the order's or the campaign's (PAY-7).
    pub amount: Money,
    /// Payment method token, e.g. `pm_card_ok`.
    pub method: String,
    /// Gateway name, e.g. `sandbox`.
    pub provider: String,
    pub capture_policy: CapturePolicy,
    pub at: DateTime<Utc>,
}

/// One webhook delivery from the payment provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderEvent {
    /// The provider's unique id of the event: redeliveries carry the same id.
    pub provider_event_id: String,
    pub kind: ProviderEventKind,
    /// For `Authorized`, the amount held; for `Captured`, the **cumulative** amount captured so
    /// far (as providers report it). `None` means the payment's whole amount.
    pub amount: Option<Money>,
    pub provider_ref: Option<String>,
    pub at: DateTime<Utc>,
}

/// What a provider event says happened.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEventKind {
    RequiresAction,
    Authorized {
        auth_expires_at: DateTime<Utc>,
    },
    Captured,
    /// The whole amount is captured.
    Succeeded,
    Failed {
        reason: String,
    },
    RefundSucceeded {
        refund_id: Uuid,
    },
    RefundFailed {
        refund_id: Uuid,
        reason: String,
    },
}

impl ProviderEventKind {
    /// The kind's name as recorded in `payment.provider_event_recorded`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::RequiresAction => "payment.requires_action",
            Self::Authorized { .. } => "payment.authorized",
            Self::Captured => "payment.captured",
            Self::Succeeded => "payment.succeeded",
            Self::Failed { .. } => "payment.failed",
            Self::RefundSucceeded { .. } => "refund.succeeded",
            Self::RefundFailed { .. } => "refund.failed",
        }
    }
}
