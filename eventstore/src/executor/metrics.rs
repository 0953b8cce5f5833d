//! Counters of the retry loop, through the `metrics` facade: whichever recorder the process
//! installed (the API's Prometheus exporter) collects them; without one they cost nothing.
//!
//! `command_retries_total{aggregate, reason}` counts every re-run of a command, whoever called
//! the executor (HTTP handlers and process managers alike): `reason="conflict"` after an append
//! lost the race to another process, `reason="stale"` when a refusal or no-op was decided on a
//! cache another process had overtaken, `reason="cold"` when a cold slot guessed its stream
//! was new and it was not (the command then loads the stream). Commands that give up (`command_conflicts_total`) and
//! appended events (`events_appended_total`) are counted by the API from the outcome, so they
//! are not counted here a second time.

/// Why a command runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    Conflict,
    Stale,
    Cold,
}

impl Retry {
    fn as_str(self) -> &'static str {
        match self {
            Self::Conflict => "conflict",
            Self::Stale => "stale",
            Self::Cold => "cold",
        }
    }
}

/// Counts one retry of a command on an aggregate of type `aggregate`.
pub(super) fn retried(aggregate: &'static str, reason: Retry) {
    metrics::counter!(
        "command_retries_total",
        "aggregate" => aggregate,
        "reason" => reason.as_str()
    )
    .increment(1);
}
