//! The Order aggregate (§3.1 of the commerce anchors): placement with catalog price snapshots,
//! the checkout saga's stock and payment reports, fulfilment, shipping, delivery, returns,
//! cancellation and expiry.
//!
//! Layout: [`OrderCommand`] in `commands.rs`; the folded [`Order`] with its lines, facets and
//! `apply` in `state.rs`; the handler and every guard here; given/when/then tests in `tests.rs`;
//! the ORD-* property tests in `proptests.rs`.
//!
//! Status rules (the API `status`, ORD-1 and ORD-3):
//! - `placed` → `awaiting_payment` (a payment was requested; stock must be reserved first) →
//!   `confirmed` (a requested payment covers the total, ORD-4). A failed payment leaves the
//!   order `awaiting_payment` with no payment in flight, ready for another attempt (at most
//!   [`MAX_PAYMENT_ATTEMPTS`]).
//! - `shipped` as soon as any fulfilment shipped (partial shipping included) and until every
//!   line's whole quantity is delivered; then `delivered`; `Complete` makes it `completed`.
//! - `canceled` (terminal) from any state before the first shipment (ORD-7); an expired order is
//!   `canceled` with reason `expired`. Canceling drops the unshipped fulfilments.
//! - Fulfilment, shipping, delivery and return progress are facets computed from the line
//!   counters ([`Facet`]): `full` iff every line reached `ordered − canceled`, `none` iff nothing.
//!
//! Repeats are quiet: a second cancel of a canceled order, a redelivered stock or payment
//! report, a fulfilment or return id seen before, a late expiry deadline all append nothing.

mod commands;
#[cfg(test)]
mod proptests;
mod state;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use commerce_contracts::events::{
    CancelReason, OrderAwaitingPayment, OrderCanceled, OrderCompleted, OrderConfirmed,
    OrderCreated, OrderDelivered, OrderEvent, OrderExpired, OrderFulfillmentCreated,
    OrderLabelAttached, OrderPaymentFailed, OrderReturnReceived, OrderReturnRequested,
    OrderShipped, OrderStockReserved,
};
use commerce_contracts::{LineQuantity as WireLineQuantity, OrderLine, ReservationRef};
use commerce_domain::{Currency, Money, OrderId};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use uuid::Uuid;

use crate::{Catalog, CatalogEntry, CommandError, guard};
use state::Stage;

pub use commands::{
    LineQuantity, LineRequest, OrderCommand, PlaceCampaignOrder, PlaceOrder, StockReservation,
};
pub use state::{Facet, LineState, Order, OrderStatus};

/// The most lines one order may have.
pub const MAX_LINES: usize = 100;

/// Failed payment attempts after which no further payment may be requested; the checkout saga
/// then cancels the order with reason `payment_failed`.
pub const MAX_PAYMENT_ATTEMPTS: u32 = 3;

/// The channel recorded for campaign orders.
const CAMPAIGN_CHANNEL: &str = "campaign";

/// The services an order needs: the catalog, for price snapshots at placement.
pub type OrderServices = Arc<dyn Catalog>;

/// The stream key of an order (the executor prefixes the tenant).
#[must_use]
pub fn stream_key(order_id: &OrderId) -> String {
    order_id.to_string()
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = CommandError;
    type Services = OrderServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        // The only outside fact is the catalog; look it up first, then decide everything
        // before writing, so a refused command leaves the sink empty.
        let mut entries = Vec::new();
        if let OrderCommand::PlaceOrder(place) = &command
            && self.status.is_none()
            && (1..=MAX_LINES).contains(&place.lines.len())
        {
            for line in &place.lines {
                entries.push(services.product(&place.tenant, &line.sku).await);
            }
        }
        let events = self.decide(command, &entries)?;
        guard::write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.fold(event);
    }
}

type Decision = Result<Vec<OrderEvent>, CommandError>;

