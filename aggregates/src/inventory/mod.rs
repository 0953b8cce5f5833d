//! Inventory: the stock of one SKU at one location and the reservations held against it
//! (§3.3 of the commerce anchors). One stream per tenant, SKU and location ([`stream_key`]).
//!
//! Layout: this file holds the state and its fold (`apply`); `commands` the commands and every
//! guard; `tests` the given/when/then tests; `proptests` the INV-1…9 property tests.
//!
//! The levels:
//! - `on_hand` is the physical stock, moved only by receipts, adjustments, commits and restocks.
//! - `reserved` is *derived*: the sum of the active reservations (INV-2). There is no counter
//!   that could drift from the rows it summarises.
//! - `available = on_hand − reserved − safety_threshold`; it goes below zero only while
//!   back-ordering, and never below `−backorder_limit` (INV-1). Every command that lowers
//!   `on_hand` or tightens the policy is refused if it would break that bound.

mod commands;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use commerce_contracts::ReservationHolder;
use commerce_contracts::events::InventoryEvent;
use commerce_domain::{LocationId, ReservationId, Sku, StockCount};
use serde::{Deserialize, Serialize};

use crate::guard;

pub use commands::{InventoryCommand, MAX_RESERVATION_TTL};

/// The stream key of the stock of `sku` at `location` (the executor prefixes the tenant).
///
/// `:` cannot occur in a SKU or a location id, so the key is unambiguous.
#[must_use]
pub fn stream_key(sku: &Sku, location: &LocationId) -> String {
    format!("{sku}:{location}")
}

/// Which stock an inventory stream holds. Commands that emit an event naming the SKU carry it,
/// because a cqrs-es handler does not learn its own stream id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StockItem {
    pub sku: Sku,
    pub location: LocationId,
}

impl StockItem {
    #[must_use]
    pub fn new(sku: Sku, location: LocationId) -> Self {
        Self { sku, location }
    }

    /// The stream key of this item (see [`stream_key`]).
    #[must_use]
    pub fn stream_key(&self) -> String {
        stream_key(&self.sku, &self.location)
    }

    /// The item named by an event; `None` only for a payload this engine never wrote.
    fn from_wire(sku: &str, location: &str) -> Option<Self> {
        Some(Self::new(
            Sku::new(sku).ok()?,
            LocationId::new(location).ok()?,
        ))
    }
}

/// Where a reservation stands. `Active` is the only state that holds stock; the three others
/// are terminal (INV-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Active,
    Committed,
    Released,
    Expired,
}

impl ReservationState {
    /// The state as an API string (`active`, `committed`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }
}

/// Stock held for an order or a campaign participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    id: ReservationId,
    holder: ReservationHolder,
    quantity: u32,
    expires_at: DateTime<Utc>,
    state: ReservationState,
    /// Units that left through `inventory.committed` (0 unless committed).
    committed: u32,
}

impl Reservation {
    #[must_use]
    pub fn id(&self) -> ReservationId {
        self.id
    }

    #[must_use]
    pub fn holder(&self) -> ReservationHolder {
        self.holder
    }

    /// The reserved units (the sum of the command's lines).
    #[must_use]
    pub fn quantity(&self) -> u32 {
        self.quantity
    }

    #[must_use]
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    #[must_use]
    pub fn state(&self) -> ReservationState {
        self.state
    }

    /// Units committed (shipped) out of this reservation.
    #[must_use]
    pub fn committed(&self) -> u32 {
        self.committed
    }

    #[must_use]
    pub fn is_active(&self) -> bool {
        self.state == ReservationState::Active
    }
}

/// The stock of one SKU at one location.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Set by the first event; `None` for a stream nothing happened to yet.
    item: Option<StockItem>,
    on_hand: StockCount,
    safety_threshold: u64,
    backorder_limit: u64,
    /// Every reservation ever taken, terminal ones included, so a repeated id is recognised.
    reservations: BTreeMap<ReservationId, Reservation>,
    /// Reservation ids answered with `inventory.insufficient`: a redelivered command must not
    /// get a second answer.
    declined: BTreeSet<ReservationId>,
}

impl Inventory {
    /// The SKU and location, once the stream has an event.
    #[must_use]
    pub fn item(&self) -> Option<&StockItem> {
        self.item.as_ref()
    }

