//! Given/when/then tests of every inventory command and every rejection.

use chrono::{DateTime, Duration, Utc};
use commerce_contracts::ReservationHolder;
use commerce_contracts::events::*;
use commerce_domain::{LocationId, Quantity, ReservationId, Sku};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::CommandError;
use crate::testkit::{at_minute as t, fold, q};

type Given = TestFramework<Inventory>;

fn item() -> StockItem {
    StockItem::new(
        Sku::new("TEE-RED").expect("valid sku"),
        LocationId::default_location(),
    )
}

fn rid(n: u128) -> ReservationId {
    ReservationId::from_uuid(Uuid::from_u128(n))
}

fn holder() -> ReservationHolder {
    ReservationHolder::Order(Uuid::from_u128(99))
}

fn received(quantity: u64, on_hand_after: u64) -> InventoryEvent {
    InventoryEvent::Received(InventoryReceived {
        sku: "TEE-RED".into(),
        location: "default".into(),
        quantity,
        on_hand_after,
        at: t(0),
    })
}

fn policy(safety_threshold: u64, backorder_limit: u64) -> InventoryEvent {
    InventoryEvent::PolicyChanged(InventoryPolicyChanged {
        sku: "TEE-RED".into(),
        location: "default".into(),
        safety_threshold,
        backorder_limit,
        at: t(0),
    })
}

fn reserved(id: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::Reserved(InventoryReserved {
        reservation_id: rid(id).as_uuid(),
        sku: "TEE-RED".into(),
        location: "default".into(),
        quantity,
        holder: holder(),
        expires_at: t(15),
        at: t(0),
    })
}

fn reserve(id: u128, lines: &[u32]) -> InventoryCommand {
    InventoryCommand::Reserve {
        item: item(),
        reservation_id: rid(id),
        holder: holder(),
        lines: lines.iter().map(|n| q(*n)).collect(),
        expires_at: t(15),
        at: t(0),
    }
}

fn released(id: u128, quantity: u32) -> InventoryEvent {
    InventoryEvent::Released(InventoryReleased {
        reservation_id: rid(id).as_uuid(),
        quantity,
        reason: "order canceled".into(),
        at: t(1),
    })
}

fn committed(id: u128, quantity: u32, remainder: u32, on_hand_after: u64) -> InventoryEvent {
    InventoryEvent::Committed(InventoryCommitted {
        reservation_id: rid(id).as_uuid(),
        quantity,
        released_remainder: remainder,
        on_hand_after,
        at: t(2),
    })
}

fn expired(id: u128, quantity: u32, now: DateTime<Utc>) -> InventoryEvent {
    InventoryEvent::ReservationExpired(InventoryReservationExpired {
        reservation_id: rid(id).as_uuid(),
        quantity,
        at: now,
    })
}

fn conflict(action: &str, state: &str) -> CommandError {
    CommandError::invalid_state(action, state)
}

// --- SetStock ---------------------------------------------------------------------------------

#[test]
fn set_stock_records_the_difference_as_an_adjustment() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(InventoryCommand::SetStock {
            item: item(),
            on_hand: 4,
            reason: "stock count".into(),
            at: t(1),
        })
        .then_expect_events(vec![InventoryEvent::Adjusted(InventoryAdjusted {
            sku: "TEE-RED".into(),
            location: "default".into(),
            delta: -6,
            on_hand_after: 4,
            reason: "stock count".into(),
            at: t(1),
        })]);
}

#[test]
fn set_stock_on_a_new_stream_starts_it() {
    Given::with(())
        .given_no_previous_events()
        .when(InventoryCommand::SetStock {
            item: item(),
            on_hand: 7,
            reason: "initial".into(),
            at: t(0),
        })
        .then_expect_events(vec![InventoryEvent::Adjusted(InventoryAdjusted {
            sku: "TEE-RED".into(),
            location: "default".into(),
            delta: 7,
            on_hand_after: 7,
            reason: "initial".into(),
            at: t(0),
        })]);
}

