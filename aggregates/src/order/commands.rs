//! What can be asked of an order: placement, the saga's reports (stock, payment), fulfilment,
//! shipping, delivery, returns, cancellation and expiry.

use chrono::{DateTime, Utc};
use commerce_contracts::events::CancelReason;
use commerce_domain::{
    CampaignId, Currency, CustomerId, LocationId, Money, OrderId, ParticipantId, PaymentId,
    Quantity, ReservationId, ShipmentId, Sku, TenantId,
};
use uuid::Uuid;

/// The commands of the Order aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// Place an order priced from the tenant's catalog.
    PlaceOrder(PlaceOrder),
    /// Place the order of a campaign participant at the campaign's group price.
    PlaceCampaignOrder(PlaceCampaignOrder),
    /// The inventory saga reserved stock for the order's lines.
    RecordStockReserved {
        reservations: Vec<StockReservation>,
        at: DateTime<Utc>,
    },
    /// A payment was opened for the order's total; the order waits for its outcome.
    RequestPayment {
        payment_id: PaymentId,
        at: DateTime<Utc>,
    },
    /// The payment in flight failed; another may be requested while attempts remain.
    RecordPaymentFailed {
        payment_id: PaymentId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A payment covers the total (authorized plus captured, not voided: ORD-4).
    Confirm {
        payment_id: PaymentId,
        covered: Money,
        at: DateTime<Utc>,
    },
    /// Pick quantities of some lines at a location for one parcel.
    CreateFulfillment {
        fulfillment_id: Uuid,
        lines: Vec<LineQuantity>,
        location: LocationId,
        at: DateTime<Utc>,
    },
    /// The carrier label of a fulfilment (from the Shipment aggregate).
    AttachLabel {
        fulfillment_id: Uuid,
        shipment_id: ShipmentId,
        carrier: String,
        tracking_number: String,
    },
    /// A fulfilment left the warehouse.
    MarkShipped {
        fulfillment_id: Uuid,
        at: DateTime<Utc>,
    },
    /// A shipped fulfilment reached the customer.
    MarkDelivered {
        fulfillment_id: Uuid,
        at: DateTime<Utc>,
    },
    /// Close a delivered order with no open return.
    Complete { at: DateTime<Utc> },
    /// The customer asks to send delivered quantities back.
    RequestReturn {
        return_id: Uuid,
        lines: Vec<LineQuantity>,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The returned goods arrived.
    ReceiveReturn {
        return_id: Uuid,
        restock: bool,
        at: DateTime<Utc>,
    },
    /// Cancel before anything shipped (ORD-7).
    Cancel {
        reason: CancelReason,
        note: Option<String>,
        /// A customer or operator id, or `system` for the process managers.
        by: String,
        at: DateTime<Utc>,
    },
    /// The unpaid-order deadline fired (ORD-9).
    Expire { at: DateTime<Utc> },
}

/// A checkout: lines of SKUs, priced from `tenant`'s catalog when handled.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder {
    /// Only for the catalog lookup; the stream id isolates tenants.
    pub tenant: TenantId,
    pub order_id: OrderId,
    pub customer: CustomerId,
    /// Lines in the customer's order; the same SKU may appear on several lines.
    pub lines: Vec<LineRequest>,
    pub currency: Currency,
    pub payment_method: Option<String>,
    /// Sales channel, e.g. `web`, `api`.
    pub channel: String,
    pub at: DateTime<Utc>,
    /// After this instant an unpaid order expires.
    pub expires_at: DateTime<Utc>,
}

/// One requested line of a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRequest {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// The order a campaign participant receives when the campaign closes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceCampaignOrder {
    pub order_id: OrderId,
    pub customer: CustomerId,
    pub campaign_id: CampaignId,
    pub participant_id: ParticipantId,
    pub sku: Sku,
    pub quantity: Quantity,
    /// The campaign's group price, snapshotted at join time (CMP-8).
    pub unit_price: Money,
    pub payment_method: Option<String>,
    pub at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A quantity against one order line (1-based `line_no`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineQuantity {
    pub line_no: u32,
    pub quantity: Quantity,
}

/// One reservation the inventory saga took for the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockReservation {
    pub reservation_id: ReservationId,
    pub sku: Sku,
    pub location: LocationId,
    pub quantity: Quantity,
}
