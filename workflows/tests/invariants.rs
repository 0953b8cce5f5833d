//! Property tests of the cross-aggregate invariants of §6 (ORD-5, ORD-6, PAY-4, PAY-6, ES-5,
//! CMP-6, CMP-7) against the whole process-manager engine on a real PostgreSQL: proptest
//! generates the orders (payment methods, quantities), the customers' cancels, the moments the
//! engine is killed, the provider's webhooks (duplicated and reordered) and the campaign
//! joins; after the sagas drain, the invariants are checked on the folded aggregates.
//!
//! Each case builds a fresh database, so the case count is kept small.

mod common;

use std::time::Duration;

use commerce_aggregates::campaign::{CampaignStatus, ParticipantState};
use commerce_aggregates::inventory::Inventory;
use commerce_aggregates::order::OrderStatus;
use commerce_aggregates::payment::{
    PaymentCommand, PaymentStatus, ProviderEvent, ProviderEventKind,
};
use commerce_contracts::ReservationHolder;
use commerce_domain::OrderId;
use commerce_eventstore::{CommandContext, EventMetadata, StreamId};
use common::{Harness, PRICE, TENANT};
use proptest::prelude::*;

const METHODS: [Option<&str>; 4] = [
    Some("pm_card_ok"),
    Some("pm_card_declined"),
    Some("pm_card_requires_action"),
    None,
];

/// One generated order: its payment method (index into [`METHODS`]), quantity, and the kill
/// round after which its customer cancels (if any).
#[derive(Debug, Clone)]
struct OrderPlan {
    method: usize,
    quantity: u32,
    cancel_after_round: Option<usize>,
}

/// What the provider reports for a payment waiting for customer action, in delivery order
/// (ids repeat: duplicates; the stale `requires_action` may come last: reordering).
#[derive(Debug, Clone, Copy)]
enum Webhook {
    Succeeded,
    Failed,
    StaleRequiresAction,
}

fn webhook() -> impl Strategy<Value = Webhook> {
    prop_oneof![
        Just(Webhook::Succeeded),
        Just(Webhook::Failed),
        Just(Webhook::StaleRequiresAction),
    ]
}

