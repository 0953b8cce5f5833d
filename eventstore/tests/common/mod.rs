//! Shared helpers of the integration tests: the counter aggregate and a fresh database.
#![allow(dead_code)]

pub mod counter;

use commerce_devstack::testkit::TestDatabase;
use commerce_eventstore::{CommandContext, EventMetadata, StreamId, migrate};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A fresh, migrated database from the devstack test kit (server in `DATABASE_URL`), with a
/// pool large enough for the concurrency tests. The database lives as long as the
/// [`TestDatabase`].
pub async fn fresh_pool() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create()
        .await
        .expect("test database (is DATABASE_URL set?)");
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .connect(db.url())
        .await
        .expect("connect to test database");
    migrate(&pool).await.expect("migrate");
    (db, pool)
}

pub fn stream(tenant: &str, key: &str) -> StreamId {
    StreamId::new(tenant, key).expect("valid stream id")
}

pub fn context(tenant: &str) -> CommandContext {
    CommandContext::new(EventMetadata::new(tenant, "tester"))
}

pub fn keyed(tenant: &str, key: &str, hash: &str) -> CommandContext {
    CommandContext::new(EventMetadata::new(tenant, "tester").with_idempotency_key(key))
        .with_request_hash(hash)
}
