//! `tracing` logs: human-readable lines on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! stdout stays free for what a command prints for its user (the URL of `commerce dev`).

use tracing_subscriber::EnvFilter;

/// The log filter is not valid `tracing` filter syntax.
#[derive(Debug, thiserror::Error)]
#[error("RUST_LOG is invalid")]
pub struct TelemetryError(#[from] tracing_subscriber::filter::ParseError);

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(filter: &str) -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_new(filter)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
