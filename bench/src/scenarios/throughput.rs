//! (a) Command throughput over HTTP on distinct aggregates: every `PUT /inventory` sets the
//! stock of a SKU never used before (a new aggregate each time), at each concurrency level,
//! beside single-row INSERT commits from as many connections.
//!
//! The INSERT baseline is measured before the engine starts ([`baselines`]): even idle, the
//! engine is not free (its projection worker looks for unannounced records every second, which
//! keeps Tansu at about 0.08 of a core on this machine; 0.45 before it paused while quiet), and
//! a baseline measured beside it would credit the engine with that cost. Memory (f) is read after each
//! level, with the number of aggregates touched so far, and around repeats of the last level
//! on new aggregates: growth at equal concurrency is what an unbounded cache shows (between
//! levels, RSS also grows with the number of clients: connections, buffers, the allocator's
//! per-thread arenas). The growth per aggregate is the slope of RSS over the aggregates the
//! repeats created, each point taken once the engine settled.

use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;

use super::{Bench, MemoryMib};
use crate::baseline;
use crate::engine::reset_peak;
use crate::load::{Run, Stop, classify, closed_loop, transport};
use crate::plan::Plan;
use crate::services::Services;
use crate::stats::{Percentiles, rate, ratio, slope};

/// One concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub clients: usize,
    /// Baseline: single-row INSERT commits per second.
    pub baseline_commits_per_s: f64,
    /// Engine: accepted commands per second.
    pub engine_commands_per_s: f64,
    /// Engine / baseline.
    pub ratio: Option<f64>,
    pub latency: Percentiles,
    pub failed: u64,
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Distinct aggregates created since the engine started (warm-up included).
    pub aggregates_touched: u64,
    /// The engine's memory at the end of the level.
    pub memory: MemoryMib,
}

/// The last level run again on new aggregates, to see whether memory grows with them.
#[derive(Debug, Clone, Serialize)]
pub struct Repeats {
    pub clients: usize,
    /// The engine's memory once the last level had settled, then once each repeat had, with
    /// the new aggregates created since the first point. Every point is taken in the same
    /// state (the end of a level, under load, holds requests and queues in flight, and the
    /// allocator returns pages some time after a level ends).
    pub points: Vec<MemoryPoint>,
}

/// The engine's settled memory after `aggregates` new aggregates.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryPoint {
    pub aggregates: u64,
    pub memory: MemoryMib,
}

impl Repeats {
    /// RSS growth per aggregate the repeats created, bytes: the least-squares slope over
    /// every point.
    pub fn bytes_per_aggregate(&self) -> Option<f64> {
        let points: Vec<(f64, f64)> = self
            .points
            .iter()
            .map(|point| {
                (
                    point.aggregates as f64,
                    point.memory.rss_mib * 1024.0 * 1024.0,
                )
            })
            .collect();
        slope(&points)
    }
}

/// The results of (a).
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub levels: Vec<Level>,
    /// The last level again, for (f)'s growth per aggregate.
    pub repeats: Option<Repeats>,
    /// The engine's peak RSS over every level (f).
    pub peak_mib: f64,
}

impl Throughput {
    /// The highest engine rate of any level.
    pub fn max_rate(&self) -> f64 {
        self.levels
            .iter()
            .map(|level| level.engine_commands_per_s)
            .fold(0.0, f64::max)
    }

    /// The level with `clients` clients.
    pub fn level(&self, clients: usize) -> Option<&Level> {
        self.levels.iter().find(|level| level.clients == clients)
    }
}

/// The baseline of (a): single-row INSERT commits per second at each of the plan's client
/// levels, in order, on the run's database before the engine starts.
pub async fn baselines(services: &Services, plan: &Plan) -> anyhow::Result<Vec<f64>> {
    let pool = services.pool(1).await?;
    baseline::prepare(&pool).await?;
    pool.close().await;
    let mut rates = Vec::with_capacity(plan.clients.len());
    for &clients in &plan.clients {
        rates.push(
            baseline::plain_inserts(services.database_url(), clients, plan.level_duration).await?,
        );
    }
    Ok(rates)
}

/// Runs (a), against `baselines` (see [`baselines`]).
pub async fn run(bench: &Bench, baselines: &[f64]) -> anyhow::Result<Throughput> {
    let warmup = put_new_skus(bench, "W", 8, Stop::After(bench.plan.warmup)).await;
    let mut touched = warmup.ok;
    bench.settle().await?;
    reset_peak(&bench.engine.pids());
    let mut levels = Vec::new();
    for (&clients, &baseline) in bench.plan.clients.iter().zip(baselines) {
        let run = put_new_skus(
            bench,
            &format!("A{clients}"),
            clients,
            Stop::After(bench.plan.level_duration),
        )
        .await;
        touched += run.ok;
        let engine = rate(run.ok, run.elapsed);
        let level = Level {
            clients,
            baseline_commits_per_s: baseline,
            engine_commands_per_s: engine,
            ratio: ratio(engine, baseline),
            latency: Percentiles::of_micros(&run.latencies_us),
            failed: run.failed,
            failures: run.failures,
            aggregates_touched: touched,
            memory: bench.memory_mib(),
        };
        eprintln!(
            "(a) {clients:>2} clients: engine {engine:.0} cmd/s, baseline {baseline:.0} commits/s, {} failed",
            level.failed
        );
        levels.push(level);
        bench.settle().await?;
    }
    let repeats = match bench.plan.clients.last() {
        Some(&clients) => Some(repeat(bench, clients).await?),
        None => None,
    };
    Ok(Throughput {
        peak_mib: bench.memory_mib().peak_mib,
        levels,
        repeats,
    })
}

/// Runs `clients` loops on new aggregates `plan.repeats` times, settling after each.
async fn repeat(bench: &Bench, clients: usize) -> anyhow::Result<Repeats> {
    let mut points = vec![MemoryPoint {
        aggregates: 0,
        memory: bench.memory_mib(),
    }];
    let mut aggregates = 0;
    for round in 1..=bench.plan.repeats {
        let run = put_new_skus(
            bench,
            &format!("R{round}-{clients}"),
            clients,
            Stop::After(bench.plan.level_duration),
        )
        .await;
        bench.settle().await?;
        aggregates += run.ok;
        let memory = bench.memory_mib();
        eprintln!(
            "(a) {clients:>2} clients again ({round} of {}), {aggregates} new aggregates in all: RSS {:.1} MiB, settled",
            bench.plan.repeats, memory.rss_mib
        );
        points.push(MemoryPoint { aggregates, memory });
    }
    Ok(Repeats { clients, points })
}

/// `PUT /inventory` of SKU `<prefix>-<n>` (a new aggregate per request) from `clients` loops.
async fn put_new_skus(bench: &Bench, prefix: &str, clients: usize, stop: Stop) -> Run {
    let client = bench.client.clone();
    let url: Arc<str> = bench.engine.url("/inventory").into();
    let auth: Arc<str> = bench.operator.clone().into();
    let prefix: Arc<str> = prefix.into();
    closed_loop(clients, stop, move |n| {
        let request = client
            .put(&*url)
            .header(AUTHORIZATION, &*auth)
            .header(CONTENT_TYPE, "application/json")
            .body(format!(
                r#"{{"sku":"{prefix}-{n}","quantity":{}}}"#,
                n % 1000 + 1
            ));
        async move {
            match request.send().await {
                Ok(response) => classify(response.status(), &[204], &[]),
                Err(error) => transport(&error),
            }
        }
    })
    .await
}
