//! The checkout process manager: `order.created` → reserve stock → pay → confirm → fulfil,
//! commit the stock and buy the label → attach it to the order.
//!
//! Each handler does every step it can for its event, in order, each step an idempotent
//! command; the next handler is triggered by the event the last step appended. Ids of what it
//! creates are derived from the order (see `ids`), and everything is linked to the order in
//! `workflow_links` before it is created, for compensation.
//!
//! Timing choices: stock is held until the order's own expiry plus [`RESERVATION_GRACE`], so
//! the order expiry (which releases it through compensation) normally comes first; the
//! reservation's own deadline is the safety net. A confirmed order's stock is committed at
//! fulfilment, so it can no longer lapse (ORD-5); a reservation deadline that comes between the
//! confirmation and the fulfilment commits a confirmed order's due stock instead of expiring it.
//! A payment that succeeds after its order's stock lapsed is refunded and the order canceled
//! rather than left short (the gap Vendure leaves).
//!
//! Re-runs: a reaction runs again from its first step after a crash or a transient failure
//! (and a previous leader may finish one late), on whatever state came since, its commands
//! replaying their stored outcomes. So a guard on the current state accepts the states its own
//! earlier run (and the events after it) can have produced, and attempt numbers are derived
//! from the event, never from counters that move.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use commerce_aggregates::inventory::{InventoryCommand, MAX_RESERVATION_TTL, StockItem};
use commerce_aggregates::order::{
    LineQuantity, Order, OrderCommand, OrderStatus, StockReservation,
};
use commerce_aggregates::payment::{CreatePayment, Payment, PaymentCommand, PaymentStatus};
use commerce_aggregates::shipment::{CreateLabel, ShipmentCommand};
use commerce_contracts::ReservationHolder;
use commerce_contracts::events::{
    CancelReason, CapturePolicy, OrderCreated, PaymentPurpose, ShippingLabelCreated,
};
use commerce_domain::{
    CustomerId, LocationId, OrderId, PaymentId, Quantity, ReservationId, ShipmentId, Sku,
};
use uuid::Uuid;

use crate::compensation;
use crate::deadlines::DeadlineKind;
use crate::engine::{Cause, Engine, Issued};
use crate::error::WorkflowError;
use crate::gateway::{GatewayDecision, LabelRequest, PaymentRequest};
use crate::ids::{derived, order_shipment};
use crate::links::{Owner, PaymentLink, ReservationLink};

/// How long stock outlives its order's unpaid deadline.
const RESERVATION_GRACE: Duration = Duration::minutes(5);

/// The actor name recorded as `canceled_by` when a process manager cancels.
const SYSTEM: &str = "system";

fn invalid(what: &str, error: impl ToString) -> WorkflowError {
    WorkflowError::decode(what, error)
}

