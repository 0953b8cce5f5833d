//! Published language of the engine: the event envelope, the versioned event payloads of every
//! aggregate, topic names, and the JSON Schemas generated from them.
//!
//! Layout: [`events`] holds one module per aggregate with its payload structs and the enum that
//! tags them with their `event_type`; [`envelope`] the Kafka/export envelope and metadata;
//! [`topics`] the topic names; [`schema`] the JSON Schema generation that `contracts/schemas/`
//! is checked against.

mod analytics;
pub mod envelope;
pub mod events;
pub mod schema;
pub mod topics;
mod values;

pub use analytics::{
    AnalyticsOrder, AnalyticsOrderLine, FulfillmentStatus, OrderStatus, PaymentStatus,
};
pub use envelope::EventEnvelope;
pub use events::{EventDescriptor, EventSet};
pub use values::{LineQuantity, Money, OrderLine, ReservationHolder, ReservationRef};
