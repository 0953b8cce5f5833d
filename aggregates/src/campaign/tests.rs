//! Given/when/then tests of every campaign command and every rejection.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use commerce_contracts::events::*;
use commerce_domain::{
    CampaignId, Currency, CustomerId, LocationId, Money, OrderId, ParticipantId, PaymentId,
    ProductId, Quantity, Sku, TenantId,
};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::testkit::{at_hour as t, eur, fold};
use crate::{Catalog, CatalogEntry, CommandError, InMemoryCatalog};

fn tenant() -> TenantId {
    TenantId::new("acme").expect("valid")
}

fn sku() -> Sku {
    Sku::new("TEE-RED").expect("valid")
}

fn product_id() -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(77))
}

fn catalog(discontinued: bool) -> Arc<dyn Catalog> {
    Arc::new(InMemoryCatalog::new().with(
        tenant(),
        sku(),
        CatalogEntry {
            product_id: product_id(),
            price: eur(2000),
            discontinued,
        },
    ))
}

fn given() -> TestFramework<Campaign> {
    TestFramework::with(catalog(false))
}

fn campaign_id() -> CampaignId {
    CampaignId::from_uuid(Uuid::from_u128(1))
}

fn pid(n: u128) -> ParticipantId {
    ParticipantId::from_uuid(Uuid::from_u128(100 + n))
}

fn pay_id(n: u128) -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(200 + n))
}

fn customer(n: u32) -> CustomerId {
    CustomerId::new(format!("customer-{n}")).expect("valid")
}

/// Starts at hour 10, ends at hour 34; 2..=3 participants; group 1500 EUR-cents vs 2000.
fn create_command() -> CreateCampaign {
    CreateCampaign {
        campaign_id: campaign_id(),
        tenant: tenant(),
        sku: sku(),
        location: LocationId::default_location(),
        group_price: eur(1500),
        original_price: eur(2000),
        min_participants: 2,
        max_participants: 3,
        per_customer_limit: Some(2),
        per_order_limit: None,
        virtual_completion_pct: 0,
        start_time: t(10),
        end_time: t(34),
        at: t(0),
    }
}

fn created_payload() -> CampaignCreated {
    CampaignCreated {
        campaign_id: campaign_id().as_uuid(),
        sku: "TEE-RED".into(),
        product_id: Some(product_id().as_uuid()),
        location: "default".into(),
        group_price: eur(1500).into(),
        original_price: eur(2000).into(),
        min_participants: 2,
        max_participants: 3,
        per_customer_limit: 2,
        per_order_limit: 2,
        virtual_completion_pct: 0,
        start_time: t(10),
        end_time: t(34),
        created_at: t(0),
    }
}

fn created() -> CampaignEvent {
    CampaignEvent::Created(created_payload())
}

fn started() -> CampaignEvent {
    CampaignEvent::Started(CampaignStarted { at: t(10) })
}

fn joined(n: u128, customer_no: u32, quantity: u32) -> CampaignEvent {
    CampaignEvent::Joined(CampaignJoined {
        participant_id: pid(n).as_uuid(),
        customer_id: customer(customer_no).into(),
        quantity,
        unit_price: eur(1500).into(),
        amount: eur(1500 * i64::from(quantity)).into(),
        payment_method: Some("pm_card_ok".into()),
        joined_at: t(11),
    })
}

fn paid(n: u128, quantity: i64, became_leader: bool) -> CampaignEvent {
    CampaignEvent::ParticipantPaid(CampaignParticipantPaid {
        participant_id: pid(n).as_uuid(),
        payment_id: pay_id(n).as_uuid(),
        amount: eur(1500 * quantity).into(),
        became_leader,
        at: t(12),
    })
}

fn successful(paid_participants: u32) -> CampaignEvent {
    CampaignEvent::Successful(CampaignSuccessful {
        paid_participants,
        is_virtual: false,
        at: t(12),
    })
}

