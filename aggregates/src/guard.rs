//! What every aggregate's handler does the same way: the "not created yet" and "already
//! exists" guards, and writing the decided events.
//!
//! Handlers decide the whole list of events before writing any, so a refused command leaves
//! the sink empty; [`write_all`] is the one place that then hands them to cqrs-es.

use std::fmt::Display;

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

use crate::CommandError;

/// The state of a created aggregate, or `NotFound` naming `kind` (`order`, `payment`, ...).
pub(crate) fn created<T>(state: Option<T>, kind: &str) -> Result<T, CommandError> {
    state.ok_or_else(|| CommandError::NotFound(kind.to_owned()))
}

/// Refuses to create an aggregate that exists: `AlreadyExists` naming `kind` and `id`.
pub(crate) fn not_created(exists: bool, kind: &str, id: impl Display) -> Result<(), CommandError> {
    if exists {
        Err(CommandError::AlreadyExists(format!("{kind} {id}")))
    } else {
        Ok(())
    }
}

/// Writes the decided events in order; the sink applies each to `aggregate` as it goes.
pub(crate) async fn write_all<A: Aggregate>(
    aggregate: &mut A,
    sink: &EventSink<A>,
    events: Vec<A::Event>,
) {
    for event in events {
        sink.write(event, aggregate).await;
    }
}
