//! The process managers end to end on a real PostgreSQL: checkout, compensation, campaigns,
//! deadlines across restarts, crashes at random points, and a flash sale.

mod common;

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use commerce_aggregates::campaign::{CampaignStatus, ParticipantState};
use commerce_aggregates::order::{Facet, OrderStatus};
use commerce_aggregates::payment::{
    PaymentCommand, PaymentStatus, ProviderEvent, ProviderEventKind,
};
use commerce_aggregates::shipment::ShipmentStatus;
use commerce_contracts::events::CancelReason;
use commerce_domain::Money;
use commerce_eventstore::{
    CommandContext, EventBackend, EventMetadata, ExpectedVersion, NewStreamEvent, PgBackend,
    StreamId, StreamRef,
};
use common::{Gate, Harness, Hooked, Overlap, PRICE, RecordingGateway, TENANT, eur};
use uuid::Uuid;

fn final_status(status: Option<OrderStatus>) -> bool {
    matches!(status, Some(OrderStatus::Confirmed | OrderStatus::Canceled))
}

#[tokio::test]
async fn checkout_happy_path_reserves_charges_confirms_and_labels() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.product("MUG", PRICE);
    h.stock("TEE", 10).await;
    h.stock("MUG", 5).await;
    let engine = h.spawn();
    let order_id = h
        .place_order(&[("TEE", 2), ("MUG", 1), ("TEE", 1)], Some("pm_card_ok"))
        .await;

    h.eventually(20, "the label on the order", || async {
        h.count_events("order.label_attached").await == 1
    })
    .await;
    let order = h.order(order_id).await;
    assert_eq!(order.status(), Some(OrderStatus::Confirmed));
    assert_eq!(order.fulfillment_facet(), Facet::Full);
    assert_eq!(h.net_paid(order_id).await, 4 * PRICE);
    let payment = h.payment(order.payment_ids()[0]).await;
    assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    let shipment = h.shipment_of(order_id).await.expect("a shipment");
    assert_eq!(shipment.status(), Some(ShipmentStatus::LabelCreated));
    assert!(shipment.tracking_number().starts_with("SBX"));
    // The summed TEE lines were reserved once and committed at fulfilment.
    let tee = h.stock_of("TEE").await;
    assert_eq!((tee.on_hand(), tee.reserved()), (7, 0));
    let mug = h.stock_of("MUG").await;
    assert_eq!((mug.on_hand(), mug.reserved()), (4, 0));
    // Every command a process manager issued names its causing event and the order's flow.
    let (created_id, flow): (uuid::Uuid, String) = sqlx::query_as(
        "SELECT event_id, metadata->>'correlation_id' FROM events WHERE event_type = 'order.created'",
    )
    .fetch_one(h.db.pool())
    .await
    .expect("order.created");
    let reserved: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT metadata->>'causation_id', metadata->>'correlation_id', metadata->>'idempotency_key' \
         FROM events WHERE event_type = 'inventory.reserved'",
    )
    .fetch_all(h.db.pool())
    .await
    .expect("inventory.reserved");
    assert_eq!(reserved.len(), 2);
    for (causation, correlation, key) in reserved {
        assert_eq!(causation, created_id.to_string());
        assert_eq!(correlation, flow);
        assert!(key.starts_with(&format!("pm:{created_id}:reserve:")));
    }
    let foreign_flows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE metadata->>'correlation_id' <> $1 \
         AND aggregate_type IN ('order', 'payment', 'shipment')",
    )
    .bind(&flow)
    .fetch_one(h.db.pool())
    .await
    .expect("flows");
    assert_eq!(foreign_flows, 0, "one correlation id from order to label");
    engine.abort();
}

#[tokio::test]
async fn two_engine_processes_do_not_double_process() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 50).await;
    let first = h.spawn();
    let second = h.spawn();
    let mut orders = Vec::new();
    for _ in 0..10 {
        orders.push(h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await);
    }
    h.eventually(30, "ten labels", || async {
        h.count_events("order.label_attached").await == 10
    })
    .await;
    // Kill the leader: the standby takes over and finishes new work.
    first.abort();
    let _ = first.await;
    let late = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    h.eventually(30, "the late order labelled", || async {
        h.count_events("order.label_attached").await == 11
    })
    .await;
    second.abort();
    orders.push(late);
    for event_type in [
        "inventory.reserved",
        "payment.created",
        "payment.succeeded",
        "shipping.label.created",
    ] {
        assert_eq!(h.count_events(event_type).await, 11, "{event_type}");
    }
    for order_id in orders {
        assert_eq!(h.net_paid(order_id).await, PRICE);
    }
}

#[tokio::test]
async fn insufficient_stock_cancels_and_releases_what_was_reserved() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.product("MUG", PRICE);
    h.stock("TEE", 10).await;
    h.stock("MUG", 1).await;
    let engine = h.spawn();
    let order_id = h
        .place_order(&[("TEE", 2), ("MUG", 3)], Some("pm_card_ok"))
        .await;

    h.eventually(20, "the cancellation", || async {
        h.order(order_id).await.status() == Some(OrderStatus::Canceled)
    })
    .await;
    h.eventually(20, "the release", || async {
        h.stock_of("TEE").await.reserved() == 0
    })
    .await;
    let order = h.order(order_id).await;
    assert_eq!(order.cancel_reason(), Some(CancelReason::InsufficientStock));
    assert!(order.payment_ids().is_empty(), "no payment without stock");
    assert_eq!(h.stock_of("TEE").await.on_hand(), 10);
    assert_eq!(h.stock_of("MUG").await.reserved(), 0);
    engine.abort();
}

