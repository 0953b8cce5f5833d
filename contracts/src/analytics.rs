//! Records of the analyst streams: [`AnalyticsOrder`] on `analytics.orders` and
//! [`AnalyticsOrderLine`] on `analytics.order_lines`.
//!
//! These are projections, not events: a record is a bare JSON object (no envelope), and a newer
//! summary of the same order replaces the older one. Their JSON Schemas are published in
//! `contracts/schemas/analytics/`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Money;
use crate::events::CancelReason;

/// The order `status` of the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed; stock is being reserved.
    Placed,
    /// Stock reserved; waiting for the payment.
    AwaitingPayment,
    /// Paid (authorized or captured).
    Confirmed,
    /// Every line shipped.
    Shipped,
    /// Every line delivered.
    Delivered,
    /// Closed for good.
    Completed,
    /// Canceled; see `cancel_reason`.
    Canceled,
}

/// Where the order's payments stand, summed over its live payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// No live payment holds or took money.
    NotPaid,
    /// A payment waits for the customer (e.g. 3-D Secure).
    RequiresAction,
    /// Less than the total is authorized.
    PartiallyAuthorized,
    /// The total is authorized.
    Authorized,
    /// Less than the total is captured.
    PartiallyCaptured,
    /// The total is captured.
    Captured,
    /// Part of the captured money was refunded.
    PartiallyRefunded,
    /// Everything captured was refunded.
    Refunded,
    /// Every authorization was released.
    Voided,
}

/// How far the order's lines have moved through fulfilment (the furthest stage reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentStatus {
    /// Nothing picked yet.
    NotFulfilled,
    /// Some quantities picked.
    PartiallyFulfilled,
    /// Everything picked.
    Fulfilled,
    /// Some quantities shipped.
    PartiallyShipped,
    /// Everything shipped.
    Shipped,
    /// Some quantities delivered.
    PartiallyDelivered,
    /// Everything delivered.
    Delivered,
    /// Some quantities returned.
    PartiallyReturned,
    /// Everything returned.
    Returned,
}

/// An order's current summary: one record on `analytics.orders` per change of the order or of
/// one of its payments, keyed by [`AnalyticsOrder::record_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AnalyticsOrder {
    /// The owning tenant.
    pub tenant_id: String,
    /// The order.
    pub order_id: Uuid,
    /// The customer who placed it.
    pub customer_id: String,
    /// The order status.
    pub status: OrderStatus,
    /// Why it was canceled, when `status` is `canceled`.
    pub cancel_reason: Option<CancelReason>,
    /// Where its payments stand.
    pub payment_status: PaymentStatus,
    /// Where its fulfilment stands.
    pub fulfillment_status: FulfillmentStatus,
    /// The order total.
    pub total: Money,
    /// Number of order lines.
    pub line_count: u32,
    /// Number of items over all lines.
    pub item_count: u64,
    /// The group-buying campaign the order came from, if any.
    pub campaign_id: Option<Uuid>,
    /// Sales channel, e.g. `web`, `api`, `campaign`.
    pub channel: String,
    /// When the order was placed.
    pub created_at: DateTime<Utc>,
    /// When the summary last changed.
    pub updated_at: DateTime<Utc>,
    /// The order stream's sequence this summary reflects: of two summaries of one order, the
    /// one with the higher `last_sequence` is the newer.
    pub last_sequence: u64,
}

impl AnalyticsOrder {
    /// The Kafka key: the order id, so compaction keeps the latest summary of each order.
    #[must_use]
    pub fn record_key(&self) -> String {
        self.order_id.to_string()
    }
}

/// One sold line, published once when the order is placed, keyed by
/// [`AnalyticsOrderLine::record_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AnalyticsOrderLine {
    /// The owning tenant.
    pub tenant_id: String,
    /// The order.
    pub order_id: Uuid,
    /// 1-based position of the line in the order.
    pub line_no: u32,
    /// The SKU sold.
    pub sku: String,
    /// The catalog product, when the SKU belongs to one.
    pub product_id: Option<Uuid>,
    /// Units sold.
    pub quantity: u32,
    /// Unit price snapshotted at placement.
    pub unit_price: Money,
    /// ISO 4217 code of the order (equals `unit_price.currency`), for easy grouping.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// The group-buying campaign the order came from, if any.
    pub campaign_id: Option<Uuid>,
    /// When the order was placed.
    pub ordered_at: DateTime<Utc>,
}

impl AnalyticsOrderLine {
    /// The Kafka key: `order_id:line_no`, unique per line.
    #[must_use]
    pub fn record_key(&self) -> String {
        format!("{}:{}", self.order_id, self.line_no)
    }
}
