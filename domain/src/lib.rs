//! Pure domain value types and rules: ids, SKUs, quantities, money and currencies. No I/O, no
//! async: everything here is a value with its invariants checked at construction, so the layers
//! above never hold an invalid one.
//!
//! # Layout
//! - `ids`: [`TenantId`], [`CustomerId`] and the UUID ids ([`OrderId`], [`PaymentId`], ...).
//! - `catalog`: [`Sku`] and [`LocationId`].
//! - `quantity`: [`Quantity`] (1..=1,000,000) and [`StockCount`] (never negative, never wraps).
//! - `currency`: [`Currency`], the ISO 4217 table with minor-unit exponents.
//! - `money`: [`Money`] and its checked arithmetic ([`MoneyError`]).
//! - `error`: [`DomainError`], the validation error of every constructor.
//! - `wire`: conversions to and from the `commerce-contracts` wire types.
//!
//! # Invariants
//! - Amounts are integer minor units; no float is ever involved.
//! - Arithmetic is checked: overflow and currency mismatches are errors, never wraps or panics.
//! - Deserialisation validates exactly like the constructors do.
#![deny(missing_docs)]

mod catalog;
mod currency;
mod error;
mod ids;
mod macros;
mod money;
mod quantity;
mod wire;

pub use catalog::{LocationId, Sku};
pub use currency::Currency;
pub use error::DomainError;
pub use ids::{
    CampaignId, CustomerId, OrderId, ParticipantId, PaymentId, ProductId, ReservationId,
    ShipmentId, TenantId,
};
pub use money::{Money, MoneyError, MoneyFactor};
pub use quantity::{Quantity, StockCount, StockDelta};
