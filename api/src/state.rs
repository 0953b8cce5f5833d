//! What every handler shares: token verification, tenants, limits, metrics, the command
//! executors and the readiness probes. Cheap to clone (one `Arc`).

use std::sync::{Arc, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use commerce_relay::RelayStatus;

use sqlx::PgPool;

use crate::auth::TokenVerifier;
use crate::commands::Commands;
use crate::config::KafkaBrokers;
use crate::limits::{Limits, TenantRateLimiter};
use crate::metrics::Metrics;
use crate::routes::BrokerProbe;
use crate::tenants::TenantRegistry;
use crate::webhooks::WebhookSecrets;

/// The shared state of the HTTP API.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    verifier: TokenVerifier,
    tenants: TenantRegistry,
    rate_limiter: TenantRateLimiter,
    limits: Limits,
    metrics: Metrics,
    commands: Commands,
    webhooks: WebhookSecrets,
    pool: PgPool,
    brokers: Option<KafkaBrokers>,
    /// The relay of this process, when it runs one (set once, after the engine started).
    relay: OnceLock<RelayStatus>,
    /// One permit per request in flight ([`Limits::max_in_flight`]).
    in_flight: Arc<Semaphore>,
    /// One log verification at a time: each reads the whole log.
    verification: Semaphore,
    broker_probe: BrokerProbe,
}

/// The parts an [`AppState`] is made of.
#[derive(Debug)]
pub struct StateParts {
    pub verifier: TokenVerifier,
    pub limits: Limits,
    pub webhooks: WebhookSecrets,
    pub pool: PgPool,
    /// The broker `/ready` checks; `None` when this process does not use one (tests of the
    /// command side alone).
    pub brokers: Option<KafkaBrokers>,
}

impl AppState {
    /// Builds the state: executors, tenant cache and rate limiter over `parts.pool`.
    pub fn new(parts: StateParts) -> Self {
        let StateParts {
            verifier,
            limits,
            webhooks,
            pool,
            brokers,
        } = parts;
        Self {
            inner: Arc::new(Shared {
                verifier,
                tenants: TenantRegistry::new(pool.clone()),
                rate_limiter: TenantRateLimiter::new(&limits),
                in_flight: Arc::new(Semaphore::new(
                    usize::try_from(limits.max_in_flight.get()).unwrap_or(usize::MAX),
                )),
                verification: Semaphore::new(1),
                broker_probe: BrokerProbe::default(),
                commands: Commands::new(pool.clone()),
                metrics: Metrics::global(),
                limits,
                webhooks,
                pool,
                brokers,
                relay: OnceLock::new(),
            }),
        }
    }

    pub fn verifier(&self) -> &TokenVerifier {
        &self.inner.verifier
    }

    pub fn tenants(&self) -> &TenantRegistry {
        &self.inner.tenants
    }

    pub fn rate_limiter(&self) -> &TenantRateLimiter {
        &self.inner.rate_limiter
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// A place for one more request in flight, held until dropped; `None` when the process
    /// already serves [`Limits::max_in_flight`] requests.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.inner.in_flight).try_acquire_owned().ok()
    }

    /// The broker's reachability for readiness checks.
    pub(crate) fn broker_probe(&self) -> &BrokerProbe {
        &self.inner.broker_probe
    }

    /// The turn to verify the log, unless a verification is running already.
    pub fn verification_turn(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.inner.verification.try_acquire().ok()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn commands(&self) -> &Commands {
        &self.inner.commands
    }

    pub fn webhooks(&self) -> &WebhookSecrets {
        &self.inner.webhooks
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    pub fn brokers(&self) -> Option<&KafkaBrokers> {
        self.inner.brokers.as_ref()
    }

    /// Lets `/ready` read the broker's reachability from the in-process relay instead of
    /// probing it; only the first call has an effect.
    pub fn set_relay_status(&self, status: RelayStatus) {
        let _ = self.inner.relay.set(status);
    }

    pub fn relay_status(&self) -> Option<&RelayStatus> {
        self.inner.relay.get()
    }
}
