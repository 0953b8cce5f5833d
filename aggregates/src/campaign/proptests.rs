//! Property tests of the campaign invariants CMP-1…5, CMP-8 and CMP-10 (§6 of the commerce
//! anchors): random configurations and command sequences run through `handle`; after every
//! step the fold is checked, and refused commands must leave no trace.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use commerce_contracts::events::CampaignEvent;
use commerce_domain::{
    CampaignId, Currency, CustomerId, LocationId, Money, OrderId, ParticipantId, PaymentId,
    ProductId, Quantity, Sku, TenantId,
};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use proptest::prelude::*;
use uuid::Uuid;

use super::{Campaign, CampaignCommand, CampaignStatus, CreateCampaign, ParticipantState};
use crate::{Catalog, CatalogEntry, InMemoryCatalog};

#[derive(Debug, Clone)]
struct Config {
    min: u32,
    extra: u32,
    per_customer: u32,
    per_order: u32,
    pct: u8,
    group: i64,
}

fn config() -> impl Strategy<Value = Config> {
    (
        2..5_u32,
        0..4_u32,
        1..4_u32,
        prop::sample::select(vec![0_u8, 50, 100]),
        1..5_000_i64,
    )
        .prop_flat_map(|(min, extra, per_customer, pct, group)| {
            (1..=per_customer).prop_map(move |per_order| Config {
                min,
                extra,
                per_customer,
                per_order,
                pct,
                group,
            })
        })
}

#[derive(Debug, Clone)]
enum Op {
    Start,
    Join {
        participant: u8,
        customer: u8,
        quantity: u32,
    },
    Pay {
        participant: u8,
        exact: bool,
    },
    Drop(u8),
    Leave(u8),
    Close,
    Expire,
    Cancel,
    Ordered(u8),
    Refunded(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Start),
        5 => (0..10_u8, 0..4_u8, 1..4_u32)
            .prop_map(|(participant, customer, quantity)| Op::Join { participant, customer, quantity }),
        5 => (0..10_u8, prop::bool::weighted(0.9)).prop_map(|(participant, exact)| Op::Pay { participant, exact }),
        1 => (0..10_u8).prop_map(Op::Drop),
        1 => (0..10_u8).prop_map(Op::Leave),
        1 => Just(Op::Close),
        1 => Just(Op::Expire),
        1 => prop::bool::weighted(0.2).prop_map(|cancel| if cancel { Op::Cancel } else { Op::Start }),
        1 => (0..10_u8).prop_map(Op::Ordered),
        1 => (0..10_u8).prop_map(Op::Refunded),
    ]
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid")
}

fn pid(n: u8) -> ParticipantId {
    ParticipantId::from_uuid(Uuid::from_u128(u128::from(n) + 1))
}

fn tenant() -> TenantId {
    TenantId::new("acme").expect("valid")
}

fn sku() -> Sku {
    Sku::new("SKU-C").expect("valid")
}

fn create(config: &Config) -> CampaignCommand {
    CampaignCommand::Create(CreateCampaign {
        campaign_id: CampaignId::from_uuid(Uuid::from_u128(9)),
        tenant: tenant(),
        sku: sku(),
        location: LocationId::default_location(),
        group_price: Money::new(config.group, Currency::Eur),
        original_price: Money::new(config.group + 1, Currency::Eur),
        min_participants: config.min,
        max_participants: config.min + config.extra,
        per_customer_limit: Some(config.per_customer),
        per_order_limit: Some(config.per_order),
        virtual_completion_pct: config.pct,
        start_time: t0() + Duration::hours(1),
        end_time: t0() + Duration::hours(20),
        at: t0(),
    })
}

fn command(op: &Op, campaign: &Campaign, now: DateTime<Utc>) -> CampaignCommand {
    match op.clone() {
        Op::Start => CampaignCommand::Start { at: now },
        Op::Join {
            participant,
            customer,
            quantity,
        } => CampaignCommand::Join {
            participant_id: pid(participant),
            customer: CustomerId::new(format!("c{customer}")).expect("valid"),
            quantity: Quantity::new(quantity).expect("in range"),
            payment_method: None,
            at: now,
        },
        Op::Pay { participant, exact } => {
            let owed = campaign
                .participant(pid(participant))
                .and_then(|p| Money::try_from(p.amount()).ok())
                .unwrap_or(Money::new(1, Currency::Eur));
            let amount = if exact {
                owed
            } else {
                Money::new(owed.amount_minor() + 1, Currency::Eur)
            };
            CampaignCommand::RecordParticipantPaid {
                participant_id: pid(participant),
                payment_id: PaymentId::from_uuid(Uuid::from_u128(u128::from(participant) + 100)),
                amount,
                at: now,
            }
        }
        Op::Drop(participant) => CampaignCommand::DropParticipant {
            participant_id: pid(participant),
            reason: "payment failed".into(),
            at: now,
        },
        Op::Leave(participant) => CampaignCommand::Leave {
            participant_id: pid(participant),
            at: now,
        },
        Op::Close => CampaignCommand::Close { at: now },
        Op::Expire => CampaignCommand::Expire { at: now },
        Op::Cancel => CampaignCommand::Cancel {
            reason: "operator".into(),
            at: now,
        },
        Op::Ordered(participant) => CampaignCommand::RecordParticipantOrdered {
            participant_id: pid(participant),
            order_id: OrderId::from_uuid(Uuid::from_u128(u128::from(participant) + 200)),
            at: now,
        },
        Op::Refunded(participant) => CampaignCommand::RecordParticipantRefunded {
            participant_id: pid(participant),
            payment_id: None,
            at: now,
        },
    }
}

