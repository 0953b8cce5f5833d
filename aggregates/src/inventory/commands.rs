//! The inventory commands and their guards. `decide` reads the state and returns the events to
//! append, or the reason nothing may be appended; it never mutates.

use chrono::{DateTime, Duration, Utc};
use commerce_contracts::ReservationHolder;
use commerce_contracts::events::{
    InventoryAdjusted, InventoryCommitted, InventoryEvent, InventoryInsufficient,
    InventoryPolicyChanged, InventoryReceived, InventoryReleased, InventoryReservationExpired,
    InventoryReservationExtended, InventoryReserved, InventoryRestocked,
};
use commerce_domain::{Quantity, ReservationId, StockCount};
use uuid::Uuid;

use super::{Inventory, ReservationState, StockItem};
use crate::CommandError;

/// The longest a reservation may be held from the moment it is taken or extended: 31 days, the
/// cap commercetools puts on its reservations. Longer holds are forgotten stock.
pub const MAX_RESERVATION_TTL: Duration = Duration::days(31);

/// What can be asked of one SKU's stock at one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryCommand {
    /// Sets on-hand stock to an absolute count, as `PUT /inventory` does; recorded as an
    /// adjustment by the difference. Refused when the new count would not cover the units
    /// already reserved (INV-1).
    SetStock {
        item: StockItem,
        on_hand: u64,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Goods arrived.
    ReceiveStock {
        item: StockItem,
        quantity: Quantity,
        at: DateTime<Utc>,
    },
    /// A correction by `delta` units (a count, a loss); a reason is required for the audit.
    AdjustStock {
        item: StockItem,
        delta: i64,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Sets the safety threshold kept back from sale and the back-order allowance.
    SetPolicy {
        item: StockItem,
        safety_threshold: u64,
        backorder_limit: u64,
        at: DateTime<Utc>,
    },
    /// Holds the sum of `lines` for `holder` until `expires_at`. Answered with
    /// `inventory.reserved` or `inventory.insufficient` (an event, not a rejection: the saga
    /// reacts to it). A reservation id already answered appends nothing.
    Reserve {
        item: StockItem,
        reservation_id: ReservationId,
        holder: ReservationHolder,
        lines: Vec<Quantity>,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Moves an active reservation's expiry to `until`.
    ExtendReservation {
        reservation_id: ReservationId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Gives an active reservation back.
    Release {
        reservation_id: ReservationId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Expires every active reservation whose `expires_at ≤ now` (the deadline processor).
    ExpireReservations { now: DateTime<Utc> },
    /// Ships `quantity` units of a reservation: on hand drops by it, the rest is released.
    Commit {
        reservation_id: ReservationId,
        quantity: Quantity,
        at: DateTime<Utc>,
    },
    /// Returned goods go back on the shelf.
    Restock {
        item: StockItem,
        quantity: Quantity,
        return_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
}

impl Inventory {
    /// The events `command` appends, or why it appends none.
    pub(super) fn decide(
        &self,
        command: InventoryCommand,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        match command {
            InventoryCommand::SetStock {
                item,
                on_hand,
                reason,
                at,
            } => self.set_stock(&item, on_hand, reason, at),
            InventoryCommand::ReceiveStock { item, quantity, at } => {
                self.check_item(&item)?;
                let on_hand_after = self
                    .on_hand
                    .checked_add(quantity)
                    .ok_or_else(|| CommandError::invalid("quantity", "on-hand stock overflows"))?;
                Ok(vec![InventoryEvent::Received(InventoryReceived {
                    sku: item.sku.into_inner(),
                    location: item.location.into_inner(),
                    quantity: quantity.into(),
                    on_hand_after: on_hand_after.get(),
                    at,
                })])
            }
            InventoryCommand::AdjustStock {
                item,
                delta,
                reason,
                at,
            } => self.adjust_stock(&item, delta, reason, at),
            InventoryCommand::SetPolicy {
                item,
                safety_threshold,
                backorder_limit,
                at,
            } => self.set_policy(&item, safety_threshold, backorder_limit, at),
            InventoryCommand::Reserve {
                item,
                reservation_id,
                holder,
                lines,
                expires_at,
                at,
            } => self.reserve(&item, reservation_id, holder, &lines, expires_at, at),
            InventoryCommand::ExtendReservation {
                reservation_id,
                until,
                at,
            } => self.extend(reservation_id, until, at),
            InventoryCommand::Release {
                reservation_id,
                reason,
                at,
            } => self.release(reservation_id, reason, at),
            InventoryCommand::ExpireReservations { now } => Ok(self.expire(now)),
            InventoryCommand::Commit {
                reservation_id,
                quantity,
                at,
            } => self.commit(reservation_id, quantity, at),
            InventoryCommand::Restock {
                item,
                quantity,
                return_id,
                at,
            } => {
                self.check_item(&item)?;
                let on_hand_after = self
                    .on_hand
                    .checked_add(quantity)
                    .ok_or_else(|| CommandError::invalid("quantity", "on-hand stock overflows"))?;
                Ok(vec![InventoryEvent::Restocked(InventoryRestocked {
                    sku: item.sku.into_inner(),
                    location: item.location.into_inner(),
                    quantity: quantity.into(),
                    return_id,
                    on_hand_after: on_hand_after.get(),
                    at,
                })])
            }
        }
    }

    /// A command naming another SKU or location than the stream's is a routing bug upstream.
    fn check_item(&self, item: &StockItem) -> Result<(), CommandError> {
        match &self.item {
            Some(own) if own != item => Err(CommandError::invalid(
                "sku",
                format!(
                    "this stock is {}/{}, not {}/{}",
                    own.sku, own.location, item.sku, item.location
                ),
            )),
            _ => Ok(()),
        }
    }

    /// INV-1 for a prospective level: the reserved units stay covered by on-hand stock minus the
    /// safety threshold plus the back-order allowance.
    fn covers_reserved(&self, on_hand: u64, safety_threshold: u64, backorder_limit: u64) -> bool {
        u128::from(self.reserved()) + u128::from(safety_threshold)
            <= u128::from(on_hand) + u128::from(backorder_limit)
    }

    fn uncovered(&self, action: String) -> CommandError {
        CommandError::invalid_state(
            action,
            format!(
                "{} units are reserved (safety threshold {}, back-order limit {})",
                self.reserved(),
                self.safety_threshold,
                self.backorder_limit
            ),
        )
    }

    fn set_stock(
        &self,
        item: &StockItem,
        on_hand: u64,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        self.check_item(item)?;
        let reason = required_reason(reason)?;
        let old = self.on_hand.get();
        if on_hand == old && self.item.is_some() {
            return Ok(Vec::new());
        }
        let delta = i128::from(on_hand) - i128::from(old);
        let delta = i64::try_from(delta)
            .map_err(|_| CommandError::invalid("quantity", "change of stock out of range"))?;
        if !self.covers_reserved(on_hand, self.safety_threshold, self.backorder_limit) {
            return Err(self.uncovered(format!("set on-hand stock to {on_hand}")));
        }
        Ok(vec![adjusted(item, delta, on_hand, reason, at)])
    }

    fn adjust_stock(
        &self,
        item: &StockItem,
        delta: i64,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        self.check_item(item)?;
        let reason = required_reason(reason)?;
        if delta == 0 {
            return Err(CommandError::invalid("delta", "must not be zero"));
        }
        let magnitude = StockCount::new(delta.unsigned_abs());
        let on_hand_after = if delta > 0 {
            self.on_hand
                .checked_add(magnitude)
                .ok_or_else(|| CommandError::invalid("delta", "on-hand stock overflows"))?
        } else {
            self.on_hand.checked_sub(magnitude).ok_or_else(|| {
                CommandError::invalid(
                    "delta",
                    format!(
                        "only {} units on hand; stock cannot go negative",
                        self.on_hand
                    ),
                )
            })?
        };
        if !self.covers_reserved(
            on_hand_after.get(),
            self.safety_threshold,
            self.backorder_limit,
        ) {
            return Err(self.uncovered(format!("adjust on-hand stock by {delta}")));
        }
        Ok(vec![adjusted(item, delta, on_hand_after.get(), reason, at)])
    }

    fn set_policy(
        &self,
        item: &StockItem,
        safety_threshold: u64,
        backorder_limit: u64,
        at: DateTime<Utc>,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        self.check_item(item)?;
        if self.item.is_some()
            && (safety_threshold, backorder_limit) == (self.safety_threshold, self.backorder_limit)
        {
            return Ok(Vec::new());
        }
        if !self.covers_reserved(self.on_hand.get(), safety_threshold, backorder_limit) {
            return Err(self.uncovered(format!(
                "set safety threshold {safety_threshold} and back-order limit {backorder_limit}"
            )));
        }
        Ok(vec![InventoryEvent::PolicyChanged(
            InventoryPolicyChanged {
                sku: item.sku.as_str().to_owned(),
                location: item.location.as_str().to_owned(),
                safety_threshold,
                backorder_limit,
                at,
            },
        )])
    }

    fn reserve(
        &self,
        item: &StockItem,
        reservation_id: ReservationId,
        holder: ReservationHolder,
        lines: &[Quantity],
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        self.check_item(item)?;
        if self.has_seen(reservation_id) {
            // A retried reservation is done already; another quantity under a used id is
            // refused rather than reported as done (PAY-5). A declined one kept no quantity.
            let asked = lines.iter().map(|line| u64::from(line.get())).sum::<u64>();
            if let Some(known) = self.reservation(reservation_id)
                && u64::from(known.quantity()) != asked
            {
                return Err(CommandError::invalid(
                    "reservation_id",
                    format!("already names a reservation of {}", known.quantity()),
                ));
            }
            return Ok(Vec::new());
        }
        // INV-8: several lines on the same item are checked as one sum, not one by one.
        let requested = lines
            .iter()
            .try_fold(None::<Quantity>, |sum, line| match sum {
                None => Some(Some(*line)),
                Some(sum) => sum.checked_add(*line).map(Some),
            })
            .ok_or_else(|| {
                CommandError::invalid(
                    "lines",
                    format!("the summed quantity exceeds {}", Quantity::MAX),
                )
            })?
            .ok_or_else(|| CommandError::invalid("lines", "at least one line is required"))?;
        check_expiry("expires_at", expires_at, at)?;
        let headroom = i128::from(self.on_hand.get()) + i128::from(self.backorder_limit)
            - i128::from(self.reserved())
            - i128::from(self.safety_threshold);
        let event = if i128::from(requested.get()) <= headroom {
            InventoryEvent::Reserved(InventoryReserved {
                reservation_id: reservation_id.as_uuid(),
                sku: item.sku.as_str().to_owned(),
                location: item.location.as_str().to_owned(),
                quantity: requested.get(),
                holder,
                expires_at,
                at,
            })
        } else {
            InventoryEvent::Insufficient(InventoryInsufficient {
                reservation_id: reservation_id.as_uuid(),
                sku: item.sku.as_str().to_owned(),
                location: item.location.as_str().to_owned(),
                requested: requested.get(),
                available: self.available(),
                holder,
                at,
            })
        };
        Ok(vec![event])
    }

    fn extend(
        &self,
        reservation_id: ReservationId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        let reservation = self.existing(reservation_id)?;
        if !reservation.is_active() {
            return Err(CommandError::invalid_state(
                "extend reservation",
                reservation.state.as_str(),
            ));
        }
        if reservation.expires_at <= at {
            return Err(CommandError::invalid_state("extend reservation", "expired"));
        }
        if until == reservation.expires_at {
            return Ok(Vec::new());
        }
        if until < reservation.expires_at {
            return Err(CommandError::invalid(
                "until",
                "must be later than the current expiry",
            ));
        }
        check_expiry("until", until, at)?;
        Ok(vec![InventoryEvent::ReservationExtended(
            InventoryReservationExtended {
                reservation_id: reservation_id.as_uuid(),
                expires_at: until,
                at,
            },
        )])
    }

    fn release(
        &self,
        reservation_id: ReservationId,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        let reason = required_reason(reason)?;
        // Compensation releases whatever the checkout took; a declined reservation held nothing.
        if self.declined.contains(&reservation_id) {
            return Ok(Vec::new());
        }
        let reservation = self.existing(reservation_id)?;
        match reservation.state {
            ReservationState::Active => Ok(vec![InventoryEvent::Released(InventoryReleased {
                reservation_id: reservation_id.as_uuid(),
                quantity: reservation.quantity,
                reason,
                at,
            })]),
            // The stock is free already: a repeat (or a release racing the expiry) is a no-op.
            ReservationState::Released | ReservationState::Expired => Ok(Vec::new()),
            ReservationState::Committed => Err(CommandError::invalid_state(
                "release reservation",
                "committed",
            )),
        }
    }

    fn expire(&self, now: DateTime<Utc>) -> Vec<InventoryEvent> {
        let mut due: Vec<_> = self
            .active_reservations()
            .filter(|reservation| reservation.expires_at <= now)
            .collect();
        due.sort_by_key(|reservation| (reservation.expires_at, reservation.id));
        due.into_iter()
            .map(|reservation| {
                InventoryEvent::ReservationExpired(InventoryReservationExpired {
                    reservation_id: reservation.id.as_uuid(),
                    quantity: reservation.quantity,
                    at: now,
                })
            })
            .collect()
    }

    fn commit(
        &self,
        reservation_id: ReservationId,
        quantity: Quantity,
        at: DateTime<Utc>,
    ) -> Result<Vec<InventoryEvent>, CommandError> {
        let reservation = self.existing(reservation_id)?;
        match reservation.state {
            ReservationState::Active => {}
            ReservationState::Committed => return Ok(Vec::new()),
            state @ (ReservationState::Released | ReservationState::Expired) => {
                return Err(CommandError::invalid_state(
                    "commit reservation",
                    state.as_str(),
                ));
            }
        }
        // INV-9: never more than was reserved.
        let released_remainder = reservation
            .quantity
            .checked_sub(quantity.get())
            .ok_or_else(|| {
                CommandError::invalid(
                    "quantity",
                    format!("only {} units are reserved", reservation.quantity),
                )
            })?;
        // A back-ordered reservation cannot ship before the goods arrive.
        let on_hand_after = self.on_hand.checked_sub(quantity).ok_or_else(|| {
            CommandError::invalid_state(
                format!("commit {quantity} units"),
                format!("{} units on hand (back-ordered)", self.on_hand),
            )
        })?;
        Ok(vec![InventoryEvent::Committed(InventoryCommitted {
            reservation_id: reservation_id.as_uuid(),
            quantity: quantity.get(),
            released_remainder,
            on_hand_after: on_hand_after.get(),
            at,
        })])
    }

    fn existing(&self, id: ReservationId) -> Result<&super::Reservation, CommandError> {
        self.reservations
            .get(&id)
            .ok_or_else(|| CommandError::NotFound(format!("reservation {id}")))
    }
}

fn adjusted(
    item: &StockItem,
    delta: i64,
    on_hand_after: u64,
    reason: String,
    at: DateTime<Utc>,
) -> InventoryEvent {
    InventoryEvent::Adjusted(InventoryAdjusted {
        sku: item.sku.as_str().to_owned(),
        location: item.location.as_str().to_owned(),
        delta,
        on_hand_after,
        reason,
        at,
    })
}

fn required_reason(reason: String) -> Result<String, CommandError> {
    if reason.trim().is_empty() {
        Err(CommandError::invalid("reason", "a reason is required"))
    } else {
        Ok(reason)
    }
}

/// An expiry must lie in the future and within [`MAX_RESERVATION_TTL`] of `at`.
fn check_expiry(
    field: &'static str,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> Result<(), CommandError> {
    if expires_at <= at {
        return Err(CommandError::invalid(field, "must be in the future"));
    }
    if expires_at - at > MAX_RESERVATION_TTL {
        return Err(CommandError::invalid(
            field,
            format!(
                "a reservation is held at most {} days",
                MAX_RESERVATION_TTL.num_days()
            ),
        ));
    }
    Ok(())
}
