//! Product: one catalog entry of a tenant, keyed by its SKU ([`stream_key`]), so a SKU names at
//! most one product per tenant.
//!
//! Layout: this file holds the state, its fold and the commands with their guards; `upcast` the
//! schema evolution of `product.created` (v1 → v2) with [`upcasters`]; `tests` the
//! given/when/then tests.

mod upcast;

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use commerce_contracts::events::{
    ProductCreated, ProductDetailsChanged, ProductDiscontinued, ProductEvent, ProductPriceChanged,
};
use commerce_domain::{Money, ProductId, Sku};
use serde::{Deserialize, Serialize};

use crate::{CommandError, guard};

pub use upcast::{created_v1_to_v2, upcasters};

/// Longest product name, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// Longest product description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 5_000;

/// The stream key of the product sold under `sku` (the executor prefixes the tenant).
#[must_use]
pub fn stream_key(sku: &Sku) -> String {
    sku.as_str().to_owned()
}

/// What can be asked of a catalog product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductCommand {
    /// Adds the product; the SKU must be new in the tenant's catalog.
    Create {
        product_id: ProductId,
        sku: Sku,
        name: String,
        description: Option<String>,
        price: Money,
        at: DateTime<Utc>,
    },
    ChangeDetails {
        name: String,
        description: Option<String>,
        at: DateTime<Utc>,
    },
    /// A new list price in the product's currency; placed orders keep their snapshots.
    ChangePrice { price: Money, at: DateTime<Utc> },
    /// The product can no longer be ordered or sold in new campaigns.
    Discontinue { at: DateTime<Utc> },
}

/// A catalog product.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// `None` until `product.created`.
    id: Option<ProductId>,
    sku: String,
    name: String,
    description: Option<String>,
    /// `None` until created (or for a stored price in a currency this engine does not know).
    price: Option<Money>,
    discontinued: bool,
    created_at: Option<DateTime<Utc>>,
}

impl Product {
    /// The product id, once created.
    #[must_use]
    pub fn id(&self) -> Option<ProductId> {
        self.id
    }

    #[must_use]
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    #[must_use]
    pub fn sku(&self) -> &str {
        &self.sku
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    #[must_use]
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The current list price.
    #[must_use]
    pub fn price(&self) -> Option<Money> {
        self.price
    }

    #[must_use]
    pub fn is_discontinued(&self) -> bool {
        self.discontinued
    }

    #[must_use]
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// `active` or `discontinued`; `None` before creation.
    #[must_use]
    pub fn status(&self) -> Option<&'static str> {
        self.exists().then_some(if self.discontinued {
            "discontinued"
        } else {
            "active"
        })
    }

    fn decide(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, CommandError> {
        if !matches!(command, ProductCommand::Create { .. }) {
            guard::created(self.id, "product")?;
        }
        match command {
            ProductCommand::Create {
                product_id,
                sku,
                name,
                description,
                price,
                at,
            } => {
                guard::not_created(self.exists(), "product", &sku)?;
                Ok(vec![ProductEvent::Created(ProductCreated {
                    product_id: product_id.as_uuid(),
                    sku: sku.into_inner(),
                    name: valid_name(name)?,
                    description: valid_description(description)?,
                    price: valid_price(&price)?.into(),
                    created_at: at,
                })])
            }
            ProductCommand::Discontinue { at } => Ok(if self.discontinued {
                Vec::new()
            } else {
                vec![ProductEvent::Discontinued(ProductDiscontinued { at })]
            }),
            _ if self.discontinued => Err(CommandError::invalid_state(
                "change product",
                "discontinued",
            )),
            ProductCommand::ChangeDetails {
                name,
                description,
                at,
            } => {
                let name = valid_name(name)?;
                let description = valid_description(description)?;
                if name == self.name && description == self.description {
                    return Ok(Vec::new());
                }
                Ok(vec![ProductEvent::DetailsChanged(ProductDetailsChanged {
                    name,
                    description,
                    at,
                })])
            }
            ProductCommand::ChangePrice { price, at } => {
                let price = valid_price(&price)?;
                let previous = self.price.ok_or_else(|| {
                    CommandError::invalid_state("change price", "stored price unreadable")
                })?;
                if price.currency() != previous.currency() {
                    return Err(CommandError::invalid(
                        "price.currency",
                        format!("the product is priced in {}", previous.currency().code()),
                    ));
                }
                if price == previous {
                    return Ok(Vec::new());
                }
                Ok(vec![ProductEvent::PriceChanged(ProductPriceChanged {
                    price: price.into(),
                    previous: previous.into(),
                    at,
                })])
            }
        }
    }
}

fn valid_name(name: String) -> Result<String, CommandError> {
    let length = name.trim().chars().count();
    if length == 0 || name.chars().count() > NAME_MAX_CHARS {
        return Err(CommandError::invalid(
            "name",
            format!("must be 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    Ok(name)
}

fn valid_description(description: Option<String>) -> Result<Option<String>, CommandError> {
    match description {
        Some(text) if text.chars().count() > DESCRIPTION_MAX_CHARS => Err(CommandError::invalid(
            "description",
            format!("must be at most {DESCRIPTION_MAX_CHARS} characters"),
        )),
        other => Ok(other),
    }
}

fn valid_price(price: &Money) -> Result<Money, CommandError> {
    if price.is_positive() {
        Ok(*price)
    } else {
        Err(CommandError::invalid("price", "must be greater than zero"))
    }
}

impl cqrs_es::Aggregate for Product {
    const TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = CommandError;
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
            ProductEvent::Created(e) => {
                self.id = Some(ProductId::from_uuid(e.product_id));
                self.sku = e.sku;
                self.name = e.name;
                self.description = e.description;
                self.price = Money::try_from(&e.price).ok();
                self.created_at = Some(e.created_at);
            }
            ProductEvent::DetailsChanged(e) => {
                self.name = e.name;
                self.description = e.description;
            }
            ProductEvent::PriceChanged(e) => self.price = Money::try_from(&e.price).ok(),
            ProductEvent::Discontinued(_) => self.discontinued = true,
        }
    }
}
