//! `POST /campaigns` (operators configure a group-buying campaign) and
//! `POST /campaigns/{id}/join` (a customer joins as itself).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use commerce_aggregates::campaign::{Campaign, CampaignCommand, CreateCampaign, stream_key};
use commerce_contracts::events::CampaignEvent;
use commerce_domain::{CampaignId, LocationId, ParticipantId, Quantity, Sku};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::commands::{Answer, Request};
use crate::extract::{ApiJson, Authorized, CorrelationId, Customers, IdempotencyKey, Operators};
use crate::problem::{ApiError, Problem};
use crate::routes::dto::MoneyDto;
use crate::routes::{field, path_id, text};
use crate::state::AppState;

/// A group-buying campaign's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignRequest {
    /// The catalog SKU sold.
    pub sku: String,
    /// Paid participants needed for success.
    pub min_participants: u32,
    /// Places available.
    pub max_participants: u32,
    /// The price when the campaign succeeds.
    pub group_price: MoneyDto,
    /// The list price shown beside it.
    pub original_price: MoneyDto,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// Units one customer may hold; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_customer_limit: Option<u32>,
    /// The stock location reserved from; `default` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A created campaign.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CampaignCreated {
    pub id: Uuid,
    /// `scheduled`, or `active` when it starts at once.
    pub status: &'static str,
}

/// Creates a campaign (it starts by itself at `start_time`).
#[utoipa::path(
    post,
    path = "/campaigns",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body")),
    request_body = CreateCampaignRequest,
    responses(
        (status = 201, body = CampaignCreated, headers(("Consistency-Token" = i64))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    principal: Authorized<Operators>,
    correlation: CorrelationId,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<CreateCampaignRequest>,
) -> Result<Answer<CampaignCreated>, ApiError> {
    let sku = field("sku", Sku::new(body.sku.clone()))?;
    let location = match &body.location {
        Some(location) => field("location", LocationId::new(location.clone()))?,
        None => LocationId::default_location(),
    };
    let group_price = body.group_price.positive("group_price")?;
    let original_price = body.original_price.positive("original_price")?;
    let request = Request {
        principal: &principal,
        correlation,
        key,
        route: "POST /campaigns".to_owned(),
    };
    let campaign_id = CampaignId::from_uuid(request.new_id());
    let command = CampaignCommand::Create(CreateCampaign {
        campaign_id,
        tenant: principal.tenant.clone(),
        sku,
        location,
        group_price,
        original_price,
        min_participants: body.min_participants,
        max_participants: body.max_participants,
        per_customer_limit: body.per_customer_limit,
        per_order_limit: None,
        virtual_completion_pct: 0,
        start_time: body.start_time,
        end_time: body.end_time,
        at: Utc::now(),
    });
    let commands = state.commands();
    let outcome = request
        .execute::<Campaign>(
            &commands.campaigns,
            &stream_key(campaign_id),
            command,
            &body,
        )
        .await?;
    let events = commands.events_of::<CampaignEvent>(&outcome).await?;
    if !events
        .iter()
        .any(|event| matches!(event, CampaignEvent::Created(_)))
    {
        return Err(ApiError::Internal);
    }
    let started = events
        .iter()
        .any(|event| matches!(event, CampaignEvent::Started(_)));
    let created = CampaignCreated {
        id: campaign_id.as_uuid(),
        status: if started { "active" } else { "scheduled" },
    };
    Ok(Answer::new(StatusCode::CREATED, &outcome, Some(created)))
}

/// A customer's participation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// Units (default 1, within the campaign's per-customer limit).
    #[serde(default = "one")]
    #[schema(minimum = 1, default = 1)]
    pub quantity: u32,
    /// A payment method token of the gateway, e.g. `pm_card_ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
}

fn one() -> u32 {
    1
}

/// A participation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Joined {
    pub campaign_id: Uuid,
    pub participant_id: Uuid,
    /// `joined`: the participant's payment is being authorized.
    pub status: &'static str,
}

/// Joins a campaign at its group price.
#[utoipa::path(
    post,
    path = "/campaigns/{id}/join",
    tag = "campaigns",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The campaign"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body"),
    ),
    request_body = JoinRequest,
    responses(
        (status = 200, body = Joined, headers(("Consistency-Token" = i64))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn join(
    State(state): State<AppState>,
    principal: Authorized<Customers>,
    correlation: CorrelationId,
    key: IdempotencyKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<JoinRequest>,
) -> Result<Answer<Joined>, ApiError> {
    let campaign_id = CampaignId::from_uuid(path_id("campaign", &id)?);
    let quantity = field("quantity", Quantity::new(body.quantity))?;
    let payment_method = body
        .payment_method
        .as_deref()
        .map(|method| text("payment_method", method))
        .transpose()?;
    let request = Request {
        principal: &principal,
        correlation,
        key,
        route: format!("POST /campaigns/{campaign_id}/join"),
    };
    let participant_id = ParticipantId::from_uuid(request.new_id());
    let command = CampaignCommand::Join {
        participant_id,
        customer: principal.subject.clone(),
        quantity,
        payment_method,
        at: Utc::now(),
    };
    let commands = state.commands();
    let outcome = request
        .execute::<Campaign>(
            &commands.campaigns,
            &stream_key(campaign_id),
            command,
            &body,
        )
        .await?;
    // A fresh join appended this very participant; only a replay (whose id may come from
    // an earlier request) reads the stored event back.
    let joined = if outcome.replayed {
        commands
            .events_of::<CampaignEvent>(&outcome)
            .await?
            .into_iter()
            .find_map(|event| match event {
                CampaignEvent::Joined(joined) => Some(joined.participant_id),
                _ => None,
            })
            .unwrap_or(participant_id.as_uuid())
    } else {
        participant_id.as_uuid()
    };
    let answer = Joined {
        campaign_id: campaign_id.as_uuid(),
        participant_id: joined,
        status: "joined",
    };
    Ok(Answer::new(StatusCode::OK, &outcome, Some(answer)))
}
