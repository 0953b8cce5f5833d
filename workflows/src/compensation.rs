//! The compensation process manager: an order canceled (by its customer, an operator or a
//! process manager) or expired gives back everything the checkout took (ORD-6): its active
//! reservations are released, and each of its payments is voided (nothing captured) or
//! refunded (captured). Units a canceled order had committed (a fulfilment created, nothing
//! shipped) are restocked, and a label bought for it and not shipped is voided at the carrier
//! and canceled, so nobody ships a canceled order and nobody pays for its label.
//!
//! What to compensate is the union of the order's own record (reservations, payment ids) and
//! the process manager's links, which are written before each creation: a reservation or a
//! payment whose creating step crashed half way is still found.

use std::collections::BTreeSet;
use std::sync::Arc;

use commerce_aggregates::inventory::{Inventory, InventoryCommand, StockItem};
use commerce_aggregates::order::{Order, OrderStatus};
use commerce_aggregates::payment::{Payment, PaymentCommand, RefundOutcome};
use commerce_aggregates::shipment::{Shipment, ShipmentCommand, ShipmentStatus};
use commerce_domain::{LocationId, Money, Quantity, ReservationId, ShipmentId, Sku};
use uuid::Uuid;

use crate::engine::{Cause, Engine};
use crate::error::WorkflowError;
use crate::ids::{derived, order_shipment};
use crate::links::{Owner, ReservationLink};

/// `order.canceled` / `order.expired`.
pub(crate) async fn on_order_closed(
    engine: &Engine,
    cause: &Cause,
    order_id: Uuid,
    reason: &str,
) -> Result<(), WorkflowError> {
    // The label first: once its units are restocked, a parcel still shippable would count
    // them twice.
    cancel_shipment(engine, cause, order_shipment(order_id), reason).await?;
    let owner = Owner::Order(order_id);
    let order: Arc<Order> = engine.load(&cause.tenant, order_id.to_string()).await?;
    let mut reservations = engine.links().reservations(&cause.tenant, owner).await?;
    for reservation in order.reservations() {
        if !reservations
            .iter()
            .any(|known| known.reservation_id == reservation.reservation_id)
        {
            reservations.push(ReservationLink {
                reservation_id: reservation.reservation_id,
                sku: reservation.sku.clone(),
                location: reservation.location.clone(),
                quantity: reservation.quantity,
            });
        }
    }
    release_all(engine, cause, &reservations, reason).await?;
    restock_committed(engine, cause, &reservations).await?;
    let mut payments: BTreeSet<(Uuid, Option<String>)> = engine
        .links()
        .payments(&cause.tenant, owner)
        .await?
        .into_iter()
        .map(|link| (link.payment_id, link.provider_ref))
        .collect();
    for payment_id in order.payment_ids() {
        if !payments.iter().any(|(id, _)| *id == payment_id.as_uuid()) {
            payments.insert((payment_id.as_uuid(), None));
        }
    }
    for (payment_id, provider_ref) in payments {
        settle_payment(engine, cause, payment_id, provider_ref).await?;
    }
    Ok(())
}

/// Cancels the order's shipment while its label is all there is of it (shipped parcels are
/// past canceling, and the order refuses a cancel once anything shipped). Also for a label
/// that lands after the order's compensation ran (`checkout::on_label_created`).
///
/// The carrier voids the label first: once the shipment reads canceled this reaction does
/// nothing more, so a crash between the two would leave the carrier's label live and billed.
/// A re-run voids again under the same key, which the carrier answers as done.
pub(crate) async fn cancel_shipment(
    engine: &Engine,
    cause: &Cause,
    shipment_id: ShipmentId,
    reason: &str,
) -> Result<(), WorkflowError> {
    let shipment: Arc<Shipment> = engine.load(&cause.tenant, shipment_id.to_string()).await?;
    if shipment.status() != Some(ShipmentStatus::LabelCreated) {
        return Ok(());
    }
    engine
        .carrier
        .void_label(shipment.tracking_number(), &format!("{shipment_id}:void"))
        .await?;
    drop(shipment);
    engine
        .issue(
            &engine.shipments,
            cause,
            "shipment.cancel",
            shipment_id.to_string(),
            ShipmentCommand::Cancel {
                reason: reason.to_owned(),
                at: engine.now(),
            },
        )
        .await?;
    Ok(())
}

/// `inventory.reserved` for an order: a reservation that lands after its order was canceled
/// (a previous leader still finishing the order's checkout after losing its lock, once the
/// cancel's compensation has run) is released at once, so no stock stays held for a closed
/// order. In the usual order of things the compensation releases it too; the second release
/// is a no-op.
pub(crate) async fn on_reserved_for_order(
    engine: &Engine,
    cause: &Cause,
    order_id: Uuid,
    reservation: &ReservationLink,
) -> Result<(), WorkflowError> {
    let order: Arc<Order> = engine.load(&cause.tenant, order_id.to_string()).await?;
    if order.status() != Some(OrderStatus::Canceled) {
        return Ok(());
    }
    release_all(
        engine,
        cause,
        std::slice::from_ref(reservation),
        "order_closed",
    )
    .await
}

