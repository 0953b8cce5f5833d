//! Configuration: command-line flags backed by environment variables, validated into [`Settings`].
//!
//! Every variable is documented in `commerce --help`. Validation errors name the setting, so a bad
//! deployment fails with one line that says what to fix.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use clap::Args;
use sqlx::postgres::PgConnectOptions;

/// Shortest accepted HS256 secret: RFC 7518 asks for a key at least as long as the hash (256 bits).
const MIN_SECRET_BYTES: usize = 32;

/// The raw configuration, as given by flags or the environment. Shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// PostgreSQL connection URL: event store and read models.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(long, env = "KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,

    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "COMMERCE_HTTP_ADDR",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub http_addr: String,

    /// HS256 secret that verifies access tokens (at least 32 bytes). Prefer the environment
    /// variable: a flag's value is visible to other users of the machine.
    #[arg(
        long,
        env = "COMMERCE_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// Event store: `postgres` (the default, `DATABASE_URL`) or a KurrentDB connection string
    /// `kurrentdb://host:2113?tls=false`, which only `relay` (publishes KurrentDB's `$all`),
    /// `project`, `migrate`, `token` and `tenant` support, in a binary built with the
    /// `kurrentdb` feature; the command path runs on PostgreSQL only.
    #[arg(
        long,
        env = "COMMERCE_EVENT_STORE",
        default_value = "postgres",
        global = true,
        hide_env_values = true
    )]
    pub event_store: String,

    /// Log filter (`tracing` syntax), e.g. `info` or `info,commerce_api=debug`.
    #[arg(long = "log", env = "RUST_LOG", default_value = "info", global = true)]
    pub log_filter: String,
}

/// A setting is missing or malformed. The message names the environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting is absent.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A setting does not parse or is out of bounds.
    #[error("{setting} is invalid: {reason}")]
    Invalid {
        /// The environment variable.
        setting: &'static str,
        /// What is wrong with it (never its value when it may be secret).
        reason: String,
    },
    /// `COMMERCE_EVENT_STORE` is malformed or not usable by this binary or command.
    #[error(transparent)]
    EventStore(#[from] crate::event_store::EventStoreError),
}

/// Validated configuration of a running engine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the event store and read models live.
    pub database: PgConnectOptions,
    /// The Kafka cluster.
    pub kafka_brokers: KafkaBrokers,
    /// The HTTP listen address.
    pub http_addr: SocketAddr,
    /// The token secret.
    pub jwt_secret: JwtSecret,
}

impl Settings {
    /// Validates every setting; all are required.
    pub fn from_args(args: &ConfigArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            database: parse_database_url(required(args.database_url.as_deref(), "DATABASE_URL")?)?,
            kafka_brokers: KafkaBrokers::parse(required(
                args.kafka_brokers.as_deref(),
                "KAFKA_BROKERS",
            )?)?,
            http_addr: parse_http_addr(&args.http_addr)?,
            jwt_secret: JwtSecret::parse(required(
                args.jwt_secret.as_deref(),
                "COMMERCE_JWT_SECRET",
            )?)?,
        })
    }
}

fn required<'a>(value: Option<&'a str>, setting: &'static str) -> Result<&'a str, ConfigError> {
    value
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or(ConfigError::Missing(setting))
}

fn parse_database_url(url: &str) -> Result<PgConnectOptions, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        setting: "DATABASE_URL",
        reason,
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(
            "it must start with postgres:// or postgresql://".into(),
        ));
    }
    // The parser's message never repeats the URL, which may hold a password.
    PgConnectOptions::from_str(url).map_err(|error| invalid(error.to_string()))
}

fn parse_http_addr(addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.trim().parse().map_err(|_| ConfigError::Invalid {
        setting: "COMMERCE_HTTP_ADDR",
        reason: format!("`{addr}` is not an `ip:port` socket address"),
    })
}

