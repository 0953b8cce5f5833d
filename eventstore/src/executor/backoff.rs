//! Bounded exponential backoff with jitter between optimistic-concurrency retries.

use std::time::Duration;

use uuid::Uuid;

/// The delay before retry number `attempt` (1-based): `base * 2^(attempt-1)`, capped at
/// `max`, then drawn uniformly from its upper half so competing writers spread out.
pub(crate) fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let ceiling = base.saturating_mul(1_u32 << exponent).min(max);
    let ceiling_micros = ceiling.as_micros().max(1);
    let half = ceiling_micros / 2;
    // Randomness from a v4 UUID (getrandom): no extra dependency for a retry-path jitter.
    let jitter = Uuid::new_v4().as_u128() % (ceiling_micros - half + 1);
    Duration::from_micros(u64::try_from(half + jitter).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_growing_attempts_when_delayed_then_delays_stay_within_half_and_full_ceiling() {
        let base = Duration::from_millis(2);
        let max = Duration::from_millis(50);
        for attempt in 1..=10 {
            let ceiling = base.saturating_mul(1 << (attempt - 1)).min(max);
            let delay = delay(attempt, base, max);
            assert!(
                delay <= ceiling,
                "attempt {attempt}: {delay:?} > {ceiling:?}"
            );
            assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?}");
        }
    }
}
