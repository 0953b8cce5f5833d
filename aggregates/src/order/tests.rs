//! Given/when/then tests of every Order command and rejection.

use std::sync::Arc;

use commerce_contracts::events::{
    CancelReason, OrderAwaitingPayment, OrderCanceled, OrderCompleted, OrderConfirmed,
    OrderCreated, OrderDelivered, OrderEvent, OrderExpired, OrderFulfillmentCreated,
    OrderLabelAttached, OrderPaymentFailed, OrderReturnReceived, OrderReturnRequested,
    OrderShipped, OrderStockReserved,
};
use commerce_contracts::{LineQuantity as WireLineQuantity, OrderLine, ReservationRef};
use commerce_domain::{
    CampaignId, Currency, CustomerId, LocationId, Money, OrderId, ParticipantId, PaymentId,
    ProductId, ReservationId, ShipmentId, Sku, TenantId,
};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::{
    Facet, LineQuantity, LineRequest, MAX_LINES, MAX_PAYMENT_ATTEMPTS, Order, OrderCommand,
    OrderServices, OrderStatus, PlaceCampaignOrder, PlaceOrder, StockReservation,
};
use crate::testkit::{at_minute as t, eur, fold, q, wire_eur as w};
use crate::{CatalogEntry, CommandError, InMemoryCatalog};

const TENANT: &str = "acme";

fn sku(value: &str) -> Sku {
    Sku::new(value).expect("valid sku")
}

fn product(n: u128) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(n))
}

fn catalog() -> OrderServices {
    let entry = |n, price: Money, discontinued| CatalogEntry {
        product_id: product(n),
        price,
        discontinued,
    };
    let tenant = || TenantId::new(TENANT).expect("valid tenant");
    Arc::new(
        InMemoryCatalog::new()
            .with(tenant(), sku("TEE"), entry(1, eur(1_500), false))
            .with(tenant(), sku("MUG"), entry(2, eur(800), false))
            .with(tenant(), sku("OLD"), entry(3, eur(100), true))
            .with(
                tenant(),
                sku("USD-ONLY"),
                entry(4, Money::new(100, Currency::Usd), false),
            )
            .with(tenant(), sku("GOLD"), entry(5, eur(i64::MAX / 2), false)),
    )
}

fn framework() -> TestFramework<Order> {
    TestFramework::with(catalog())
}

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(100))
}

fn payment(n: u128) -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(200 + n))
}

fn fulfillment(n: u128) -> Uuid {
    Uuid::from_u128(300 + n)
}

fn return_id() -> Uuid {
    Uuid::from_u128(400)
}

fn place_lines(lines: &[(&str, u32)]) -> PlaceOrder {
    PlaceOrder {
        tenant: TenantId::new(TENANT).expect("valid tenant"),
        order_id: order_id(),
        customer: CustomerId::new("cus_1").expect("valid customer"),
        lines: lines
            .iter()
            .map(|(s, n)| LineRequest {
                sku: sku(s),
                quantity: q(*n),
            })
            .collect(),
        currency: Currency::Eur,
        payment_method: Some("pm_card_ok".to_owned()),
        channel: "web".to_owned(),
        at: t(0),
        expires_at: t(30),
    }
}

fn place() -> OrderCommand {
    OrderCommand::PlaceOrder(place_lines(&[("TEE", 2), ("MUG", 1), ("TEE", 1)]))
}

fn line(line_no: u32, s: &str, product_n: u128, quantity: u32, price: i64) -> OrderLine {
    OrderLine {
        line_no,
        sku: s.to_owned(),
        product_id: Some(product(product_n).as_uuid()),
        quantity,
        unit_price: w(price),
    }
}

/// Lines: 1 = TEE × 2, 2 = MUG × 1, 3 = TEE × 1; total 5,300.
fn created() -> OrderEvent {
    OrderEvent::Created(OrderCreated {
        order_id: order_id().as_uuid(),
        customer_id: "cus_1".to_owned(),
        lines: vec![
            line(1, "TEE", 1, 2, 1_500),
            line(2, "MUG", 2, 1, 800),
            line(3, "TEE", 1, 1, 1_500),
        ],
        currency: "EUR".to_owned(),
        total: w(5_300),
        payment_method: Some("pm_card_ok".to_owned()),
        campaign_id: None,
        participant_id: None,
        channel: "web".to_owned(),
        expires_at: t(30),
        placed_at: t(0),
    })
}

