//! Given/when/then tests of every Payment command and rejection.

use chrono::{DateTime, Duration, Utc};
use commerce_contracts::events::{
    CapturePolicy, PaymentAuthorized, PaymentCaptured, PaymentChargedBack, PaymentCreated,
    PaymentEvent, PaymentExpired, PaymentFailed, PaymentProviderEventRecorded, PaymentPurpose,
    PaymentRefundFailed, PaymentRefundRequested, PaymentRefunded, PaymentRequiresAction,
    PaymentSucceeded, PaymentVoided,
};
use commerce_domain::{Currency, CustomerId, Money, PaymentId};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::{
    CreatePayment, Payment, PaymentCommand, PaymentStatus, ProviderEvent, ProviderEventKind,
};
use crate::CommandError;
use crate::testkit::{at_minute as t, eur, fold, wire_eur as w};

type Framework = TestFramework<Payment>;

const AMOUNT: i64 = 10_000;

fn expires() -> DateTime<Utc> {
    t(60)
}

fn payment_id() -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(7))
}

fn refund_id() -> Uuid {
    Uuid::from_u128(9)
}

fn purpose() -> PaymentPurpose {
    PaymentPurpose::Order {
        order_id: Uuid::from_u128(1),
    }
}

fn create(policy: CapturePolicy) -> CreatePayment {
    CreatePayment {
        payment_id: payment_id(),
        purpose: purpose(),
        customer: CustomerId::new("cus_1").expect("valid customer"),
        amount: eur(AMOUNT),
        method: "pm_card_ok".to_owned(),
        provider: "sandbox".to_owned(),
        capture_policy: policy,
        at: t(0),
    }
}

fn created_with(policy: CapturePolicy) -> PaymentEvent {
    PaymentEvent::Created(PaymentCreated {
        payment_id: payment_id().as_uuid(),
        purpose: purpose(),
        customer_id: "cus_1".to_owned(),
        amount: w(AMOUNT),
        method: "pm_card_ok".to_owned(),
        provider: "sandbox".to_owned(),
        capture_policy: policy,
        created_at: t(0),
    })
}

fn created() -> PaymentEvent {
    created_with(CapturePolicy::Manual)
}

fn requires_action() -> PaymentEvent {
    PaymentEvent::RequiresAction(PaymentRequiresAction {
        provider_ref: "pi_1".to_owned(),
        at: t(1),
    })
}

fn authorized(minor: i64) -> PaymentEvent {
    PaymentEvent::Authorized(PaymentAuthorized {
        amount: w(minor),
        provider_ref: "pi_1".to_owned(),
        auth_expires_at: expires(),
        at: t(1),
    })
}

fn captured(minor: i64, total: i64) -> PaymentEvent {
    PaymentEvent::Captured(PaymentCaptured {
        amount: w(minor),
        total_captured: w(total),
        at: t(2),
    })
}

fn succeeded() -> PaymentEvent {
    PaymentEvent::Succeeded(PaymentSucceeded {
        amount: w(AMOUNT),
        at: t(2),
    })
}

fn voided(released: i64) -> PaymentEvent {
    PaymentEvent::Voided(PaymentVoided {
        released: w(released),
        reason: "order canceled".to_owned(),
        at: t(3),
    })
}

fn failed() -> PaymentEvent {
    PaymentEvent::Failed(PaymentFailed {
        reason: "card declined".to_owned(),
        provider_ref: None,
        at: t(1),
    })
}

fn refund_requested(minor: i64) -> PaymentEvent {
    PaymentEvent::RefundRequested(PaymentRefundRequested {
        refund_id: refund_id(),
        amount: w(minor),
        reason: "return".to_owned(),
        at: t(4),
    })
}

fn refunded(minor: i64, total: i64) -> PaymentEvent {
    PaymentEvent::Refunded(PaymentRefunded {
        refund_id: refund_id(),
        amount: w(minor),
        total_refunded: w(total),
        at: t(5),
    })
}

