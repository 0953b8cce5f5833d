//! The executor's retry counters: a stale cache that loses the append race is re-run once and
//! counted as `command_retries_total{reason="conflict"}`; a cold slot that wrongly guessed its
//! stream was new is counted as `reason="cold"`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use commerce_eventstore::{CommandExecutor, PgEventStore};
use common::counter::{Counter, CounterCommand};
use common::{context, fresh_pool, stream};
use metrics::{
    Counter as MetricCounter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

/// Counters by `name{label=value,...}`; gauges and histograms are ignored.
#[derive(Default)]
struct Counters {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl Counters {
    fn get(&self, rendered: &str) -> u64 {
        self.values
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(rendered)
            .map_or(0, |value| value.load(Ordering::SeqCst))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> MetricCounter {
        let labels: Vec<String> = key
            .labels()
            .map(|label| format!("{}={}", label.key(), label.value()))
            .collect();
        let rendered = format!("{}{{{}}}", key.name(), labels.join(","));
        let value = Arc::clone(
            self.values
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(rendered)
                .or_default(),
        );
        MetricCounter::from_arc(value)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

// A current-thread runtime: the local recorder below sees everything the executor records.
#[tokio::test]
async fn given_a_stale_cache_when_its_append_conflicts_then_the_retry_is_counted() {
    let counters = Counters::default();
    let _recorder = metrics::set_default_local_recorder(&counters);
    let retries = "command_retries_total{aggregate=Counter,reason=conflict}";
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let stale = CommandExecutor::<Counter>::new(store.clone(), ());
    let other = CommandExecutor::<Counter>::new(store.clone(), ());
    let s = stream("t", "metered");

    // given: a warm cache, then another process appends behind its back
    stale
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("warm cache");
    other
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("other writes");
    assert_eq!(counters.get(retries), 0, "no retry without contention");

    // when: the stale cache appends, conflicts, reloads and runs again
    stale
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("applies after one retry");

    // then
    assert_eq!(counters.get(retries), 1);
    assert_eq!(store.stream_version("Counter", &s).await.expect("head"), 3);
}

#[tokio::test]
async fn given_a_cold_slot_on_an_existing_stream_when_its_guess_misses_then_it_is_counted_as_cold()
{
    let counters = Counters::default();
    let _recorder = metrics::set_default_local_recorder(&counters);
    let cold = "command_retries_total{aggregate=Counter,reason=cold}";
    let (_db, pool) = fresh_pool().await;
    let store = PgEventStore::new(pool);
    let other = CommandExecutor::<Counter>::new(store.clone(), ());
    let executor = CommandExecutor::<Counter>::new(store.clone(), ());

    // given: a new stream created through a cold slot (the guess hits: nothing counted)
    let s = stream("t", "guessed");
    other
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("create");
    assert_eq!(counters.get(cold), 0, "a right guess is not a retry");

    // when: a process that never saw the stream appends to it
    executor
        .execute(s.clone(), CounterCommand::Add(1), context("t"))
        .await
        .expect("appends after loading");

    // then: one wrong guess, no conflict retry, and the event follows the stored one
    assert_eq!(counters.get(cold), 1);
    assert_eq!(
        counters.get("command_retries_total{aggregate=Counter,reason=conflict}"),
        0
    );
    assert_eq!(store.stream_version("Counter", &s).await.expect("head"), 2);
}
