//! Inventory events (§3.3 of the commerce anchors): one stream per tenant, SKU and location, with
//! stock movements and reservations that carry an expiry.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::ReservationHolder;

super::event_set! {
    /// Everything that can happen to the stock of one SKU at one location.
    pub enum InventoryEvent for "inventory" {
        Received(InventoryReceived) = "inventory.received", version 1;
        Adjusted(InventoryAdjusted) = "inventory.adjusted", version 1;
        PolicyChanged(InventoryPolicyChanged) = "inventory.policy_changed", version 1;
        Reserved(InventoryReserved) = "inventory.reserved", version 1;
        Insufficient(InventoryInsufficient) = "inventory.insufficient", version 1;
        ReservationExtended(InventoryReservationExtended) = "inventory.reservation_extended", version 1;
        Released(InventoryReleased) = "inventory.released", version 1;
        ReservationExpired(InventoryReservationExpired) = "inventory.reservation_expired", version 1;
        Committed(InventoryCommitted) = "inventory.committed", version 1;
        Restocked(InventoryRestocked) = "inventory.restocked", version 1;
    }
}

/// Goods arrived at the location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryReceived {
    pub sku: String,
    pub location: String,
    pub quantity: u64,
    pub on_hand_after: u64,
    pub at: DateTime<Utc>,
}

/// On-hand stock was corrected (a count, a loss, or an absolute set through the API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryAdjusted {
    pub sku: String,
    pub location: String,
    pub delta: i64,
    pub on_hand_after: u64,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The stock policy changed: a safety threshold kept back, and how far back-orders may go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryPolicyChanged {
    pub sku: String,
    pub location: String,
    pub safety_threshold: u64,
    /// Units that may be reserved beyond available stock; 0 denies back-orders.
    pub backorder_limit: u64,
    pub at: DateTime<Utc>,
}

/// Stock is held for an order or a campaign participant until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryReserved {
    pub reservation_id: Uuid,
    pub sku: String,
    pub location: String,
    pub quantity: u32,
    pub holder: ReservationHolder,
    pub expires_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// A reservation was refused: not enough available stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryInsufficient {
    pub reservation_id: Uuid,
    pub sku: String,
    pub location: String,
    pub requested: u32,
    /// Available units at the time (negative while back-ordered).
    pub available: i64,
    pub holder: ReservationHolder,
    pub at: DateTime<Utc>,
}

/// An active reservation now lasts longer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryReservationExtended {
    pub reservation_id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// An active reservation was given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryReleased {
    pub reservation_id: Uuid,
    pub quantity: u32,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// An active reservation passed its expiry unpaid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryReservationExpired {
    pub reservation_id: Uuid,
    pub quantity: u32,
    pub at: DateTime<Utc>,
}

/// Reserved stock left the building: on hand and reserved both drop; any remainder is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryCommitted {
    pub reservation_id: Uuid,
    pub quantity: u32,
    pub released_remainder: u32,
    pub on_hand_after: u64,
    pub at: DateTime<Utc>,
}

/// Returned goods went back on the shelf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryRestocked {
    pub sku: String,
    pub location: String,
    pub quantity: u64,
    pub return_id: Option<Uuid>,
    pub on_hand_after: u64,
    pub at: DateTime<Utc>,
}