/// `order.created`: arm the expiry; for a checkout order, reserve each SKU's summed quantity.
pub(crate) async fn on_order_created(
    engine: &Engine,
    cause: &Cause,
    created: &OrderCreated,
) -> Result<(), WorkflowError> {
    let order_key = created.order_id.to_string();
    engine
        .deadlines()
        .schedule(
            cause,
            DeadlineKind::OrderExpiry,
            &order_key,
            created.expires_at,
        )
        .await?;
    if created.campaign_id.is_some() {
        return crate::campaign::on_campaign_order_created(engine, cause, created).await;
    }
    // A cancel that overtook this reaction: holding stock for a closed order would only make
    // other orders fail short until compensation gives it back. An earlier, interrupted run of
    // this reaction may have reserved already: the cancel's compensation finds that through the
    // links. (A reservation that still lands after the cancel, from a previous leader finishing
    // this reaction late, is released by the reaction to `inventory.reserved`.)
    let order: Arc<Order> = engine.load(&cause.tenant, order_key.clone()).await?;
    if order.status().is_some_and(OrderStatus::is_terminal) {
        return Ok(());
    }
    let owner = Owner::Order(created.order_id);
    let now = engine.now();
    let expires_at =
        (created.expires_at.max(now) + RESERVATION_GRACE).min(now + MAX_RESERVATION_TTL);
    let mut per_sku: BTreeMap<&str, Vec<Quantity>> = BTreeMap::new();
    for line in &created.lines {
        let quantity = Quantity::new(line.quantity).map_err(|e| invalid("order line", e))?;
        per_sku.entry(line.sku.as_str()).or_default().push(quantity);
    }
    let location = LocationId::default_location();
    let mut reservations = Vec::new();
    let mut short = false;
    for (sku, lines) in per_sku {
        let sku = Sku::new(sku).map_err(|e| invalid("order sku", e))?;
        let reservation_id = ReservationId::from_uuid(derived(&[
            "reservation",
            &order_key,
            sku.as_str(),
            location.as_str(),
        ]));
        let quantity = lines
            .iter()
            .try_fold(0_u32, |sum, q| sum.checked_add(q.get()))
            .ok_or_else(|| invalid("order lines", "summed quantity overflows"))?;
        let link = ReservationLink {
            reservation_id: reservation_id.as_uuid(),
            sku: sku.as_str().to_owned(),
            location: location.as_str().to_owned(),
            quantity,
        };
        engine
            .links()
            .add_reservation(&cause.tenant, owner, &link)
            .await?;
        let item = StockItem::new(sku.clone(), location.clone());
        let issued = engine
            .issue(
                &engine.inventory,
                cause,
                &format!("reserve:{}", sku.as_str()),
                item.stream_key(),
                InventoryCommand::Reserve {
                    item,
                    reservation_id,
                    holder: ReservationHolder::Order(created.order_id),
                    lines,
                    expires_at,
                    at: now,
                },
            )
            .await?;
        if reserved(engine, cause, &issued, &link).await? {
            reservations.push(StockReservation {
                reservation_id,
                sku,
                location: location.clone(),
                quantity: Quantity::new(quantity).map_err(|e| invalid("reserved quantity", e))?,
            });
        } else {
            short = true;
        }
    }
    let command = if short {
        OrderCommand::Cancel {
            reason: CancelReason::InsufficientStock,
            note: None,
            by: SYSTEM.to_owned(),
            at: now,
        }
    } else {
        OrderCommand::RecordStockReserved {
            reservations,
            at: now,
        }
    };
    engine
        .issue(&engine.orders, cause, "stock_outcome", order_key, command)
        .await?;
    Ok(())
}

/// Whether a `Reserve` ended with the stock held (a replay or repeat is checked on the stream).
async fn reserved(
    engine: &Engine,
    cause: &Cause,
    issued: &Issued,
    link: &ReservationLink,
) -> Result<bool, WorkflowError> {
    Ok(match issued {
        Issued::Refused(_) => false,
        _ if issued.appended("inventory.reserved") => true,
        _ if issued.appended("inventory.insufficient") => false,
        Issued::Applied(_) => {
            let inventory: Arc<commerce_aggregates::inventory::Inventory> =
                engine.load(&cause.tenant, link.stream_key()).await?;
            inventory
                .reservation(ReservationId::from_uuid(link.reservation_id))
                .is_some_and(|r| r.is_active())
        }
    })
}

/// `order.stock_reserved`: open the first payment attempt (when the order names a method).
pub(crate) async fn on_stock_reserved(
    engine: &Engine,
    cause: &Cause,
    order_id: Uuid,
) -> Result<(), WorkflowError> {
    let order: Arc<Order> = engine.load(&cause.tenant, order_id.to_string()).await?;
    if order.campaign().is_some() {
        return Ok(());
    }
    // This reaction only ever opens the first attempt (retries are `on_payment_failed`'s). A
    // first run starts on a placed order. A re-run (after a crash, a transient failure, or a
    // previous leader's late finish) finds whatever state came since: once its
    // `RequestPayment` was applied, the order may be awaiting payment, canceled by a customer
    // who overtook the charge, or further on, and every step must go on, replaying, so a
    // charge the provider may already have taken is recorded, and then confirmed or refunded
    // by the reaction to its outcome.
    let requested = order
        .payment_ids()
        .contains(&attempt_payment_id(order_id, 1));
    if order.status() != Some(OrderStatus::Placed) && !requested {
        return Ok(());
    }
    start_payment(engine, cause, order_id, &order, 1).await
}

