//! The campaign commands and their guards. `create` and `decide` read the state and return the
//! events to append, or the reason nothing may be appended; they never mutate.

use chrono::{DateTime, Utc};
use commerce_contracts::events::{
    CampaignCancelled, CampaignClosed, CampaignCreated, CampaignEvent, CampaignFailed,
    CampaignJoined, CampaignParticipantDropped, CampaignParticipantLeft,
    CampaignParticipantOrdered, CampaignParticipantPaid, CampaignParticipantRefunded,
    CampaignStarted, CampaignSuccessful,
};
use commerce_domain::{
    CampaignId, CustomerId, LocationId, Money, OrderId, ParticipantId, PaymentId, Quantity, Sku,
    TenantId,
};

use super::{Campaign, CampaignConfig, CampaignStatus, Participant, ParticipantState};
use crate::{CatalogEntry, CommandError, guard};

/// The largest `max_participants`: keeps one campaign stream (and its state) bounded.
pub const MAX_PARTICIPANTS: u32 = 100_000;

/// Longest time from a campaign's start to its end. A participant's stock is reserved at the
/// join until a day after the end, and a reservation lasts at most
/// [`crate::inventory::MAX_RESERVATION_TTL`] (31 days): a longer campaign would see its paid
/// participants' stock go back on sale before its close.
pub const MAX_CAMPAIGN_WINDOW: chrono::Duration = chrono::Duration::days(30);

/// The configuration of a new campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCampaign {
    pub campaign_id: CampaignId,
    /// Only for the catalog lookup; the stream id already isolates the tenant.
    pub tenant: TenantId,
    pub sku: Sku,
    pub location: LocationId,
    pub group_price: Money,
    pub original_price: Money,
    pub min_participants: u32,
    pub max_participants: u32,
    /// Units one customer may hold over all their participations; 1 when `None`.
    pub per_customer_limit: Option<u32>,
    /// Units per join; `per_customer_limit` when `None`.
    pub per_order_limit: Option<u32>,
    /// 0 disables virtual completion.
    pub virtual_completion_pct: u8,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

