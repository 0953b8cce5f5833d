//! The campaign process manager (group buying, §3.4/§3.5 of the commerce anchors).
//!
//! - `campaign.created` arms the start and end deadlines.
//! - `campaign.joined` reserves the participant's stock (holder = the participant, held until
//!   a day after the end time), then opens a manual-capture payment for the snapshotted group
//!   amount and authorizes it; `payment.authorized` makes the participant paid (the campaign
//!   turns successful by itself once the minimum paid). No stock or a declined payment drops
//!   the participant, which releases the stock and voids the hold.
//! - `campaign.participant_paid` that fills the last place of a successful campaign closes it
//!   at once (every place is paid: nobody else can join, so waiting for the end time would
//!   only delay the orders).
//! - At the end time the deadline `Expire`s the campaign: a successful one closes, a failed one
//!   fails. `campaign.closed` captures every paid participant, places their order (which this
//!   module then confirms on the participant's reservation and payment, so checkout fulfils
//!   it), and records it on the campaign; participants still unpaid are dropped and get their
//!   stock and hold back. `payment.expired` (a hold that lapsed) drops or lets go of its
//!   participant while the campaign allows it.
//!   `campaign.failed`/`campaign.cancelled` void or refund every participant, release their
//!   stock and record the refund (CMP-7).
//!
//! Capacity and per-customer limits are the Campaign aggregate's guards under concurrent joins
//! (CMP-2, CMP-4); this module only ever acts on participants the aggregate admitted.
//!
//! A flash sale's campaign holds thousands of participants and takes a command per join, so
//! every reaction reads it as the executor's shared snapshot and keeps only what it needs,
//! dropping the snapshot before its first await: a snapshot still alive when the next command
//! on the campaign runs (this reaction's or a concurrent join's) makes that command copy the
//! whole campaign.

use std::sync::Arc;

use chrono::Duration;
use commerce_aggregates::campaign::{
    Campaign, CampaignCommand, CampaignConfig, CampaignStatus, Participant, ParticipantState,
};
use commerce_aggregates::inventory::{InventoryCommand, MAX_RESERVATION_TTL, StockItem};
use commerce_aggregates::order::{Order, OrderCommand, PlaceCampaignOrder, StockReservation};
use commerce_aggregates::payment::{CreatePayment, Payment, PaymentCommand, PaymentStatus};
use commerce_contracts::ReservationHolder;
use commerce_contracts::events::{
    CampaignCreated, CampaignJoined, CapturePolicy, OrderCreated, PaymentPurpose,
};
use commerce_domain::{
    CampaignId, CustomerId, Money, OrderId, ParticipantId, PaymentId, Quantity, ReservationId,
};
use futures::TryStreamExt;
use uuid::Uuid;

use crate::checkout::record_decision;
use crate::compensation::{release_all, settle_payment};
use crate::deadlines::DeadlineKind;
use crate::engine::{Cause, Engine, Issued};
use crate::error::WorkflowError;
use crate::gateway::PaymentRequest;
use crate::ids::derived;
use crate::links::{Owner, PaymentLink, ReservationLink};

/// How long a participant's stock outlives the campaign's end time.
const RESERVATION_AFTER_END: Duration = Duration::days(1);

/// How long a closed campaign's order stays payable (it is paid at once by the capture).
const ORDER_PAYMENT_WINDOW: Duration = Duration::days(1);

fn invalid(what: &str, error: impl ToString) -> WorkflowError {
    WorkflowError::decode(what, error)
}

fn reservation_id(participant_id: Uuid) -> Uuid {
    derived(&["reservation", "participant", &participant_id.to_string()])
}

fn payment_id(participant_id: Uuid) -> Uuid {
    derived(&["payment", "participant", &participant_id.to_string()])
}