fn reservation(n: u128, s: &str, quantity: u32) -> StockReservation {
    StockReservation {
        reservation_id: ReservationId::from_uuid(Uuid::from_u128(500 + n)),
        sku: sku(s),
        location: LocationId::default_location(),
        quantity: q(quantity),
    }
}

fn reserve() -> OrderCommand {
    OrderCommand::RecordStockReserved {
        reservations: vec![reservation(1, "TEE", 3), reservation(2, "MUG", 1)],
        at: t(1),
    }
}

fn stock_reserved() -> OrderEvent {
    let wire = |n: u128, s: &str, quantity| ReservationRef {
        reservation_id: Uuid::from_u128(500 + n),
        sku: s.to_owned(),
        location: "default".to_owned(),
        quantity,
    };
    OrderEvent::StockReserved(OrderStockReserved {
        reservations: vec![wire(1, "TEE", 3), wire(2, "MUG", 1)],
        reserved_at: t(1),
    })
}

fn awaiting(n: u128) -> OrderEvent {
    OrderEvent::AwaitingPayment(OrderAwaitingPayment {
        payment_id: payment(n).as_uuid(),
        amount: w(5_300),
        requested_at: t(2),
    })
}

fn payment_failed(n: u128, attempt: u32) -> OrderEvent {
    OrderEvent::PaymentFailed(OrderPaymentFailed {
        payment_id: payment(n).as_uuid(),
        reason: "declined".to_owned(),
        attempt,
        failed_at: t(3),
    })
}

fn confirmed() -> OrderEvent {
    OrderEvent::Confirmed(OrderConfirmed {
        payment_id: payment(1).as_uuid(),
        covered: w(5_300),
        confirmed_at: t(4),
    })
}

fn lq(line_no: u32, quantity: u32) -> WireLineQuantity {
    WireLineQuantity { line_no, quantity }
}

fn fulfillment_created(n: u128, lines: Vec<WireLineQuantity>) -> OrderEvent {
    OrderEvent::FulfillmentCreated(OrderFulfillmentCreated {
        fulfillment_id: fulfillment(n),
        lines,
        location: "default".to_owned(),
        created_at: t(5),
    })
}

fn shipped(n: u128, lines: Vec<WireLineQuantity>) -> OrderEvent {
    OrderEvent::Shipped(OrderShipped {
        fulfillment_id: fulfillment(n),
        lines,
        shipped_at: t(6),
    })
}

fn delivered(n: u128, lines: Vec<WireLineQuantity>) -> OrderEvent {
    OrderEvent::Delivered(OrderDelivered {
        fulfillment_id: fulfillment(n),
        lines,
        delivered_at: t(7),
    })
}

fn all_lines() -> Vec<WireLineQuantity> {
    vec![lq(1, 2), lq(2, 1), lq(3, 1)]
}

fn paid() -> Vec<OrderEvent> {
    vec![created(), stock_reserved(), awaiting(1), confirmed()]
}

fn with(
    mut history: Vec<OrderEvent>,
    more: impl IntoIterator<Item = OrderEvent>,
) -> Vec<OrderEvent> {
    history.extend(more);
    history
}

fn fully_delivered() -> Vec<OrderEvent> {
    with(
        paid(),
        [
            fulfillment_created(1, all_lines()),
            shipped(1, all_lines()),
            delivered(1, all_lines()),
        ],
    )
}

fn fulfill(n: u128, lines: &[(u32, u32)]) -> OrderCommand {
    OrderCommand::CreateFulfillment {
        fulfillment_id: fulfillment(n),
        lines: lines
            .iter()
            .map(|(line_no, quantity)| LineQuantity {
                line_no: *line_no,
                quantity: q(*quantity),
            })
            .collect(),
        location: LocationId::default_location(),
        at: t(5),
    }
}

fn cancel(reason: CancelReason) -> OrderCommand {
    OrderCommand::Cancel {
        reason,
        note: None,
        by: "cus_1".to_owned(),
        at: t(8),
    }
}

fn canceled(reason: CancelReason) -> OrderEvent {
    OrderEvent::Canceled(OrderCanceled {
        reason,
        note: None,
        canceled_by: "cus_1".to_owned(),
        canceled_at: t(8),
    })
}

fn request_return(lines: &[(u32, u32)]) -> OrderCommand {
    OrderCommand::RequestReturn {
        return_id: return_id(),
        lines: lines
            .iter()
            .map(|(line_no, quantity)| LineQuantity {
                line_no: *line_no,
                quantity: q(*quantity),
            })
            .collect(),
        reason: "too small".to_owned(),
        at: t(9),
    }
}

