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

/// The least-squares slope of `y` over `x`, or `None` with fewer than two distinct `x`.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|&(x, _)| x).sum::<f64>() / n;
    let mean_y = points.iter().map(|&(_, y)| y).sum::<f64>() / n;
    let spread: f64 = points.iter().map(|&(x, _)| (x - mean_x).powi(2)).sum();
    let together: f64 = points
        .iter()
        .map(|&(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    (spread > 0.0).then(|| together / spread)
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
    fn given_points_on_a_line_then_the_slope_is_the_line_s() {
        let points = [(0.0, 5.0), (10.0, 25.0), (20.0, 45.0), (30.0, 65.0)];
        assert_eq!(slope(&points), Some(2.0));
    }

    #[test]
    fn given_scattered_points_then_the_slope_is_the_least_squares_one() {
        // RSS (MiB) after each of five runs of (a)'s last level, measured 2026-11-29.
        let points = [
            (0.0, 84.1),
            (1.0, 86.6),
            (2.0, 102.3),
            (3.0, 94.8),
            (4.0, 103.0),
        ];
        let fitted = slope(&points).expect("distinct x");
        assert!((fitted - 4.6).abs() < 1e-9, "{fitted}");
    }

    #[test]
    fn given_fewer_than_two_distinct_x_then_there_is_no_slope() {
        assert_eq!(slope(&[]), None);
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

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