#[test]
fn set_stock_to_the_current_count_appends_nothing() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(InventoryCommand::SetStock {
            item: item(),
            on_hand: 10,
            reason: "put".into(),
            at: t(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn set_stock_below_the_reserved_units_is_refused() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 6)])
        .when(InventoryCommand::SetStock {
            item: item(),
            on_hand: 5,
            reason: "count".into(),
            at: t(1),
        })
        .then_expect_error(conflict(
            "set on-hand stock to 5",
            "6 units are reserved (safety threshold 0, back-order limit 0)",
        ));
}

#[test]
fn set_stock_without_a_reason_is_refused() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(InventoryCommand::SetStock {
            item: item(),
            on_hand: 5,
            reason: " ".into(),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid("reason", "a reason is required"));
}

#[test]
fn a_command_for_another_sku_is_refused() {
    let other = StockItem::new(
        Sku::new("TEE-BLUE").expect("valid"),
        LocationId::default_location(),
    );
    Given::with(())
        .given(vec![received(10, 10)])
        .when(InventoryCommand::ReceiveStock {
            item: other,
            quantity: q(1),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "sku",
            "this stock is TEE-RED/default, not TEE-BLUE/default",
        ));
}

// --- ReceiveStock / AdjustStock / Restock ----------------------------------------------------

#[test]
fn receive_stock_adds_to_on_hand() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(InventoryCommand::ReceiveStock {
            item: item(),
            quantity: q(5),
            at: t(0),
        })
        .then_expect_events(vec![received(5, 15)]);
}

#[test]
fn receive_stock_that_would_overflow_is_refused() {
    Given::with(())
        .given(vec![received(u64::MAX, u64::MAX)])
        .when(InventoryCommand::ReceiveStock {
            item: item(),
            quantity: q(1),
            at: t(0),
        })
        .then_expect_error(CommandError::invalid("quantity", "on-hand stock overflows"));
}

#[test]
fn adjust_stock_moves_on_hand_by_delta() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(InventoryCommand::AdjustStock {
            item: item(),
            delta: -3,
            reason: "damaged".into(),
            at: t(1),
        })
        .then_expect_events(vec![InventoryEvent::Adjusted(InventoryAdjusted {
            sku: "TEE-RED".into(),
            location: "default".into(),
            delta: -3,
            on_hand_after: 7,
            reason: "damaged".into(),
            at: t(1),
        })]);
}

#[test]
fn adjust_stock_below_zero_is_refused() {
    Given::with(())
        .given(vec![received(2, 2)])
        .when(InventoryCommand::AdjustStock {
            item: item(),
            delta: -3,
            reason: "lost".into(),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "delta",
            "only 2 units on hand; stock cannot go negative",
        ));
}

#[test]
fn adjust_stock_by_zero_or_without_reason_is_refused() {
    Given::with(())
        .given(vec![received(2, 2)])
        .when(InventoryCommand::AdjustStock {
            item: item(),
            delta: 0,
            reason: "x".into(),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid("delta", "must not be zero"));
    Given::with(())
        .given(vec![received(2, 2)])
        .when(InventoryCommand::AdjustStock {
            item: item(),
            delta: 1,
            reason: String::new(),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid("reason", "a reason is required"));
}

#[test]
fn adjust_stock_under_the_reserved_units_is_refused() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 8)])
        .when(InventoryCommand::AdjustStock {
            item: item(),
            delta: -3,
            reason: "lost".into(),
            at: t(1),
        })
        .then_expect_error(conflict(
            "adjust on-hand stock by -3",
            "8 units are reserved (safety threshold 0, back-order limit 0)",
        ));
}

#[test]
fn restock_puts_returned_goods_back() {
    let return_id = Uuid::from_u128(7);
    Given::with(())
        .given(vec![received(1, 1)])
        .when(InventoryCommand::Restock {
            item: item(),
            quantity: q(2),
            return_id: Some(return_id),
            at: t(3),
        })
        .then_expect_events(vec![InventoryEvent::Restocked(InventoryRestocked {
            sku: "TEE-RED".into(),
            location: "default".into(),
            quantity: 2,
            return_id: Some(return_id),
            on_hand_after: 3,
            at: t(3),
        })]);
}

// --- SetPolicy --------------------------------------------------------------------------------

