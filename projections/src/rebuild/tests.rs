//! The rebuild against a real PostgreSQL: its speed on a generated history (ignored, printed).

use std::time::Instant;

use commerce_devstack::testkit::TestDatabase;

use super::*;
use crate::schema::migrate;
use crate::testing::{History, Rng, VecSource};

#[tokio::test]
#[ignore = "a measurement (the rebuild rate, printed, not asserted); runs in a release build with COMMERCE_MEASURE=1 ./scripts/test.sh (the README's test command with that variable set)"]
async fn rebuild_rate_on_a_generated_history() {
    // Given a generated history of every aggregate type (REBUILD_STREAMS sets its size)
    let db = TestDatabase::create()
        .await
        .expect("a test database (set DATABASE_URL)");
    migrate(db.pool()).await.expect("migrations apply");
    let size = std::env::var("REBUILD_STREAMS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(6_000);
    let mut rng = Rng::new(42);
    let log = History::random(&mut rng, size).interleave(&mut rng);
    let events = log.len();
    // When all read models are rebuilt from it
    let started = Instant::now();
    let read = rebuild(
        db.pool(),
        &mut VecSource(log.into_iter()),
        Rebuild::All,
        |_| {},
    )
    .await
    .expect("rebuild");
    let elapsed = started.elapsed();
    // Then every event was read; the rate is printed
    assert_eq!(read, events as u64);
    println!(
        "rebuild: {events} events in {:.2} s = {:.0} events/s",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
}