fn join(n: u128, customer_no: u32, quantity: u32) -> CampaignCommand {
    CampaignCommand::Join {
        participant_id: pid(n),
        customer: customer(customer_no),
        quantity: Quantity::new(quantity).expect("valid"),
        payment_method: Some("pm_card_ok".into()),
        at: t(11),
    }
}

fn join_at(n: u128, customer_no: u32, at: DateTime<Utc>) -> CampaignCommand {
    CampaignCommand::Join {
        participant_id: pid(n),
        customer: customer(customer_no),
        quantity: Quantity::ONE,
        payment_method: Some("pm_card_ok".into()),
        at,
    }
}

fn record_paid(n: u128, amount: Money) -> CampaignCommand {
    CampaignCommand::RecordParticipantPaid {
        participant_id: pid(n),
        payment_id: pay_id(n),
        amount,
        at: t(12),
    }
}

fn active() -> Vec<CampaignEvent> {
    vec![created(), started()]
}

/// Two paid participants (1 leads): successful.
fn successful_campaign() -> Vec<CampaignEvent> {
    let mut events = active();
    events.extend([
        joined(1, 1, 1),
        paid(1, 1, true),
        joined(2, 2, 1),
        paid(2, 1, false),
        successful(2),
    ]);
    events
}

fn with(
    mut events: Vec<CampaignEvent>,
    more: impl IntoIterator<Item = CampaignEvent>,
) -> Vec<CampaignEvent> {
    events.extend(more);
    events
}

fn conflict(action: &str, state: &str) -> CommandError {
    CommandError::invalid_state(action, state)
}

// --- Create -----------------------------------------------------------------------------------

