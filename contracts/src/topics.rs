//! Topic names: the six aggregate topics, the seed's per-event topics and the analyst streams.
//!
//! Every event goes to its aggregate topic `commerce.<aggregate_type>` (the aggregate's complete
//! ordered stream, keyed by aggregate) and, when seed topics are on, to a topic named after its
//! `event_type`. Deployments may put a prefix in front of every name (tests do); these are the
//! unprefixed names.

use crate::EventSet;
use crate::events::{
    CampaignEvent, EventDescriptor, InventoryEvent, OrderEvent, PaymentEvent, ProductEvent,
    ShipmentEvent,
};

/// The PostgreSQL `NOTIFY` channel (in the engine's database) on which the relay announces
/// that it published to the aggregate topics, at most about twice a second. A projection worker
/// that found nothing to fetch for a while stops fetching and resumes on it: an idle engine
/// then keeps the broker idle too.
pub const RELAYED_CHANNEL: &str = "commerce_relayed";

/// The prefix of the aggregate topics.
pub const AGGREGATE_TOPIC_PREFIX: &str = "commerce.";
/// Every order event.
pub const ORDER: &str = "commerce.order";
/// Every inventory event.
pub const INVENTORY: &str = "commerce.inventory";
/// Every campaign event.
pub const CAMPAIGN: &str = "commerce.campaign";
/// Every payment event.
pub const PAYMENT: &str = "commerce.payment";
/// Every product event.
pub const PRODUCT: &str = "commerce.product";
/// Every shipment event.
pub const SHIPMENT: &str = "commerce.shipment";
/// The six aggregate topics.
pub const AGGREGATE_TOPICS: [&str; 6] = [ORDER, INVENTORY, CAMPAIGN, PAYMENT, PRODUCT, SHIPMENT];

/// An order's current summary on every change ([`crate::AnalyticsOrder`]), keyed by order id;
/// compactable, so the latest summary per order wins.
pub const ANALYTICS_ORDERS: &str = "analytics.orders";
/// One fact per sold line ([`crate::AnalyticsOrderLine`]), keyed `order_id:line_no`.
pub const ANALYTICS_ORDER_LINES: &str = "analytics.order_lines";
/// The analyst streams.
pub const ANALYTICS_TOPICS: [&str; 2] = [ANALYTICS_ORDERS, ANALYTICS_ORDER_LINES];

/// The aggregate topic of an aggregate type: `commerce.<aggregate_type>`.
#[must_use]
pub fn aggregate_topic(aggregate_type: &str) -> String {
    format!("{AGGREGATE_TOPIC_PREFIX}{aggregate_type}")
}

/// The seed's per-event topic of an event: its `event_type` itself (`order.created`).
#[must_use]
pub fn seed_topic(event_type: &str) -> &str {
    event_type
}

/// Every event of the six aggregates, grouped by aggregate in [`AGGREGATE_TOPICS`] order.
#[must_use]
pub fn event_catalog() -> Vec<EventDescriptor> {
    [
        OrderEvent::catalog(),
        InventoryEvent::catalog(),
        CampaignEvent::catalog(),
        PaymentEvent::catalog(),
        ProductEvent::catalog(),
        ShipmentEvent::catalog(),
    ]
    .concat()
}

/// Every topic events are published to (what the relay writes): aggregate topics, then (if
/// `seed_topics`) one per event type.
#[must_use]
pub fn event_topics(seed_topics: bool) -> Vec<String> {
    let aggregates = AGGREGATE_TOPICS.iter().map(|topic| (*topic).to_owned());
    let seeds = event_catalog()
        .into_iter()
        .filter(|_| seed_topics)
        .map(|event| seed_topic(event.event_type).to_owned());
    aggregates.chain(seeds).collect()
}

/// Every topic the engine publishes to: [`event_topics`], then the analyst streams.
#[must_use]
pub fn all_topics(seed_topics: bool) -> Vec<String> {
    let analytics = ANALYTICS_TOPICS.iter().map(|topic| (*topic).to_owned());
    event_topics(seed_topics)
        .into_iter()
        .chain(analytics)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_topics_follow_the_aggregate_types() {
        let types = [
            OrderEvent::AGGREGATE_TYPE,
            InventoryEvent::AGGREGATE_TYPE,
            CampaignEvent::AGGREGATE_TYPE,
            PaymentEvent::AGGREGATE_TYPE,
            ProductEvent::AGGREGATE_TYPE,
            ShipmentEvent::AGGREGATE_TYPE,
        ];
        let derived: Vec<String> = types.iter().map(|t| aggregate_topic(t)).collect();
        assert_eq!(derived, AGGREGATE_TOPICS);
    }

    #[test]
    fn seed_topics_keep_the_seed_names() {
        let topics = all_topics(true);
        for seed in [
            "order.created",
            "inventory.reserved",
            "inventory.insufficient",
            "campaign.joined",
            "payment.succeeded",
            "shipping.label.created",
        ] {
            assert!(topics.iter().any(|t| t == seed), "{seed} missing");
        }
    }

    #[test]
    fn topic_names_are_unique_and_seed_topics_can_be_turned_off() {
        let mut topics = all_topics(true);
        let count = topics.len();
        topics.sort();
        topics.dedup();
        assert_eq!(topics.len(), count);
        assert_eq!(all_topics(false).len(), 8);
        assert_eq!(event_topics(false), AGGREGATE_TOPICS);
    }
}
