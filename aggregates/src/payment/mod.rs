//! The Payment aggregate (§3.2 of the commerce anchors): one payment intent, tracked as a ledger
//! of amounts rather than a flag.
//!
//! Layout: [`PaymentCommand`] in `commands.rs`; the folded [`Payment`] with its derived
//! [`PaymentStatus`] in `state.rs`; the handler and every guard here; given/when/then tests in
//! `tests.rs`; the PAY-* property tests in `proptests.rs`.
//!
//! Rules worth knowing:
//! - `captured + voided ≤ authorized ≤ amount` and `refunded + refund_pending + charged_back ≤
//!   captured` (PAY-1, PAY-2; chargebacks are counted with refunds so money taken back never
//!   exceeds money taken). Every amount is checked in minor units of the payment's currency.
//! - `RecordCharge` (automatic capture) emits `payment.authorized`, `payment.captured` and
//!   `payment.succeeded`, so a charged payment folds exactly like an authorize-then-capture one.
//!   `payment.succeeded` means "the payment's whole amount is captured", whichever way it got there.
//! - A void after a partial capture releases the rest (`voided = authorized − captured`, PAY-3)
//!   and leaves a `captured` payment that can still be refunded; a void with nothing captured
//!   is terminal.
//! - Terminal statuses (`refunded`, `voided`, `failed`, `expired`) absorb: every command appends
//!   nothing (PAY-9). Repeats of what already happened are no-ops, not errors: a refund id seen
//!   before, a provider event id seen before, a second void, a late expiry.
//! - Provider events are applied as "the payment has reached at least this point": `captured`
//!   carries the cumulative amount and implies the authorization, `succeeded` implies the full
//!   capture. Events implied by the current state (an `authorized` after the capture) append
//!   nothing; events the state contradicts (`failed` after an authorization) are recorded with
//!   `payment.provider_event_recorded` and change nothing. So any permutation or duplication of
//!   one consistent provider history folds to the same amounts and status (PAY-6).

mod commands;
#[cfg(test)]
mod proptests;
mod state;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Duration, Utc};
use commerce_contracts::events::{
    CapturePolicy, PaymentAuthorized, PaymentCaptured, PaymentChargedBack, PaymentCreated,
    PaymentEvent, PaymentExpired, PaymentFailed, PaymentProviderEventRecorded, PaymentRefundFailed,
    PaymentRefundRequested, PaymentRefunded, PaymentRequiresAction, PaymentSucceeded,
    PaymentVoided,
};
use commerce_domain::{Currency, Money, PaymentId};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use uuid::Uuid;

use crate::{CommandError, guard};
use state::Phase;

pub use commands::{CreatePayment, PaymentCommand, ProviderEvent, ProviderEventKind};
pub use state::{Payment, PaymentStatus, RefundOutcome};

/// How long an authorization synthesized from a capture webhook stays valid (the provider did
/// not tell); Stripe's default.
const DEFAULT_AUTH_VALIDITY: Duration = Duration::days(7);

/// The stream key of a payment (the executor prefixes the tenant).
#[must_use]
pub fn stream_key(payment_id: &PaymentId) -> String {
    payment_id.to_string()
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = CommandError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        guard::write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.fold(event);
    }
}

type Decision = Result<Vec<PaymentEvent>, CommandError>;

