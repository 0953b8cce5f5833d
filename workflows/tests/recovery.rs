//! Re-runs and races of the process managers on a real PostgreSQL: a reaction re-run on the
//! state that came after it (a crash, a transient failure, a previous leader finishing late),
//! cancels that overtake the checkout, stock that lands for a flow that already ended, and the
//! engine killed at random points of campaign joins and settlement.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use commerce_aggregates::campaign::{CampaignStatus, ParticipantState};
use commerce_aggregates::order::{OrderCommand, OrderStatus};
use commerce_aggregates::payment::PaymentStatus;
use commerce_contracts::ReservationHolder;
use commerce_domain::{CampaignId, Money, OrderId};
use commerce_workflows::orphans::{self, OrphanedFunds};
use common::{Harness, PRICE, RecordingGateway, TENANT, eur};

async fn fulfillment_of(h: &Harness, order_id: OrderId) -> uuid::Uuid {
    sqlx::query_scalar(
        "SELECT (payload->>'fulfillment_id')::uuid FROM events \
         WHERE event_type = 'order.fulfillment_created' AND aggregate_id LIKE '%' || $1",
    )
    .bind(order_id.to_string())
    .fetch_one(h.db.pool())
    .await
    .expect("fulfillment")
}

#[tokio::test]
async fn a_cancel_that_overtakes_the_reservation_takes_no_stock() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 1).await;
    // given: an order canceled before the engine reacted to its creation
    let order_id = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    h.order_command(order_id, h.customer_cancel()).await;

    // when
    let engine = h.spawn();
    h.eventually(30, "the engine settled", || h.settled()).await;
    engine.abort();

    // then: its stock was never held (no other order could have been refused for it)
    assert_eq!(h.count_events("inventory.reserved").await, 0);
    assert_eq!(h.stock_of("TEE").await.reserved(), 0);
    assert_eq!(h.count_events("payment.created").await, 0);
}

#[tokio::test]
async fn stock_reserved_for_an_order_after_its_cancel_was_compensated_is_released() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 2).await;
    let engine = h.spawn();
    let order_id = h.place_order(&[("TEE", 1)], None).await;
    h.order_command(order_id, h.customer_cancel()).await;
    h.eventually(30, "the cancel compensated", || h.settled())
        .await;

    // when: a previous leader, still finishing the order's checkout after losing its lock,
    // reserves for it after the compensation ran
    h.reserve("TEE", ReservationHolder::Order(order_id.as_uuid()))
        .await;

    // then
    h.eventually(30, "the late reservation released", || async {
        h.stock_of("TEE").await.reserved() == 0
    })
    .await;
    assert_eq!(
        h.order(order_id).await.status(),
        Some(OrderStatus::Canceled)
    );
    engine.abort();
}

#[tokio::test]
async fn stock_reserved_for_a_participant_who_left_is_released() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 5).await;
    let campaign_id = h
        .create_campaign("LAMP", 2, 3, chrono::Duration::hours(1))
        .await;
    // given: a participant who left before the engine reacted to the join
    let participant = h
        .join_as(campaign_id, "a", "pm_card_ok")
        .await
        .expect("joined");
    assert!(h.leave(campaign_id, participant).await);
    let engine = h.spawn();
    h.eventually(30, "the engine settled", || h.settled()).await;
    // then: the join took nothing
    assert_eq!(h.count_events("inventory.reserved").await, 0);
    assert_eq!(h.count_events("payment.created").await, 0);

    // when: a previous leader finishing the join late reserves for them
    h.reserve(
        "LAMP",
        ReservationHolder::CampaignParticipant(participant.as_uuid()),
    )
    .await;

    // then
    h.eventually(30, "the late reservation released", || async {
        h.stock_of("LAMP").await.reserved() == 0
    })
    .await;
    engine.abort();
}

