//! The report: every figure of the run, the targets checked against them, the sanity
//! checks that quick mode exits on; printed as a table and written as JSON (and the chart).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::chart;
use crate::plan::Plan;
use crate::scenarios::Bench;
use crate::scenarios::hot::Hot;
use crate::scenarios::latency::Latency;
use crate::scenarios::rebuild::RebuildResult;
use crate::scenarios::relay::RelayResult;
use crate::scenarios::throughput::Throughput;

/// The memory ceiling for the engine, MiB.
const MEMORY_CEILING_MIB: f64 = 300.0;
/// More than this per extra aggregate touched would mean an unbounded cache.
const BYTES_PER_AGGREGATE_MAX: f64 = 64.0;
/// The p99 ceiling for (c), ms.
const P99_CEILING_MS: f64 = 100.0;
/// (b) is "flat" when its last tenth runs at least this share of its first tenth's rate.
const FLAT_MIN: f64 = 0.8;

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub plan: Plan,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub git_commit: Option<String>,
    pub machine: Machine,
    /// How the engine ran: `["all"]` or the separate components.
    pub engine_layout: Vec<String>,
    pub throughput: Option<Throughput>,
    pub hot: Option<Hot>,
    pub latency: Option<Latency>,
    pub relay: Option<RelayResult>,
    pub rebuild: Option<RebuildResult>,
    pub memory: Option<MemorySummary>,
    pub skipped: Vec<Note>,
    pub errors: Vec<Note>,
    pub targets: Vec<Target>,
    /// Problems that make the numbers meaningless (quick mode's exit code).
    pub insane: Vec<String>,
    pub sane: bool,
}

/// The machine the figures come from.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: Option<f64>,
    pub cpu: Option<String>,
}

/// A scenario that did not run or failed, and why.
#[derive(Debug, Serialize)]
pub struct Note {
    pub scenario: &'static str,
    pub reason: String,
}

/// (f): the engine's memory through (a) and (b).
#[derive(Debug, Serialize)]
pub struct MemorySummary {
    pub peak_through_a_mib: Option<f64>,
    pub rss_after_b_mib: Option<f64>,
    pub peak_through_b_mib: Option<f64>,
    /// RSS growth per aggregate touched while (a)'s last level ran again on new aggregates
    /// (equal concurrency, caches already full), bytes: the slope over the repeats.
    pub bytes_per_aggregate: Option<f64>,
}

/// One of the targets.
#[derive(Debug, Serialize)]
pub struct Target {
    pub scenario: &'static str,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

impl Report {
    /// An empty report of the run `bench` is about to make.
    pub fn new(bench: &Bench) -> Self {
        Self {
            mode: bench.plan.mode(),
            plan: bench.plan.clone(),
            started_at: chrono::Utc::now(),
            git_commit: git_commit(),
            machine: machine(),
            engine_layout: bench.engine.layout.clone(),
            throughput: None,
            hot: None,
            latency: None,
            relay: None,
            rebuild: None,
            memory: None,
            skipped: Vec::new(),
            errors: Vec::new(),
            targets: Vec::new(),
            insane: Vec::new(),
            sane: false,
        }
    }

    /// The value of a scenario that ran, or its error recorded.
    pub fn outcome<T>(&mut self, scenario: &'static str, result: anyhow::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                eprintln!("({scenario}) failed: {error:#}");
                self.errors.push(Note {
                    scenario,
                    reason: format!("{error:#}"),
                });
                None
            }
        }
    }

    /// Records that `scenario` was skipped.
    pub fn skip(&mut self, scenario: &'static str, reason: &str) {
        eprintln!("({scenario}) skipped: {reason}");
        self.skipped.push(Note {
            scenario,
            reason: reason.to_owned(),
        });
    }

    /// Derives (f), checks the targets and the sanity of the figures.
    pub fn finish(&mut self) {
        self.memory = memory_summary(self.throughput.as_ref(), self.hot.as_ref());
        self.targets = targets(self);
        self.insane = insanity(self);
        self.sane = self.insane.is_empty();
    }
}

fn memory_summary(a: Option<&Throughput>, b: Option<&Hot>) -> Option<MemorySummary> {
    if a.is_none() && b.is_none() {
        return None;
    }
    let bytes_per_aggregate = a
        .and_then(|a| a.repeats.as_ref())
        .and_then(|repeats| repeats.bytes_per_aggregate());
    Some(MemorySummary {
        peak_through_a_mib: a.map(|a| a.peak_mib),
        rss_after_b_mib: b.map(|b| b.memory_after.rss_mib),
        peak_through_b_mib: b.map(|b| b.memory_after.peak_mib),
        bytes_per_aggregate,
    })
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{:.0} %", r * 100.0))
}

