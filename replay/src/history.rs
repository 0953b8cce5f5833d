//! An aggregate's history for auditors: every event with the state after it, up to the end,
//! a sequence or a moment, and the other streams its correlation ids lead to.
//!
//! Events are shown in their current shape: the store's upcasters run on them, and an entry
//! says when the stored version was older (`upcasted_from`). The state after each event is the
//! aggregate's own fold (`cqrs_es::Aggregate::apply`), serialised.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use commerce_eventstore::{PgEventStore, SerializedEvent, StreamId};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::chained::{CHAINED_COLUMNS, ChainedEvent};
use crate::error::ReplayError;

/// How far to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Upto {
    #[default]
    End,
    /// Up to and including this sequence.
    Sequence(u64),
    /// Events recorded at or before this moment.
    Time(DateTime<Utc>),
}

impl Upto {
    fn includes(self, event: &ChainedEvent) -> bool {
        match self {
            Self::End => true,
            Self::Sequence(last) => event.sequence <= last,
            Self::Time(moment) => event.recorded_at <= moment,
        }
    }
}

/// One event and the state after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub sequence: u64,
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: String,
    /// The version shown (after upcasting).
    pub event_version: String,
    /// The stored version when it was older than the shown one.
    pub upcasted_from: Option<String>,
    pub recorded_at: DateTime<Utc>,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub actor: Option<String>,
    pub payload: serde_json::Value,
    pub state: serde_json::Value,
}

/// Another stream that shares a correlation id with this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedStream {
    pub aggregate_type: String,
    /// The aggregate's key (without the tenant).
    pub aggregate_id: String,
    pub events: u64,
}

/// A stream's history up to some point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub aggregate_type: String,
    pub tenant_id: String,
    pub aggregate_id: String,
    /// Sequence of the last included event (0: none).
    pub version: u64,
    /// The state after the last included event.
    pub state: serde_json::Value,
    pub entries: Vec<HistoryEntry>,
    pub related: Vec<RelatedStream>,
}

/// Replays `stream` of aggregate `A` up to `upto`. Fails with `NotFound` when the stream has
/// no events at all (a tenant never sees another's stream: the id includes the tenant).
pub async fn history<A: Aggregate>(
    store: &PgEventStore,
    stream: &StreamId,
    upto: Upto,
) -> Result<History, ReplayError> {
    let sql = format!(
        "SELECT {CHAINED_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(A::TYPE)
        .bind(stream.aggregate_id())
        .fetch_all(store.pool())
        .await?;
    if rows.is_empty() {
        return Err(ReplayError::NotFound(stream.to_string()));
    }
    let mut aggregate = A::default();
    let mut entries = Vec::new();
    let mut correlations = Vec::new();
    let mut past_bound = false;
    for row in &rows {
        let stored = ChainedEvent::from_row(row)?;
        let meta = |key: &str| {
            stored
                .metadata
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        if let Some(correlation) = meta("correlation_id")
            && !correlations.contains(&correlation)
        {
            correlations.push(correlation);
        }
        // The first event past the bound ends the fold: recorded times come from each
        // writer's clock and need not grow along a stream, and folding a later event without
        // an earlier one would show a state that never existed.
        past_bound = past_bound || !upto.includes(&stored);
        if past_bound {
            continue;
        }
        let upcast = store.upcasters().upcast(SerializedEvent::new(
            stored.aggregate_id.clone(),
            usize::try_from(stored.sequence).unwrap_or(usize::MAX),
            stored.aggregate_type.clone(),
            stored.event_type.clone(),
            stored.event_version.clone(),
            stored.payload.clone(),
            stored.metadata.clone(),
        ));
        let event: A::Event = serde_json::from_value(upcast.payload.clone()).map_err(|error| {
            ReplayError::Value(format!(
                "{stream} sequence {}: {} v{} does not decode: {error}",
                stored.sequence, upcast.event_type, upcast.event_version
            ))
        })?;
        aggregate.apply(event);
        entries.push(HistoryEntry {
            sequence: stored.sequence,
            position: stored.position,
            event_id: stored.event_id,
            upcasted_from: (upcast.event_version != stored.event_version)
                .then(|| stored.event_version.clone()),
            event_type: upcast.event_type,
            event_version: upcast.event_version,
            recorded_at: stored.recorded_at,
            correlation_id: meta("correlation_id"),
            causation_id: meta("causation_id"),
            actor: meta("actor"),
            payload: upcast.payload,
            state: serde_json::to_value(&aggregate)?,
        });
    }
    let related = related(store, stream, A::TYPE, &correlations).await?;
    Ok(History {
        aggregate_type: A::TYPE.to_owned(),
        tenant_id: stream.tenant().to_owned(),
        aggregate_id: stream.key().to_owned(),
        version: entries.last().map_or(0, |entry| entry.sequence),
        state: serde_json::to_value(&aggregate)?,
        entries,
        related,
    })
}

/// Streams of the same tenant whose events carry one of `correlations`.
async fn related(
    store: &PgEventStore,
    stream: &StreamId,
    aggregate_type: &str,
    correlations: &[String],
) -> Result<Vec<RelatedStream>, ReplayError> {
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, count(*) AS events FROM events \
         WHERE metadata ->> 'correlation_id' = ANY($1) \
           AND left(aggregate_id, length($2) + 1) = $2 || '/' \
           AND NOT (aggregate_type = $3 AND aggregate_id = $4) \
         GROUP BY aggregate_type, aggregate_id ORDER BY aggregate_type, aggregate_id",
    )
    .bind(correlations)
    .bind(stream.tenant())
    .bind(aggregate_type)
    .bind(stream.aggregate_id())
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("aggregate_id")?;
            let events: i64 = row.try_get("events")?;
            Ok(RelatedStream {
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: id
                    .split_once('/')
                    .map_or(id.clone(), |(_, key)| key.to_owned()),
                events: u64::try_from(events).unwrap_or(0),
            })
        })
        .collect()
}

impl History {
    /// A readable table: one block per event with the state after it.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {} (tenant {}), {} event(s) shown, version {}",
            self.aggregate_type,
            self.aggregate_id,
            self.tenant_id,
            self.entries.len(),
            self.version
        );
        let _ = writeln!(
            out,
            "{:>5}  {:<27}  {:<36}  actor",
            "seq", "recorded_at", "event"
        );
        for entry in &self.entries {
            let version = match &entry.upcasted_from {
                Some(stored) => format!("v{} (upcast from v{stored})", entry.event_version),
                None => format!("v{}", entry.event_version),
            };
            let _ = writeln!(
                out,
                "{:>5}  {:<27}  {:<36}  {}",
                entry.sequence,
                entry
                    .recorded_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                format!("{} {version}", entry.event_type),
                entry.actor.as_deref().unwrap_or("-"),
            );
            let _ = writeln!(out, "       state: {}", entry.state);
        }
        if !self.related.is_empty() {
            let _ = writeln!(out, "related streams (by correlation id):");
            for related in &self.related {
                let _ = writeln!(
                    out,
                    "  {} {} ({} event(s))",
                    related.aggregate_type, related.aggregate_id, related.events
                );
            }
        }
        out
    }
}