fn refund_failed(minor: i64) -> PaymentEvent {
    PaymentEvent::RefundFailed(PaymentRefundFailed {
        refund_id: refund_id(),
        amount: w(minor),
        reason: "closed account".to_owned(),
        at: t(5),
    })
}

fn recorded(id: &str, kind: &str, minute: i64) -> PaymentEvent {
    PaymentEvent::ProviderEventRecorded(PaymentProviderEventRecorded {
        provider_event_id: id.to_owned(),
        kind: kind.to_owned(),
        at: t(minute),
    })
}

/// A fully captured manual payment.
fn captured_history() -> Vec<PaymentEvent> {
    vec![
        created(),
        authorized(AMOUNT),
        captured(AMOUNT, AMOUNT),
        succeeded(),
    ]
}

fn authorize(minor: i64) -> PaymentCommand {
    PaymentCommand::RecordAuthorization {
        amount: eur(minor),
        provider_ref: "pi_1".to_owned(),
        auth_expires_at: expires(),
        at: t(1),
    }
}

fn capture(minor: i64) -> PaymentCommand {
    PaymentCommand::RecordCapture {
        amount: eur(minor),
        at: t(2),
    }
}

fn void() -> PaymentCommand {
    PaymentCommand::Void {
        reason: "order canceled".to_owned(),
        at: t(3),
    }
}

fn fail() -> PaymentCommand {
    PaymentCommand::RecordFailure {
        reason: "card declined".to_owned(),
        provider_ref: None,
        at: t(1),
    }
}

fn request_refund(minor: i64) -> PaymentCommand {
    PaymentCommand::RequestRefund {
        refund_id: refund_id(),
        amount: eur(minor),
        reason: "return".to_owned(),
        at: t(4),
    }
}

fn chargeback(minor: i64) -> PaymentCommand {
    PaymentCommand::RecordChargeback {
        amount: eur(minor),
        reason: "fraud".to_owned(),
        at: t(6),
    }
}

fn provider(id: &str, kind: ProviderEventKind, amount: Option<i64>, minute: i64) -> PaymentCommand {
    PaymentCommand::ApplyProviderEvent(ProviderEvent {
        provider_event_id: id.to_owned(),
        kind,
        amount: amount.map(eur),
        provider_ref: Some("pi_1".to_owned()),
        at: t(minute),
    })
}

// --- Create ---

#[test]
fn create_opens_a_payment() {
    Framework::with(())
        .given_no_previous_events()
        .when(PaymentCommand::Create(create(CapturePolicy::Manual)))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_twice_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(PaymentCommand::Create(create(CapturePolicy::Manual)))
        .then_expect_error(CommandError::AlreadyExists(format!(
            "payment {}",
            payment_id()
        )));
}

#[test]
fn create_with_zero_or_negative_amount_is_refused() {
    for minor in [0, -1] {
        let mut command = create(CapturePolicy::Manual);
        command.amount = eur(minor);
        Framework::with(())
            .given_no_previous_events()
            .when(PaymentCommand::Create(command))
            .then_expect_error(CommandError::invalid("amount", "must be greater than zero"));
    }
}

#[test]
fn create_without_method_is_refused() {
    let mut command = create(CapturePolicy::Manual);
    command.method = String::new();
    Framework::with(())
        .given_no_previous_events()
        .when(PaymentCommand::Create(command))
        .then_expect_error(CommandError::invalid("method", "must not be empty"));
}

#[test]
fn commands_on_a_missing_payment_are_not_found() {
    Framework::with(())
        .given_no_previous_events()
        .when(capture(1))
        .then_expect_error(CommandError::NotFound("payment".to_owned()));
}

// --- RequiresAction ---

#[test]
fn requires_action_waits_for_the_customer() {
    Framework::with(())
        .given(vec![created()])
        .when(PaymentCommand::RecordRequiresAction {
            provider_ref: "pi_1".to_owned(),
            at: t(1),
        })
        .then_expect_events(vec![requires_action()]);
}

