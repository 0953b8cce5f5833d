//! The folded state of an order: its lifecycle status, its lines with their quantity chain
//! (ORD-2), fulfilments, returns, reservations and payments, and the facets derived from them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use commerce_contracts::events::{CancelReason, OrderEvent};
use commerce_contracts::{LineQuantity, ReservationRef};
use commerce_domain::{
    CampaignId, Currency, Money, OrderId, ParticipantId, PaymentId, ProductId, ShipmentId,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The lifecycle status of an order (the API's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    AwaitingPayment,
    Confirmed,
    Shipped,
    Delivered,
    Completed,
    Canceled,
}

impl OrderStatus {
    /// The status string of the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
        }
    }

    /// Completed and canceled orders (expired ones included) take no further event (ORD-1).
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Canceled)
    }
}

/// How far a quantity facet (fulfilled, shipped, delivered, returned) has come over all lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facet {
    /// Nothing yet.
    None,
    /// Some, but not every line's whole due quantity.
    Partial,
    /// Every line's due quantity (`ordered − canceled`).
    Full,
}

/// One order line with its price snapshot and quantity chain:
/// `returned ≤ return_requested ≤ delivered ≤ shipped ≤ fulfilled ≤ ordered − canceled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineState {
    pub(super) line_no: u32,
    pub(super) sku: String,
    pub(super) product_id: Option<ProductId>,
    pub(super) unit_price_minor: i64,
    pub(super) ordered: u32,
    pub(super) canceled: u32,
    pub(super) fulfilled: u32,
    pub(super) shipped: u32,
    pub(super) delivered: u32,
    pub(super) return_requested: u32,
    pub(super) returned: u32,
}

