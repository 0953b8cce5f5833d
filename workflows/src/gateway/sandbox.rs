//! The sandbox provider and carrier: deterministic, stateless stand-ins with the contract's
//! test payment methods.
//!
//! - `pm_card_ok` is approved (and captured by a charge), `pm_card_declined` is declined,
//!   `pm_card_requires_action` waits for a webhook; any other token is declined as unknown.
//! - Provider references are derived from the idempotency key, so a retried call returns the
//!   very same answer without the sandbox storing anything.
//! - The carrier derives the tracking number from the shipment id.

use async_trait::async_trait;
use chrono::{Duration, Utc};
use commerce_domain::Money;

use super::{
    Carrier, GatewayDecision, GatewayError, Label, LabelRequest, PaymentGateway, PaymentRequest,
};
use crate::ids::digest_hex;

/// Approved and captured.
pub const PM_CARD_OK: &str = "pm_card_ok";
/// Declined.
pub const PM_CARD_DECLINED: &str = "pm_card_declined";
/// Waits for customer action, settled by a webhook.
pub const PM_CARD_REQUIRES_ACTION: &str = "pm_card_requires_action";

/// How long a sandbox authorization may be captured (Stripe's default hold).
const AUTH_VALIDITY: Duration = Duration::days(7);

/// The sandbox payment provider (`provider = "sandbox"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxGateway;

impl SandboxGateway {
    fn decide(request: &PaymentRequest) -> GatewayDecision {
        let provider_ref = format!("sbx_{}", &digest_hex(&request.idempotency_key)[..24]);
        match request.method.as_str() {
            PM_CARD_OK => GatewayDecision::Approved {
                provider_ref,
                auth_expires_at: Utc::now() + AUTH_VALIDITY,
            },
            PM_CARD_REQUIRES_ACTION => GatewayDecision::RequiresAction { provider_ref },
            PM_CARD_DECLINED => GatewayDecision::Declined {
                reason: "card_declined".to_owned(),
                provider_ref,
            },
            _ => GatewayDecision::Declined {
                reason: "unknown_payment_method".to_owned(),
                provider_ref,
            },
        }
    }
}

#[async_trait]
impl PaymentGateway for SandboxGateway {
    fn name(&self) -> &str {
        "sandbox"
    }

    async fn authorize(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError> {
        Ok(Self::decide(request))
    }

    async fn charge(&self, request: &PaymentRequest) -> Result<GatewayDecision, GatewayError> {
        Ok(Self::decide(request))
    }

    async fn capture(&self, _: &str, _: Money, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn void(&self, _: &str, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }

    async fn refund(&self, _: &str, _: Money, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
}

/// The sandbox carrier (`carrier = "sandbox"`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxCarrier;

#[async_trait]
impl Carrier for SandboxCarrier {
    async fn create_label(&self, request: &LabelRequest) -> Result<Label, GatewayError> {
        let digest = digest_hex(&request.shipment_id.to_string());
        let tracking_number = format!("SBX{}", digest[..12].to_uppercase());
        Ok(Label {
            carrier: "sandbox".to_owned(),
            service: "standard".to_owned(),
            label_url: format!("https://sandbox.carrier.invalid/labels/{tracking_number}.pdf"),
            tracking_number,
        })
    }

    async fn void_label(&self, _: &str, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce_domain::{Currency, OrderId, PaymentId, ShipmentId};

    fn request(method: &str, key: &str) -> PaymentRequest {
        PaymentRequest {
            payment_id: PaymentId::new(),
            method: method.to_owned(),
            amount: Money::new(1000, Currency::from_code("EUR").expect("EUR is ISO 4217")),
            idempotency_key: key.to_owned(),
        }
    }

    #[tokio::test]
    async fn given_each_test_method_when_charged_then_the_contracts_outcome_follows() {
        let gateway = SandboxGateway;
        assert!(matches!(
            gateway.charge(&request(PM_CARD_OK, "k")).await,
            Ok(GatewayDecision::Approved { .. })
        ));
        assert!(matches!(
            gateway.charge(&request(PM_CARD_DECLINED, "k")).await,
            Ok(GatewayDecision::Declined { .. })
        ));
        assert!(matches!(
            gateway
                .authorize(&request(PM_CARD_REQUIRES_ACTION, "k"))
                .await,
            Ok(GatewayDecision::RequiresAction { .. })
        ));
        assert!(matches!(
            gateway.charge(&request("pm_bogus", "k")).await,
            Ok(GatewayDecision::Declined { reason, .. }) if reason == "unknown_payment_method"
        ));
    }

    #[tokio::test]
    async fn given_a_retried_key_when_charged_again_then_the_provider_ref_is_the_same() {
        let gateway = SandboxGateway;
        let reference = |decision| match decision {
            Ok(GatewayDecision::Approved { provider_ref, .. }) => provider_ref,
            other => panic!("expected approval, got {other:?}"),
        };
        let first = reference(gateway.charge(&request(PM_CARD_OK, "pay-1")).await);
        let again = reference(gateway.charge(&request(PM_CARD_OK, "pay-1")).await);
        let other = reference(gateway.charge(&request(PM_CARD_OK, "pay-2")).await);
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[tokio::test]
    async fn given_a_shipment_when_labelled_twice_then_the_tracking_number_is_stable() {
        let request = LabelRequest {
            shipment_id: ShipmentId::new(),
            order_id: OrderId::new(),
            idempotency_key: "label".to_owned(),
        };
        let first = SandboxCarrier
            .create_label(&request)
            .await
            .expect("sandbox");
        let again = SandboxCarrier
            .create_label(&request)
            .await
            .expect("sandbox");
        assert_eq!(first, again);
        assert!(first.tracking_number.starts_with("SBX"));
    }
}