fn return_requested(lines: Vec<WireLineQuantity>) -> OrderEvent {
    OrderEvent::ReturnRequested(OrderReturnRequested {
        return_id: return_id(),
        lines,
        reason: "too small".to_owned(),
        requested_at: t(9),
    })
}

// --- PlaceOrder ---

#[test]
fn place_snapshots_catalog_prices_and_keeps_lines_of_the_same_sku() {
    framework()
        .given_no_previous_events()
        .when(place())
        .then_expect_events(vec![created()]);
    let order = fold::<Order>(vec![created()]);
    assert_eq!(order.status().map(OrderStatus::as_str), Some("placed"));
    assert_eq!(order.total(), Some(eur(5_300)));
    assert_eq!(order.lines().len(), 3);
}

#[test]
fn place_twice_is_refused() {
    framework()
        .given(vec![created()])
        .when(place())
        .then_expect_error(CommandError::AlreadyExists(format!("order {}", order_id())));
}

#[test]
fn place_without_lines_is_refused() {
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(place_lines(&[])))
        .then_expect_error(CommandError::invalid(
            "lines",
            "must hold at least one line",
        ));
}

#[test]
fn place_with_too_many_lines_is_refused() {
    let many = vec![("TEE", 1); MAX_LINES + 1];
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(place_lines(&many)))
        .then_expect_error(CommandError::invalid(
            "lines",
            format!("must hold at most {MAX_LINES} lines"),
        ));
}

#[test]
fn place_with_an_unknown_sku_is_refused() {
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(place_lines(&[
            ("TEE", 1),
            ("NOPE", 1),
        ])))
        .then_expect_error(CommandError::invalid(
            "lines[1].sku",
            "no product has this sku",
        ));
}

#[test]
fn place_with_a_discontinued_product_is_refused() {
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(place_lines(&[("OLD", 1)])))
        .then_expect_error(CommandError::invalid(
            "lines[0].sku",
            "the product is discontinued",
        ));
}

#[test]
fn place_with_a_price_in_another_currency_is_refused() {
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(place_lines(&[("USD-ONLY", 1)])))
        .then_expect_error(CommandError::invalid(
            "lines[0].sku",
            "the product is priced in USD, not in the order's currency EUR",
        ));
}

#[test]
fn place_with_an_overflowing_total_is_refused() {
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(place_lines(&[("GOLD", 3)])))
        .then_expect_error(CommandError::invalid(
            "lines",
            "the order total is out of range",
        ));
}

#[test]
fn place_with_a_past_deadline_or_no_channel_is_refused() {
    let mut command = place_lines(&[("TEE", 1)]);
    command.expires_at = command.at;
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(command))
        .then_expect_error(CommandError::invalid(
            "expires_at",
            "must be after the order time",
        ));
    let mut command = place_lines(&[("TEE", 1)]);
    command.channel = String::new();
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(command))
        .then_expect_error(CommandError::invalid("channel", "must not be empty"));
}

#[test]
fn place_in_another_tenant_finds_no_product() {
    let mut command = place_lines(&[("TEE", 1)]);
    command.tenant = TenantId::new("other").expect("valid tenant");
    framework()
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(command))
        .then_expect_error(CommandError::invalid(
            "lines[0].sku",
            "no product has this sku",
        ));
}

// --- PlaceCampaignOrder ---

fn place_campaign(unit_price: Money) -> OrderCommand {
    OrderCommand::PlaceCampaignOrder(PlaceCampaignOrder {
        order_id: order_id(),
        customer: CustomerId::new("cus_1").expect("valid customer"),
        campaign_id: CampaignId::from_uuid(Uuid::from_u128(600)),
        participant_id: ParticipantId::from_uuid(Uuid::from_u128(601)),
        sku: sku("TEE"),
        quantity: q(2),
        unit_price,
        payment_method: None,
        at: t(0),
        expires_at: t(30),
    })
}

#[test]
fn campaign_order_uses_the_group_price() {
    framework()
        .given_no_previous_events()
        .when(place_campaign(eur(1_000)))
        .then_expect_events(vec![OrderEvent::Created(OrderCreated {
            order_id: order_id().as_uuid(),
            customer_id: "cus_1".to_owned(),
            lines: vec![OrderLine {
                line_no: 1,
                sku: "TEE".to_owned(),
                product_id: None,
                quantity: 2,
                unit_price: w(1_000),
            }],
            currency: "EUR".to_owned(),
            total: w(2_000),
            payment_method: None,
            campaign_id: Some(Uuid::from_u128(600)),
            participant_id: Some(Uuid::from_u128(601)),
            channel: "campaign".to_owned(),
            expires_at: t(30),
            placed_at: t(0),
        })]);
}