fn targets(report: &Report) -> Vec<Target> {
    let mut targets = Vec::new();
    let mut add = |scenario, goal: &str, measured: String, met: bool| {
        targets.push(Target {
            scenario,
            goal: goal.to_owned(),
            measured,
            met,
        });
    };
    if let Some(a) = &report.throughput {
        for clients in [8, 64] {
            if let Some(level) = a.level(clients) {
                add(
                    "a",
                    &format!("≥ 50 % of plain INSERT commits/s at {clients} clients"),
                    format!(
                        "{} ({:.0} vs {:.0}/s)",
                        percent(level.ratio),
                        level.engine_commands_per_s,
                        level.baseline_commits_per_s
                    ),
                    level.ratio.is_some_and(|r| r >= 0.5),
                );
            }
        }
    }
    if let Some(b) = &report.hot {
        add(
            "b",
            "zero failed requests on the hot aggregate",
            format!("{} failed of {}", b.failed, b.requests),
            b.failed == 0,
        );
        add(
            "b",
            "nothing oversold",
            format!(
                "at most {} of {} places occupied",
                b.peak_occupied, b.capacity
            ),
            !b.oversold,
        );
        let a64 = report
            .throughput
            .as_ref()
            .and_then(|a| a.level(b.clients))
            .map(|level| level.engine_commands_per_s);
        if let Some(a64) = a64 {
            let ratio = crate::stats::ratio(b.first_joins_per_s, a64);
            add(
                "b",
                &format!("≥ 50 % of (a) at {} clients", b.clients),
                format!(
                    "{} ({:.0} vs {a64:.0}/s)",
                    percent(ratio),
                    b.first_joins_per_s
                ),
                ratio.is_some_and(|r| r >= 0.5),
            );
        }
        if let Some(flatness) = b.flatness {
            add(
                "b",
                &format!(
                    "flat to {} events: last tenth ≥ {:.0} % of the first",
                    b.capacity,
                    FLAT_MIN * 100.0
                ),
                percent(Some(flatness)),
                flatness >= FLAT_MIN,
            );
        }
    }
    if let Some(c) = &report.latency {
        add(
            "c",
            &format!(
                "p99 ≤ {P99_CEILING_MS:.0} ms at half of (a)'s peak ({}/s)",
                c.target_rate
            ),
            format!("p99 {:.1} ms", c.accepted_to_visible.p99_ms),
            c.accepted_to_visible.p99_ms <= P99_CEILING_MS && c.failed == 0,
        );
    }
    if let Some(d) = &report.relay {
        add(
            "d",
            "≥ 50 % of the raw producer",
            percent(d.ratio),
            d.ratio.is_some_and(|r| r >= 0.5),
        );
    }
    if let Some(e) = &report.rebuild {
        add(
            "e",
            "rebuild ≥ 10 % of a raw sequential read",
            percent(e.rebuild_ratio),
            e.rebuild_ratio.is_some_and(|r| r >= 0.1),
        );
        add(
            "e",
            "verification ≥ 50 % of a raw sequential read",
            percent(e.verify_ratio),
            e.verify_ratio.is_some_and(|r| r >= 0.5),
        );
    }
    if let Some(f) = &report.memory {
        let peak = f
            .peak_through_a_mib
            .into_iter()
            .chain(f.peak_through_b_mib)
            .fold(0.0, f64::max);
        add(
            "f",
            &format!("peak RSS < {MEMORY_CEILING_MIB:.0} MiB through (a) and (b)"),
            format!("{peak:.0} MiB"),
            peak < MEMORY_CEILING_MIB,
        );
        if let Some(bytes) = f.bytes_per_aggregate {
            add(
                "f",
                &format!(
                    "bounded: < {BYTES_PER_AGGREGATE_MAX:.0} bytes of RSS per aggregate touched"
                ),
                format!("{bytes:.1} bytes"),
                bytes < BYTES_PER_AGGREGATE_MAX,
            );
        }
    }
    targets
}

