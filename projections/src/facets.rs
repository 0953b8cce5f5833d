//! Pure rules of the read side: derived statuses and counters, with no I/O, so they are unit- and
//! property-tested on their own.
//!
//! - [`fulfillment_status`] from an order's line counters;
//! - [`PaymentRow::apply`] folds payment events into the payment read model;
//! - [`order_payment_status`] derives an order's `payment_status` from its payments (the §3.1
//!   facet of the commerce anchors, computed the way Medusa's aggregate status is);
//! - [`StockLevel::apply`] folds inventory events into a stock level.

use commerce_contracts::events::{InventoryEvent, PaymentEvent};

use crate::error::ProjectionError;

/// Per-line quantities of an order, for the fulfilment facet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineProgress {
    pub quantity: i64,
    pub fulfilled: i64,
    pub shipped: i64,
    pub delivered: i64,
    pub returned: i64,
}

/// The order's fulfilment facet: the furthest stage every line reached (`fulfilled`, `shipped`,
/// `delivered`, `returned`), or `partially_<stage>` when only some quantities reached it.
pub fn fulfillment_status(lines: &[LineProgress]) -> &'static str {
    let total: i64 = lines.iter().map(|line| line.quantity).sum();
    let stage = |pick: fn(&LineProgress) -> i64| -> Option<bool> {
        let done: i64 = lines.iter().map(pick).sum();
        (done > 0).then_some(done >= total)
    };
    for (counter, full, partial) in [
        (
            (|l: &LineProgress| l.returned) as fn(&LineProgress) -> i64,
            "returned",
            "partially_returned",
        ),
        (|l| l.delivered, "delivered", "partially_delivered"),
        (|l| l.shipped, "shipped", "partially_shipped"),
        (|l| l.fulfilled, "fulfilled", "partially_fulfilled"),
    ] {
        match stage(counter) {
            Some(true) => return full,
            Some(false) => return partial,
            None => {}
        }
    }
    "not_fulfilled"
}

/// True when every line's counter picked by `pick` covers its ordered quantity.
pub fn all_lines(lines: &[LineProgress], pick: fn(&LineProgress) -> i64) -> bool {
    !lines.is_empty() && lines.iter().all(|line| pick(line) >= line.quantity)
}

/// The payment read model's amounts (minor units of the payment's currency) and status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PaymentRow {
    pub status: String,
    pub amount: i64,
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub refund_pending: i64,
    pub charged_back: i64,
    pub failure_reason: Option<String>,
}

fn add(a: i64, b: i64) -> Result<i64, ProjectionError> {
    a.checked_add(b)
        .ok_or(ProjectionError::Overflow("payment amount"))
}

impl PaymentRow {
    /// Folds one event that follows `payment.created` (which creates the row).
    pub fn apply(&mut self, event: &PaymentEvent) -> Result<(), ProjectionError> {
        match event {
            PaymentEvent::Created(created) => {
                *self = Self {
                    status: "created".into(),
                    amount: created.amount.amount_minor,
                    ..Self::default()
                };
            }
            PaymentEvent::RequiresAction(_) => self.status = "requires_action".into(),
            PaymentEvent::Authorized(e) => {
                self.authorized = e.amount.amount_minor;
                self.status = "authorized".into();
            }
            PaymentEvent::Captured(e) => {
                self.captured = e.total_captured.amount_minor;
                self.status = if self.captured >= self.authorized.max(self.amount) {
                    "captured"
                } else {
                    "partially_captured"
                }
                .into();
            }
            PaymentEvent::Succeeded(e) => {
                self.captured = self.captured.max(e.amount.amount_minor);
                self.authorized = self.authorized.max(self.captured);
                self.status = "captured".into();
            }
            PaymentEvent::Failed(e) => {
                self.failure_reason = Some(e.reason.clone());
                self.status = "failed".into();
            }
            PaymentEvent::Voided(_) => {
                // Only the uncaptured part is released: a partially captured payment stays captured.
                self.authorized = self.captured;
                if self.captured == 0 {
                    self.status = "voided".into();
                }
            }
            PaymentEvent::Expired(_) => {
                self.authorized = self.captured;
                self.status = "expired".into();
            }
            PaymentEvent::RefundRequested(e) => {
                self.refund_pending = add(self.refund_pending, e.amount.amount_minor)?;
            }
            PaymentEvent::Refunded(e) => {
                self.refunded = e.total_refunded.amount_minor;
                self.refund_pending = self
                    .refund_pending
                    .saturating_sub(e.amount.amount_minor)
                    .max(0);
                self.status = if self.refunded >= self.captured {
                    "refunded"
                } else {
                    "partially_refunded"
                }
                .into();
            }
            PaymentEvent::RefundFailed(e) => {
                self.refund_pending = self
                    .refund_pending
                    .saturating_sub(e.amount.amount_minor)
                    .max(0);
            }
            PaymentEvent::ChargedBack(e) => {
                self.charged_back = add(self.charged_back, e.amount.amount_minor)?;
                self.status = "charged_back".into();
            }
            PaymentEvent::ProviderEventRecorded(_) => {}
        }
        Ok(())
    }
}

