//! One-shot administrative commands: `commerce migrate`, `commerce tenant add` and
//! `commerce token` (a development token signed with `COMMERCE_JWT_SECRET`).

use std::time::Duration;

use commerce_domain::{CustomerId, TenantId};
use sqlx::PgPool;

use crate::auth::{Role, TokenGrant, mint_hs256};
use crate::config::JwtSecret;
use crate::tenants;

/// An administrative command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A schema could not be migrated.
    #[error("migrating the {component} schema failed: {source}")]
    Migrate {
        component: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The database refused a statement.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An argument is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The token could not be signed.
    #[error("cannot sign the token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

/// Creates or updates every schema this binary owns (idempotent).
pub async fn migrate(pool: &PgPool) -> Result<(), AdminError> {
    commerce_eventstore::migrate(pool)
        .await
        .map_err(|source| AdminError::Migrate {
            component: "event store",
            source,
        })?;
    tenants::migrate(pool)
        .await
        .map_err(|source| AdminError::Migrate {
            component: "tenants",
            source,
        })
}

/// Registers `tenant`; true when it was new.
pub async fn add_tenant(pool: &PgPool, tenant: &str) -> Result<bool, AdminError> {
    let tenant =
        TenantId::new(tenant).map_err(|error| AdminError::Invalid(format!("tenant: {error}")))?;
    Ok(tenants::add(pool, &tenant).await?)
}

/// A development token: HS256 with `secret`, valid for `lifetime`.
pub fn token(
    secret: &JwtSecret,
    tenant: &str,
    roles: &[Role],
    subject: Option<&str>,
    lifetime: Duration,
    audience: Option<String>,
    issuer: Option<String>,
) -> Result<String, AdminError> {
    let tenant =
        TenantId::new(tenant).map_err(|error| AdminError::Invalid(format!("tenant: {error}")))?;
    let default_subject = format!("dev-{}", roles.first().map_or("user", |role| role.name()));
    let subject = CustomerId::new(subject.unwrap_or(&default_subject))
        .map_err(|error| AdminError::Invalid(format!("sub: {error}")))?;
    let grant = TokenGrant {
        tenant,
        subject,
        roles: roles.to_vec(),
        lifetime,
        audience,
        issuer,
    };
    Ok(mint_hs256(secret.expose(), &grant)?)
}
