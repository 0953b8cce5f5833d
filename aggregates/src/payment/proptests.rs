//! Property tests of the Payment invariants (commerce anchors §6): random command sequences are
//! run through the real handler, and after every step the folded state is checked.
//!
//! - PAY-1 `0 ≤ captured (+ voided) ≤ authorized ≤ amount`.
//! - PAY-2 `0 ≤ refunded + refund_pending (+ charged_back) ≤ captured`.
//! - PAY-3 `voided = authorized − captured` once voided or expired; no capture after a void.
//! - PAY-5 a seen refund id or provider event id appends nothing (the aggregate's share of
//!   idempotency; request keys are the event store's).
//! - PAY-6 any permutation with duplicates of one consistent provider history converges.
//! - PAY-7 every amount of every event is in the payment's currency.
//! - PAY-8 amounts are non-negative integers; overflow-sized inputs are refused, never wrap.
//! - PAY-9 nothing is appended to a terminal payment.
//!
//! Refused commands must append nothing and leave the state untouched.

use commerce_contracts::Money as WireMoney;
use commerce_contracts::events::{CapturePolicy, PaymentEvent, PaymentPurpose};
use commerce_domain::{Currency, CustomerId, Money, PaymentId};
use proptest::prelude::*;
use uuid::Uuid;

use super::{
    CreatePayment, Payment, PaymentCommand, PaymentStatus, ProviderEvent, ProviderEventKind,
};
use crate::testkit::{at_minute as t, execute, fold, runtime};

fn create(amount: i64, policy: CapturePolicy) -> PaymentCommand {
    PaymentCommand::Create(CreatePayment {
        payment_id: PaymentId::from_uuid(Uuid::from_u128(1)),
        purpose: PaymentPurpose::Order {
            order_id: Uuid::from_u128(2),
        },
        customer: CustomerId::new("cus_1").expect("valid customer"),
        amount: Money::new(amount, Currency::Eur),
        method: "pm_card_ok".to_owned(),
        provider: "sandbox".to_owned(),
        capture_policy: policy,
        at: t(0),
    })
}

fn any_money() -> impl Strategy<Value = Money> {
    prop_oneof![
        6 => (1_i64..=12_000).prop_map(|minor| Money::new(minor, Currency::Eur)),
        1 => prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(0_i64), Just(-1_i64)]
            .prop_map(|minor| Money::new(minor, Currency::Eur)),
        1 => (1_i64..=12_000).prop_map(|minor| Money::new(minor, Currency::Usd)),
    ]
}

fn any_kind() -> impl Strategy<Value = ProviderEventKind> {
    let refund = (0_u128..4).prop_map(Uuid::from_u128);
    prop_oneof![
        Just(ProviderEventKind::RequiresAction),
        (0_i64..120).prop_map(|m| ProviderEventKind::Authorized {
            auth_expires_at: t(m)
        }),
        Just(ProviderEventKind::Captured),
        Just(ProviderEventKind::Succeeded),
        Just(ProviderEventKind::Failed {
            reason: "declined".to_owned()
        }),
        refund
            .clone()
            .prop_map(|refund_id| ProviderEventKind::RefundSucceeded { refund_id }),
        refund.prop_map(|refund_id| ProviderEventKind::RefundFailed {
            refund_id,
            reason: "closed".to_owned()
        }),
    ]
}

