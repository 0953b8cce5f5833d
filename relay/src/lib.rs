//! Fan-out: tails the global log and publishes every committed event to Kafka.