#[test]
fn set_policy_records_threshold_and_backorder_limit() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(InventoryCommand::SetPolicy {
            item: item(),
            safety_threshold: 2,
            backorder_limit: 5,
            at: t(0),
        })
        .then_expect_events(vec![policy(2, 5)]);
}

#[test]
fn set_policy_unchanged_appends_nothing() {
    Given::with(())
        .given(vec![policy(2, 5)])
        .when(InventoryCommand::SetPolicy {
            item: item(),
            safety_threshold: 2,
            backorder_limit: 5,
            at: t(0),
        })
        .then_expect_events(vec![]);
}

#[test]
fn set_policy_that_would_uncover_reservations_is_refused() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 9)])
        .when(InventoryCommand::SetPolicy {
            item: item(),
            safety_threshold: 2,
            backorder_limit: 0,
            at: t(0),
        })
        .then_expect_error(conflict(
            "set safety threshold 2 and back-order limit 0",
            "9 units are reserved (safety threshold 0, back-order limit 0)",
        ));
}

// --- Reserve ----------------------------------------------------------------------------------

#[test]
fn reserve_within_available_stock_reserves_the_summed_lines() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(reserve(1, &[3, 4]))
        .then_expect_events(vec![reserved(1, 7)]);
}

#[test]
fn reserve_again_under_a_used_id_is_a_no_op_for_the_same_quantity_and_refused_for_another() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 7)])
        .when(reserve(1, &[3, 4]))
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 7)])
        .when(reserve(1, &[2]))
        .then_expect_error(CommandError::invalid(
            "reservation_id",
            "already names a reservation of 7",
        ));
}

#[test]
fn reserve_beyond_available_stock_is_answered_with_insufficient() {
    // INV-8: each line fits on its own (6 ≤ 10), their sum does not.
    Given::with(())
        .given(vec![received(10, 10)])
        .when(reserve(1, &[6, 6]))
        .then_expect_events(vec![InventoryEvent::Insufficient(InventoryInsufficient {
            reservation_id: rid(1).as_uuid(),
            sku: "TEE-RED".into(),
            location: "default".into(),
            requested: 12,
            available: 10,
            holder: holder(),
            at: t(0),
        })]);
}

#[test]
fn reserve_on_a_stream_with_no_stock_is_insufficient() {
    let events = Given::with(())
        .given_no_previous_events()
        .when(reserve(1, &[1]))
        .inspect_result()
        .expect("an event, not a rejection");
    assert!(matches!(
        events.as_slice(),
        [InventoryEvent::Insufficient(_)]
    ));
}

#[test]
fn reserve_respects_the_safety_threshold_and_the_backorder_limit() {
    // 10 on hand, 2 kept back, 3 may be back-ordered: 11 fit, 12 do not.
    Given::with(())
        .given(vec![received(10, 10), policy(2, 3)])
        .when(reserve(1, &[11]))
        .then_expect_events(vec![InventoryEvent::Reserved(InventoryReserved {
            quantity: 11,
            ..reserved_payload(1)
        })]);
    let events = Given::with(())
        .given(vec![received(10, 10), policy(2, 3)])
        .when(reserve(1, &[12]))
        .inspect_result()
        .expect("an event");
    assert!(matches!(
        events.as_slice(),
        [InventoryEvent::Insufficient(InventoryInsufficient {
            available: 8,
            ..
        })]
    ));
}

fn reserved_payload(id: u128) -> InventoryReserved {
    match reserved(id, 1) {
        InventoryEvent::Reserved(payload) => payload,
        _ => unreachable!("reserved() builds a Reserved event"),
    }
}

#[test]
fn reserve_with_a_seen_reservation_id_appends_nothing() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 2)])
        .when(reserve(1, &[2]))
        .then_expect_events(vec![]);
    let declined = InventoryEvent::Insufficient(InventoryInsufficient {
        reservation_id: rid(2).as_uuid(),
        sku: "TEE-RED".into(),
        location: "default".into(),
        requested: 50,
        available: 10,
        holder: holder(),
        at: t(0),
    });
    Given::with(())
        .given(vec![received(10, 10), declined])
        .when(reserve(2, &[1]))
        .then_expect_events(vec![]);
}

