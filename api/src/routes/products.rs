//! `POST /products`: operators add a product to their tenant's catalog (one per SKU).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use commerce_aggregates::product::{Product, ProductCommand, stream_key};
use commerce_contracts::events::ProductEvent;
use commerce_domain::{ProductId, Sku};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::{Answer, Request};
use crate::extract::{ApiJson, Authorized, CorrelationId, IdempotencyKey, Operators};
use crate::problem::{ApiError, Problem};
use crate::routes::dto::MoneyDto;
use crate::routes::{field, text};
use crate::state::AppState;

/// A new catalog product.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// The SKU, unique in the tenant (1 to 64 of `[A-Za-z0-9._-]`).
    pub sku: String,
    /// Display name, 1 to 500 characters.
    pub name: String,
    /// The list price (above zero).
    pub price: MoneyDto,
    /// Optional longer text, up to 500 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A created product.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductCreated {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: MoneyDto,
}

/// Adds a product; a SKU that already exists in the tenant is a 409.
#[utoipa::path(
    post,
    path = "/products",
    tag = "catalog",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body")),
    request_body = CreateProduct,
    responses(
        (status = 201, body = ProductCreated, headers(("Consistency-Token" = i64))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Authorized<Operators>,
    correlation: CorrelationId,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<CreateProduct>,
) -> Result<Answer<ProductCreated>, ApiError> {
    let sku = field("sku", Sku::new(body.sku.clone()))?;
    let name = text("name", &body.name)?;
    let description = body
        .description
        .as_deref()
        .map(|value| text("description", value))
        .transpose()?;
    let price = body.price.positive("price")?;
    let request = Request {
        principal: &principal,
        correlation,
        key,
        route: "POST /products".to_owned(),
    };
    let command = ProductCommand::Create {
        product_id: ProductId::from_uuid(request.new_id()),
        sku: sku.clone(),
        name,
        description,
        price,
        at: Utc::now(),
    };
    let commands = state.commands();
    let outcome = request
        .execute::<Product>(&commands.products, &stream_key(&sku), command, &body)
        .await?;
    let created = commands
        .events_of::<ProductEvent>(&outcome)
        .await?
        .into_iter()
        .find_map(|event| match event {
            ProductEvent::Created(created) => Some(created),
            _ => None,
        })
        .ok_or(ApiError::Internal)?;
    let answer = ProductCreated {
        id: created.product_id,
        sku: created.sku,
        name: created.name,
        price: MoneyDto::from(&created.price),
    };
    Ok(Answer::new(StatusCode::CREATED, &outcome, Some(answer)))
}
