//! The query endpoints: answered from the read models only (`commerce_projections::queries`),
//! never from the event store.
//!
//! Every handler authenticates first (the tenant comes from the token and scopes every read, so
//! another tenant's id is simply not found), then honours a `Consistency-Token`
//! ([`crate::consistency`]), then reads. Orders, payments and shipments are visible to
//! operators and to the customer they belong to; a customer asking for someone else's gets the
//! same 404 as for an id that does not exist. [`views`] holds the documented wire shapes.

mod views;

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use commerce_domain::Sku;
use commerce_projections::queries::{self, OrderFilter, OrderView, Page};
use serde::Deserialize;
use utoipa::IntoParams;

use self::views::{
    CampaignDto, InventoryDto, OrderDto, OrderPage, PaymentDto, PaymentList, ProductDto,
    ShipmentDto, ShipmentList,
};
use crate::auth::{Principal, Role};
use crate::consistency::{ConsistencyToken, ReadError, read_after};
use crate::extract::{Authorized, Shoppers};
use crate::problem::{ApiError, Problem};
use crate::routes::path_id;
use crate::state::AppState;

/// The order statuses of the contract, the values `GET /orders?status=` accepts.
const ORDER_STATUSES: [&str; 7] = [
    "placed",
    "awaiting_payment",
    "confirmed",
    "shipped",
    "delivered",
    "completed",
    "canceled",
];

type Answer<T> = Result<Json<T>, ReadError>;

fn not_found(what: &str) -> ReadError {
    ReadError::Api(ApiError::NotFound(what.to_owned()))
}

/// Whether `principal` may see an object of `customer_id` (operators see all of their tenant).
fn may_see(principal: &Principal, customer_id: &str) -> bool {
    principal.has(Role::Operator) || principal.subject.as_str() == customer_id
}

/// The order, when it exists in the caller's tenant and the caller may see it.
async fn visible_order(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<OrderView, ReadError> {
    let id = path_id("order", id)?;
    queries::order_by_id(state.pool(), principal.tenant.as_str(), id)
        .await?
        .filter(|order| may_see(principal, &order.customer_id))
        .ok_or_else(|| not_found("order"))
}

/// A product of the caller's tenant.
#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "catalog",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The product"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = ProductDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn product(
    State(state): State<AppState>,
    principal: Principal,
    token: ConsistencyToken,
    Path(id): Path<String>,
) -> Answer<ProductDto> {
    let id = path_id("product", &id)?;
    read_after(&state, &principal.tenant, token).await?;
    queries::product_by_id(state.pool(), principal.tenant.as_str(), id)
        .await?
        .map(|product| Json(product.into()))
        .ok_or_else(|| not_found("product"))
}

/// `GET /products` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductLookup {
    /// The SKU to look up (required).
    pub sku: Option<String>,
}

