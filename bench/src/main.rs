//! `commerce-bench`: the engine's benchmark, one command.
//!
//! It starts what it needs (PostgreSQL from `DATABASE_URL` or a private cluster, always a
//! private Tansu broker so no other run's topics leak in), builds and launches the `commerce`
//! binary as a child process with its own database, and runs each scenario beside a baseline
//! measured in the same run on the same services:
//!
//! | scenario | measured | baseline |
//! |---|---|---|
//! | (a) `throughput` | `PUT /inventory` on distinct aggregates at 1, 8, 64 clients | single-row INSERT commits |
//! | (b) `hot` | campaign joins on one aggregate, throughput per tenth of the run, oversell check | (a) |
//! | (c) `latency` | command accepted → visible through the query API at half of (a)'s peak | the 100 ms target |
//! | (d) `relay` | the relay's backlog drain (`relay_bench` example of `commerce-relay`) | a raw producer |
//! | (e) `rebuild` | read-model rebuild and log verification | a raw sequential read of `events` |
//! | (f) `memory` | the engine's RSS and peak (VmHWM) through (a) and after (b) | the 300 MiB target |
//!
//! Output: a table on the terminal, `<out>/bench-<mode>.json` and `<out>/bench-<mode>.svg`.
//! `--quick` runs every scenario for a few seconds and checks that the numbers are sane (the
//! exit code says so); the full mode is for people and for `BENCHMARKS.md`.
//!
//! Layout: `plan` (mode parameters), `services` (database and broker), `engine` (build,
//! launch, tokens, memory probes), `load` (HTTP load generators), `stats`, `baseline`,
//! `scenarios` (one module per scenario), `report` (table, JSON, targets), `chart` (SVG).

// Rates, ratios and percentiles are measurements, never money: floats are the right tool here.
#![allow(clippy::float_arithmetic)]

mod baseline;
mod chart;
mod engine;
mod load;
mod plan;
mod report;
mod run;
mod scenarios;
mod services;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::plan::{Plan, Profile, Scenario};

/// The `commerce` binary's allocator: (e) runs the auditor tooling (`commerce replay …`)
/// in this process, and its figures must be those of the binary people run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks the engine against baselines measured in the same run.
///
/// Uses DATABASE_URL's server when set (a fresh database is created there and dropped
/// afterwards), else starts a private PostgreSQL; always starts a private Tansu broker.
#[derive(Debug, Parser)]
#[command(name = "commerce-bench", version, about)]
struct Args {
    /// A few seconds per scenario: checks that the tool runs and the numbers are sane (for CI).
    #[arg(long)]
    quick: bool,
    /// Which build of `commerce` to benchmark (and of the relay example); `dev` for quick
    /// mode and `release` for full mode when absent.
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// Use the binaries already built instead of running `cargo build` first.
    #[arg(long)]
    no_build: bool,
    /// Where the JSON and SVG go; `bench-results` in full mode, `target/bench` in quick mode.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Join requests of (b) instead of the mode's default (quick 300, full 100,000).
    #[arg(long)]
    hot_requests: Option<usize>,
    /// Commands/s of (c) instead of half of (a)'s peak (or 100/s without (a)).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    latency_rate: Option<u64>,
    /// Only these scenarios (comma-separated); all when absent.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Run only these `commerce` subcommands (comma-separated, each its own process; `serve`
    /// is always run) instead of `all`, to see what the others cost the scenarios; settling
    /// between phases then waits only for what runs.
    #[arg(long, value_delimiter = ',', value_parser = ["serve", "relay", "project", "workflows"])]
    components: Vec<String>,
    /// A setting for the engine's processes, `KEY=VALUE` (repeatable), e.g.
    /// `--engine-env COMMERCE_PROJECTION_FETCH_WAIT_MS=10`; it overrides the bench's own.
    #[arg(long = "engine-env", value_parser = engine_setting)]
    engine_env: Vec<(String, String)>,
}

/// Parses `KEY=VALUE` with a non-empty key.
fn engine_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut plan = Plan::new(
        args.quick,
        args.profile,
        args.only,
        !args.no_build,
        args.out,
    );
    if let Some(requests) = args.hot_requests {
        plan.hot_requests = requests;
    }
    plan.latency_rate = args.latency_rate;
    plan.components = args.components;
    plan.engine_env = args.engine_env;
    match run::run(plan).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("commerce-bench: some numbers are not sane (see above)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("commerce-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::engine_setting;

    #[test]
    fn given_engine_settings_when_parsed_then_only_key_value_pairs_pass() {
        assert_eq!(
            engine_setting("COMMERCE_SEED_TOPICS=false"),
            Ok(("COMMERCE_SEED_TOPICS".to_owned(), "false".to_owned()))
        );
        assert_eq!(
            engine_setting("RUST_LOG=info,sqlx=warn"),
            Ok(("RUST_LOG".to_owned(), "info,sqlx=warn".to_owned()))
        );
        assert_eq!(
            engine_setting("EMPTY="),
            Ok(("EMPTY".to_owned(), String::new()))
        );
        for bad in ["", "NO_VALUE", "=value"] {
            assert!(engine_setting(bad).is_err(), "{bad:?}");
        }
    }
}