impl Payment {
    fn decide(&self, command: PaymentCommand) -> Decision {
        if let PaymentCommand::Create(create) = command {
            return self.create(create);
        }
        let (status, currency) = self.existing()?;
        // Refund ids dedupe before anything else, so a retried refund is a no-op even once the
        // payment is fully refunded; the same id for another amount is a different request
        // under a used name, refused rather than reported as done (PAY-5).
        if let PaymentCommand::RequestRefund {
            refund_id, amount, ..
        } = &command
            && let Some(asked) = self.refunds.get(refund_id)
        {
            if asked.amount != amount.amount_minor() {
                return Err(CommandError::invalid(
                    "refund_id",
                    format!("already names a refund of {} minor units", asked.amount),
                ));
            }
            return Ok(vec![]);
        }
        if status.is_terminal() {
            return absorbed(&command, status);
        }
        match command {
            PaymentCommand::Create(create) => self.create(create),
            PaymentCommand::RecordRequiresAction { provider_ref, at } => match self.phase {
                Some(Phase::Created) => {
                    Ok(vec![PaymentEvent::RequiresAction(PaymentRequiresAction {
                        provider_ref,
                        at,
                    })])
                }
                Some(Phase::RequiresAction) => Ok(vec![]),
                _ => Err(CommandError::invalid_state(
                    "record requires_action",
                    status.as_str(),
                )),
            },
            PaymentCommand::RecordAuthorization {
                amount,
                provider_ref,
                auth_expires_at,
                at,
            } => {
                let minor = self.positive_amount("amount", &amount, currency)?;
                if minor > self.amount {
                    return Err(CommandError::invalid(
                        "amount",
                        "exceeds the payment amount",
                    ));
                }
                if auth_expires_at <= at {
                    return Err(CommandError::invalid(
                        "auth_expires_at",
                        "must be after the authorization time",
                    ));
                }
                match self.phase {
                    Some(Phase::Created | Phase::RequiresAction) => {
                        Ok(vec![PaymentEvent::Authorized(PaymentAuthorized {
                            amount: Money::new(minor, currency).into(),
                            provider_ref,
                            auth_expires_at,
                            at,
                        })])
                    }
                    Some(Phase::Authorized) if self.authorized == minor => Ok(vec![]),
                    _ => Err(CommandError::invalid_state(
                        "authorize payment",
                        status.as_str(),
                    )),
                }
            }
            PaymentCommand::RecordCapture { amount, at } => {
                let minor = self.positive_amount("amount", &amount, currency)?;
                if self.phase != Some(Phase::Authorized) || self.capturable() == 0 {
                    return Err(CommandError::invalid_state(
                        "capture payment",
                        status.as_str(),
                    ));
                }
                if self.auth_expires_at.is_some_and(|expires| at >= expires) {
                    return Err(CommandError::invalid_state(
                        "capture payment",
                        "the authorization expired",
                    ));
                }
                if minor > self.capturable() {
                    return Err(CommandError::invalid(
                        "amount",
                        "exceeds the capturable amount",
                    ));
                }
                Ok(self.capture_to(self.captured + minor, currency, at))
            }
            PaymentCommand::RecordCharge { provider_ref, at } => {
                if self.capture_policy != Some(CapturePolicy::Automatic) {
                    return Err(CommandError::invalid_state(
                        "charge payment",
                        "the capture policy is manual",
                    ));
                }
                match self.phase {
                    Some(Phase::Created | Phase::RequiresAction) => {
                        let mut events = vec![PaymentEvent::Authorized(PaymentAuthorized {
                            amount: Money::new(self.amount, currency).into(),
                            provider_ref,
                            auth_expires_at: at,
                            at,
                        })];
                        events.extend(self.capture_to(self.amount, currency, at));
                        Ok(events)
                    }
                    _ if self.succeeded => Ok(vec![]),
                    _ => Err(CommandError::invalid_state(
                        "charge payment",
                        status.as_str(),
                    )),
                }
            }
            PaymentCommand::RecordFailure {
                reason,
                provider_ref,
                at,
            } => match self.phase {
                Some(Phase::Created | Phase::RequiresAction) => {
                    Ok(vec![PaymentEvent::Failed(PaymentFailed {
                        reason,
                        provider_ref,
                        at,
                    })])
                }
                _ => Err(CommandError::invalid_state("fail payment", status.as_str())),
            },
            PaymentCommand::Void { reason, at } => match self.phase {
                Some(Phase::Created | Phase::RequiresAction) => {
                    Ok(vec![PaymentEvent::Voided(PaymentVoided {
                        released: Money::zero(currency).into(),
                        reason,
                        at,
                    })])
                }
                Some(Phase::Authorized) if self.capturable() > 0 => {
                    Ok(vec![PaymentEvent::Voided(PaymentVoided {
                        released: Money::new(self.capturable(), currency).into(),
                        reason,
                        at,
                    })])
                }
                _ => Err(CommandError::invalid_state("void payment", status.as_str())),
            },
            PaymentCommand::ExpireAuthorization { at } => match self.phase {
                // A deadline that fires after a capture has nothing left to do (ES-5).
                Some(Phase::Authorized) if self.captured > 0 || self.capturable() == 0 => {
                    Ok(vec![])
                }
                Some(Phase::Authorized) => {
                    if self.auth_expires_at.is_some_and(|expires| at < expires) {
                        return Err(CommandError::invalid_state(
                            "expire authorization",
                            "the authorization is not due yet",
                        ));
                    }
                    Ok(vec![PaymentEvent::Expired(PaymentExpired {
                        released: Money::new(self.capturable(), currency).into(),
                        at,
                    })])
                }
                _ => Err(CommandError::invalid_state(
                    "expire authorization",
                    status.as_str(),
                )),
            },
            PaymentCommand::RequestRefund {
                refund_id,
                amount,
                reason,
                at,
            } => {
                let minor = self.positive_amount("amount", &amount, currency)?;
                if self.captured == 0 {
                    return Err(CommandError::invalid_state(
                        "refund payment",
                        status.as_str(),
                    ));
                }
                if minor > self.refundable() {
                    return Err(CommandError::invalid(
                        "amount",
                        "exceeds the refundable amount",
                    ));
                }
                Ok(vec![PaymentEvent::RefundRequested(
                    PaymentRefundRequested {
                        refund_id,
                        amount: Money::new(minor, currency).into(),
                        reason,
                        at,
                    },
                )])
            }
            PaymentCommand::RecordRefundSettled { refund_id, at } => {
                self.settle_refund(refund_id, currency, at)
            }
            PaymentCommand::RecordRefundFailed {
                refund_id,
                reason,
                at,
            } => self.fail_refund(refund_id, reason, currency, at),
            PaymentCommand::RecordChargeback { amount, reason, at } => {
                let minor = self.positive_amount("amount", &amount, currency)?;
                if self.captured == 0 {
                    return Err(CommandError::invalid_state(
                        "record chargeback",
                        status.as_str(),
                    ));
                }
                if minor > self.refundable() {
                    return Err(CommandError::invalid(
                        "amount",
                        "exceeds the captured amount not yet refunded",
                    ));
                }
                Ok(vec![PaymentEvent::ChargedBack(PaymentChargedBack {
                    amount: Money::new(minor, currency).into(),
                    reason,
                    at,
                })])
            }
            PaymentCommand::ApplyProviderEvent(event) => self.apply_provider_event(event, currency),
        }
    }