#[test]
fn requires_action_again_is_a_no_op() {
    Framework::with(())
        .given(vec![created(), requires_action()])
        .when(PaymentCommand::RecordRequiresAction {
            provider_ref: "pi_1".to_owned(),
            at: t(2),
        })
        .then_expect_events(vec![]);
}

#[test]
fn requires_action_after_authorization_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(PaymentCommand::RecordRequiresAction {
            provider_ref: "pi_1".to_owned(),
            at: t(2),
        })
        .then_expect_error(CommandError::invalid_state(
            "record requires_action",
            "authorized",
        ));
}

// --- Authorization ---

#[test]
fn authorization_holds_funds() {
    Framework::with(())
        .given(vec![created(), requires_action()])
        .when(authorize(AMOUNT))
        .then_expect_events(vec![authorized(AMOUNT)]);
}

#[test]
fn authorization_above_the_amount_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(authorize(AMOUNT + 1))
        .then_expect_error(CommandError::invalid(
            "amount",
            "exceeds the payment amount",
        ));
}

#[test]
fn authorization_in_another_currency_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(PaymentCommand::RecordAuthorization {
            amount: Money::new(AMOUNT, Currency::Usd),
            provider_ref: "pi_1".to_owned(),
            auth_expires_at: expires(),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "amount",
            "currency must be EUR, the payment's currency",
        ));
}

#[test]
fn authorization_expiring_before_it_happens_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(PaymentCommand::RecordAuthorization {
            amount: eur(AMOUNT),
            provider_ref: "pi_1".to_owned(),
            auth_expires_at: t(1),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "auth_expires_at",
            "must be after the authorization time",
        ));
}

#[test]
fn repeated_authorization_is_a_no_op_and_a_different_one_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(authorize(AMOUNT))
        .then_expect_events(vec![]);
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(authorize(AMOUNT - 1))
        .then_expect_error(CommandError::invalid_state(
            "authorize payment",
            "authorized",
        ));
}

// --- Capture ---

#[test]
fn partial_capture_then_full_capture_succeeds() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(capture(4_000))
        .then_expect_events(vec![captured(4_000, 4_000)]);
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT), captured(4_000, 4_000)])
        .when(capture(6_000))
        .then_expect_events(vec![captured(6_000, AMOUNT), succeeded()]);
}

#[test]
fn capture_beyond_the_authorization_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(5_000)])
        .when(capture(5_001))
        .then_expect_error(CommandError::invalid(
            "amount",
            "exceeds the capturable amount",
        ));
}

#[test]
fn capture_without_authorization_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(capture(1))
        .then_expect_error(CommandError::invalid_state("capture payment", "created"));
}

#[test]
fn capture_after_the_authorization_expired_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(PaymentCommand::RecordCapture {
            amount: eur(1),
            at: expires(),
        })
        .then_expect_error(CommandError::invalid_state(
            "capture payment",
            "the authorization expired",
        ));
}

#[test]
fn capture_of_an_overflowing_amount_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT), captured(1, 1)])
        .when(capture(i64::MAX))
        .then_expect_error(CommandError::invalid(
            "amount",
            "exceeds the capturable amount",
        ));
}

// --- Charge ---

#[test]
fn charge_authorizes_captures_and_succeeds_at_once() {
    let at = t(1);
    Framework::with(())
        .given(vec![created_with(CapturePolicy::Automatic)])
        .when(PaymentCommand::RecordCharge {
            provider_ref: "pi_1".to_owned(),
            at,
        })
        .then_expect_events(vec![
            PaymentEvent::Authorized(PaymentAuthorized {
                amount: w(AMOUNT),
                provider_ref: "pi_1".to_owned(),
                auth_expires_at: at,
                at,
            }),
            PaymentEvent::Captured(PaymentCaptured {
                amount: w(AMOUNT),
                total_captured: w(AMOUNT),
                at,
            }),
            PaymentEvent::Succeeded(PaymentSucceeded {
                amount: w(AMOUNT),
                at,
            }),
        ]);
}

