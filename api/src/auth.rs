//! Authentication (JWT bearer tokens) and the roles that authorise operations.
//!
//! Verification follows RFC 8725: the algorithm is pinned by configuration (HS256 with
//! `COMMERCE_JWT_SECRET`, or RS256 with a public key file, never both) and the header's `alg`
//! is only compared with it; `exp` is required; `nbf`, and `aud`/`iss` when configured, are
//! checked with a small leeway; a `typ` other than `JWT` and the key-carrying headers `jku`,
//! `jwk`, `x5u`, `x5c` are refused; `kid` never selects a key. Every failure is the same 401
//! to the client (the reason is logged at debug level only).
//!
//! The tenant comes only from the token's `tenant` claim; the caller is its `sub`.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use commerce_domain::{CustomerId, TenantId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::problem::ApiError;

/// A role a token may grant.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Places and cancels its own orders, joins campaigns.
    Customer,
    /// Runs the shop: catalog, stock, campaigns, any order, refunds.
    Operator,
    /// Reads event histories and verifies the log.
    Auditor,
    /// Reads analytical streams.
    Analyst,
}

impl Role {
    /// The role's name in tokens.
    pub fn name(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Analyst => "analyst",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "customer" => Some(Self::Customer),
            "operator" => Some(Self::Operator),
            "auditor" => Some(Self::Auditor),
            "analyst" => Some(Self::Analyst),
            _ => None,
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: the customer id of a customer, the actor of events.
    pub subject: CustomerId,
    /// The token's tenant; the only source of the tenant of a request.
    pub tenant: TenantId,
    /// The roles the token grants (unknown role names are ignored).
    pub roles: BTreeSet<Role>,
}

impl Principal {
    /// Whether the caller holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// `Forbidden` unless the caller holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.iter().any(|role| self.has(*role)) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// The key that verifies tokens, which also pins the algorithm.
#[derive(Clone)]
pub enum VerifyingKey {
    /// HS256 with a shared secret (at least 32 bytes, checked by the configuration).
    Hs256(Vec<u8>),
    /// RS256 with a PEM-encoded RSA public key.
    Rs256Pem(Vec<u8>),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("Hs256(<redacted>)"),
            Self::Rs256Pem(_) => f.write_str("Rs256Pem(..)"),
        }
    }
}

/// How tokens are verified.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub key: VerifyingKey,
    /// Required `aud` value, when set.
    pub audience: Option<String>,
    /// Required `iss` value, when set.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// The configured key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("COMMERCE_JWT_PUBLIC_KEY_FILE does not hold a PEM RSA public key: {0}")]
pub struct KeyError(#[source] jsonwebtoken::errors::Error);

/// Why a token was refused (for logs only: clients always see the same 401).
#[derive(Debug, thiserror::Error)]
enum Rejection {
    #[error("no `Authorization: Bearer` header")]
    Missing,
    #[error("header: {0}")]
    Header(&'static str),
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("claim `{0}` is invalid")]
    Claim(&'static str),
}

/// Verifies bearer tokens with one pinned algorithm and key.
pub struct TokenVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    tenant: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl TokenVerifier {
    /// A verifier for `config`; fails when the RSA key does not parse.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let (algorithm, key) = match &config.key {
            VerifyingKey::Hs256(secret) => (Algorithm::HS256, DecodingKey::from_secret(secret)),
            VerifyingKey::Rs256Pem(pem) => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(pem).map_err(KeyError)?,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            algorithm,
            key,
            validation,
        })
    }

    /// The caller named by the request's `Authorization` header value, or `Unauthorized`.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        self.verify(authorization).map_err(|reason| {
            tracing::debug!(%reason, "token refused");
            ApiError::Unauthorized
        })
    }

    fn verify(&self, authorization: Option<&str>) -> Result<Principal, Rejection> {
        let token = authorization
            .and_then(bearer_token)
            .ok_or(Rejection::Missing)?;
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != self.algorithm {
            return Err(Rejection::Header("algorithm is not the configured one"));
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|typ| !typ.eq_ignore_ascii_case("JWT"))
        {
            return Err(Rejection::Header("typ is not JWT"));
        }
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
        {
            return Err(Rejection::Header("carries or points to a key"));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?.claims;
        let subject = CustomerId::new(claims.sub).map_err(|_| Rejection::Claim("sub"))?;
        let tenant = TenantId::new(claims.tenant).map_err(|_| Rejection::Claim("tenant"))?;
        let roles = claims
            .roles
            .iter()
            .filter_map(|name| Role::parse(name))
            .collect();
        Ok(Principal {
            subject,
            tenant,
            roles,
        })
    }
}