    fn create(&self, create: CreatePayment) -> Decision {
        guard::not_created(self.phase.is_some(), "payment", create.payment_id)?;
        if !create.amount.is_positive() {
            return Err(CommandError::invalid("amount", "must be greater than zero"));
        }
        for (field, value) in [("method", &create.method), ("provider", &create.provider)] {
            if value.trim().is_empty() {
                return Err(CommandError::invalid(field, "must not be empty"));
            }
        }
        Ok(vec![PaymentEvent::Created(PaymentCreated {
            payment_id: create.payment_id.as_uuid(),
            purpose: create.purpose,
            customer_id: create.customer.into_inner(),
            amount: create.amount.into(),
            method: create.method,
            provider: create.provider,
            capture_policy: create.capture_policy,
            created_at: create.at,
        })])
    }

    /// The status and currency of a created payment, or `NotFound`.
    fn existing(&self) -> Result<(PaymentStatus, Currency), CommandError> {
        guard::created(self.status().zip(self.currency), "payment")
    }

    /// The minor units of a strictly positive amount in the payment's currency (PAY-7).
    fn positive_amount(
        &self,
        field: &str,
        amount: &Money,
        currency: Currency,
    ) -> Result<i64, CommandError> {
        if amount.currency() != currency {
            return Err(CommandError::invalid(
                field,
                format!("currency must be {currency}, the payment's currency"),
            ));
        }
        if !amount.is_positive() {
            return Err(CommandError::invalid(field, "must be greater than zero"));
        }
        Ok(amount.amount_minor())
    }

