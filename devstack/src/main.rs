//! `devstack`: start, stop and inspect the project's local PostgreSQL and Tansu broker.
//!
//! - `devstack up` installs what is missing, starts both services in the background (they outlive
//!   this command), writes `.local/devstack.env` and prints it;
//! - `devstack down` stops them;
//! - `devstack status` prints what runs (exit code 0 only when both run).

use std::process::ExitCode;

use commerce_devstack::{Layout, LocalServices, status, stop_detached};

const USAGE: &str = "usage: devstack up | down | status

  up      install PostgreSQL and Tansu when missing, start both in the background,
          write .local/devstack.env (source it to point a shell at them) and print it
  down    stop the services started by `up`
  status  print what runs; exit code 0 only when both services run

DATABASE_URL / KAFKA_BROKERS, when set, name existing servers: `up` then starts nothing,
and fails when nothing answers there.";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let layout = Layout::of_this_project();
    let command = std::env::args().nth(1);
    let outcome = match command.as_deref() {
        Some("up") => up(&layout),
        Some("down") => down(&layout),
        Some("status") => return report_status(&layout),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("devstack: error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

fn up(layout: &Layout) -> Result<(), commerce_devstack::DevstackError> {
    let services = LocalServices::start(layout)?;
    services.write_env_file(layout)?;
    print!("{}", services.env_exports());
    eprintln!(
        "devstack: services are up; `source {}` to use them",
        layout.env_file().display()
    );
    services.detach();
    Ok(())
}

fn down(layout: &Layout) -> Result<(), commerce_devstack::DevstackError> {
    if stop_detached(layout)? {
        eprintln!("devstack: services stopped");
    } else {
        eprintln!("devstack: nothing was running");
    }
    Ok(())
}

fn report_status(layout: &Layout) -> ExitCode {
    let status = status(layout);
    println!(
        "postgres: {}",
        status.database_url.as_deref().unwrap_or("stopped")
    );
    println!(
        "tansu:    {}",
        status.kafka_brokers.as_deref().unwrap_or("stopped")
    );
    if status.all_running() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// The error and its causes on one line: `outer: inner: root` (a cause already said is skipped).
fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}
