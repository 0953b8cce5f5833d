//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations as
//! the router is built (utoipa-axum), so a route cannot exist without its documentation.

use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, Problem};

/// The name of the bearer-token security scheme in the document.
pub const BEARER: &str = "bearer";

/// Top-level metadata; paths are added by [`crate::routes::api`].
#[derive(OpenApi)]
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
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The whole document.
pub fn document() -> Document {
    crate::routes::api().split_for_parts().1
}