#[test]
fn charge_of_a_manual_payment_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(PaymentCommand::RecordCharge {
            provider_ref: "pi_1".to_owned(),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid_state(
            "charge payment",
            "the capture policy is manual",
        ));
}

#[test]
fn charge_again_is_a_no_op() {
    let mut history = captured_history();
    history[0] = created_with(CapturePolicy::Automatic);
    Framework::with(())
        .given(history)
        .when(PaymentCommand::RecordCharge {
            provider_ref: "pi_1".to_owned(),
            at: t(3),
        })
        .then_expect_events(vec![]);
}

// --- Failure ---

#[test]
fn failure_is_terminal() {
    Framework::with(())
        .given(vec![created()])
        .when(fail())
        .then_expect_events(vec![failed()]);
    let payment = fold::<Payment>(vec![created(), failed()]);
    assert_eq!(payment.status(), Some(PaymentStatus::Failed));
}

#[test]
fn failure_again_is_a_no_op() {
    Framework::with(())
        .given(vec![created(), failed()])
        .when(fail())
        .then_expect_events(vec![]);
}

#[test]
fn failure_after_authorization_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(fail())
        .then_expect_error(CommandError::invalid_state("fail payment", "authorized"));
}

#[test]
fn a_failed_payment_absorbs_everything_else() {
    Framework::with(())
        .given(vec![created(), failed()])
        .when(authorize(AMOUNT))
        .then_expect_error(CommandError::invalid_state("authorize payment", "failed"));
}

// --- Void ---

#[test]
fn void_releases_the_whole_authorization() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(void())
        .then_expect_events(vec![voided(AMOUNT)]);
    let payment = fold::<Payment>(vec![created(), authorized(AMOUNT), voided(AMOUNT)]);
    assert_eq!(payment.status(), Some(PaymentStatus::Voided));
}

#[test]
fn void_after_partial_capture_releases_the_rest_and_keeps_the_capture() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT), captured(3_000, 3_000)])
        .when(void())
        .then_expect_events(vec![voided(7_000)]);
    let payment = fold::<Payment>(vec![
        created(),
        authorized(AMOUNT),
        captured(3_000, 3_000),
        voided(7_000),
    ]);
    assert_eq!(payment.status(), Some(PaymentStatus::Captured));
    assert_eq!(payment.voided(), Some(eur(7_000)));
}

#[test]
fn void_of_an_unauthorized_intent_abandons_it() {
    Framework::with(())
        .given(vec![created()])
        .when(void())
        .then_expect_events(vec![voided(0)]);
}

#[test]
fn void_again_is_a_no_op() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT), voided(AMOUNT)])
        .when(void())
        .then_expect_events(vec![]);
}

#[test]
fn void_of_a_fully_captured_payment_is_refused() {
    Framework::with(())
        .given(captured_history())
        .when(void())
        .then_expect_error(CommandError::invalid_state("void payment", "captured"));
}

// --- Expiry ---

#[test]
fn expiry_releases_an_uncaptured_authorization() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(PaymentCommand::ExpireAuthorization { at: expires() })
        .then_expect_events(vec![PaymentEvent::Expired(PaymentExpired {
            released: w(AMOUNT),
            at: expires(),
        })]);
}

#[test]
fn expiry_before_the_deadline_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(PaymentCommand::ExpireAuthorization { at: t(2) })
        .then_expect_error(CommandError::invalid_state(
            "expire authorization",
            "the authorization is not due yet",
        ));
}

#[test]
fn expiry_after_a_capture_or_a_void_is_a_no_op() {
    Framework::with(())
        .given(captured_history())
        .when(PaymentCommand::ExpireAuthorization { at: expires() })
        .then_expect_events(vec![]);
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT), voided(AMOUNT)])
        .when(PaymentCommand::ExpireAuthorization { at: expires() })
        .then_expect_events(vec![]);
}

#[test]
fn expiry_without_authorization_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(PaymentCommand::ExpireAuthorization { at: expires() })
        .then_expect_error(CommandError::invalid_state(
            "expire authorization",
            "created",
        ));
}

