//! Topic names and topic creation.
//!
//! Names are the contract's ([`commerce_contracts::topics`]): every event goes to its aggregate
//! topic `commerce.<aggregate_type>` and, when seed topics are on, to the seed's per-event topic
//! named after its `event_type` (`order.created`, `shipping.label.created`, ...), both behind
//! the configured prefix.
//! Topics are created with the configured partitions and replication: the whole catalog at
//! start, and any topic not seen yet before a batch that needs it (Tansu 0.6.0 does not
//! create topics on first use).

use std::collections::HashSet;
use std::time::Duration;

use commerce_contracts::topics;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::TopicConfig;
use crate::error::RelayError;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Maps events to topic names.
#[derive(Clone, Debug)]
pub(crate) struct TopicNames {
    prefix: String,
    seed_topics: bool,
}

impl TopicNames {
    pub(crate) fn new(config: &TopicConfig) -> Self {
        Self {
            prefix: config.prefix.clone(),
            seed_topics: config.seed_topics,
        }
    }

    /// `<prefix>commerce.<aggregate_type>`.
    pub(crate) fn aggregate(&self, aggregate_type: &str) -> String {
        self.prefixed(&topics::aggregate_topic(aggregate_type))
    }

    /// `<prefix><event_type>` when seed topics are on.
    pub(crate) fn seed(&self, event_type: &str) -> Option<String> {
        self.seed_topics
            .then(|| self.prefixed(topics::seed_topic(event_type)))
    }

    /// Every topic of the known catalog: six aggregate topics and, if on, every seed topic.
    pub(crate) fn catalog(&self) -> Vec<String> {
        topics::event_topics(self.seed_topics)
            .iter()
            .map(|topic| self.prefixed(topic))
            .collect()
    }

    fn prefixed(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }
}

/// Creates topics once and remembers which exist.
pub(crate) struct TopicAdmin {
    admin: AdminClient<DefaultClientContext>,
    partitions: i32,
    replication: i32,
    known: HashSet<String>,
}

impl std::fmt::Debug for TopicAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicAdmin")
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("known", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl TopicAdmin {
    pub(crate) fn new(brokers: &str, config: &TopicConfig) -> Result<Self, RelayError> {
        let admin = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .map_err(RelayError::Client)?;
        Ok(Self {
            admin,
            partitions: config.partitions,
            replication: config.replication,
            known: HashSet::new(),
        })
    }

    /// Creates those of `topics` not known to exist yet; "already exists" counts as success.
    pub(crate) async fn ensure<'a>(
        &mut self,
        topics: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), RelayError> {
        let mut missing: Vec<&str> = topics
            .into_iter()
            .filter(|topic| !self.known.contains(*topic))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|topic| {
                NewTopic::new(
                    topic,
                    self.partitions,
                    TopicReplication::Fixed(self.replication),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .operation_timeout(Some(ADMIN_TIMEOUT))
            .request_timeout(Some(ADMIN_TIMEOUT));
        let results = self
            .admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|error| RelayError::TopicCreation {
                topic: missing.join(","),
                reason: error.to_string(),
            })?;
        for result in results {
            match result {
                Ok(topic) | Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(%topic, "topic ready");
                    self.known.insert(topic);
                }
                Err((topic, code)) => {
                    return Err(RelayError::TopicCreation {
                        topic,
                        reason: code.to_string(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, seed_topics: bool) -> TopicNames {
        TopicNames::new(&TopicConfig {
            prefix: prefix.to_owned(),
            seed_topics,
            ..TopicConfig::default()
        })
    }

    #[test]
    fn given_no_prefix_then_names_follow_the_contract() {
        let names = names("", true);
        assert_eq!(names.aggregate("order"), "commerce.order");
        assert_eq!(
            names.seed("order.created").as_deref(),
            Some("order.created")
        );
    }

    #[test]
    fn given_a_prefix_then_every_name_carries_it() {
        let names = names("t1-", true);
        assert_eq!(names.aggregate("order"), "t1-commerce.order");
        assert!(names.catalog().iter().all(|topic| topic.starts_with("t1-")));
    }

    #[test]
    fn given_seed_topics_off_then_the_catalog_has_only_the_six_aggregate_topics() {
        let catalog = names("", false).catalog();
        assert_eq!(
            catalog,
            [
                "commerce.order",
                "commerce.inventory",
                "commerce.campaign",
                "commerce.payment",
                "commerce.product",
                "commerce.shipment"
            ]
        );
        assert_eq!(names("", false).seed("order.created"), None);
    }

    #[test]
    fn the_catalog_includes_the_seed_topic_names() {
        let catalog = names("", true).catalog();
        for seed in [
            "order.created",
            "inventory.reserved",
            "inventory.insufficient",
            "campaign.joined",
            "payment.succeeded",
            "shipping.label.created",
        ] {
            assert!(catalog.iter().any(|topic| topic == seed), "{seed} missing");
        }
    }
}
