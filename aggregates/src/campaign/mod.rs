//! Campaign: social group buying (§3.4 of the commerce anchors). A campaign sells one SKU at a
//! group price; customers join, pay, and once `min_participants` have paid the campaign is
//! successful (once, CMP-5) and stays open until it is full or its end time; then it closes
//! and every paid participant gets an order. Below the minimum at the end it fails (or is
//! completed virtually, if configured) and the sagas refund.
//!
//! Layout: this file holds the state and its fold; `commands` the commands and every guard;
//! `tests` the given/when/then tests; `proptests` CMP-1…5, CMP-8 and CMP-10.
//!
//! Statuses: `scheduled → active → successful → closed`, or `→ failed`, or `→ cancelled`.
//! Participants: `joined` (unpaid) → `paid` → `ordered`, or `left`, `dropped`, `refunded`.
//! A participant *occupies a place* while joined, paid or ordered; places are capped at
//! `max_participants` (CMP-2) and count against the customer's limit (CMP-4).

mod commands;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use commerce_contracts::events::{CampaignCreated, CampaignEvent};
use commerce_domain::{
    CampaignId, LocationId, Money, OrderId, ParticipantId, PaymentId, ProductId, Sku,
};
use imbl::{HashMap, Vector};
use serde::{Deserialize, Serialize};

use crate::{Catalog, guard};

pub use commands::{CampaignCommand, CreateCampaign, MAX_CAMPAIGN_WINDOW, MAX_PARTICIPANTS};

/// The stream key of a campaign (the executor prefixes the tenant).
#[must_use]
pub fn stream_key(id: CampaignId) -> String {
    id.to_string()
}

/// Where a campaign stands; [`CampaignStatus::as_str`] gives the API value.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    #[default]
    Scheduled,
    Active,
    /// The minimum has paid; joins stay open until full or the end time.
    Successful,
    Closed,
    Failed,
    Cancelled,
}

impl CampaignStatus {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Active => "active",
            Self::Successful => "successful",
            Self::Closed => "closed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Closed, failed and cancelled absorb every later deadline.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Closed | Self::Failed | Self::Cancelled)
    }
}

/// Where one participation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantState {
    /// Joined, payment outstanding: the customer's one in-progress participation.
    Joined,
    Paid,
    /// The paid participant's order exists (after closing).
    Ordered,
    Left,
    Dropped,
    Refunded,
}

impl ParticipantState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joined => "joined",
            Self::Paid => "paid",
            Self::Ordered => "ordered",
            Self::Left => "left",
            Self::Dropped => "dropped",
            Self::Refunded => "refunded",
        }
    }

    /// Whether the participation holds a place (and counts against the customer's limit).
    #[must_use]
    pub fn occupies_place(self) -> bool {
        matches!(self, Self::Joined | Self::Paid | Self::Ordered)
    }

    #[must_use]
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Paid | Self::Ordered)
    }
}

/// The immutable configuration, from `campaign.created`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignConfig {
    pub campaign_id: CampaignId,
    pub sku: Sku,
    pub product_id: Option<ProductId>,
    pub location: LocationId,
    pub group_price: Money,
    pub original_price: Money,
    pub min_participants: u32,
    pub max_participants: u32,
    pub per_customer_limit: u32,
    pub per_order_limit: u32,
    /// 0 = off; else the share of `min_participants` (in %) that suffices at the end.
    pub virtual_completion_pct: u8,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl CampaignConfig {
    /// The configuration an event describes; `None` only for a payload this engine never wrote.
    fn from_event(e: &CampaignCreated) -> Option<Self> {
        Some(Self {
            campaign_id: CampaignId::from_uuid(e.campaign_id),
            sku: Sku::new(e.sku.as_str()).ok()?,
            product_id: e.product_id.map(ProductId::from_uuid),
            location: LocationId::new(e.location.as_str()).ok()?,
            group_price: Money::try_from(&e.group_price).ok()?,
            original_price: Money::try_from(&e.original_price).ok()?,
            min_participants: e.min_participants,
            max_participants: e.max_participants,
            per_customer_limit: e.per_customer_limit,
            per_order_limit: e.per_order_limit,
            virtual_completion_pct: e.virtual_completion_pct,
            start_time: e.start_time,
            end_time: e.end_time,
            created_at: e.created_at,
        })
    }
}

/// One customer's join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    id: ParticipantId,
    customer_id: String,
    quantity: u32,
    /// `group_price × quantity` as snapshotted at the join (CMP-8), exactly as the event has it.
    amount: commerce_contracts::Money,
    payment_method: Option<String>,
    state: ParticipantState,
    payment_id: Option<PaymentId>,
    order_id: Option<OrderId>,
    /// Position in payment order (1 = first to pay); leadership follows it (CMP-10).
    paid_rank: Option<u32>,
    joined_at: DateTime<Utc>,
}