#[test]
fn create_schedules_the_campaign_with_defaults() {
    given()
        .given_no_previous_events()
        .when(CampaignCommand::Create(create_command()))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_at_or_after_the_start_time_also_starts_it() {
    given()
        .given_no_previous_events()
        .when(CampaignCommand::Create(CreateCampaign {
            at: t(10),
            ..create_command()
        }))
        .then_expect_events(vec![
            CampaignEvent::Created(CampaignCreated {
                created_at: t(10),
                ..created_payload()
            }),
            started(),
        ]);
}

#[test]
fn create_defaults_the_customer_limit_to_one() {
    let events = given()
        .given_no_previous_events()
        .when(CampaignCommand::Create(CreateCampaign {
            per_customer_limit: None,
            ..create_command()
        }))
        .inspect_result()
        .expect("created");
    assert!(matches!(
        events.as_slice(),
        [CampaignEvent::Created(CampaignCreated {
            per_customer_limit: 1,
            per_order_limit: 1,
            ..
        })]
    ));
}

#[test]
fn create_rejections() {
    let cases: Vec<(CreateCampaign, CommandError)> = vec![
        (
            CreateCampaign {
                min_participants: 1,
                ..create_command()
            },
            CommandError::invalid("min_participants", "must be at least 2"),
        ),
        (
            CreateCampaign {
                max_participants: 1,
                min_participants: 2,
                ..create_command()
            },
            CommandError::invalid(
                "max_participants",
                "must be between min_participants and 100000",
            ),
        ),
        (
            CreateCampaign {
                max_participants: MAX_PARTICIPANTS + 1,
                ..create_command()
            },
            CommandError::invalid(
                "max_participants",
                "must be between min_participants and 100000",
            ),
        ),
        (
            CreateCampaign {
                per_customer_limit: Some(0),
                ..create_command()
            },
            CommandError::invalid("per_customer_limit", "must be between 1 and 1000000"),
        ),
        (
            CreateCampaign {
                per_order_limit: Some(3),
                ..create_command()
            },
            CommandError::invalid(
                "per_order_limit",
                "must be between 1 and per_customer_limit",
            ),
        ),
        (
            CreateCampaign {
                group_price: eur(0),
                ..create_command()
            },
            CommandError::invalid("group_price", "must be greater than zero"),
        ),
        (
            CreateCampaign {
                group_price: eur(2000),
                ..create_command()
            },
            CommandError::invalid("group_price", "must be below original_price"),
        ),
        (
            CreateCampaign {
                original_price: Money::new(2000, Currency::Usd),
                ..create_command()
            },
            CommandError::invalid(
                "original_price.currency",
                "must be the currency of group_price",
            ),
        ),
        (
            CreateCampaign {
                end_time: t(10),
                ..create_command()
            },
            CommandError::invalid("end_time", "must be after start_time"),
        ),
        (
            CreateCampaign {
                start_time: t(-48),
                end_time: t(-24),
                ..create_command()
            },
            CommandError::invalid("end_time", "must be in the future"),
        ),
        (
            CreateCampaign {
                end_time: t(10 + 30 * 24 + 1),
                ..create_command()
            },
            CommandError::invalid("end_time", "must be at most 30 days after start_time"),
        ),
        (
            CreateCampaign {
                virtual_completion_pct: 101,
                ..create_command()
            },
            CommandError::invalid("virtual_completion_pct", "must be between 0 and 100"),
        ),
        (
            CreateCampaign {
                sku: Sku::new("NOPE").expect("valid"),
                ..create_command()
            },
            CommandError::invalid("sku", "no product with this SKU in the catalog"),
        ),
    ];
    for (command, error) in cases {
        given()
            .given_no_previous_events()
            .when(CampaignCommand::Create(command))
            .then_expect_error(error);
    }
}

#[test]
fn create_for_another_tenants_product_is_refused() {
    given()
        .given_no_previous_events()
        .when(CampaignCommand::Create(CreateCampaign {
            tenant: TenantId::new("other").expect("valid"),
            ..create_command()
        }))
        .then_expect_error(CommandError::invalid(
            "sku",
            "no product with this SKU in the catalog",
        ));
}

#[test]
fn create_for_a_discontinued_product_is_refused() {
    TestFramework::<Campaign>::with(catalog(true))
        .given_no_previous_events()
        .when(CampaignCommand::Create(create_command()))
        .then_expect_error(CommandError::invalid("sku", "the product is discontinued"));
}

#[test]
fn create_twice_is_refused() {
    given()
        .given(vec![created()])
        .when(CampaignCommand::Create(create_command()))
        .then_expect_error(CommandError::AlreadyExists(format!(
            "campaign {}",
            campaign_id()
        )));
}

#[test]
fn commands_on_a_missing_campaign_are_not_found() {
    given()
        .given_no_previous_events()
        .when(join(1, 1, 1))
        .then_expect_error(CommandError::NotFound("campaign".into()));
}

// --- Start ------------------------------------------------------------------------------------

#[test]
fn start_at_the_start_time_activates() {
    given()
        .given(vec![created()])
        .when(CampaignCommand::Start { at: t(10) })
        .then_expect_events(vec![started()]);
}

#[test]
fn start_early_is_refused_and_start_later_is_a_no_op() {
    given()
        .given(vec![created()])
        .when(CampaignCommand::Start { at: t(9) })
        .then_expect_error(conflict(
            "start campaign",
            &format!("scheduled to start at {}", t(10)),
        ));
    given()
        .given(active())
        .when(CampaignCommand::Start { at: t(11) })
        .then_expect_events(vec![]);
}

// --- Join -------------------------------------------------------------------------------------

#[test]
fn join_snapshots_the_group_price() {
    given()
        .given(active())
        .when(join(1, 1, 2))
        .then_expect_events(vec![joined(1, 1, 2)]);
}

#[test]
fn join_after_the_start_time_of_a_scheduled_campaign_starts_it() {
    given()
        .given(vec![created()])
        .when(join(1, 1, 1))
        .then_expect_events(vec![
            CampaignEvent::Started(CampaignStarted { at: t(11) }),
            joined(1, 1, 1),
        ]);
}

#[test]
fn join_with_a_seen_participant_id_appends_nothing() {
    given()
        .given(with(active(), [joined(1, 1, 1)]))
        .when(join(1, 1, 1))
        .then_expect_events(vec![]);
}

#[test]
fn join_a_successful_campaign_is_allowed_until_full() {
    given()
        .given(successful_campaign())
        .when(join(3, 3, 1))
        .inspect_result()
        .expect("joins stay open after success");
    given()
        .given(with(successful_campaign(), [joined(3, 3, 1)]))
        .when(join(4, 4, 1))
        .then_expect_error(CommandError::LimitReached("the campaign is full".into()));
}

#[test]
fn join_window_rejections() {
    given()
        .given(vec![created()])
        .when(join_at(1, 1, t(9)))
        .then_expect_error(conflict("join campaign", "scheduled"));
    given()
        .given(active())
        .when(join_at(1, 1, t(34)))
        .then_expect_error(conflict("join campaign", "ended"));
    given()
        .given(active())
        .when(join_at(1, 1, t(9)))
        .then_expect_error(conflict("join campaign", "not started"));
    for terminal in [
        CampaignEvent::Cancelled(CampaignCancelled {
            reason: "x".into(),
            at: t(11),
        }),
        CampaignEvent::Failed(CampaignFailed {
            paid_participants: 0,
            reason: "x".into(),
            at: t(34),
        }),
    ] {
        let status = match &terminal {
            CampaignEvent::Cancelled(_) => "cancelled",
            _ => "failed",
        };
        given()
            .given(with(active(), [terminal]))
            .when(join(1, 1, 1))
            .then_expect_error(conflict("join campaign", status));
    }
}

#[test]
fn join_limit_rejections() {
    given()
        .given(active())
        .when(join(1, 1, 3))
        .then_expect_error(CommandError::invalid("quantity", "at most 2 per join"));
    given()
        .given(with(active(), [joined(1, 1, 1)]))
        .when(join(2, 1, 1))
        .then_expect_error(CommandError::LimitReached(
            "the customer already has a participation awaiting payment".into(),
        ));
    given()
        .given(with(active(), [joined(1, 1, 2), paid(1, 2, true)]))
        .when(join(2, 1, 1))
        .then_expect_error(CommandError::LimitReached(
            "at most 2 units per customer".into(),
        ));
    given()
        .given(with(
            active(),
            [joined(1, 1, 1), joined(2, 2, 1), joined(3, 3, 1)],
        ))
        .when(join(4, 4, 1))
        .then_expect_error(CommandError::LimitReached("the campaign is full".into()));
}

#[test]
fn a_join_again_under_a_used_id_is_a_no_op_for_the_same_join_and_refused_for_another() {
    given()
        .given(with(active(), [joined(1, 1, 1)]))
        .when(join(1, 1, 1))
        .then_expect_events(vec![]);
    for other in [join(1, 2, 1), join(1, 1, 2)] {
        given()
            .given(with(active(), [joined(1, 1, 1)]))
            .when(other)
            .then_expect_error(CommandError::invalid(
                "participant_id",
                "already names another customer's or quantity's join",
            ));
    }
}

#[test]
fn a_dropped_participation_frees_the_place_and_the_customer_limit() {
    let dropped = CampaignEvent::ParticipantDropped(CampaignParticipantDropped {
        participant_id: pid(1).as_uuid(),
        reason: "payment failed".into(),
        at: t(11),
    });
    given()
        .given(with(active(), [joined(1, 1, 2), dropped]))
        .when(join(2, 1, 2))
        .then_expect_events(vec![joined(2, 1, 2)]);
}

// --- RecordParticipantPaid --------------------------------------------------------------------

#[test]
fn the_first_payment_makes_the_leader() {
    given()
        .given(with(active(), [joined(1, 1, 1)]))
        .when(record_paid(1, eur(1500)))
        .then_expect_events(vec![paid(1, 1, true)]);
}

#[test]
fn the_payment_that_reaches_the_minimum_makes_the_campaign_successful_once() {
    given()
        .given(with(
            active(),
            [joined(1, 1, 1), paid(1, 1, true), joined(2, 2, 1)],
        ))
        .when(record_paid(2, eur(1500)))
        .then_expect_events(vec![paid(2, 1, false), successful(2)]);
    given()
        .given(with(successful_campaign(), [joined(3, 3, 1)]))
        .when(record_paid(3, eur(1500)))
        .then_expect_events(vec![paid(3, 1, false)]);
}

#[test]
fn a_redelivered_payment_appends_nothing() {
    given()
        .given(with(active(), [joined(1, 1, 1), paid(1, 1, true)]))
        .when(record_paid(1, eur(1500)))
        .then_expect_events(vec![]);
}

#[test]
fn record_paid_rejections() {
    let base = || with(active(), [joined(1, 1, 2)]);
    given()
        .given(base())
        .when(record_paid(1, eur(1500)))
        .then_expect_error(CommandError::invalid(
            "amount",
            "must equal the amount snapshotted at the join, 30.00 EUR",
        ));
    given()
        .given(base())
        .when(record_paid(1, Money::new(3000, Currency::Usd)))
        .then_expect_error(CommandError::invalid("amount.currency", "must be EUR"));
    given()
        .given(base())
        .when(record_paid(9, eur(1500)))
        .then_expect_error(CommandError::NotFound(format!("participant {}", pid(9))));
    given()
        .given(with(base(), [paid(1, 2, true)]))
        .when(CampaignCommand::RecordParticipantPaid {
            participant_id: pid(1),
            payment_id: pay_id(5),
            amount: eur(3000),
            at: t(12),
        })
        .then_expect_error(conflict("record payment", "paid by another payment"));
    let left = CampaignEvent::ParticipantLeft(CampaignParticipantLeft {
        participant_id: pid(1).as_uuid(),
        new_leader: None,
        at: t(11),
    });
    given()
        .given(with(base(), [left]))
        .when(record_paid(1, eur(3000)))
        .then_expect_error(conflict("record payment", "left"));
    given()
        .given(with(
            base(),
            [CampaignEvent::Cancelled(CampaignCancelled {
                reason: "x".into(),
                at: t(11),
            })],
        ))
        .when(record_paid(1, eur(3000)))
        .then_expect_error(conflict("record payment", "cancelled"));
}

// --- DropParticipant --------------------------------------------------------------------------

fn drop_participant(n: u128) -> CampaignCommand {
    CampaignCommand::DropParticipant {
        participant_id: pid(n),
        reason: "payment failed".into(),
        at: t(11),
    }
}

#[test]
fn drop_an_unpaid_participant() {
    given()
        .given(with(active(), [joined(1, 1, 1)]))
        .when(drop_participant(1))
        .then_expect_events(vec![CampaignEvent::ParticipantDropped(
            CampaignParticipantDropped {
                participant_id: pid(1).as_uuid(),
                reason: "payment failed".into(),
                at: t(11),
            },
        )]);
}

#[test]
fn drop_rejections_and_no_op() {
    let dropped = CampaignEvent::ParticipantDropped(CampaignParticipantDropped {
        participant_id: pid(1).as_uuid(),
        reason: "payment failed".into(),
        at: t(11),
    });
    given()
        .given(with(active(), [joined(1, 1, 1), dropped]))
        .when(drop_participant(1))
        .then_expect_events(vec![]);
    given()
        .given(with(active(), [joined(1, 1, 1), paid(1, 1, true)]))
        .when(drop_participant(1))
        .then_expect_error(conflict("drop participant", "paid"));
    given()
        .given(with(active(), [joined(1, 1, 1)]))
        .when(CampaignCommand::DropParticipant {
            participant_id: pid(1),
            reason: String::new(),
            at: t(11),
        })
        .then_expect_error(CommandError::invalid("reason", "a reason is required"));
}

// --- Leave ------------------------------------------------------------------------------------

fn leave(n: u128) -> CampaignCommand {
    CampaignCommand::Leave {
        participant_id: pid(n),
        at: t(13),
    }
}

fn left(n: u128, new_leader: Option<u128>) -> CampaignEvent {
    CampaignEvent::ParticipantLeft(CampaignParticipantLeft {
        participant_id: pid(n).as_uuid(),
        new_leader: new_leader.map(|l| pid(l).as_uuid()),
        at: t(13),
    })
}

#[test]
fn when_the_leader_leaves_the_earliest_remaining_payer_leads() {
    // 3 joined first but 2 paid first: 2 is the earliest payer after the leader.
    let events = with(
        active(),
        [
            joined(1, 1, 1),
            joined(3, 3, 1),
            joined(2, 2, 1),
            paid(1, 1, true),
            paid(2, 1, false),
        ],
    );
    given()
        .given(events)
        .when(leave(1))
        .then_expect_events(vec![left(1, Some(2))]);
}

#[test]
fn an_unpaid_participant_leaves_without_leadership_change() {
    given()
        .given(with(
            active(),
            [joined(1, 1, 1), paid(1, 1, true), joined(2, 2, 1)],
        ))
        .when(leave(2))
        .then_expect_events(vec![left(2, None)]);
}

#[test]
fn leave_rejections_and_no_op() {
    given()
        .given(with(active(), [joined(1, 1, 1), left(1, None)]))
        .when(leave(1))
        .then_expect_events(vec![]);
    given()
        .given(successful_campaign())
        .when(leave(1))
        .then_expect_error(conflict("leave campaign", "confirmed"));
    given()
        .given(with(
            successful_campaign(),
            [CampaignEvent::Closed(CampaignClosed {
                paid_participants: 2,
                at: t(34),
            })],
        ))
        .when(leave(1))
        .then_expect_error(conflict("leave campaign", "closed"));
    given()
        .given(active())
        .when(leave(1))
        .then_expect_error(CommandError::NotFound(format!("participant {}", pid(1))));
}

// --- Close ------------------------------------------------------------------------------------

fn closed(paid_participants: u32, at: DateTime<Utc>) -> CampaignEvent {
    CampaignEvent::Closed(CampaignClosed {
        paid_participants,
        at,
    })
}

#[test]
fn close_a_successful_campaign_at_its_end_or_when_full() {
    given()
        .given(successful_campaign())
        .when(CampaignCommand::Close { at: t(34) })
        .then_expect_events(vec![closed(2, t(34))]);
    given()
        .given(with(
            successful_campaign(),
            [joined(3, 3, 1), paid(3, 1, false)],
        ))
        .when(CampaignCommand::Close { at: t(20) })
        .then_expect_events(vec![closed(3, t(20))]);
}

#[test]
fn close_rejections_and_no_op() {
    given()
        .given(successful_campaign())
        .when(CampaignCommand::Close { at: t(20) })
        .then_expect_error(conflict(
            "close campaign",
            &format!("open until {} with 2 of 3 places paid", t(34)),
        ));
    given()
        .given(active())
        .when(CampaignCommand::Close { at: t(34) })
        .then_expect_error(conflict("close campaign", "active"));
    given()
        .given(with(successful_campaign(), [closed(2, t(34))]))
        .when(CampaignCommand::Close { at: t(35) })
        .then_expect_events(vec![]);
}

// --- Expire -----------------------------------------------------------------------------------

#[test]
fn expire_below_the_minimum_fails() {
    given()
        .given(with(active(), [joined(1, 1, 1), paid(1, 1, true)]))
        .when(CampaignCommand::Expire { at: t(34) })
        .then_expect_events(vec![CampaignEvent::Failed(CampaignFailed {
            paid_participants: 1,
            reason: "1 of the 2 required participants paid".into(),
            at: t(34),
        })]);
}

#[test]
fn expire_with_virtual_completion_succeeds_virtually_and_closes() {
    let config = CampaignEvent::Created(CampaignCreated {
        virtual_completion_pct: 50,
        ..created_payload()
    });
    given()
        .given(vec![config, started(), joined(1, 1, 1), paid(1, 1, true)])
        .when(CampaignCommand::Expire { at: t(34) })
        .then_expect_events(vec![
            CampaignEvent::Successful(CampaignSuccessful {
                paid_participants: 1,
                is_virtual: true,
                at: t(34),
            }),
            closed(1, t(34)),
        ]);
}

#[test]
fn expire_a_successful_campaign_closes_it() {
    given()
        .given(successful_campaign())
        .when(CampaignCommand::Expire { at: t(34) })
        .then_expect_events(vec![closed(2, t(34))]);
}

#[test]
fn expire_early_is_refused_and_late_fires_are_no_ops() {
    given()
        .given(active())
        .when(CampaignCommand::Expire { at: t(33) })
        .then_expect_error(conflict(
            "expire campaign",
            &format!("open until {}", t(34)),
        ));
    given()
        .given(with(successful_campaign(), [closed(2, t(34))]))
        .when(CampaignCommand::Expire { at: t(40) })
        .then_expect_events(vec![]);
}

// --- Cancel -----------------------------------------------------------------------------------

fn cancel() -> CampaignCommand {
    CampaignCommand::Cancel {
        reason: "supplier issue".into(),
        at: t(5),
    }
}

fn cancelled() -> CampaignEvent {
    CampaignEvent::Cancelled(CampaignCancelled {
        reason: "supplier issue".into(),
        at: t(5),
    })
}

#[test]
fn cancel_a_scheduled_active_or_successful_campaign() {
    for events in [vec![created()], active(), successful_campaign()] {
        given()
            .given(events)
            .when(cancel())
            .then_expect_events(vec![cancelled()]);
    }
}

#[test]
fn cancel_rejections_and_no_op() {
    given()
        .given(with(active(), [cancelled()]))
        .when(cancel())
        .then_expect_events(vec![]);
    given()
        .given(with(successful_campaign(), [closed(2, t(34))]))
        .when(cancel())
        .then_expect_error(conflict("cancel campaign", "closed"));
    given()
        .given(active())
        .when(CampaignCommand::Cancel {
            reason: " ".into(),
            at: t(5),
        })
        .then_expect_error(CommandError::invalid("reason", "a reason is required"));
}

// --- RecordParticipantOrdered / RecordParticipantRefunded ------------------------------------

fn order_id(n: u128) -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(300 + n))
}

