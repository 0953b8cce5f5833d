//! Connections that plan each statement once.
//!
//! PostgreSQL re-plans a prepared statement on every call while its custom plan, built for
//! the values at hand, looks cheaper than the generic one. For the statements the engine runs
//! thousands of times a second that was always the case, and planning cost more than running
//! them: 57 µs a call for the grouped append (`executor::coalesce`), 72 µs against 44 µs of
//! execution for a log tailer's read (`log`), measured with `pg_stat_statements`
//! (BENCHMARKS.md). Their generic plans are the index scans the custom ones are; the tests of
//! those modules pin them.

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A lazy pool of at most `connections` connections to `pool`'s database whose sessions use
/// `plan_cache_mode = force_generic_plan`, tested before use only if `pool`'s are (the
/// engine's are not: that test is one more round trip per statement).
pub(crate) fn generic_plan_pool(pool: &PgPool, connections: u32) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .options([("plan_cache_mode", "force_generic_plan")]);
    PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(0)
        // Kept for the store's lifetime; without timeouts the pool needs no maintenance task,
        // so a store can still be built outside a runtime.
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .test_before_acquire(pool.options().get_test_before_acquire())
        .connect_lazy_with(options)
}

/// Fills `pool`'s `events` with `count` one-event streams and analyses it, so that plans are
/// chosen as on a log in use rather than on an empty table.
#[cfg(test)]
pub(crate) async fn analysed_events(pool: &PgPool, count: u32) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, metadata) \
         SELECT 'order', 't/o' || g, 1, 'order.created', '1', '{}', '{}' \
         FROM generate_series(1, $1) AS g",
    )
    .bind(i64::from(count))
    .execute(pool)
    .await
    .expect("events");
    sqlx::query("ANALYZE events")
        .execute(pool)
        .await
        .expect("statistics");
}

/// The plan PostgreSQL keeps for `statement` on a [`generic_plan_pool`] connection, prepared
/// with `parameter_types` and explained for `arguments` (both as SQL lists): the top node of
/// `EXPLAIN (FORMAT JSON)`.
#[cfg(test)]
pub(crate) async fn generic_plan(
    pool: &PgPool,
    statement: &str,
    parameter_types: &str,
    arguments: &str,
) -> serde_json::Value {
    let pool = generic_plan_pool(pool, 1);
    let mut connection = pool.acquire().await.expect("connection");
    sqlx::query(&format!("PREPARE probe({parameter_types}) AS {statement}"))
        .execute(&mut *connection)
        .await
        .expect("prepare");
    let plan: serde_json::Value =
        sqlx::query_scalar(&format!("EXPLAIN (FORMAT JSON) EXECUTE probe({arguments})"))
            .fetch_one(&mut *connection)
            .await
            .expect("plan");
    plan[0]["Plan"].clone()
}
