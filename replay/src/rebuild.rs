//! Read-model rebuilds driven from the event store, and the comparison of live read models
//! with the event store.
//!
//! [`rebuild_read_models`] runs the projections' shadow rebuild and swap over a [`LogSource`],
//! reporting progress through a callback (the CLI prints [`progress_line`]s to stderr) and
//! returning a summary. [`verify_projections`] lists where the live models disagree with a
//! fresh fold of the log: streams whose applied sequence differs from the stream's head, and
//! orders whose status or total differs from the Order aggregate's own fold.

use std::time::{Duration, Instant};

use commerce_aggregates::order::Order;
use commerce_eventstore::{PgEventStore, StreamId};
use commerce_projections::{Progress, Rebuild, rebuild};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::error::ReplayError;
use crate::history::{Upto, history};
use crate::source::LogSource;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildSummary {
    pub events: u64,
    pub elapsed: Duration,
}

/// Rebuilds `what` from the event store and swaps it in.
pub async fn rebuild_read_models(
    store: &PgEventStore,
    what: Rebuild,
    progress: impl FnMut(Progress) + Send,
) -> Result<RebuildSummary, ReplayError> {
    let started = Instant::now();
    let mut source = LogSource::new(store);
    let events = rebuild(store.pool(), &mut source, what, progress).await?;
    Ok(RebuildSummary {
        events,
        elapsed: started.elapsed(),
    })
}

/// One progress line, e.g. `rebuild: 1500/3000 events (50%)`.
pub fn progress_line(progress: Progress) -> String {
    if progress.swapped {
        return format!("rebuild: {} events, read models swapped in", progress.read);
    }
    match progress.total {
        Some(total) if total > 0 => format!(
            "rebuild: {}/{total} events ({}%)",
            progress.read,
            progress.read.saturating_mul(100) / total
        ),
        _ => format!("rebuild: {} events", progress.read),
    }
}

/// A disagreement between a live read model and the event store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectionDifference {
    pub tenant_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub field: String,
    /// What the read model holds (`None`: no row).
    pub read_model: Option<String>,
    /// What the event store's fold gives (`None`: no events).
    pub event_store: Option<String>,
}

/// Lists the differences between the live read models (`rm`) and the event store.
pub async fn verify_projections(
    store: &PgEventStore,
) -> Result<Vec<ProjectionDifference>, ReplayError> {
    let pool = store.pool();
    let mut differences = Vec::new();
    let heads = sqlx::query(
        "WITH heads AS ( \
             SELECT split_part(aggregate_id, '/', 1) AS tenant_id, aggregate_type, \
                    substr(aggregate_id, strpos(aggregate_id, '/') + 1) AS aggregate_id, \
                    max(sequence) AS head \
             FROM events GROUP BY aggregate_type, aggregate_id) \
         SELECT coalesce(h.tenant_id, s.tenant_id) AS tenant_id, \
                coalesce(h.aggregate_type, s.aggregate_type) AS aggregate_type, \
                coalesce(h.aggregate_id, s.aggregate_id) AS aggregate_id, \
                h.head, s.last_sequence \
         FROM heads h FULL JOIN rm.stream_state s \
              ON s.tenant_id = h.tenant_id AND s.aggregate_type = h.aggregate_type \
             AND s.aggregate_id = h.aggregate_id \
         WHERE h.head IS DISTINCT FROM s.last_sequence \
         ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    for row in &heads {
        let head: Option<i64> = row.try_get("head")?;
        let applied: Option<i64> = row.try_get("last_sequence")?;
        differences.push(ProjectionDifference {
            tenant_id: row.try_get("tenant_id")?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            field: "last_sequence".into(),
            read_model: applied.map(|n| n.to_string()),
            event_store: head.map(|n| n.to_string()),
        });
    }
    let orders = sqlx::query(
        "SELECT tenant_id, order_id::text AS order_id, status, total_minor FROM rm.orders \
         ORDER BY tenant_id, order_id",
    )
    .fetch_all(pool)
    .await?;
    for row in &orders {
        let tenant: String = row.try_get("tenant_id")?;
        let order_id: String = row.try_get("order_id")?;
        let status: String = row.try_get("status")?;
        let total: i64 = row.try_get("total_minor")?;
        let stream = StreamId::new(tenant.as_str(), order_id.as_str())?;
        let folded = match history::<Order>(store, &stream, Upto::End).await {
            Ok(history) => Some(history.state),
            Err(ReplayError::NotFound(_)) => None,
            Err(error) => return Err(error),
        };
        let field = |name: &str| {
            folded
                .as_ref()
                .and_then(|state| state.get(name))
                .map(|value| {
                    value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned)
                })
        };
        for (name, live, fresh) in [
            ("status", status, field("status")),
            ("total_minor", total.to_string(), field("total_minor")),
        ] {
            if fresh.as_deref() != Some(live.as_str()) {
                differences.push(ProjectionDifference {
                    tenant_id: tenant.clone(),
                    aggregate_type: "order".into(),
                    aggregate_id: order_id.clone(),
                    field: name.into(),
                    read_model: Some(live),
                    event_store: fresh,
                });
            }
        }
    }
    Ok(differences)
}