// --- Refunds ---

#[test]
fn refund_request_counts_as_pending() {
    Framework::with(())
        .given(captured_history())
        .when(request_refund(2_500))
        .then_expect_events(vec![refund_requested(2_500)]);
    let mut history = captured_history();
    history.push(refund_requested(2_500));
    assert_eq!(fold::<Payment>(history).refund_pending(), Some(eur(2_500)));
}

#[test]
fn refund_request_beyond_the_refundable_amount_is_refused() {
    let mut history = captured_history();
    history.push(PaymentEvent::RefundRequested(PaymentRefundRequested {
        refund_id: Uuid::from_u128(99),
        amount: w(8_000),
        reason: "return".to_owned(),
        at: t(4),
    }));
    Framework::with(())
        .given(history)
        .when(request_refund(2_001))
        .then_expect_error(CommandError::invalid(
            "amount",
            "exceeds the refundable amount",
        ));
}

#[test]
fn refund_request_before_capture_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(request_refund(1))
        .then_expect_error(CommandError::invalid_state("refund payment", "authorized"));
}

#[test]
fn refund_request_in_another_currency_is_refused() {
    Framework::with(())
        .given(captured_history())
        .when(PaymentCommand::RequestRefund {
            refund_id: refund_id(),
            amount: Money::new(1, Currency::Jpy),
            reason: "return".to_owned(),
            at: t(4),
        })
        .then_expect_error(CommandError::invalid(
            "amount",
            "currency must be EUR, the payment's currency",
        ));
}

#[test]
fn repeated_refund_id_is_a_no_op_even_when_fully_refunded() {
    let mut history = captured_history();
    history.push(refund_requested(AMOUNT));
    Framework::with(())
        .given(history.clone())
        .when(request_refund(AMOUNT))
        .then_expect_events(vec![]);
    history.push(refunded(AMOUNT, AMOUNT));
    Framework::with(())
        .given(history)
        .when(request_refund(AMOUNT))
        .then_expect_events(vec![]);
}

#[test]
fn repeated_refund_id_with_another_amount_is_refused() {
    let mut history = captured_history();
    history.push(refund_requested(1_000));
    Framework::with(())
        .given(history)
        .when(request_refund(2_000))
        .then_expect_error(CommandError::invalid(
            "refund_id",
            "already names a refund of 1000 minor units",
        ));
}

#[test]
fn refund_settles_and_a_full_refund_is_terminal() {
    let mut history = captured_history();
    history.push(refund_requested(AMOUNT));
    Framework::with(())
        .given(history.clone())
        .when(PaymentCommand::RecordRefundSettled {
            refund_id: refund_id(),
            at: t(5),
        })
        .then_expect_events(vec![refunded(AMOUNT, AMOUNT)]);
    history.push(refunded(AMOUNT, AMOUNT));
    assert_eq!(
        fold::<Payment>(history.clone()).status(),
        Some(PaymentStatus::Refunded)
    );
    Framework::with(())
        .given(history)
        .when(chargeback(1))
        .then_expect_error(CommandError::invalid_state("record chargeback", "refunded"));
}

#[test]
fn partial_refund_is_partially_refunded() {
    let mut history = captured_history();
    history.extend([refund_requested(1_000), refunded(1_000, 1_000)]);
    let payment = fold::<Payment>(history);
    assert_eq!(payment.status(), Some(PaymentStatus::PartiallyRefunded));
    assert_eq!(payment.refunded(), Some(eur(1_000)));
    assert_eq!(payment.refund_pending(), Some(eur(0)));
}

#[test]
fn settling_a_settled_refund_is_a_no_op_and_an_unknown_one_not_found() {
    let mut history = captured_history();
    history.extend([refund_requested(1_000), refunded(1_000, 1_000)]);
    Framework::with(())
        .given(history.clone())
        .when(PaymentCommand::RecordRefundSettled {
            refund_id: refund_id(),
            at: t(6),
        })
        .then_expect_events(vec![]);
    let unknown = Uuid::from_u128(123);
    Framework::with(())
        .given(history)
        .when(PaymentCommand::RecordRefundSettled {
            refund_id: unknown,
            at: t(6),
        })
        .then_expect_error(CommandError::NotFound(format!("refund {unknown}")));
}

