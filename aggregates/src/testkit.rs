//! Helpers the unit tests of every aggregate share: a fixed clock, money and quantity
//! shorthands, folding events, and running a command the way cqrs-es does.

use chrono::{DateTime, Duration, TimeZone, Utc};
use commerce_domain::{Currency, Money, Quantity};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

/// The tests' "now": every timestamp is an offset from it, so expected events are exact.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("valid time")
}

/// `minutes` after the epoch.
pub(crate) fn at_minute(minutes: i64) -> DateTime<Utc> {
    epoch() + Duration::minutes(minutes)
}

/// `hours` after the epoch.
pub(crate) fn at_hour(hours: i64) -> DateTime<Utc> {
    epoch() + Duration::hours(hours)
}

pub(crate) fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::Eur)
}

/// [`eur`] as the events carry it.
pub(crate) fn wire_eur(minor: i64) -> commerce_contracts::Money {
    eur(minor).into()
}

pub(crate) fn q(value: u32) -> Quantity {
    Quantity::new(value).expect("valid quantity")
}

/// The state `events` fold to from the default.
pub(crate) fn fold<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> A {
    let mut aggregate = A::default();
    for event in events {
        aggregate.apply(event);
    }
    aggregate
}

/// A runtime for property tests that drive handlers directly.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// Runs one command like the framework does and returns its events; a refusal must leave no
/// trace (no event written, the state untouched).
pub(crate) fn execute<A>(
    rt: &tokio::runtime::Runtime,
    services: &A::Services,
    aggregate: &mut A,
    command: A::Command,
) -> Result<Vec<A::Event>, A::Error>
where
    A: Aggregate + Clone + PartialEq + std::fmt::Debug,
{
    let before = aggregate.clone();
    let sink = EventSink::default();
    let result = rt.block_on(aggregate.handle(command, services, &sink));
    let events = rt.block_on(sink.collect());
    match result {
        Ok(()) => Ok(events),
        Err(error) => {
            assert!(events.is_empty(), "a refused command wrote {events:?}");
            assert_eq!(*aggregate, before, "a refused command changed the state");
            Err(error)
        }
    }
}