/// What can be asked of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignCommand {
    /// Configures the campaign; also starts it when `at ≥ start_time`.
    Create(CreateCampaign),
    /// The start-time deadline; a late or repeated fire is a no-op.
    Start { at: DateTime<Utc> },
    /// A customer joins at the group price; a seen participant id appends nothing.
    Join {
        participant_id: ParticipantId,
        customer: CustomerId,
        quantity: Quantity,
        payment_method: Option<String>,
        at: DateTime<Utc>,
    },
    /// The participant's payment was authorized or captured (from the saga).
    RecordParticipantPaid {
        participant_id: ParticipantId,
        payment_id: PaymentId,
        amount: Money,
        at: DateTime<Utc>,
    },
    /// An unpaid participant is dropped (payment failed, no stock, reservation expired).
    DropParticipant {
        participant_id: ParticipantId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A participant leaves before being confirmed.
    Leave {
        participant_id: ParticipantId,
        at: DateTime<Utc>,
    },
    /// Closes a successful campaign at its end time or once every place is paid.
    Close { at: DateTime<Utc> },
    /// The end-time deadline: closes a successful campaign, completes one virtually if
    /// configured and enough paid, fails it otherwise.
    Expire { at: DateTime<Utc> },
    /// An operator stops the campaign.
    Cancel { reason: String, at: DateTime<Utc> },
    /// A paid participant's order was created after closing.
    RecordParticipantOrdered {
        participant_id: ParticipantId,
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    /// A participant got their money back (or the hold was voided).
    RecordParticipantRefunded {
        participant_id: ParticipantId,
        payment_id: Option<PaymentId>,
        at: DateTime<Utc>,
    },
}

impl Campaign {
    /// The events of `Create`, given what the catalog knows about the SKU.
    pub(super) fn create(
        &self,
        create: CreateCampaign,
        product: Option<CatalogEntry>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        guard::not_created(self.exists(), "campaign", create.campaign_id)?;
        let (min, max) = (create.min_participants, create.max_participants);
        if min < 2 {
            return Err(CommandError::invalid(
                "min_participants",
                "must be at least 2",
            ));
        }
        if max < min || max > MAX_PARTICIPANTS {
            return Err(CommandError::invalid(
                "max_participants",
                format!("must be between min_participants and {MAX_PARTICIPANTS}"),
            ));
        }
        let per_customer_limit = create.per_customer_limit.unwrap_or(1);
        if !(1..=Quantity::MAX).contains(&per_customer_limit) {
            return Err(CommandError::invalid(
                "per_customer_limit",
                format!("must be between 1 and {}", Quantity::MAX),
            ));
        }
        let per_order_limit = create.per_order_limit.unwrap_or(per_customer_limit);
        if !(1..=per_customer_limit).contains(&per_order_limit) {
            return Err(CommandError::invalid(
                "per_order_limit",
                "must be between 1 and per_customer_limit",
            ));
        }
        let (group, original) = (create.group_price, create.original_price);
        if !group.is_positive() {
            return Err(CommandError::invalid(
                "group_price",
                "must be greater than zero",
            ));
        }
        if group.currency() != original.currency() {
            return Err(CommandError::invalid(
                "original_price.currency",
                "must be the currency of group_price",
            ));
        }
        if group.amount_minor() >= original.amount_minor() {
            return Err(CommandError::invalid(
                "group_price",
                "must be below original_price",
            ));
        }
        if create.start_time >= create.end_time {
            return Err(CommandError::invalid(
                "end_time",
                "must be after start_time",
            ));
        }
        if create.end_time <= create.at {
            return Err(CommandError::invalid("end_time", "must be in the future"));
        }
        if create.end_time - create.start_time > MAX_CAMPAIGN_WINDOW {
            return Err(CommandError::invalid(
                "end_time",
                format!(
                    "must be at most {} days after start_time",
                    MAX_CAMPAIGN_WINDOW.num_days()
                ),
            ));
        }
        if create.virtual_completion_pct > 100 {
            return Err(CommandError::invalid(
                "virtual_completion_pct",
                "must be between 0 and 100",
            ));
        }
        let product = product.ok_or_else(|| {
            CommandError::invalid("sku", "no product with this SKU in the catalog")
        })?;
        if product.discontinued {
            return Err(CommandError::invalid("sku", "the product is discontinued"));
        }
        let mut events = vec![CampaignEvent::Created(CampaignCreated {
            campaign_id: create.campaign_id.as_uuid(),
            sku: create.sku.into_inner(),
            product_id: Some(product.product_id.as_uuid()),
            location: create.location.into_inner(),
            group_price: group.into(),
            original_price: original.into(),
            min_participants: min,
            max_participants: max,
            per_customer_limit,
            per_order_limit,
            virtual_completion_pct: create.virtual_completion_pct,
            start_time: create.start_time,
            end_time: create.end_time,
            created_at: create.at,
        })];
        if create.at >= create.start_time {
            events.push(CampaignEvent::Started(CampaignStarted { at: create.at }));
        }
        Ok(events)
    }

    /// The events of every command but `Create`.
    pub(super) fn decide(
        &self,
        command: CampaignCommand,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        let config = guard::created(self.config.as_ref(), "campaign")?;
        match command {
            // Refused by `create`'s own "already exists" guard.
            CampaignCommand::Create(create) => self.create(create, None),
            CampaignCommand::Start { at } => self.start(config, at),
            CampaignCommand::Join {
                participant_id,
                customer,
                quantity,
                payment_method,
                at,
            } => self.join(
                config,
                participant_id,
                &customer,
                quantity,
                payment_method,
                at,
            ),
            CampaignCommand::RecordParticipantPaid {
                participant_id,
                payment_id,
                amount,
                at,
            } => self.record_paid(config, participant_id, payment_id, amount, at),
            CampaignCommand::DropParticipant {
                participant_id,
                reason,
                at,
            } => {
                let reason = required_reason(reason)?;
                let participant = self.existing(participant_id)?;
                match participant.state {
                    ParticipantState::Joined => Ok(vec![CampaignEvent::ParticipantDropped(
                        CampaignParticipantDropped {
                            participant_id: participant_id.as_uuid(),
                            reason,
                            at,
                        },
                    )]),
                    ParticipantState::Dropped => Ok(Vec::new()),
                    state => Err(CommandError::invalid_state(
                        "drop participant",
                        state.as_str(),
                    )),
                }
            }
            CampaignCommand::Leave { participant_id, at } => self.leave(participant_id, at),
            CampaignCommand::Close { at } => self.close(config, at),
            CampaignCommand::Expire { at } => self.expire(config, at),
            CampaignCommand::Cancel { reason, at } => {
                let reason = required_reason(reason)?;
                match self.status {
                    CampaignStatus::Cancelled => Ok(Vec::new()),
                    CampaignStatus::Closed | CampaignStatus::Failed => Err(
                        CommandError::invalid_state("cancel campaign", self.status.as_str()),
                    ),
                    CampaignStatus::Scheduled
                    | CampaignStatus::Active
                    | CampaignStatus::Successful => {
                        Ok(vec![CampaignEvent::Cancelled(CampaignCancelled {
                            reason,
                            at,
                        })])
                    }
                }
            }
            CampaignCommand::RecordParticipantOrdered {
                participant_id,
                order_id,
                at,
            } => self.record_ordered(participant_id, order_id, at),
            CampaignCommand::RecordParticipantRefunded {
                participant_id,
                payment_id,
                at,
            } => self.record_refunded(participant_id, payment_id, at),
        }
    }

    fn start(
        &self,
        config: &CampaignConfig,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        if self.status != CampaignStatus::Scheduled {
            return Ok(Vec::new());
        }
        if at < config.start_time {
            return Err(CommandError::invalid_state(
                "start campaign",
                format!("scheduled to start at {}", config.start_time),
            ));
        }
        Ok(vec![CampaignEvent::Started(CampaignStarted { at })])
    }

    fn join(
        &self,
        config: &CampaignConfig,
        participant_id: ParticipantId,
        customer: &CustomerId,
        quantity: Quantity,
        payment_method: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        if let Some(known) = self.participant(participant_id) {
            // A retried join is done already; another join under a used id is refused rather
            // than reported as done (PAY-5).
            if known.customer_id() != customer.as_str() || known.quantity() != quantity.get() {
                return Err(CommandError::invalid(
                    "participant_id",
                    "already names another customer's or quantity's join",
                ));
            }
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        match self.status {
            CampaignStatus::Active | CampaignStatus::Successful => {}
            // The start deadline may fire late; a join after the start time starts the campaign.
            CampaignStatus::Scheduled if at >= config.start_time => {
                events.push(CampaignEvent::Started(CampaignStarted { at }));
            }
            status => {
                return Err(CommandError::invalid_state(
                    "join campaign",
                    status.as_str(),
                ));
            }
        }
        // CMP-3: the join window.
        if at < config.start_time {
            return Err(CommandError::invalid_state("join campaign", "not started"));
        }
        if at >= config.end_time {
            return Err(CommandError::invalid_state("join campaign", "ended"));
        }
        if quantity.get() > config.per_order_limit {
            return Err(CommandError::invalid(
                "quantity",
                format!("at most {} per join", config.per_order_limit),
            ));
        }
        // CMP-2: capacity.
        if self.occupied_places() >= config.max_participants {
            return Err(CommandError::LimitReached("the campaign is full".into()));
        }
        // CMP-4: one in-progress participation and a quantity limit per customer.
        let mine: Vec<&Participant> = self
            .participations_of(customer.as_str())
            .filter(|p| p.state.occupies_place())
            .collect();
        if mine.iter().any(|p| p.state == ParticipantState::Joined) {
            return Err(CommandError::LimitReached(
                "the customer already has a participation awaiting payment".into(),
            ));
        }
        let held: u64 = mine.iter().map(|p| u64::from(p.quantity)).sum();
        if held + u64::from(quantity.get()) > u64::from(config.per_customer_limit) {
            return Err(CommandError::LimitReached(format!(
                "at most {} units per customer",
                config.per_customer_limit
            )));
        }
        // CMP-8: the price is snapshotted here.
        let amount = config
            .group_price
            .checked_mul(quantity)
            .map_err(|error| CommandError::invalid("quantity", error.to_string()))?;
        events.push(CampaignEvent::Joined(CampaignJoined {
            participant_id: participant_id.as_uuid(),
            customer_id: customer.as_str().to_owned(),
            quantity: quantity.get(),
            unit_price: config.group_price.into(),
            amount: amount.into(),
            payment_method,
            joined_at: at,
        }));
        Ok(events)
    }

    fn record_paid(
        &self,
        config: &CampaignConfig,
        participant_id: ParticipantId,
        payment_id: PaymentId,
        amount: Money,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        let participant = self.existing(participant_id)?;
        match participant.state {
            ParticipantState::Joined => {}
            // The saga redelivered the payment: nothing new.
            ParticipantState::Paid | ParticipantState::Ordered
                if participant.payment_id == Some(payment_id) =>
            {
                return Ok(Vec::new());
            }
            ParticipantState::Paid | ParticipantState::Ordered => {
                return Err(CommandError::invalid_state(
                    "record payment",
                    "paid by another payment",
                ));
            }
            state => {
                return Err(CommandError::invalid_state(
                    "record payment",
                    state.as_str(),
                ));
            }
        }
        if !matches!(
            self.status,
            CampaignStatus::Active | CampaignStatus::Successful
        ) {
            return Err(CommandError::invalid_state(
                "record payment",
                self.status.as_str(),
            ));
        }
        let expected = Money::try_from(&participant.amount)
            .map_err(|error| CommandError::from_domain("amount", &error))?;
        if amount.currency() != expected.currency() {
            return Err(CommandError::invalid(
                "amount.currency",
                format!("must be {}", expected.currency().code()),
            ));
        }
        if amount != expected {
            return Err(CommandError::invalid(
                "amount",
                format!("must equal the amount snapshotted at the join, {expected}"),
            ));
        }
        let mut events = vec![CampaignEvent::ParticipantPaid(CampaignParticipantPaid {
            participant_id: participant_id.as_uuid(),
            payment_id: payment_id.as_uuid(),
            amount: amount.into(),
            // CMP-10: the first payer leads.
            became_leader: self.leader.is_none(),
            at,
        })];
        let paid = self.paid_count().saturating_add(1);
        // CMP-5: once, at the moment the minimum is reached.
        if !self.succeeded && paid >= config.min_participants {
            events.push(CampaignEvent::Successful(CampaignSuccessful {
                paid_participants: paid,
                is_virtual: false,
                at,
            }));
        }
        Ok(events)
    }

    fn leave(
        &self,
        participant_id: ParticipantId,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        let participant = self.existing(participant_id)?;
        if participant.state == ParticipantState::Left {
            return Ok(Vec::new());
        }
        if !matches!(
            self.status,
            CampaignStatus::Active | CampaignStatus::Successful
        ) {
            return Err(CommandError::invalid_state(
                "leave campaign",
                self.status.as_str(),
            ));
        }
        match participant.state {
            ParticipantState::Joined => {}
            // A paid participant of a successful campaign is confirmed.
            ParticipantState::Paid if self.status == CampaignStatus::Active => {}
            ParticipantState::Paid => {
                return Err(CommandError::invalid_state("leave campaign", "confirmed"));
            }
            state => {
                return Err(CommandError::invalid_state(
                    "leave campaign",
                    state.as_str(),
                ));
            }
        }
        // CMP-10: the earliest remaining payer takes over.
        let new_leader = if self.leader == Some(participant_id) {
            self.participants
                .iter()
                .filter(|p| p.id != participant_id && p.state.is_paid())
                .min_by_key(|p| p.paid_rank)
                .map(|p| p.id.as_uuid())
        } else {
            None
        };
        Ok(vec![CampaignEvent::ParticipantLeft(
            CampaignParticipantLeft {
                participant_id: participant_id.as_uuid(),
                new_leader,
                at,
            },
        )])
    }

    fn close(
        &self,
        config: &CampaignConfig,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        match self.status {
            CampaignStatus::Closed => Ok(Vec::new()),
            CampaignStatus::Successful
                if at >= config.end_time || self.paid_count() >= config.max_participants =>
            {
                Ok(vec![self.closed(at)])
            }
            CampaignStatus::Successful => Err(CommandError::invalid_state(
                "close campaign",
                format!(
                    "open until {} with {} of {} places paid",
                    config.end_time,
                    self.paid_count(),
                    config.max_participants
                ),
            )),
            status => Err(CommandError::invalid_state(
                "close campaign",
                status.as_str(),
            )),
        }
    }

    fn expire(
        &self,
        config: &CampaignConfig,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        if self.status.is_terminal() {
            return Ok(Vec::new());
        }
        if at < config.end_time {
            return Err(CommandError::invalid_state(
                "expire campaign",
                format!("open until {}", config.end_time),
            ));
        }
        if self.status == CampaignStatus::Successful {
            return Ok(vec![self.closed(at)]);
        }
        let paid = self.paid_count();
        let pct = u64::from(config.virtual_completion_pct);
        if pct > 0 && u64::from(paid) * 100 >= u64::from(config.min_participants) * pct {
            return Ok(vec![
                CampaignEvent::Successful(CampaignSuccessful {
                    paid_participants: paid,
                    is_virtual: true,
                    at,
                }),
                self.closed(at),
            ]);
        }
        Ok(vec![CampaignEvent::Failed(CampaignFailed {
            paid_participants: paid,
            reason: format!(
                "{paid} of the {} required participants paid",
                config.min_participants
            ),
            at,
        })])
    }

    fn closed(&self, at: DateTime<Utc>) -> CampaignEvent {
        CampaignEvent::Closed(CampaignClosed {
            paid_participants: self.paid_count(),
            at,
        })
    }

    fn record_ordered(
        &self,
        participant_id: ParticipantId,
        order_id: OrderId,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        let participant = self.existing(participant_id)?;
        match participant.state {
            ParticipantState::Ordered if participant.order_id == Some(order_id) => Ok(Vec::new()),
            ParticipantState::Ordered => Err(CommandError::invalid_state(
                "record order",
                "ordered under another order",
            )),
            ParticipantState::Paid if self.status == CampaignStatus::Closed => {
                Ok(vec![CampaignEvent::ParticipantOrdered(
                    CampaignParticipantOrdered {
                        participant_id: participant_id.as_uuid(),
                        order_id: order_id.as_uuid(),
                        at,
                    },
                )])
            }
            ParticipantState::Paid => Err(CommandError::invalid_state(
                "record order",
                self.status.as_str(),
            )),
            state => Err(CommandError::invalid_state("record order", state.as_str())),
        }
    }

    fn record_refunded(
        &self,
        participant_id: ParticipantId,
        payment_id: Option<PaymentId>,
        at: DateTime<Utc>,
    ) -> Result<Vec<CampaignEvent>, CommandError> {
        let participant = self.existing(participant_id)?;
        let compensating = matches!(
            self.status,
            CampaignStatus::Failed | CampaignStatus::Cancelled
        );
        let eligible = match participant.state {
            ParticipantState::Refunded => return Ok(Vec::new()),
            ParticipantState::Joined | ParticipantState::Paid => compensating,
            // A payer who left before success is owed their money whatever the outcome.
            ParticipantState::Left => participant.payment_id.is_some(),
            ParticipantState::Ordered | ParticipantState::Dropped => false,
        };
        if !eligible {
            return Err(CommandError::invalid_state(
                "refund participant",
                format!(
                    "participant {} in a {} campaign",
                    participant.state.as_str(),
                    self.status.as_str()
                ),
            ));
        }
        Ok(vec![CampaignEvent::ParticipantRefunded(
            CampaignParticipantRefunded {
                participant_id: participant_id.as_uuid(),
                payment_id: payment_id.or(participant.payment_id).map(|id| id.as_uuid()),
                at,
            },
        )])
    }

    fn existing(&self, id: ParticipantId) -> Result<&Participant, CommandError> {
        self.participant(id)
            .ok_or_else(|| CommandError::NotFound(format!("participant {id}")))
    }
}

fn required_reason(reason: String) -> Result<String, CommandError> {
    if reason.trim().is_empty() {
        Err(CommandError::invalid("reason", "a reason is required"))
    } else {
        Ok(reason)
    }
}