/// CMP-3 and CMP-5 for the events of one command, folded one by one onto `state`.
fn check_events(
    events: &[CampaignEvent],
    state: &mut Campaign,
    successes: &mut u32,
) -> Result<(), TestCaseError> {
    for event in events {
        let config = state.config().cloned();
        match event {
            CampaignEvent::Joined(e) => {
                let config = config.expect("joined after created");
                prop_assert!(config.start_time <= e.joined_at && e.joined_at < config.end_time);
                prop_assert!(matches!(
                    state.status(),
                    CampaignStatus::Active | CampaignStatus::Successful
                ));
            }
            CampaignEvent::Successful(e) => {
                *successes += 1;
                prop_assert_eq!(*successes, 1, "campaign.successful twice");
                let config = config.expect("successful after created");
                prop_assert_eq!(e.paid_participants, state.paid_count());
                if e.is_virtual {
                    prop_assert!(config.virtual_completion_pct > 0);
                    prop_assert!(
                        u64::from(e.paid_participants) * 100
                            >= u64::from(config.min_participants)
                                * u64::from(config.virtual_completion_pct)
                    );
                } else {
                    prop_assert!(e.paid_participants >= config.min_participants);
                }
            }
            _ => {}
        }
        state.apply(event.clone());
    }
    Ok(())
}

fn check_state(campaign: &Campaign) -> Result<(), TestCaseError> {
    let Some(config) = campaign.config() else {
        return Ok(());
    };
    // CMP-1.
    prop_assert!(
        2 <= config.min_participants && config.min_participants <= config.max_participants
    );
    prop_assert!(config.group_price.is_positive());
    prop_assert!(config.group_price.amount_minor() < config.original_price.amount_minor());
    prop_assert_eq!(
        config.group_price.currency(),
        config.original_price.currency()
    );
    prop_assert!(config.start_time < config.end_time);
    prop_assert!(config.per_order_limit <= config.per_customer_limit);
    // CMP-2.
    prop_assert!(campaign.occupied_places() <= config.max_participants);
    // CMP-4 and CMP-8.
    let mut per_customer: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for p in campaign.participants() {
        prop_assert!(p.quantity() <= config.per_order_limit);
        let snapshot = config.group_price.checked_mul(p.quantity()).expect("small");
        prop_assert_eq!(p.amount(), &commerce_contracts::Money::from(snapshot));
        if p.state().occupies_place() {
            let entry = per_customer.entry(p.customer_id()).or_default();
            entry.0 += p.quantity();
            entry.1 += u32::from(p.state() == ParticipantState::Joined);
        }
    }
    for (held, in_progress) in per_customer.values() {
        prop_assert!(*held <= config.per_customer_limit);
        prop_assert!(*in_progress <= 1);
    }
    // CMP-10, while the group exists (failure and cancellation dissolve it).
    if !matches!(
        campaign.status(),
        CampaignStatus::Failed | CampaignStatus::Cancelled
    ) {
        let earliest = campaign
            .participants()
            .iter()
            .filter(|p| p.state().is_paid())
            .min_by_key(|p| p.paid_rank())
            .map(|p| p.id());
        prop_assert_eq!(campaign.leader(), earliest);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn campaign_invariants_hold_after_every_command(
        config in config(),
        ops in prop::collection::vec((op(), 0..3_i64), 1..50),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let catalog: Arc<dyn Catalog> = Arc::new(InMemoryCatalog::new().with(
            tenant(),
            sku(),
            CatalogEntry {
                product_id: ProductId::from_uuid(Uuid::from_u128(5)),
                price: Money::new(config.group + 1, Currency::Eur),
                discontinued: false,
            },
        ));
        let mut campaign = Campaign::default();
        let mut successes = 0;
        let sink = EventSink::default();
        let created = runtime.block_on(campaign.handle(create(&config), &catalog, &sink));
        prop_assert!(created.is_ok(), "{:?}", created);
        let mut replayed = Campaign::default();
        check_events(&runtime.block_on(sink.collect()), &mut replayed, &mut successes)?;
        prop_assert_eq!(&replayed, &campaign);
        let mut now = t0();
        for (op, advance) in &ops {
            now += Duration::hours(*advance);
            let command = command(op, &campaign, now);
            let before = campaign.clone();
            let sink = EventSink::default();
            let result = runtime.block_on(campaign.handle(command, &catalog, &sink));
            let events = runtime.block_on(sink.collect());
            if result.is_err() {
                // A refused command appends nothing and leaves the state untouched.
                prop_assert!(events.is_empty());
                prop_assert_eq!(&campaign, &before);
                continue;
            }
            let mut replayed = before;
            check_events(&events, &mut replayed, &mut successes)?;
            // The fold of the appended events is the state the handler left.
            prop_assert_eq!(&replayed, &campaign);
            check_state(&campaign)?;
        }
    }
}