impl Order {
    /// `entries` holds the catalog entry of each line of a `PlaceOrder`, in line order.
    fn decide(&self, command: OrderCommand, entries: &[Option<CatalogEntry>]) -> Decision {
        match command {
            OrderCommand::PlaceOrder(place) => self.place(place, entries),
            OrderCommand::PlaceCampaignOrder(place) => self.place_campaign(place),
            OrderCommand::RecordStockReserved { reservations, at } => {
                self.record_stock(reservations, at)
            }
            OrderCommand::RequestPayment { payment_id, at } => {
                let (status, currency) = self.existing()?;
                if self.payments.contains(&payment_id) {
                    return Ok(vec![]);
                }
                match status {
                    OrderStatus::Placed if !self.stock_reserved => Err(
                        CommandError::invalid_state("request payment", "stock is not reserved yet"),
                    ),
                    OrderStatus::AwaitingPayment if self.payment_in_flight.is_some() => Err(
                        CommandError::invalid_state("request payment", "a payment is in flight"),
                    ),
                    OrderStatus::Placed | OrderStatus::AwaitingPayment => {
                        if self.total_minor <= 0 {
                            return Err(CommandError::invalid_state(
                                "request payment",
                                "the total is zero",
                            ));
                        }
                        if self.failed_attempts >= MAX_PAYMENT_ATTEMPTS {
                            return Err(CommandError::LimitReached(format!(
                                "{MAX_PAYMENT_ATTEMPTS} payment attempts failed"
                            )));
                        }
                        Ok(vec![OrderEvent::AwaitingPayment(OrderAwaitingPayment {
                            payment_id: payment_id.as_uuid(),
                            amount: Money::new(self.total_minor, currency).into(),
                            requested_at: at,
                        })])
                    }
                    _ => Err(CommandError::invalid_state(
                        "request payment",
                        status.as_str(),
                    )),
                }
            }
            OrderCommand::RecordPaymentFailed {
                payment_id,
                reason,
                at,
            } => {
                self.existing()?;
                if !self.payments.contains(&payment_id) {
                    return Err(CommandError::invalid(
                        "payment_id",
                        "is not a payment of this order",
                    ));
                }
                // Only the payment in flight can fail the attempt; a late report of an older
                // or already-settled one changes nothing.
                if self.payment_in_flight != Some(payment_id)
                    || self.status != Some(OrderStatus::AwaitingPayment)
                {
                    return Ok(vec![]);
                }
                Ok(vec![OrderEvent::PaymentFailed(OrderPaymentFailed {
                    payment_id: payment_id.as_uuid(),
                    reason,
                    attempt: self.failed_attempts.saturating_add(1),
                    failed_at: at,
                })])
            }
            OrderCommand::Confirm {
                payment_id,
                covered,
                at,
            } => {
                let (status, currency) = self.existing()?;
                if self.confirmed_by == Some(payment_id) {
                    return Ok(vec![]);
                }
                if status != OrderStatus::AwaitingPayment {
                    return Err(CommandError::invalid_state(
                        "confirm order",
                        status.as_str(),
                    ));
                }
                if !self.payments.contains(&payment_id) {
                    return Err(CommandError::invalid(
                        "payment_id",
                        "is not a payment of this order",
                    ));
                }
                if covered.currency() != currency {
                    return Err(CommandError::invalid(
                        "covered",
                        format!("currency must be {currency}, the order's currency"),
                    ));
                }
                if covered.amount_minor() < self.total_minor {
                    return Err(CommandError::invalid(
                        "covered",
                        "does not cover the order total",
                    ));
                }
                Ok(vec![OrderEvent::Confirmed(OrderConfirmed {
                    payment_id: payment_id.as_uuid(),
                    covered: covered.into(),
                    confirmed_at: at,
                })])
            }
            OrderCommand::CreateFulfillment {
                fulfillment_id,
                lines,
                location,
                at,
            } => {
                let (status, _) = self.existing()?;
                let picked = self.merge_lines(&lines)?;
                if let Some(existing) = self.fulfillments.get(&fulfillment_id) {
                    return if existing.lines == picked && existing.location == location.as_str() {
                        Ok(vec![])
                    } else {
                        Err(CommandError::AlreadyExists(format!(
                            "fulfillment {fulfillment_id}"
                        )))
                    };
                }
                if !matches!(status, OrderStatus::Confirmed | OrderStatus::Shipped) {
                    return Err(CommandError::invalid_state(
                        "create fulfillment",
                        status.as_str(),
                    ));
                }
                self.check_room(&picked, "exceeds the unfulfilled quantity", |line| {
                    (line.fulfilled, line.due())
                })?;
                Ok(vec![OrderEvent::FulfillmentCreated(
                    OrderFulfillmentCreated {
                        fulfillment_id,
                        lines: picked,
                        location: location.into_inner(),
                        created_at: at,
                    },
                )])
            }
            OrderCommand::AttachLabel {
                fulfillment_id,
                shipment_id,
                carrier,
                tracking_number,
            } => {
                self.existing()?;
                let fulfillment = self.fulfillment(fulfillment_id)?;
                match (fulfillment.shipment_id, fulfillment.stage) {
                    (Some(attached), _) if attached == shipment_id => Ok(vec![]),
                    (Some(_), _) => Err(CommandError::invalid_state(
                        "attach label",
                        "the fulfillment has a label",
                    )),
                    (None, Stage::Created) => {
                        Ok(vec![OrderEvent::LabelAttached(OrderLabelAttached {
                            fulfillment_id,
                            shipment_id: shipment_id.as_uuid(),
                            carrier,
                            tracking_number,
                        })])
                    }
                    (None, stage) => Err(CommandError::invalid_state(
                        "attach label",
                        stage_name(stage),
                    )),
                }
            }
            OrderCommand::MarkShipped { fulfillment_id, at } => {
                self.existing()?;
                let fulfillment = self.fulfillment(fulfillment_id)?;
                match fulfillment.stage {
                    Stage::Created => Ok(vec![OrderEvent::Shipped(OrderShipped {
                        fulfillment_id,
                        lines: fulfillment.lines.clone(),
                        shipped_at: at,
                    })]),
                    Stage::Shipped | Stage::Delivered => Ok(vec![]),
                    Stage::Canceled => Err(CommandError::invalid_state(
                        "ship fulfillment",
                        stage_name(Stage::Canceled),
                    )),
                }
            }
            OrderCommand::MarkDelivered { fulfillment_id, at } => {
                self.existing()?;
                let fulfillment = self.fulfillment(fulfillment_id)?;
                match fulfillment.stage {
                    Stage::Shipped => Ok(vec![OrderEvent::Delivered(OrderDelivered {
                        fulfillment_id,
                        lines: fulfillment.lines.clone(),
                        delivered_at: at,
                    })]),
                    Stage::Delivered => Ok(vec![]),
                    stage @ (Stage::Created | Stage::Canceled) => Err(CommandError::invalid_state(
                        "deliver fulfillment",
                        stage_name(stage),
                    )),
                }
            }
            OrderCommand::Complete { at } => {
                let (status, _) = self.existing()?;
                match status {
                    OrderStatus::Completed => Ok(vec![]),
                    OrderStatus::Delivered if self.returns.values().any(|open| !open.received) => {
                        Err(CommandError::invalid_state(
                            "complete order",
                            "a return is open",
                        ))
                    }
                    OrderStatus::Delivered => Ok(vec![OrderEvent::Completed(OrderCompleted {
                        completed_at: at,
                    })]),
                    _ => Err(CommandError::invalid_state(
                        "complete order",
                        status.as_str(),
                    )),
                }
            }
            OrderCommand::RequestReturn {
                return_id,
                lines,
                reason,
                at,
            } => {
                let (status, _) = self.existing()?;
                let asked = self.merge_lines(&lines)?;
                if let Some(existing) = self.returns.get(&return_id) {
                    return if existing.lines == asked {
                        Ok(vec![])
                    } else {
                        Err(CommandError::AlreadyExists(format!("return {return_id}")))
                    };
                }
                if !matches!(status, OrderStatus::Shipped | OrderStatus::Delivered) {
                    return Err(CommandError::invalid_state(
                        "request return",
                        status.as_str(),
                    ));
                }
                self.check_room(
                    &asked,
                    "exceeds the delivered quantity not yet returned",
                    |line| (line.return_requested, line.delivered),
                )?;
                Ok(vec![OrderEvent::ReturnRequested(OrderReturnRequested {
                    return_id,
                    lines: asked,
                    reason,
                    requested_at: at,
                })])
            }
            OrderCommand::ReceiveReturn {
                return_id,
                restock,
                at,
            } => {
                self.existing()?;
                let open = self
                    .returns
                    .get(&return_id)
                    .ok_or_else(|| CommandError::NotFound(format!("return {return_id}")))?;
                if open.received {
                    return Ok(vec![]);
                }
                Ok(vec![OrderEvent::ReturnReceived(OrderReturnReceived {
                    return_id,
                    lines: open.lines.clone(),
                    restock,
                    received_at: at,
                })])
            }
            OrderCommand::Cancel {
                reason,
                note,
                by,
                at,
            } => {
                let (status, _) = self.existing()?;
                if status == OrderStatus::Canceled {
                    return Ok(vec![]);
                }
                if reason == CancelReason::Expired {
                    return Err(CommandError::invalid(
                        "reason",
                        "an order expires through its deadline, not a cancel",
                    ));
                }
                if by.trim().is_empty() {
                    return Err(CommandError::invalid("by", "must not be empty"));
                }
                if status == OrderStatus::Completed {
                    return Err(CommandError::invalid_state("cancel order", status.as_str()));
                }
                if self.anything_shipped() {
                    return Err(CommandError::invalid_state("cancel order", "shipped"));
                }
                Ok(vec![OrderEvent::Canceled(OrderCanceled {
                    reason,
                    note,
                    canceled_by: by,
                    canceled_at: at,
                })])
            }
            OrderCommand::Expire { at } => {
                let (status, _) = self.existing()?;
                match status {
                    // Paid, finished or canceled: the deadline has nothing left to do (ES-5).
                    OrderStatus::Confirmed
                    | OrderStatus::Shipped
                    | OrderStatus::Delivered
                    | OrderStatus::Completed
                    | OrderStatus::Canceled => Ok(vec![]),
                    OrderStatus::Placed | OrderStatus::AwaitingPayment => {
                        if self.expires_at.is_some_and(|deadline| at < deadline) {
                            return Err(CommandError::invalid_state(
                                "expire order",
                                "the order is not due yet",
                            ));
                        }
                        if self.payment_in_flight.is_some() {
                            return Err(CommandError::invalid_state(
                                "expire order",
                                "a payment is in flight",
                            ));
                        }
                        Ok(vec![OrderEvent::Expired(OrderExpired { expired_at: at })])
                    }
                }
            }
        }
    }

