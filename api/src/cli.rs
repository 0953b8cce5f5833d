//! The `commerce` command line: one subcommand per way of running the engine.
//!
//! Adding a component means one [`Command`] variant, its doc comment (shown by `--help`) and one
//! arm in [`Cli::run`]. Configuration ([`ConfigArgs`]) is shared by every subcommand.

use std::time::Duration;

use clap::{Parser, Subcommand};
use commerce_devstack::{DevstackError, Layout, LocalServices};
use sqlx::PgPool;

use crate::admin::{self, AdminError};
use crate::api_config::{ApiArgs, ApiSettings};
use crate::app;
use crate::auth::{Role, TokenVerifier};
use crate::config::{ConfigArgs, ConfigError, JwtSecret, KafkaBrokers, Settings, throwaway_secret};
use crate::connect::{Backends, ConnectError, check_broker};
use crate::engine::{self, Components, Engine, EngineArgs, EngineConfig, EngineError};
use crate::event_store::{self, StoreUse};
use crate::replay_cli::{ReplayCliError, ReplayCommand};
use crate::server::{Server, ServerError, shutdown_signal};
use crate::state::{AppState, StateParts};

/// The tenant `commerce dev` creates and prints a token for.
const DEV_TENANT: &str = "demo";

/// FusionCommerce: an event-sourced CQRS commerce engine.
///
/// Every setting is read from the environment variable shown next to it (or the flag).
#[derive(Debug, Parser)]
#[command(name = "commerce", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,

    #[command(flatten)]
    api: ApiArgs,

    #[command(flatten)]
    engine: EngineArgs,

    #[command(subcommand)]
    command: Command,
}

/// What to run.
#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Serve the HTTP API (needs DATABASE_URL, KAFKA_BROKERS and COMMERCE_JWT_SECRET).
    Serve,
    /// Publish the event store's log to Kafka (needs DATABASE_URL and KAFKA_BROKERS).
    Relay,
    /// Build the read models from Kafka, as one worker of the projection consumer group
    /// (needs DATABASE_URL and KAFKA_BROKERS).
    Project,
    /// Run the process managers and deadlines (checkout, compensation, campaigns) with the
    /// sandbox payment gateway and carrier (needs DATABASE_URL). Several may run: one leads,
    /// the others stand by.
    Workflows,
    /// Serve the API and run the relay, a projection worker and the workflows in one process.
    All,
    /// Run the engine locally without Docker: start a private PostgreSQL and a Tansu broker
    /// (installing them when missing) unless DATABASE_URL / KAFKA_BROKERS are set, then run
    /// the API, relay, projections and workflows and print the URL; Ctrl-C stops everything
    /// this command started.
    Dev,
    /// Create or update the database schemas (event store, tenants); needs DATABASE_URL.
    Migrate,
    /// Print a development token signed with COMMERCE_JWT_SECRET (HS256). When DATABASE_URL
    /// is set, the tenant is also registered (as `tenant add` does), so the engine serves the
    /// token at once instead of refusing an unknown tenant with 403.
    Token {
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// A role to grant (repeatable).
        #[arg(long = "role", required = true, value_enum)]
        roles: Vec<Role>,
        /// The caller id (`sub`); `dev-<role>` when absent.
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
    /// Auditor tooling: order histories, log verification, exports, read-model rebuilds
    /// (needs DATABASE_URL, except `verify --file`; verification and exports need
    /// COMMERCE_AUDIT_KEY).
    Replay {
        #[command(subcommand)]
        command: ReplayCommand,
    },
    /// Manage the tenants the engine serves; needs DATABASE_URL.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
}

impl Command {
    /// How the command uses the event store: the command path, the workflows and replay
    /// need PostgreSQL (see [`crate::event_store`]).
    fn store_use(&self) -> StoreUse {
        match self {
            Self::Serve => StoreUse::PostgresOnly("serve"),
            Self::All => StoreUse::PostgresOnly("all"),
            Self::Dev => StoreUse::PostgresOnly("dev"),
            Self::Workflows => StoreUse::PostgresOnly("workflows"),
            Self::Replay { .. } => StoreUse::PostgresOnly("replay"),
            Self::Relay
            | Self::Project
            | Self::Migrate
            | Self::Token { .. }
            | Self::Tenant { .. } => StoreUse::AnyStore,
        }
    }
}

