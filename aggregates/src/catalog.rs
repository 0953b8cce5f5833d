//! The catalog as the write side sees it: the price and product id of a SKU, for snapshotting
//! prices into orders and checking that a campaign sells a real product.
//!
//! [`StoreCatalog`] answers from the Product aggregates in the event store (the source of
//! truth, so a product created a moment ago is already visible); [`InMemoryCatalog`] is the
//! stand-in for unit tests of any crate.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use commerce_domain::{Money, ProductId, Sku, TenantId};
use commerce_eventstore::{DecodeError, PgEventStore, StoreError, StreamId};

use crate::product::{self, Product};

/// What an order or campaign needs to know about a catalog product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub product_id: ProductId,
    pub price: Money,
    pub discontinued: bool,
}

impl CatalogEntry {
    /// The entry of a folded product; `None` before `product.created`.
    #[must_use]
    pub fn of(product: &Product) -> Option<Self> {
        Some(Self {
            product_id: product.id()?,
            price: product.price()?,
            discontinued: product.is_discontinued(),
        })
    }
}

/// Looks products up by SKU within one tenant. The engine backs it with the Product aggregates
/// of the event store; tests use an in-memory map.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// The product sold under `sku` in `tenant`, if there is one.
    async fn product(&self, tenant: &TenantId, sku: &Sku) -> Option<CatalogEntry>;
}

/// A catalog held in memory, shared by its clones (tests add products while handlers read).
#[derive(Debug, Default, Clone)]
pub struct InMemoryCatalog {
    entries: Arc<RwLock<HashMap<(TenantId, Sku), CatalogEntry>>>,
}

impl InMemoryCatalog {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the product sold under `sku` in `tenant`.
    pub fn insert(&self, tenant: TenantId, sku: Sku, entry: CatalogEntry) {
        // A panic elsewhere cannot leave a map insert half done, so a poisoned lock is usable.
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((tenant, sku), entry);
    }

    /// Builder form of [`InMemoryCatalog::insert`].
    #[must_use]
    pub fn with(self, tenant: TenantId, sku: Sku, entry: CatalogEntry) -> Self {
        self.insert(tenant, sku, entry);
        self
    }
}

#[async_trait]
impl Catalog for InMemoryCatalog {
    async fn product(&self, tenant: &TenantId, sku: &Sku) -> Option<CatalogEntry> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(tenant.clone(), sku.clone()))
            .cloned()
    }
}

/// The catalog read from the Product streams of the event store (`{tenant}/{sku}`).
#[derive(Debug, Clone)]
pub struct StoreCatalog {
    store: PgEventStore,
}

impl StoreCatalog {
    /// Reads through `store`, which must carry [`product::upcasters`] if the log holds
    /// `product.created` v1 events.
    #[must_use]
    pub fn new(store: PgEventStore) -> Self {
        Self { store }
    }

    /// The product sold under `sku` in `tenant`, folded from its stream.
    ///
    /// # Errors
    /// The store could not be read or an event could not be decoded.
    pub async fn lookup(
        &self,
        tenant: &TenantId,
        sku: &Sku,
    ) -> Result<Option<CatalogEntry>, StoreError> {
        let stream =
            StreamId::new(tenant.as_str(), product::stream_key(sku)).map_err(DecodeError::from)?;
        let loaded = self.store.load_aggregate::<Product>(&stream, None).await?;
        Ok(CatalogEntry::of(&loaded.aggregate))
    }
}

#[async_trait]
impl Catalog for StoreCatalog {
    /// A store that cannot be read answers "no such product": the command is refused and can
    /// be retried, and no order is ever priced from a guess.
    async fn product(&self, tenant: &TenantId, sku: &Sku) -> Option<CatalogEntry> {
        self.lookup(tenant, sku).await.ok().flatten()
    }
}