#[test]
fn record_ordered_after_closing() {
    let command = CampaignCommand::RecordParticipantOrdered {
        participant_id: pid(1),
        order_id: order_id(1),
        at: t(35),
    };
    let event = CampaignEvent::ParticipantOrdered(CampaignParticipantOrdered {
        participant_id: pid(1).as_uuid(),
        order_id: order_id(1).as_uuid(),
        at: t(35),
    });
    let closed_campaign = with(successful_campaign(), [closed(2, t(34))]);
    given()
        .given(closed_campaign.clone())
        .when(command.clone())
        .then_expect_events(vec![event.clone()]);
    given()
        .given(with(closed_campaign.clone(), [event]))
        .when(command.clone())
        .then_expect_events(vec![]);
    given()
        .given(successful_campaign())
        .when(command)
        .then_expect_error(conflict("record order", "successful"));
}

#[test]
fn record_refunded_in_a_failed_campaign_or_after_leaving_paid() {
    let refund = |n| CampaignCommand::RecordParticipantRefunded {
        participant_id: pid(n),
        payment_id: None,
        at: t(40),
    };
    let refunded = |n| {
        CampaignEvent::ParticipantRefunded(CampaignParticipantRefunded {
            participant_id: pid(n).as_uuid(),
            payment_id: Some(pay_id(n).as_uuid()),
            at: t(40),
        })
    };
    let failed = CampaignEvent::Failed(CampaignFailed {
        paid_participants: 1,
        reason: "x".into(),
        at: t(34),
    });
    let failed_campaign = with(active(), [joined(1, 1, 1), paid(1, 1, true), failed]);
    given()
        .given(failed_campaign.clone())
        .when(refund(1))
        .then_expect_events(vec![refunded(1)]);
    given()
        .given(with(failed_campaign, [refunded(1)]))
        .when(refund(1))
        .then_expect_events(vec![]);
    given()
        .given(with(
            active(),
            [joined(1, 1, 1), paid(1, 1, true), left(1, None)],
        ))
        .when(refund(1))
        .then_expect_events(vec![refunded(1)]);
    given()
        .given(successful_campaign())
        .when(refund(1))
        .then_expect_error(conflict(
            "refund participant",
            "participant paid in a successful campaign",
        ));
}