#[test]
fn refund_failure_frees_the_pending_amount() {
    let mut history = captured_history();
    history.push(refund_requested(1_000));
    Framework::with(())
        .given(history.clone())
        .when(PaymentCommand::RecordRefundFailed {
            refund_id: refund_id(),
            reason: "closed account".to_owned(),
            at: t(5),
        })
        .then_expect_events(vec![refund_failed(1_000)]);
    history.push(refund_failed(1_000));
    assert_eq!(
        fold::<Payment>(history.clone()).refund_pending(),
        Some(eur(0))
    );
    Framework::with(())
        .given(history)
        .when(PaymentCommand::RecordRefundSettled {
            refund_id: refund_id(),
            at: t(6),
        })
        .then_expect_error(CommandError::invalid_state(
            "settle refund",
            "the refund failed",
        ));
}

#[test]
fn failing_a_settled_refund_is_refused() {
    let mut history = captured_history();
    history.extend([refund_requested(1_000), refunded(1_000, 1_000)]);
    Framework::with(())
        .given(history)
        .when(PaymentCommand::RecordRefundFailed {
            refund_id: refund_id(),
            reason: "late".to_owned(),
            at: t(6),
        })
        .then_expect_error(CommandError::invalid_state(
            "fail refund",
            "the refund settled",
        ));
}

// --- Chargeback ---

#[test]
fn chargeback_takes_back_captured_money() {
    Framework::with(())
        .given(captured_history())
        .when(chargeback(4_000))
        .then_expect_events(vec![PaymentEvent::ChargedBack(PaymentChargedBack {
            amount: w(4_000),
            reason: "fraud".to_owned(),
            at: t(6),
        })]);
}

#[test]
fn chargeback_beyond_the_unrefunded_capture_is_refused() {
    let mut history = captured_history();
    history.extend([refund_requested(6_000), refunded(6_000, 6_000)]);
    Framework::with(())
        .given(history)
        .when(chargeback(4_001))
        .then_expect_error(CommandError::invalid(
            "amount",
            "exceeds the captured amount not yet refunded",
        ));
}

#[test]
fn chargeback_before_capture_is_refused() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT)])
        .when(chargeback(1))
        .then_expect_error(CommandError::invalid_state(
            "record chargeback",
            "authorized",
        ));
}

// --- Provider events ---

#[test]
fn provider_success_records_the_event_and_completes_the_payment() {
    Framework::with(())
        .given(vec![created()])
        .when(provider("evt_1", ProviderEventKind::Succeeded, None, 2))
        .then_expect_events(vec![
            recorded("evt_1", "payment.succeeded", 2),
            PaymentEvent::Authorized(PaymentAuthorized {
                amount: w(AMOUNT),
                provider_ref: "pi_1".to_owned(),
                auth_expires_at: t(2) + Duration::days(7),
                at: t(2),
            }),
            captured(AMOUNT, AMOUNT),
            succeeded(),
        ]);
}

#[test]
fn provider_event_seen_before_is_a_no_op() {
    Framework::with(())
        .given(vec![
            created(),
            recorded("evt_1", "payment.requires_action", 1),
            requires_action(),
        ])
        .when(provider(
            "evt_1",
            ProviderEventKind::RequiresAction,
            None,
            1,
        ))
        .then_expect_events(vec![]);
}

#[test]
fn provider_event_already_implied_appends_nothing() {
    Framework::with(())
        .given(captured_history())
        .when(provider(
            "evt_2",
            ProviderEventKind::Authorized {
                auth_expires_at: expires(),
            },
            None,
            3,
        ))
        .then_expect_events(vec![]);
}

