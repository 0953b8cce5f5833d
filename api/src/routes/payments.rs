//! Payment commands: refunds by operators, and the payment provider's webhooks.
//!
//! Webhooks carry no token: the provider signs the raw body (see [`crate::webhooks`]), and the
//! tenant is a field of that signed body, which only the engine's gateway integration (holder
//! of the shared secret) can produce. Redeliveries are deduplicated by the Payment aggregate on
//! `provider_event_id`.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use commerce_aggregates::payment::{
    Payment, PaymentCommand, PaymentStatus, ProviderEvent, ProviderEventKind, stream_key,
};
use commerce_contracts::events::PaymentEvent;
use commerce_domain::{CustomerId, PaymentId, TenantId};
use commerce_eventstore::StreamId;
use commerce_workflows::orphans::{self, OrphanedFunds};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Principal;
use crate::commands::{Answer, Request};
use crate::extract::{ApiJson, Authorized, CorrelationId, IdempotencyKey, Operators, parse_json};
use crate::problem::{ApiError, Problem};
use crate::routes::dto::MoneyDto;
use crate::routes::{field, text};
use crate::state::AppState;
use crate::webhooks::SIGNATURE_HEADER;

/// A refund of captured money.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// How much to give back (at most what was captured and not yet refunded).
    pub amount: MoneyDto,
    /// Why (kept in the audit trail), 1 to 500 characters.
    pub reason: String,
}

/// A requested refund; the provider settles it asynchronously.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundAccepted {
    pub payment_id: Uuid,
    pub refund_id: Uuid,
    pub amount: MoneyDto,
    /// Always `requested`: the payment's `refunded` grows when the provider confirms.
    pub status: &'static str,
}

/// Asks the provider to refund part or all of a captured payment.
#[utoipa::path(
    post,
    path = "/payments/{id}/refund",
    tag = "payments",
    security(("bearer" = [])),
    params(
        ("id" = Uuid, Path, description = "The payment"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for the same key and body"),
    ),
    request_body = RefundRequest,
    responses(
        (status = 202, body = RefundAccepted, headers(("Consistency-Token" = i64))),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn refund(
    State(state): State<AppState>,
    principal: Authorized<Operators>,
    correlation: CorrelationId,
    key: IdempotencyKey,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RefundRequest>,
) -> Result<Answer<RefundAccepted>, ApiError> {
    let payment_id = super::path_id("payment", &id).map(PaymentId::from_uuid)?;
    let amount = body.amount.positive("amount")?;
    let reason = text("reason", &body.reason)?;
    let request = Request {
        principal: &principal,
        correlation,
        key,
        route: format!("POST /payments/{payment_id}/refund"),
    };
    let command = PaymentCommand::RequestRefund {
        refund_id: request.new_id(),
        amount,
        reason,
        at: Utc::now(),
    };
    let commands = state.commands();
    let outcome = request
        .execute::<Payment>(&commands.payments, &stream_key(&payment_id), command, &body)
        .await?;
    let requested = commands
        .events_of::<PaymentEvent>(&outcome)
        .await?
        .into_iter()
        .find_map(|event| match event {
            PaymentEvent::RefundRequested(requested) => Some(requested),
            _ => None,
        })
        .ok_or(ApiError::Internal)?;
    let accepted = RefundAccepted {
        payment_id: payment_id.as_uuid(),
        refund_id: requested.refund_id,
        amount: MoneyDto::from(&requested.amount),
        status: "requested",
    };
    Ok(Answer::new(StatusCode::ACCEPTED, &outcome, Some(accepted)))
}

/// What a provider event says happened.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    RequiresAction,
    Authorized,
    Captured,
    Succeeded,
    Failed,
    RefundSucceeded,
    RefundFailed,
}

/// One provider event, signed with the provider's secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEvent {
    /// The provider's id of this event; redeliveries repeat it.
    pub provider_event_id: String,
    /// The tenant the payment belongs to (trusted only because the body is signed).
    pub tenant_id: String,
    pub payment_id: Uuid,
    pub kind: WebhookKind,
    /// Authorized amount, or the cumulative captured amount; the whole payment when absent.
    #[serde(default)]
    pub amount: Option<MoneyDto>,
    #[serde(default)]
    pub provider_ref: Option<String>,
    /// For `authorized`: when the hold lapses (default: in 7 days).
    #[serde(default)]
    pub auth_expires_at: Option<DateTime<Utc>>,
    /// For `refund_succeeded` / `refund_failed`.
    #[serde(default)]
    pub refund_id: Option<Uuid>,
    /// For `failed` / `refund_failed`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Whether a webhook changed the payment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookReceived {
    pub provider_event_id: String,
    /// False for a redelivery or an event that changes nothing.
    pub applied: bool,
}

