//! The folded state of a payment: a ledger of amounts (authorized, captured, voided, refunded,
//! pending refunds, charged back) plus a lifecycle phase, from which the API status is derived.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use commerce_contracts::events::{CapturePolicy, PaymentEvent, PaymentPurpose};
use commerce_domain::{Currency, Money, PaymentId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The API status of a payment, derived from its phase and amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Created,
    RequiresAction,
    Authorized,
    PartiallyCaptured,
    Captured,
    PartiallyRefunded,
    Refunded,
    Voided,
    Failed,
    Expired,
}

impl PaymentStatus {
    /// The status string of the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::RequiresAction => "requires_action",
            Self::Authorized => "authorized",
            Self::PartiallyCaptured => "partially_captured",
            Self::Captured => "captured",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Voided => "voided",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    /// Terminal statuses absorb every later command (PAY-9).
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Refunded | Self::Voided | Self::Failed | Self::Expired
        )
    }
}

/// Where the intent is with the provider; amounts refine `Authorized` into the API statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Phase {
    Created,
    RequiresAction,
    /// Funds were authorized at least once; captures, voids and refunds are in the amounts.
    Authorized,
    Failed,
    /// Voided before anything was captured.
    Voided,
    Expired,
}

/// A refund asked of the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Refund {
    pub(super) amount: i64,
    pub(super) outcome: RefundOutcome,
}

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundOutcome {
    Pending,
    Settled,
    Failed,
}

/// A payment, folded from its events. All amounts are minor units of `currency`, never negative,
/// with `captured + voided ≤ authorized ≤ amount` and
/// `refunded + refund_pending + charged_back ≤ captured`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub(super) payment_id: Option<PaymentId>,
    pub(super) phase: Option<Phase>,
    pub(super) purpose: Option<PaymentPurpose>,
    pub(super) customer_id: String,
    pub(super) currency: Option<Currency>,
    pub(super) method: String,
    pub(super) provider: String,
    pub(super) capture_policy: Option<CapturePolicy>,
    pub(super) provider_ref: Option<String>,
    pub(super) auth_expires_at: Option<DateTime<Utc>>,
    pub(super) amount: i64,
    pub(super) authorized: i64,
    pub(super) captured: i64,
    pub(super) voided: i64,
    pub(super) refunded: i64,
    pub(super) refund_pending: i64,
    pub(super) charged_back: i64,
    pub(super) succeeded: bool,
    pub(super) refunds: BTreeMap<Uuid, Refund>,
    pub(super) provider_events: BTreeSet<String>,
}

impl Payment {
    /// The API status; `None` before the payment is created.
    #[must_use]
    pub fn status(&self) -> Option<PaymentStatus> {
        let phase = self.phase?;
        Some(match phase {
            Phase::Created => PaymentStatus::Created,
            Phase::RequiresAction => PaymentStatus::RequiresAction,
            Phase::Failed => PaymentStatus::Failed,
            Phase::Voided => PaymentStatus::Voided,
            Phase::Expired => PaymentStatus::Expired,
            Phase::Authorized if self.refunded > 0 => {
                if self.refunded >= self.captured && self.capturable() == 0 {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                }
            }
            Phase::Authorized if self.captured == 0 => PaymentStatus::Authorized,
            Phase::Authorized if self.capturable() == 0 => PaymentStatus::Captured,
            Phase::Authorized => PaymentStatus::PartiallyCaptured,
        })
    }

    /// The payment's id.
    #[must_use]
    pub const fn payment_id(&self) -> Option<PaymentId> {
        self.payment_id
    }

    /// What the payment pays for.
    #[must_use]
    pub const fn purpose(&self) -> Option<PaymentPurpose> {
        self.purpose
    }

    /// The paying customer.
    #[must_use]
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The payment method token, e.g. `pm_card_ok`.
    #[must_use]
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The gateway, e.g. `sandbox`.
    #[must_use]
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// When the gateway captures.
    #[must_use]
    pub const fn capture_policy(&self) -> Option<CapturePolicy> {
        self.capture_policy
    }

    /// The provider's reference of the payment, once the provider answered.
    #[must_use]
    pub fn provider_ref(&self) -> Option<&str> {
        self.provider_ref.as_deref()
    }

    /// The payment's currency.
    #[must_use]
    pub const fn currency(&self) -> Option<Currency> {
        self.currency
    }

    /// The amount the intent is for.
    #[must_use]
    pub fn amount(&self) -> Option<Money> {
        self.money(self.amount)
    }

    /// The amount authorized so far.
    #[must_use]
    pub fn authorized(&self) -> Option<Money> {
        self.money(self.authorized)
    }

    /// The amount captured so far.
    #[must_use]
    pub fn captured(&self) -> Option<Money> {
        self.money(self.captured)
    }

    /// The part of the authorization released by a void or an expiry.
    #[must_use]
    pub fn voided(&self) -> Option<Money> {
        self.money(self.voided)
    }