/// An order's `payment_status` from the payments made for it (failed and expired ones ignored):
/// refunds first, then captures, then authorizations against the order total.
pub fn order_payment_status(order_total: i64, payments: &[PaymentRow]) -> &'static str {
    let live: Vec<&PaymentRow> = payments
        .iter()
        .filter(|p| !matches!(p.status.as_str(), "failed" | "expired"))
        .collect();
    let sum = |pick: fn(&PaymentRow) -> i64| {
        live.iter()
            .map(|p| pick(p))
            .fold(0_i64, i64::saturating_add)
    };
    let (captured, refunded) = (sum(|p| p.captured), sum(|p| p.refunded));
    let authorized = sum(|p| p.authorized);
    if refunded > 0 {
        return if refunded >= captured {
            "refunded"
        } else {
            "partially_refunded"
        };
    }
    if captured > 0 {
        return if captured >= order_total {
            "captured"
        } else {
            "partially_captured"
        };
    }
    if authorized > 0 {
        return if authorized >= order_total {
            "authorized"
        } else {
            "partially_authorized"
        };
    }
    if live.iter().any(|p| p.status == "requires_action") {
        return "requires_action";
    }
    if !live.is_empty() && live.iter().all(|p| p.status == "voided") {
        return "voided";
    }
    "not_paid"
}

/// One inventory stream's level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StockLevel {
    pub on_hand: i64,
    pub reserved: i64,
    pub safety_threshold: i64,
    pub backorder_limit: i64,
}

fn stock(value: u64) -> Result<i64, ProjectionError> {
    i64::try_from(value).map_err(|_| ProjectionError::Overflow("stock"))
}

impl StockLevel {
    /// Folds one inventory event. Absolute `on_hand_after` values are taken as they are, so the
    /// level is exactly the aggregate's.
    pub fn apply(&mut self, event: &InventoryEvent) -> Result<(), ProjectionError> {
        let release = |level: &mut Self, quantity: u32| -> Result<(), ProjectionError> {
            level.reserved = level
                .reserved
                .checked_sub(i64::from(quantity))
                .filter(|reserved| *reserved >= 0)
                .ok_or(ProjectionError::Overflow("reserved stock below zero"))?;
            Ok(())
        };
        match event {
            InventoryEvent::Received(e) => self.on_hand = stock(e.on_hand_after)?,
            InventoryEvent::Adjusted(e) => self.on_hand = stock(e.on_hand_after)?,
            InventoryEvent::Restocked(e) => self.on_hand = stock(e.on_hand_after)?,
            InventoryEvent::PolicyChanged(e) => {
                self.safety_threshold = stock(e.safety_threshold)?;
                self.backorder_limit = stock(e.backorder_limit)?;
            }
            InventoryEvent::Reserved(e) => {
                self.reserved = self
                    .reserved
                    .checked_add(i64::from(e.quantity))
                    .ok_or(ProjectionError::Overflow("reserved stock"))?;
            }
            InventoryEvent::Released(e) => release(self, e.quantity)?,
            InventoryEvent::ReservationExpired(e) => release(self, e.quantity)?,
            InventoryEvent::Committed(e) => {
                let quantity = e
                    .quantity
                    .checked_add(e.released_remainder)
                    .ok_or(ProjectionError::Overflow("committed quantity"))?;
                release(self, quantity)?;
                self.on_hand = stock(e.on_hand_after)?;
            }
            InventoryEvent::Insufficient(_) | InventoryEvent::ReservationExtended(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(quantity: i64, fulfilled: i64, shipped: i64, delivered: i64) -> LineProgress {
        LineProgress {
            quantity,
            fulfilled,
            shipped,
            delivered,
            returned: 0,
        }
    }

    #[test]
    fn fulfilment_follows_the_furthest_stage_of_the_lines() {
        assert_eq!(fulfillment_status(&[line(2, 0, 0, 0)]), "not_fulfilled");
        assert_eq!(
            fulfillment_status(&[line(2, 1, 0, 0)]),
            "partially_fulfilled"
        );
        assert_eq!(
            fulfillment_status(&[line(2, 2, 0, 0), line(1, 1, 0, 0)]),
            "fulfilled"
        );
        assert_eq!(
            fulfillment_status(&[line(2, 2, 2, 0), line(1, 1, 0, 0)]),
            "partially_shipped"
        );
        assert_eq!(fulfillment_status(&[line(2, 2, 2, 2)]), "delivered");
    }

    fn payment(status: &str, authorized: i64, captured: i64, refunded: i64) -> PaymentRow {
        PaymentRow {
            status: status.into(),
            amount: 100,
            authorized,
            captured,
            refunded,
            ..PaymentRow::default()
        }
    }

    #[test]
    fn an_order_payment_status_sums_its_payments() {
        assert_eq!(order_payment_status(100, &[]), "not_paid");
        assert_eq!(
            order_payment_status(100, &[payment("failed", 0, 0, 0)]),
            "not_paid"
        );
        assert_eq!(
            order_payment_status(100, &[payment("authorized", 100, 0, 0)]),
            "authorized"
        );
        assert_eq!(
            order_payment_status(100, &[payment("authorized", 40, 0, 0)]),
            "partially_authorized"
        );
        assert_eq!(
            order_payment_status(100, &[payment("captured", 100, 100, 0)]),
            "captured"
        );
        assert_eq!(
            order_payment_status(100, &[payment("partially_refunded", 100, 100, 30)]),
            "partially_refunded"
        );
        assert_eq!(
            order_payment_status(100, &[payment("refunded", 100, 100, 100)]),
            "refunded"
        );
        assert_eq!(
            order_payment_status(100, &[payment("voided", 0, 0, 0)]),
            "voided"
        );
        assert_eq!(
            order_payment_status(100, &[payment("requires_action", 0, 0, 0)]),
            "requires_action"
        );
    }
}