#[tokio::test]
async fn declined_payment_cancels_the_order_and_releases_stock() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 3).await;
    let engine = h.spawn();
    let order_id = h.place_order(&[("TEE", 2)], Some("pm_card_declined")).await;

    h.eventually(20, "the cancellation", || async {
        h.order(order_id).await.status() == Some(OrderStatus::Canceled)
    })
    .await;
    h.eventually(20, "the release", || async {
        h.stock_of("TEE").await.reserved() == 0
    })
    .await;
    let order = h.order(order_id).await;
    assert_eq!(order.cancel_reason(), Some(CancelReason::PaymentFailed));
    let payment = h.payment(order.payment_ids()[0]).await;
    assert_eq!(payment.status(), Some(PaymentStatus::Failed));
    assert_eq!(h.net_paid(order_id).await, 0);
    engine.abort();
}

fn webhook(id: &str, kind: ProviderEventKind) -> PaymentCommand {
    PaymentCommand::ApplyProviderEvent(ProviderEvent {
        provider_event_id: id.to_owned(),
        kind,
        amount: None,
        provider_ref: None,
        at: chrono::Utc::now(),
    })
}

#[tokio::test]
async fn requires_action_waits_for_the_webhook_and_duplicates_change_nothing() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 3).await;
    let engine = h.spawn();
    let order_id = h
        .place_order(&[("TEE", 1)], Some("pm_card_requires_action"))
        .await;
    h.eventually(20, "the payment waiting for action", || async {
        let order = h.order(order_id).await;
        match order.payment_ids().first() {
            Some(id) => h.payment(*id).await.status() == Some(PaymentStatus::RequiresAction),
            None => false,
        }
    })
    .await;
    let payment_id = h.order(order_id).await.payment_ids()[0];
    assert_eq!(
        h.order(order_id).await.status(),
        Some(OrderStatus::AwaitingPayment)
    );

    // The provider delivers "succeeded" twice and a stale "requires_action" after it.
    let stream = StreamId::new(TENANT, payment_id.to_string()).expect("stream");
    for (id, kind) in [
        ("evt_2", ProviderEventKind::Succeeded),
        ("evt_1", ProviderEventKind::RequiresAction),
        ("evt_2", ProviderEventKind::Succeeded),
    ] {
        h.payments
            .execute(
                stream.clone(),
                webhook(id, kind),
                CommandContext::new(EventMetadata::new(TENANT, "psp")),
            )
            .await
            .expect("webhook applied");
    }
    h.eventually(20, "the label", || async {
        h.count_events("order.label_attached").await == 1
    })
    .await;
    assert_eq!(
        h.order(order_id).await.status(),
        Some(OrderStatus::Confirmed)
    );
    assert_eq!(h.net_paid(order_id).await, PRICE);
    assert_eq!(h.count_events("payment.succeeded").await, 1);
    engine.abort();
}

#[tokio::test]
async fn customer_cancel_after_confirmation_refunds_the_capture() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 3).await;
    let engine = h.spawn();
    // No payment method: the order holds stock and waits.
    let waiting = h.place_order(&[("TEE", 1)], None).await;
    let paid = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    h.eventually(20, "the paid order confirmed", || async {
        h.order(paid).await.status() == Some(OrderStatus::Confirmed)
            && h.order(waiting).await.stock_reserved()
    })
    .await;
    for order_id in [waiting, paid] {
        h.order_command(order_id, h.customer_cancel()).await;
    }
    h.eventually(20, "the refund", || async { h.net_paid(paid).await == 0 })
        .await;
    h.eventually(20, "the release", || async {
        h.stock_of("TEE").await.reserved() == 0
    })
    .await;
    let payment = h.payment(h.order(paid).await.payment_ids()[0]).await;
    assert_eq!(payment.status(), Some(PaymentStatus::Refunded));
    engine.abort();
}

/// A label bought and not yet shipped goes with the order: a canceled order's shipment is
/// canceled, so the warehouse does not ship it, and the carrier voids the label, so nobody
/// pays for it.
#[tokio::test]
async fn customer_cancel_after_the_label_cancels_the_shipment() {
    let h = Harness::new().await;
    let order_id = cancel_a_labelled_order(&h).await;
    assert_eq!(
        h.order(order_id).await.status(),
        Some(OrderStatus::Canceled)
    );
    assert_eq!(h.stock_of("TEE").await.reserved(), 0);
    let shipment = h.shipment_of(order_id).await.expect("the shipment");
    assert_eq!(h.carrier.voided(), [shipment.tracking_number().to_owned()]);
}

/// A carrier that does not answer the void holds the shipment's cancel back until it does:
/// the shipment is never shown canceled while its label may still be live at the carrier.
#[tokio::test]
async fn a_carrier_down_at_the_cancel_voids_the_label_once_it_answers() {
    let h = Harness::new().await;
    h.carrier.void_outages.store(3, Ordering::SeqCst);
    let order_id = cancel_a_labelled_order(&h).await;
    assert!(h.carrier.void_calls.load(Ordering::SeqCst) >= 4);
    let shipment = h.shipment_of(order_id).await.expect("the shipment");
    assert_eq!(h.carrier.voided(), [shipment.tracking_number().to_owned()]);
}