/// What makes the figures meaningless, whatever the targets say.
fn insanity(report: &Report) -> Vec<String> {
    let mut problems: Vec<String> = report
        .errors
        .iter()
        .map(|note| format!("({}) failed: {}", note.scenario, note.reason))
        .collect();
    if let Some(a) = &report.throughput {
        for level in &a.levels {
            if level.engine_commands_per_s <= 0.0 || level.baseline_commits_per_s <= 0.0 {
                problems.push(format!("(a) no throughput at {} clients", level.clients));
            }
            if level.failed > 0 {
                problems.push(format!(
                    "(a) {} failed requests at {} clients: {:?}",
                    level.failed, level.clients, level.failures
                ));
            }
        }
    }
    if let Some(b) = &report.hot {
        if b.failed > 0 {
            problems.push(format!(
                "(b) {} failed requests: {:?}",
                b.failed, b.failures
            ));
        }
        if b.oversold {
            problems.push(format!(
                "(b) oversold: {} places occupied of {}",
                b.peak_occupied, b.capacity
            ));
        }
        if b.peak_occupied != b.capacity || b.joined_events != b.accepted {
            problems.push(format!(
                "(b) {} accepted and {} stored joins, {} of {} places filled",
                b.accepted, b.joined_events, b.peak_occupied, b.capacity
            ));
        }
    }
    if let Some(c) = &report.latency
        && (c.accepted_to_visible.samples == 0 || c.failed > 0)
    {
        problems.push(format!(
            "(c) {} samples, {} failed: {:?}",
            c.accepted_to_visible.samples, c.failed, c.failures
        ));
    }
    if let Some(d) = &report.relay
        && (d.relay_events_per_s <= 0.0 || d.raw_events_per_s <= 0.0)
    {
        problems.push("(d) no relay or producer throughput".to_owned());
    }
    if let Some(e) = &report.rebuild {
        if e.events == 0 || e.rebuild_events_per_s <= 0.0 || e.verify_events_per_s <= 0.0 {
            problems.push("(e) nothing rebuilt or verified".to_owned());
        }
        if e.verify_damage > 0 {
            problems.push(format!(
                "(e) verification found {} damaged events on an untouched log",
                e.verify_damage
            ));
        }
    }
    if let Some(f) = &report.memory
        && f.peak_through_a_mib.is_some_and(|peak| peak <= 0.0)
    {
        problems.push("(f) the engine's memory could not be read".to_owned());
    }
    problems
}