    /// The amount refunded (settled refunds).
    #[must_use]
    pub fn refunded(&self) -> Option<Money> {
        self.money(self.refunded)
    }

    /// The amount of refunds asked of the provider and not settled yet.
    #[must_use]
    pub fn refund_pending(&self) -> Option<Money> {
        self.money(self.refund_pending)
    }

    /// The amount taken back by chargebacks.
    #[must_use]
    pub fn charged_back(&self) -> Option<Money> {
        self.money(self.charged_back)
    }

    /// When the authorization lapses, if funds were authorized.
    #[must_use]
    pub const fn auth_expires_at(&self) -> Option<DateTime<Utc>> {
        self.auth_expires_at
    }

    /// Whether the whole amount was captured (`payment.succeeded` was emitted).
    #[must_use]
    pub const fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// Authorized money that may still be captured.
    pub(super) const fn capturable(&self) -> i64 {
        self.authorized
            .saturating_sub(self.captured)
            .saturating_sub(self.voided)
    }

    /// Captured money that may still be refunded or charged back.
    pub(super) const fn refundable(&self) -> i64 {
        self.captured
            .saturating_sub(self.refunded)
            .saturating_sub(self.refund_pending)
            .saturating_sub(self.charged_back)
    }

    /// The amount and outcome of the refund `refund_id`, if it was asked for.
    #[must_use]
    pub fn refund_request(&self, refund_id: Uuid) -> Option<(Money, RefundOutcome)> {
        let refund = self.refunds.get(&refund_id)?;
        Some((self.money(refund.amount)?, refund.outcome))
    }

    fn money(&self, minor: i64) -> Option<Money> {
        self.currency.map(|currency| Money::new(minor, currency))
    }

    /// Folds one event. Amounts were checked by the handler; the saturating operations only
    /// keep `apply` total on a log this code did not write.
    pub(super) fn fold(&mut self, event: PaymentEvent) {
        match event {
            PaymentEvent::Created(created) => {
                self.payment_id = Some(PaymentId::from_uuid(created.payment_id));
                self.phase = Some(Phase::Created);
                self.purpose = Some(created.purpose);
                self.customer_id = created.customer_id;
                self.currency = Currency::from_code(&created.amount.currency).ok();
                self.amount = created.amount.amount_minor;
                self.method = created.method;
                self.provider = created.provider;
                self.capture_policy = Some(created.capture_policy);
            }
            PaymentEvent::RequiresAction(action) => {
                self.phase = Some(Phase::RequiresAction);
                self.provider_ref = Some(action.provider_ref);
            }
            PaymentEvent::Authorized(authorized) => {
                self.phase = Some(Phase::Authorized);
                // Authorizations only grow: a provider may report a smaller one late.
                self.authorized = self.authorized.max(authorized.amount.amount_minor);
                self.provider_ref = Some(authorized.provider_ref);
                self.auth_expires_at = Some(authorized.auth_expires_at);
            }
            PaymentEvent::Captured(captured) => {
                self.captured = captured.total_captured.amount_minor;
            }
            PaymentEvent::Succeeded(_) => self.succeeded = true,
            PaymentEvent::Failed(failed) => {
                self.phase = Some(Phase::Failed);
                if failed.provider_ref.is_some() {
                    self.provider_ref = failed.provider_ref;
                }
            }
            PaymentEvent::Voided(voided) => {
                self.voided = self.voided.saturating_add(voided.released.amount_minor);
                if self.captured == 0 {
                    self.phase = Some(Phase::Voided);
                }
            }
            PaymentEvent::Expired(expired) => {
                self.voided = self.voided.saturating_add(expired.released.amount_minor);
                self.phase = Some(Phase::Expired);
            }
            PaymentEvent::RefundRequested(requested) => {
                let amount = requested.amount.amount_minor;
                self.refund_pending = self.refund_pending.saturating_add(amount);
                self.refunds.insert(
                    requested.refund_id,
                    Refund {
                        amount,
                        outcome: RefundOutcome::Pending,
                    },
                );
            }
            PaymentEvent::Refunded(refunded) => {
                self.refunded = refunded.total_refunded.amount_minor;
                self.close_refund(refunded.refund_id, RefundOutcome::Settled);
            }
            PaymentEvent::RefundFailed(failed) => {
                self.close_refund(failed.refund_id, RefundOutcome::Failed);
            }
            PaymentEvent::ChargedBack(charged_back) => {
                self.charged_back = self
                    .charged_back
                    .saturating_add(charged_back.amount.amount_minor);
            }
            PaymentEvent::ProviderEventRecorded(recorded) => {
                self.provider_events.insert(recorded.provider_event_id);
            }
        }
    }

    fn close_refund(&mut self, refund_id: Uuid, outcome: RefundOutcome) {
        if let Some(refund) = self.refunds.get_mut(&refund_id)
            && refund.outcome == RefundOutcome::Pending
        {
            refund.outcome = outcome;
            self.refund_pending = self.refund_pending.saturating_sub(refund.amount);
        }
    }
}