/// Given a paid order whose label was bought, when its customer cancels it, then the engine
/// refunds it and cancels its shipment; returns the order once both are done.
async fn cancel_a_labelled_order(h: &Harness) -> commerce_domain::OrderId {
    h.product("TEE", PRICE);
    h.stock("TEE", 1).await;
    let engine = h.spawn();
    let order_id = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    h.eventually(20, "the label", || async {
        h.count_events("order.label_attached").await == 1
    })
    .await;

    h.order_command(order_id, h.customer_cancel()).await;

    h.eventually(30, "the refund and the shipment canceled", || async {
        h.net_paid(order_id).await == 0
            && h.shipment_of(order_id)
                .await
                .is_some_and(|shipment| shipment.status() == Some(ShipmentStatus::Canceled))
    })
    .await;
    engine.abort();
    order_id
}

#[tokio::test]
async fn a_charged_order_leaves_no_authorization_to_expire() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 1).await;
    let engine = h.spawn();
    let order_id = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    h.eventually(20, "the order confirmed and settled", || async {
        h.order(order_id).await.status() == Some(OrderStatus::Confirmed) && h.settled().await
    })
    .await;
    engine.abort();
    // The charge captured what it authorized at once: no hold, so no deadline for one (a due
    // deadline holds new reactions back until the running ones end).
    let expiries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deadlines WHERE kind = 'authorization_expiry'")
            .fetch_one(h.db.pool())
            .await
            .expect("deadlines");
    assert_eq!(expiries, 0);
}

#[tokio::test]
async fn a_cancel_after_an_operator_refund_asks_the_provider_only_for_the_rest() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 1).await;
    let gateway = Arc::new(RecordingGateway::default());
    let engine = h.spawn_with(gateway.clone(), 1);
    let order_id = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    h.eventually(20, "the order confirmed", || async {
        h.order(order_id).await.status() == Some(OrderStatus::Confirmed)
    })
    .await;
    // given: an operator refunded most of the charge, still pending at the provider
    let payment_id = h.order(order_id).await.payment_ids()[0];
    let operator_refund = PRICE * 4 / 5;
    h.payments
        .execute(
            StreamId::new(TENANT, payment_id.to_string()).expect("stream"),
            PaymentCommand::RequestRefund {
                refund_id: Uuid::new_v4(),
                amount: Money::new(operator_refund, eur()),
                reason: "goodwill".to_owned(),
                at: h.now(),
            },
            CommandContext::new(EventMetadata::new(TENANT, "operator")),
        )
        .await
        .expect("operator refund requested");

    // when: the customer cancels
    h.order_command(order_id, h.customer_cancel()).await;

    // then: compensation refunds what is still owed, and the provider is asked for that alone
    h.eventually(20, "the compensation refund", || async {
        h.count_events("payment.refunded").await == 1 && h.settled().await
    })
    .await;
    engine.abort();
    let payment = h.payment(payment_id).await;
    assert_eq!(
        payment.refunded().map(|m| m.amount_minor()),
        Some(PRICE - operator_refund)
    );
    assert_eq!(
        payment.refund_pending().map(|m| m.amount_minor()),
        Some(operator_refund)
    );
    assert_eq!(
        gateway.net_total(),
        operator_refund,
        "the provider keeps what the operator's pending refund will return"
    );
}