/// The report as terminal text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(
        &mut out,
        format!(
            "FusionCommerce benchmark: {} mode, {:?} build, {} cores{}, engine: commerce {}",
            report.mode,
            report.plan.profile,
            report.machine.cores,
            report
                .git_commit
                .as_deref()
                .map(|c| format!(", commit {c}"))
                .unwrap_or_default(),
            report.engine_layout.join(" + "),
        ),
    );
    if let Some(a) = &report.throughput {
        line(
            &mut out,
            "\n(a) command throughput, PUT /inventory on distinct aggregates".to_owned(),
        );
        line(
            &mut out,
            format!(
                "{:>8} {:>16} {:>14} {:>7} {:>8} {:>8} {:>7} {:>11} {:>8}",
                "clients",
                "INSERT commits/s",
                "engine cmd/s",
                "ratio",
                "p50 ms",
                "p99 ms",
                "failed",
                "aggregates",
                "RSS MiB"
            ),
        );
        for l in &a.levels {
            line(
                &mut out,
                format!(
                    "{:>8} {:>16.0} {:>14.0} {:>7} {:>8.1} {:>8.1} {:>7} {:>11} {:>8.0}",
                    l.clients,
                    l.baseline_commits_per_s,
                    l.engine_commands_per_s,
                    percent(l.ratio),
                    l.latency.p50_ms,
                    l.latency.p99_ms,
                    l.failed,
                    l.aggregates_touched,
                    l.memory.rss_mib
                ),
            );
        }
    }
    if let Some(b) = &report.hot {
        line(
            &mut out,
            format!(
                "\n(b) hot aggregate: {} joins of one campaign ({} places) from {} clients",
                b.requests, b.capacity, b.clients
            ),
        );
        line(
            &mut out,
            format!(
                "    accepted {}, refused (full) {}, failed {}; {:.0} joins/s overall ({:.0} events/s appended with the process managers' commands), {:.0}/s for the first {}; p50 {:.1} ms, p99 {:.1} ms",
                b.accepted,
                b.refused_full,
                b.failed,
                b.joins_per_s,
                b.events_per_s,
                b.first_joins_per_s,
                b.accepted.min(10_000),
                b.latency.p50_ms,
                b.latency.p99_ms
            ),
        );
        let windows: Vec<String> = b
            .window_joins_per_s
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect();
        line(
            &mut out,
            format!("    joins/s per tenth of the stream: {}", windows.join(" ")),
        );
        line(
            &mut out,
            format!(
                "    stored campaign.joined events {}, most places occupied {}, read model participants {}, oversold: {}",
                b.joined_events,
                b.peak_occupied,
                b.read_model_participants
                    .map_or_else(|| "n/a".to_owned(), |p| p.to_string()),
                if b.oversold { "YES" } else { "no" }
            ),
        );
    }
    if let Some(c) = &report.latency {
        let p = &c.accepted_to_visible;
        line(
            &mut out,
            format!(
                "\n(c) accepted → visible through the query API at {}/s ({:.0}/s achieved)",
                c.target_rate, c.achieved_rate
            ),
        );
        line(
            &mut out,
            format!(
                "    p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms ({} samples, {} failed)",
                p.p50_ms, p.p99_ms, p.p999_ms, p.max_ms, p.samples, c.failed
            ),
        );
    }
    if let Some(d) = &report.relay {
        line(
            &mut out,
            format!(
                "\n(d) relay backlog drain of {} events: {:.0} events/s; raw producer {:.0} events/s; ratio {}",
                d.events,
                d.relay_events_per_s,
                d.raw_events_per_s,
                percent(d.ratio)
            ),
        );
        if let (Some(p50), Some(p99)) = (d.commit_to_kafka_p50_ms, d.commit_to_kafka_p99_ms) {
            line(
                &mut out,
                format!(
                    "    commit-to-Kafka latency at {}/s: p50 {p50:.0} ms, p99 {p99:.0} ms",
                    report.plan.relay_rate
                ),
            );
        }
    }
    if let Some(e) = &report.rebuild {
        line(
            &mut out,
            format!(
                "\n(e) {} events: raw sequential read {:.0}/s, then rebuild {:.0}/s ({}); raw sequential read {:.0}/s, then verify {:.0}/s ({}), damage {}",
                e.events,
                e.raw_read_events_per_s,
                e.rebuild_events_per_s,
                percent(e.rebuild_ratio),
                e.raw_read_before_verify_events_per_s,
                e.verify_events_per_s,
                percent(e.verify_ratio),
                e.verify_damage
            ),
        );
    }
    if let Some(f) = &report.memory {
        let mib = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0} MiB"));
        line(
            &mut out,
            format!(
                "\n(f) engine memory: peak through (a) {}, after (b) {} (peak through (b) {}), {} bytes per aggregate touched",
                mib(f.peak_through_a_mib),
                mib(f.rss_after_b_mib),
                mib(f.peak_through_b_mib),
                f.bytes_per_aggregate
                    .map_or_else(|| "n/a".to_owned(), |b| format!("{b:.1}"))
            ),
        );
    }
    for note in &report.skipped {
        line(
            &mut out,
            format!("\n({}) skipped: {}", note.scenario, note.reason),
        );
    }
    for note in &report.errors {
        line(
            &mut out,
            format!("\n({}) FAILED: {}", note.scenario, note.reason),
        );
    }
    if !report.targets.is_empty() {
        line(&mut out, "\ntargets".to_owned());
        for t in &report.targets {
            let _ = writeln!(
                out,
                "  [{}] ({}) {}: {}",
                if t.met { "met" } else { "MISSED" },
                t.scenario,
                t.goal,
                t.measured
            );
        }
    }
    for problem in &report.insane {
        let _ = writeln!(out, "not sane: {problem}");
    }
    out
}

/// Prints the report to the terminal.
pub fn print(report: &Report) {
    println!("{}", render(report));
}

/// Writes `bench-<mode>.json` and `bench-<mode>.svg` into `out`; returns their paths.
pub fn write(report: &Report, out: &Path) -> anyhow::Result<Vec<String>> {
    let json = out.join(format!("bench-{}.json", report.mode));
    std::fs::write(&json, serde_json::to_string_pretty(report)?)?;
    let svg = out.join(format!("bench-{}.svg", report.mode));
    std::fs::write(&svg, chart::render(report))?;
    Ok(vec![json.display().to_string(), svg.display().to_string()])
}

fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn machine() -> Machine {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        });
    Machine {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        memory_gib,
        cpu,
    }
}