    #[must_use]
    pub fn on_hand(&self) -> u64 {
        self.on_hand.get()
    }

    /// The sum of the active reservations (INV-2: derived, never stored).
    #[must_use]
    pub fn reserved(&self) -> u64 {
        self.active_reservations()
            .map(|reservation| u64::from(reservation.quantity))
            .sum()
    }

    /// `on_hand − reserved − safety_threshold`, negative while back-ordered (saturating at the
    /// ends of `i64`, which real stock never reaches).
    #[must_use]
    pub fn available(&self) -> i64 {
        let available = i128::from(self.on_hand.get())
            - i128::from(self.reserved())
            - i128::from(self.safety_threshold);
        i64::try_from(available).unwrap_or(if available < 0 { i64::MIN } else { i64::MAX })
    }

    #[must_use]
    pub fn safety_threshold(&self) -> u64 {
        self.safety_threshold
    }

    /// Units that may be reserved beyond available stock (0 = back-orders denied).
    #[must_use]
    pub fn backorder_limit(&self) -> u64 {
        self.backorder_limit
    }

    /// Every reservation, in id order, whatever its state.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    pub fn active_reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations()
            .filter(|reservation| reservation.is_active())
    }

    #[must_use]
    pub fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }

    /// Whether a `Reserve` with this id was already answered (reserved or declined).
    #[must_use]
    pub fn has_seen(&self, id: ReservationId) -> bool {
        self.reservations.contains_key(&id) || self.declined.contains(&id)
    }

    fn note_item(&mut self, sku: &str, location: &str) {
        if self.item.is_none() {
            self.item = StockItem::from_wire(sku, location);
        }
    }

    fn set_reservation_state(&mut self, id: uuid::Uuid, state: ReservationState) {
        if let Some(reservation) = self.reservations.get_mut(&ReservationId::from_uuid(id)) {
            reservation.state = state;
        }
    }
}

impl cqrs_es::Aggregate for Inventory {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = crate::CommandError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        guard::write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            InventoryEvent::Received(e) => {
                self.note_item(&e.sku, &e.location);
                self.on_hand = StockCount::new(e.on_hand_after);
            }
            InventoryEvent::Adjusted(e) => {
                self.note_item(&e.sku, &e.location);
                self.on_hand = StockCount::new(e.on_hand_after);
            }
            InventoryEvent::PolicyChanged(e) => {
                self.note_item(&e.sku, &e.location);
                self.safety_threshold = e.safety_threshold;
                self.backorder_limit = e.backorder_limit;
            }
            InventoryEvent::Reserved(e) => {
                self.note_item(&e.sku, &e.location);
                let id = ReservationId::from_uuid(e.reservation_id);
                self.reservations.insert(
                    id,
                    Reservation {
                        id,
                        holder: e.holder,
                        quantity: e.quantity,
                        expires_at: e.expires_at,
                        state: ReservationState::Active,
                        committed: 0,
                    },
                );
            }
            InventoryEvent::Insufficient(e) => {
                self.note_item(&e.sku, &e.location);
                self.declined
                    .insert(ReservationId::from_uuid(e.reservation_id));
            }
            InventoryEvent::ReservationExtended(e) => {
                if let Some(reservation) = self
                    .reservations
                    .get_mut(&ReservationId::from_uuid(e.reservation_id))
                {
                    reservation.expires_at = e.expires_at;
                }
            }
            InventoryEvent::Released(e) => {
                self.set_reservation_state(e.reservation_id, ReservationState::Released);
            }
            InventoryEvent::ReservationExpired(e) => {
                self.set_reservation_state(e.reservation_id, ReservationState::Expired);
            }
            InventoryEvent::Committed(e) => {
                if let Some(reservation) = self
                    .reservations
                    .get_mut(&ReservationId::from_uuid(e.reservation_id))
                {
                    reservation.state = ReservationState::Committed;
                    reservation.committed = e.quantity;
                }
                self.on_hand = StockCount::new(e.on_hand_after);
            }
            InventoryEvent::Restocked(e) => {
                self.note_item(&e.sku, &e.location);
                self.on_hand = StockCount::new(e.on_hand_after);
            }
        }
    }
}