#[tokio::test]
async fn order_expiry_fires_once_across_restarts() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 3).await;
    let engine = h.spawn();
    let order_id = h.place_order(&[("TEE", 2)], None).await;
    h.eventually(20, "stock reserved", || async {
        h.order(order_id).await.stock_reserved()
    })
    .await;
    engine.abort();
    let _ = engine.await;

    // While no engine runs, the deadline passes; a new engine fires it.
    h.advance(chrono::Duration::hours(1));
    let engine = h.spawn();
    h.eventually(20, "the expiry", || async {
        h.order(order_id).await.status() == Some(OrderStatus::Canceled)
    })
    .await;
    h.eventually(20, "the release", || async {
        h.stock_of("TEE").await.reserved() == 0
    })
    .await;
    engine.abort();
    let _ = engine.await;
    // Later still (the reservation's own deadline passes too) and another restart.
    h.advance(chrono::Duration::hours(1));
    let engine = h.spawn();
    h.eventually(20, "every deadline fired", || async {
        let unfired: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deadlines WHERE fired_at IS NULL")
                .fetch_one(h.db.pool())
                .await
                .expect("count");
        unfired == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.abort();
    assert_eq!(h.count_events("order.expired").await, 1);
    // Both deadlines were due at once after the outage: the stock left its reservation once,
    // by release or by expiry, whichever ran first (INV-5).
    assert_eq!(
        h.count_events("inventory.reservation_expired").await
            + h.count_events("inventory.released").await,
        1
    );
    let fired: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, outcome FROM deadlines ORDER BY kind")
            .fetch_all(h.db.pool())
            .await
            .expect("deadlines");
    assert_eq!(
        fired.len(),
        2,
        "one order expiry and one reservation expiry: {fired:?}"
    );
    assert_eq!(
        h.order(order_id).await.cancel_reason(),
        Some(CancelReason::Expired)
    );
}

/// A cheap deterministic generator for kill points (no extra dependency).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test]
async fn killed_at_random_points_every_order_ends_final_with_no_double_charge_or_leak() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 25).await;
    let methods = ["pm_card_ok", "pm_card_ok", "pm_card_declined"];
    let mut orders = Vec::new();
    for i in 0..30 {
        // More demand than stock: some orders must be canceled for insufficient stock.
        orders.push(h.place_order(&[("TEE", 1)], Some(methods[i % 3])).await);
    }
    // A fresh seed per run (printed; `WORKFLOWS_SEED=<n>` replays one): every CI run explores
    // other kill points and cancel moments.
    let mut seed = std::env::var("WORKFLOWS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos());
            u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(1) | 1
        });
    eprintln!("WORKFLOWS_SEED={seed}");
    for round in 0..8 {
        let engine = h.spawn();
        let run_for = 20 + next_random(&mut seed) % 250;
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        // Customers cancel some orders mid-flight, wherever their checkout is (a cancel may
        // overtake the reservation or the payment, or be refused once the order is final).
        let cancel = orders[(round * 4 + 1) % orders.len()];
        h.try_order_command(cancel, h.customer_cancel()).await;
        engine.abort();
        let _ = engine.await;
    }
    // Then one engine runs to the end.
    let engine = h.spawn();
    h.eventually(60, "every order final", || async {
        for order_id in &orders {
            let order = h.order(*order_id).await;
            if !final_status(order.status()) {
                return false;
            }
            if order.status() == Some(OrderStatus::Confirmed)
                && h.shipment_of(*order_id).await.is_none()
            {
                return false;
            }
        }
        true
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.abort();

    let mut confirmed = 0;
    for order_id in &orders {
        let order = h.order(*order_id).await;
        let net = h.net_paid(*order_id).await;
        match order.status() {
            Some(OrderStatus::Confirmed) => {
                confirmed += 1;
                assert_eq!(net, PRICE, "PAY-4: one capture per confirmed order");
            }
            _ => assert_eq!(net, 0, "ORD-6: a canceled order keeps no money"),
        }
    }
    let tee = h.stock_of("TEE").await;
    if tee.reserved() != 0 || tee.on_hand() != 25 - confirmed {
        eprintln!("{}", h.trail().await);
    }
    assert_eq!(
        tee.reserved(),
        0,
        "ORD-5/ORD-6: no active reservation leaked"
    );
    assert_eq!(
        tee.on_hand(),
        25 - confirmed,
        "stock committed once per confirmed order"
    );
    // A cancel that overtook a payment got its capture refunded; every other success confirmed.
    assert_eq!(
        h.count_events("payment.succeeded").await - h.count_events("payment.refunded").await,
        i64::try_from(confirmed).expect("small")
    );
}

#[tokio::test]
async fn successful_campaign_closes_captures_and_orders_every_participant() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 10).await;
    let engine = h.spawn();
    // Two of three places paid: successful, but open until the end time.
    let campaign_id = h
        .create_campaign("LAMP", 2, 3, chrono::Duration::hours(1))
        .await;
    for customer in ["a", "b"] {
        h.join(campaign_id, customer, "pm_card_ok")
            .await
            .expect("joined");
    }
    h.eventually(20, "the campaign successful", || async {
        h.campaign(campaign_id).await.paid_count() == 2
    })
    .await;
    assert_eq!(
        h.campaign(campaign_id).await.status(),
        CampaignStatus::Successful
    );
    h.advance(chrono::Duration::hours(2));
    h.eventually(30, "two labelled orders", || async {
        h.count_events("order.label_attached").await == 2
    })
    .await;
    let campaign = h.campaign(campaign_id).await;
    assert_eq!(campaign.status(), CampaignStatus::Closed);
    for participant in campaign.participants() {
        assert_eq!(participant.state(), ParticipantState::Ordered);
        let order = h.order(participant.order_id().expect("ordered")).await;
        assert_eq!(order.status(), Some(OrderStatus::Confirmed));
        let payment = h.payment(participant.payment_id().expect("paid")).await;
        assert_eq!(payment.status(), Some(PaymentStatus::Captured));
        assert_eq!(
            payment.captured().map(|m| m.amount_minor()),
            Some(PRICE / 2)
        );
    }
    let lamp = h.stock_of("LAMP").await;
    assert_eq!((lamp.on_hand(), lamp.reserved()), (8, 0));
    engine.abort();
}

#[tokio::test]
async fn a_successful_campaign_closes_as_soon_as_every_place_is_paid() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 10).await;
    let engine = h.spawn();
    let campaign_id = h
        .create_campaign("LAMP", 2, 2, chrono::Duration::hours(1))
        .await;
    for customer in ["a", "b"] {
        h.join(campaign_id, customer, "pm_card_ok")
            .await
            .expect("joined");
    }
    // The clock never reaches the end time: the last payment closes the campaign.
    h.eventually(30, "two labelled orders before the end time", || async {
        h.count_events("order.label_attached").await == 2
    })
    .await;
    let campaign = h.campaign(campaign_id).await;
    assert_eq!(campaign.status(), CampaignStatus::Closed);
    assert_eq!(h.count_events("campaign.closed").await, 1);
    for participant in campaign.participants() {
        assert_eq!(participant.state(), ParticipantState::Ordered);
        let payment = h.payment(participant.payment_id().expect("paid")).await;
        assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    }
    let lamp = h.stock_of("LAMP").await;
    assert_eq!((lamp.on_hand(), lamp.reserved()), (8, 0));
    engine.abort();
}