    fn place(&self, place: PlaceOrder, entries: &[Option<CatalogEntry>]) -> Decision {
        guard::not_created(self.status.is_some(), "order", place.order_id)?;
        if place.lines.is_empty() {
            return Err(CommandError::invalid(
                "lines",
                "must hold at least one line",
            ));
        }
        if place.lines.len() > MAX_LINES {
            return Err(CommandError::invalid(
                "lines",
                format!("must hold at most {MAX_LINES} lines"),
            ));
        }
        check_channel_and_deadline(&place.channel, place.at, place.expires_at)?;
        let currency = place.currency;
        let mut total = Money::zero(currency);
        let mut lines = Vec::with_capacity(place.lines.len());
        for (index, (line, entry)) in place.lines.iter().zip(entries).enumerate() {
            let field = format!("lines[{index}].sku");
            let entry = entry
                .as_ref()
                .ok_or_else(|| CommandError::invalid(&field, "no product has this sku"))?;
            if entry.discontinued {
                return Err(CommandError::invalid(&field, "the product is discontinued"));
            }
            if entry.price.currency() != currency {
                return Err(CommandError::invalid(
                    &field,
                    format!(
                        "the product is priced in {}, not in the order's currency {currency}",
                        entry.price.currency()
                    ),
                ));
            }
            if entry.price.is_negative() {
                return Err(CommandError::invalid(
                    &field,
                    "the product has a negative price",
                ));
            }
            total = entry
                .price
                .checked_mul(line.quantity)
                .and_then(|amount| total.checked_add(&amount))
                .map_err(|_| CommandError::invalid("lines", "the order total is out of range"))?;
            lines.push(OrderLine {
                line_no: line_no(index),
                sku: line.sku.to_string(),
                product_id: Some(entry.product_id.as_uuid()),
                quantity: line.quantity.get(),
                unit_price: entry.price.into(),
            });
        }
        if lines.len() != place.lines.len() {
            // The handler looks up every line; fewer entries means it was not asked to.
            return Err(CommandError::invalid("lines", "could not price every line"));
        }
        Ok(vec![OrderEvent::Created(OrderCreated {
            order_id: place.order_id.as_uuid(),
            customer_id: place.customer.into_inner(),
            lines,
            currency: currency.code().to_owned(),
            total: total.into(),
            payment_method: place.payment_method,
            campaign_id: None,
            participant_id: None,
            channel: place.channel,
            expires_at: place.expires_at,
            placed_at: place.at,
        })])
    }

