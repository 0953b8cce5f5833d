//! One run: services up, (a)'s INSERT baseline measured, engine launched, scenarios in order
//! (a) → (c) → (b) → (d) → (e),
//! memory (f) read along the way, then the report; everything started is stopped again.
//! A scenario that fails is reported and the others still run.

use std::time::Duration;

use anyhow::Context;

use crate::engine::{Binaries, Engine};
use crate::plan::{Plan, Scenario};
use crate::report::{self, Report};
use crate::scenarios::{Bench, hot, latency, rebuild, relay, throughput};
use crate::services::Services;

/// The steady rate of (c) when (a) did not run.
const DEFAULT_LATENCY_RATE: u64 = 100;
/// The highest steady rate of (c) in quick mode.
const QUICK_LATENCY_RATE: u64 = 50;

/// Runs `plan`; returns whether every number is sane.
pub async fn run(plan: Plan) -> anyhow::Result<bool> {
    let binaries = Binaries::locate(plan.profile)?;
    if plan.build {
        binaries.build().await?;
    }
    std::fs::create_dir_all(&plan.out).with_context(|| format!("create {}", plan.out.display()))?;
    let services = Services::start().await?;
    let baselines = if plan.runs(Scenario::Throughput) {
        match throughput::baselines(&services, &plan).await {
            Ok(baselines) => Some(baselines),
            Err(error) => {
                services.stop().await?;
                return Err(error);
            }
        }
    } else {
        None
    };
    let engine = match Engine::start(
        &binaries,
        services.database_url(),
        services.brokers(),
        &plan.out,
        &plan.components,
        &plan.engine_env,
    )
    .await
    {
        Ok(engine) => engine,
        Err(error) => {
            services.stop().await?;
            return Err(error);
        }
    };
    let pool = services.pool(8).await?;
    let operator = format!("Bearer {}", engine.token("bench-operator", "operator")?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()?;
    let bench = Bench {
        plan,
        services,
        binaries,
        engine,
        client,
        pool,
        operator,
    };
    let mut report = Report::new(&bench);
    scenarios(&bench, baselines.as_deref(), &mut report).await;
    let Bench {
        plan,
        services,
        engine,
        pool,
        ..
    } = bench;
    pool.close().await;
    engine.stop().await?;
    services.stop().await?;
    report.finish();
    report::print(&report);
    let written = report::write(&report, &plan.out)?;
    eprintln!("wrote {}", written.join(", "));
    Ok(report.sane)
}

async fn scenarios(bench: &Bench, baselines: Option<&[f64]>, report: &mut Report) {
    let plan = &bench.plan;
    if let Some(baselines) = baselines {
        report.throughput = report.outcome("a", throughput::run(bench, baselines).await);
    }
    // (c) before (b): the process managers settle (b)'s thousands of participants for minutes
    // after its last join, and (c) measures a steady rate, not that backlog.
    if plan.runs(Scenario::Latency) {
        if bench.projects() {
            let rate = plan.latency_rate.unwrap_or_else(|| {
                report
                    .throughput
                    .as_ref()
                    .map_or(DEFAULT_LATENCY_RATE, |a| {
                        // Half of (a)'s peak, as the issue asks; at least 1 request/s.
                        (a.max_rate() / 2.0).max(1.0) as u64
                    })
            });
            // Quick mode (a debug build in CI) checks that the path works, not its limits.
            let rate = if plan.quick {
                rate.min(QUICK_LATENCY_RATE)
            } else {
                rate
            };
            report.latency = report.outcome("c", latency::run(bench, rate).await);
        } else {
            report.skip(
                "c",
                "the engine runs no projections: this `commerce` has neither `all` nor `project`",
            );
        }
    }
    if plan.runs(Scenario::Hot) {
        report.hot = report.outcome("b", hot::run(bench).await);
    }
    if plan.runs(Scenario::Relay) {
        if bench.binaries.relay_bench().is_file() {
            report.relay = report.outcome("d", relay::run(bench).await);
        } else {
            report.skip("d", "relay_bench is not built (run without --no-build)");
        }
    }
    if plan.runs(Scenario::Rebuild) {
        report.rebuild = report.outcome("e", rebuild::run(bench).await);
    }
}