impl Participant {
    #[must_use]
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    #[must_use]
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    #[must_use]
    pub fn quantity(&self) -> u32 {
        self.quantity
    }

    /// The amount to pay, snapshotted at the join.
    #[must_use]
    pub fn amount(&self) -> &commerce_contracts::Money {
        &self.amount
    }

    #[must_use]
    pub fn payment_method(&self) -> Option<&str> {
        self.payment_method.as_deref()
    }

    #[must_use]
    pub fn state(&self) -> ParticipantState {
        self.state
    }

    #[must_use]
    pub fn payment_id(&self) -> Option<PaymentId> {
        self.payment_id
    }

    #[must_use]
    pub fn order_id(&self) -> Option<OrderId> {
        self.order_id
    }

    #[must_use]
    pub fn joined_at(&self) -> DateTime<Utc> {
        self.joined_at
    }

    #[must_use]
    pub fn paid_rank(&self) -> Option<u32> {
        self.paid_rank
    }
}

/// A group-buying campaign.
///
/// Serialised (engine snapshots) without its participant index, which deserialising rebuilds.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredCampaign")]
pub struct Campaign {
    /// `None` until `campaign.created`.
    config: Option<CampaignConfig>,
    status: CampaignStatus,
    /// In join order. Persistent collections here and in the index: a command mutates the
    /// cached campaign while a process manager may hold a snapshot of it, and a flash sale's
    /// campaign holds a hundred thousand participants, so a copy must share, not duplicate.
    participants: Vector<Participant>,
    leader: Option<ParticipantId>,
    payments_recorded: u32,
    /// `campaign.successful` was appended (it is appended at most once, CMP-5).
    succeeded: bool,
    succeeded_virtually: bool,
    #[serde(skip)]
    index: ParticipantIndex,
}

/// The stored shape of a [`Campaign`]: every field but the index.
#[derive(Deserialize)]
struct StoredCampaign {
    config: Option<CampaignConfig>,
    status: CampaignStatus,
    participants: Vector<Participant>,
    leader: Option<ParticipantId>,
    payments_recorded: u32,
    succeeded: bool,
    succeeded_virtually: bool,
}

impl From<StoredCampaign> for Campaign {
    fn from(stored: StoredCampaign) -> Self {
        let index = ParticipantIndex::of(&stored.participants);
        Self {
            config: stored.config,
            status: stored.status,
            participants: stored.participants,
            leader: stored.leader,
            payments_recorded: stored.payments_recorded,
            succeeded: stored.succeeded,
            succeeded_virtually: stored.succeeded_virtually,
            index,
        }
    }
}

/// Lookups and counts over `Campaign::participants`, derived from them and kept up to date by
/// `apply`, so a join or a payment costs the same with ten participants or a hundred thousand
/// (a flash sale's campaign is one hot stream; scanning every participant per command made
/// the stream slower the longer it grew).
#[derive(Debug, Default, Clone)]
struct ParticipantIndex {
    /// Position in `participants` of each participant.
    by_id: HashMap<ParticipantId, usize>,
    /// Positions in `participants` of each customer's participations.
    by_customer: HashMap<String, Vec<usize>>,
    /// Participations holding a place.
    occupied: u32,
    /// Participations paid (and not refunded or left).
    paid: u32,
}

/// The index is a function of the participants, which the derived equality already compares.
impl PartialEq for ParticipantIndex {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl ParticipantIndex {
    fn of(participants: &Vector<Participant>) -> Self {
        let mut index = Self::default();
        for (position, participant) in participants.iter().enumerate() {
            index.add(position, participant);
        }
        index
    }

    fn add(&mut self, position: usize, participant: &Participant) {
        // The first participation with an id wins, as a search in join order would find it.
        self.by_id.entry(participant.id).or_insert(position);
        self.by_customer
            .entry(participant.customer_id.clone())
            .or_default()
            .push(position);
        self.count(participant.state, true);
    }

    /// Counts a participation in `state` in (`added`) or out.
    fn count(&mut self, state: ParticipantState, added: bool) {
        let step = |counter: &mut u32| {
            *counter = if added {
                counter.saturating_add(1)
            } else {
                counter.saturating_sub(1)
            };
        };
        if state.occupies_place() {
            step(&mut self.occupied);
        }
        if state.is_paid() {
            step(&mut self.paid);
        }
    }
}

impl Campaign {
    #[must_use]
    pub fn config(&self) -> Option<&CampaignConfig> {
        self.config.as_ref()
    }

    #[must_use]
    pub fn exists(&self) -> bool {
        self.config.is_some()
    }

    #[must_use]
    pub fn status(&self) -> CampaignStatus {
        self.status
    }

    /// Every participation, in join order, whatever its state.
    #[must_use]
    pub fn participants(&self) -> &Vector<Participant> {
        &self.participants
    }

    #[must_use]
    pub fn participant(&self, id: ParticipantId) -> Option<&Participant> {
        self.index
            .by_id
            .get(&id)
            .and_then(|&position| self.participants.get(position))
    }