#[test]
fn campaign_order_with_a_free_or_overflowing_price_is_refused() {
    framework()
        .given_no_previous_events()
        .when(place_campaign(eur(0)))
        .then_expect_error(CommandError::invalid(
            "unit_price",
            "must be greater than zero",
        ));
    framework()
        .given_no_previous_events()
        .when(place_campaign(eur(i64::MAX)))
        .then_expect_error(CommandError::invalid(
            "quantity",
            "the order total is out of range",
        ));
    framework()
        .given(vec![created()])
        .when(place_campaign(eur(1_000)))
        .then_expect_error(CommandError::AlreadyExists(format!("order {}", order_id())));
}

// --- Stock ---

#[test]
fn stock_reservation_covering_summed_skus_is_recorded() {
    framework()
        .given(vec![created()])
        .when(reserve())
        .then_expect_events(vec![stock_reserved()]);
}

#[test]
fn stock_reservation_short_of_the_summed_quantity_is_refused() {
    framework()
        .given(vec![created()])
        .when(OrderCommand::RecordStockReserved {
            reservations: vec![reservation(1, "TEE", 2), reservation(2, "MUG", 1)],
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "reservations",
            "do not cover the ordered quantity of TEE",
        ));
}

/// TEE needs 3: one reservation of 2 listed twice holds 2, not 4.
#[test]
fn stock_reservation_listing_one_reservation_twice_is_refused() {
    framework()
        .given(vec![created()])
        .when(OrderCommand::RecordStockReserved {
            reservations: vec![
                reservation(1, "TEE", 2),
                reservation(1, "TEE", 2),
                reservation(2, "MUG", 1),
            ],
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "reservations[1].reservation_id",
            "listed twice",
        ));
}

#[test]
fn stock_reservation_for_a_foreign_sku_is_refused() {
    framework()
        .given(vec![created()])
        .when(OrderCommand::RecordStockReserved {
            reservations: vec![reservation(1, "HAT", 1)],
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "reservations[0].sku",
            "the order has no line with this sku",
        ));
}

#[test]
fn stock_reservation_redelivered_is_a_no_op_and_on_a_canceled_order_refused() {
    framework()
        .given(vec![created(), stock_reserved()])
        .when(reserve())
        .then_expect_events(vec![]);
    framework()
        .given(vec![created(), canceled(CancelReason::CustomerRequest)])
        .when(reserve())
        .then_expect_error(CommandError::invalid_state(
            "record stock reservation",
            "canceled",
        ));
}

#[test]
fn commands_on_a_missing_order_are_not_found() {
    framework()
        .given_no_previous_events()
        .when(reserve())
        .then_expect_error(CommandError::NotFound("order".to_owned()));
}

// --- Payment ---

fn request_payment(n: u128) -> OrderCommand {
    OrderCommand::RequestPayment {
        payment_id: payment(n),
        at: t(2),
    }
}

#[test]
fn payment_request_needs_reserved_stock() {
    framework()
        .given(vec![created(), stock_reserved()])
        .when(request_payment(1))
        .then_expect_events(vec![awaiting(1)]);
    framework()
        .given(vec![created()])
        .when(request_payment(1))
        .then_expect_error(CommandError::invalid_state(
            "request payment",
            "stock is not reserved yet",
        ));
}

#[test]
fn payment_request_while_one_is_in_flight_is_refused_and_a_repeat_is_a_no_op() {
    let history = vec![created(), stock_reserved(), awaiting(1)];
    framework()
        .given(history.clone())
        .when(request_payment(2))
        .then_expect_error(CommandError::invalid_state(
            "request payment",
            "a payment is in flight",
        ));
    framework()
        .given(history)
        .when(request_payment(1))
        .then_expect_events(vec![]);
}

#[test]
fn payment_failure_keeps_the_order_open_for_another_attempt() {
    let history = vec![created(), stock_reserved(), awaiting(1)];
    framework()
        .given(history.clone())
        .when(OrderCommand::RecordPaymentFailed {
            payment_id: payment(1),
            reason: "declined".to_owned(),
            at: t(3),
        })
        .then_expect_events(vec![payment_failed(1, 1)]);
    let failed = with(history, [payment_failed(1, 1)]);
    assert_eq!(
        fold::<Order>(failed.clone()).status(),
        Some(OrderStatus::AwaitingPayment)
    );
    framework()
        .given(failed)
        .when(request_payment(2))
        .then_expect_events(vec![OrderEvent::AwaitingPayment(OrderAwaitingPayment {
            payment_id: payment(2).as_uuid(),
            amount: w(5_300),
            requested_at: t(2),
        })]);
}

