//! The relay against the real PostgreSQL and the shared Tansu broker: completeness, order,
//! the contract's envelope and headers, a late-committing transaction (F7), a crashed relay,
//! and standby takeover.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use commerce_relay::RelayRole;
use support::*;

const READ_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_concurrent_writers_then_every_event_is_on_its_topics_in_aggregate_order() {
    let db = database().await;
    let brokers = shared_brokers();
    let config = config(&brokers);
    let relay = start(config.clone(), db.pool());

    let written = concurrent_writers(db.pool(), 8, 5, 40).await;
    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);

    let duplicates = assert_complete_and_ordered(&config, &written, &received);
    eprintln!(
        "received {} messages, {duplicates} duplicates",
        received.len()
    );
    let status = relay.status.clone();
    eventually(Duration::from_secs(10), "lag 0", || {
        let snapshot = status.snapshot();
        snapshot.lag_events == 0 && snapshot.events_published >= written.len() as u64
    })
    .await;
    assert_eq!(status.snapshot().role, RelayRole::Active);
    assert_eq!(status.snapshot().broker_reachable, Some(true));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_published_events_then_the_relay_announces_them_once_they_are_on_the_broker() {
    let db = database().await;
    let brokers = shared_brokers();
    let config = config(&brokers);
    let mut listener = sqlx::postgres::PgListener::connect_with(db.pool())
        .await
        .expect("listener");
    listener
        .listen(commerce_contracts::topics::RELAYED_CHANNEL)
        .await
        .expect("listen");
    let relay = start(config.clone(), db.pool());

    let written = [NewEvent::order("order-announced", 1)];
    append(db.pool(), &written).await;
    let announcement = tokio::time::timeout(READ_TIMEOUT, listener.recv())
        .await
        .expect("an announcement")
        .expect("a notification");
    assert_eq!(
        announcement.channel(),
        commerce_contracts::topics::RELAYED_CHANNEL
    );
    // By then the event is on its topics: a consumer woken by it finds the event.
    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    assert_complete_and_ordered(&config, &written, &received);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_an_event_then_envelope_key_and_headers_match_the_contract() {
    let db = database().await;
    let brokers = shared_brokers();
    let config = config(&brokers);
    let relay = start(config.clone(), db.pool());

    let event = NewEvent::order("order-42", 1);
    append(db.pool(), std::slice::from_ref(&event)).await;
    let written = [event];
    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    relay.stop().await;

    let (stored_id, position, recorded_ms): (uuid::Uuid, i64, f64) = sqlx::query_as(
        "SELECT event_id, position, (EXTRACT(EPOCH FROM recorded_at) * 1000)::float8 FROM events",
    )
    .fetch_one(db.pool())
    .await
    .expect("stored event");
    assert_eq!(received.len(), 2, "one message per topic: {received:#?}");
    let prefix = &config.topics.prefix;
    let topics: HashSet<String> = received.iter().map(|m| m.topic.clone()).collect();
    assert_eq!(
        topics,
        HashSet::from([
            format!("{prefix}commerce.order"),
            format!("{prefix}order.created")
        ])
    );
    for message in &received {
        assert_eq!(message.key, "order-42");
        let envelope = &message.envelope;
        assert_eq!(envelope["event_id"], stored_id.to_string());
        assert_eq!(envelope["topic"], message.topic.as_str());
        assert_eq!(envelope["event_type"], "order.created");
        assert_eq!(envelope["event_version"], 1);
        assert_eq!(envelope["aggregate_type"], "order");
        assert_eq!(envelope["aggregate_id"], "order-42");
        assert_eq!(envelope["sequence"], 1);
        assert_eq!(envelope["position"], position);
        assert_eq!(envelope["tenant_id"], TENANT);
        assert!(envelope["correlation_id"].is_string());
        assert!(envelope["causation_id"].is_null());
        assert_eq!(
            envelope["timestamp"].as_i64(),
            Some(recorded_ms.floor() as i64)
        );
        assert!(
            envelope["occurred_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(envelope["payload"]["event_type"], "order.created");
        let headers: Vec<(&str, &str)> = message
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            [
                ("content-type", "application/json"),
                ("event_id", stored_id.to_string().as_str()),
                ("event_type", "order.created"),
                ("tenant_id", TENANT),
            ]
        );
    }
}

/// F7: a transaction that appended first but commits last is not skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_long_open_transaction_then_the_relay_does_not_skip_its_event() {
    let db = database().await;
    let brokers = shared_brokers();
    let config = config(&brokers);
    let relay = start(config.clone(), db.pool());

    let slow = NewEvent::order("slow-order", 1);
    let mut open = db.pool().begin().await.expect("begin");
    support::insert(&mut open, std::slice::from_ref(&slow)).await;
    let mut written = concurrent_writers(db.pool(), 4, 2, 20).await;
    // The later transactions committed while the first stays open; let the relay run a while.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cursor_while_open = relay.status.snapshot().cursor;
    let slow_position: i64 = sqlx::query_scalar("SELECT min(position) FROM events")
        .fetch_one(db.pool())
        .await
        .expect("min");
    open.commit().await.expect("commit the slow transaction");
    written.push(slow);

    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    assert_complete_and_ordered(&config, &written, &received);
    assert!(
        received.iter().any(|m| m.key == "slow-order"),
        "the slow transaction's event was skipped"
    );
    // The horizon held the relay back instead of letting it move past the open transaction.
    assert!(
        cursor_while_open.position < slow_position || cursor_while_open.transaction_id == 0,
        "cursor {cursor_while_open:?} moved past the open transaction"
    );
    relay.stop().await;
}

/// The relay crashes mid-stream (task dropped, no graceful shutdown) and a new one resumes
/// from the persisted cursor: nothing lost, duplicates possible and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_relay_killed_mid_batch_when_restarted_then_nothing_is_lost() {
    let db = database().await;
    let brokers = shared_brokers();
    let mut config = config(&brokers);
    config.batch_size = 50;
    let written = concurrent_writers(db.pool(), 4, 5, 150).await;

    let first = start(config.clone(), db.pool());
    let status = first.status.clone();
    eventually(Duration::from_secs(60), "some events published", || {
        status.snapshot().events_published > 0
    })
    .await;
    first.kill().await;
    let published_before = status.snapshot().events_published;

    let second = start(config.clone(), db.pool());
    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    let duplicates = assert_complete_and_ordered(&config, &written, &received);
    eprintln!(
        "first relay acknowledged {published_before} of {} before the kill; \
         {duplicates} duplicate messages after the restart",
        written.len()
    );
    let status = second.status.clone();
    eventually(Duration::from_secs(10), "lag 0", || {
        status.snapshot().lag_events == 0
    })
    .await;
    second.stop().await;
}