#[tokio::test]
async fn an_undecodable_event_is_parked_as_a_dead_letter_and_the_flow_goes_on() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 10).await;
    // given: an `order.created` whose payload no reaction can read, ahead of a good order
    let bad_id = Uuid::new_v4();
    let bad_order = Uuid::new_v4();
    PgBackend::new(h.store.clone())
        .append(
            &StreamRef::new(
                "order",
                StreamId::new(TENANT, bad_order.to_string()).expect("stream"),
            ),
            ExpectedVersion::Exact(0),
            vec![NewStreamEvent {
                event_id: bad_id,
                event_type: "order.created".to_owned(),
                event_version: "1".to_owned(),
                payload: serde_json::json!({ "not": "an order" }),
                metadata: EventMetadata::new(TENANT, "test"),
            }],
        )
        .await
        .expect("raw append");
    let order_id = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;

    // when
    let engine = h.spawn();

    // then: the good order is processed, the bad event is parked with its place and reason
    h.eventually(20, "the good order labelled", || async {
        h.count_events("order.label_attached").await == 1
    })
    .await;
    assert_eq!(
        h.order(order_id).await.status(),
        Some(OrderStatus::Confirmed)
    );
    let parked: Vec<(Uuid, i64, String, String, String)> = sqlx::query_as(
        "SELECT d.event_id, d.position, d.event_type, d.tenant_id, d.reason          FROM workflow_dead_letters d JOIN events e ON e.event_id = d.event_id          WHERE d.position = e.position",
    )
    .fetch_all(h.db.pool())
    .await
    .expect("dead letters");
    assert_eq!(parked.len(), 1, "{parked:?}");
    let (event_id, _, event_type, tenant, reason) = &parked[0];
    assert_eq!(
        (event_id, event_type.as_str(), tenant.as_str()),
        (&bad_id, "order.created", TENANT)
    );
    assert!(
        reason.starts_with("cannot decode order.created"),
        "{reason}"
    );
    engine.abort();
}

/// The payment of a campaign's participant.
async fn payment_of(
    h: &Harness,
    campaign_id: commerce_domain::CampaignId,
    participant_id: commerce_domain::ParticipantId,
) -> commerce_aggregates::payment::Payment {
    let payment_id = h
        .campaign(campaign_id)
        .await
        .participant(participant_id)
        .and_then(|p| p.payment_id())
        .expect("payment");
    h.payment(payment_id).await
}

#[tokio::test]
async fn a_campaign_outlasting_a_hold_charges_at_join_orders_without_a_capture_or_refunds() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 10).await;
    let engine = h.spawn();
    // given: two campaigns ending in ten days, longer than a hold lasts (seven)
    let (succeeds, fails) = (
        h.create_campaign("LAMP", 2, 3, chrono::Duration::days(10))
            .await,
        h.create_campaign("LAMP", 2, 2, chrono::Duration::days(10))
            .await,
    );
    let ordered = h
        .join_as(succeeds, "a", "pm_card_ok")
        .await
        .expect("joined");
    h.join_as(succeeds, "c", "pm_card_ok")
        .await
        .expect("joined");
    let refunded = h.join_as(fails, "b", "pm_card_ok").await.expect("joined");

    // then: each participant paid by a charge, not a hold
    h.eventually(20, "all paid", || async {
        h.campaign(succeeds).await.paid_count() == 2 && h.campaign(fails).await.paid_count() == 1
    })
    .await;
    for (campaign_id, participant_id) in [(succeeds, ordered), (fails, refunded)] {
        let payment = payment_of(&h, campaign_id, participant_id).await;
        assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    }

    // when: the end time passes (and not the reservations' grace after it)
    h.advance(chrono::Duration::days(10) + chrono::Duration::minutes(1));

    // then: the successful one orders with the money already taken, the failed one refunds
    h.eventually(30, "the orders labelled and the refund", || async {
        h.count_events("order.label_attached").await == 2
            && payment_of(&h, fails, refunded).await.status() == Some(PaymentStatus::Refunded)
    })
    .await;
    engine.abort();
    let participant = h.campaign(succeeds).await;
    let participant = participant.participant(ordered).expect("participant");
    assert_eq!(participant.state(), ParticipantState::Ordered);
    let order = h.order(participant.order_id().expect("ordered")).await;
    assert_eq!(order.status(), Some(OrderStatus::Confirmed));
    let payment = payment_of(&h, succeeds, ordered).await;
    assert_eq!(
        payment.captured().map(|m| m.amount_minor()),
        Some(PRICE / 2)
    );
    assert_eq!(h.stock_of("LAMP").await.reserved(), 0);
}