/// Kafka bootstrap servers: a non-empty, comma-separated list of `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBrokers(String);

impl KafkaBrokers {
    /// Checks the list's syntax (reachability is checked at startup by [`crate::connect`]).
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "KAFKA_BROKERS",
            reason,
        };
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        for entry in &entries {
            let well_formed = entry.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty()
                    && !host.contains(char::is_whitespace)
                    && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !well_formed {
                return Err(invalid(format!("`{entry}` is not `host:port`")));
            }
        }
        Ok(Self(entries.join(",")))
    }

    /// The list as librdkafka's `bootstrap.servers` expects it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KafkaBrokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A random secret (64 hex digits) for a throwaway local engine (`commerce dev`).
pub fn throwaway_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The token secret. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct JwtSecret(String);

impl JwtSecret {
    /// Accepts a secret of at least 32 bytes.
    pub fn parse(secret: &str) -> Result<Self, ConfigError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::Invalid {
                setting: "COMMERCE_JWT_SECRET",
                reason: format!("it must be at least {MIN_SECRET_BYTES} bytes long"),
            });
        }
        Ok(Self(secret.to_owned()))
    }

    /// The secret's bytes, for signing and verifying.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConfigArgs {
        ConfigArgs {
            database_url: Some("postgres://u@127.0.0.1:5432/db".into()),
            kafka_brokers: Some("127.0.0.1:9092".into()),
            http_addr: "127.0.0.1:8080".into(),
            jwt_secret: Some("x".repeat(32)),
            event_store: "postgres".into(),
            log_filter: "info".into(),
        }
    }

    fn error_of(args: &ConfigArgs) -> String {
        Settings::from_args(args)
            .expect_err("the configuration is bad")
            .to_string()
    }

    #[test]
    fn complete_configuration_is_accepted() {
        let settings = Settings::from_args(&args()).expect("valid configuration");
        assert_eq!(settings.kafka_brokers.as_str(), "127.0.0.1:9092");
        assert_eq!(settings.http_addr.port(), 8080);
    }

    #[test]
    fn each_missing_setting_is_named() {
        let mut given = args();
        given.database_url = None;
        assert_eq!(error_of(&given), "DATABASE_URL is not set");
        let mut given = args();
        given.kafka_brokers = Some("  ".into());
        assert_eq!(error_of(&given), "KAFKA_BROKERS is not set");
        let mut given = args();
        given.jwt_secret = None;
        assert_eq!(error_of(&given), "COMMERCE_JWT_SECRET is not set");
    }

    #[test]
    fn malformed_settings_are_named() {
        let mut given = args();
        given.database_url = Some("mysql://nope".into());
        assert!(error_of(&given).starts_with("DATABASE_URL is invalid"));
        let mut given = args();
        given.kafka_brokers = Some("127.0.0.1:9092,broker-without-port".into());
        assert!(error_of(&given).starts_with("KAFKA_BROKERS is invalid"));
        let mut given = args();
        given.http_addr = "localhost".into();
        assert!(error_of(&given).starts_with("COMMERCE_HTTP_ADDR is invalid"));
        let mut given = args();
        given.jwt_secret = Some("short".into());
        assert!(error_of(&given).starts_with("COMMERCE_JWT_SECRET is invalid"));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let secret = JwtSecret::parse(&"s".repeat(40)).expect("long enough");
        assert!(!format!("{secret:?}").contains("sss"));
        assert_eq!(throwaway_secret().len(), 64);
        assert!(JwtSecret::parse(&throwaway_secret()).is_ok());
    }

    #[test]
    fn broker_lists_are_normalised() {
        let brokers = KafkaBrokers::parse(" a:1 , b:2 ").expect("valid list");
        assert_eq!(brokers.as_str(), "a:1,b:2");
        assert!(KafkaBrokers::parse("a:0").is_err());
        assert!(KafkaBrokers::parse("a:b:c").is_err());
    }
}
