//! Resource limits of the HTTP API (OWASP API4) and the per-tenant rate limiter.
//!
//! Body size, request time and requests in flight are enforced in [`crate::app`]; lines per order
//! and list sizes by the handlers; the request rate by [`TenantRateLimiter`], keyed by the
//! token's tenant so that one tenant's burst never slows another.

use std::num::NonZeroU32;
use std::time::Duration;

use commerce_domain::TenantId;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::problem::ApiError;

/// The configured limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body.
    pub body_bytes: usize,
    /// Most lines in one order.
    pub order_lines: usize,
    /// Largest page a list query may ask for.
    pub list_max: u32,
    /// Longest time a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// Longest time a query waits for its read model to reach a `Consistency-Token`.
    pub consistency_wait: Duration,
    /// Sustained requests per second per tenant.
    pub tenant_rate_per_second: NonZeroU32,
    /// Requests a tenant may send at once above the sustained rate.
    pub tenant_burst: NonZeroU32,
    /// Requests the process serves at once; beyond it a request is answered 503 at once
    /// (health, readiness and metrics excepted). Each request in flight holds a connection's
    /// buffers and its task, so this bounds the memory an overload can take: without it, queries
    /// waiting for a lagging read model piled up by the thousand (about 45 KiB each).
    pub max_in_flight: NonZeroU32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            order_lines: 100,
            list_max: 500,
            request_timeout: Duration::from_secs(10),
            consistency_wait: Duration::from_secs(5),
            tenant_rate_per_second: NonZeroU32::new(1_000).expect("1000 is not zero"),
            tenant_burst: NonZeroU32::new(2_000).expect("2000 is not zero"),
            max_in_flight: NonZeroU32::new(1_024).expect("1024 is not zero"),
        }
    }
}

/// A token bucket per tenant (GCRA, lock-free per key).
#[derive(Debug)]
pub struct TenantRateLimiter {
    limiter: RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>,
    clock: DefaultClock,
}

impl TenantRateLimiter {
    pub fn new(limits: &Limits) -> Self {
        let quota =
            Quota::per_second(limits.tenant_rate_per_second).allow_burst(limits.tenant_burst);
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `tenant`'s bucket, or `RateLimited` with the time to wait.
    pub fn check(&self, tenant: &TenantId) -> Result<(), ApiError> {
        self.limiter
            .check_key(&tenant.as_str().to_owned())
            .map_err(|not_until| ApiError::RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_tenant_over_its_burst_when_checked_then_only_that_tenant_is_limited() {
        let limits = Limits {
            tenant_rate_per_second: NonZeroU32::MIN,
            tenant_burst: NonZeroU32::new(3).expect("non-zero"),
            ..Limits::default()
        };
        let limiter = TenantRateLimiter::new(&limits);
        let noisy = TenantId::new("noisy").expect("valid");
        let quiet = TenantId::new("quiet").expect("valid");
        for _ in 0..3 {
            assert!(limiter.check(&noisy).is_ok());
        }
        assert!(matches!(
            limiter.check(&noisy),
            Err(ApiError::RateLimited { .. })
        ));
        assert!(limiter.check(&quiet).is_ok());
    }
}
