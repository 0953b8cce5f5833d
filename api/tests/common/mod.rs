//! The black-box harness: the API on a random local port over a database of its own, tokens
//! for two tenants, and a count of the events in the store.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use commerce_api::app;
use commerce_api::auth::{AuthConfig, Role, TokenGrant, TokenVerifier, VerifyingKey, mint_hs256};
use commerce_api::limits::Limits;
use commerce_api::state::{AppState, StateParts};
use commerce_api::tenants;
use commerce_api::webhooks::WebhookSecrets;
use commerce_devstack::testkit::TestDatabase;
use commerce_domain::{CustomerId, TenantId};
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret!";
pub const WEBHOOK_SECRET: &[u8] = b"whsec-test";
pub const TENANT_A: &str = "acme";
pub const TENANT_B: &str = "globex";

/// A running API and its database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    /// Last, so the database goes after everything that still uses it.
    pub db: TestDatabase,
}

impl TestApp {
    /// The API with the default limits.
    pub async fn start() -> Self {
        Self::start_with(Limits::default()).await
    }

    /// The API with `limits`, serving tenants `acme` and `globex`.
    pub async fn start_with(limits: Limits) -> Self {
        Self::start_configured(limits, VerifyingKey::Hs256(SECRET.to_vec())).await
    }

    /// The API verifying RS256 tokens with the fixture public key.
    pub async fn start_rs256() -> Self {
        let pem = include_bytes!("../fixtures/rs256-public.pem").to_vec();
        Self::start_configured(Limits::default(), VerifyingKey::Rs256Pem(pem)).await
    }

    /// The API with `limits` and tokens verified by `key`.
    pub async fn start_configured(limits: Limits, key: VerifyingKey) -> Self {
        let db = TestDatabase::create()
            .await
            .expect("a test database (is DATABASE_URL set?)");
        commerce_eventstore::migrate(db.pool())
            .await
            .expect("event store migrations");
        tenants::migrate(db.pool()).await.expect("api migrations");
        for tenant in [TENANT_A, TENANT_B] {
            tenants::add(db.pool(), &TenantId::new(tenant).expect("valid"))
                .await
                .expect("tenant added");
        }
        let verifier = TokenVerifier::new(&AuthConfig {
            key,
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(5),
        })
        .expect("valid key");
        let state = AppState::new(StateParts {
            verifier,
            limits,
            webhooks: WebhookSecrets::single("sandbox", WEBHOOK_SECRET),
            pool: db.pool().clone(),
            brokers: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("bound");
        let router = app::router(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            addr,
            client: Client::new(),
            db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str, token: &str) -> RequestBuilder {
        self.client.post(self.url(path)).bearer_auth(token)
    }

    pub fn put(&self, path: &str, token: &str) -> RequestBuilder {
        self.client.put(self.url(path)).bearer_auth(token)
    }

    /// Events in the store, all tenants.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(self.db.pool())
            .await
            .expect("countable")
    }
}

/// A token of `tenant` for `subject` with `roles`.
pub fn token(tenant: &str, subject: &str, roles: &[Role]) -> String {
    mint_hs256(
        SECRET,
        &TokenGrant {
            tenant: TenantId::new(tenant).expect("valid tenant"),
            subject: CustomerId::new(subject).expect("valid subject"),
            roles: roles.to_vec(),
            lifetime: Duration::from_secs(300),
            audience: None,
            issuer: None,
        },
    )
    .expect("signable")
}

pub fn operator(tenant: &str) -> String {
    token(tenant, "op-1", &[Role::Operator])
}

pub fn customer(tenant: &str, subject: &str) -> String {
    token(tenant, subject, &[Role::Customer])
}

/// The `Retry-After` header of `response`, if any.
pub fn retry_after(response: &Response) -> Option<String> {
    response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Asserts `response` is a problem+json with `status`; returns its body.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(
        content_type, "application/problem+json",
        "content type of {body}"
    );
    assert_eq!(body["status"], status, "problem status");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "problem shape: {body}"
    );
    body
}