fn order_plan() -> impl Strategy<Value = OrderPlan> {
    (
        0..METHODS.len(),
        1..=2_u32,
        proptest::option::of(0..3_usize),
    )
        .prop_map(|(method, quantity, cancel_after_round)| OrderPlan {
            method,
            quantity,
            cancel_after_round,
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Delivers the webhooks to the payment waiting for action (its outcome is the first
/// terminal report; later ones and duplicates must change nothing).
async fn deliver(h: &Harness, order_id: OrderId, webhooks: &[Webhook]) {
    let order = h.order(order_id).await;
    let Some(payment_id) = order.payment_ids().first().copied() else {
        return;
    };
    let stream = StreamId::new(TENANT, payment_id.to_string()).expect("stream");
    for hook in webhooks {
        let (id, kind) = match hook {
            Webhook::Succeeded => ("evt_ok", ProviderEventKind::Succeeded),
            Webhook::Failed => (
                "evt_no",
                ProviderEventKind::Failed {
                    reason: "authentication_failed".to_owned(),
                },
            ),
            Webhook::StaleRequiresAction => ("evt_ra", ProviderEventKind::RequiresAction),
        };
        let command = PaymentCommand::ApplyProviderEvent(ProviderEvent {
            provider_event_id: id.to_owned(),
            kind,
            amount: None,
            provider_ref: None,
            at: chrono::Utc::now(),
        });
        // A payment already settled (or voided by a cancel) may refuse: that is the point.
        let _applied = h
            .payments
            .execute(
                stream.clone(),
                command,
                CommandContext::new(EventMetadata::new(TENANT, "psp")),
            )
            .await;
    }
}

async fn count_for(h: &Harness, event_type: &str, id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = $1 AND aggregate_id LIKE '%' || $2",
    )
    .bind(event_type)
    .bind(id)
    .fetch_one(h.db.pool())
    .await
    .expect("count")
}

async fn checkout_case(plans: Vec<OrderPlan>, kills: Vec<u64>, webhooks: Vec<Webhook>, late: bool) {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 5).await;
    let mut orders = Vec::new();
    for plan in &plans {
        let order_id = h
            .place_order(&[("TEE", plan.quantity)], METHODS[plan.method])
            .await;
        orders.push((order_id, plan.clone()));
    }
    for (round, run_for) in kills.iter().enumerate() {
        let engine = h.spawn_with(std::sync::Arc::new(commerce_workflows::SandboxGateway), 2);
        tokio::time::sleep(Duration::from_millis(*run_for)).await;
        for (order_id, plan) in &orders {
            if plan.cancel_after_round == Some(round) {
                h.try_order_command(*order_id, h.customer_cancel()).await;
            }
        }
        engine.abort();
        let _ = engine.await;
    }
    let engine = h.spawn_with(std::sync::Arc::new(commerce_workflows::SandboxGateway), 2);
    h.eventually(90, "the checkouts drained", || h.settled())
        .await;
    for (order_id, plan) in &orders {
        if METHODS[plan.method] == Some("pm_card_requires_action") {
            deliver(&h, *order_id, &webhooks).await;
        }
    }
    // The unpaid orders' deadline passes (and, when `late`, every other deadline too).
    h.advance(chrono::Duration::minutes(if late { 600 } else { 31 }));
    h.eventually(90, "every order final", || async {
        for (order_id, _) in &orders {
            let order = h.order(*order_id).await;
            let status = order.status();
            // A payment waiting for the customer keeps its order open (ORD-9).
            let waiting_for_action = match order.payment_in_flight() {
                Some(payment_id) => {
                    h.payment(payment_id).await.status() == Some(PaymentStatus::RequiresAction)
                }
                None => false,
            };
            let done = matches!(status, Some(OrderStatus::Canceled))
                || (status == Some(OrderStatus::Confirmed)
                    && h.shipment_of(*order_id).await.is_some())
                || (waiting_for_action && status == Some(OrderStatus::AwaitingPayment));
            if !done {
                return false;
            }
        }
        h.settled().await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.abort();
    let _ = engine.await;

    let tee: Inventory = h.stock_of("TEE").await;
    let mut committed = 0_u64;
    for (order_id, _) in &orders {
        let order = h.order(*order_id).await;
        let total = order.total().map_or(0, |m| m.amount_minor());
        let mut net = 0;
        for payment_id in order.payment_ids() {
            let payment = h.payment(*payment_id).await;
            let captured = payment.captured().map_or(0, |m| m.amount_minor());
            let refunded = payment.refunded().map_or(0, |m| m.amount_minor());
            assert!(refunded <= captured, "PAY-2");
            net += captured - refunded;
            // PAY-6: duplicated and reordered webhooks settle a payment at most once.
            assert!(count_for(&h, "payment.succeeded", &payment_id.to_string()).await <= 1);
            if order.status() == Some(OrderStatus::Canceled) {
                let status = payment.status();
                assert!(
                    status.is_none_or(PaymentStatus::is_terminal),
                    "ORD-6: a canceled order's payment left open: {status:?}"
                );
            }
        }
        assert!(net <= total, "PAY-4: no double charge ({net} > {total})");
        let holds: Vec<_> = tee
            .reservations()
            .filter(|r| r.holder() == ReservationHolder::Order(order_id.as_uuid()))
            .collect();
        // ES-5: the expiry fired at most once, and never after a payment.
        let expired = count_for(&h, "order.expired", &order_id.to_string()).await;
        assert!(expired <= 1, "ES-5");
        match order.status() {
            Some(OrderStatus::Confirmed) => {
                assert_eq!(net, total, "PAY-4: a confirmed order is paid once");
                assert_eq!(expired, 0, "ES-5: no expiry after the payment");
                // ORD-5: its stock is held, committed at fulfilment.
                let held: u32 = holds.iter().map(|r| r.committed()).sum();
                assert_eq!(held, order.lines()[0].ordered(), "ORD-5");
                committed += u64::from(held);
            }
            Some(OrderStatus::Canceled) => {
                assert_eq!(net, 0, "ORD-6: a canceled order keeps no money");
                assert!(holds.iter().all(|r| !r.is_active()), "ORD-6: stock leaked");
            }
            _ => {}
        }
    }
    assert_eq!(
        tee.on_hand(),
        5 - committed,
        "stock leaves once per confirmed unit"
    );
    let active_for_final: u64 = tee
        .reservations()
        .filter(|r| r.is_active())
        .map(|r| u64::from(r.quantity()))
        .sum();
    assert!(
        active_for_final <= tee.reserved(),
        "INV-2 reserved matches its rows"
    );
}

async fn campaign_case(methods: Vec<usize>, leavers: Vec<usize>, kills: Vec<u64>, min: u32) {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 4).await;
    let max = 4;
    let campaign_id = h
        .create_campaign("LAMP", min, max, chrono::Duration::hours(1))
        .await;
    let mut participants = Vec::new();
    for (i, method) in methods.iter().enumerate() {
        let method = METHODS[*method].unwrap_or("pm_card_ok");
        if let Some(p) = h.join_as(campaign_id, &format!("c{i}"), method).await {
            participants.push(p);
        }
    }
    for (round, run_for) in kills.iter().enumerate() {
        let engine = h.spawn_with(std::sync::Arc::new(commerce_workflows::SandboxGateway), 1);
        tokio::time::sleep(Duration::from_millis(*run_for)).await;
        if let Some(p) = leavers.get(round).and_then(|i| participants.get(*i)) {
            h.leave(campaign_id, *p).await;
        }
        if round == 1 {
            h.advance(chrono::Duration::hours(2));
        }
        engine.abort();
        let _ = engine.await;
    }
    h.advance(chrono::Duration::hours(2));
    let engine = h.spawn_with(std::sync::Arc::new(commerce_workflows::SandboxGateway), 1);
    h.eventually(90, "the campaign ended and settled", || async {
        let campaign = h.campaign(campaign_id).await;
        if !matches!(
            campaign.status(),
            CampaignStatus::Closed | CampaignStatus::Failed
        ) {
            return false;
        }
        h.participants_settled(campaign_id).await && h.settled().await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.abort();
    let _ = engine.await;

    let campaign = h.campaign(campaign_id).await;
    let id = campaign_id.to_string();
    // CMP-6: exactly one outcome, success at most once and never with a failure.
    let closed = count_for(&h, "campaign.closed", &id).await;
    let failed = count_for(&h, "campaign.failed", &id).await;
    assert_eq!(closed + failed, 1, "CMP-6");
    let successful = count_for(&h, "campaign.successful", &id).await;
    assert!(successful <= 1, "CMP-5");
    assert!(
        failed == 0 || successful == 0,
        "CMP-6: successful and failed"
    );
    let mut ordered = 0_u64;
    for p in campaign.participants() {
        let net = match p.payment_id() {
            Some(payment_id) => {
                let payment = h.payment(payment_id).await;
                payment.captured().map_or(0, |m| m.amount_minor())
                    - payment.refunded().map_or(0, |m| m.amount_minor())
            }
            None => 0,
        };
        if p.state() == ParticipantState::Ordered {
            ordered += 1;
            assert_eq!(net, PRICE / 2, "PAY-4");
        } else {
            assert_eq!(net, 0, "CMP-7: nobody without an order keeps money");
        }
        if campaign.status() == CampaignStatus::Failed {
            assert!(!p.state().occupies_place(), "CMP-7: everyone let go");
        }
    }
    let lamp = h.stock_of("LAMP").await;
    assert_eq!(lamp.reserved(), 0, "CMP-7: all stock released or committed");
    assert_eq!(lamp.on_hand(), 4 - ordered, "CMP-9: one unit per order");
    if campaign.status() == CampaignStatus::Failed {
        assert_eq!(h.count_events("shipping.label.created").await, 0, "CMP-7");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 6,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn checkout_invariants_hold_whatever_the_orders_cancels_kills_and_webhooks(
        plans in proptest::collection::vec(order_plan(), 1..7),
        kills in proptest::collection::vec(10..300_u64, 0..4),
        webhooks in proptest::collection::vec(webhook(), 1..5),
        late in any::<bool>(),
    ) {
        runtime().block_on(checkout_case(plans, kills, webhooks, late));
    }

    #[test]
    fn campaign_invariants_hold_whatever_the_joins_leaves_and_kills(
        methods in proptest::collection::vec(0..3_usize, 2..7),
        leavers in proptest::collection::vec(0..6_usize, 0..3),
        kills in proptest::collection::vec(10..300_u64, 0..4),
        min in 2..=4_u32,
    ) {
        runtime().block_on(campaign_case(methods, leavers, kills, min));
    }
}