#[tokio::test]
async fn a_charge_taken_before_an_interruption_and_a_cancel_is_recorded_and_refunded() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 1).await;
    let gateway = Arc::new(RecordingGateway::default());
    gateway.fail_after_charge.store(true, Ordering::SeqCst);
    let engine = h.spawn_with(gateway.clone(), 1);
    let order_id = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;

    // given: the provider took the charge but its answer was lost; the reaction retries
    h.eventually(30, "the charge taken", || async {
        gateway.net_total() == PRICE
    })
    .await;
    assert_eq!(
        h.order(order_id).await.status(),
        Some(OrderStatus::AwaitingPayment)
    );
    // when: the customer cancels before the retry gets through
    h.order_command(order_id, h.customer_cancel()).await;
    gateway.fail_after_charge.store(false, Ordering::SeqCst);

    // then: the retry records the charge and the money goes back
    h.eventually(60, "the charge refunded", || async {
        gateway.net_total() == 0 && h.settled().await
    })
    .await;
    engine.abort();
    let order = h.order(order_id).await;
    assert_eq!(order.status(), Some(OrderStatus::Canceled));
    let payment = h.payment(order.payment_ids()[0]).await;
    assert_eq!(payment.captured().map(|m| m.amount_minor()), Some(PRICE));
    assert_eq!(h.net_paid(order_id).await, 0, "ORD-6");
    assert_eq!(h.stock_of("TEE").await.reserved(), 0);
}

/// A campaign longer than a hold charges at the join. The provider takes the charge but its
/// answer is lost, and the participant leaves while the reaction retries: the retry finds
/// them gone, and must still learn of the charge (the same keyed request) to give it back.
#[tokio::test]
async fn a_join_charge_taken_before_an_interruption_and_a_leave_is_recorded_and_refunded() {
    let h = Harness::new().await;
    h.product("LAMP", PRICE);
    h.stock("LAMP", 5).await;
    let gateway = Arc::new(RecordingGateway::default());
    gateway.fail_after_charge.store(true, Ordering::SeqCst);
    let engine = h.spawn_with(gateway.clone(), 1);
    let campaign_id = h
        .create_campaign("LAMP", 2, 3, chrono::Duration::days(10))
        .await;
    let participant = h
        .join_as(campaign_id, "a", "pm_card_ok")
        .await
        .expect("joined");

    // given: the provider took the charge but its answer was lost; the reaction retries
    h.eventually(30, "the charge taken", || async { gateway.net_total() > 0 })
        .await;
    // when: the participant leaves before the retry gets through
    assert!(h.leave(campaign_id, participant).await);
    gateway.fail_after_charge.store(false, Ordering::SeqCst);

    // then: the retry records the charge and the money goes back
    h.eventually(60, "the charge refunded", || async {
        gateway.net_total() == 0 && h.settled().await
    })
    .await;
    engine.abort();
    assert_eq!(h.count_events("payment.succeeded").await, 1);
    assert_eq!(h.stock_of("LAMP").await.reserved(), 0);
}

#[tokio::test]
async fn a_label_landing_after_its_order_was_canceled_is_canceled() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 1).await;
    let engine = h.spawn();
    // given: an order canceled and compensated before any label was bought
    let order_id = h.place_order(&[("TEE", 1)], None).await;
    h.eventually(20, "the stock held", || async {
        h.order(order_id).await.stock_reserved()
    })
    .await;
    h.order_command(order_id, h.customer_cancel()).await;
    h.eventually(20, "the cancel compensated", || h.settled())
        .await;

    // when: a previous leader finishing the fulfilment late records a label for it
    let shipment_id = h.record_label(order_id).await;

    // then: the label goes at once, so nobody ships the canceled order or pays for its label
    h.eventually(20, "the late label canceled", || async {
        h.load::<commerce_aggregates::shipment::Shipment>(shipment_id.to_string())
            .await
            .status()
            == Some(commerce_aggregates::shipment::ShipmentStatus::Canceled)
    })
    .await;
    engine.abort();
    assert_eq!(h.carrier.voided(), ["SBXLATE"]);
}

