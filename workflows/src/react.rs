//! Routing: which process manager reacts to which event, and what each deadline does.

use std::sync::Arc;

use commerce_aggregates::campaign::CampaignCommand;
use commerce_aggregates::inventory::{Inventory, InventoryCommand};
use commerce_aggregates::payment::{Payment, PaymentCommand};
use commerce_contracts::ReservationHolder;
use commerce_contracts::events::{
    CampaignEvent, InventoryEvent, OrderEvent, PaymentEvent, PaymentPurpose, ShipmentEvent,
};
use commerce_domain::ReservationId;
use commerce_eventstore::LogEvent;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::deadlines::{DeadlineKind, DueDeadline};
use crate::engine::{Cause, Engine, Issued};
use crate::error::WorkflowError;
use crate::schedule::Footprint;
use crate::{campaign, checkout, compensation};

fn decode<T: DeserializeOwned>(event: &LogEvent) -> Result<T, WorkflowError> {
    serde_json::from_value(event.payload.clone())
        .map_err(|error| WorkflowError::decode(event.event_type.clone(), error))
}

fn stream_uuid(event: &LogEvent) -> Result<Uuid, WorkflowError> {
    Uuid::parse_str(event.stream.key()).map_err(|error| WorkflowError::decode("stream key", error))
}

/// Which flow the reaction to `event` belongs to (see `schedule`): it mirrors [`react`], and
/// whatever it cannot place (an undecodable payload, a payment without a purpose, an expired
/// reservation whose holder only the inventory knows) runs as a barrier.
///
/// Reactions that give stock back (an order canceled or expired, a participant dropped or
/// gone) are barriers too: the log may hold a later reservation that exists only because of
/// that stock (a campaign place freed and taken again), and it must not be refused for stock
/// the log already gave back.
pub(crate) async fn footprint(engine: &Engine, event: &LogEvent) -> Footprint {
    let flow = match event.aggregate_type.as_str() {
        "order" => match decode::<OrderEvent>(event) {
            Ok(
                OrderEvent::Created(_) | OrderEvent::StockReserved(_) | OrderEvent::Confirmed(_),
            ) => stream_uuid(event).map(Footprint::Flow),
            Ok(OrderEvent::Canceled(_) | OrderEvent::Expired(_)) => Ok(Footprint::Barrier),
            Ok(_) => Ok(Footprint::Idle),
            Err(error) => Err(error),
        },
        "payment" => match decode::<PaymentEvent>(event) {
            Ok(
                PaymentEvent::Authorized(_)
                | PaymentEvent::Succeeded(_)
                | PaymentEvent::Failed(_)
                | PaymentEvent::Expired(_),
            ) => payment_flow(engine, event).await,
            Ok(_) => Ok(Footprint::Idle),
            Err(error) => Err(error),
        },
        "inventory" => decode::<InventoryEvent>(event).map(|decoded| match decoded {
            InventoryEvent::Reserved(reserved) => Footprint::Flow(match reserved.holder {
                ReservationHolder::Order(order_id) => order_id,
                ReservationHolder::CampaignParticipant(participant_id) => participant_id,
            }),
            InventoryEvent::ReservationExpired(_) => Footprint::Barrier,
            _ => Footprint::Idle,
        }),
        "shipment" => decode::<ShipmentEvent>(event).map(|decoded| match decoded {
            ShipmentEvent::LabelCreated(label) => Footprint::Flow(label.order_id),
            _ => Footprint::Idle,
        }),
        "campaign" => decode::<CampaignEvent>(event).map(|decoded| match decoded {
            CampaignEvent::Joined(joined) => Footprint::Flow(joined.participant_id),
            CampaignEvent::ParticipantPaid(paid) => Footprint::Flow(paid.participant_id),
            CampaignEvent::ParticipantDropped(_)
            | CampaignEvent::ParticipantLeft(_)
            | CampaignEvent::Created(_)
            | CampaignEvent::Closed(_)
            | CampaignEvent::Failed(_)
            | CampaignEvent::Cancelled(_) => Footprint::Barrier,
            _ => Footprint::Idle,
        }),
        _ => Ok(Footprint::Idle),
    };
    flow.unwrap_or(Footprint::Barrier)
}

/// The flow of a payment's event: the order or participant it is for.
async fn payment_flow(engine: &Engine, event: &LogEvent) -> Result<Footprint, WorkflowError> {
    let payment: Arc<Payment> = engine
        .load(event.stream.tenant(), event.stream.key())
        .await?;
    Ok(match payment.purpose() {
        Some(PaymentPurpose::Order { order_id }) => Footprint::Flow(order_id),
        Some(PaymentPurpose::CampaignParticipant { participant_id, .. }) => {
            Footprint::Flow(participant_id)
        }
        None => Footprint::Barrier,
    })
}

