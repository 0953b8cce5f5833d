//! Product (catalog) events. `product.created` is at version 2: version 1 carried the price as
//! two flat fields (`price_minor`, `currency`); the write side upcasts stored v1 events on read.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::Money;

super::event_set! {
    /// Everything that can happen to a catalog product.
    pub enum ProductEvent for "product" {
        Created(ProductCreated) = "product.created", version 2;
        DetailsChanged(ProductDetailsChanged) = "product.details_changed", version 1;
        PriceChanged(ProductPriceChanged) = "product.price_changed", version 1;
        Discontinued(ProductDiscontinued) = "product.discontinued", version 1;
    }
}

/// A product was added to the tenant's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub created_at: DateTime<Utc>,
}

/// Name or description changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductDetailsChanged {
    pub name: String,
    pub description: Option<String>,
    pub at: DateTime<Utc>,
}

/// The list price changed; orders already placed keep their snapshotted price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductPriceChanged {
    pub price: Money,
    pub previous: Money,
    pub at: DateTime<Utc>,
}

/// The product can no longer be ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductDiscontinued {
    pub at: DateTime<Utc>,
}
