//! The tenants the engine serves (`tenants` table, `api/migrations/`), looked up on every
//! authenticated request and cached.
//!
//! Tenants are never deleted, so a tenant once found stays cached; a miss is cached briefly so
//! a flood of tokens for an unknown tenant does not become a flood of queries, while a tenant
//! added by `commerce tenant add` is served within that delay.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use commerce_domain::TenantId;
use sqlx::PgPool;

/// How long an unknown tenant is remembered as unknown.
const MISS_TTL: Duration = Duration::from_secs(2);

/// Creates or updates the API's tables (idempotent). Other crates' migrations in the same
/// database are not treated as missing.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await
}

/// Registers a tenant; returns false when it already existed.
pub async fn add(pool: &PgPool, tenant: &TenantId) -> Result<bool, sqlx::Error> {
    let inserted =
        sqlx::query("INSERT INTO tenants (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(tenant.as_str())
            .execute(pool)
            .await?;
    Ok(inserted.rows_affected() == 1)
}

#[derive(Debug, Clone, Copy)]
enum Known {
    Yes,
    No { since: Instant },
}

/// Answers "is this tenant served here?" with a cache in front of the `tenants` table.
#[derive(Debug, Clone)]
pub struct TenantRegistry {
    pool: PgPool,
    cache: Arc<RwLock<HashMap<String, Known>>>,
}

impl TenantRegistry {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Arc::default(),
        }
    }

    /// Whether `tenant` is registered.
    pub async fn contains(&self, tenant: &TenantId) -> Result<bool, sqlx::Error> {
        let cached = self
            .cache
            .read()
            .ok()
            .and_then(|cache| cache.get(tenant.as_str()).copied());
        match cached {
            Some(Known::Yes) => return Ok(true),
            Some(Known::No { since }) if since.elapsed() < MISS_TTL => return Ok(false),
            _ => {}
        }
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)")
                .bind(tenant.as_str())
                .fetch_one(&self.pool)
                .await?;
        if let Ok(mut cache) = self.cache.write() {
            let entry = if found {
                Known::Yes
            } else {
                Known::No {
                    since: Instant::now(),
                }
            };
            cache.insert(tenant.as_str().to_owned(), entry);
        }
        Ok(found)
    }
}
