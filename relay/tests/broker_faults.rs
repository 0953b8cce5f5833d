//! Broker faults against a private Tansu the test controls: F1 (SIGKILL mid-stream, restart)
//! and F8 (broker unreachable: appends keep succeeding, the relay shows it, the backlog
//! drains once the broker is back).

mod support;

use std::time::Duration;

use support::*;

const READ_TIMEOUT: Duration = Duration::from_secs(90);

/// F1: the broker is killed with SIGKILL while the relay publishes, and restarted: nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_the_broker_killed_mid_stream_when_restarted_then_nothing_is_lost() {
    let mut tansu = PrivateTansu::start();
    let brokers = tansu.brokers();
    let db = database().await;
    let mut config = config(&brokers);
    config.batch_size = 50;
    let relay = start(config.clone(), db.pool());

    let writers = {
        let pool = db.pool().clone();
        tokio::spawn(async move { concurrent_writers(&pool, 4, 5, 200).await })
    };
    let status = relay.status.clone();
    eventually(Duration::from_secs(60), "publishing under way", || {
        status.snapshot().events_published >= 100
    })
    .await;
    tansu.kill();
    let published_at_kill = status.snapshot().events_published;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tansu.restart();
    let written = writers.await.expect("writers");

    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    let duplicates = assert_complete_and_ordered(&config, &written, &received);
    eventually(Duration::from_secs(30), "lag 0", || {
        status.snapshot().lag_events == 0
    })
    .await;
    let snapshot = status.snapshot();
    eprintln!(
        "F1: {} events, {published_at_kill} acknowledged before the kill, {} publish errors, \
         {} events republished, {duplicates} duplicate messages seen",
        written.len(),
        snapshot.publish_errors,
        snapshot.events_republished
    );
    relay.stop().await;
}

/// F8: with the broker down, appends succeed, the relay reports the broker unreachable and
/// a growing lag, and after the broker returns the backlog drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_the_broker_unreachable_then_appends_succeed_and_the_backlog_drains_later() {
    let mut tansu = PrivateTansu::start();
    let brokers = tansu.brokers();
    let db = database().await;
    let mut config = config(&brokers);
    config.delivery_timeout = Duration::from_secs(2);
    let relay = start(config.clone(), db.pool());
    let status = relay.status.clone();

    let mut written = concurrent_writers(db.pool(), 2, 2, 10).await;
    eventually(Duration::from_secs(30), "first events published", || {
        status.snapshot().events_published >= 20
    })
    .await;

    tansu.kill();
    // Commands keep succeeding: the event store does not depend on the broker.
    written.extend(concurrent_writers(db.pool(), 4, 3, 50).await);
    eventually(
        Duration::from_secs(30),
        "broker reported unreachable",
        || {
            let snapshot = status.snapshot();
            snapshot.broker_reachable == Some(false) && !snapshot.is_ready()
        },
    )
    .await;
    eventually(Duration::from_secs(10), "lag visible", || {
        let snapshot = status.snapshot();
        snapshot.lag_events >= 200 && snapshot.lag_seconds > 0.0
    })
    .await;
    assert!(status.snapshot().publish_errors >= 1);

    tansu.restart();
    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    eprintln!("F8 after the restart: {:#?}", status.snapshot());
    assert_complete_and_ordered(&config, &written, &received);
    eventually(Duration::from_secs(30), "backlog drained", || {
        let snapshot = status.snapshot();
        snapshot.lag_events == 0 && snapshot.is_ready()
    })
    .await;
    relay.stop().await;
}