#[tokio::test]
async fn a_partial_authorization_pays_for_no_place_and_is_given_back() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 5).await;
    let engine = h.spawn();
    let campaign_id = h
        .create_campaign("LAMP", 2, 3, chrono::Duration::hours(1))
        .await;
    let participant_id = h
        .join_as(campaign_id, "a", "pm_card_requires_action")
        .await
        .expect("joined");
    h.eventually(20, "the payment waiting for action", || async {
        h.count_events("payment.requires_action").await == 1
    })
    .await;
    let payment_id = h.payment_waiting_for_action().await;

    // when: the provider reports a hold of less than the price
    h.payments
        .execute(
            StreamId::new(TENANT, payment_id.to_string()).expect("stream"),
            PaymentCommand::ApplyProviderEvent(ProviderEvent {
                provider_event_id: "evt_partial".to_owned(),
                kind: ProviderEventKind::Authorized {
                    auth_expires_at: h.now() + chrono::Duration::days(7),
                },
                amount: Some(Money::new(PRICE / 4, eur())),
                provider_ref: None,
                at: h.now(),
            }),
            CommandContext::new(EventMetadata::new(TENANT, "psp")),
        )
        .await
        .expect("webhook applied");

    // then: the place stays unpaid and the hold is voided
    h.eventually(20, "the hold voided", || async {
        h.payment(payment_id).await.status() == Some(PaymentStatus::Voided) && h.settled().await
    })
    .await;
    engine.abort();
    let participant = h.campaign(campaign_id).await;
    assert_eq!(
        participant.participant(participant_id).map(|p| p.state()),
        Some(ParticipantState::Joined)
    );
}

#[tokio::test]
async fn flash_sale_admits_exactly_max_and_a_failed_campaign_gives_everything_back() {
    let h = Harness::new().await;
    h.product("SNEAKER", PRICE);
    h.stock("SNEAKER", 100).await;
    let engine = h.spawn();
    // min = max = 100 and one customer in ten must confirm with their bank (never does):
    // the campaign cannot reach its minimum and fails at the end.
    let campaign_id = h
        .create_campaign("SNEAKER", 100, 100, chrono::Duration::hours(1))
        .await;
    let h = std::sync::Arc::new(h);
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..1_000 {
        let h = std::sync::Arc::clone(&h);
        joins.spawn(async move {
            let method = if i % 10 == 0 {
                "pm_card_requires_action"
            } else {
                "pm_card_ok"
            };
            h.join(campaign_id, &format!("customer-{i}"), method)
                .await
                .is_ok()
        });
    }
    let admitted = joins.join_all().await.into_iter().filter(|ok| *ok).count();
    assert_eq!(admitted, 100, "CMP-2: exactly max participants");

    h.eventually(
        120,
        "every participant's stock and payment handled",
        || async {
            let campaign = h.campaign(campaign_id).await;
            let waiting = h.count_events("payment.requires_action").await;
            i64::from(campaign.paid_count()) + waiting == 100
        },
    )
    .await;
    let sneaker = h.stock_of("SNEAKER").await;
    assert_eq!(
        sneaker.reserved(),
        100,
        "CMP-9: every participant backed by stock"
    );
    assert!(sneaker.available() >= 0, "INV-1: no oversell");

    h.advance(chrono::Duration::hours(2));
    h.eventually(120, "everyone refunded", || async {
        let campaign = h.campaign(campaign_id).await;
        campaign.status() == CampaignStatus::Failed
            && campaign
                .participants()
                .iter()
                .filter(|p| p.state().occupies_place())
                .count()
                == 0
            && h.stock_of("SNEAKER").await.reserved() == 0
    })
    .await;
    let campaign = h.campaign(campaign_id).await;
    for participant in campaign.participants() {
        if let Some(payment_id) = participant.payment_id() {
            let payment = h.payment(payment_id).await;
            let captured = payment.captured().map_or(0, |m| m.amount_minor());
            let refunded = payment.refunded().map_or(0, |m| m.amount_minor());
            assert_eq!(captured - refunded, 0, "CMP-7: nothing kept");
            assert_eq!(payment.status(), Some(PaymentStatus::Voided));
        }
    }
    assert_eq!(h.count_events("shipping.label.created").await, 0);
    assert_eq!(h.stock_of("SNEAKER").await.on_hand(), 100);
    engine.abort();
}

#[tokio::test]
async fn concurrent_joins_of_one_customer_hold_the_per_customer_limit() {
    let h = std::sync::Arc::new(Harness::new().await);
    h.product("LAMP", PRICE);
    h.stock("LAMP", 50).await;
    let engine = h.spawn();
    let campaign_id = h
        .create_campaign("LAMP", 2, 20, chrono::Duration::hours(1))
        .await;
    // when: one customer (limit 1) joins twenty times at once, next to two others
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..22 {
        let h = std::sync::Arc::clone(&h);
        let customer = match i {
            20 => "other-1",
            21 => "other-2",
            _ => "greedy",
        };
        joins.spawn(async move { h.join(campaign_id, customer, "pm_card_ok").await.is_ok() });
    }
    let admitted = joins.join_all().await.into_iter().filter(|ok| *ok).count();

    // then: CMP-4, one place each, and only those are reserved and paid
    assert_eq!(admitted, 3);
    h.eventually(30, "three participants paid", || async {
        h.campaign(campaign_id).await.paid_count() == 3
    })
    .await;
    assert_eq!(h.stock_of("LAMP").await.reserved(), 3);
    assert_eq!(h.count_events("payment.authorized").await, 3);
    engine.abort();
}

/// Waits until every deadline row has fired.
async fn all_deadlines_fired(h: &Harness) -> bool {
    let unfired: i64 = sqlx::query_scalar("SELECT count(*) FROM deadlines WHERE fired_at IS NULL")
        .fetch_one(h.db.pool())
        .await
        .expect("count");
    unfired == 0
}