#[tokio::test]
async fn rewinding_the_cursor_reruns_every_reaction_and_changes_nothing() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.product("LAMP", PRICE);
    h.stock("TEE", 10).await;
    h.stock("LAMP", 10).await;
    let gateway = Arc::new(RecordingGateway::default());
    let engine = h.spawn_with(gateway.clone(), 3);

    // given: every flow run to its end
    let shipped = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    let declined = h.place_order(&[("TEE", 1)], Some("pm_card_declined")).await;
    let canceled = h.place_order(&[("TEE", 2)], Some("pm_card_ok")).await;
    let waiting = h
        .place_order(&[("TEE", 1)], Some("pm_card_requires_action"))
        .await;
    let closed = h
        .create_campaign("LAMP", 2, 2, chrono::Duration::hours(1))
        .await;
    let failed = h
        .create_campaign("LAMP", 2, 3, chrono::Duration::hours(1))
        .await;
    for customer in ["a", "b"] {
        h.join_as(closed, customer, "pm_card_ok")
            .await
            .expect("joined");
    }
    h.join_as(failed, "c", "pm_card_ok").await.expect("joined");
    h.eventually(60, "the checkouts done", || async {
        h.order(shipped).await.status() == Some(OrderStatus::Confirmed)
            && h.order(canceled).await.status() == Some(OrderStatus::Confirmed)
            && h.order(declined).await.status() == Some(OrderStatus::Canceled)
            && h.order(waiting).await.status() == Some(OrderStatus::AwaitingPayment)
            && h.count_events("order.label_attached").await == 4
    })
    .await;
    h.order_command(canceled, h.customer_cancel()).await;
    h.order_command(waiting, h.customer_cancel()).await;
    let fulfillment_id = fulfillment_of(&h, shipped).await;
    h.order_command(
        shipped,
        OrderCommand::MarkShipped {
            fulfillment_id,
            at: h.now(),
        },
    )
    .await;
    h.order_command(
        shipped,
        OrderCommand::MarkDelivered {
            fulfillment_id,
            at: h.now(),
        },
    )
    .await;
    h.order_command(shipped, OrderCommand::Complete { at: h.now() })
        .await;
    h.advance(chrono::Duration::hours(2));
    h.eventually(60, "everything settled", || async {
        h.campaign(failed).await.status() == CampaignStatus::Failed && h.settled().await
    })
    .await;
    engine.abort();
    let _ = engine.await;
    let events_before = h.count_all_events().await;
    let money_before = gateway.net_total();
    assert_eq!(
        h.order(shipped).await.status(),
        Some(OrderStatus::Completed)
    );
    assert_eq!(h.count_events("order.payment_failed").await, 3);

    // when: every reaction runs again, on the state that came after it
    h.rewind_cursor().await;
    let engine = h.spawn_with(gateway.clone(), 3);
    h.eventually(120, "the re-run done", || h.settled()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.abort();

    // then: nothing new happened, to the aggregates or at the provider
    let events_after = h.count_all_events().await;
    if events_after != events_before {
        eprintln!("{}", h.trail().await);
    }
    assert_eq!(events_after, events_before, "a re-run appended events");
    assert_eq!(gateway.net_total(), money_before);
    assert_eq!(
        h.order(shipped).await.status(),
        Some(OrderStatus::Completed)
    );
    assert_eq!(h.net_paid(shipped).await, PRICE);
    assert_eq!(h.net_paid(canceled).await, 0);
    assert_eq!(h.net_paid(declined).await, 0);
    // 1 completed + 2 campaign orders captured; the canceled order refunded.
    assert_eq!(gateway.net_total(), PRICE + 2 * (PRICE / 2));
}

/// A cheap deterministic generator for kill points (no extra dependency).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The seed of a randomized test: `WORKFLOWS_SEED` replays one, else a fresh one (printed).
fn seed() -> u64 {
    let seed = std::env::var("WORKFLOWS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos());
            u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(1) | 1
        });
    eprintln!("WORKFLOWS_SEED={seed}");
    seed
}