    fn place_campaign(&self, place: PlaceCampaignOrder) -> Decision {
        guard::not_created(self.status.is_some(), "order", place.order_id)?;
        if !place.unit_price.is_positive() {
            return Err(CommandError::invalid(
                "unit_price",
                "must be greater than zero",
            ));
        }
        check_channel_and_deadline(CAMPAIGN_CHANNEL, place.at, place.expires_at)?;
        let currency = place.unit_price.currency();
        let total = place
            .unit_price
            .checked_mul(place.quantity)
            .map_err(|_| CommandError::invalid("quantity", "the order total is out of range"))?;
        Ok(vec![OrderEvent::Created(OrderCreated {
            order_id: place.order_id.as_uuid(),
            customer_id: place.customer.into_inner(),
            lines: vec![OrderLine {
                line_no: 1,
                sku: place.sku.into_inner(),
                product_id: None,
                quantity: place.quantity.get(),
                unit_price: place.unit_price.into(),
            }],
            currency: currency.code().to_owned(),
            total: total.into(),
            payment_method: place.payment_method,
            campaign_id: Some(place.campaign_id.as_uuid()),
            participant_id: Some(place.participant_id.as_uuid()),
            channel: CAMPAIGN_CHANNEL.to_owned(),
            expires_at: place.expires_at,
            placed_at: place.at,
        })])
    }