/// The payment of attempt `attempt` (1-based) of an order.
fn attempt_payment_id(order_id: Uuid, attempt: u32) -> PaymentId {
    PaymentId::from_uuid(derived(&[
        "payment",
        &order_id.to_string(),
        &attempt.to_string(),
    ]))
}

/// Which attempt of the order `payment_id` is (1-based), if it is one of the order's own.
fn attempt_of(order_id: Uuid, payment_id: Uuid) -> Option<u32> {
    (1..=commerce_aggregates::order::MAX_PAYMENT_ATTEMPTS)
        .find(|attempt| attempt_payment_id(order_id, *attempt).as_uuid() == payment_id)
}

/// Opens payment attempt `attempt` for the order, requests it on the order and charges it.
async fn start_payment(
    engine: &Engine,
    cause: &Cause,
    order_id: Uuid,
    order: &Order,
    attempt: u32,
) -> Result<(), WorkflowError> {
    let (Some(method), Some(amount)) = (order.payment_method(), order.total()) else {
        // No method chosen: the order waits for its expiry.
        return Ok(());
    };
    let payment_id = attempt_payment_id(order_id, attempt);
    let owner = Owner::Order(order_id);
    let link = PaymentLink {
        payment_id: payment_id.as_uuid(),
        provider_ref: None,
    };
    engine
        .links()
        .add_payment(&cause.tenant, owner, &link)
        .await?;
    let now = engine.now();
    let customer = CustomerId::new(order.customer_id()).map_err(|e| invalid("customer", e))?;
    engine
        .issue(
            &engine.payments,
            cause,
            &format!("payment.create:{attempt}"),
            payment_id.to_string(),
            PaymentCommand::Create(CreatePayment {
                payment_id,
                purpose: PaymentPurpose::Order { order_id },
                customer,
                amount,
                method: method.to_owned(),
                provider: engine.gateway.name().to_owned(),
                capture_policy: CapturePolicy::Automatic,
                at: now,
            }),
        )
        .await?;
    let requested = engine
        .issue(
            &engine.orders,
            cause,
            &format!("request_payment:{attempt}"),
            order_id.to_string(),
            OrderCommand::RequestPayment {
                payment_id,
                at: now,
            },
        )
        .await?;
    if requested.is_refused() {
        // The order moved on (canceled, expired): abandon the intent instead of charging.
        return compensation::settle_payment(engine, cause, payment_id.as_uuid(), None).await;
    }
    let request = PaymentRequest {
        payment_id,
        method: method.to_owned(),
        amount,
        idempotency_key: format!("{payment_id}:charge"),
    };
    let decision = engine.gateway.charge(&request).await?;
    record_decision(engine, cause, owner, payment_id, decision, None).await
}

