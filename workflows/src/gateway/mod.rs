//! The outside world the process managers talk to: a payment provider and a carrier, each
//! behind a trait so a real provider plugs in where the sandbox sits.
//!
//! Every call carries an idempotency key derived from the payment or shipment it serves: a
//! provider must answer a repeated key with the first answer and act only once (every real
//! PSP supports this). That is what makes a process manager that crashed between "charge" and
//! "record the charge" safe to re-run: the second charge is the first one's echo (PAY-4).
//!
//! Layout: the traits and their value types here; `sandbox` holds the deterministic test mode
//! of both.

mod sandbox;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commerce_domain::{Money, OrderId, PaymentId, ShipmentId};

pub use sandbox::{SandboxCarrier, SandboxGateway};

/// A request to authorize (or charge) an amount with a payment method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub payment_id: PaymentId,
    /// The payment method token, e.g. `pm_card_ok`.
    pub method: String,
    pub amount: Money,
    pub idempotency_key: String,
}

/// What the provider said to an authorization or a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayDecision {
    /// Authorized (and, for a charge, captured).
    Approved {
        provider_ref: String,
        /// Until when an authorization may be captured.
        auth_expires_at: DateTime<Utc>,
    },
    /// Refused; terminal for this payment.
    Declined {
        reason: String,
        provider_ref: String,
    },
    /// The customer must act (3-D Secure); a webhook settles it later.
    RequiresAction { provider_ref: String },
}

/// A label the carrier issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub carrier: String,
    pub service: String,
    pub tracking_number: String,
    pub label_url: String,
}

/// A request for a shipping label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequest {
    pub shipment_id: ShipmentId,
    pub order_id: OrderId,
    pub idempotency_key: String,
}

/// A provider or carrier call that did not get an answer; the caller retries with the same key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{provider} is unavailable: {message}")]
pub struct GatewayError {
    pub provider: String,
    pub message: String,
}

/// A payment service provider.
#[async_trait]
pub trait PaymentGateway: Send + Sync + std::fmt::Debug {
    /// The provider's name, recorded on each payment (`provider`).
    fn name(&self) -> &str;

    /// Holds the amount (manual capture).
    async fn authorize(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError>;

    /// Authorizes and captures the amount in one step (automatic capture).
    async fn charge(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError>;

    /// Captures `amount` of an authorization.
    async fn capture(
        &self,
        provider_ref: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<(), GatewayError>;

    /// Releases an authorization (or abandons an intent waiting for customer action).
    async fn void(&self, provider_ref: &str, idempotency_key: &str) -> Result<(), GatewayError>;

    /// Gives `amount` of a capture back.
    async fn refund(
        &self,
        provider_ref: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<(), GatewayError>;
}

/// A parcel carrier.
#[async_trait]
pub trait Carrier: Send + Sync + std::fmt::Debug {
    /// Buys a label for the shipment.
    async fn create_label(&self, request: &LabelRequest) -> Result<Label, GatewayError>;

    /// Voids an unused label (the order was canceled before it shipped), so the carrier
    /// neither collects the parcel nor bills the label. Voiding a label twice is not an error.
    async fn void_label(
        &self,
        tracking_number: &str,
        idempotency_key: &str,
    ) -> Result<(), GatewayError>;
}
