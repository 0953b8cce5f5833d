//! The speculative first write: a cold slot assumes its stream is new.
//!
//! A command on a stream this process holds no aggregate for costs two round trips, a load
//! and an append. Yet the commands that meet a cold slot are mostly the ones creating their
//! aggregate, whose stream is empty. So a cold slot first runs the command on the empty
//! aggregate and appends at sequence 1 directly: one round trip. The append checks the
//! guess itself (it writes nothing when the stream already has a first event, and the
//! primary key still settles races), and a wrong guess costs that one statement before the
//! command loads the stream and runs as it always did. A refusal or a no-op decided on the
//! assumed-empty aggregate proves nothing, so then the stream is loaded first, which costs
//! what the plain path costs.
//!
//! Guessing pays only while guesses mostly hit. The outcomes of the last 64 guesses are
//! remembered, and once a quarter of them missed (after a restart, say, when traffic
//! updates streams that exist but are not cached yet), only every 16th cold command still
//! guesses: enough to notice when creations dominate again.

use std::sync::atomic::{AtomicU64, Ordering};

/// Misses among the remembered guesses from which guessing is throttled.
const MISSES_TOLERATED: u32 = 16;
/// While throttled, one cold command in this many still guesses.
const PROBE_EVERY: u64 = 16;

/// The guessing policy of one executor, shared by its tasks.
#[derive(Debug)]
pub(crate) struct Speculation {
    enabled: bool,
    /// One bit per remembered guess, newest lowest: 1 is a miss.
    outcomes: AtomicU64,
    /// Cold commands seen while throttled (picks the probes).
    throttled: AtomicU64,
}

/// How a guess turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guess {
    /// The stream was new: the command took one round trip.
    Hit,
    /// The stream had events: the command paid one statement more than loading first.
    Missed,
}

impl Speculation {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            outcomes: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Whether the next cold command should assume its stream is new.
    pub fn should_guess(&self) -> bool {
        if !self.enabled {
            return false;
        }
        self.outcomes.load(Ordering::Relaxed).count_ones() < MISSES_TOLERATED
            || self
                .throttled
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(PROBE_EVERY)
    }

    pub fn record(&self, guess: Guess) {
        let missed = u64::from(guess == Guess::Missed);
        // Lost updates between racing tasks only blur the statistics, never correctness.
        let remembered = self.outcomes.load(Ordering::Relaxed);
        self.outcomes
            .store(remembered << 1 | missed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::{Guess, MISSES_TOLERATED, PROBE_EVERY, Speculation};

    fn guesses_in(speculation: &Speculation, cold_commands: u64) -> u64 {
        (0..cold_commands)
            .map(|_| u64::from(speculation.should_guess()))
            .sum()
    }

    #[test]
    fn given_a_fresh_executor_when_a_cold_command_comes_then_it_guesses() {
        assert!(Speculation::new(true).should_guess());
    }

    #[test]
    fn given_guessing_disabled_when_cold_commands_come_then_none_guesses() {
        assert_eq!(guesses_in(&Speculation::new(false), 100), 0);
    }

    #[test]
    fn given_mostly_hits_when_cold_commands_come_then_every_one_guesses() {
        let speculation = Speculation::new(true);
        for round in 0..64 {
            let missed = round % 8 == 0;
            speculation.record(if missed { Guess::Missed } else { Guess::Hit });
        }
        assert_eq!(guesses_in(&speculation, 100), 100);
    }

    #[test]
    fn given_many_misses_when_cold_commands_come_then_only_probes_guess() {
        let speculation = Speculation::new(true);
        for _ in 0..MISSES_TOLERATED {
            speculation.record(Guess::Missed);
        }
        assert_eq!(guesses_in(&speculation, 10 * PROBE_EVERY), 10);
    }

    #[test]
    fn given_throttled_guessing_when_probes_hit_again_then_every_cold_command_guesses() {
        let speculation = Speculation::new(true);
        for _ in 0..64 {
            speculation.record(Guess::Missed);
        }
        for _ in 0..64 {
            speculation.record(Guess::Hit);
        }
        assert_eq!(guesses_in(&speculation, 100), 100);
    }
}