#[test]
fn reserve_without_lines_or_with_an_oversized_sum_is_refused() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(reserve(1, &[]))
        .then_expect_error(CommandError::invalid(
            "lines",
            "at least one line is required",
        ));
    Given::with(())
        .given(vec![received(10, 10)])
        .when(reserve(1, &[Quantity::MAX, 1]))
        .then_expect_error(CommandError::invalid(
            "lines",
            "the summed quantity exceeds 1000000",
        ));
}

#[test]
fn reserve_with_a_past_or_too_distant_expiry_is_refused() {
    let with_expiry = |expires_at| InventoryCommand::Reserve {
        item: item(),
        reservation_id: rid(1),
        holder: holder(),
        lines: vec![q(1)],
        expires_at,
        at: t(0),
    };
    Given::with(())
        .given(vec![received(10, 10)])
        .when(with_expiry(t(0)))
        .then_expect_error(CommandError::invalid("expires_at", "must be in the future"));
    Given::with(())
        .given(vec![received(10, 10)])
        .when(with_expiry(
            t(0) + MAX_RESERVATION_TTL + Duration::minutes(1),
        ))
        .then_expect_error(CommandError::invalid(
            "expires_at",
            "a reservation is held at most 31 days",
        ));
}

// --- ExtendReservation ------------------------------------------------------------------------

fn extend(id: u128, until: DateTime<Utc>, at: DateTime<Utc>) -> InventoryCommand {
    InventoryCommand::ExtendReservation {
        reservation_id: rid(id),
        until,
        at,
    }
}

#[test]
fn extend_moves_the_expiry_of_an_active_reservation() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 2)])
        .when(extend(1, t(60), t(5)))
        .then_expect_events(vec![InventoryEvent::ReservationExtended(
            InventoryReservationExtended {
                reservation_id: rid(1).as_uuid(),
                expires_at: t(60),
                at: t(5),
            },
        )]);
}

#[test]
fn extend_to_the_same_expiry_appends_nothing() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 2)])
        .when(extend(1, t(15), t(5)))
        .then_expect_events(vec![]);
}

#[test]
fn extend_rejections() {
    let base = || vec![received(10, 10), reserved(1, 2)];
    Given::with(())
        .given(base())
        .when(extend(2, t(60), t(5)))
        .then_expect_error(CommandError::NotFound(format!("reservation {}", rid(2))));
    Given::with(())
        .given(base())
        .when(extend(1, t(60), t(15)))
        .then_expect_error(conflict("extend reservation", "expired"));
    Given::with(())
        .given(base())
        .when(extend(1, t(10), t(5)))
        .then_expect_error(CommandError::invalid(
            "until",
            "must be later than the current expiry",
        ));
    Given::with(())
        .given(base())
        .when(extend(
            1,
            t(5) + MAX_RESERVATION_TTL + Duration::minutes(1),
            t(5),
        ))
        .then_expect_error(CommandError::invalid(
            "until",
            "a reservation is held at most 31 days",
        ));
    let mut released_first = base();
    released_first.push(released(1, 2));
    Given::with(())
        .given(released_first)
        .when(extend(1, t(60), t(5)))
        .then_expect_error(conflict("extend reservation", "released"));
}

// --- Release ----------------------------------------------------------------------------------

fn release(id: u128) -> InventoryCommand {
    InventoryCommand::Release {
        reservation_id: rid(id),
        reason: "order canceled".into(),
        at: t(1),
    }
}

#[test]
fn release_gives_an_active_reservation_back() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 2)])
        .when(release(1))
        .then_expect_events(vec![released(1, 2)]);
}

#[test]
fn release_repeated_or_after_expiry_appends_nothing() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 2), released(1, 2)])
        .when(release(1))
        .then_expect_events(vec![]);
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 2), expired(1, 2, t(15))])
        .when(release(1))
        .then_expect_events(vec![]);
}