#[test]
fn late_provider_failure_is_recorded_but_changes_nothing() {
    Framework::with(())
        .given(captured_history())
        .when(provider(
            "evt_3",
            ProviderEventKind::Failed {
                reason: "declined".to_owned(),
            },
            None,
            3,
        ))
        .then_expect_events(vec![recorded("evt_3", "payment.failed", 3)]);
}

#[test]
fn provider_cumulative_capture_moves_only_forward() {
    Framework::with(())
        .given(vec![created(), authorized(AMOUNT), captured(6_000, 6_000)])
        .when(provider(
            "evt_4",
            ProviderEventKind::Captured,
            Some(4_000),
            3,
        ))
        .then_expect_events(vec![]);
}

#[test]
fn provider_requires_action_and_failure_drive_an_open_intent() {
    Framework::with(())
        .given(vec![created()])
        .when(provider(
            "evt_5",
            ProviderEventKind::RequiresAction,
            None,
            1,
        ))
        .then_expect_events(vec![
            recorded("evt_5", "payment.requires_action", 1),
            PaymentEvent::RequiresAction(PaymentRequiresAction {
                provider_ref: "pi_1".to_owned(),
                at: t(1),
            }),
        ]);
    Framework::with(())
        .given(vec![created(), requires_action()])
        .when(provider(
            "evt_6",
            ProviderEventKind::Failed {
                reason: "card declined".to_owned(),
            },
            None,
            1,
        ))
        .then_expect_events(vec![
            recorded("evt_6", "payment.failed", 1),
            PaymentEvent::Failed(PaymentFailed {
                reason: "card declined".to_owned(),
                provider_ref: Some("pi_1".to_owned()),
                at: t(1),
            }),
        ]);
}

#[test]
fn provider_refund_outcomes_settle_pending_refunds() {
    let mut history = captured_history();
    history.push(refund_requested(1_000));
    Framework::with(())
        .given(history.clone())
        .when(provider(
            "evt_7",
            ProviderEventKind::RefundSucceeded {
                refund_id: refund_id(),
            },
            None,
            5,
        ))
        .then_expect_events(vec![
            recorded("evt_7", "refund.succeeded", 5),
            refunded(1_000, 1_000),
        ]);
    Framework::with(())
        .given(history)
        .when(provider(
            "evt_8",
            ProviderEventKind::RefundFailed {
                refund_id: refund_id(),
                reason: "closed account".to_owned(),
            },
            None,
            5,
        ))
        .then_expect_events(vec![
            recorded("evt_8", "refund.failed", 5),
            refund_failed(1_000),
        ]);
}

#[test]
fn provider_event_on_a_terminal_payment_appends_nothing() {
    Framework::with(())
        .given(vec![created(), failed()])
        .when(provider("evt_9", ProviderEventKind::Succeeded, None, 2))
        .then_expect_events(vec![]);
}

#[test]
fn provider_event_with_a_foreign_or_excessive_amount_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(provider(
            "evt_10",
            ProviderEventKind::Captured,
            Some(AMOUNT + 1),
            2,
        ))
        .then_expect_error(CommandError::invalid(
            "amount",
            "exceeds the payment amount",
        ));
}

#[test]
fn provider_event_for_a_missing_payment_is_not_found() {
    Framework::with(())
        .given_no_previous_events()
        .when(provider("evt_11", ProviderEventKind::Succeeded, None, 2))
        .then_expect_error(CommandError::NotFound("payment".to_owned()));
}

#[test]
fn accessors_expose_the_ledger() {
    let payment = fold::<Payment>(captured_history());
    assert_eq!(
        payment.status().map(PaymentStatus::as_str),
        Some("captured")
    );
    assert_eq!(payment.amount(), Some(eur(AMOUNT)));
    assert_eq!(payment.authorized(), Some(eur(AMOUNT)));
    assert_eq!(payment.captured(), Some(eur(AMOUNT)));
    assert_eq!(payment.refunded(), Some(eur(0)));
    assert_eq!(payment.purpose(), Some(purpose()));
    assert_eq!(payment.method(), "pm_card_ok");
    assert!(payment.succeeded());
}
