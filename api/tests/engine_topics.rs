//! Engine startup creates every topic the engine's components use, on a broker that does not
//! create topics on first use (Tansu via the devstack): the aggregate topics the relay and the
//! projections need, and the analyst streams the projections publish.

use std::time::Duration;

use commerce_api::engine::{EngineConfig, create_topics};
use commerce_contracts::topics::{AGGREGATE_TOPICS, ANALYTICS_TOPICS};
use commerce_devstack::testkit;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

#[tokio::test]
async fn given_a_topic_prefix_when_the_engine_creates_its_topics_then_the_analytics_topics_exist_too()
 {
    let brokers = testkit::kafka_brokers().expect("KAFKA_BROKERS is set");
    let config = EngineConfig {
        topic_prefix: format!("{}.", testkit::unique_topic("start")),
        partitions: 2,
        ..EngineConfig::new(brokers.clone())
    };
    create_topics(&config).await.expect("topics created");
    // A second start finds them and is fine with it.
    create_topics(&config).await.expect("topics found");
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("metadata client");
    for name in AGGREGATE_TOPICS.iter().chain(ANALYTICS_TOPICS.iter()) {
        let topic = format!("{}{name}", config.topic_prefix);
        let metadata = client
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().len());
        assert_eq!(partitions, Some(2), "{topic}");
    }
}