async fn count_for(h: &Harness, event_type: &str, campaign_id: CampaignId) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = $1 AND aggregate_id LIKE '%' || $2",
    )
    .bind(event_type)
    .bind(campaign_id.to_string())
    .fetch_one(h.db.pool())
    .await
    .expect("count")
}

#[tokio::test]
async fn killed_at_random_points_of_campaign_joins_and_settlement_every_participant_ends_ordered_or_repaid()
 {
    let h = Harness::new().await;
    let mut rng = seed();
    h.product("LAMP", PRICE);
    const STOCK: u64 = 7;
    h.stock("LAMP", STOCK).await;
    let gateway = Arc::new(RecordingGateway::default());
    // One campaign that can succeed, one that cannot reach its minimum.
    let hopeful = h
        .create_campaign("LAMP", 2, 5, chrono::Duration::hours(1))
        .await;
    let doomed = h
        .create_campaign("LAMP", 4, 4, chrono::Duration::hours(1))
        .await;
    let methods = ["pm_card_ok", "pm_card_ok", "pm_card_declined"];
    let mut participants = Vec::new();
    for i in 0..7 {
        // More joiners than places and than stock: CMP-2 and CMP-9 are exercised.
        let method = methods[usize::try_from(next_random(&mut rng) % 3).expect("small")];
        if let Some(p) = h.join_as(hopeful, &format!("h{i}"), method).await {
            participants.push(p);
        }
    }
    for i in 0..4 {
        let method = if i == 0 {
            "pm_card_declined"
        } else {
            "pm_card_ok"
        };
        if let Some(p) = h.join_as(doomed, &format!("d{i}"), method).await {
            participants.push(p);
        }
    }
    for round in 0..8 {
        let engine = h.spawn_with(gateway.clone(), 1);
        tokio::time::sleep(Duration::from_millis(20 + next_random(&mut rng) % 300)).await;
        if round == 2 {
            // Someone leaves mid-flight, wherever their join is.
            let pick =
                next_random(&mut rng) % u64::try_from(participants.len().min(5)).expect("small");
            let who = participants[usize::try_from(pick).expect("small")];
            h.leave(hopeful, who).await;
        }
        if round == 4 {
            // The end time passes while engines keep dying: settlement is interrupted too.
            h.advance(chrono::Duration::hours(2));
        }
        engine.abort();
        let _ = engine.await;
    }
    let engine = h.spawn_with(gateway.clone(), 1);
    h.eventually(120, "both campaigns ended and settled", || async {
        let ended = |s: CampaignStatus| {
            matches!(
                s,
                CampaignStatus::Closed | CampaignStatus::Failed | CampaignStatus::Cancelled
            )
        };
        for campaign_id in [hopeful, doomed] {
            let campaign = h.campaign(campaign_id).await;
            if !ended(campaign.status()) {
                return false;
            }
            if !h.participants_settled(campaign_id).await {
                return false;
            }
        }
        h.settled().await
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.abort();

    let mut ordered = 0_i64;
    for campaign_id in [hopeful, doomed] {
        let campaign = h.campaign(campaign_id).await;
        let config = campaign.config().expect("config").clone();
        // CMP-2, CMP-5, CMP-6
        let placed = campaign
            .participants()
            .iter()
            .filter(|p| p.state().occupies_place())
            .count();
        assert!(placed <= config.max_participants as usize, "CMP-2");
        assert!(count_for(&h, "campaign.successful", campaign_id).await <= 1);
        let outcomes = count_for(&h, "campaign.closed", campaign_id).await
            + count_for(&h, "campaign.failed", campaign_id).await
            + count_for(&h, "campaign.cancelled", campaign_id).await;
        assert_eq!(outcomes, 1, "CMP-6: exactly one outcome");
        for p in campaign.participants() {
            let net = match p.payment_id() {
                Some(id) => {
                    let payment = h.payment(id).await;
                    payment.captured().map_or(0, |m| m.amount_minor())
                        - payment.refunded().map_or(0, |m| m.amount_minor())
                }
                None => 0,
            };
            if p.state() == ParticipantState::Ordered {
                ordered += 1;
                assert_eq!(campaign.status(), CampaignStatus::Closed);
                let order = h.order(p.order_id().expect("order")).await;
                assert_eq!(order.status(), Some(OrderStatus::Confirmed));
                assert_eq!(net, PRICE / 2, "PAY-4: one capture per ordered participant");
            } else {
                assert_eq!(
                    net, 0,
                    "CMP-7: a participant without an order keeps no money"
                );
                if let Some(id) = p.payment_id() {
                    let status = h.payment(id).await.status();
                    assert!(
                        status.is_none_or(
                            |s| s != PaymentStatus::Authorized && s != PaymentStatus::Captured
                        ),
                        "a hold left on a participant without an order: {status:?}"
                    );
                }
            }
        }
        if campaign.status() == CampaignStatus::Failed {
            assert_eq!(
                campaign
                    .participants()
                    .iter()
                    .filter(|p| p.state().occupies_place())
                    .count(),
                0,
                "CMP-7"
            );
        }
    }
    let lamp = h.stock_of("LAMP").await;
    if lamp.reserved() != 0 || gateway.net_total() != ordered * (PRICE / 2) {
        eprintln!("{}", h.trail().await);
    }
    assert_eq!(lamp.reserved(), 0, "no leaked reservation");
    assert_eq!(
        i64::try_from(lamp.on_hand()).expect("small"),
        i64::try_from(STOCK).expect("small") - ordered,
        "stock committed once per order"
    );
    assert_eq!(
        gateway.net_total(),
        ordered * (PRICE / 2),
        "the provider holds exactly the ordered participants' money"
    );
    assert!(
        gateway.out_of_bounds(PRICE / 2).is_empty(),
        "PAY-4 at the provider"
    );
    assert_eq!(
        h.campaign(doomed).await.status(),
        CampaignStatus::Failed,
        "a declined participant keeps the doomed campaign short"
    );
}

#[tokio::test]
async fn a_reservation_deadline_between_confirmation_and_fulfilment_commits_the_stock() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 3).await;
    let engine = h.spawn();
    let order_id = h
        .place_order(&[("TEE", 1)], Some("pm_card_requires_action"))
        .await;
    h.eventually(30, "the payment waiting for action", || async {
        h.order(order_id).await.payment_in_flight().is_some() && h.settled().await
    })
    .await;
    engine.abort();
    let _ = engine.await;
    // given: while the engine is down the customer completes the payment and the order is
    // confirmed; an open transaction holds the log's horizon, so the engine that comes back
    // after the reservation's deadline sees that deadline before the confirmation's events
    let mut horizon = h.db.pool().begin().await.expect("begin");
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *horizon)
        .await
        .expect("xid");
    let payment_id = h.order(order_id).await.payment_ids()[0];
    h.payments
        .execute(
            commerce_eventstore::StreamId::new(common::TENANT, payment_id.to_string())
                .expect("stream"),
            commerce_aggregates::payment::PaymentCommand::ApplyProviderEvent(
                commerce_aggregates::payment::ProviderEvent {
                    provider_event_id: "evt_ok".to_owned(),
                    kind: commerce_aggregates::payment::ProviderEventKind::Succeeded,
                    amount: None,
                    provider_ref: None,
                    at: chrono::Utc::now(),
                },
            ),
            commerce_eventstore::CommandContext::new(commerce_eventstore::EventMetadata::new(
                common::TENANT,
                "psp",
            )),
        )
        .await
        .expect("webhook");
    h.order_command(
        order_id,
        OrderCommand::Confirm {
            payment_id,
            covered: commerce_domain::Money::new(PRICE, common::eur()),
            at: h.now(),
        },
    )
    .await;
    h.advance(chrono::Duration::hours(10));

    // when
    let engine = h.spawn();
    h.eventually(60, "the due stock committed", || async {
        h.stock_of("TEE").await.on_hand() == 2
    })
    .await;
    horizon.rollback().await.expect("rollback");

    // then: the paid order ships with its stock, which was committed, not expired (ORD-5)
    h.eventually(60, "the order labelled", || async {
        h.count_events("order.label_attached").await == 1 && h.settled().await
    })
    .await;
    engine.abort();
    assert_eq!(
        h.order(order_id).await.status(),
        Some(OrderStatus::Confirmed)
    );
    assert_eq!(h.count_events("inventory.reservation_expired").await, 0);
    let tee = h.stock_of("TEE").await;
    assert_eq!((tee.on_hand(), tee.reserved()), (2, 0));
    assert_eq!(h.net_paid(order_id).await, PRICE);
}