// --- Fold -------------------------------------------------------------------------------------

#[test]
fn the_fold_exposes_what_the_sagas_need() {
    let campaign: Campaign = fold(with(
        successful_campaign(),
        [joined(3, 3, 1), left(1, Some(2))],
    ));
    assert_eq!(campaign.status(), CampaignStatus::Successful);
    assert_eq!(campaign.status().as_str(), "successful");
    assert_eq!(campaign.paid_count(), 1);
    assert_eq!(campaign.occupied_places(), 2);
    assert_eq!(campaign.leader(), Some(pid(2)));
    assert!(campaign.is_leader(pid(2)));
    let third = campaign.participant(pid(3)).expect("joined");
    assert_eq!(third.state(), ParticipantState::Joined);
    assert_eq!(third.amount(), &commerce_contracts::Money::from(eur(1500)));
    assert_eq!(third.customer_id(), "customer-3");
    assert_eq!(
        campaign
            .participant(pid(2))
            .and_then(Participant::payment_id),
        Some(pay_id(2))
    );
    assert_eq!(campaign.config().map(|c| c.min_participants), Some(2));
    assert_eq!(stream_key(campaign_id()), campaign_id().to_string());
}

// --- Participant index -----------------------------------------------------------------------

#[test]
fn the_participant_index_survives_a_snapshot_round_trip_and_keeps_the_counts() {
    // Given a campaign with paid, dropped and waiting participants, two of them one customer's
    let history = || {
        let dropped = CampaignEvent::ParticipantDropped(CampaignParticipantDropped {
            participant_id: pid(2).as_uuid(),
            reason: "payment failed".into(),
            at: t(11),
        });
        with(
            active(),
            [
                joined(1, 1, 1),
                paid(1, 1, true),
                joined(2, 2, 1),
                dropped,
                joined(3, 2, 1),
            ],
        )
    };
    let campaign: Campaign = fold(history());
    // When it is stored as a snapshot and read back
    let stored = serde_json::to_value(&campaign).expect("serialisable");
    assert!(stored.get("index").is_none(), "the index is never stored");
    let restored: Campaign = serde_json::from_value(stored).expect("deserialisable");
    // Then the lookups and counts agree with the participants, before and after
    for state in [&campaign, &restored] {
        assert_eq!(state.occupied_places(), 2);
        assert_eq!(state.paid_count(), 1);
        assert_eq!(
            state.participant(pid(3)).map(Participant::customer_id),
            Some(customer(2).as_str())
        );
        let of_customer_2: Vec<ParticipantId> = state
            .participations_of(customer(2).as_str())
            .map(Participant::id)
            .collect();
        assert_eq!(of_customer_2, vec![pid(2), pid(3)]);
        assert!(state.participant(pid(9)).is_none());
    }
    // And a join is decided on the index: customer 2's second participation awaits payment
    given()
        .given(history())
        .when(join(5, 2, 1))
        .then_expect_error(CommandError::LimitReached(
            "the customer already has a participation awaiting payment".into(),
        ));
}