/// `campaign.created`: arm the start and end deadlines.
pub(crate) async fn on_created(
    engine: &Engine,
    cause: &Cause,
    created: &CampaignCreated,
) -> Result<(), WorkflowError> {
    let key = created.campaign_id.to_string();
    let deadlines = engine.deadlines();
    deadlines
        .schedule(cause, DeadlineKind::CampaignStart, &key, created.start_time)
        .await?;
    deadlines
        .schedule(cause, DeadlineKind::CampaignEnd, &key, created.end_time)
        .await
}

/// `campaign.joined`: reserve the participant's stock, then authorize the group amount.
pub(crate) async fn on_joined(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    joined: &CampaignJoined,
) -> Result<(), WorkflowError> {
    let participant_id = joined.participant_id;
    let (config, keeps) = {
        let campaign: Arc<Campaign> = engine.load(&cause.tenant, campaign_id.to_string()).await?;
        let Some(config) = campaign.config().cloned() else {
            return Ok(());
        };
        (config, keeps_stock(&campaign, participant_id))
    };
    engine
        .links()
        .add_campaign(&cause.tenant, participant_id, campaign_id)
        .await?;
    // A participant who left or was dropped, or a campaign that ended, before this reaction
    // ran takes no stock and no money. The only thing an earlier, interrupted run of this
    // reaction can have done to the campaign is drop the participant, and then the drop's
    // compensation gives back what that run took (found through the links). Its payment
    // request may have reached the provider unanswered, though: that answer is fetched first.
    if !keeps {
        return finish_unanswered_payment(engine, cause, participant_id).await;
    }
    let owner = Owner::Participant(participant_id);
    let now = engine.now();
    let link = ReservationLink {
        reservation_id: reservation_id(participant_id),
        sku: config.sku.as_str().to_owned(),
        location: config.location.as_str().to_owned(),
        quantity: joined.quantity,
    };
    engine
        .links()
        .add_reservation(&cause.tenant, owner, &link)
        .await?;
    let item = StockItem::new(config.sku.clone(), config.location.clone());
    let quantity = Quantity::new(joined.quantity).map_err(|e| invalid("join quantity", e))?;
    let reserve = engine
        .issue(
            &engine.inventory,
            cause,
            "reserve",
            item.stream_key(),
            InventoryCommand::Reserve {
                item,
                reservation_id: ReservationId::from_uuid(link.reservation_id),
                holder: ReservationHolder::CampaignParticipant(participant_id),
                lines: vec![quantity],
                expires_at: (config.end_time.max(now) + RESERVATION_AFTER_END)
                    .min(now + MAX_RESERVATION_TTL),
                at: now,
            },
        )
        .await?;
    let held = match &reserve {
        Issued::Refused(_) => false,
        _ if reserve.appended("inventory.reserved") => true,
        _ if reserve.appended("inventory.insufficient") => false,
        Issued::Applied(_) => engine
            .load::<commerce_aggregates::inventory::Inventory>(&cause.tenant, link.stream_key())
            .await?
            .reservation(ReservationId::from_uuid(link.reservation_id))
            .is_some_and(|r| r.is_active()),
    };
    let Some(method) = joined.payment_method.clone().filter(|_| held) else {
        let reason = if held {
            "no_payment_method"
        } else {
            "insufficient_stock"
        };
        return drop_participant(engine, cause, campaign_id, participant_id, reason).await;
    };
    let amount = Money::try_from(&joined.amount).map_err(|e| invalid("join amount", e))?;
    // A hold taken at the join must still be there at the close; a campaign that ends later
    // than the provider keeps one charges at once instead (and refunds if it fails). Decided
    // from the join's time, so a re-run of this reaction decides the same.
    let charge_now = config.end_time - joined.joined_at >= engine.config.hold_validity;
    let payment_id = PaymentId::from_uuid(payment_id(participant_id));
    engine
        .links()
        .add_payment(
            &cause.tenant,
            owner,
            &PaymentLink {
                payment_id: payment_id.as_uuid(),
                provider_ref: None,
            },
        )
        .await?;
    let customer =
        CustomerId::new(joined.customer_id.as_str()).map_err(|e| invalid("customer", e))?;
    engine
        .issue(
            &engine.payments,
            cause,
            "payment.create",
            payment_id.to_string(),
            PaymentCommand::Create(CreatePayment {
                payment_id,
                purpose: PaymentPurpose::CampaignParticipant {
                    campaign_id,
                    participant_id,
                },
                customer,
                amount,
                method: method.clone(),
                provider: engine.gateway.name().to_owned(),
                capture_policy: if charge_now {
                    CapturePolicy::Automatic
                } else {
                    CapturePolicy::Manual
                },
                at: now,
            }),
        )
        .await?;
    request_payment(engine, cause, owner, payment_id, method, amount, charge_now).await
}