/// Two instances: one publishes, the other waits; when the active one dies the standby takes
/// over and publishes what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_two_instances_then_one_publishes_and_the_standby_takes_over() {
    let db = database().await;
    let brokers = shared_brokers();
    let config = config(&brokers);
    let active = start(config.clone(), db.pool());
    let active_status = active.status.clone();
    eventually(Duration::from_secs(10), "first instance active", || {
        active_status.snapshot().role == RelayRole::Active
    })
    .await;
    let standby = start(config.clone(), db.pool());
    let standby_status = standby.status.clone();
    eventually(Duration::from_secs(10), "second instance standby", || {
        standby_status.snapshot().role == RelayRole::Standby
    })
    .await;

    let mut written = concurrent_writers(db.pool(), 2, 2, 10).await;
    eventually(Duration::from_secs(30), "first batch published", || {
        active_status.snapshot().events_published >= 20
    })
    .await;
    assert_eq!(standby_status.snapshot().events_published, 0);

    active.kill().await;
    eventually(Duration::from_secs(10), "standby takes over", || {
        standby_status.snapshot().role == RelayRole::Active
    })
    .await;
    written.extend(concurrent_writers(db.pool(), 2, 2, 10).await);
    let received = read_all(&brokers, &config, &written, READ_TIMEOUT);
    assert_complete_and_ordered(&config, &written, &received);
    eventually(
        Duration::from_secs(30),
        "standby publishes the rest",
        || standby_status.snapshot().events_published >= 20,
    )
    .await;
    standby.stop().await;
}
