//! Percentiles and rates of the measured samples.

use std::time::Duration;

use serde::Serialize;

/// The sample at `per_mille` (500 = median, 990 = p99, 999 = p99.9) of ascending `sorted`,
/// nearest-rank; zero when there are no samples.
pub fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * per_mille).div_ceil(1000).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// Events (or requests) per second.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `part / whole`, or `None` when the whole is zero (a ratio of nothing is not 0 %).
pub fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of ascending microsecond samples.
    pub fn of_micros(sorted: &[u64]) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            samples: sorted.len(),
            p50_ms: ms(percentile(sorted, 500)),
            p99_ms: ms(percentile(sorted, 990)),
            p999_ms: ms(percentile(sorted, 999)),
            max_ms: ms(sorted.last().copied().unwrap_or(0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_hundred_samples_then_percentiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 500), 50);
        assert_eq!(percentile(&samples, 990), 99);
        assert_eq!(percentile(&samples, 999), 100);
        assert_eq!(percentile(&samples, 0), 1);
        assert_eq!(percentile(&[], 500), 0);
    }

    #[test]
    fn given_a_single_sample_then_every_percentile_is_that_sample() {
        assert_eq!(percentile(&[7], 1), 7);
        assert_eq!(percentile(&[7], 999), 7);
    }

    #[test]
    fn rates_and_ratios_of_nothing_are_not_divisions_by_zero() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, 4.0), Some(0.25));
    }

    #[test]
    fn percentiles_are_reported_in_milliseconds() {
        let p = Percentiles::of_micros(&[1_000, 2_000, 100_000]);
        assert_eq!(p.samples, 3);
        assert_eq!(p.p50_ms, 2.0);
        assert_eq!(p.max_ms, 100.0);
    }
}