    fn record_stock(&self, reservations: Vec<StockReservation>, at: DateTime<Utc>) -> Decision {
        let (status, _) = self.existing()?;
        if self.stock_reserved {
            return Ok(vec![]);
        }
        if status != OrderStatus::Placed {
            return Err(CommandError::invalid_state(
                "record stock reservation",
                status.as_str(),
            ));
        }
        // Lines of the same SKU share reservations: compare sums per SKU.
        let mut needed: BTreeMap<&str, u64> = BTreeMap::new();
        for line in &self.lines {
            *needed.entry(line.sku()).or_default() += u64::from(line.ordered());
        }
        let mut held: BTreeMap<&str, u64> = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for (index, reservation) in reservations.iter().enumerate() {
            // A reservation listed twice holds its units once (ORD-5).
            if !seen.insert(reservation.reservation_id) {
                return Err(CommandError::invalid(
                    format!("reservations[{index}].reservation_id"),
                    "listed twice",
                ));
            }
            let sku = reservation.sku.as_str();
            if !needed.contains_key(sku) {
                return Err(CommandError::invalid(
                    format!("reservations[{index}].sku"),
                    "the order has no line with this sku",
                ));
            }
            *held.entry(sku).or_default() += u64::from(reservation.quantity.get());
        }
        if let Some((sku, _)) = needed
            .iter()
            .find(|(sku, quantity)| held.get(*sku).copied().unwrap_or(0) < **quantity)
        {
            return Err(CommandError::invalid(
                "reservations",
                format!("do not cover the ordered quantity of {sku}"),
            ));
        }
        Ok(vec![OrderEvent::StockReserved(OrderStockReserved {
            reservations: reservations
                .into_iter()
                .map(|reservation| ReservationRef {
                    reservation_id: reservation.reservation_id.as_uuid(),
                    sku: reservation.sku.into_inner(),
                    location: reservation.location.into_inner(),
                    quantity: reservation.quantity.get(),
                })
                .collect(),
            reserved_at: at,
        })])
    }