/// Sends a participant's payment request (a charge, or an authorization of the amount) under
/// the payment's idempotency key and records the provider's answer: the same request whether
/// it goes for the first time or again after an answer was lost.
async fn request_payment(
    engine: &Engine,
    cause: &Cause,
    owner: Owner,
    payment_id: PaymentId,
    method: String,
    amount: Money,
    charge: bool,
) -> Result<(), WorkflowError> {
    let call = if charge { "charge" } else { "authorize" };
    let request = PaymentRequest {
        payment_id,
        method,
        amount,
        idempotency_key: format!("{payment_id}:{call}"),
    };
    let (decision, authorized) = if charge {
        (engine.gateway.charge(&request).await?, None)
    } else {
        (engine.gateway.authorize(&request).await?, Some(amount))
    };
    record_decision(engine, cause, owner, payment_id, decision, authorized).await
}

/// An earlier run of the join's reaction created the participant's payment and sent its
/// request, but the answer never got recorded (the provider timed out after acting, or the
/// engine stopped): the request goes again with its idempotency key, so the provider answers
/// what it did the first time (or acts now), and the answer is recorded. The participant is
/// gone, so the `payment.authorized` or `payment.succeeded` that follows gives the money back
/// (`on_participant_payment_settled`). Without this, the leave's compensation would void only
/// the payment record and the provider would keep the hold, or the charge.
async fn finish_unanswered_payment(
    engine: &Engine,
    cause: &Cause,
    participant_id: Uuid,
) -> Result<(), WorkflowError> {
    let payment_id = PaymentId::from_uuid(payment_id(participant_id));
    let (method, amount, charge) = {
        let payment: Arc<Payment> = engine.load(&cause.tenant, payment_id.to_string()).await?;
        if payment.status() != Some(PaymentStatus::Created) {
            return Ok(());
        }
        let (Some(amount), Some(policy)) = (payment.amount(), payment.capture_policy()) else {
            return Ok(());
        };
        let charge = policy == CapturePolicy::Automatic;
        (payment.method().to_owned(), amount, charge)
    };
    let owner = Owner::Participant(participant_id);
    request_payment(engine, cause, owner, payment_id, method, amount, charge).await
}

/// Whether a participant's stock and money are still wanted: they hold a place in a campaign
/// that has not failed, and once it closed, only if they paid.
fn keeps_stock(campaign: &Campaign, participant_id: Uuid) -> bool {
    let Some(participant) = campaign.participant(ParticipantId::from_uuid(participant_id)) else {
        return false;
    };
    match campaign.status() {
        CampaignStatus::Failed | CampaignStatus::Cancelled => false,
        CampaignStatus::Closed => participant.state().is_paid(),
        CampaignStatus::Scheduled | CampaignStatus::Active | CampaignStatus::Successful => {
            participant.state().occupies_place()
        }
    }
}

