//! (d) Relay throughput beside a raw producer on the same broker: runs the relay's own
//! benchmark (`relay/examples/relay_bench.rs`, built by [`crate::engine::Binaries::build`])
//! against this run's PostgreSQL server and private broker, and reads its figures. The example
//! drains a backlog through the relay, then sends the same messages with a bare idempotent
//! producer, then measures commit-to-Kafka latency at a steady rate.

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::process::Command;

use super::Bench;
use crate::stats::ratio;

/// How long the example may run.
const WITHIN: Duration = Duration::from_secs(600);

/// The results of (d).
#[derive(Debug, Clone, Serialize)]
pub struct RelayResult {
    pub events: usize,
    /// Relay backlog drain, events/s (each event is two messages).
    pub relay_events_per_s: f64,
    /// The same messages from a bare producer, events/s.
    pub raw_events_per_s: f64,
    pub ratio: Option<f64>,
    /// Commit-to-Kafka latency at the example's steady rate, ms.
    pub commit_to_kafka_p50_ms: Option<f64>,
    pub commit_to_kafka_p99_ms: Option<f64>,
}

/// Runs (d).
pub async fn run(bench: &Bench) -> anyhow::Result<RelayResult> {
    let binary = bench.binaries.relay_bench();
    let mut command = Command::new(&binary);
    command
        .env("DATABASE_URL", bench.services.server_url())
        .env("KAFKA_BROKERS", bench.services.brokers())
        .env("RUST_LOG", "warn")
        .arg(bench.plan.relay_events.to_string())
        .arg(bench.plan.relay_rate.to_string())
        .kill_on_drop(true);
    let output = tokio::time::timeout(WITHIN, command.output())
        .await
        .context("relay_bench took too long")?
        .with_context(|| format!("run {}", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "relay_bench failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let result = parse(&stdout, bench.plan.relay_events)
        .with_context(|| format!("relay_bench printed what this tool does not read:\n{stdout}"))?;
    eprintln!(
        "(d) relay {:.0} events/s, raw producer {:.0} events/s",
        result.relay_events_per_s, result.raw_events_per_s
    );
    Ok(result)
}

/// Reads the example's report lines.
fn parse(stdout: &str, events: usize) -> Option<RelayResult> {
    let number_after = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.trim_end_matches(',').parse::<f64>().ok())
    };
    let relay = number_after("relay backlog drain:")?;
    let raw = number_after("raw rdkafka producer:")?;
    let latency = stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("commit-to-Kafka latency"));
    let after = |key: &str| {
        latency
            .and_then(|line| line.split(key).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    Some(RelayResult {
        events,
        relay_events_per_s: relay,
        raw_events_per_s: raw,
        ratio: ratio(relay, raw),
        commit_to_kafka_p50_ms: after("p50 "),
        commit_to_kafka_p99_ms: after("p99 "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_examples_output_then_its_figures_are_read() {
        let out = "events: 2000 (2 messages each), 6 partitions, broker 127.0.0.1:1\n\
                   relay backlog drain: 5120 events/s (390 ms)\n\
                   raw rdkafka producer: 8000 events/s (250 ms)\n\
                   commit-to-Kafka latency at 50 events/s: p50 12 ms, p99 40 ms, max 55 ms (500 samples)\n";
        let result = parse(out, 2000).expect("parsed");
        assert_eq!(result.relay_events_per_s, 5120.0);
        assert_eq!(result.raw_events_per_s, 8000.0);
        assert_eq!(result.ratio, Some(0.64));
        assert_eq!(result.commit_to_kafka_p50_ms, Some(12.0));
        assert_eq!(result.commit_to_kafka_p99_ms, Some(40.0));
        assert!(parse("something else", 1).is_none());
    }
}