/// Records what the provider answered on the payment (and remembers its reference).
pub(crate) async fn record_decision(
    engine: &Engine,
    cause: &Cause,
    owner: Owner,
    payment_id: PaymentId,
    decision: GatewayDecision,
    authorized: Option<commerce_domain::Money>,
) -> Result<(), WorkflowError> {
    let now = engine.now();
    let (provider_ref, command) = match decision {
        GatewayDecision::Approved {
            provider_ref,
            auth_expires_at,
        } => {
            let command = match authorized {
                Some(amount) => PaymentCommand::RecordAuthorization {
                    amount,
                    provider_ref: provider_ref.clone(),
                    auth_expires_at,
                    at: now,
                },
                None => PaymentCommand::RecordCharge {
                    provider_ref: provider_ref.clone(),
                    at: now,
                },
            };
            (provider_ref, command)
        }
        GatewayDecision::Declined {
            reason,
            provider_ref,
        } => (
            provider_ref.clone(),
            PaymentCommand::RecordFailure {
                reason,
                provider_ref: Some(provider_ref),
                at: now,
            },
        ),
        GatewayDecision::RequiresAction { provider_ref } => (
            provider_ref.clone(),
            PaymentCommand::RecordRequiresAction {
                provider_ref,
                at: now,
            },
        ),
    };
    let link = PaymentLink {
        payment_id: payment_id.as_uuid(),
        provider_ref: Some(provider_ref),
    };
    engine
        .links()
        .add_payment(&cause.tenant, owner, &link)
        .await?;
    engine
        .issue(
            &engine.payments,
            cause,
            "payment.record",
            payment_id.to_string(),
            command,
        )
        .await?;
    Ok(())
}

/// `payment.succeeded` of an order's payment: confirm, unless the order moved on or its stock
/// lapsed, in which case the money goes back.
pub(crate) async fn on_payment_succeeded(
    engine: &Engine,
    cause: &Cause,
    order_id: Uuid,
    payment_id: Uuid,
) -> Result<(), WorkflowError> {
    let order: Arc<Order> = engine.load(&cause.tenant, order_id.to_string()).await?;
    let Some(covered) = engine
        .load::<Payment>(&cause.tenant, payment_id.to_string())
        .await?
        .captured()
    else {
        return Ok(());
    };
    let now = engine.now();
    if order.confirmed_by() == Some(PaymentId::from_uuid(payment_id)) {
        // An earlier run confirmed on this payment: whatever the order did since (completed,
        // or canceled, which its compensation settles) is no reason to give the money back.
        return Ok(());
    }
    if order.status().is_some_and(OrderStatus::is_terminal) {
        return compensation::settle_payment(engine, cause, payment_id, None).await;
    }
    if !stock_held(engine, cause, &order).await? {
        engine
            .issue(
                &engine.orders,
                cause,
                "cancel_lapsed",
                order_id.to_string(),
                OrderCommand::Cancel {
                    reason: CancelReason::InsufficientStock,
                    note: Some("stock reservation lapsed before the payment settled".to_owned()),
                    by: SYSTEM.to_owned(),
                    at: now,
                },
            )
            .await?;
        return compensation::settle_payment(engine, cause, payment_id, None).await;
    }
    let confirmed = engine
        .issue(
            &engine.orders,
            cause,
            "confirm",
            order_id.to_string(),
            OrderCommand::Confirm {
                payment_id: PaymentId::from_uuid(payment_id),
                covered,
                at: now,
            },
        )
        .await?;
    if let Issued::Refused(error) = confirmed {
        tracing::warn!(%order_id, %payment_id, %error, "a settled payment could not confirm its order: refunding");
        return compensation::settle_payment(engine, cause, payment_id, None).await;
    }
    Ok(())
}

