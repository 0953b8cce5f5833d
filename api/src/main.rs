//! The `commerce` binary: a thin entry point over [`commerce_api`].
//!
//! Every failure ends the process with one line on stderr and a non-zero exit code.

use std::process::ExitCode;

use clap::Parser;
use commerce_api::{Cli, telemetry};
use mimalloc::MiMalloc;

/// mimalloc rather than glibc's malloc: see `BENCHMARKS.md` (memory and CPU of the engine).
#[global_allocator]
static ALLOCATOR: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match telemetry::init(cli.log_filter()) {
        Ok(()) => cli.run().await.map_err(anyhow::Error::from),
        Err(error) => Err(error.into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line (`outer: inner: root`), whatever the causes contain.
/// Some libraries repeat their cause in their own message: a cause already said is skipped.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}
