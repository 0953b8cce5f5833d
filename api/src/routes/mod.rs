//! The routes of the API, each handler documented with `#[utoipa::path]` and registered here
//! through utoipa-axum, which builds the router and the OpenAPI document together.
//!
//! Commands go to the write model; the queries (`queries`) read the projected read models.

mod audit;
mod campaigns;
mod dto;
mod inventory;
mod ops;
mod orders;
mod payments;
mod products;
mod queries;

use std::fmt::Display;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::openapi::ApiDoc;
use crate::problem::ApiError;
use crate::state::AppState;

pub(crate) use ops::BrokerProbe;

/// Every route with its documentation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
        .routes(routes!(products::create))
        .routes(routes!(inventory::set_stock))
        .routes(routes!(orders::place))
        .routes(routes!(orders::cancel))
        .routes(routes!(campaigns::create))
        .routes(routes!(campaigns::join))
        .routes(routes!(payments::refund))
        .routes(routes!(payments::webhook))
        .routes(routes!(queries::product))
        .routes(routes!(queries::product_by_sku))
        .routes(routes!(queries::inventory))
        .routes(routes!(queries::order))
        .routes(routes!(queries::orders))
        .routes(routes!(queries::campaign))
        .routes(routes!(queries::payment))
        .routes(routes!(queries::order_payments))
        .routes(routes!(queries::shipment))
        .routes(routes!(queries::order_shipments))
        .routes(routes!(audit::order_events))
        .routes(routes!(audit::order_history))
        .routes(routes!(audit::verify))
}

/// A validated value, or a 422 naming `name`.
fn field<T, E: Display>(name: &str, value: Result<T, E>) -> Result<T, ApiError> {
    value.map_err(|error| ApiError::invalid(name, error.to_string()))
}

/// Longest free text (reasons, names) accepted.
const TEXT_MAX: usize = 500;

/// Free text: trimmed, 1 to 500 characters, no control characters.
fn text(name: &str, value: &str) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > TEXT_MAX {
        return Err(ApiError::invalid(
            name,
            format!("must be 1 to {TEXT_MAX} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            name,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// An id from the path: anything that is not a UUID names no object (404).
fn path_id(what: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| ApiError::NotFound(what.to_owned()))
}
