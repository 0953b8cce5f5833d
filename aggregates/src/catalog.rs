//! The catalog as the write side sees it: the price and product id of a SKU, for snapshotting
//! prices into orders and checking that a campaign sells a real product.

use async_trait::async_trait;
use commerce_domain::{Money, ProductId, Sku, TenantId};

/// What an order or campaign needs to know about a catalog product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub product_id: ProductId,
    pub price: Money,
    pub discontinued: bool,
}

/// Looks products up by SKU within one tenant. The engine backs it with the Product aggregates
/// of the event store; tests use an in-memory map.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// The product sold under `sku` in `tenant`, if there is one.
    async fn product(&self, tenant: &TenantId, sku: &Sku) -> Option<CatalogEntry>;
}
