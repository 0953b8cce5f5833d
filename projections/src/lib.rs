//! Read side: Kafka consumer groups that build PostgreSQL read models.