/// The token of a `Bearer` authorization (scheme case-insensitive, RFC 9110 §11.1).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What a development token grants (`commerce token`).
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub tenant: TenantId,
    pub subject: CustomerId,
    pub roles: Vec<Role>,
    pub lifetime: Duration,
    pub audience: Option<String>,
    pub issuer: Option<String>,
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    tenant: &'a str,
    roles: &'a [Role],
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Signs an HS256 token for `grant` (development and tests; production tokens come from an
/// identity provider).
pub fn mint_hs256(
    secret: &[u8],
    grant: &TokenGrant,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let claims = MintedClaims {
        sub: grant.subject.as_str(),
        tenant: grant.tenant.as_str(),
        roles: &grant.roles,
        iat: now,
        exp: now.saturating_add(grant.lifetime.as_secs()),
        aud: grant.audience.as_deref(),
        iss: grant.issuer.as_deref(),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".to_owned());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn config() -> AuthConfig {
        AuthConfig {
            key: VerifyingKey::Hs256(SECRET.to_vec()),
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(5),
        }
    }

    fn grant() -> TokenGrant {
        TokenGrant {
            tenant: TenantId::new("acme").expect("valid"),
            subject: CustomerId::new("alice").expect("valid"),
            roles: vec![Role::Customer],
            lifetime: Duration::from_secs(60),
            audience: None,
            issuer: None,
        }
    }

    fn verify(verifier: &TokenVerifier, token: &str) -> Result<Principal, ApiError> {
        verifier.authenticate(Some(&format!("Bearer {token}")))
    }

    #[test]
    fn given_a_minted_token_when_verified_then_the_principal_is_the_grant() {
        let verifier = TokenVerifier::new(&config()).expect("valid key");
        let token = mint_hs256(SECRET, &grant()).expect("signable");
        let principal = verify(&verifier, &token).expect("valid token");
        assert_eq!(principal.tenant.as_str(), "acme");
        assert_eq!(principal.subject.as_str(), "alice");
        assert!(principal.has(Role::Customer));
        assert_eq!(
            principal.require_any(&[Role::Operator]),
            Err(ApiError::Forbidden)
        );
    }

    #[test]
    fn given_another_secret_when_verified_then_unauthorized() {
        let verifier = TokenVerifier::new(&config()).expect("valid key");
        let token = mint_hs256(b"another-secret-another-secret-xx", &grant()).expect("signable");
        assert_eq!(verify(&verifier, &token), Err(ApiError::Unauthorized));
    }

    #[test]
    fn given_an_audience_when_the_token_has_none_then_unauthorized() {
        let mut config = config();
        config.audience = Some("commerce".into());
        let verifier = TokenVerifier::new(&config).expect("valid key");
        let token = mint_hs256(SECRET, &grant()).expect("signable");
        assert_eq!(verify(&verifier, &token), Err(ApiError::Unauthorized));
        let mut with_audience = grant();
        with_audience.audience = Some("commerce".into());
        let token = mint_hs256(SECRET, &with_audience).expect("signable");
        assert!(verify(&verifier, &token).is_ok());
    }

    #[test]
    fn given_other_schemes_or_no_header_then_unauthorized() {
        let verifier = TokenVerifier::new(&config()).expect("valid key");
        let token = mint_hs256(SECRET, &grant()).expect("signable");
        assert!(
            verifier
                .authenticate(Some(&format!("bearer {token}")))
                .is_ok()
        );
        assert_eq!(
            verifier.authenticate(Some(&format!("Basic {token}"))),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(
            verifier.authenticate(Some("Bearer ")),
            Err(ApiError::Unauthorized)
        );
        assert_eq!(verifier.authenticate(None), Err(ApiError::Unauthorized));
    }

    #[test]
    fn given_unknown_roles_when_verified_then_they_are_ignored() {
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::parse("auditor"), Some(Role::Auditor));
    }
}
