//! The versioned event payloads of the six aggregates.
//!
//! Each aggregate has a module with one struct per event and an enum that tags them: serialised,
//! an event is its payload object plus an `event_type` field (`{"event_type": "order.created", ...}`),
//! so a stored or published payload always says what it is. Every variant declares its
//! `event_type` and `event_version` once, in the [`event_set!`] invocation, which also builds the
//! catalog that schema generation and the topic router use.

mod campaign;
mod inventory;
mod order;
mod payment;
mod product;
mod shipment;

pub use campaign::*;
pub use inventory::*;
pub use order::*;
pub use payment::*;
pub use product::*;
pub use shipment::*;

/// Static facts about one kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventDescriptor {
    /// The published name, also the seed's per-event topic, e.g. `order.created`.
    pub event_type: &'static str,
    /// The current version of the payload shape.
    pub event_version: u32,
    /// The aggregate that emits it, e.g. `order`.
    pub aggregate_type: &'static str,
    /// The Rust name of the payload struct, used to name its schema file.
    pub payload_name: &'static str,
}

/// Behaviour shared by the six aggregate event enums.
pub trait EventSet: Sized {
    /// The aggregate type these events belong to (`order`, `inventory`, ...).
    const AGGREGATE_TYPE: &'static str;
    /// Every event of the set, in declaration order.
    fn catalog() -> &'static [EventDescriptor];
    /// The published `event_type` of this event.
    fn event_type(&self) -> &'static str;
    /// The payload version this code writes.
    fn event_version(&self) -> u32;
    /// The JSON Schema of each payload, keyed by its descriptor.
    fn payload_schemas() -> Vec<(EventDescriptor, schemars::Schema)>;
}

/// Declares an aggregate's event enum: variant, payload struct, `event_type` and version.
macro_rules! event_set {
    (
        $(#[$meta:meta])*
        pub enum $name:ident for $aggregate:literal {
            $( $variant:ident($payload:ident) = $event_type:literal, version $version:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
        #[serde(tag = "event_type")]
        pub enum $name {
            $( #[serde(rename = $event_type)] $variant($payload), )+
        }

        impl $crate::events::EventSet for $name {
            const AGGREGATE_TYPE: &'static str = $aggregate;

            fn catalog() -> &'static [$crate::events::EventDescriptor] {
                &[$( $crate::events::EventDescriptor {
                    event_type: $event_type,
                    event_version: $version,
                    aggregate_type: $aggregate,
                    payload_name: stringify!($payload),
                }, )+]
            }

            fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $event_type, )+ }
            }

            fn event_version(&self) -> u32 {
                match self { $( Self::$variant(_) => $version, )+ }
            }

            fn payload_schemas() -> Vec<($crate::events::EventDescriptor, schemars::Schema)> {
                let schemas = vec![$( schemars::schema_for!($payload), )+];
                Self::catalog().iter().copied().zip(schemas).collect()
            }
        }

        #[cfg(feature = "cqrs")]
        impl cqrs_es::DomainEvent for $name {
            fn event_type(&self) -> String {
                $crate::events::EventSet::event_type(self).to_owned()
            }

            fn event_version(&self) -> String {
                $crate::events::EventSet::event_version(self).to_string()
            }
        }
    };
}
pub(crate) use event_set;