#[tokio::test]
async fn engines_aborted_during_start_up_never_block_the_next_one() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 1).await;
    let order_id = h.place_order(&[("TEE", 1)], Some("pm_card_ok")).await;
    // given: engines aborted at every point of their first milliseconds (migration included)
    for delay in 0..30 {
        let engine = h.spawn();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        engine.abort();
        let _ = engine.await;
    }
    // when
    let engine = h.spawn();
    // then: the next one leads and works
    h.eventually(60, "the order confirmed", || async {
        h.order(order_id).await.status() == Some(OrderStatus::Confirmed)
    })
    .await;
    engine.abort();
}

/// RELIABILITY finding 9: bursts of orders placed by many writers at once while the engine
/// tails the log. Every `order.created` must get its reaction (its expiry deadline is the
/// reaction's first act), none may be passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_order_placed_in_concurrent_bursts_gets_its_reaction() {
    let h = Arc::new(Harness::new().await);
    for sku in ["TEE", "MUG", "CAP"] {
        h.product(sku, PRICE);
        h.stock(sku, 10_000).await;
    }
    let engine = h.spawn();
    // given: 16 writers placing orders in bursts, a quarter canceled at once
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..16_u32 {
        let h = Arc::clone(&h);
        writers.spawn(async move {
            for n in 0..20_u32 {
                let sku = ["TEE", "MUG", "CAP"][((writer + n) % 3) as usize];
                let order_id = h.place_order(&[(sku, 1)], Some("pm_card_ok")).await;
                if (writer + n) % 4 == 0 {
                    h.try_order_command(order_id, h.customer_cancel()).await;
                }
                if n % 5 == 4 {
                    tokio::time::sleep(Duration::from_millis(u64::from(writer % 4) * 20)).await;
                }
            }
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.expect("writer");
    }

    // when
    h.eventually(120, "the engine settled", || h.settled())
        .await;
    engine.abort();

    // then: every order has its expiry deadline
    let unhandled: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT e.aggregate_id, e.position, e.transaction_id::text FROM events e \
         WHERE e.event_type = 'order.created' AND NOT EXISTS ( \
           SELECT 1 FROM deadlines d WHERE d.kind = 'order_expiry' \
             AND d.aggregate_key = split_part(e.aggregate_id, '/', 2)) \
         ORDER BY e.transaction_id, e.position",
    )
    .fetch_all(h.db.pool())
    .await
    .expect("unhandled orders");
    assert!(
        unhandled.is_empty(),
        "{} orders passed over: {unhandled:?}",
        unhandled.len()
    );
    assert_eq!(h.count_events("order.created").await, 320);
}