impl LineState {
    /// 1-based position in the order.
    #[must_use]
    pub const fn line_no(&self) -> u32 {
        self.line_no
    }
    /// The SKU ordered.
    #[must_use]
    pub fn sku(&self) -> &str {
        &self.sku
    }
    /// The catalog product, `None` for campaign orders.
    #[must_use]
    pub const fn product_id(&self) -> Option<ProductId> {
        self.product_id
    }
    /// The unit price snapshotted at placement, in the order's currency's minor units.
    #[must_use]
    pub const fn unit_price_minor(&self) -> i64 {
        self.unit_price_minor
    }
    /// Quantity ordered.
    #[must_use]
    pub const fn ordered(&self) -> u32 {
        self.ordered
    }
    /// Quantity canceled (the whole unshipped rest once the order is canceled).
    #[must_use]
    pub const fn canceled(&self) -> u32 {
        self.canceled
    }
    /// Quantity picked into live fulfilments.
    #[must_use]
    pub const fn fulfilled(&self) -> u32 {
        self.fulfilled
    }
    /// Quantity shipped.
    #[must_use]
    pub const fn shipped(&self) -> u32 {
        self.shipped
    }
    /// Quantity delivered.
    #[must_use]
    pub const fn delivered(&self) -> u32 {
        self.delivered
    }
    /// Quantity the customer asked to return.
    #[must_use]
    pub const fn return_requested(&self) -> u32 {
        self.return_requested
    }
    /// Quantity received back.
    #[must_use]
    pub const fn returned(&self) -> u32 {
        self.returned
    }
    /// What the facets measure against.
    pub(super) const fn due(&self) -> u32 {
        self.ordered.saturating_sub(self.canceled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Stage {
    Created,
    Shipped,
    Delivered,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Fulfillment {
    pub(super) lines: Vec<LineQuantity>,
    pub(super) location: String,
    pub(super) stage: Stage,
    pub(super) shipment_id: Option<ShipmentId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Return {
    pub(super) lines: Vec<LineQuantity>,
    pub(super) received: bool,
}

/// An order, folded from its events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub(super) order_id: Option<OrderId>,
    pub(super) status: Option<OrderStatus>,
    pub(super) cancel_reason: Option<CancelReason>,
    pub(super) customer_id: String,
    pub(super) currency: Option<Currency>,
    pub(super) total_minor: i64,
    pub(super) lines: Vec<LineState>,
    pub(super) payment_method: Option<String>,
    pub(super) channel: String,
    pub(super) campaign: Option<(CampaignId, ParticipantId)>,
    pub(super) placed_at: Option<DateTime<Utc>>,
    pub(super) expires_at: Option<DateTime<Utc>>,
    pub(super) stock_reserved: bool,
    pub(super) reservations: Vec<ReservationRef>,
    pub(super) payments: Vec<PaymentId>,
    pub(super) payment_in_flight: Option<PaymentId>,
    pub(super) failed_attempts: u32,
    pub(super) confirmed_by: Option<PaymentId>,
    pub(super) fulfillments: BTreeMap<Uuid, Fulfillment>,
    pub(super) returns: BTreeMap<Uuid, Return>,
}

impl Order {
    /// The lifecycle status; `None` before the order is placed.
    #[must_use]
    pub const fn status(&self) -> Option<OrderStatus> {
        self.status
    }

    /// Why the order was canceled (`expired` for an expired one).
    #[must_use]
    pub const fn cancel_reason(&self) -> Option<CancelReason> {
        self.cancel_reason
    }

    /// The order's id.
    #[must_use]
    pub const fn order_id(&self) -> Option<OrderId> {
        self.order_id
    }

    /// The ordering customer.
    #[must_use]
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The order's currency.
    #[must_use]
    pub const fn currency(&self) -> Option<Currency> {
        self.currency
    }

    /// `Σ unit_price × quantity`, fixed at placement (ORD-8).
    #[must_use]
    pub fn total(&self) -> Option<Money> {
        self.currency
            .map(|currency| Money::new(self.total_minor, currency))
    }

    /// The lines with their quantity chains.
    #[must_use]
    pub fn lines(&self) -> &[LineState] {
        &self.lines
    }

    /// The payment method chosen at checkout.
    #[must_use]
    pub fn payment_method(&self) -> Option<&str> {
        self.payment_method.as_deref()
    }

    /// The sales channel.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The campaign and participant a campaign order belongs to.
    #[must_use]
    pub const fn campaign(&self) -> Option<(CampaignId, ParticipantId)> {
        self.campaign
    }

    /// When an unpaid order expires.
    #[must_use]
    pub const fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// Whether the inventory saga reported stock for every line.
    #[must_use]
    pub const fn stock_reserved(&self) -> bool {
        self.stock_reserved
    }

    /// The stock reservations held for the order (to release or commit them).
    #[must_use]
    pub fn reservations(&self) -> &[ReservationRef] {
        &self.reservations
    }

    /// Every payment requested for the order, oldest first (to void or refund them).
    #[must_use]
    pub fn payment_ids(&self) -> &[PaymentId] {
        &self.payments
    }

    /// The payment whose outcome the order waits for, if any (ORD-9).
    #[must_use]
    pub const fn payment_in_flight(&self) -> Option<PaymentId> {
        self.payment_in_flight
    }

    /// How many payment attempts failed.
    #[must_use]
    pub const fn failed_attempts(&self) -> u32 {
        self.failed_attempts
    }

    /// The payment that confirmed the order.
    #[must_use]
    pub const fn confirmed_by(&self) -> Option<PaymentId> {
        self.confirmed_by
    }

    /// How much of the order is picked into fulfilments.
    #[must_use]
    pub fn fulfillment_facet(&self) -> Facet {
        self.facet(|line| line.fulfilled)
    }

    /// How much of the order has shipped.
    #[must_use]
    pub fn shipping_facet(&self) -> Facet {
        self.facet(|line| line.shipped)
    }

    /// How much of the order was delivered.
    #[must_use]
    pub fn delivery_facet(&self) -> Facet {
        self.facet(|line| line.delivered)
    }

    /// How much of the order came back.
    #[must_use]
    pub fn return_facet(&self) -> Facet {
        self.facet(|line| line.returned)
    }

    /// ORD-3: `Full` iff every line reached its due quantity, `None` iff nothing at all.
    fn facet(&self, done: impl Fn(&LineState) -> u32) -> Facet {
        if self.lines.iter().all(|line| done(line) == 0) {
            Facet::None
        } else if self.lines.iter().all(|line| done(line) >= line.due()) {
            Facet::Full
        } else {
            Facet::Partial
        }
    }

    /// Whether any quantity has shipped (cancellation is over from then on: ORD-7).
    pub(super) fn anything_shipped(&self) -> bool {
        self.lines.iter().any(|line| line.shipped > 0)
    }

    pub(super) fn line_mut(&mut self, line_no: u32) -> Option<&mut LineState> {
        self.lines.iter_mut().find(|line| line.line_no == line_no)
    }

    /// Folds one event. Quantities were checked by the handler; saturating operations keep
    /// `apply` total on a log this code did not write.
    pub(super) fn fold(&mut self, event: OrderEvent) {
        match event {
            OrderEvent::Created(created) => {
                self.order_id = Some(OrderId::from_uuid(created.order_id));
                self.status = Some(OrderStatus::Placed);
                self.customer_id = created.customer_id;
                self.currency = Currency::from_code(&created.currency).ok();
                self.total_minor = created.total.amount_minor;
                self.lines = created
                    .lines
                    .into_iter()
                    .map(|line| LineState {
                        line_no: line.line_no,
                        sku: line.sku,
                        product_id: line.product_id.map(ProductId::from_uuid),
                        unit_price_minor: line.unit_price.amount_minor,
                        ordered: line.quantity,
                        canceled: 0,
                        fulfilled: 0,
                        shipped: 0,
                        delivered: 0,
                        return_requested: 0,
                        returned: 0,
                    })
                    .collect();
                self.payment_method = created.payment_method;
                self.channel = created.channel;
                self.campaign = created.campaign_id.zip(created.participant_id).map(
                    |(campaign, participant)| {
                        (
                            CampaignId::from_uuid(campaign),
                            ParticipantId::from_uuid(participant),
                        )
                    },
                );
                self.placed_at = Some(created.placed_at);
                self.expires_at = Some(created.expires_at);
            }
            OrderEvent::StockReserved(reserved) => {
                self.stock_reserved = true;
                self.reservations = reserved.reservations;
            }
            OrderEvent::AwaitingPayment(awaiting) => {
                let payment_id = PaymentId::from_uuid(awaiting.payment_id);
                self.status = Some(OrderStatus::AwaitingPayment);
                self.payments.push(payment_id);
                self.payment_in_flight = Some(payment_id);
            }
            OrderEvent::PaymentFailed(failed) => {
                self.failed_attempts = failed.attempt;
                self.payment_in_flight = None;
            }
            OrderEvent::Confirmed(confirmed) => {
                self.status = Some(OrderStatus::Confirmed);
                self.confirmed_by = Some(PaymentId::from_uuid(confirmed.payment_id));
                self.payment_in_flight = None;
            }
            OrderEvent::FulfillmentCreated(created) => {
                for picked in &created.lines {
                    if let Some(line) = self.line_mut(picked.line_no) {
                        line.fulfilled = line.fulfilled.saturating_add(picked.quantity);
                    }
                }
                self.fulfillments.insert(
                    created.fulfillment_id,
                    Fulfillment {
                        lines: created.lines,
                        location: created.location,
                        stage: Stage::Created,
                        shipment_id: None,
                    },
                );
            }
            OrderEvent::LabelAttached(label) => {
                if let Some(fulfillment) = self.fulfillments.get_mut(&label.fulfillment_id) {
                    fulfillment.shipment_id = Some(ShipmentId::from_uuid(label.shipment_id));
                }
            }
            OrderEvent::Shipped(shipped) => {
                self.advance(shipped.fulfillment_id, Stage::Shipped, &shipped.lines);
                self.status = Some(OrderStatus::Shipped);
            }
            OrderEvent::Delivered(delivered) => {
                self.advance(delivered.fulfillment_id, Stage::Delivered, &delivered.lines);
                if self.delivery_facet() == Facet::Full {
                    self.status = Some(OrderStatus::Delivered);
                }
            }
            OrderEvent::Completed(_) => self.status = Some(OrderStatus::Completed),
            OrderEvent::ReturnRequested(requested) => {
                for asked in &requested.lines {
                    if let Some(line) = self.line_mut(asked.line_no) {
                        line.return_requested =
                            line.return_requested.saturating_add(asked.quantity);
                    }
                }
                self.returns.insert(
                    requested.return_id,
                    Return {
                        lines: requested.lines,
                        received: false,
                    },
                );
            }
            OrderEvent::ReturnReceived(received) => {
                for back in &received.lines {
                    if let Some(line) = self.line_mut(back.line_no) {
                        line.returned = line.returned.saturating_add(back.quantity);
                    }
                }
                if let Some(open) = self.returns.get_mut(&received.return_id) {
                    open.received = true;
                }
            }
            OrderEvent::Canceled(canceled) => self.cancel(canceled.reason),
            OrderEvent::Expired(_) => self.cancel(CancelReason::Expired),
        }
    }

    fn advance(&mut self, fulfillment_id: Uuid, stage: Stage, lines: &[LineQuantity]) {
        if let Some(fulfillment) = self.fulfillments.get_mut(&fulfillment_id) {
            fulfillment.stage = stage;
        }
        for moved in lines {
            if let Some(line) = self.line_mut(moved.line_no) {
                match stage {
                    Stage::Shipped => line.shipped = line.shipped.saturating_add(moved.quantity),
                    Stage::Delivered => {
                        line.delivered = line.delivered.saturating_add(moved.quantity);
                    }
                    Stage::Created | Stage::Canceled => {}
                }
            }
        }
    }

    /// Nothing has shipped when an order is canceled (ORD-7), so every fulfilment is dropped
    /// and every line's whole quantity counts as canceled.
    fn cancel(&mut self, reason: CancelReason) {
        self.status = Some(OrderStatus::Canceled);
        self.cancel_reason = Some(reason);
        for fulfillment in self.fulfillments.values_mut() {
            if fulfillment.stage == Stage::Created {
                fulfillment.stage = Stage::Canceled;
            }
        }
        for line in &mut self.lines {
            line.fulfilled = line.shipped;
            line.canceled = line.ordered.saturating_sub(line.shipped);
        }
    }
}