    /// Every participation of `customer`, in join order, whatever its state.
    pub fn participations_of<'a>(
        &'a self,
        customer: &str,
    ) -> impl Iterator<Item = &'a Participant> + 'a {
        self.index
            .by_customer
            .get(customer)
            .into_iter()
            .flatten()
            .filter_map(|&position| self.participants.get(position))
    }

    /// Participants that paid (and were not refunded or left).
    #[must_use]
    pub fn paid_count(&self) -> u32 {
        self.index.paid
    }

    /// Participations holding a place (joined, paid or ordered).
    #[must_use]
    pub fn occupied_places(&self) -> u32 {
        self.index.occupied
    }

    /// The group leader: the earliest payer still in the group.
    #[must_use]
    pub fn leader(&self) -> Option<ParticipantId> {
        self.leader
    }

    #[must_use]
    pub fn is_leader(&self, id: ParticipantId) -> bool {
        self.leader == Some(id)
    }

    /// Whether `campaign.successful` was appended, and whether virtually.
    #[must_use]
    pub fn succeeded(&self) -> (bool, bool) {
        (self.succeeded, self.succeeded_virtually)
    }

    /// Moves participant `id` (if any) to `state`, keeping the counts, and hands it back for
    /// the other changes of the event.
    fn transition(&mut self, id: uuid::Uuid, state: ParticipantState) -> Option<&mut Participant> {
        let position = *self.index.by_id.get(&ParticipantId::from_uuid(id))?;
        let participant = self.participants.get_mut(position)?;
        self.index.count(participant.state, false);
        self.index.count(state, true);
        participant.state = state;
        Some(participant)
    }

    fn add_participant(&mut self, participant: Participant) {
        self.index.add(self.participants.len(), &participant);
        self.participants.push_back(participant);
    }
}

impl cqrs_es::Aggregate for Campaign {
    const TYPE: &'static str = "campaign";
    type Command = CampaignCommand;
    type Event = CampaignEvent;
    type Error = crate::CommandError;
    /// The catalog, asked whether a new campaign's SKU is a real product.
    type Services = Arc<dyn Catalog>;

    async fn handle(
        &mut self,
        command: Self::Command,
        catalog: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            CampaignCommand::Create(create) => {
                let entry = catalog.product(&create.tenant, &create.sku).await;
                self.create(create, entry)?
            }
            other => self.decide(other)?,
        };
        guard::write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            CampaignEvent::Created(e) => self.config = CampaignConfig::from_event(&e),
            CampaignEvent::Started(_) => self.status = CampaignStatus::Active,
            CampaignEvent::Joined(e) => self.add_participant(Participant {
                id: ParticipantId::from_uuid(e.participant_id),
                customer_id: e.customer_id,
                quantity: e.quantity,
                amount: e.amount,
                payment_method: e.payment_method,
                state: ParticipantState::Joined,
                payment_id: None,
                order_id: None,
                paid_rank: None,
                joined_at: e.joined_at,
            }),
            CampaignEvent::ParticipantPaid(e) => {
                self.payments_recorded = self.payments_recorded.saturating_add(1);
                let rank = self.payments_recorded;
                if let Some(p) = self.transition(e.participant_id, ParticipantState::Paid) {
                    p.payment_id = Some(PaymentId::from_uuid(e.payment_id));
                    p.paid_rank = Some(rank);
                }
                if e.became_leader {
                    self.leader = Some(ParticipantId::from_uuid(e.participant_id));
                }
            }
            CampaignEvent::ParticipantDropped(e) => {
                self.transition(e.participant_id, ParticipantState::Dropped);
            }
            CampaignEvent::ParticipantLeft(e) => {
                self.transition(e.participant_id, ParticipantState::Left);
                let left = ParticipantId::from_uuid(e.participant_id);
                if let Some(new_leader) = e.new_leader {
                    self.leader = Some(ParticipantId::from_uuid(new_leader));
                } else if self.leader == Some(left) {
                    self.leader = None;
                }
            }
            CampaignEvent::Successful(e) => {
                self.status = CampaignStatus::Successful;
                self.succeeded = true;
                self.succeeded_virtually = e.is_virtual;
            }
            CampaignEvent::Closed(_) => self.status = CampaignStatus::Closed,
            CampaignEvent::ParticipantOrdered(e) => {
                if let Some(p) = self.transition(e.participant_id, ParticipantState::Ordered) {
                    p.order_id = Some(OrderId::from_uuid(e.order_id));
                }
            }
            CampaignEvent::Failed(_) => self.status = CampaignStatus::Failed,
            CampaignEvent::Cancelled(_) => self.status = CampaignStatus::Cancelled,
            CampaignEvent::ParticipantRefunded(e) => {
                self.transition(e.participant_id, ParticipantState::Refunded);
            }
        }
    }
}