/// Reacts to one event of the global log (most events need no reaction).
pub(crate) async fn react(engine: &Engine, event: &LogEvent) -> Result<(), WorkflowError> {
    let cause = Cause::event(
        event.stream.tenant(),
        event.event_id,
        event.metadata.correlation_id,
    );
    let cause = &cause;
    match event.aggregate_type.as_str() {
        "order" => on_order(engine, cause, event).await,
        "payment" => on_payment(engine, cause, event).await,
        "inventory" => on_inventory(engine, cause, event).await,
        "shipment" => match decode::<ShipmentEvent>(event)? {
            ShipmentEvent::LabelCreated(label) => {
                checkout::on_label_created(engine, cause, &label).await
            }
            _ => Ok(()),
        },
        "campaign" => on_campaign(engine, cause, event).await,
        _ => Ok(()),
    }
}

async fn on_order(engine: &Engine, cause: &Cause, event: &LogEvent) -> Result<(), WorkflowError> {
    let order_id = stream_uuid(event)?;
    match decode::<OrderEvent>(event)? {
        OrderEvent::Created(created) => checkout::on_order_created(engine, cause, &created).await,
        OrderEvent::StockReserved(_) => checkout::on_stock_reserved(engine, cause, order_id).await,
        OrderEvent::Confirmed(_) => checkout::on_order_confirmed(engine, cause, order_id).await,
        OrderEvent::Canceled(_) => {
            compensation::on_order_closed(engine, cause, order_id, "order_canceled").await
        }
        OrderEvent::Expired(_) => {
            compensation::on_order_closed(engine, cause, order_id, "order_expired").await
        }
        _ => Ok(()),
    }
}

async fn on_payment(engine: &Engine, cause: &Cause, event: &LogEvent) -> Result<(), WorkflowError> {
    let payment_id = stream_uuid(event)?;
    let event = decode::<PaymentEvent>(event)?;
    // A charge's authorization lapses the moment it is given (`auth_expires_at == at`): it is
    // captured in the same decision, so there is no hold to expire. Scheduling it anyway made
    // a deadline due at once for every paid order, and a due deadline holds new reactions back
    // until the running ones end.
    if let PaymentEvent::Authorized(authorized) = &event
        && authorized.auth_expires_at > authorized.at
    {
        engine
            .deadlines()
            .schedule(
                cause,
                DeadlineKind::AuthorizationExpiry,
                &payment_id.to_string(),
                authorized.auth_expires_at,
            )
            .await?;
    }
    let purpose = engine
        .load::<Payment>(&cause.tenant, payment_id.to_string())
        .await?
        .purpose();
    match (purpose, event) {
        (Some(PaymentPurpose::Order { order_id }), PaymentEvent::Succeeded(_)) => {
            checkout::on_payment_succeeded(engine, cause, order_id, payment_id).await
        }
        (Some(PaymentPurpose::Order { order_id }), PaymentEvent::Failed(failed)) => {
            checkout::on_payment_failed(engine, cause, order_id, payment_id, &failed.reason).await
        }
        (
            Some(PaymentPurpose::CampaignParticipant {
                campaign_id,
                participant_id,
            }),
            PaymentEvent::Authorized(_),
        ) => {
            campaign::on_participant_payment_settled(
                engine,
                cause,
                campaign_id,
                participant_id,
                payment_id,
            )
            .await
        }
        (Some(PaymentPurpose::Order { order_id }), PaymentEvent::Expired(_)) => {
            // An order's hold that lapsed uncaptured is a failed attempt: retry or cancel.
            checkout::on_payment_failed(
                engine,
                cause,
                order_id,
                payment_id,
                "authorization_expired",
            )
            .await
        }
        (
            Some(PaymentPurpose::CampaignParticipant {
                campaign_id,
                participant_id,
            }),
            PaymentEvent::Expired(_),
        ) => {
            campaign::on_participant_authorization_expired(
                engine,
                cause,
                campaign_id,
                participant_id,
            )
            .await
        }
        (
            Some(PaymentPurpose::CampaignParticipant {
                campaign_id,
                participant_id,
            }),
            PaymentEvent::Failed(_),
        ) => {
            campaign::on_participant_payment_failed(engine, cause, campaign_id, participant_id)
                .await
        }
        _ => Ok(()),
    }
}