/// RELIABILITY finding 9, its cause: on a young cluster the transaction ids pass 999 → 1000
/// (and 9999 → 10000) while the engine runs. The log must still be read in numeric
/// `(transaction_id, position)` order: sorted as text, "1000"…"1199" fill a batch before
/// "900"…"999", the cursor jumps past the latter and their reactions never run.
#[tokio::test]
async fn events_whose_transaction_ids_cross_a_power_of_ten_are_all_handled() {
    let h = Harness::new().await;
    h.product("TEE", PRICE);
    h.stock("TEE", 10_000).await;
    // given: 300 orders, stored before the engine runs
    for _ in 0..300 {
        h.place_order(&[("TEE", 1)], None).await;
    }
    // whose transaction ids are renumbered 900, 901, … in log order, as a young cluster's are
    // (the append-only guard is lifted for the renumbering only; all stay below the horizon)
    let pool = h.db.pool();
    for statement in [
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "UPDATE events e SET transaction_id = (899 + r.rank)::text::xid8 \
         FROM (SELECT position, row_number() OVER (ORDER BY events.transaction_id, \
               events.position) AS rank FROM events) r \
         WHERE e.position = r.position",
        "ALTER TABLE events ENABLE TRIGGER events_append_only",
    ] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .expect("renumbered");
    }

    // when
    let engine = h.spawn();
    h.eventually(60, "the engine settled", || h.settled()).await;
    engine.abort();

    // then: every order got its reaction (its expiry deadline is the reaction's first act)
    let unhandled: Vec<(i64, String)> = sqlx::query_as(
        "SELECT e.position, e.transaction_id::text FROM events e \
         WHERE e.event_type = 'order.created' AND NOT EXISTS ( \
           SELECT 1 FROM deadlines d WHERE d.kind = 'order_expiry' \
             AND d.aggregate_key = split_part(e.aggregate_id, '/', 2)) \
         ORDER BY e.transaction_id, e.position",
    )
    .fetch_all(pool)
    .await
    .expect("unhandled orders");
    assert!(
        unhandled.is_empty(),
        "{} orders passed over: {unhandled:?}",
        unhandled.len()
    );
    assert_eq!(h.count_events("order.stock_reserved").await, 300);
}