/// How many times the deadline `kind` fired (one row per aggregate and kind, ES-5).
async fn fired(h: &Harness, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deadlines WHERE kind = $1 AND fired_at IS NOT NULL")
        .bind(kind)
        .fetch_one(h.db.pool())
        .await
        .expect("count")
}

#[tokio::test]
async fn an_order_whose_payment_still_awaits_action_at_expiry_voids_it_and_expires_once() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 3).await;
    let engine = h.spawn();
    // given: the customer never completes 3-D Secure
    let order_id = h
        .place_order(&[("TEE", 1)], Some("pm_card_requires_action"))
        .await;
    h.eventually(20, "the payment waiting for action", || async {
        match h.order(order_id).await.payment_ids().first() {
            Some(id) => h.payment(*id).await.status() == Some(PaymentStatus::RequiresAction),
            None => false,
        }
    })
    .await;
    let payment_id = h.order(order_id).await.payment_ids()[0];
    engine.abort();
    let _ = engine.await;

    // when: the unpaid-order deadline passes while no engine runs, and a new one fires it
    h.advance(chrono::Duration::hours(1));
    let engine = h.spawn();

    // then: the waiting payment is voided, the order expires and gives its stock back
    h.eventually(20, "the expiry", || async {
        h.order(order_id).await.cancel_reason() == Some(CancelReason::Expired)
    })
    .await;
    h.eventually(20, "the release", || async {
        h.stock_of("TEE").await.reserved() == 0
    })
    .await;
    assert_eq!(
        h.payment(payment_id).await.status(),
        Some(PaymentStatus::Voided)
    );
    engine.abort();
    let _ = engine.await;
    // and a restart later fires nothing again
    h.advance(chrono::Duration::hours(1));
    let engine = h.spawn();
    h.eventually(20, "every deadline fired", || all_deadlines_fired(&h))
        .await;
    h.eventually(20, "the engine settled", || h.settled()).await;
    engine.abort();
    assert_eq!(h.count_events("order.expired").await, 1);
    assert_eq!(h.count_events("payment.voided").await, 1);
    assert_eq!(h.count_events("payment.created").await, 1, "no retry");
    assert_eq!(fired(&h, "order_expiry").await, 1);
    assert_eq!(h.net_paid(order_id).await, 0);
}

#[tokio::test]
async fn a_participant_whose_hold_lapses_leaves_once_and_gets_the_stock_back() {
    let mut h = Harness::new().await;
    // An engine told holds last longer than the provider keeps them (the sandbox's: 7 days)
    h.hold_validity = chrono::Duration::days(30);
    h.product("LAMP", PRICE);
    h.stock("LAMP", 5).await;
    let engine = h.spawn();
    // given: one paid participant of a campaign short of its minimum, ending in ten days
    let campaign_id = h
        .create_campaign("LAMP", 2, 3, chrono::Duration::days(10))
        .await;
    let participant_id = h
        .join_as(campaign_id, "a", "pm_card_ok")
        .await
        .expect("joined");
    h.eventually(20, "the participant paid", || async {
        h.campaign(campaign_id).await.paid_count() == 1
    })
    .await;
    let payment_id = h
        .campaign(campaign_id)
        .await
        .participant(participant_id)
        .and_then(|p| p.payment_id())
        .expect("payment");
    engine.abort();
    let _ = engine.await;

    // when: the authorization (seven days) lapses while no engine runs
    h.advance(chrono::Duration::days(8));
    let engine = h.spawn();

    // then: the payment expires, the participant leaves and the stock is released
    h.eventually(20, "the participant gone", || async {
        h.campaign(campaign_id)
            .await
            .participant(participant_id)
            .is_some_and(|p| p.state() == ParticipantState::Left)
    })
    .await;
    h.eventually(20, "the release", || async {
        h.stock_of("LAMP").await.reserved() == 0
    })
    .await;
    assert_eq!(
        h.payment(payment_id).await.status(),
        Some(PaymentStatus::Expired)
    );
    engine.abort();
    let _ = engine.await;
    // and another restart fires it no more
    let engine = h.spawn();
    h.eventually(20, "the engine settled", || h.settled()).await;
    engine.abort();
    assert_eq!(h.count_events("payment.expired").await, 1);
    assert_eq!(h.count_events("campaign.participant_left").await, 1);
    assert_eq!(fired(&h, "authorization_expiry").await, 1);
    assert_eq!(
        h.campaign(campaign_id).await.status(),
        CampaignStatus::Active
    );
}

#[tokio::test]
async fn a_scheduled_campaign_starts_once_across_restarts() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 5).await;
    let engine = h.spawn();
    // given: a campaign that starts in an hour
    let campaign_id = h
        .schedule_campaign(
            "LAMP",
            2,
            3,
            chrono::Duration::hours(1),
            chrono::Duration::days(1),
        )
        .await;
    h.eventually(20, "the engine settled", || h.settled()).await;
    assert_eq!(
        h.campaign(campaign_id).await.status(),
        CampaignStatus::Scheduled
    );
    engine.abort();
    let _ = engine.await;

    // when: its start time passes while no engine runs
    h.advance(chrono::Duration::hours(2));
    let engine = h.spawn();

    // then: it starts, once, and takes joins
    h.eventually(20, "the campaign started", || async {
        h.campaign(campaign_id).await.status() == CampaignStatus::Active
    })
    .await;
    engine.abort();
    let _ = engine.await;
    let engine = h.spawn();
    h.eventually(20, "the engine settled", || h.settled()).await;
    assert!(h.join_as(campaign_id, "a", "pm_card_ok").await.is_some());
    h.eventually(20, "the participant paid", || async {
        h.campaign(campaign_id).await.paid_count() == 1
    })
    .await;
    engine.abort();
    assert_eq!(h.count_events("campaign.started").await, 1);
    assert_eq!(fired(&h, "campaign_start").await, 1);
}

