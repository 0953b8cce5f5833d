//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations as
//! the router is built (utoipa-axum), so a route cannot exist without its documentation.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, Problem};

/// The name of the bearer-token security scheme in the document.
pub const BEARER: &str = "bearer";

/// Top-level metadata; paths are added by [`crate::routes::api`].
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "FusionCommerce API",
        description = "Commands of the event-sourced commerce engine. Errors are RFC 9457 problem+json; \
                       every POST accepts an Idempotency-Key; command responses carry a Consistency-Token."
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The whole document.
pub fn document() -> Document {
    crate::routes::api().split_for_parts().1
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request, StatusCode};
    use sqlx::postgres::PgPoolOptions;
    use tower::ServiceExt;
    use utoipa::openapi::path::PathItem;

    use super::*;
    use crate::auth::{AuthConfig, TokenVerifier, VerifyingKey};
    use crate::limits::Limits;
    use crate::state::{AppState, StateParts};
    use crate::webhooks::WebhookSecrets;

    const METHODS: [Method; 5] = [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
    ];

    fn documented(item: &PathItem, method: &Method) -> bool {
        match *method {
            Method::GET => item.get.is_some(),
            Method::PUT => item.put.is_some(),
            Method::POST => item.post.is_some(),
            Method::DELETE => item.delete.is_some(),
            Method::PATCH => item.patch.is_some(),
            _ => false,
        }
    }

    fn state() -> AppState {
        let verifier = TokenVerifier::new(&AuthConfig {
            key: VerifyingKey::Hs256(vec![7; 32]),
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(5),
        })
        .expect("valid key");
        // Never connected: no request below reaches the database.
        let pool = PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a well-formed URL");
        AppState::new(StateParts {
            verifier,
            limits: Limits::default(),
            webhooks: WebhookSecrets::default(),
            pool,
            brokers: None,
        })
    }

    async fn problem_type(
        router: &axum::Router,
        method: &Method,
        path: &str,
    ) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .expect("valid request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("readable");
        let kind = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|json| json["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (status, kind)
    }

    #[tokio::test]
    async fn the_router_serves_exactly_the_documented_routes_and_methods() {
        // Given the router and the document, both built from the same route registrations
        let document = document();
        let router = crate::app::router(state());
        assert!(
            document.paths.paths.len() >= 4,
            "the document lists the routes"
        );
        for (path, item) in &document.paths.paths {
            let concrete = path
                .replace("{id}", "00000000-0000-4000-8000-000000000000")
                .replace("{provider}", "sandbox")
                .replace("{sku}", "SKU-1");
            for method in &METHODS {
                // When each method is tried on each documented path
                let (status, kind) = problem_type(&router, method, &concrete).await;
                // Then documented methods are served and every other one is 405
                if documented(item, method) {
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                    assert_ne!(
                        kind, "/problems/no-route",
                        "{method} {path} is documented but not routed"
                    );
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path} is routed but not documented"
                    );
                }
            }
        }
        // And a path that is not documented is not routed
        let (status, kind) = problem_type(&router, &Method::GET, "/not-documented").await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::NOT_FOUND, "/problems/no-route")
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_a_bearer_scheme() {
        let json = serde_json::to_value(document()).expect("serialisable");
        assert!(
            json["openapi"]
                .as_str()
                .is_some_and(|version| version.starts_with("3.1"))
        );
        assert_eq!(
            json["components"]["securitySchemes"][BEARER]["scheme"],
            "bearer"
        );
        for path in [
            "/health",
            "/ready",
            "/metrics",
            "/openapi.json",
            "/inventory",
        ] {
            assert!(json["paths"][path].is_object(), "{path} is documented");
        }
    }
}
