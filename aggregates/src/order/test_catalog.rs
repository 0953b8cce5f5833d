//! An in-memory [`Catalog`] for the order tests.

use std::collections::HashMap;

use async_trait::async_trait;
use commerce_domain::{Sku, TenantId};

use crate::{Catalog, CatalogEntry};

/// Products by (tenant, SKU).
#[derive(Debug, Default)]
pub(super) struct TestCatalog {
    products: HashMap<(String, String), CatalogEntry>,
}

impl TestCatalog {
    pub(super) fn with(mut self, tenant: &str, sku: &str, entry: CatalogEntry) -> Self {
        self.products
            .insert((tenant.to_owned(), sku.to_owned()), entry);
        self
    }
}

#[async_trait]
impl Catalog for TestCatalog {
    async fn product(&self, tenant: &TenantId, sku: &Sku) -> Option<CatalogEntry> {
        self.products
            .get(&(tenant.to_string(), sku.to_string()))
            .cloned()
    }
}