    /// The status and currency of a placed order, or `NotFound`.
    fn existing(&self) -> Result<(OrderStatus, Currency), CommandError> {
        guard::created(self.status.zip(self.currency), "order")
    }

    fn fulfillment(&self, fulfillment_id: Uuid) -> Result<&state::Fulfillment, CommandError> {
        self.fulfillments
            .get(&fulfillment_id)
            .ok_or_else(|| CommandError::NotFound(format!("fulfillment {fulfillment_id}")))
    }

    /// Sums quantities per line (a request may name a line twice), in line order; every line
    /// must exist.
    fn merge_lines(&self, lines: &[LineQuantity]) -> Result<Vec<WireLineQuantity>, CommandError> {
        if lines.is_empty() {
            return Err(CommandError::invalid(
                "lines",
                "must hold at least one line",
            ));
        }
        let mut merged: BTreeMap<u32, u32> = BTreeMap::new();
        for (index, line) in lines.iter().enumerate() {
            if !self
                .lines
                .iter()
                .any(|known| known.line_no() == line.line_no)
            {
                return Err(CommandError::invalid(
                    format!("lines[{index}].line_no"),
                    "the order has no such line",
                ));
            }
            let sum = merged.entry(line.line_no).or_default();
            *sum = sum.checked_add(line.quantity.get()).ok_or_else(|| {
                CommandError::invalid(format!("lines[{index}].quantity"), "out of range")
            })?;
        }
        Ok(merged
            .into_iter()
            .map(|(line_no, quantity)| WireLineQuantity { line_no, quantity })
            .collect())
    }

    /// Refuses quantities that would push a line's counter past its bound (ORD-2).
    fn check_room(
        &self,
        asked: &[WireLineQuantity],
        message: &str,
        counter_and_bound: impl Fn(&LineState) -> (u32, u32),
    ) -> Result<(), CommandError> {
        for (index, ask) in asked.iter().enumerate() {
            let fits = self
                .lines
                .iter()
                .find(|line| line.line_no() == ask.line_no)
                .is_some_and(|line| {
                    let (counter, bound) = counter_and_bound(line);
                    u64::from(counter) + u64::from(ask.quantity) <= u64::from(bound)
                });
            if !fits {
                return Err(CommandError::invalid(
                    format!("lines[{index}].quantity"),
                    message,
                ));
            }
        }
        Ok(())
    }
}

fn check_channel_and_deadline(
    channel: &str,
    at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), CommandError> {
    if channel.trim().is_empty() {
        return Err(CommandError::invalid("channel", "must not be empty"));
    }
    if expires_at <= at {
        return Err(CommandError::invalid(
            "expires_at",
            "must be after the order time",
        ));
    }
    Ok(())
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Created => "the fulfillment is not shipped",
        Stage::Shipped => "the fulfillment shipped",
        Stage::Delivered => "the fulfillment was delivered",
        Stage::Canceled => "the fulfillment is canceled",
    }
}

/// 1-based line number of the line at `index` (at most [`MAX_LINES`], so it fits).
fn line_no(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}
