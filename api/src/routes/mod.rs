//! The routes of the API, each handler documented with `#[utoipa::path]` and registered here
//! through utoipa-axum, which builds the router and the OpenAPI document together.
//!
//! Command endpoints only: queries come with the read models (projections).

mod inventory;
mod ops;

use std::fmt::Display;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::ApiDoc;
use crate::problem::ApiError;
use crate::state::AppState;

/// Every route with its documentation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(inventory::set_stock))
}

/// A validated value, or a 422 naming `name`.
fn field<T, E: Display>(name: &str, value: Result<T, E>) -> Result<T, ApiError> {
    value.map_err(|error| ApiError::invalid(name, error.to_string()))
}