#[test]
fn payment_attempts_are_limited() {
    let mut history = vec![created(), stock_reserved()];
    for n in 1..=u128::from(MAX_PAYMENT_ATTEMPTS) {
        history.push(awaiting(n));
        history.push(payment_failed(n, u32::try_from(n).expect("small")));
    }
    framework()
        .given(history)
        .when(request_payment(9))
        .then_expect_error(CommandError::LimitReached(format!(
            "{MAX_PAYMENT_ATTEMPTS} payment attempts failed"
        )));
}

#[test]
fn payment_failure_of_a_settled_or_unknown_payment() {
    framework()
        .given(vec![
            created(),
            stock_reserved(),
            awaiting(1),
            payment_failed(1, 1),
        ])
        .when(OrderCommand::RecordPaymentFailed {
            payment_id: payment(1),
            reason: "declined".to_owned(),
            at: t(3),
        })
        .then_expect_events(vec![]);
    framework()
        .given(vec![created(), stock_reserved(), awaiting(1)])
        .when(OrderCommand::RecordPaymentFailed {
            payment_id: payment(7),
            reason: "declined".to_owned(),
            at: t(3),
        })
        .then_expect_error(CommandError::invalid(
            "payment_id",
            "is not a payment of this order",
        ));
}

fn confirm(covered: Money) -> OrderCommand {
    OrderCommand::Confirm {
        payment_id: payment(1),
        covered,
        at: t(4),
    }
}

#[test]
fn confirmation_requires_coverage_of_the_total() {
    let history = vec![created(), stock_reserved(), awaiting(1)];
    framework()
        .given(history.clone())
        .when(confirm(eur(5_300)))
        .then_expect_events(vec![confirmed()]);
    framework()
        .given(history.clone())
        .when(confirm(eur(5_299)))
        .then_expect_error(CommandError::invalid(
            "covered",
            "does not cover the order total",
        ));
    framework()
        .given(history)
        .when(confirm(Money::new(5_300, Currency::Usd)))
        .then_expect_error(CommandError::invalid(
            "covered",
            "currency must be EUR, the order's currency",
        ));
}

#[test]
fn confirmation_before_a_payment_request_is_refused_and_a_repeat_is_a_no_op() {
    framework()
        .given(vec![created(), stock_reserved()])
        .when(confirm(eur(5_300)))
        .then_expect_error(CommandError::invalid_state("confirm order", "placed"));
    framework()
        .given(paid())
        .when(confirm(eur(5_300)))
        .then_expect_events(vec![]);
    framework()
        .given(vec![created(), stock_reserved(), awaiting(2)])
        .when(confirm(eur(5_300)))
        .then_expect_error(CommandError::invalid(
            "payment_id",
            "is not a payment of this order",
        ));
}

// --- Fulfilment, label, shipping, delivery ---

#[test]
fn partial_fulfillment_merges_repeated_lines() {
    framework()
        .given(paid())
        .when(fulfill(1, &[(1, 1), (1, 1), (2, 1)]))
        .then_expect_events(vec![fulfillment_created(1, vec![lq(1, 2), lq(2, 1)])]);
    let order = fold::<Order>(with(
        paid(),
        [fulfillment_created(1, vec![lq(1, 2), lq(2, 1)])],
    ));
    assert_eq!(order.fulfillment_facet(), Facet::Partial);
    assert_eq!(order.status(), Some(OrderStatus::Confirmed));
}

#[test]
fn fulfillment_beyond_the_ordered_quantity_is_refused() {
    framework()
        .given(with(paid(), [fulfillment_created(1, vec![lq(1, 2)])]))
        .when(fulfill(2, &[(1, 1)]))
        .then_expect_error(CommandError::invalid(
            "lines[0].quantity",
            "exceeds the unfulfilled quantity",
        ));
}

#[test]
fn fulfillment_of_an_unknown_line_or_unpaid_order_is_refused() {
    framework()
        .given(paid())
        .when(fulfill(1, &[(9, 1)]))
        .then_expect_error(CommandError::invalid(
            "lines[0].line_no",
            "the order has no such line",
        ));
    framework()
        .given(vec![created()])
        .when(fulfill(1, &[(1, 1)]))
        .then_expect_error(CommandError::invalid_state("create fulfillment", "placed"));
}

