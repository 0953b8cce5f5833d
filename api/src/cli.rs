//! The `commerce` command line: one subcommand per way of running the engine.
//!
//! Adding a component means one [`Command`] variant, its doc comment (shown by `--help`) and one
//! arm in [`Cli::run`]. Configuration ([`ConfigArgs`]) is shared by every subcommand.

use clap::{Parser, Subcommand};
use commerce_devstack::{DevstackError, Layout, LocalServices};

use crate::config::{ConfigArgs, ConfigError, Settings, throwaway_secret};
use crate::connect::{Backends, ConnectError};
use crate::server::{Server, ServerError, router, shutdown_signal};

/// FusionCommerce: an event-sourced CQRS commerce engine.
///
/// Every setting is read from the environment variable shown next to it (or the flag).
#[derive(Debug, Parser)]
#[command(name = "commerce", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,

    #[command(subcommand)]
    command: Command,
}

/// What to run.
#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Serve the HTTP API (needs DATABASE_URL, KAFKA_BROKERS and COMMERCE_JWT_SECRET).
    Serve,
    /// Run the engine locally without Docker: start a private PostgreSQL and a Tansu broker
    /// (installing them when missing) unless DATABASE_URL / KAFKA_BROKERS are set, serve the API
    /// and print its URL; Ctrl-C stops everything this command started.
    Dev,
}

/// Why a command failed; each variant's message is one line naming what to fix.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A setting is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A backing service is unreachable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The HTTP server could not start or stopped with an error.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The local services of `commerce dev` could not be started or stopped.
    #[error("local services")]
    LocalServices(#[from] DevstackError),
    /// A background task panicked or was cancelled.
    #[error("internal task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl Cli {
    /// The `RUST_LOG` filter, needed before the command runs.
    pub fn log_filter(&self) -> &str {
        &self.config.log_filter
    }

    /// Runs the chosen command to completion.
    pub async fn run(self) -> Result<(), CommandError> {
        match self.command {
            Command::Serve => serve(Settings::from_args(&self.config)?, false).await,
            Command::Dev => dev(self.config).await,
        }
    }
}

/// Connects to the backing services, then serves HTTP until SIGINT/SIGTERM.
async fn serve(settings: Settings, announce: bool) -> Result<(), CommandError> {
    let _backends = Backends::connect(&settings).await?;
    let server = Server::bind(settings.http_addr).await?;
    let addr = server.local_addr()?;
    tracing::info!(%addr, "serving HTTP");
    if announce {
        println!(
            "FusionCommerce is running at http://{addr} (health: http://{addr}/health); Ctrl-C stops it"
        );
    }
    server.run(router(), shutdown_signal()).await?;
    Ok(())
}

/// `commerce dev`: the local services plus the server, stopped together.
async fn dev(config: ConfigArgs) -> Result<(), CommandError> {
    let (database_url, kafka_brokers) = (config.database_url.clone(), config.kafka_brokers.clone());
    let services = tokio::task::spawn_blocking(move || {
        LocalServices::start_with(&Layout::of_this_project(), database_url, kafka_brokers)
    })
    .await??;
    let settings = dev_settings(&config, &services);
    let outcome = match settings {
        Ok(settings) => serve(settings, true).await,
        Err(error) => Err(error.into()),
    };
    tokio::task::spawn_blocking(move || services.stop()).await??;
    outcome
}

/// The configuration given, completed with the local services and a throwaway token secret.
fn dev_settings(config: &ConfigArgs, services: &LocalServices) -> Result<Settings, ConfigError> {
    let mut config = config.clone();
    config.database_url = Some(services.database_url().to_owned());
    config.kafka_brokers = Some(services.kafka_brokers().to_owned());
    if config.jwt_secret.is_none() {
        tracing::info!("COMMERCE_JWT_SECRET is not set: using a random secret for this run");
        config.jwt_secret = Some(throwaway_secret());
    }
    Settings::from_args(&config)
}
