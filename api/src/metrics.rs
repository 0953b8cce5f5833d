//! Prometheus metrics, rendered by `GET /metrics` (no listener of the exporter's own).
//!
//! Names: `http_requests_total{route,method,status}`, `http_request_duration_seconds{route,method}`
//! (histogram), `events_appended_total{aggregate}`, `command_conflicts_total{aggregate}`,
//! `command_replays_total{aggregate}`. The `metrics` facade has one global recorder per process,
//! installed on first use; every router of the process shares it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Latency buckets from 1 ms to 10 s (the request timeout).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's metrics, rendered in the Prometheus text format.
#[derive(Clone, Debug)]
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// The process-wide recorder, installed on the first call. If another recorder was
    /// installed first, this one still renders (empty) rather than failing the server.
    pub fn global() -> Self {
        let handle = HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), DURATION_BUCKETS)
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!("a metrics recorder was already installed; /metrics shows none");
                    }
                    handle
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot build the metrics recorder; /metrics shows none");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        });
        Self {
            handle: handle.clone(),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

/// Counts one finished request and its latency.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!(REQUEST_DURATION, "route" => route.to_owned(), "method" => method.to_owned())
        .record(elapsed.as_secs_f64());
}

/// Counts events a command appended.
pub fn record_appended(aggregate: &'static str, events: usize) {
    metrics::counter!("events_appended_total", "aggregate" => aggregate)
        .increment(u64::try_from(events).unwrap_or(u64::MAX));
}

/// Counts a command that gave up after its optimistic-concurrency retries.
pub fn record_conflict(aggregate: &'static str) {
    metrics::counter!("command_conflicts_total", "aggregate" => aggregate).increment(1);
}

/// Counts a command answered from its idempotency record.
pub fn record_replay(aggregate: &'static str) {
    metrics::counter!("command_replays_total", "aggregate" => aggregate).increment(1);
}