/// The product with a SKU, in the caller's tenant.
#[utoipa::path(
    get,
    path = "/products",
    tag = "catalog",
    security(("bearer" = [])),
    params(
        ProductLookup,
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = ProductDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn product_by_sku(
    State(state): State<AppState>,
    principal: Principal,
    token: ConsistencyToken,
    Query(lookup): Query<ProductLookup>,
) -> Answer<ProductDto> {
    let sku = lookup
        .sku
        .filter(|sku| !sku.trim().is_empty())
        .ok_or_else(|| ApiError::BadRequest("the `sku` query parameter is required".to_owned()))?;
    let sku = Sku::new(sku).map_err(|_| not_found("product"))?;
    read_after(&state, &principal.tenant, token).await?;
    queries::product_by_sku(state.pool(), principal.tenant.as_str(), sku.as_str())
        .await?
        .map(|product| Json(product.into()))
        .ok_or_else(|| not_found("product"))
}

/// The stock of a SKU over all locations, in the caller's tenant.
#[utoipa::path(
    get,
    path = "/inventory/{sku}",
    tag = "inventory",
    security(("bearer" = [])),
    params(
        ("sku" = String, Path, description = "The SKU"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = InventoryDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn inventory(
    State(state): State<AppState>,
    principal: Principal,
    token: ConsistencyToken,
    Path(sku): Path<String>,
) -> Answer<InventoryDto> {
    let sku = Sku::new(sku).map_err(|_| not_found("inventory"))?;
    read_after(&state, &principal.tenant, token).await?;
    queries::inventory_by_sku(state.pool(), principal.tenant.as_str(), sku.as_str())
        .await?
        .map(|inventory| Json(inventory.into()))
        .ok_or_else(|| not_found("inventory"))
}

/// An order: its owner or an operator.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The order"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = OrderDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn order(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    token: ConsistencyToken,
    Path(id): Path<String>,
) -> Answer<OrderDto> {
    read_after(&state, &principal.tenant, token).await?;
    Ok(Json(visible_order(&state, &principal, &id).await?.into()))
}

/// `GET /orders` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    /// Only orders in this status (`placed`, `awaiting_payment`, `confirmed`, `shipped`,
    /// `delivered`, `completed`, `canceled`).
    pub status: Option<String>,
    /// Only this customer's orders (operators; a customer always sees only its own).
    pub customer_id: Option<String>,
    /// Orders created at or after this RFC 3339 instant.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// Orders created before this RFC 3339 instant.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
    /// Page size, 1 to 500 (default 50); larger is a 400.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Orders, newest first: a customer's own, or any of the tenant's for operators.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    security(("bearer" = [])),
    params(
        OrderListParams,
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = OrderPage),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn orders(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    token: ConsistencyToken,
    Query(params): Query<OrderListParams>,
) -> Answer<OrderPage> {
    let Some(filter) = order_filter(&principal, params, state.limits().list_max)? else {
        return Ok(Json(OrderPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    read_after(&state, &principal.tenant, token).await?;
    let Page { items, next_cursor } =
        queries::list_orders(state.pool(), principal.tenant.as_str(), &filter).await?;
    Ok(Json(OrderPage {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// The read-model filter of a listing; `None` when it cannot match anything the caller may
/// see (a customer filtering on another customer).
fn order_filter(
    principal: &Principal,
    params: OrderListParams,
    list_max: u32,
) -> Result<Option<OrderFilter>, ApiError> {
    let bad = |message: String| ApiError::BadRequest(message);
    let limit = params
        .limit
        .map(|limit| {
            limit
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=list_max).contains(limit))
                .ok_or_else(|| bad(format!("limit must be an integer from 1 to {list_max}")))
        })
        .transpose()?;
    let instant = |name: &str, value: Option<String>| {
        value
            .map(|text| {
                DateTime::parse_from_rfc3339(text.trim())
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|_| bad(format!("{name} must be an RFC 3339 instant")))
            })
            .transpose()
    };
    let from = instant("from", params.from)?;
    let to = instant("to", params.to)?;
    if let Some(status) = &params.status
        && !ORDER_STATUSES.contains(&status.as_str())
    {
        return Err(bad(format!(
            "status must be one of {}",
            ORDER_STATUSES.join(", ")
        )));
    }
    let customer_id = if principal.has(Role::Operator) {
        // Only what a customer id can be: anything else (a NUL byte) would otherwise reach
        // PostgreSQL and come back as a storage error.
        if let Some(asked) = &params.customer_id
            && commerce_domain::CustomerId::new(asked.as_str()).is_err()
        {
            return Err(bad(
                "customer_id must be 1 to 128 characters, without / or control characters"
                    .to_owned(),
            ));
        }
        params.customer_id
    } else {
        let own = principal.subject.as_str();
        if params
            .customer_id
            .as_deref()
            .is_some_and(|asked| asked != own)
        {
            return Ok(None);
        }
        Some(own.to_owned())
    };
    Ok(Some(OrderFilter {
        status: params.status,
        customer_id,
        from,
        to,
        limit,
        cursor: params.cursor,
    }))
}

/// A campaign of the caller's tenant.
#[utoipa::path(
    get,
    path = "/campaigns/{id}",
    tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The campaign"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = CampaignDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn campaign(
    State(state): State<AppState>,
    principal: Principal,
    token: ConsistencyToken,
    Path(id): Path<String>,
) -> Answer<CampaignDto> {
    let id = path_id("campaign", &id)?;
    read_after(&state, &principal.tenant, token).await?;
    queries::campaign_by_id(state.pool(), principal.tenant.as_str(), id)
        .await?
        .map(|campaign| Json(campaign.into()))
        .ok_or_else(|| not_found("campaign"))
}

/// A payment: its customer or an operator.
#[utoipa::path(
    get,
    path = "/payments/{id}",
    tag = "payments",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The payment"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = PaymentDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn payment(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    token: ConsistencyToken,
    Path(id): Path<String>,
) -> Answer<PaymentDto> {
    let id = path_id("payment", &id)?;
    read_after(&state, &principal.tenant, token).await?;
    queries::payment_by_id(state.pool(), principal.tenant.as_str(), id)
        .await?
        .filter(|payment| may_see(&principal, &payment.customer_id))
        .map(|payment| Json(payment.into()))
        .ok_or_else(|| not_found("payment"))
}

/// The payments of an order: its owner or an operator.
#[utoipa::path(
    get,
    path = "/orders/{id}/payments",
    tag = "payments",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The order"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = PaymentList),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn order_payments(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    token: ConsistencyToken,
    Path(id): Path<String>,
) -> Answer<PaymentList> {
    read_after(&state, &principal.tenant, token).await?;
    let order = visible_order(&state, &principal, &id).await?;
    let payments =
        queries::payments_by_order(state.pool(), principal.tenant.as_str(), order.id).await?;
    Ok(Json(PaymentList {
        items: payments.into_iter().map(Into::into).collect(),
        next_cursor: None,
    }))
}

/// A shipment: the customer of its order or an operator.
#[utoipa::path(
    get,
    path = "/shipments/{id}",
    tag = "shipping",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The shipment"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = ShipmentDto),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn shipment(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    token: ConsistencyToken,
    Path(id): Path<String>,
) -> Answer<ShipmentDto> {
    let id = path_id("shipment", &id)?;
    read_after(&state, &principal.tenant, token).await?;
    let tenant = principal.tenant.as_str();
    let shipment = queries::shipment_by_id(state.pool(), tenant, id)
        .await?
        .ok_or_else(|| not_found("shipment"))?;
    if !principal.has(Role::Operator) {
        // The shipment's customer is its order's.
        let owner = queries::order_by_id(state.pool(), tenant, shipment.order_id)
            .await?
            .map(|order| order.customer_id);
        if owner.as_deref() != Some(principal.subject.as_str()) {
            return Err(not_found("shipment"));
        }
    }
    Ok(Json(shipment.into()))
}

/// The shipments of an order: its owner or an operator.
#[utoipa::path(
    get,
    path = "/orders/{id}/shipments",
    tag = "shipping",
    security(("bearer" = [])),
    params(
        ("id" = uuid::Uuid, Path, description = "The order"),
        ("Consistency-Token" = Option<i64>, Header, description = "Wait until this command result is visible"),
    ),
    responses(
        (status = 200, body = ShipmentList),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "The read model has not caught up with the Consistency-Token (Retry-After)"),
    )
)]
pub async fn order_shipments(
    State(state): State<AppState>,
    principal: Authorized<Shoppers>,
    token: ConsistencyToken,
    Path(id): Path<String>,
) -> Answer<ShipmentList> {
    read_after(&state, &principal.tenant, token).await?;
    let order = visible_order(&state, &principal, &id).await?;
    let shipments =
        queries::shipments_by_order(state.pool(), principal.tenant.as_str(), order.id).await?;
    Ok(Json(ShipmentList {
        items: shipments.into_iter().map(Into::into).collect(),
        next_cursor: None,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use commerce_domain::{CustomerId, TenantId};

    use super::*;

    fn principal(subject: &str, role: Role) -> Principal {
        Principal {
            subject: CustomerId::new(subject).expect("valid subject"),
            tenant: TenantId::new("acme").expect("valid tenant"),
            roles: BTreeSet::from([role]),
        }
    }

    fn params() -> OrderListParams {
        OrderListParams {
            status: None,
            customer_id: None,
            from: None,
            to: None,
            limit: None,
            cursor: None,
        }
    }

    #[test]
    fn given_a_customer_when_listing_then_the_filter_is_its_own_orders() {
        let alice = principal("alice", Role::Customer);
        let filter = order_filter(&alice, params(), 500)
            .expect("valid")
            .expect("matches");
        assert_eq!(filter.customer_id.as_deref(), Some("alice"));
        let others = OrderListParams {
            customer_id: Some("bob".into()),
            ..params()
        };
        assert!(order_filter(&alice, others, 500).expect("valid").is_none());
    }

    #[test]
    fn given_an_operator_when_filtering_then_every_filter_is_kept() {
        let operator = principal("op", Role::Operator);
        let given = OrderListParams {
            status: Some("confirmed".into()),
            customer_id: Some("bob".into()),
            from: Some("2026-01-01T00:00:00Z".into()),
            to: Some("2026-02-01T00:00:00+01:00".into()),
            limit: Some("10".into()),
            cursor: Some("abcd".into()),
        };
        let filter = order_filter(&operator, given, 500)
            .expect("valid")
            .expect("matches");
        assert_eq!(filter.customer_id.as_deref(), Some("bob"));
        assert_eq!(filter.limit, Some(10));
        assert_eq!(
            filter.to.map(|to| to.to_rfc3339()),
            Some("2026-01-31T23:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn given_bad_pagination_or_filters_when_listing_then_400() {
        let operator = principal("op", Role::Operator);
        for (limit, status, from) in [
            (Some("0"), None, None),
            (Some("501"), None, None),
            (Some("1000000"), None, None),
            (Some("-1"), None, None),
            (Some("ten"), None, None),
            (None, Some("lost"), None),
            (None, None, Some("yesterday")),
        ] {
            let given = OrderListParams {
                limit: limit.map(str::to_owned),
                status: status.map(str::to_owned),
                from: from.map(str::to_owned),
                ..params()
            };
            let error = order_filter(&operator, given, 500).expect_err("refused");
            assert_eq!(error.status(), 400, "{limit:?} {status:?} {from:?}");
        }
    }
}
