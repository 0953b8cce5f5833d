//! `POST /orders` (checkout) and `POST /orders/{id}/cancel`.
//!
//! A customer orders as itself (`customer_id` is the token's `sub`) and may cancel only its own
//! orders: someone else's order answers 404, like an order of another tenant.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use commerce_aggregates::order::{LineRequest, Order, OrderCommand, PlaceOrder, stream_key};
use commerce_contracts::events::{CancelReason, OrderEvent};
use commerce_domain::{OrderId, Quantity, Sku};
use commerce_eventstore::StreamId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Role;
use crate::commands::{Answer, Request};
use crate::extract::{ApiJson, Authorized, CorrelationId, IdempotencyKey, Shoppers};
use crate::problem::{ApiError, FieldError, Problem};
use crate::routes::dto::{MoneyDto, currency};
use crate::routes::{path_id, text};
use crate::state::AppState;

/// How long an order may stay unpaid before it expires.
const PAYMENT_WINDOW: chrono::Duration = chrono::Duration::minutes(30);

/// One line of a checkout.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    pub sku: String,
    /// 1 to 1,000,000 units.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: u32,
}

/// A checkout: prices come from the catalog, never from the client.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// 1 to `COMMERCE_MAX_ORDER_LINES` (default 100) lines.
    pub lines: Vec<OrderLineRequest>,
    /// The order's ISO 4217 currency; every product's price must be in it.
    pub currency: String,
    /// A payment method token of the gateway, e.g. `pm_card_ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// Campaign orders are placed by joining the campaign; a checkout refuses this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<Uuid>,
}

/// A placed order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderPlaced {
    pub id: Uuid,
    /// `placed`: stock is being reserved.
    pub status: &'static str,
    pub total: MoneyDto,
}

/// Places an order for the caller (a customer orders as itself).
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body")),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, body = OrderPlaced, headers(("Consistency-Token" = i64))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn place(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    correlation: CorrelationId,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<PlaceOrderRequest>,
) -> Result<Answer<OrderPlaced>, ApiError> {
    let max_lines = state.limits().order_lines;
    if body.lines.is_empty() || body.lines.len() > max_lines {
        return Err(ApiError::invalid(
            "lines",
            format!("must hold 1 to {max_lines} lines"),
        ));
    }
    if body.campaign_id.is_some() {
        return Err(ApiError::invalid(
            "campaign_id",
            "campaign orders are placed by joining the campaign (POST /campaigns/{id}/join)",
        ));
    }
    let lines = lines(&body.lines)?;
    let currency = currency("currency", &body.currency)?;
    let payment_method = body
        .payment_method
        .as_deref()
        .map(|method| text("payment_method", method))
        .transpose()?;
    let request = Request {
        principal: &principal,
        correlation,
        key,
        route: "POST /orders".to_owned(),
    };
    let order_id = OrderId::from_uuid(request.new_id());
    let at = Utc::now();
    let command = OrderCommand::PlaceOrder(PlaceOrder {
        tenant: principal.tenant.clone(),
        order_id,
        customer: principal.subject.clone(),
        lines,
        currency,
        payment_method,
        channel: "api".to_owned(),
        at,
        expires_at: at + PAYMENT_WINDOW,
    });
    let commands = state.commands();
    let outcome = request
        .execute::<Order>(&commands.orders, &stream_key(&order_id), command, &body)
        .await?;
    let created = commands
        .events_of::<OrderEvent>(&outcome)
        .await?
        .into_iter()
        .find_map(|event| match event {
            OrderEvent::Created(created) => Some(created),
            _ => None,
        })
        .ok_or(ApiError::Internal)?;
    let placed = OrderPlaced {
        id: created.order_id,
        status: "placed",
        total: MoneyDto::from(&created.total),
    };
    Ok(Answer::new(StatusCode::CREATED, &outcome, Some(placed)))
}

fn lines(requested: &[OrderLineRequest]) -> Result<Vec<LineRequest>, ApiError> {
    let mut errors = Vec::new();
    let mut lines = Vec::with_capacity(requested.len());
    for (index, line) in requested.iter().enumerate() {
        let sku = Sku::new(line.sku.clone());
        let quantity = Quantity::new(line.quantity);
        match (sku, quantity) {
            (Ok(sku), Ok(quantity)) => lines.push(LineRequest { sku, quantity }),
            (sku, quantity) => {
                if let Err(error) = sku {
                    errors.push(FieldError {
                        field: format!("lines[{index}].sku"),
                        message: error.to_string(),
                    });
                }
                if let Err(error) = quantity {
                    errors.push(FieldError {
                        field: format!("lines[{index}].quantity"),
                        message: error.to_string(),
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Why the caller cancels.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Free text kept in the audit trail, 1 to 500 characters.
    pub reason: String,
}

/// A canceled order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderCanceled {
    pub id: Uuid,
    /// `canceled`.
    pub status: &'static str,
    /// `customer_request` or `operator`.
    pub cancel_reason: &'static str,
}

/// Cancels an order that has not shipped; stock is released and the payment voided or
/// refunded by the compensation workflow.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The order"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body"),
    ),
    request_body = CancelRequest,
    responses(
        (status = 200, body = OrderCanceled, headers(("Consistency-Token" = i64))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    correlation: CorrelationId,
    key: IdempotencyKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CancelRequest>,
) -> Result<Answer<OrderCanceled>, ApiError> {
    let order_id = OrderId::from_uuid(path_id("order", &id)?);
    let note = text("reason", &body.reason)?;
    let commands = state.commands();
    let reason = if principal.has(Role::Operator) {
        CancelReason::Operator
    } else {
        // A customer acts only on its own orders; anyone else's is not found.
        let stream = StreamId::new(principal.tenant.as_str(), stream_key(&order_id))
            .map_err(|_| ApiError::NotFound("order".to_owned()))?;
        let owner = commands.order_owner(&stream).await?;
        if owner.as_deref() != Some(principal.subject.as_str()) {
            return Err(ApiError::NotFound("order".to_owned()));
        }
        CancelReason::CustomerRequest
    };
    let request = Request {
        principal: &principal,
        correlation,
        key,
        route: format!("POST /orders/{order_id}/cancel"),
    };
    let command = OrderCommand::Cancel {
        reason,
        note: Some(note),
        by: principal.subject.as_str().to_owned(),
        at: Utc::now(),
    };
    let outcome = request
        .execute::<Order>(&commands.orders, &stream_key(&order_id), command, &body)
        .await?;
    let canceled = commands
        .events_of::<OrderEvent>(&outcome)
        .await?
        .into_iter()
        .find_map(|event| match event {
            OrderEvent::Canceled(canceled) => Some(canceled),
            _ => None,
        })
        .ok_or_else(|| ApiError::Conflict("the order is already canceled".to_owned()))?;
    let answer = OrderCanceled {
        id: order_id.as_uuid(),
        status: "canceled",
        cancel_reason: reason_name(canceled.reason),
    };
    Ok(Answer::new(StatusCode::OK, &outcome, Some(answer)))
}

/// The API name of a cancel reason (the contract's `cancel_reason` values).
fn reason_name(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::InsufficientStock => "insufficient_stock",
        CancelReason::PaymentFailed => "payment_failed",
        CancelReason::CustomerRequest => "customer_request",
        CancelReason::Operator => "operator",
        CancelReason::Expired => "expired",
        CancelReason::CampaignFailed => "campaign_failed",
    }
}