#[test]
fn release_rejections() {
    Given::with(())
        .given(vec![received(10, 10)])
        .when(release(1))
        .then_expect_error(CommandError::NotFound(format!("reservation {}", rid(1))));
    Given::with(())
        .given(vec![
            received(10, 10),
            reserved(1, 2),
            committed(1, 2, 0, 8),
        ])
        .when(release(1))
        .then_expect_error(conflict("release reservation", "committed"));
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 2)])
        .when(InventoryCommand::Release {
            reservation_id: rid(1),
            reason: String::new(),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid("reason", "a reason is required"));
}

// --- ExpireReservations -----------------------------------------------------------------------

#[test]
fn expire_reservations_expires_each_due_reservation_once() {
    let later = InventoryEvent::Reserved(InventoryReserved {
        expires_at: t(30),
        ..reserved_payload(2)
    });
    Given::with(())
        .given(vec![
            received(10, 10),
            reserved(1, 2),
            later,
            reserved(3, 1),
        ])
        .when(InventoryCommand::ExpireReservations { now: t(20) })
        .then_expect_events(vec![expired(1, 2, t(20)), expired(3, 1, t(20))]);
}

#[test]
fn expire_reservations_with_nothing_due_appends_nothing() {
    Given::with(())
        .given(vec![
            received(10, 10),
            reserved(1, 2),
            expired(1, 2, t(15)),
            reserved(2, 1),
        ])
        .when(InventoryCommand::ExpireReservations { now: t(14) })
        .then_expect_events(vec![]);
}

// --- Commit -----------------------------------------------------------------------------------

fn commit(id: u128, quantity: u32) -> InventoryCommand {
    InventoryCommand::Commit {
        reservation_id: rid(id),
        quantity: q(quantity),
        at: t(2),
    }
}

#[test]
fn commit_ships_units_and_releases_the_remainder() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 3)])
        .when(commit(1, 2))
        .then_expect_events(vec![committed(1, 2, 1, 8)]);
}

#[test]
fn commit_repeated_appends_nothing() {
    Given::with(())
        .given(vec![
            received(10, 10),
            reserved(1, 3),
            committed(1, 3, 0, 7),
        ])
        .when(commit(1, 3))
        .then_expect_events(vec![]);
}

#[test]
fn commit_rejections() {
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 3)])
        .when(commit(1, 4))
        .then_expect_error(CommandError::invalid(
            "quantity",
            "only 3 units are reserved",
        ));
    Given::with(())
        .given(vec![received(10, 10)])
        .when(commit(1, 1))
        .then_expect_error(CommandError::NotFound(format!("reservation {}", rid(1))));
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 3), released(1, 3)])
        .when(commit(1, 1))
        .then_expect_error(conflict("commit reservation", "released"));
    Given::with(())
        .given(vec![received(10, 10), reserved(1, 3), expired(1, 3, t(15))])
        .when(commit(1, 1))
        .then_expect_error(conflict("commit reservation", "expired"));
    // Back-ordered: 1 on hand, 3 reserved under a back-order allowance.
    Given::with(())
        .given(vec![received(1, 1), policy(0, 5), reserved(1, 3)])
        .when(commit(1, 3))
        .then_expect_error(conflict("commit 3 units", "1 units on hand (back-ordered)"));
}

// --- Fold and accessors -----------------------------------------------------------------------

#[test]
fn reserved_is_the_sum_of_active_reservations() {
    let inventory: Inventory = fold([
        received(10, 10),
        policy(1, 0),
        reserved(1, 2),
        reserved(2, 3),
        released(1, 2),
        reserved(3, 1),
        committed(3, 1, 0, 9),
    ]);
    assert_eq!(inventory.item(), Some(&item()));
    assert_eq!(inventory.on_hand(), 9);
    assert_eq!(inventory.reserved(), 3);
    assert_eq!(inventory.available(), 5);
    let states: Vec<_> = inventory.reservations().map(Reservation::state).collect();
    assert_eq!(
        states,
        [
            ReservationState::Released,
            ReservationState::Active,
            ReservationState::Committed
        ]
    );
    let first = inventory.reservation(rid(2)).expect("taken");
    assert_eq!(
        (first.quantity(), first.holder(), first.expires_at()),
        (3, holder(), t(15))
    );
}

#[test]
fn stream_key_joins_sku_and_location() {
    assert_eq!(item().stream_key(), "TEE-RED:default");
}