#[test]
fn fulfillment_id_seen_before_is_a_no_op_or_a_conflict() {
    let history = with(paid(), [fulfillment_created(1, vec![lq(1, 2)])]);
    framework()
        .given(history.clone())
        .when(fulfill(1, &[(1, 2)]))
        .then_expect_events(vec![]);
    framework()
        .given(history)
        .when(fulfill(1, &[(2, 1)]))
        .then_expect_error(CommandError::AlreadyExists(format!(
            "fulfillment {}",
            fulfillment(1)
        )));
}

fn attach(shipment: u128) -> OrderCommand {
    OrderCommand::AttachLabel {
        fulfillment_id: fulfillment(1),
        shipment_id: ShipmentId::from_uuid(Uuid::from_u128(shipment)),
        carrier: "dhl".to_owned(),
        tracking_number: "TRK1".to_owned(),
    }
}

#[test]
fn label_is_attached_once() {
    let history = with(paid(), [fulfillment_created(1, all_lines())]);
    let label = OrderEvent::LabelAttached(OrderLabelAttached {
        fulfillment_id: fulfillment(1),
        shipment_id: Uuid::from_u128(700),
        carrier: "dhl".to_owned(),
        tracking_number: "TRK1".to_owned(),
    });
    framework()
        .given(history.clone())
        .when(attach(700))
        .then_expect_events(vec![label.clone()]);
    let labelled = with(history, [label]);
    framework()
        .given(labelled.clone())
        .when(attach(700))
        .then_expect_events(vec![]);
    framework()
        .given(labelled)
        .when(attach(701))
        .then_expect_error(CommandError::invalid_state(
            "attach label",
            "the fulfillment has a label",
        ));
}

#[test]
fn label_for_an_unknown_or_shipped_fulfillment_is_refused() {
    framework()
        .given(paid())
        .when(attach(700))
        .then_expect_error(CommandError::NotFound(format!(
            "fulfillment {}",
            fulfillment(1)
        )));
    framework()
        .given(with(
            paid(),
            [fulfillment_created(1, all_lines()), shipped(1, all_lines())],
        ))
        .when(attach(700))
        .then_expect_error(CommandError::invalid_state(
            "attach label",
            "the fulfillment shipped",
        ));
}

#[test]
fn shipping_part_of_the_order_makes_it_shipped() {
    let history = with(
        paid(),
        [
            fulfillment_created(1, vec![lq(1, 2)]),
            fulfillment_created(2, vec![lq(2, 1), lq(3, 1)]),
        ],
    );
    framework()
        .given(history.clone())
        .when(OrderCommand::MarkShipped {
            fulfillment_id: fulfillment(1),
            at: t(6),
        })
        .then_expect_events(vec![shipped(1, vec![lq(1, 2)])]);
    let order = fold::<Order>(with(history, [shipped(1, vec![lq(1, 2)])]));
    assert_eq!(order.status(), Some(OrderStatus::Shipped));
    assert_eq!(order.shipping_facet(), Facet::Partial);
    assert_eq!(order.fulfillment_facet(), Facet::Full);
}

#[test]
fn shipping_again_is_a_no_op_and_an_unknown_fulfillment_not_found() {
    framework()
        .given(with(
            paid(),
            [fulfillment_created(1, all_lines()), shipped(1, all_lines())],
        ))
        .when(OrderCommand::MarkShipped {
            fulfillment_id: fulfillment(1),
            at: t(6),
        })
        .then_expect_events(vec![]);
    framework()
        .given(paid())
        .when(OrderCommand::MarkShipped {
            fulfillment_id: fulfillment(1),
            at: t(6),
        })
        .then_expect_error(CommandError::NotFound(format!(
            "fulfillment {}",
            fulfillment(1)
        )));
}

#[test]
fn delivering_everything_makes_the_order_delivered() {
    let history = with(
        paid(),
        [fulfillment_created(1, all_lines()), shipped(1, all_lines())],
    );
    framework()
        .given(history)
        .when(OrderCommand::MarkDelivered {
            fulfillment_id: fulfillment(1),
            at: t(7),
        })
        .then_expect_events(vec![delivered(1, all_lines())]);
    let order = fold::<Order>(fully_delivered());
    assert_eq!(order.status(), Some(OrderStatus::Delivered));
    assert_eq!(order.delivery_facet(), Facet::Full);
}

