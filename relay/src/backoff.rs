//! Capped exponential backoff between retries of a failed step.

use std::time::Duration;

use crate::config::BackoffConfig;

#[derive(Debug)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Self {
            config,
            next: config.initial,
        }
    }

    /// The pause before the next retry; each call doubles the following one, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next.min(self.config.max);
        self.next = delay
            .checked_mul(2)
            .unwrap_or(self.config.max)
            .min(self.config.max);
        delay
    }

    /// After a success the next failure starts from the initial pause again.
    pub(crate) fn reset(&mut self) {
        self.next = self.config.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backoff(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff::new(BackoffConfig {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
        })
    }

    #[test]
    fn given_failures_then_delays_double_up_to_the_cap_and_reset_after_success() {
        let mut backoff = backoff(100, 500);
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    proptest! {
        #[test]
        fn delays_never_exceed_the_cap_and_never_shrink(initial in 1u64..10_000, max in 1u64..100_000, n in 1usize..80) {
            let mut backoff = backoff(initial, max);
            let mut previous = Duration::ZERO;
            for _ in 0..n {
                let delay = backoff.next_delay();
                prop_assert!(delay <= Duration::from_millis(max));
                prop_assert!(delay >= previous);
                previous = delay;
            }
        }
    }
}
