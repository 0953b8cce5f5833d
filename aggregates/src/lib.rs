//! The write model: the six aggregates of the engine on cqrs-es, and every business rule.
//!
//! Each aggregate lives in its own module with its commands, its state and its tests:
//! [`order`], [`payment`], [`shipment`], [`inventory`], [`campaign`] and [`product`]. Command
//! handlers enforce every guard of the state machines (`commerce-anchors.md` §3) and emit the
//! events of `commerce-contracts`; `apply` only folds events and never fails. All six share one
//! rejection type, [`CommandError`], which the HTTP layer maps to statuses once. [`Catalog`] is
//! the one outside fact a handler may ask for (prices of SKUs).

mod catalog;
mod error;
mod guard;
#[cfg(test)]
mod testkit;

pub mod campaign;
pub mod inventory;
pub mod order;
pub mod payment;
pub mod product;
pub mod shipment;

pub use catalog::{Catalog, CatalogEntry, InMemoryCatalog, StoreCatalog};
pub use error::CommandError;
