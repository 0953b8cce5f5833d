//! Settings of the HTTP API beyond the shared ones of [`crate::config`]: token verification,
//! limits and webhook secrets. Every one has a documented environment variable and default.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::auth::{AuthConfig, VerifyingKey};
use crate::config::{ConfigError, JwtSecret};
use crate::limits::Limits;
use crate::webhooks::WebhookSecrets;

/// Longest accepted clock-skew leeway: more would keep expired tokens alive.
const MAX_LEEWAY_SECS: u64 = 60;

/// The API's flags and environment variables.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// PEM file of the RSA public key that verifies RS256 tokens; when set, HS256 is off.
    #[arg(long, env = "COMMERCE_JWT_PUBLIC_KEY_FILE", global = true)]
    pub jwt_public_key_file: Option<PathBuf>,

    /// Required `aud` claim of tokens (not checked when unset).
    #[arg(long, env = "COMMERCE_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// Required `iss` claim of tokens (not checked when unset).
    #[arg(long, env = "COMMERCE_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// Clock skew tolerated on `exp`/`nbf`, in seconds (at most 60).
    #[arg(
        long,
        env = "COMMERCE_JWT_LEEWAY_SECS",
        default_value_t = 5,
        global = true
    )]
    pub jwt_leeway_secs: u64,

    /// Largest request body in bytes.
    #[arg(long, env = "COMMERCE_BODY_LIMIT_BYTES", default_value_t = 64 * 1024, global = true)]
    pub body_limit_bytes: usize,

    /// Most lines in one order.
    #[arg(
        long,
        env = "COMMERCE_MAX_ORDER_LINES",
        default_value_t = 100,
        global = true
    )]
    pub max_order_lines: usize,

    /// Largest page a list query may ask for.
    #[arg(
        long,
        env = "COMMERCE_MAX_LIST_LIMIT",
        default_value_t = 500,
        global = true
    )]
    pub max_list_limit: u32,

    /// Time a request may take before it is answered 503, in milliseconds.
    #[arg(
        long,
        env = "COMMERCE_REQUEST_TIMEOUT_MS",
        default_value_t = 10_000,
        global = true
    )]
    pub request_timeout_ms: u64,

    /// Longest wait of a query for its read model to reach the request's `Consistency-Token`,
    /// in milliseconds (503 with `Retry-After` beyond it).
    #[arg(
        long,
        env = "COMMERCE_CONSISTENCY_WAIT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub consistency_wait_ms: u64,

    /// Requests served at once by this process (503 with `Retry-After` above it; health,
    /// readiness and metrics are always answered).
    #[arg(
        long,
        env = "COMMERCE_MAX_IN_FLIGHT",
        default_value_t = 1_024,
        global = true
    )]
    pub max_in_flight: u32,

    /// Sustained requests per second per tenant (429 above it, other tenants unaffected).
    #[arg(
        long,
        env = "COMMERCE_RATE_LIMIT_PER_SECOND",
        default_value_t = 1_000,
        global = true
    )]
    pub rate_limit_per_second: u32,

    /// Requests a tenant may burst above its sustained rate.
    #[arg(
        long,
        env = "COMMERCE_RATE_LIMIT_BURST",
        default_value_t = 2_000,
        global = true
    )]
    pub rate_limit_burst: u32,

    /// Payment-provider webhook secret (`secret` for the sandbox provider, or
    /// `provider=secret,...`). Webhooks are refused (404) for providers without one.
    #[arg(
        long,
        env = "COMMERCE_WEBHOOK_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub webhook_secret: Option<String>,
}

/// The validated API settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub auth: AuthConfig,
    pub limits: Limits,
    pub webhooks: WebhookSecrets,
}

impl ApiSettings {
    /// Validates `args`; `secret` is the HS256 secret, required unless a public key file is set.
    pub fn from_args(args: &ApiArgs, secret: Option<&JwtSecret>) -> Result<Self, ConfigError> {
        let key = match (&args.jwt_public_key_file, secret) {
            (Some(path), _) => VerifyingKey::Rs256Pem(std::fs::read(path).map_err(|error| {
                ConfigError::Invalid {
                    setting: "COMMERCE_JWT_PUBLIC_KEY_FILE",
                    reason: format!("cannot read {}: {error}", path.display()),
                }
            })?),
            (None, Some(secret)) => VerifyingKey::Hs256(secret.expose().to_vec()),
            (None, None) => return Err(ConfigError::Missing("COMMERCE_JWT_SECRET")),
        };
        if args.jwt_leeway_secs > MAX_LEEWAY_SECS {
            return Err(invalid(
                "COMMERCE_JWT_LEEWAY_SECS",
                format!("at most {MAX_LEEWAY_SECS} seconds"),
            ));
        }
        let non_zero = |setting: &'static str, value: u32| {
            NonZeroU32::new(value)
                .ok_or_else(|| invalid(setting, "must be greater than zero".to_owned()))
        };
        let zero = |setting: &'static str| invalid(setting, "must be greater than zero".to_owned());
        if args.body_limit_bytes == 0 {
            return Err(zero("COMMERCE_BODY_LIMIT_BYTES"));
        }
        if args.max_order_lines == 0 {
            return Err(zero("COMMERCE_MAX_ORDER_LINES"));
        }
        if args.request_timeout_ms == 0 {
            return Err(zero("COMMERCE_REQUEST_TIMEOUT_MS"));
        }
        let limits = Limits {
            body_bytes: args.body_limit_bytes,
            order_lines: args.max_order_lines,
            list_max: non_zero("COMMERCE_MAX_LIST_LIMIT", args.max_list_limit)?.get(),
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            consistency_wait: Duration::from_millis(args.consistency_wait_ms),
            tenant_rate_per_second: non_zero(
                "COMMERCE_RATE_LIMIT_PER_SECOND",
                args.rate_limit_per_second,
            )?,
            tenant_burst: non_zero("COMMERCE_RATE_LIMIT_BURST", args.rate_limit_burst)?,
            max_in_flight: non_zero("COMMERCE_MAX_IN_FLIGHT", args.max_in_flight)?,
        };
        let webhooks = WebhookSecrets::parse(args.webhook_secret.as_deref().unwrap_or_default())
            .map_err(|reason| invalid("COMMERCE_WEBHOOK_SECRET", reason))?;
        Ok(Self {
            auth: AuthConfig {
                key,
                audience: args.jwt_audience.clone().filter(|value| !value.is_empty()),
                issuer: args.jwt_issuer.clone().filter(|value| !value.is_empty()),
                leeway: Duration::from_secs(args.jwt_leeway_secs),
            },
            limits,
            webhooks,
        })
    }
}

fn invalid(setting: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { setting, reason }
}
