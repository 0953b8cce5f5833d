//! Wire shapes shared by several payloads. These are plain data: the write side validates before
//! it emits (see the `domain` crate), and readers accept what the schemas in `contracts/schemas/` allow.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An amount in integer minor units of an ISO 4217 currency, e.g. `{"amount_minor": 1999, "currency": "EUR"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct Money {
    /// Integer amount in the currency's minor unit (cents for EUR, yen for JPY).
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

/// One line of an order with the unit price snapshotted when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    /// 1-based position of the line in the order.
    pub line_no: u32,
    pub sku: String,
    pub product_id: Option<Uuid>,
    pub quantity: u32,
    pub unit_price: Money,
}

/// A quantity against one order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LineQuantity {
    pub line_no: u32,
    pub quantity: u32,
}

/// What a stock reservation is held for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ReservationHolder {
    Order(Uuid),
    CampaignParticipant(Uuid),
}

/// A reservation taken on one inventory stream (tenant / sku / location).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReservationRef {
    pub reservation_id: Uuid,
    pub sku: String,
    pub location: String,
    pub quantity: u32,
}