/// Money a provider took for a payment the engine had closed (recorded by the webhook route)
/// is given back at the provider, once, and its record is marked settled; a hold is voided.
/// A provider that does not answer the refund is asked again after a pause.
#[tokio::test]
async fn money_a_provider_took_for_a_closed_payment_is_given_back_once() {
    let h = Harness::new().await;
    let gateway = Arc::new(RecordingGateway::default());
    gateway.provider_took("customer-finished-3ds", "sandbox_3ds_1", 1_000);
    gateway.refund_outages.store(1, Ordering::SeqCst);
    let payment_id = commerce_domain::PaymentId::new();
    for (provider_event_id, provider_ref, captured) in [
        (
            "evt_late_capture",
            "sandbox_3ds_1",
            Some(Money::new(1_000, eur())),
        ),
        ("evt_late_hold", "sandbox_3ds_2", None),
    ] {
        orphans::record(
            h.db.pool(),
            &OrphanedFunds {
                tenant: TENANT.to_owned(),
                provider_event_id: provider_event_id.to_owned(),
                payment_id,
                provider_ref: provider_ref.to_owned(),
                captured,
                currency: eur(),
            },
        )
        .await
        .expect("recorded");
    }

    let engine = h.spawn_with(gateway.clone(), 1);
    h.eventually(20, "both given back", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM provider_orphans WHERE settled_at IS NULL",
        )
        .fetch_one(h.db.pool())
        .await
        .expect("orphans")
            == 0
    })
    .await;
    // Polls after the settlement ask the provider for nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.abort();

    assert_eq!(gateway.net_total(), 0);
    let attempts: Vec<(i32, Option<String>)> = sqlx::query_as(
        "SELECT attempts, last_error FROM provider_orphans ORDER BY provider_event_id",
    )
    .fetch_all(h.db.pool())
    .await
    .expect("attempts");
    // The capture's refund failed once, then went through; the hold was voided at once.
    assert_eq!(attempts, [(2, None), (1, None)]);
}
