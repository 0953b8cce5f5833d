//! Schema evolution: upcasters rewrite old stored events into the current shape on every read.
//!
//! The engine reuses cqrs-es' [`EventUpcaster`] trait, so the same upcasters also work with
//! cqrs-es' own `PersistedEventStore::with_upcasters`. [`Upcasters`] applies them in
//! registration order to `(event_type, event_version, payload)` before any payload is
//! deserialised: aggregate loads, stream reads, the global log and conflict catch-up all go
//! through it. Register chains oldest first (v1→v2, then v2→v3).
//!
//! [`SemanticVersionEventUpcaster`] is the ready-made kind: it fires for one event type when
//! the stored version is older than its target (versions like "1", "2" or "1.2.0").

use std::fmt;

pub use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent};

/// An ordered registry of upcasters, shared by every read path of one store.
#[derive(Default)]
pub struct Upcasters {
    chain: Vec<Box<dyn EventUpcaster>>,
}

impl Upcasters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an upcaster after the ones already registered.
    pub fn register(mut self, upcaster: impl EventUpcaster + 'static) -> Self {
        self.chain.push(Box::new(upcaster));
        self
    }

    /// Adds an upcaster that turns `event_type` events older than `to_version` into
    /// `to_version` by rewriting the payload.
    ///
    /// # Panics
    /// When `to_version` is not a numeric version such as "2" or "2.1.0" (a programming error,
    /// caught by the first test that builds the registry).
    pub fn register_fn(
        self,
        event_type: &str,
        to_version: &str,
        rewrite: impl Fn(serde_json::Value) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.register(SemanticVersionEventUpcaster::new(
            event_type,
            to_version,
            Box::new(rewrite),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// Applies every matching upcaster, in order.
    pub fn upcast(&self, event: SerializedEvent) -> SerializedEvent {
        self.chain.iter().fold(event, |event, upcaster| {
            if upcaster.can_upcast(&event.event_type, &event.event_version) {
                upcaster.upcast(event)
            } else {
                event
            }
        })
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upcasters")
            .field("count", &self.chain.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(version: &str, payload: serde_json::Value) -> SerializedEvent {
        SerializedEvent::new(
            "t/k".into(),
            1,
            "Thing".into(),
            "thing.renamed".into(),
            version.into(),
            payload,
            json!({}),
        )
    }

    fn registry() -> Upcasters {
        Upcasters::new()
            .register_fn("thing.renamed", "2", |mut payload| {
                if let Some(name) = payload.get("name").cloned() {
                    payload["display_name"] = name;
                }
                payload
            })
            .register_fn("thing.renamed", "3", |mut payload| {
                payload["locale"] = json!("en");
                payload
            })
    }

    #[test]
    fn given_a_v1_event_when_upcast_then_the_chain_yields_the_current_shape() {
        let upcast = registry().upcast(event("1", json!({"name": "x"})));
        assert_eq!(upcast.event_version, "3.0.0");
        assert_eq!(
            upcast.payload,
            json!({"name": "x", "display_name": "x", "locale": "en"})
        );
    }

    #[test]
    fn given_a_current_event_when_upcast_then_it_is_unchanged() {
        let current = event("3", json!({"display_name": "x", "locale": "fr"}));
        assert_eq!(registry().upcast(current.clone()), current);
    }
}