fn any_command() -> impl Strategy<Value = PaymentCommand> {
    let at = (0_i64..120).prop_map(t);
    let refund = (0_u128..4).prop_map(Uuid::from_u128);
    prop_oneof![
        1 => at.clone().prop_map(|at| PaymentCommand::RecordRequiresAction {
            provider_ref: "pi".to_owned(),
            at
        }),
        1 => (any_money(), 0_i64..120, 0_i64..120).prop_map(|(amount, expires, at)| {
            PaymentCommand::RecordAuthorization {
                amount,
                provider_ref: "pi".to_owned(),
                auth_expires_at: t(expires),
                at: t(at),
            }
        }),
        3 => (any_money(), at.clone())
            .prop_map(|(amount, at)| PaymentCommand::RecordCapture { amount, at }),
        1 => at.clone().prop_map(|at| PaymentCommand::RecordCharge {
            provider_ref: "pi".to_owned(),
            at
        }),
        1 => at.clone().prop_map(|at| PaymentCommand::RecordFailure {
            reason: "declined".to_owned(),
            provider_ref: None,
            at
        }),
        1 => at.clone().prop_map(|at| PaymentCommand::Void {
            reason: "canceled".to_owned(),
            at
        }),
        1 => at.clone()
            .prop_map(|at| PaymentCommand::ExpireAuthorization { at }),
        3 => (refund.clone(), any_money(), at.clone()).prop_map(|(refund_id, amount, at)| {
            PaymentCommand::RequestRefund {
                refund_id,
                amount,
                reason: "return".to_owned(),
                at,
            }
        }),
        2 => (refund.clone(), at.clone())
            .prop_map(|(refund_id, at)| PaymentCommand::RecordRefundSettled { refund_id, at }),
        1 => (refund, at.clone()).prop_map(|(refund_id, at)| PaymentCommand::RecordRefundFailed {
            refund_id,
            reason: "closed".to_owned(),
            at
        }),
        1 => (any_money(), at.clone()).prop_map(|(amount, at)| PaymentCommand::RecordChargeback {
            amount,
            reason: "fraud".to_owned(),
            at
        }),
        4 => (0_u8..6, any_kind(), proptest::option::of(any_money()), at).prop_map(
            |(id, kind, amount, at)| PaymentCommand::ApplyProviderEvent(ProviderEvent {
                provider_event_id: format!("evt_{id}"),
                kind,
                amount,
                provider_ref: Some("pi".to_owned()),
                at,
            })
        ),
    ]
}

fn event_amounts(event: &PaymentEvent) -> Vec<&WireMoney> {
    match event {
        PaymentEvent::Created(e) => vec![&e.amount],
        PaymentEvent::Authorized(e) => vec![&e.amount],
        PaymentEvent::Captured(e) => vec![&e.amount, &e.total_captured],
        PaymentEvent::Succeeded(e) => vec![&e.amount],
        PaymentEvent::Voided(e) => vec![&e.released],
        PaymentEvent::Expired(e) => vec![&e.released],
        PaymentEvent::RefundRequested(e) => vec![&e.amount],
        PaymentEvent::Refunded(e) => vec![&e.amount, &e.total_refunded],
        PaymentEvent::RefundFailed(e) => vec![&e.amount],
        PaymentEvent::ChargedBack(e) => vec![&e.amount],
        PaymentEvent::RequiresAction(_)
        | PaymentEvent::Failed(_)
        | PaymentEvent::ProviderEventRecorded(_) => vec![],
    }
}