#[tokio::test]
async fn participants_who_never_paid_are_dropped_when_the_campaign_closes() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 10).await;
    let engine = h.spawn();
    // given: a successful campaign with two paid participants and one stuck in 3-D Secure
    let campaign_id = h
        .create_campaign("LAMP", 2, 4, chrono::Duration::hours(1))
        .await;
    for customer in ["a", "b"] {
        h.join(campaign_id, customer, "pm_card_ok")
            .await
            .expect("joined");
    }
    let unpaid = h
        .join_as(campaign_id, "c", "pm_card_requires_action")
        .await
        .expect("joined");
    h.eventually(20, "two paid, one waiting for action", || async {
        h.campaign(campaign_id).await.paid_count() == 2
            && h.count_events("payment.requires_action").await == 1
    })
    .await;
    let unpaid_payment = h.payment_waiting_for_action().await;

    // when: the end time passes
    h.advance(chrono::Duration::hours(2));

    // then: the paid participants are ordered, the unpaid one is dropped with stock and hold
    // given back
    h.eventually(30, "two labelled orders", || async {
        h.count_events("order.label_attached").await == 2
    })
    .await;
    h.eventually(20, "the unpaid participant dropped", || async {
        h.campaign(campaign_id)
            .await
            .participant(unpaid)
            .is_some_and(|p| p.state() == ParticipantState::Dropped)
    })
    .await;
    h.eventually(20, "the engine settled", || h.settled()).await;
    engine.abort();
    let campaign = h.campaign(campaign_id).await;
    assert_eq!(campaign.status(), CampaignStatus::Closed);
    let states: Vec<ParticipantState> = campaign.participants().iter().map(|p| p.state()).collect();
    assert!(
        !states.contains(&ParticipantState::Joined),
        "nobody left joined: {states:?}"
    );
    assert_eq!(
        h.payment(unpaid_payment).await.status(),
        Some(PaymentStatus::Voided)
    );
    let lamp = h.stock_of("LAMP").await;
    assert_eq!((lamp.on_hand(), lamp.reserved()), (8, 0));
    assert!(h.participants_settled(campaign_id).await);
}

/// Reactions to different orders run side by side (the charges of four orders overlap), and
/// one at a time when `concurrent_reactions` is 1; every order is confirmed either way.
#[tokio::test]
async fn reactions_to_different_orders_run_side_by_side_unless_limited_to_one() {
    for (concurrent_reactions, overlap) in [(32, true), (1, false)] {
        let h = Harness::new().await;
        h.product("TEE", PRICE);
        h.stock("TEE", 10).await;
        // given: four orders in the log before the engine starts
        let mut orders = Vec::new();
        for _ in 0..4 {
            orders.push(h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await);
        }
        let gateway = Arc::new(Hooked(Overlap::default()));
        // when
        let workflows = h.workflows_reacting(gateway.clone(), 1, concurrent_reactions);
        let engine = tokio::spawn(async move {
            workflows.run(pending()).await.expect("workflows run");
        });
        h.eventually(30, "every order confirmed", || async {
            for &order_id in &orders {
                if h.order(order_id).await.status() != Some(OrderStatus::Confirmed) {
                    return false;
                }
            }
            true
        })
        .await;
        engine.abort();
        // then
        assert_eq!(
            gateway.0.most_at_once() > 1,
            overlap,
            "{} charges at once with concurrent_reactions = {concurrent_reactions}",
            gateway.0.most_at_once()
        );
    }
}

#[tokio::test]
async fn a_reaction_stuck_at_the_provider_does_not_hold_up_orders_placed_after_it() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 10).await;
    let gateway = Arc::new(Hooked(Gate::default()));
    let workflows = h.workflows_with(gateway.clone(), 1);
    let engine = tokio::spawn(async move {
        workflows.run(pending()).await.expect("workflows run");
    });
    // given: the first order's charge hangs at the provider, with everything read done
    let stuck = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    h.eventually(30, "the first charge held", || async {
        gateway.0.holding()
    })
    .await;
    // when: another order is placed
    let next = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    // then: its checkout runs to the end while the first charge still hangs
    h.eventually(30, "the later order confirmed", || async {
        h.order(next).await.status() == Some(OrderStatus::Confirmed)
    })
    .await;
    assert!(gateway.0.holding(), "the first charge was let go early");
    assert_ne!(h.order(stuck).await.status(), Some(OrderStatus::Confirmed));
    gateway.0.release();
    h.eventually(
        30,
        "the first order confirmed once its charge returns",
        || async { h.order(stuck).await.status() == Some(OrderStatus::Confirmed) },
    )
    .await;
    engine.abort();
}