/// Whether every reservation of the order is still active or already committed.
async fn stock_held(engine: &Engine, cause: &Cause, order: &Order) -> Result<bool, WorkflowError> {
    for reservation in order.reservations() {
        let key = format!("{}:{}", reservation.sku, reservation.location);
        let inventory: Arc<commerce_aggregates::inventory::Inventory> =
            engine.load(&cause.tenant, key).await?;
        let held = inventory
            .reservation(ReservationId::from_uuid(reservation.reservation_id))
            .is_some_and(|r| r.is_active() || r.committed() > 0);
        if !held {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Before a reservation deadline expires what is due on an inventory stream: the due stock
/// of a confirmed order is committed instead ("if paid, commit instead", §3.3). The order's
/// own commit comes with its fulfilment (the reaction to `order.confirmed`), which may run
/// after this deadline, and a lapsed reservation there would leave a paid order without stock
/// (ORD-5).
pub(crate) async fn commit_paid_due(
    engine: &Engine,
    cause: &Cause,
    stream_key: &str,
) -> Result<(), WorkflowError> {
    let now = engine.now();
    // Collected into owned values, so the commits below do not copy the inventory stream.
    let due = engine
        .load::<commerce_aggregates::inventory::Inventory>(&cause.tenant, stream_key)
        .await?
        .reservations()
        .filter(|r| r.is_active() && r.expires_at() <= now)
        .filter_map(|r| match r.holder() {
            ReservationHolder::Order(order_id) => Some((r.id(), r.quantity(), order_id)),
            ReservationHolder::CampaignParticipant(_) => None,
        })
        .collect::<Vec<_>>();
    for (reservation_id, quantity, order_id) in due {
        let order: Arc<Order> = engine.load(&cause.tenant, order_id.to_string()).await?;
        let paid = order.confirmed_by().is_some()
            && order.status() != Some(OrderStatus::Canceled)
            && order
                .reservations()
                .iter()
                .any(|r| r.reservation_id == reservation_id.as_uuid());
        if !paid {
            continue;
        }
        let quantity = Quantity::new(quantity).map_err(|e| invalid("reservation", e))?;
        engine
            .issue(
                &engine.inventory,
                cause,
                &format!("commit_paid:{reservation_id}"),
                stream_key.to_owned(),
                InventoryCommand::Commit {
                    reservation_id,
                    quantity,
                    at: now,
                },
            )
            .await?;
    }
    Ok(())
}

/// The unpaid-order deadline: expire the order. A payment still waiting for the customer
/// (`requires_action`: 3-D Secure never completed) would keep the order open for ever (the
/// order refuses to expire with a payment in flight, ORD-9), so it is voided first, with the
/// provider and then on the payment, its attempt is recorded as failed on the order, and the
/// order expires. A payment that settled meanwhile is left to its own reaction. Every step is
/// keyed under the deadline, so a re-fire after a crash replays them.
pub(crate) async fn expire_order(
    engine: &Engine,
    cause: &Cause,
    order_key: &str,
) -> Result<Issued, WorkflowError> {
    let now = engine.now();
    let issued = engine
        .issue(
            &engine.orders,
            cause,
            "fire",
            order_key.to_owned(),
            OrderCommand::Expire { at: now },
        )
        .await?;
    if !issued.is_refused() {
        return Ok(issued);
    }
    let Some(payment_id) = engine
        .load::<Order>(&cause.tenant, order_key.to_owned())
        .await?
        .payment_in_flight()
    else {
        return Ok(issued);
    };
    let status = engine
        .load::<Payment>(&cause.tenant, payment_id.to_string())
        .await?
        .status();
    if status != Some(PaymentStatus::RequiresAction) {
        return Ok(issued);
    }
    if let Some(reference) = engine
        .links()
        .provider_ref(&cause.tenant, payment_id.as_uuid())
        .await?
    {
        engine
            .gateway
            .void(&reference, &format!("{payment_id}:void"))
            .await?;
    }
    let voided = engine
        .issue(
            &engine.payments,
            cause,
            "void_in_flight",
            payment_id.to_string(),
            PaymentCommand::Void {
                reason: "order_expired".to_owned(),
                at: now,
            },
        )
        .await?;
    if voided.is_refused() {
        return Ok(issued);
    }
    engine
        .issue(
            &engine.orders,
            cause,
            "in_flight_failed",
            order_key.to_owned(),
            OrderCommand::RecordPaymentFailed {
                payment_id,
                reason: "expired_awaiting_action".to_owned(),
                at: now,
            },
        )
        .await?;
    engine
        .issue(
            &engine.orders,
            cause,
            "fire_after_void",
            order_key.to_owned(),
            OrderCommand::Expire { at: now },
        )
        .await
}

/// `payment.failed` of an order's payment: record it, then retry by policy or cancel.
pub(crate) async fn on_payment_failed(
    engine: &Engine,
    cause: &Cause,
    order_id: Uuid,
    payment_id: Uuid,
    reason: &str,
) -> Result<(), WorkflowError> {
    let now = engine.now();
    engine
        .issue(
            &engine.orders,
            cause,
            "payment_failed",
            order_id.to_string(),
            OrderCommand::RecordPaymentFailed {
                payment_id: PaymentId::from_uuid(payment_id),
                reason: reason.to_owned(),
                at: now,
            },
        )
        .await?;
    let order: Arc<Order> = engine.load(&cause.tenant, order_id.to_string()).await?;
    // The attempt that failed is read from the payment, not from the order's counter: a re-run
    // of this reaction may find the order further on (its own retry requested, failed in turn,
    // or confirmed, or canceled), and must then replay that retry, never open another one.
    let Some(failed) = attempt_of(order_id, payment_id) else {
        return Ok(());
    };
    // Only this reaction requests the next attempt: if the order knows it, an earlier run got
    // that far, and the retry goes on replaying whatever the order's state now.
    let requested = order
        .payment_ids()
        .contains(&attempt_payment_id(order_id, failed + 1));
    // Otherwise act only on an order that took this failure and waits for a decision.
    let undecided = order.status() == Some(OrderStatus::AwaitingPayment)
        && order.payment_in_flight().is_none()
        && order.failed_attempts() == failed;
    let max_attempts = engine
        .config
        .max_payment_attempts
        .min(commerce_aggregates::order::MAX_PAYMENT_ATTEMPTS);
    if requested || (undecided && failed < max_attempts) {
        return start_payment(engine, cause, order_id, &order, failed + 1).await;
    }
    if !undecided {
        return Ok(());
    }
    engine
        .issue(
            &engine.orders,
            cause,
            "cancel_payment_failed",
            order_id.to_string(),
            OrderCommand::Cancel {
                reason: CancelReason::PaymentFailed,
                note: Some(reason.to_owned()),
                by: SYSTEM.to_owned(),
                at: now,
            },
        )
        .await?;
    Ok(())
}

/// `order.confirmed`: pick everything into one fulfilment, commit its stock, buy the label.
pub(crate) async fn on_order_confirmed(
    engine: &Engine,
    cause: &Cause,
    order_id: Uuid,
) -> Result<(), WorkflowError> {
    let order: Arc<Order> = engine.load(&cause.tenant, order_id.to_string()).await?;
    // Not only `confirmed`: a re-run after a crash may find the fulfilment this reaction
    // created already shipped (or delivered, completed) by the warehouse, and must still
    // commit the stock and buy the label (each step replays or is a no-op). A canceled order
    // is compensation's.
    let paid = matches!(
        order.status(),
        Some(
            OrderStatus::Confirmed
                | OrderStatus::Shipped
                | OrderStatus::Delivered
                | OrderStatus::Completed
        )
    );
    if !paid {
        return Ok(());
    }
    let order_key = order_id.to_string();
    let now = engine.now();
    // The stock first: a reservation that lapsed or was released before this reaction ran
    // cannot be fulfilled, and the paid order is canceled and refunded rather than shipped
    // short (ORD-5; the same rule as a payment that succeeds after the stock lapsed).
    for reservation in order.reservations() {
        let quantity =
            Quantity::new(reservation.quantity).map_err(|e| invalid("reservation", e))?;
        let committed = engine
            .issue(
                &engine.inventory,
                cause,
                &format!("commit:{}", reservation.reservation_id),
                format!("{}:{}", reservation.sku, reservation.location),
                InventoryCommand::Commit {
                    reservation_id: ReservationId::from_uuid(reservation.reservation_id),
                    quantity,
                    at: now,
                },
            )
            .await?;
        let lapsed = committed.is_refused() && {
            // Refused because the goods are back-ordered (still reserved): ship when they come.
            let inventory: Arc<commerce_aggregates::inventory::Inventory> = engine
                .load(
                    &cause.tenant,
                    format!("{}:{}", reservation.sku, reservation.location),
                )
                .await?;
            !inventory
                .reservation(ReservationId::from_uuid(reservation.reservation_id))
                .is_some_and(|r| r.is_active() || r.committed() > 0)
        };
        if lapsed {
            engine
                .issue(
                    &engine.orders,
                    cause,
                    "cancel_lapsed",
                    order_key,
                    OrderCommand::Cancel {
                        reason: CancelReason::InsufficientStock,
                        note: Some("stock reservation lapsed before fulfilment".to_owned()),
                        by: SYSTEM.to_owned(),
                        at: now,
                    },
                )
                .await?;
            return Ok(());
        }
    }
    let fulfillment_id = derived(&["fulfillment", &order_key]);
    let lines = order
        .lines()
        .iter()
        .filter_map(|line| {
            let open = line
                .ordered()
                .saturating_sub(line.canceled() + line.fulfilled());
            Quantity::new(open).ok().map(|quantity| LineQuantity {
                line_no: line.line_no(),
                quantity,
            })
        })
        .collect::<Vec<_>>();
    if !lines.is_empty() {
        let fulfilled = engine
            .issue(
                &engine.orders,
                cause,
                "fulfill",
                order_key.clone(),
                OrderCommand::CreateFulfillment {
                    fulfillment_id,
                    lines,
                    location: LocationId::default_location(),
                    at: now,
                },
            )
            .await?;
        if fulfilled.is_refused() {
            // The order moved on since this reaction loaded it (a customer's cancel between
            // the two): nothing is picked, so no label is bought; compensation has the rest.
            return Ok(());
        }
    }
    let shipment_id = order_shipment(order_id);
    let label = engine
        .carrier
        .create_label(&LabelRequest {
            shipment_id,
            order_id: OrderId::from_uuid(order_id),
            idempotency_key: format!("{shipment_id}:label"),
        })
        .await?;
    engine
        .issue(
            &engine.shipments,
            cause,
            "label",
            shipment_id.to_string(),
            ShipmentCommand::CreateLabel(CreateLabel {
                shipment_id,
                order_id: OrderId::from_uuid(order_id),
                fulfillment_id: Some(fulfillment_id),
                carrier: label.carrier,
                service: label.service,
                tracking_number: label.tracking_number,
                label_url: label.label_url,
                at: now,
            }),
        )
        .await?;
    Ok(())
}

/// `shipping.label.created`: attach the label to the order's fulfilment.
pub(crate) async fn on_label_created(
    engine: &Engine,
    cause: &Cause,
    label: &ShippingLabelCreated,
) -> Result<(), WorkflowError> {
    let Some(fulfillment_id) = label.fulfillment_id else {
        return Ok(());
    };
    engine
        .issue(
            &engine.orders,
            cause,
            "attach_label",
            label.order_id.to_string(),
            OrderCommand::AttachLabel {
                fulfillment_id,
                shipment_id: ShipmentId::from_uuid(label.shipment_id),
                carrier: label.carrier.clone(),
                tracking_number: label.tracking_number.clone(),
            },
        )
        .await?;
    // A label that lands after its order was canceled (a previous leader finishing the
    // fulfilment late, once the cancel's compensation ran) goes at once.
    let order: Arc<Order> = engine
        .load(&cause.tenant, label.order_id.to_string())
        .await?;
    if order.status() == Some(OrderStatus::Canceled) {
        drop(order);
        let shipment_id = ShipmentId::from_uuid(label.shipment_id);
        compensation::cancel_shipment(engine, cause, shipment_id, "order_canceled").await?;
    }
    Ok(())
}
