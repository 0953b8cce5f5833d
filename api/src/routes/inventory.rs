//! `PUT /inventory`: operators set the on-hand stock of a SKU at a location.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use commerce_aggregates::inventory::{Inventory, InventoryCommand, StockItem, stream_key};
use commerce_domain::{LocationId, Sku};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::commands::{Answer, Request};
use crate::extract::{ApiJson, Authorized, CorrelationId, IdempotencyKey, Operators};
use crate::problem::{ApiError, Problem};
use crate::routes::field;
use crate::state::AppState;

/// Largest on-hand count accepted (keeps every sum of counts far from overflow).
const MAX_ON_HAND: u64 = 1_000_000_000_000;

/// The absolute stock of a SKU at one location.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// The SKU (1 to 64 of `[A-Za-z0-9._-]`).
    pub sku: String,
    /// The new on-hand count (absolute, not a delta).
    #[schema(maximum = 1_000_000_000_000_u64)]
    pub quantity: u64,
    /// The location; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// Sets the on-hand stock; refused (409) when it would not cover the units already reserved.
#[utoipa::path(
    put,
    path = "/inventory",
    tag = "inventory",
    security(("bearer" = [])),
    request_body = SetStock,
    responses(
        (status = 204, description = "Stock set", headers(("Consistency-Token" = i64, description = "global position of the last event"))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn set_stock(
    State(state): State<AppState>,
    principal: Authorized<Operators>,
    correlation: CorrelationId,
    ApiJson(body): ApiJson<SetStock>,
) -> Result<Answer<()>, ApiError> {
    let sku = field("sku", Sku::new(body.sku.clone()))?;
    let location = match &body.location {
        Some(location) => field("location", LocationId::new(location.clone()))?,
        None => LocationId::default_location(),
    };
    if body.quantity > MAX_ON_HAND {
        return Err(ApiError::invalid(
            "quantity",
            format!("must be at most {MAX_ON_HAND}"),
        ));
    }
    let key = stream_key(&sku, &location);
    let command = InventoryCommand::SetStock {
        item: StockItem::new(sku, location),
        on_hand: body.quantity,
        reason: "set by operator".to_owned(),
        at: Utc::now(),
    };
    let request = Request {
        principal: &principal,
        correlation,
        key: IdempotencyKey(None),
        route: "PUT /inventory".to_owned(),
    };
    let outcome = request
        .execute::<Inventory>(&state.commands().inventory, &key, command, &body)
        .await?;
    Ok(Answer::new(StatusCode::NO_CONTENT, &outcome, None))
}