/// `inventory.reserved` for a participant: stock that lands after the participant left, was
/// dropped, or the campaign failed or closed without them (a previous leader finishing the
/// join's reaction late, after their compensation ran) is given back with their money.
pub(crate) async fn on_reserved_for_participant(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    participant_id: Uuid,
    reservation: &ReservationLink,
) -> Result<(), WorkflowError> {
    let campaign: Arc<Campaign> = engine.load(&cause.tenant, campaign_id.to_string()).await?;
    if keeps_stock(&campaign, participant_id) {
        return Ok(());
    }
    drop(campaign);
    release_all(
        engine,
        cause,
        std::slice::from_ref(reservation),
        "participant_gone",
    )
    .await?;
    compensate_participant(engine, cause, participant_id, "participant_gone").await
}

async fn drop_participant(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    participant_id: Uuid,
    reason: &str,
) -> Result<(), WorkflowError> {
    engine
        .issue(
            &engine.campaigns,
            cause,
            "drop",
            campaign_id.to_string(),
            CampaignCommand::DropParticipant {
                participant_id: ParticipantId::from_uuid(participant_id),
                reason: reason.to_owned(),
                at: engine.now(),
            },
        )
        .await?;
    Ok(())
}

/// `payment.authorized` (or `payment.succeeded`) of a participant's payment: mark them paid;
/// if the campaign no longer takes them, give the money back.
pub(crate) async fn on_participant_payment_settled(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    participant_id: Uuid,
    payment_id: Uuid,
) -> Result<(), WorkflowError> {
    // What the provider holds (or took), not what was asked: a partial authorization (a
    // provider's webhook may report one) does not pay for a place, so the campaign refuses it
    // and the hold is given back below.
    let Some(amount) = engine
        .load::<Payment>(&cause.tenant, payment_id.to_string())
        .await?
        .authorized()
    else {
        return Ok(());
    };
    let Some(state) = engine
        .load::<Campaign>(&cause.tenant, campaign_id.to_string())
        .await?
        .participant(ParticipantId::from_uuid(participant_id))
        .map(Participant::state)
    else {
        return Ok(());
    };
    if state != ParticipantState::Joined {
        // Already paid (a redelivery), or dropped/left meanwhile: nothing to mark.
        if !state.occupies_place() {
            settle_payment(engine, cause, payment_id, None).await?;
        }
        return Ok(());
    }
    let paid = engine
        .issue(
            &engine.campaigns,
            cause,
            "participant_paid",
            campaign_id.to_string(),
            CampaignCommand::RecordParticipantPaid {
                participant_id: ParticipantId::from_uuid(participant_id),
                payment_id: PaymentId::from_uuid(payment_id),
                amount,
                at: engine.now(),
            },
        )
        .await?;
    if paid.is_refused() {
        settle_payment(engine, cause, payment_id, None).await?;
    }
    Ok(())
}

/// `campaign.participant_paid`: close a successful campaign as soon as every place is paid
/// (the aggregate's `Close` allows it then; a place freed meanwhile makes it refuse, and the
/// end-time deadline closes instead).
pub(crate) async fn on_participant_paid(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
) -> Result<(), WorkflowError> {
    let closable = {
        let campaign: Arc<Campaign> = engine.load(&cause.tenant, campaign_id.to_string()).await?;
        let full = campaign
            .config()
            .is_some_and(|config| campaign.paid_count() >= config.max_participants);
        campaign.status() == CampaignStatus::Successful && full
    };
    if closable {
        engine
            .issue(
                &engine.campaigns,
                cause,
                "close_full",
                campaign_id.to_string(),
                CampaignCommand::Close { at: engine.now() },
            )
            .await?;
    }
    Ok(())
}

/// `payment.failed` of a participant's payment.
pub(crate) async fn on_participant_payment_failed(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    participant_id: Uuid,
) -> Result<(), WorkflowError> {
    drop_participant(engine, cause, campaign_id, participant_id, "payment_failed").await
}

