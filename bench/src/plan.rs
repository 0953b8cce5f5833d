//! What one run does: the mode's sizes and durations, the build profile, the scenarios chosen.

use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

/// The cargo profile of the binaries under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Dev,
    Release,
}

impl Profile {
    /// The folder under the target directory that holds this profile's binaries.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Dev => "debug",
            Self::Release => "release",
        }
    }
}

/// One scenario of the issue, (a) to (f).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// (a) command throughput on distinct aggregates.
    Throughput,
    /// (b) one hot aggregate.
    Hot,
    /// (c) accepted → visible latency.
    Latency,
    /// (d) relay throughput.
    Relay,
    /// (e) rebuild and verification.
    Rebuild,
}

/// The parameters of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub quick: bool,
    pub profile: Profile,
    #[serde(skip)]
    pub build: bool,
    #[serde(skip)]
    pub out: PathBuf,
    #[serde(skip)]
    pub only: Vec<Scenario>,
    /// Concurrent clients of (a).
    pub clients: Vec<usize>,
    /// Measured time per concurrency level of (a) (and per baseline level).
    pub level_duration: Duration,
    /// Unmeasured load before the first level: connections, caches, JIT-free but cold pages.
    pub warmup: Duration,
    /// Runs of (a)'s last level on new aggregates after the levels, for (f)'s growth per
    /// aggregate (a slope over several is steadier than one difference: RSS moves by several
    /// MiB from one settled end to the next as the allocator keeps or returns pages).
    pub repeats: usize,
    /// Join requests sent to the hot aggregate in (b).
    pub hot_requests: usize,
    /// Concurrent clients of (b).
    pub hot_clients: usize,
    /// Duration of the steady-rate phase of (c).
    pub latency_duration: Duration,
    /// A fixed rate for (c) instead of half of (a)'s peak.
    pub latency_rate: Option<u64>,
    /// Events in the relay's backlog in (d).
    pub relay_events: usize,
    /// Events/s of the relay example's steady phase in (d).
    pub relay_rate: u64,
    /// Longest wait for the engine to become idle between phases.
    pub settle_within: Duration,
    /// How long the engine may show no progress (no new event, nothing newly projected)
    /// before a settle gives up early: it is stuck, not busy.
    pub settle_stall: Duration,
    /// The `commerce` subcommands to run, each its own process, instead of `all`; empty for
    /// `all`.
    pub components: Vec<String>,
    /// Settings given to every `commerce` process on top of the bench's own (e.g.
    /// `COMMERCE_SEED_TOPICS=false`), to measure what a knob changes; recorded in the JSON.
    pub engine_env: Vec<(String, String)>,
}

impl Plan {
    /// The plan of a quick (CI) or full run.
    pub fn new(
        quick: bool,
        profile: Option<Profile>,
        only: Vec<Scenario>,
        build: bool,
        out: Option<PathBuf>,
    ) -> Self {
        let profile = profile.unwrap_or(if quick {
            Profile::Dev
        } else {
            Profile::Release
        });
        let out = out.unwrap_or_else(|| {
            PathBuf::from(if quick {
                "target/bench"
            } else {
                "bench-results"
            })
        });
        let seconds = Duration::from_secs;
        if quick {
            Self {
                quick,
                profile,
                build,
                out,
                only,
                clients: vec![1, 8, 64],
                level_duration: seconds(1),
                warmup: Duration::from_millis(500),
                repeats: 1,
                hot_requests: 300,
                hot_clients: 64,
                latency_duration: seconds(2),
                latency_rate: None,
                relay_events: 1_000,
                relay_rate: 50,
                settle_within: seconds(5),
                settle_stall: seconds(5),
                components: Vec::new(),
                engine_env: Vec::new(),
            }
        } else {
            Self {
                quick,
                profile,
                build,
                out,
                only,
                clients: vec![1, 8, 64],
                level_duration: seconds(15),
                warmup: seconds(3),
                repeats: 4,
                hot_requests: 100_000,
                hot_clients: 64,
                latency_duration: seconds(30),
                latency_rate: None,
                relay_events: 20_000,
                relay_rate: 200,
                // After (b)'s last join the process managers settle the sold-out campaign:
                // pay, close, capture and place and fulfil an order per participant, 16
                // events each: about two minutes for 10,000 joins, so about twenty for the
                // default 100,000. (d) and (e) should not share the cores with them, so the
                // settle waits as long as the engine makes progress, up to this cap.
                settle_within: seconds(45 * 60),
                settle_stall: seconds(120),
                components: Vec::new(),
                engine_env: Vec::new(),
            }
        }
    }

    /// Whether `scenario` is to run.
    pub fn runs(&self, scenario: Scenario) -> bool {
        self.only.is_empty() || self.only.contains(&scenario)
    }

    /// `quick` or `full`, for file names and the report.
    pub fn mode(&self) -> &'static str {
        if self.quick { "quick" } else { "full" }
    }
}