    /// Events moving `captured` up to `total` (which the caller checked against the
    /// authorization), plus `payment.succeeded` when that completes the payment.
    fn capture_to(&self, total: i64, currency: Currency, at: DateTime<Utc>) -> Vec<PaymentEvent> {
        let mut events = Vec::new();
        if total > self.captured {
            events.push(PaymentEvent::Captured(PaymentCaptured {
                amount: Money::new(total - self.captured, currency).into(),
                total_captured: Money::new(total, currency).into(),
                at,
            }));
        }
        if total == self.amount && !self.succeeded {
            events.push(PaymentEvent::Succeeded(PaymentSucceeded {
                amount: Money::new(total, currency).into(),
                at,
            }));
        }
        events
    }

    fn settle_refund(&self, refund_id: Uuid, currency: Currency, at: DateTime<Utc>) -> Decision {
        let refund = self.refund(refund_id)?;
        match refund.outcome {
            RefundOutcome::Pending => {
                // Bounded by `captured` when the refund was requested, so this cannot overflow.
                let total = self.refunded.saturating_add(refund.amount);
                Ok(vec![PaymentEvent::Refunded(PaymentRefunded {
                    refund_id,
                    amount: Money::new(refund.amount, currency).into(),
                    total_refunded: Money::new(total, currency).into(),
                    at,
                })])
            }
            RefundOutcome::Settled => Ok(vec![]),
            RefundOutcome::Failed => Err(CommandError::invalid_state(
                "settle refund",
                "the refund failed",
            )),
        }
    }

    fn fail_refund(
        &self,
        refund_id: Uuid,
        reason: String,
        currency: Currency,
        at: DateTime<Utc>,
    ) -> Decision {
        let refund = self.refund(refund_id)?;
        match refund.outcome {
            RefundOutcome::Pending => Ok(vec![PaymentEvent::RefundFailed(PaymentRefundFailed {
                refund_id,
                amount: Money::new(refund.amount, currency).into(),
                reason,
                at,
            })]),
            RefundOutcome::Failed => Ok(vec![]),
            RefundOutcome::Settled => Err(CommandError::invalid_state(
                "fail refund",
                "the refund settled",
            )),
        }
    }

    fn refund(&self, refund_id: Uuid) -> Result<state::Refund, CommandError> {
        self.refunds
            .get(&refund_id)
            .copied()
            .ok_or_else(|| CommandError::NotFound(format!("refund {refund_id}")))
    }

    fn apply_provider_event(&self, event: ProviderEvent, currency: Currency) -> Decision {
        if self.provider_events.contains(&event.provider_event_id) {
            return Ok(vec![]);
        }
        let target = match &event.amount {
            Some(amount) => {
                let minor = self.positive_amount("amount", amount, currency)?;
                if minor > self.amount {
                    return Err(CommandError::invalid(
                        "amount",
                        "exceeds the payment amount",
                    ));
                }
                minor
            }
            None => self.amount,
        };
        let provider_ref = event.provider_ref.clone().unwrap_or_default();
        let at = event.at;
        let (implied, transition) = match &event.kind {
            ProviderEventKind::RequiresAction => match self.phase {
                Some(Phase::Created) => (
                    false,
                    vec![PaymentEvent::RequiresAction(PaymentRequiresAction {
                        provider_ref,
                        at,
                    })],
                ),
                _ => (true, vec![]),
            },
            ProviderEventKind::Authorized { auth_expires_at } => {
                let events =
                    self.authorize_to(target, provider_ref, *auth_expires_at, currency, at);
                (events.is_empty() && self.authorized >= target, events)
            }
            ProviderEventKind::Captured | ProviderEventKind::Succeeded => {
                let target = if matches!(event.kind, ProviderEventKind::Succeeded) {
                    self.amount
                } else {
                    target
                };
                if target <= self.captured && (target < self.amount || self.succeeded) {
                    (true, vec![])
                } else if self.voided > 0 && target > self.authorized - self.voided {
                    // The rest of the authorization was released: the report contradicts it.
                    (false, vec![])
                } else {
                    let mut events = self.authorize_to(
                        target,
                        provider_ref,
                        at + DEFAULT_AUTH_VALIDITY,
                        currency,
                        at,
                    );
                    events.extend(self.capture_to(target, currency, at));
                    (false, events)
                }
            }
            ProviderEventKind::Failed { reason } => match self.phase {
                Some(Phase::Created | Phase::RequiresAction) => (
                    false,
                    vec![PaymentEvent::Failed(PaymentFailed {
                        reason: reason.clone(),
                        provider_ref: event.provider_ref.clone(),
                        at,
                    })],
                ),
                _ => (false, vec![]),
            },
            ProviderEventKind::RefundSucceeded { refund_id } => {
                self.refund_report(*refund_id, RefundOutcome::Settled, || {
                    self.settle_refund(*refund_id, currency, at)
                })?
            }
            ProviderEventKind::RefundFailed { refund_id, reason } => {
                self.refund_report(*refund_id, RefundOutcome::Failed, || {
                    self.fail_refund(*refund_id, reason.clone(), currency, at)
                })?
            }
        };
        if implied {
            return Ok(vec![]);
        }
        let mut events = vec![PaymentEvent::ProviderEventRecorded(
            PaymentProviderEventRecorded {
                provider_event_id: event.provider_event_id,
                kind: event.kind.as_str().to_owned(),
                at,
            },
        )];
        events.extend(transition);
        Ok(events)
    }