#[test]
fn delivering_an_unshipped_fulfillment_is_refused_and_a_repeat_is_a_no_op() {
    framework()
        .given(with(paid(), [fulfillment_created(1, all_lines())]))
        .when(OrderCommand::MarkDelivered {
            fulfillment_id: fulfillment(1),
            at: t(7),
        })
        .then_expect_error(CommandError::invalid_state(
            "deliver fulfillment",
            "the fulfillment is not shipped",
        ));
    framework()
        .given(fully_delivered())
        .when(OrderCommand::MarkDelivered {
            fulfillment_id: fulfillment(1),
            at: t(7),
        })
        .then_expect_events(vec![]);
}

// --- Complete ---

#[test]
fn completing_a_delivered_order() {
    framework()
        .given(fully_delivered())
        .when(OrderCommand::Complete { at: t(10) })
        .then_expect_events(vec![OrderEvent::Completed(OrderCompleted {
            completed_at: t(10),
        })]);
    framework()
        .given(with(
            fully_delivered(),
            [OrderEvent::Completed(OrderCompleted {
                completed_at: t(10),
            })],
        ))
        .when(OrderCommand::Complete { at: t(11) })
        .then_expect_events(vec![]);
}

#[test]
fn completing_an_undelivered_order_or_with_an_open_return_is_refused() {
    framework()
        .given(paid())
        .when(OrderCommand::Complete { at: t(10) })
        .then_expect_error(CommandError::invalid_state("complete order", "confirmed"));
    framework()
        .given(with(fully_delivered(), [return_requested(vec![lq(2, 1)])]))
        .when(OrderCommand::Complete { at: t(10) })
        .then_expect_error(CommandError::invalid_state(
            "complete order",
            "a return is open",
        ));
}

// --- Returns ---

#[test]
fn return_of_delivered_quantities() {
    framework()
        .given(fully_delivered())
        .when(request_return(&[(1, 1)]))
        .then_expect_events(vec![return_requested(vec![lq(1, 1)])]);
    let history = with(fully_delivered(), [return_requested(vec![lq(1, 1)])]);
    let received = OrderEvent::ReturnReceived(OrderReturnReceived {
        return_id: return_id(),
        lines: vec![lq(1, 1)],
        restock: true,
        received_at: t(11),
    });
    framework()
        .given(history.clone())
        .when(OrderCommand::ReceiveReturn {
            return_id: return_id(),
            restock: true,
            at: t(11),
        })
        .then_expect_events(vec![received.clone()]);
    let order = fold::<Order>(with(history, [received.clone()]));
    assert_eq!(order.return_facet(), Facet::Partial);
    assert_eq!(order.lines()[0].returned(), 1);
    framework()
        .given(with(
            fully_delivered(),
            [return_requested(vec![lq(1, 1)]), received],
        ))
        .when(OrderCommand::ReceiveReturn {
            return_id: return_id(),
            restock: true,
            at: t(12),
        })
        .then_expect_events(vec![]);
}

#[test]
fn return_beyond_the_delivered_quantity_is_refused() {
    let history = with(
        paid(),
        [
            fulfillment_created(1, vec![lq(1, 1)]),
            shipped(1, vec![lq(1, 1)]),
        ],
    );
    framework()
        .given(history)
        .when(request_return(&[(1, 1)]))
        .then_expect_error(CommandError::invalid(
            "lines[0].quantity",
            "exceeds the delivered quantity not yet returned",
        ));
}

#[test]
fn return_before_shipping_or_of_an_unknown_return_is_refused() {
    framework()
        .given(paid())
        .when(request_return(&[(1, 1)]))
        .then_expect_error(CommandError::invalid_state("request return", "confirmed"));
    framework()
        .given(fully_delivered())
        .when(OrderCommand::ReceiveReturn {
            return_id: return_id(),
            restock: false,
            at: t(11),
        })
        .then_expect_error(CommandError::NotFound(format!("return {}", return_id())));
}

// --- Cancel ---