/// Puts back on the shelf what a canceled order had committed (its fulfilment was created but
/// nothing shipped, ORD-7): a committed reservation cannot be released, and without this its
/// units would be lost to the stock. Keyed per reservation under the closing event, so once.
async fn restock_committed(
    engine: &Engine,
    cause: &Cause,
    reservations: &[ReservationLink],
) -> Result<(), WorkflowError> {
    let now = engine.now();
    for reservation in reservations {
        // The snapshot is gone by the `Restock` below (a live one would make it copy the stream).
        let committed = engine
            .load::<Inventory>(&cause.tenant, reservation.stream_key())
            .await?
            .reservation(ReservationId::from_uuid(reservation.reservation_id))
            .map_or(0, |r| r.committed());
        let Ok(quantity) = Quantity::new(committed) else {
            continue;
        };
        let item = StockItem::new(
            Sku::new(reservation.sku.as_str())
                .map_err(|e| WorkflowError::decode("reservation sku", e))?,
            LocationId::new(reservation.location.as_str())
                .map_err(|e| WorkflowError::decode("reservation location", e))?,
        );
        engine
            .issue(
                &engine.inventory,
                cause,
                &format!("restock:{}", reservation.reservation_id),
                reservation.stream_key(),
                InventoryCommand::Restock {
                    item,
                    quantity,
                    return_id: None,
                    at: now,
                },
            )
            .await?;
    }
    Ok(())
}

/// Releases every listed reservation that is still active (others are no-ops or unknown).
pub(crate) async fn release_all(
    engine: &Engine,
    cause: &Cause,
    reservations: &[ReservationLink],
    reason: &str,
) -> Result<(), WorkflowError> {
    let now = engine.now();
    for reservation in reservations {
        engine
            .issue(
                &engine.inventory,
                cause,
                &format!("release:{}", reservation.reservation_id),
                reservation.stream_key(),
                InventoryCommand::Release {
                    reservation_id: ReservationId::from_uuid(reservation.reservation_id),
                    reason: reason.to_owned(),
                    at: now,
                },
            )
            .await?;
    }
    Ok(())
}

/// Gives a payment's money back: voids what is held but not captured, refunds what is
/// captured and not yet refunded. Already settled (terminal) payments are left alone, so a
/// re-run is harmless.
pub(crate) async fn settle_payment(
    engine: &Engine,
    cause: &Cause,
    payment_id: Uuid,
    provider_ref: Option<String>,
) -> Result<(), WorkflowError> {
    let payment: Arc<Payment> = engine.load(&cause.tenant, payment_id.to_string()).await?;
    let Some(status) = payment.status() else {
        return Ok(());
    };
    if status.is_terminal() {
        return Ok(());
    }
    // What the steps below need, read before the snapshot goes (a live one would make the
    // payment commands copy the payment).
    let captured = payment.captured().map_or(0, |m| m.amount_minor());
    let taken_back = [
        payment.refunded(),
        payment.refund_pending(),
        payment.charged_back(),
    ]
    .iter()
    .flatten()
    .try_fold(0_i64, |sum, money| sum.checked_add(money.amount_minor()));
    let currency = payment.amount().map(|m| m.currency());
    // One compensation refund per payment: a re-run (from any cause) names the same refund, so
    // the aggregate dedupes the request and a pending one is settled rather than doubled.
    let refund_id = derived(&["refund", &payment_id.to_string()]);
    let asked_before = payment.refund_request(refund_id);
    drop(payment);
    let provider_ref = match provider_ref {
        Some(reference) => Some(reference),
        None => {
            engine
                .links()
                .provider_ref(&cause.tenant, payment_id)
                .await?
        }
    };
    let now = engine.now();
    if captured == 0 {
        if let Some(reference) = &provider_ref {
            engine
                .gateway
                .void(reference, &format!("{payment_id}:void"))
                .await?;
        }
        engine
            .issue(
                &engine.payments,
                cause,
                &format!("void:{payment_id}"),
                payment_id.to_string(),
                PaymentCommand::Void {
                    reason: "compensation".to_owned(),
                    at: now,
                },
            )
            .await?;
        return Ok(());
    }
    let taken_back =
        taken_back.ok_or_else(|| WorkflowError::decode("payment amounts", "overflow"))?;
    let Some(currency) = currency else {
        return Ok(());
    };
    let owed = captured.saturating_sub(taken_back);
    // The provider is asked for this refund's own amount: other refunds (an operator's, still
    // pending at the provider) are not ours to send again.
    let amount = match asked_before {
        Some((amount, RefundOutcome::Pending)) => amount.amount_minor(),
        Some((_, RefundOutcome::Settled)) => return Ok(()),
        Some((amount, RefundOutcome::Failed)) => {
            tracing::warn!(
                tenant = %cause.tenant,
                %payment_id,
                %refund_id,
                amount = amount.amount_minor(),
                "the compensation refund failed at the provider; it needs an operator"
            );
            return Ok(());
        }
        None if owed == 0 => return Ok(()),
        None => {
            engine
                .issue(
                    &engine.payments,
                    cause,
                    &format!("refund:{payment_id}"),
                    payment_id.to_string(),
                    PaymentCommand::RequestRefund {
                        refund_id,
                        amount: Money::new(owed, currency),
                        reason: "compensation".to_owned(),
                        at: now,
                    },
                )
                .await?;
            owed
        }
    };
    if let Some(reference) = &provider_ref {
        engine
            .gateway
            .refund(
                reference,
                Money::new(amount, currency),
                &format!("refund:{refund_id}"),
            )
            .await?;
    }
    engine
        .issue(
            &engine.payments,
            cause,
            &format!("refund_settled:{payment_id}"),
            payment_id.to_string(),
            PaymentCommand::RecordRefundSettled { refund_id, at: now },
        )
        .await?;
    Ok(())
}
