//! Property tests of the inventory invariants INV-1…9 (§6 of the commerce anchors): random
//! command sequences run through `handle`, and after every step the folded state is checked
//! against a model kept from the events alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commerce_contracts::ReservationHolder;
use commerce_contracts::events::InventoryEvent;
use commerce_domain::{LocationId, Quantity, ReservationId, Sku};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use proptest::prelude::*;
use uuid::Uuid;

use super::{Inventory, InventoryCommand, ReservationState, StockItem};

#[derive(Debug, Clone)]
enum Op {
    Receive(u32),
    Adjust(i64),
    SetStock(u64),
    SetPolicy(u64, u64),
    Reserve { id: u8, lines: Vec<u32>, ttl: i64 },
    Extend { id: u8, minutes: i64 },
    Release(u8),
    Expire,
    Commit { id: u8, quantity: u32 },
    Restock(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (1..20_u32).prop_map(Op::Receive),
        1 => (-10..10_i64).prop_map(Op::Adjust),
        1 => (0..40_u64).prop_map(Op::SetStock),
        1 => (0..4_u64, 0..6_u64).prop_map(|(s, b)| Op::SetPolicy(s, b)),
        3 => (0..12_u8, prop::collection::vec(1..6_u32, 0..4), 1..30_i64)
            .prop_map(|(id, lines, ttl)| Op::Reserve { id, lines, ttl }),
        1 => (0..12_u8, 1..40_i64).prop_map(|(id, minutes)| Op::Extend { id, minutes }),
        1 => (0..12_u8).prop_map(Op::Release),
        1 => Just(Op::Expire),
        1 => (0..12_u8, 1..6_u32).prop_map(|(id, quantity)| Op::Commit { id, quantity }),
        1 => (1..5_u32).prop_map(Op::Restock),
    ]
}

fn item() -> StockItem {
    StockItem::new(
        Sku::new("SKU-P").expect("valid"),
        LocationId::default_location(),
    )
}

fn rid(id: u8) -> ReservationId {
    ReservationId::from_uuid(Uuid::from_u128(u128::from(id) + 1))
}

fn qty(n: u32) -> Quantity {
    Quantity::new(n).expect("generated in range")
}

fn command(op: &Op, now: DateTime<Utc>) -> InventoryCommand {
    match op.clone() {
        Op::Receive(n) => InventoryCommand::ReceiveStock {
            item: item(),
            quantity: qty(n),
            at: now,
        },
        Op::Adjust(delta) => InventoryCommand::AdjustStock {
            item: item(),
            delta,
            reason: "count".into(),
            at: now,
        },
        Op::SetStock(on_hand) => InventoryCommand::SetStock {
            item: item(),
            on_hand,
            reason: "put".into(),
            at: now,
        },
        Op::SetPolicy(safety_threshold, backorder_limit) => InventoryCommand::SetPolicy {
            item: item(),
            safety_threshold,
            backorder_limit,
            at: now,
        },
        Op::Reserve { id, lines, ttl } => InventoryCommand::Reserve {
            item: item(),
            reservation_id: rid(id),
            holder: ReservationHolder::Order(Uuid::from_u128(u128::from(id))),
            lines: lines.into_iter().map(qty).collect(),
            expires_at: now + Duration::minutes(ttl),
            at: now,
        },
        Op::Extend { id, minutes } => InventoryCommand::ExtendReservation {
            reservation_id: rid(id),
            until: now + Duration::minutes(minutes),
            at: now,
        },
        Op::Release(id) => InventoryCommand::Release {
            reservation_id: rid(id),
            reason: "cancel".into(),
            at: now,
        },
        Op::Expire => InventoryCommand::ExpireReservations { now },
        Op::Commit { id, quantity } => InventoryCommand::Commit {
            reservation_id: rid(id),
            quantity: qty(quantity),
            at: now,
        },
        Op::Restock(n) => InventoryCommand::Restock {
            item: item(),
            quantity: qty(n),
            return_id: None,
            at: now,
        },
    }
}

/// What the events alone say: on-hand by conservation (INV-4) and the reserved units by
/// adding and removing event quantities (INV-2), independent of the aggregate's fold.
#[derive(Default)]
struct Model {
    on_hand: i128,
    reserved: i128,
    /// Reservation quantity and how many times it left `Active`.
    reservations: BTreeMap<Uuid, (u32, u32)>,
}