fn check_ledger(payment: &Payment) -> Result<(), TestCaseError> {
    // PAY-1
    prop_assert!(0 <= payment.captured);
    prop_assert!(payment.captured <= payment.authorized);
    prop_assert!(payment.authorized <= payment.amount);
    prop_assert!(payment.captured + payment.voided <= payment.authorized);
    // PAY-2
    prop_assert!(0 <= payment.refunded && 0 <= payment.refund_pending);
    prop_assert!(0 <= payment.charged_back);
    prop_assert!(
        payment.refunded + payment.refund_pending + payment.charged_back <= payment.captured
    );
    // PAY-3
    if matches!(
        payment.status(),
        Some(PaymentStatus::Voided | PaymentStatus::Expired)
    ) {
        prop_assert_eq!(payment.voided, payment.authorized - payment.captured);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_after_every_command(
        amount in 1_i64..=10_000,
        automatic in any::<bool>(),
        commands in proptest::collection::vec(any_command(), 0..40),
    ) {
        let rt = runtime();
        let policy = if automatic { CapturePolicy::Automatic } else { CapturePolicy::Manual };
        let mut payment = Payment::default();
        let mut log = execute(&rt, &(), &mut payment, create(amount, policy)).expect("created");
        for command in commands {
            let before = payment.clone();
            let seen_refund = matches!(&command,
                PaymentCommand::RequestRefund { refund_id, .. } if before.refunds.contains_key(refund_id));
            let seen_webhook = matches!(&command,
                PaymentCommand::ApplyProviderEvent(event)
                    if before.provider_events.contains(&event.provider_event_id));
            let Ok(events) = execute(&rt, &(), &mut payment, command) else { continue };
            // PAY-5
            if seen_refund || seen_webhook {
                prop_assert!(events.is_empty(), "a repeated id appended {:?}", events);
            }
            // PAY-9
            if before.status().is_some_and(PaymentStatus::is_terminal) {
                prop_assert!(events.is_empty(), "a terminal payment took {:?}", events);
            }
            // PAY-3: nothing is captured once the rest of the authorization was released.
            if before.voided > 0 {
                prop_assert!(!events.iter().any(|e| matches!(e, PaymentEvent::Captured(_))));
            }
            for event in &events {
                for money in event_amounts(event) {
                    prop_assert_eq!(money.currency.as_str(), "EUR"); // PAY-7
                    prop_assert!(money.amount_minor >= 0); // PAY-8
                }
            }
            check_ledger(&payment)?;
            log.extend(events);
        }
        // Replaying the log folds to the same state.
        prop_assert_eq!(fold::<Payment>(log), payment);
    }
}

/// One provider history a real gateway could send, in causal order.
fn consistent_history() -> impl Strategy<Value = (i64, Vec<ProviderEvent>)> {
    (
        1_i64..=10_000,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(any::<u64>(), 0..3),
        any::<u64>(),
    )
        .prop_map(
            |(amount, requires_action, success, with_auth, succeeded, raw_captures, raw_auth)| {
                let mut kinds: Vec<(ProviderEventKind, Option<i64>)> = Vec::new();
                if requires_action {
                    kinds.push((ProviderEventKind::RequiresAction, None));
                }
                if success {
                    let mut captures: Vec<i64> = raw_captures
                        .iter()
                        .map(|raw| 1 + (*raw % 10_000) as i64 % amount)
                        .collect();
                    captures.sort_unstable();
                    captures.dedup();
                    let floor = captures.last().copied().unwrap_or(1);
                    let auth = if succeeded {
                        amount
                    } else {
                        floor + (raw_auth % 10_000) as i64 % (amount - floor + 1)
                    };
                    if with_auth || captures.is_empty() && !succeeded {
                        kinds.push((
                            ProviderEventKind::Authorized {
                                auth_expires_at: t(100),
                            },
                            Some(auth),
                        ));
                    }
                    for capture in captures {
                        kinds.push((ProviderEventKind::Captured, Some(capture)));
                    }
                    if succeeded {
                        kinds.push((ProviderEventKind::Succeeded, None));
                    }
                } else {
                    kinds.push((
                        ProviderEventKind::Failed {
                            reason: "declined".to_owned(),
                        },
                        None,
                    ));
                }
                let events = kinds
                    .into_iter()
                    .enumerate()
                    .map(|(i, (kind, amount))| ProviderEvent {
                        provider_event_id: format!("evt_{i}"),
                        kind,
                        amount: amount.map(|minor| Money::new(minor, Currency::Eur)),
                        provider_ref: Some("pi".to_owned()),
                        at: t(i64::try_from(i).expect("few events")),
                    })
                    .collect();
                (amount, events)
            },
        )
}

/// The part of the state a provider history decides (timestamps and the dedupe set aside).
fn ledger(payment: &Payment) -> (Option<PaymentStatus>, [i64; 6], bool) {
    (
        payment.status(),
        [
            payment.authorized,
            payment.captured,
            payment.voided,
            payment.refunded,
            payment.refund_pending,
            payment.charged_back,
        ],
        payment.succeeded,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_permutation_of_provider_events_converges(
        (amount, history) in consistent_history(),
        duplicates in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        keys in proptest::collection::vec(any::<u64>(), 12),
    ) {
        let rt = runtime();
        let mut causal = Payment::default();
        execute(&rt, &(), &mut causal, create(amount, CapturePolicy::Manual)).expect("created");
        for event in &history {
            execute(&rt, &(), &mut causal, PaymentCommand::ApplyProviderEvent(event.clone()))
                .expect("a consistent webhook applies");
        }

        let mut delivered: Vec<ProviderEvent> = history.clone();
        delivered.extend(duplicates.iter().map(|index| index.get(&history).clone()));
        let mut keyed: Vec<(u64, ProviderEvent)> = keys.into_iter().zip(delivered).collect();
        keyed.sort_by_key(|(key, _)| *key);

        let mut shuffled = Payment::default();
        execute(&rt, &(), &mut shuffled, create(amount, CapturePolicy::Manual)).expect("created");
        for (_, event) in keyed {
            execute(&rt, &(), &mut shuffled, PaymentCommand::ApplyProviderEvent(event))
                .expect("a redelivered webhook applies");
            check_ledger(&shuffled)?;
        }
        prop_assert_eq!(ledger(&shuffled), ledger(&causal));
    }
}