/// `payment.expired` of a participant's payment: the hold lapsed before the capture, so the
/// participant no longer pays for a place. An unpaid one is dropped; a paid one of a campaign
/// still short of its minimum leaves (the campaign allows it then), which frees the place and
/// gives back the stock. A paid participant of a successful campaign is confirmed and cannot
/// go: that lapse is reported (the hold outlives a campaign's end time by design).
pub(crate) async fn on_participant_authorization_expired(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    participant_id: Uuid,
) -> Result<(), WorkflowError> {
    let participant = ParticipantId::from_uuid(participant_id);
    let (status, state) = {
        let campaign: Arc<Campaign> = engine.load(&cause.tenant, campaign_id.to_string()).await?;
        let Some(state) = campaign.participant(participant).map(Participant::state) else {
            return Ok(());
        };
        (campaign.status(), state)
    };
    match (status, state) {
        (_, ParticipantState::Joined) => {
            drop_participant(
                engine,
                cause,
                campaign_id,
                participant_id,
                "authorization_expired",
            )
            .await
        }
        (CampaignStatus::Active, ParticipantState::Paid) => {
            engine
                .issue(
                    &engine.campaigns,
                    cause,
                    "leave_expired",
                    campaign_id.to_string(),
                    CampaignCommand::Leave {
                        participant_id: participant,
                        at: engine.now(),
                    },
                )
                .await?;
            Ok(())
        }
        (status, state) => {
            tracing::warn!(%campaign_id, %participant_id, status = status.as_str(), state = state.as_str(), "a participant's authorization lapsed before the capture");
            Ok(())
        }
    }
}

/// `campaign.participant_dropped` / `campaign.participant_left`: give back stock and money.
pub(crate) async fn on_participant_gone(
    engine: &Engine,
    cause: &Cause,
    participant_id: Uuid,
    reason: &str,
) -> Result<(), WorkflowError> {
    compensate_participant(engine, cause, participant_id, reason).await
}

async fn compensate_participant(
    engine: &Engine,
    cause: &Cause,
    participant_id: Uuid,
    reason: &str,
) -> Result<(), WorkflowError> {
    let owner = Owner::Participant(participant_id);
    let reservations = engine.links().reservations(&cause.tenant, owner).await?;
    release_all(engine, cause, &reservations, reason).await?;
    for link in engine.links().payments(&cause.tenant, owner).await? {
        settle_payment(engine, cause, link.payment_id, link.provider_ref).await?;
    }
    Ok(())
}

/// `campaign.failed` / `campaign.cancelled`: every participant gets stock and money back.
pub(crate) async fn on_failed(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
) -> Result<(), WorkflowError> {
    // Only what the loop needs, so the refunds recorded below do not copy the campaign.
    let participants: Vec<_> = engine
        .load::<Campaign>(&cause.tenant, campaign_id.to_string())
        .await?
        .participants()
        .iter()
        .map(|p| (p.id(), p.state(), p.payment_id()))
        .collect();
    for_each_participant(
        engine,
        participants,
        |(participant, state, payment_id)| async move {
            let participant_id = participant.as_uuid();
            compensate_participant(engine, cause, participant_id, "campaign_failed").await?;
            if matches!(
                state,
                ParticipantState::Joined | ParticipantState::Paid | ParticipantState::Left
            ) {
                engine
                    .issue(
                        &engine.campaigns,
                        cause,
                        &format!("refunded:{participant_id}"),
                        campaign_id.to_string(),
                        CampaignCommand::RecordParticipantRefunded {
                            participant_id: participant,
                            payment_id,
                            at: engine.now(),
                        },
                    )
                    .await?;
            }
            Ok(())
        },
    )
    .await
}

/// Runs `settle` for every participant, several at once (each participant's steps stay in
/// order; different participants share nothing but the campaign and stock streams, whose
/// executors take their commands one after another). The first failure ends it: the whole
/// reaction is retried, and the steps already done replay by their idempotency keys.
async fn for_each_participant<P, F, Fut>(
    engine: &Engine,
    participants: Vec<P>,
    settle: F,
) -> Result<(), WorkflowError>
where
    F: Fn(P) -> Fut,
    Fut: Future<Output = Result<(), WorkflowError>>,
{
    futures::stream::iter(participants.into_iter().map(Ok))
        .try_for_each_concurrent(engine.config.concurrent_reactions.max(1), settle)
        .await
}