/// What to do with tenants.
#[derive(Debug, Clone, Subcommand)]
enum TenantAction {
    /// Register a tenant (1 to 64 of `[A-Za-z0-9_-]`); tokens of unknown tenants get 403.
    Add {
        /// The tenant id, as tokens name it in their `tenant` claim.
        tenant: String,
    },
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
    /// A migration, tenant or token command failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A background component (relay, projections, workflows) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A `commerce replay` command failed or found damage.
    #[error(transparent)]
    Replay(#[from] ReplayCliError),
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
        // Before anything else: an unusable event store ends the command with one line.
        event_store::select(&self.config.event_store, self.command.store_use())
            .map_err(ConfigError::from)?;
        match self.command {
            Command::Serve => {
                let settings = Settings::from_args(&self.config)?;
                let api = ApiSettings::from_args(&self.api, Some(&settings.jwt_secret))?;
                serve(settings, api, &self.engine, Components::NONE, None).await
            }
            Command::All => {
                let settings = Settings::from_args(&self.config)?;
                let api = ApiSettings::from_args(&self.api, Some(&settings.jwt_secret))?;
                serve(settings, api, &self.engine, Components::ALL, None).await
            }
            Command::Relay => {
                let relay = Components {
                    relay: true,
                    ..Components::NONE
                };
                run_components(&self.config, &self.engine, relay).await
            }
            Command::Project => {
                let projections = Components {
                    projections: true,
                    ..Components::NONE
                };
                run_components(&self.config, &self.engine, projections).await
            }
            Command::Workflows => {
                let workflows = Components {
                    workflows: true,
                    ..Components::NONE
                };
                run_components(&self.config, &self.engine, workflows).await
            }
            Command::Dev => dev(self.config, self.api, self.engine).await,
            Command::Migrate => {
                let pool = database(&self.config).await?;
                admin::migrate(&pool).await?;
                engine::migrate(&pool).await?;
                println!("schemas are up to date");
                Ok(())
            }
            Command::Token {
                tenant,
                roles,
                sub,
                ttl_secs,
            } => {
                let secret = self
                    .config
                    .jwt_secret
                    .as_deref()
                    .ok_or(ConfigError::Missing("COMMERCE_JWT_SECRET"))?;
                let token = admin::token(
                    &JwtSecret::parse(secret)?,
                    &tenant,
                    &roles,
                    sub.as_deref(),
                    Duration::from_secs(ttl_secs),
                    self.api.jwt_audience.clone(),
                    self.api.jwt_issuer.clone(),
                )?;
                println!("{token}");
                if self.config.database_url.is_some() {
                    // The token is printed either way: a registry that cannot be reached is
                    // worth a warning, not the token.
                    match register_tenant(&self.config, &tenant).await {
                        Ok(true) => eprintln!("tenant {tenant} registered"),
                        Ok(false) => {}
                        Err(error) => eprintln!("warning: tenant {tenant} not registered: {error}"),
                    }
                }
                Ok(())
            }
            Command::Replay { command } => Ok(crate::replay_cli::run(command, &self.config).await?),
            Command::Tenant {
                action: TenantAction::Add { tenant },
            } => {
                let pool = database(&self.config).await?;
                let added = admin::add_tenant(&pool, &tenant).await?;
                println!(
                    "tenant {tenant} {}",
                    if added { "added" } else { "already exists" }
                );
                Ok(())
            }
        }
    }
}

/// A pool on DATABASE_URL, for the one-shot commands.
/// Registers `tenant` in DATABASE_URL's registry; whether it was new.
async fn register_tenant(config: &ConfigArgs, tenant: &str) -> Result<bool, CommandError> {
    let url = config
        .database_url
        .as_deref()
        .ok_or(ConfigError::Missing("DATABASE_URL"))?;
    // Briefly: the token is already out, and the registry is a convenience here.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(ConnectError::Database)?;
    let added = admin::add_tenant(&pool, tenant).await;
    pool.close().await;
    Ok(added?)
}

async fn database(config: &ConfigArgs) -> Result<PgPool, CommandError> {
    let url = config
        .database_url
        .as_deref()
        .ok_or(ConfigError::Missing("DATABASE_URL"))?;
    Ok(PgPool::connect(url).await.map_err(ConnectError::Database)?)
}

