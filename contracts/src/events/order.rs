//! Order events (§3.1 of the commerce anchors): placement, stock and payment outcomes,
//! fulfilment, shipping, delivery, returns, cancellation and expiry.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::{LineQuantity, Money, OrderLine, ReservationRef};

super::event_set! {
    /// Everything that can happen to an order.
    pub enum OrderEvent for "order" {
        Created(OrderCreated) = "order.created", version 1;
        StockReserved(OrderStockReserved) = "order.stock_reserved", version 1;
        AwaitingPayment(OrderAwaitingPayment) = "order.awaiting_payment", version 1;
        PaymentFailed(OrderPaymentFailed) = "order.payment_failed", version 1;
        Confirmed(OrderConfirmed) = "order.confirmed", version 1;
        FulfillmentCreated(OrderFulfillmentCreated) = "order.fulfillment_created", version 1;
        LabelAttached(OrderLabelAttached) = "order.label_attached", version 1;
        Shipped(OrderShipped) = "order.shipped", version 1;
        Delivered(OrderDelivered) = "order.delivered", version 1;
        Completed(OrderCompleted) = "order.completed", version 1;
        ReturnRequested(OrderReturnRequested) = "order.return_requested", version 1;
        ReturnReceived(OrderReturnReceived) = "order.return_received", version 1;
        Canceled(OrderCanceled) = "order.canceled", version 1;
        Expired(OrderExpired) = "order.expired", version 1;
    }
}

/// An order was placed with prices snapshotted from the catalog (or the campaign's group price).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
    /// ISO 4217 code shared by every line and the total.
    pub currency: String,
    pub total: Money,
    pub payment_method: Option<String>,
    pub campaign_id: Option<Uuid>,
    pub participant_id: Option<Uuid>,
    /// Sales channel, e.g. `web`, `api`, `campaign`.
    pub channel: String,
    /// After this instant an unpaid order expires.
    pub expires_at: DateTime<Utc>,
    pub placed_at: DateTime<Utc>,
}

/// Stock is reserved for every line of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderStockReserved {
    pub reservations: Vec<ReservationRef>,
    pub reserved_at: DateTime<Utc>,
}

/// A payment was requested for the order; it now waits for the payment's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderAwaitingPayment {
    pub payment_id: Uuid,
    pub amount: Money,
    pub requested_at: DateTime<Utc>,
}

/// A payment attempt failed; the order stays open for another attempt while attempts remain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPaymentFailed {
    pub payment_id: Uuid,
    pub reason: String,
    /// 1-based count of failed attempts so far.
    pub attempt: u32,
    pub failed_at: DateTime<Utc>,
}

/// Payments cover the order's total: it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    pub payment_id: Uuid,
    /// Authorized plus captured amount that covers the total.
    pub covered: Money,
    pub confirmed_at: DateTime<Utc>,
}

/// Quantities of some lines were picked for shipment from a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderFulfillmentCreated {
    pub fulfillment_id: Uuid,
    pub lines: Vec<LineQuantity>,
    pub location: String,
    pub created_at: DateTime<Utc>,
}

/// A carrier label was created for a fulfilment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLabelAttached {
    pub fulfillment_id: Uuid,
    pub shipment_id: Uuid,
    pub carrier: String,
    pub tracking_number: String,
}

/// A fulfilment left the warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderShipped {
    pub fulfillment_id: Uuid,
    pub lines: Vec<LineQuantity>,
    pub shipped_at: DateTime<Utc>,
}

/// A shipped fulfilment reached the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderDelivered {
    pub fulfillment_id: Uuid,
    pub lines: Vec<LineQuantity>,
    pub delivered_at: DateTime<Utc>,
}

/// Everything was delivered and settled; the order is closed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCompleted {
    pub completed_at: DateTime<Utc>,
}

/// The customer asked to return delivered quantities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderReturnRequested {
    pub return_id: Uuid,
    pub lines: Vec<LineQuantity>,
    pub reason: String,
    pub requested_at: DateTime<Utc>,
}

/// Returned goods arrived; `restock` records whether they go back on the shelf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderReturnReceived {
    pub return_id: Uuid,
    pub lines: Vec<LineQuantity>,
    pub restock: bool,
    pub received_at: DateTime<Utc>,
}

/// Why an order was canceled (the `cancel_reason` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    InsufficientStock,
    PaymentFailed,
    CustomerRequest,
    Operator,
    Expired,
    CampaignFailed,
}

/// The order was canceled; compensation releases its stock and voids or refunds its payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCanceled {
    pub reason: CancelReason,
    pub note: Option<String>,
    /// Who canceled: a customer or operator id, or `system` for the process managers.
    pub canceled_by: String,
    pub canceled_at: DateTime<Utc>,
}

/// The order stayed unpaid past its deadline (its status becomes `canceled`, reason `expired`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderExpired {
    pub expired_at: DateTime<Utc>,
}