async fn on_inventory(
    engine: &Engine,
    cause: &Cause,
    event: &LogEvent,
) -> Result<(), WorkflowError> {
    match decode::<InventoryEvent>(event)? {
        InventoryEvent::Reserved(reserved) => {
            engine
                .deadlines()
                .schedule(
                    cause,
                    DeadlineKind::ReservationExpiry(reserved.reservation_id),
                    event.stream.key(),
                    reserved.expires_at,
                )
                .await?;
            // Stock taken for a flow that has ended meanwhile (a previous leader finishing a
            // reaction after the compensation ran) is given back here.
            let link = crate::links::ReservationLink {
                reservation_id: reserved.reservation_id,
                sku: reserved.sku.clone(),
                location: reserved.location.clone(),
                quantity: reserved.quantity,
            };
            match reserved.holder {
                ReservationHolder::Order(order_id) => {
                    compensation::on_reserved_for_order(engine, cause, order_id, &link).await
                }
                ReservationHolder::CampaignParticipant(participant_id) => {
                    match participant_campaign(engine, cause, participant_id).await? {
                        Some(campaign_id) => {
                            campaign::on_reserved_for_participant(
                                engine,
                                cause,
                                campaign_id,
                                participant_id,
                                &link,
                            )
                            .await
                        }
                        None => Ok(()),
                    }
                }
            }
        }
        InventoryEvent::ReservationExpired(expired) => {
            let holder = engine
                .load::<Inventory>(&cause.tenant, event.stream.key())
                .await?
                .reservation(ReservationId::from_uuid(expired.reservation_id))
                .map(|r| r.holder());
            if let Some(ReservationHolder::CampaignParticipant(participant_id)) = holder {
                // An unpaid participant whose hold lapsed loses the place; a paid one is
                // refused by the campaign and keeps it.
                let campaign_id = participant_campaign(engine, cause, participant_id).await?;
                if let Some(campaign_id) = campaign_id {
                    engine
                        .issue(
                            &engine.campaigns,
                            cause,
                            "drop_expired",
                            campaign_id.to_string(),
                            CampaignCommand::DropParticipant {
                                participant_id: commerce_domain::ParticipantId::from_uuid(
                                    participant_id,
                                ),
                                reason: "reservation_expired".to_owned(),
                                at: engine.now(),
                            },
                        )
                        .await?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The campaign of a participant: its campaign link, else its payment's purpose (joins handled
/// before the link existed).
async fn participant_campaign(
    engine: &Engine,
    cause: &Cause,
    participant_id: Uuid,
) -> Result<Option<Uuid>, WorkflowError> {
    if let Some(campaign_id) = engine
        .links()
        .campaign(&cause.tenant, participant_id)
        .await?
    {
        return Ok(Some(campaign_id));
    }
    let owner = crate::links::Owner::Participant(participant_id);
    for link in engine.links().payments(&cause.tenant, owner).await? {
        let payment: Arc<Payment> = engine
            .load(&cause.tenant, link.payment_id.to_string())
            .await?;
        if let Some(PaymentPurpose::CampaignParticipant { campaign_id, .. }) = payment.purpose() {
            return Ok(Some(campaign_id));
        }
    }
    Ok(None)
}

async fn on_campaign(
    engine: &Engine,
    cause: &Cause,
    event: &LogEvent,
) -> Result<(), WorkflowError> {
    let campaign_id = stream_uuid(event)?;
    match decode::<CampaignEvent>(event)? {
        CampaignEvent::Created(created) => campaign::on_created(engine, cause, &created).await,
        CampaignEvent::Joined(joined) => {
            campaign::on_joined(engine, cause, campaign_id, &joined).await
        }
        CampaignEvent::ParticipantPaid(_) => {
            campaign::on_participant_paid(engine, cause, campaign_id).await
        }
        CampaignEvent::ParticipantDropped(dropped) => {
            campaign::on_participant_gone(engine, cause, dropped.participant_id, &dropped.reason)
                .await
        }
        CampaignEvent::ParticipantLeft(left) => {
            campaign::on_participant_gone(engine, cause, left.participant_id, "participant_left")
                .await
        }
        CampaignEvent::Closed(_) => campaign::on_closed(engine, cause, campaign_id).await,
        CampaignEvent::Failed(_) | CampaignEvent::Cancelled(_) => {
            campaign::on_failed(engine, cause, campaign_id).await
        }
        _ => Ok(()),
    }
}

/// Fires one due deadline; the returned text is recorded as its outcome.
pub(crate) async fn fire(engine: &Engine, due: DueDeadline) -> Result<String, WorkflowError> {
    let now = engine.now();
    let cause = &due.cause;
    let key = due.aggregate_key.clone();
    let issued = match due.kind {
        DeadlineKind::OrderExpiry => checkout::expire_order(engine, cause, &key).await?,
        DeadlineKind::ReservationExpiry(_) => {
            checkout::commit_paid_due(engine, cause, &key).await?;
            engine
                .issue(
                    &engine.inventory,
                    cause,
                    "fire",
                    key,
                    InventoryCommand::ExpireReservations { now },
                )
                .await?
        }
        DeadlineKind::CampaignStart => {
            engine
                .issue(
                    &engine.campaigns,
                    cause,
                    "fire",
                    key,
                    CampaignCommand::Start { at: now },
                )
                .await?
        }
        DeadlineKind::CampaignEnd => {
            engine
                .issue(
                    &engine.campaigns,
                    cause,
                    "fire",
                    key,
                    CampaignCommand::Expire { at: now },
                )
                .await?
        }
        DeadlineKind::AuthorizationExpiry => {
            engine
                .issue(
                    &engine.payments,
                    cause,
                    "fire",
                    key,
                    PaymentCommand::ExpireAuthorization { at: now },
                )
                .await?
        }
    };
    Ok(match issued {
        Issued::Applied(types) if types.is_empty() => "no-op".to_owned(),
        Issued::Applied(types) => format!("appended {}", types.join(", ")),
        Issued::Refused(error) => format!("refused: {error}"),
    })
}