/// Receives a payment-provider event (HMAC-SHA256 signature over the raw body in
/// `X-Webhook-Signature: sha256=<hex>`).
#[utoipa::path(
    post,
    path = "/payments/webhooks/{provider}",
    tag = "payments",
    params(
        ("provider" = String, Path, description = "The provider, e.g. `sandbox`"),
        ("X-Webhook-Signature" = String, Header, description = "`sha256=` and the hex HMAC-SHA256 of the body"),
    ),
    request_body = WebhookEvent,
    responses(
        (status = 200, body = WebhookReceived),
        (status = "4XX", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn webhook(
    State(state): State<AppState>,
    correlation: CorrelationId,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer<WebhookReceived>, ApiError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok());
    state.webhooks().verify(&provider, signature, &body)?;
    let event: WebhookEvent = parse_json(&body)?;
    let tenant = field("tenant_id", TenantId::new(event.tenant_id.clone()))?;
    if !state
        .tenants()
        .contains(&tenant)
        .await
        .map_err(crate::commands::database_error)?
    {
        return Err(ApiError::NotFound("payment".to_owned()));
    }
    let payment_id = PaymentId::from_uuid(event.payment_id);
    let provider_event = provider_event(&event)?;
    let actor = field("provider", CustomerId::new(format!("provider:{provider}")))?;
    let principal = Principal {
        subject: actor,
        tenant,
        roles: BTreeSet::new(),
    };
    let request = Request {
        principal: &principal,
        correlation,
        key: IdempotencyKey(None),
        route: format!("POST /payments/webhooks/{provider}"),
    };
    let outcome = request
        .execute::<Payment>(
            &state.commands().payments,
            &stream_key(&payment_id),
            PaymentCommand::ApplyProviderEvent(provider_event.clone()),
            &event,
        )
        .await?;
    let applied = !outcome.events.is_empty();
    if !applied {
        keep_orphaned_funds(&state, &principal.tenant, payment_id, &provider_event).await?;
    }
    let received = WebhookReceived {
        provider_event_id: event.provider_event_id,
        applied,
    };
    Ok(Answer::new(StatusCode::OK, &outcome, Some(received)))
}

/// A provider event that changed nothing may still say the provider took money for a payment
/// the engine had closed (voided, failed or expired, nothing captured): a customer finishing
/// 3-D Secure just before the void reached the provider. The payment takes no event for it
/// (PAY-9), so it is recorded apart for the process managers to give back
/// ([`commerce_workflows::orphans`]). If that record cannot be written, the webhook fails and
/// the provider delivers it again.
async fn keep_orphaned_funds(
    state: &AppState,
    tenant: &TenantId,
    payment_id: PaymentId,
    event: &ProviderEvent,
) -> Result<(), ApiError> {
    let captures = match event.kind {
        ProviderEventKind::Captured | ProviderEventKind::Succeeded => true,
        ProviderEventKind::Authorized { .. } => false,
        _ => return Ok(()),
    };
    let stream = StreamId::new(tenant.as_str(), stream_key(&payment_id))
        .map_err(|_| ApiError::NotFound("payment".to_owned()))?;
    let payment = state
        .commands()
        .payments
        .current(&stream)
        .await
        .map_err(|error| {
            tracing::error!(%error, "cannot load a payment for its webhook");
            ApiError::Unavailable
        })?
        .aggregate;
    let closed = matches!(
        payment.status(),
        Some(PaymentStatus::Voided | PaymentStatus::Failed | PaymentStatus::Expired)
    );
    let (Some(currency), Some(amount)) = (payment.currency(), payment.amount()) else {
        return Ok(());
    };
    if !closed
        || payment
            .captured()
            .is_some_and(|captured| captured.is_positive())
    {
        return Ok(());
    }
    let Some(provider_ref) = event
        .provider_ref
        .clone()
        .or_else(|| payment.provider_ref().map(str::to_owned))
    else {
        tracing::error!(%payment_id, provider_event_id = %event.provider_event_id, "a provider took money for a closed payment, without a reference to give it back by");
        return Ok(());
    };
    let captured = captures.then(|| event.amount.unwrap_or(amount));
    let funds = OrphanedFunds {
        tenant: tenant.as_str().to_owned(),
        provider_event_id: event.provider_event_id.clone(),
        payment_id,
        provider_ref,
        captured,
        currency: captured.map_or(currency, |money| money.currency()),
    };
    drop(payment);
    orphans::record(state.pool(), &funds)
        .await
        .map_err(crate::commands::database_error)?;
    tracing::warn!(%payment_id, provider_event_id = %funds.provider_event_id, "a provider took money for a closed payment; the process managers give it back");
    Ok(())
}

fn provider_event(event: &WebhookEvent) -> Result<ProviderEvent, ApiError> {
    let provider_event_id = text("provider_event_id", &event.provider_event_id)?;
    let amount = event
        .amount
        .as_ref()
        .map(|amount| amount.positive("amount"))
        .transpose()?;
    let provider_ref = event
        .provider_ref
        .as_deref()
        .map(|value| text("provider_ref", value))
        .transpose()?;
    let refund_id = || {
        event
            .refund_id
            .ok_or_else(|| ApiError::invalid("refund_id", "required for refund events"))
    };
    let reason = || {
        event
            .reason
            .clone()
            .unwrap_or_else(|| "declined by the provider".to_owned())
    };
    let kind = match event.kind {
        WebhookKind::RequiresAction => ProviderEventKind::RequiresAction,
        WebhookKind::Authorized => ProviderEventKind::Authorized {
            auth_expires_at: event
                .auth_expires_at
                .unwrap_or_else(|| Utc::now() + chrono::Duration::days(7)),
        },
        WebhookKind::Captured => ProviderEventKind::Captured,
        WebhookKind::Succeeded => ProviderEventKind::Succeeded,
        WebhookKind::Failed => ProviderEventKind::Failed { reason: reason() },
        WebhookKind::RefundSucceeded => ProviderEventKind::RefundSucceeded {
            refund_id: refund_id()?,
        },
        WebhookKind::RefundFailed => ProviderEventKind::RefundFailed {
            refund_id: refund_id()?,
            reason: reason(),
        },
    };
    Ok(ProviderEvent {
        provider_event_id,
        kind,
        amount,
        provider_ref,
        at: Utc::now(),
    })
}
