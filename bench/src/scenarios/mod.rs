//! The scenarios, one module each, sharing a [`Bench`]: the running engine, an HTTP client,
//! a pool on the run's database and the memory probe.

pub mod hot;
pub mod latency;
pub mod rebuild;
pub mod relay;
pub mod throughput;

use std::time::{Duration, Instant};

use anyhow::bail;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use sqlx::PgPool;

use crate::engine::{Binaries, Engine, memory};
use crate::plan::Plan;
use crate::services::Services;

/// The header a command answers with and a query waits for.
pub const CONSISTENCY_TOKEN: &str = "consistency-token";

/// What every scenario works with.
#[derive(Debug)]
pub struct Bench {
    pub plan: Plan,
    pub services: Services,
    pub binaries: Binaries,
    pub engine: Engine,
    pub client: reqwest::Client,
    pub pool: PgPool,
    /// `Bearer <operator token>`.
    pub operator: String,
}

impl Bench {
    /// Whether the engine builds read models: the projections run, and the relay publishes
    /// what they read (without both nothing becomes queryable).
    pub fn projects(&self) -> bool {
        self.runs("project") && self.runs("relay")
    }

    /// Whether the process managers run (`workflows`, alone or within `all`).
    fn reacts(&self) -> bool {
        self.runs("workflows")
    }

    fn runs(&self, component: &str) -> bool {
        self.engine
            .layout
            .iter()
            .any(|name| name == "all" || name == component)
    }

    /// The engine's summed memory now, in MiB: (current RSS, peak).
    pub fn memory_mib(&self) -> MemoryMib {
        let now = memory(&self.engine.pids());
        MemoryMib {
            rss_mib: mib(now.rss_kib),
            peak_mib: mib(now.peak_kib),
        }
    }

    /// `PUT /inventory` as the operator; returns the status and the consistency token.
    pub async fn set_stock(&self, sku: &str, quantity: u64) -> anyhow::Result<Option<i64>> {
        let response = self
            .client
            .put(self.engine.url("/inventory"))
            .header(AUTHORIZATION, &self.operator)
            .header(CONTENT_TYPE, "application/json")
            .body(format!(r#"{{"sku":"{sku}","quantity":{quantity}}}"#))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("PUT /inventory answered {}", response.status());
        }
        Ok(consistency_token(&response))
    }

    /// Waits until the engine is idle: no new events for a while, the process managers (when
    /// they run) have read the whole log, and every recent event is projected, so the next
    /// phase does not pay for this one's backlog. Gives up with a note after the plan's
    /// `settle_within`, or earlier when the engine shows no progress (no new event, nothing
    /// newly projected) for the plan's `settle_stall`; a no-op without projections.
    ///
    /// Polling must not take the CPU the engine needs to work off a backlog: the process
    /// managers' cursor is compared with the log's head (two index lookups), and only then are
    /// the read models checked, from the oldest event still unprojected at the previous check
    /// (an applied event stays applied).
    pub async fn settle(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        if !self.projects() {
            return Ok(started.elapsed());
        }
        let (within, stall) = (self.plan.settle_within, self.plan.settle_stall);
        let mut last_head = None;
        let mut from = None;
        // What the last check saw (the head, where the read models' check starts, and the
        // projection workers' committed offsets), and when it last changed. The offsets
        // matter: while a worker works through one partition's backlog, the oldest
        // unprojected event may sit in another one for minutes.
        let mut seen = None;
        let mut progressed_at = started;
        while started.elapsed() < within {
            let (head, read, projected): (i64, bool, i64) =
                sqlx::query_as(READ_TO_HEAD).fetch_one(&self.pool).await?;
            let from = from.get_or_insert(head - RECENT_EVENTS);
            if read || !self.reacts() {
                let pending: Option<i64> = sqlx::query_scalar(FIRST_UNPROJECTED)
                    .bind(*from)
                    .fetch_one(&self.pool)
                    .await?;
                match pending {
                    None if last_head == Some(head) => {
                        if started.elapsed() >= LONG_SETTLE {
                            eprintln!("the engine settled in {:.0?}", started.elapsed());
                        }
                        return Ok(started.elapsed());
                    }
                    // Positions are taken before commit: an event below the head may still
                    // be committing, so the next check looks a little further back.
                    None => *from = (*from).max(head - IN_FLIGHT_MARGIN),
                    Some(position) => *from = position - 1,
                }
            }
            let now_seen = Some((head, *from, projected));
            if seen != now_seen {
                (seen, progressed_at) = (now_seen, Instant::now());
            } else if progressed_at.elapsed() >= stall {
                eprintln!("the engine showed no progress for {stall:?}; going on");
                return Ok(started.elapsed());
            }
            last_head = Some(head);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        eprintln!("the engine was still busy after {within:?}; going on");
        Ok(started.elapsed())
    }
}

/// The newest position; whether the process managers' cursor (`workflow_cursor`) has
/// reached the last event in log order (most events need no reaction, so the event count
/// alone does not show that they are still reading); and the sum of the projection workers'
/// committed offsets, which grows whenever a worker commits a batch (one row per partition).
const READ_TO_HEAD: &str = "SELECT coalesce((SELECT max(position) FROM events), 0), \
     NOT EXISTS (SELECT 1 FROM (SELECT transaction_id, position FROM events \
         ORDER BY transaction_id DESC, position DESC LIMIT 1) e \
       WHERE NOT EXISTS (SELECT 1 FROM workflow_cursor c \
         WHERE (c.transaction_id, c.position) >= (e.transaction_id::text::bigint, e.position))), \
     (SELECT coalesce(sum(next_offset), 0)::bigint FROM rm_meta.projection_offsets)";

/// Settling at least this long is reported: the phase before left a backlog.
const LONG_SETTLE: Duration = Duration::from_secs(10);

/// How many of the newest events the first read-model check of [`Bench::settle`] covers.
const RECENT_EVENTS: i64 = 50_000;

/// Positions below the head a check still covers after finding nothing pending.
const IN_FLIGHT_MARGIN: i64 = 1_000;

/// The oldest event after position `$1` that the read models have not applied yet
/// (`rm.stream_state` keeps the last position applied per stream); NULL when there is none.
const FIRST_UNPROJECTED: &str = "SELECT min(e.position) FROM events e \
     LEFT JOIN rm.stream_state s ON s.tenant_id = split_part(e.aggregate_id, '/', 1) \
       AND s.aggregate_type = e.aggregate_type \
       AND s.aggregate_id = substr(e.aggregate_id, strpos(e.aggregate_id, '/') + 1) \
     WHERE e.position > $1 AND (s.last_position IS NULL OR e.position > s.last_position)";

/// A command response's `Consistency-Token`.
pub fn consistency_token(response: &reqwest::Response) -> Option<i64> {
    response
        .headers()
        .get(CONSISTENCY_TOKEN)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

/// Memory in MiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MemoryMib {
    pub rss_mib: f64,
    pub peak_mib: f64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