/// Runs background `components` without HTTP until SIGINT/SIGTERM or until one of them fails.
async fn run_components(
    config: &ConfigArgs,
    engine_args: &EngineArgs,
    components: Components,
) -> Result<(), CommandError> {
    let pool = database(config).await?;
    // The components read the event store: its schema must exist.
    admin::migrate(&pool).await?;
    // The workflows alone need no broker.
    let brokers = if components.relay || components.projections {
        let list = config
            .kafka_brokers
            .as_deref()
            .filter(|list| !list.trim().is_empty())
            .ok_or(ConfigError::Missing("KAFKA_BROKERS"))?;
        let brokers = KafkaBrokers::parse(list)?;
        check_broker(&brokers).await?;
        brokers.as_str().to_owned()
    } else {
        String::new()
    };
    let mut engine_config = EngineConfig::from_args(engine_args, brokers);
    // Checked for this command in `Cli::run`: here only the relay reads it.
    engine_config.event_store =
        event_store::select(&config.event_store, StoreUse::AnyStore).map_err(ConfigError::from)?;
    let engine = Engine::start(pool, &engine_config, components).await?;
    engine.run_until(shutdown_signal()).await?;
    Ok(())
}

/// Connects to the backing services, starts the background `components`, then serves HTTP
/// until SIGINT/SIGTERM (or until a component fails) and stops everything gracefully. With
/// `announce` (a ready token), prints the URL and the token for the person who started it.
async fn serve(
    settings: Settings,
    api: ApiSettings,
    engine_args: &EngineArgs,
    components: Components,
    announce: Option<String>,
) -> Result<(), CommandError> {
    let backends = Backends::connect(&settings).await?;
    let verifier = TokenVerifier::new(&api.auth).map_err(|error| ConfigError::Invalid {
        setting: "COMMERCE_JWT_PUBLIC_KEY_FILE",
        reason: error.to_string(),
    })?;
    let state = AppState::new(StateParts {
        verifier,
        limits: api.limits,
        webhooks: api.webhooks,
        pool: backends.pool.clone(),
        brokers: Some(settings.kafka_brokers.clone()),
    });
    let server = Server::bind(settings.http_addr).await?;
    // Read-your-writes waits wake on commits of projection workers in other processes.
    let projected = commerce_projections::listen_for_projections(backends.background.clone());
    let engine = Engine::start_sharing(
        backends.background.clone(),
        &EngineConfig::from_args(engine_args, settings.kafka_brokers.as_str()),
        components,
        Some(state.commands().workflow_executors()),
    )
    .await?;
    if let Some(relay) = engine.relay_status() {
        state.set_relay_status(relay);
    }
    let addr = server.local_addr()?;
    tracing::info!(%addr, "serving HTTP");
    if let Some(token) = announce {
        println!(
            "FusionCommerce is running at http://{addr} (health: http://{addr}/health); Ctrl-C stops it"
        );
        println!("operator token for tenant `{DEV_TENANT}` (valid 24 h):\n{token}");
    }
    let stopped = engine.stopped();
    let served = server
        .run(app::router(state), async move {
            tokio::select! {
                () = shutdown_signal() => {}
                () = stopped => tracing::warn!("an engine component ended; shutting down"),
            }
        })
        .await;
    let engine_outcome = engine.stop().await;
    projected.abort();
    served?;
    engine_outcome?;
    Ok(())
}

/// `commerce dev`: the local services plus the server, stopped together.
async fn dev(config: ConfigArgs, api: ApiArgs, engine: EngineArgs) -> Result<(), CommandError> {
    let (database_url, kafka_brokers) = (config.database_url.clone(), config.kafka_brokers.clone());
    let services = tokio::task::spawn_blocking(move || {
        LocalServices::start_with(&Layout::of_this_project(), database_url, kafka_brokers)
    })
    .await??;
    let outcome = match dev_settings(&config, &services) {
        Ok(settings) => dev_serve(settings, &api, &engine).await,
        Err(error) => Err(error.into()),
    };
    tokio::task::spawn_blocking(move || services.stop()).await??;
    outcome
}

/// Migrates, registers the demo tenant, mints its operator token and runs everything.
async fn dev_serve(
    settings: Settings,
    api: &ApiArgs,
    engine_args: &EngineArgs,
) -> Result<(), CommandError> {
    let api_settings = ApiSettings::from_args(api, Some(&settings.jwt_secret))?;
    let pool = PgPool::connect_with(settings.database.clone())
        .await
        .map_err(ConnectError::Database)?;
    admin::migrate(&pool).await?;
    engine::migrate(&pool).await?;
    admin::add_tenant(&pool, DEV_TENANT).await?;
    pool.close().await;
    let token = admin::token(
        &settings.jwt_secret,
        DEV_TENANT,
        &[Role::Operator],
        None,
        Duration::from_secs(24 * 3600),
        api.jwt_audience.clone(),
        api.jwt_issuer.clone(),
    )?;
    serve(
        settings,
        api_settings,
        engine_args,
        Components::ALL,
        Some(token),
    )
    .await
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