    /// Events raising the authorization to at least `target`, if it is not there yet and can
    /// still grow (nothing voided).
    fn authorize_to(
        &self,
        target: i64,
        provider_ref: String,
        auth_expires_at: DateTime<Utc>,
        currency: Currency,
        at: DateTime<Utc>,
    ) -> Vec<PaymentEvent> {
        let grows = match self.phase {
            Some(Phase::Created | Phase::RequiresAction) => true,
            Some(Phase::Authorized) => self.authorized < target && self.voided == 0,
            _ => false,
        };
        if !grows {
            return vec![];
        }
        vec![PaymentEvent::Authorized(PaymentAuthorized {
            amount: Money::new(target, currency).into(),
            provider_ref,
            auth_expires_at,
            at,
        })]
    }

    /// A provider report on a refund: `(implied, events)`. Already in that outcome → implied;
    /// unknown refund or the opposite outcome → recorded, no change; pending → settle or fail.
    fn refund_report(
        &self,
        refund_id: Uuid,
        reported: RefundOutcome,
        decide: impl FnOnce() -> Decision,
    ) -> Result<(bool, Vec<PaymentEvent>), CommandError> {
        match self.refunds.get(&refund_id).map(|refund| refund.outcome) {
            Some(RefundOutcome::Pending) => Ok((false, decide()?)),
            Some(outcome) if outcome == reported => Ok((true, vec![])),
            _ => Ok((false, vec![])),
        }
    }
}

/// What a command does to a payment in a terminal status: nothing. Repeats of the step that
/// ended it and late deadlines are quiet no-ops; anything else is refused (PAY-9).
fn absorbed(command: &PaymentCommand, status: PaymentStatus) -> Decision {
    let quiet = matches!(
        (command, status),
        (PaymentCommand::RecordFailure { .. }, PaymentStatus::Failed)
            | (PaymentCommand::Void { .. }, PaymentStatus::Voided)
            | (PaymentCommand::ExpireAuthorization { .. }, _)
            | (PaymentCommand::ApplyProviderEvent(_), _)
            | (
                PaymentCommand::RecordRefundSettled { .. },
                PaymentStatus::Refunded
            )
    );
    if quiet {
        Ok(vec![])
    } else {
        Err(CommandError::invalid_state(
            command_action(command),
            status.as_str(),
        ))
    }
}

fn command_action(command: &PaymentCommand) -> &'static str {
    match command {
        PaymentCommand::Create(_) => "create payment",
        PaymentCommand::RecordRequiresAction { .. } => "record requires_action",
        PaymentCommand::RecordAuthorization { .. } => "authorize payment",
        PaymentCommand::RecordCapture { .. } => "capture payment",
        PaymentCommand::RecordCharge { .. } => "charge payment",
        PaymentCommand::RecordFailure { .. } => "fail payment",
        PaymentCommand::Void { .. } => "void payment",
        PaymentCommand::ExpireAuthorization { .. } => "expire authorization",
        PaymentCommand::RequestRefund { .. } => "refund payment",
        PaymentCommand::RecordRefundSettled { .. } => "settle refund",
        PaymentCommand::RecordRefundFailed { .. } => "fail refund",
        PaymentCommand::RecordChargeback { .. } => "record chargeback",
        PaymentCommand::ApplyProviderEvent(_) => "apply provider event",
    }
}