/// `campaign.closed`: capture every paid participant and place their order; let go of the
/// participants that never paid, a page of [`crate::WorkflowConfig::close_page`] at a time.
pub(crate) async fn on_closed(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
) -> Result<(), WorkflowError> {
    let page = engine.config.close_page.max(1);
    let mut start = 0;
    while let Some((config, participants)) =
        closing_page(engine, cause, campaign_id, start, page).await?
    {
        start += page;
        let config = &config;
        for_each_participant(engine, participants, |participant| async move {
            let participant_id = participant.id().as_uuid();
            match participant.state() {
                ParticipantState::Paid => {
                    let product = (config.sku.clone(), config.group_price);
                    close_participant(engine, cause, campaign_id, product, &participant).await?;
                }
                ParticipantState::Joined => {
                    // Never paid: the campaign is over for them. Dropping them records it (they
                    // would otherwise stay `joined` for ever); the drop's own reaction gives
                    // back stock and hold too, a no-op after this one.
                    compensate_participant(engine, cause, participant_id, "campaign_closed")
                        .await?;
                    engine
                        .issue(
                            &engine.campaigns,
                            cause,
                            &format!("drop_unpaid:{participant_id}"),
                            campaign_id.to_string(),
                            CampaignCommand::DropParticipant {
                                participant_id: participant.id(),
                                reason: "campaign_closed".to_owned(),
                                at: engine.now(),
                            },
                        )
                        .await?;
                }
                _ => {}
            }
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// The configuration and the participants still to settle among the `page` from position
/// `start` of a closed campaign (participants keep their position: they are only
/// ever appended); `None` past the last one. Only what the loop needs, so the orders and
/// drops recorded after it do not copy the campaign.
async fn closing_page(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    start: usize,
    page: usize,
) -> Result<Option<(CampaignConfig, Vec<Participant>)>, WorkflowError> {
    let campaign: Arc<Campaign> = engine.load(&cause.tenant, campaign_id.to_string()).await?;
    let Some(config) = campaign.config().cloned() else {
        return Ok(None);
    };
    if start >= campaign.participants().len() {
        return Ok(None);
    }
    let participants = (campaign.participants().skip(start).iter())
        .take(page)
        .filter(|p| matches!(p.state(), ParticipantState::Paid | ParticipantState::Joined))
        .cloned()
        .collect();
    Ok(Some((config, participants)))
}

async fn close_participant(
    engine: &Engine,
    cause: &Cause,
    campaign_id: Uuid,
    (sku, unit_price): (commerce_domain::Sku, Money),
    participant: &Participant,
) -> Result<(), WorkflowError> {
    let participant_id = participant.id().as_uuid();
    let Some(payment_id) = participant.payment_id() else {
        return Ok(());
    };
    let payment: Arc<Payment> = engine.load(&cause.tenant, payment_id.to_string()).await?;
    let (Some(authorized), Some(captured)) = (payment.authorized(), payment.captured()) else {
        return Ok(());
    };
    drop(payment);
    let now = engine.now();
    let outstanding = authorized
        .checked_sub(&captured)
        .map_err(|e| invalid("payment amounts", e))?;
    if outstanding.is_positive() {
        if let Some(reference) = engine
            .links()
            .provider_ref(&cause.tenant, payment_id.as_uuid())
            .await?
        {
            engine
                .gateway
                .capture(&reference, outstanding, &format!("{payment_id}:capture"))
                .await?;
        }
        engine
            .issue(
                &engine.payments,
                cause,
                &format!("capture:{participant_id}"),
                payment_id.to_string(),
                PaymentCommand::RecordCapture {
                    amount: outstanding,
                    at: now,
                },
            )
            .await?;
    }
    let order_id = OrderId::from_uuid(derived(&[
        "order",
        "participant",
        &participant_id.to_string(),
    ]));
    let placed = engine
        .issue(
            &engine.orders,
            cause,
            &format!("order:{participant_id}"),
            order_id.to_string(),
            OrderCommand::PlaceCampaignOrder(PlaceCampaignOrder {
                order_id,
                customer: CustomerId::new(participant.customer_id())
                    .map_err(|e| invalid("customer", e))?,
                campaign_id: CampaignId::from_uuid(campaign_id),
                participant_id: participant.id(),
                sku,
                quantity: Quantity::new(participant.quantity())
                    .map_err(|e| invalid("participant quantity", e))?,
                unit_price,
                payment_method: participant.payment_method().map(str::to_owned),
                at: now,
                expires_at: now + ORDER_PAYMENT_WINDOW,
            }),
        )
        .await?;
    if let Issued::Refused(error) = placed {
        tracing::warn!(%participant_id, %error, "could not place a campaign participant's order");
        return Ok(());
    }
    engine
        .issue(
            &engine.campaigns,
            cause,
            &format!("ordered:{participant_id}"),
            campaign_id.to_string(),
            CampaignCommand::RecordParticipantOrdered {
                participant_id: participant.id(),
                order_id,
                at: now,
            },
        )
        .await?;
    Ok(())
}

/// `order.created` of a campaign order: it is paid and stocked already (the participant's
/// captured payment and reservation), so record both and confirm it; checkout fulfils it.
pub(crate) async fn on_campaign_order_created(
    engine: &Engine,
    cause: &Cause,
    created: &OrderCreated,
) -> Result<(), WorkflowError> {
    let Some(participant_id) = created.participant_id else {
        return Ok(());
    };
    let order_key = created.order_id.to_string();
    let participant = Owner::Participant(participant_id);
    let order_owner = Owner::Order(created.order_id);
    let now = engine.now();
    let mut reservations = Vec::new();
    for link in engine
        .links()
        .reservations(&cause.tenant, participant)
        .await?
    {
        engine
            .links()
            .add_reservation(&cause.tenant, order_owner, &link)
            .await?;
        reservations.push(StockReservation {
            reservation_id: ReservationId::from_uuid(link.reservation_id),
            sku: commerce_domain::Sku::new(link.sku.as_str()).map_err(|e| invalid("sku", e))?,
            location: commerce_domain::LocationId::new(link.location.as_str())
                .map_err(|e| invalid("location", e))?,
            quantity: Quantity::new(link.quantity).map_err(|e| invalid("quantity", e))?,
        });
    }
    engine
        .issue(
            &engine.orders,
            cause,
            "stock_outcome",
            order_key.clone(),
            OrderCommand::RecordStockReserved {
                reservations,
                at: now,
            },
        )
        .await?;
    let payment_id = PaymentId::from_uuid(payment_id(participant_id));
    engine
        .links()
        .add_payment(
            &cause.tenant,
            order_owner,
            &PaymentLink {
                payment_id: payment_id.as_uuid(),
                provider_ref: None,
            },
        )
        .await?;
    engine
        .issue(
            &engine.orders,
            cause,
            "request_payment:1",
            order_key.clone(),
            OrderCommand::RequestPayment {
                payment_id,
                at: now,
            },
        )
        .await?;
    let Some(covered) = engine
        .load::<Payment>(&cause.tenant, payment_id.to_string())
        .await?
        .captured()
        .filter(Money::is_positive)
    else {
        return Ok(());
    };
    let terminal = engine
        .load::<Order>(&cause.tenant, order_key.clone())
        .await?
        .status()
        .is_some_and(|s| s.is_terminal());
    if terminal {
        return Ok(());
    }
    engine
        .issue(
            &engine.orders,
            cause,
            "confirm",
            order_key,
            OrderCommand::Confirm {
                payment_id,
                covered,
                at: now,
            },
        )
        .await?;
    Ok(())
}
