//! Schema evolution of `product.created`: version 1 carried the price as two flat fields,
//! `price_minor: i64` and `currency: String`; version 2 nests them as `price: Money`. Stored v1
//! events stay as they are (the log is append-only) and are rewritten on every read.

use commerce_eventstore::Upcasters;
use serde_json::{Map, Value};

/// The event type whose shape changed.
const CREATED: &str = "product.created";

/// The upcasters of the product events, oldest first; register them on the event store
/// (`PgEventStore::with_upcasters`) of every process that reads product streams.
#[must_use]
pub fn upcasters() -> Upcasters {
    Upcasters::new().register_fn(CREATED, "2", created_v1_to_v2)
}

/// Rewrites a `product.created` v1 payload into v2: `price_minor` and `currency` move into
/// `price: {amount_minor, currency}`. Any other field is kept; a payload without the v1 fields
/// is returned unchanged (the v2 decoder then reports what is missing).
#[must_use]
pub fn created_v1_to_v2(payload: Value) -> Value {
    let Value::Object(mut fields) = payload else {
        return payload;
    };
    if !(fields.contains_key("price_minor") && fields.contains_key("currency")) {
        return Value::Object(fields);
    }
    let amount_minor = fields.remove("price_minor").unwrap_or_default();
    let currency = fields.remove("currency").unwrap_or_default();
    let mut price = Map::new();
    price.insert("amount_minor".into(), amount_minor);
    price.insert("currency".into(), currency);
    fields.insert("price".into(), Value::Object(price));
    Value::Object(fields)
}
