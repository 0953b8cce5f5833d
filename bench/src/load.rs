//! HTTP load generators: closed loops (N clients, each sending its next request as soon as the
//! previous one answered) and an open loop (requests started at a fixed rate, whatever the
//! answers do, so slow answers cannot hide latency: no coordinated omission).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; with a duration when the request measured its own figure (else its round trip).
    Ok(Option<Duration>),
    /// A correct business refusal (e.g. a full campaign): not a failure.
    Refused,
    /// A failure, named by status or error kind.
    Failed(String),
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long.
    After(Duration),
    /// After this many requests in all.
    Count(u64),
}

/// The merged results of a load run.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub ok: u64,
    pub refused: u64,
    pub failed: u64,
    /// Failures by kind, for the report.
    pub failures: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Ascending latencies of the `Ok` requests, µs.
    pub latencies_us: Vec<u64>,
    /// Ascending completion times of the `Ok` requests since the start, µs (refusals are
    /// answers too, but not what a rate of accepted requests counts).
    pub completions_us: Vec<u64>,
}

impl Run {
    fn record(&mut self, outcome: Outcome, took: Duration, done_at: Duration) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        match outcome {
            Outcome::Ok(measured) => {
                self.ok += 1;
                self.latencies_us.push(micros(measured.unwrap_or(took)));
                self.completions_us.push(micros(done_at));
            }
            Outcome::Refused => self.refused += 1,
            Outcome::Failed(kind) => {
                self.failed += 1;
                *self.failures.entry(kind).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.failed += other.failed;
        for (kind, count) in other.failures {
            *self.failures.entry(kind).or_default() += count;
        }
        self.latencies_us.extend(other.latencies_us);
        self.completions_us.extend(other.completions_us);
    }

    fn finish(mut self, elapsed: Duration) -> Self {
        self.elapsed = elapsed;
        self.latencies_us.sort_unstable();
        self.completions_us.sort_unstable();
        self
    }
}

/// `clients` concurrent loops calling `request(n)` with n = 0, 1, 2, ... across all clients.
pub async fn closed_loop<F, Fut>(clients: usize, stop: Stop, request: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let request = Arc::new(request);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (request, next) = (Arc::clone(&request), Arc::clone(&next));
        tasks.spawn(async move {
            let mut run = Run::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let more = match stop {
                    Stop::After(duration) => started.elapsed() < duration,
                    Stop::Count(count) => n < count,
                };
                if !more {
                    return run;
                }
                let sent = Instant::now();
                let outcome = request(n).await;
                run.record(outcome, sent.elapsed(), started.elapsed());
            }
        });
    }
    collect(tasks, started).await
}

/// Starts `request(n)` at `rate` per second for `duration`, each in its own task.
pub async fn open_loop<F, Fut>(rate: u64, duration: Duration, request: F) -> Run
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let request = Arc::new(request);
    let total = rate.saturating_mul(duration.as_secs()).max(1);
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let mut ticker = tokio::time::interval(period);
    // Late ticks fire at once: the schedule is kept, not stretched.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let request = Arc::clone(&request);
        tasks.spawn(async move {
            let mut run = Run::default();
            let sent = Instant::now();
            let outcome = request(n).await;
            run.record(outcome, sent.elapsed(), started.elapsed());
            run
        });
    }
    collect(tasks, started).await
}

async fn collect(mut tasks: JoinSet<Run>, started: Instant) -> Run {
    let mut merged = Run::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(run) => merged.merge(run),
            Err(error) => {
                merged.failed += 1;
                *merged.failures.entry(format!("task: {error}")).or_default() += 1;
            }
        }
    }
    merged.finish(started.elapsed())
}

/// The outcome of an HTTP answer: `ok` statuses succeed, `refused` ones are business
/// refusals, anything else fails under its status code.
pub fn classify(status: reqwest::StatusCode, ok: &[u16], refused: &[u16]) -> Outcome {
    if ok.contains(&status.as_u16()) {
        Outcome::Ok(None)
    } else if refused.contains(&status.as_u16()) {
        Outcome::Refused
    } else {
        Outcome::Failed(format!("HTTP {}", status.as_u16()))
    }
}

/// The failure kind of a transport error.
pub fn transport(error: &reqwest::Error) -> Outcome {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "transport"
    };
    Outcome::Failed(kind.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn given_a_count_when_run_closed_then_exactly_that_many_requests_are_sent() {
        let run = closed_loop(8, Stop::Count(100), |n| async move {
            match n % 10 {
                0 => Outcome::Refused,
                1 => Outcome::Failed("boom".to_owned()),
                _ => Outcome::Ok(None),
            }
        })
        .await;
        assert_eq!((run.ok, run.refused, run.failed), (80, 10, 10));
        assert_eq!(run.failures.get("boom"), Some(&10));
        assert_eq!(run.latencies_us.len(), 80);
        assert_eq!(
            run.completions_us.len(),
            80,
            "only accepted requests complete a rate"
        );
        assert!(run.completions_us.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test]
    async fn given_a_rate_when_run_open_then_requests_follow_the_schedule() {
        let run = open_loop(200, Duration::from_secs(1), |_| async {
            Outcome::Ok(Some(Duration::from_millis(3)))
        })
        .await;
        assert_eq!(run.ok, 200);
        assert!(run.latencies_us.iter().all(|&us| us == 3_000));
        assert!(
            run.elapsed >= Duration::from_millis(990),
            "{:?}",
            run.elapsed
        );
    }
}