impl Model {
    fn observe(&mut self, event: &InventoryEvent, before: &Inventory) -> Result<(), TestCaseError> {
        match event {
            InventoryEvent::Received(e) => {
                self.on_hand += i128::from(e.quantity);
                prop_assert_eq!(i128::from(e.on_hand_after), self.on_hand);
            }
            InventoryEvent::Adjusted(e) => {
                self.on_hand += i128::from(e.delta);
                prop_assert_eq!(i128::from(e.on_hand_after), self.on_hand);
            }
            InventoryEvent::Restocked(e) => {
                self.on_hand += i128::from(e.quantity);
                prop_assert_eq!(i128::from(e.on_hand_after), self.on_hand);
            }
            InventoryEvent::Reserved(e) => {
                // INV-3 / INV-8: a positive quantity that fitted the headroom before it.
                prop_assert!(e.quantity > 0);
                let headroom = i128::from(before.on_hand()) + i128::from(before.backorder_limit())
                    - i128::from(before.reserved())
                    - i128::from(before.safety_threshold());
                prop_assert!(i128::from(e.quantity) <= headroom);
                self.reserved += i128::from(e.quantity);
                prop_assert!(
                    self.reservations
                        .insert(e.reservation_id, (e.quantity, 0))
                        .is_none()
                );
            }
            InventoryEvent::Insufficient(e) => {
                let headroom = i128::from(before.on_hand()) + i128::from(before.backorder_limit())
                    - i128::from(before.reserved())
                    - i128::from(before.safety_threshold());
                prop_assert!(i128::from(e.requested) > headroom);
            }
            InventoryEvent::Released(e) => self.leave(e.reservation_id, e.quantity)?,
            InventoryEvent::ReservationExpired(e) => self.leave(e.reservation_id, e.quantity)?,
            InventoryEvent::Committed(e) => {
                // INV-9: committed plus released remainder is exactly the reservation.
                let held = self.reservations.get(&e.reservation_id).map(|r| r.0);
                prop_assert_eq!(held, Some(e.quantity + e.released_remainder));
                self.leave(e.reservation_id, e.quantity + e.released_remainder)?;
                self.on_hand -= i128::from(e.quantity);
                prop_assert_eq!(i128::from(e.on_hand_after), self.on_hand);
            }
            InventoryEvent::PolicyChanged(_) | InventoryEvent::ReservationExtended(_) => {}
        }
        Ok(())
    }

    fn leave(&mut self, id: Uuid, quantity: u32) -> Result<(), TestCaseError> {
        let entry = self.reservations.get_mut(&id);
        prop_assert!(entry.is_some(), "exit of an unknown reservation");
        if let Some((held, exits)) = entry {
            prop_assert_eq!(*held, quantity);
            *exits += 1;
            // INV-5: a single exit.
            prop_assert_eq!(*exits, 1);
        }
        self.reserved -= i128::from(quantity);
        Ok(())
    }
}

fn check_invariants(inventory: &Inventory, model: &Model) -> Result<(), TestCaseError> {
    // INV-1: available never below minus the back-order allowance.
    prop_assert!(
        inventory.available() >= -i64::try_from(inventory.backorder_limit()).unwrap_or(i64::MAX)
    );
    prop_assert!(
        u128::from(inventory.reserved()) + u128::from(inventory.safety_threshold())
            <= u128::from(inventory.on_hand()) + u128::from(inventory.backorder_limit())
    );
    // INV-2: the derived counter equals the model's running sum.
    prop_assert_eq!(i128::from(inventory.reserved()), model.reserved);
    // INV-3 and INV-4.
    prop_assert_eq!(i128::from(inventory.on_hand()), model.on_hand);
    for reservation in inventory.reservations() {
        prop_assert!(reservation.quantity() > 0);
        // INV-9.
        prop_assert!(reservation.committed() <= reservation.quantity());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inventory_invariants_hold_after_every_command(
        ops in prop::collection::vec((op(), 0..4_i64), 1..60)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let mut now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid");
        let mut inventory = Inventory::default();
        let mut model = Model::default();
        for (op, advance) in ops {
            now += Duration::minutes(advance);
            let before = inventory.clone();
            let sink = EventSink::default();
            let result = runtime.block_on(inventory.handle(command(&op, now), &(), &sink));
            let events = runtime.block_on(sink.collect());
            if result.is_err() {
                // A refused command appends nothing and leaves the state untouched.
                prop_assert!(events.is_empty());
                prop_assert_eq!(&inventory, &before);
                continue;
            }
            let mut replayed = before.clone();
            for event in &events {
                model.observe(event, &replayed)?;
                replayed.apply(event.clone());
            }
            // The fold of the appended events is the state the handler left.
            prop_assert_eq!(&replayed, &inventory);
            if let Op::Expire = op {
                // INV-6: nothing active is past its expiry.
                prop_assert!(inventory.active_reservations().all(|r| r.expires_at() > now));
            }
            if let Op::Reserve { id, lines, .. } = &op {
                let seen = before.has_seen(rid(*id));
                // A seen id appends nothing; otherwise exactly one answer (INV-8 summed check above).
                prop_assert_eq!(events.len(), usize::from(!seen && !lines.is_empty()));
            }
            if matches!(op, Op::Release(_) | Op::Commit { .. })
                && let Some(r) = before.reservations().find(|r| match &op {
                    Op::Release(id) | Op::Commit { id, .. } => r.id() == rid(*id),
                    _ => false,
                })
                && r.state() != ReservationState::Active
            {
                // INV-5: repeating an exit appends nothing.
                prop_assert!(events.is_empty());
            }
            check_invariants(&inventory, &model)?;
        }
    }
}