#[test]
fn cancel_before_shipping_drops_fulfillments() {
    let history = with(paid(), [fulfillment_created(1, vec![lq(1, 2)])]);
    framework()
        .given(history.clone())
        .when(cancel(CancelReason::Operator))
        .then_expect_events(vec![canceled(CancelReason::Operator)]);
    let order = fold::<Order>(with(history, [canceled(CancelReason::Operator)]));
    assert_eq!(order.status().map(OrderStatus::as_str), Some("canceled"));
    assert_eq!(order.cancel_reason(), Some(CancelReason::Operator));
    assert_eq!(order.fulfillment_facet(), Facet::None);
    framework()
        .given(with(
            paid(),
            [
                fulfillment_created(1, vec![lq(1, 2)]),
                canceled(CancelReason::Operator),
            ],
        ))
        .when(OrderCommand::MarkShipped {
            fulfillment_id: fulfillment(1),
            at: t(9),
        })
        .then_expect_error(CommandError::invalid_state(
            "ship fulfillment",
            "the fulfillment is canceled",
        ));
}

#[test]
fn cancel_after_shipping_is_refused() {
    framework()
        .given(with(
            paid(),
            [
                fulfillment_created(1, vec![lq(1, 1)]),
                shipped(1, vec![lq(1, 1)]),
            ],
        ))
        .when(cancel(CancelReason::CustomerRequest))
        .then_expect_error(CommandError::invalid_state("cancel order", "shipped"));
}

#[test]
fn cancel_again_is_a_no_op_and_a_completed_order_cannot_be_canceled() {
    framework()
        .given(vec![created(), canceled(CancelReason::InsufficientStock)])
        .when(cancel(CancelReason::CustomerRequest))
        .then_expect_events(vec![]);
    framework()
        .given(with(
            fully_delivered(),
            [OrderEvent::Completed(OrderCompleted {
                completed_at: t(10),
            })],
        ))
        .when(cancel(CancelReason::Operator))
        .then_expect_error(CommandError::invalid_state("cancel order", "completed"));
}

#[test]
fn cancel_with_reason_expired_or_without_author_is_refused() {
    framework()
        .given(vec![created()])
        .when(cancel(CancelReason::Expired))
        .then_expect_error(CommandError::invalid(
            "reason",
            "an order expires through its deadline, not a cancel",
        ));
    framework()
        .given(vec![created()])
        .when(OrderCommand::Cancel {
            reason: CancelReason::Operator,
            note: None,
            by: " ".to_owned(),
            at: t(8),
        })
        .then_expect_error(CommandError::invalid("by", "must not be empty"));
}

// --- Expire ---

#[test]
fn expiry_of_an_unpaid_order() {
    framework()
        .given(vec![created(), stock_reserved()])
        .when(OrderCommand::Expire { at: t(30) })
        .then_expect_events(vec![OrderEvent::Expired(OrderExpired {
            expired_at: t(30),
        })]);
    let order = fold::<Order>(vec![
        created(),
        OrderEvent::Expired(OrderExpired { expired_at: t(30) }),
    ]);
    assert_eq!(order.status(), Some(OrderStatus::Canceled));
    assert_eq!(order.cancel_reason(), Some(CancelReason::Expired));
    framework()
        .given(vec![
            created(),
            stock_reserved(),
            awaiting(1),
            payment_failed(1, 1),
        ])
        .when(OrderCommand::Expire { at: t(31) })
        .then_expect_events(vec![OrderEvent::Expired(OrderExpired {
            expired_at: t(31),
        })]);
}

#[test]
fn expiry_before_the_deadline_or_with_a_payment_in_flight_is_refused() {
    framework()
        .given(vec![created()])
        .when(OrderCommand::Expire { at: t(29) })
        .then_expect_error(CommandError::invalid_state(
            "expire order",
            "the order is not due yet",
        ));
    framework()
        .given(vec![created(), stock_reserved(), awaiting(1)])
        .when(OrderCommand::Expire { at: t(30) })
        .then_expect_error(CommandError::invalid_state(
            "expire order",
            "a payment is in flight",
        ));
}

#[test]
fn expiry_of_a_paid_or_canceled_order_is_a_no_op() {
    framework()
        .given(paid())
        .when(OrderCommand::Expire { at: t(30) })
        .then_expect_events(vec![]);
    framework()
        .given(vec![created(), canceled(CancelReason::Operator)])
        .when(OrderCommand::Expire { at: t(30) })
        .then_expect_events(vec![]);
}

#[test]
fn accessors_serve_the_process_managers() {
    let order = fold::<Order>(paid());
    assert_eq!(order.customer_id(), "cus_1");
    assert_eq!(order.payment_ids(), &[payment(1)]);
    assert_eq!(order.confirmed_by(), Some(payment(1)));
    assert_eq!(order.reservations().len(), 2);
    assert!(order.stock_reserved());
    assert_eq!(order.campaign(), None);
    assert_eq!(order.order_id(), Some(order_id()));
}
