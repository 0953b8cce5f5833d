//! Identifiers: tenants and customers (validated strings from the caller's token) and the UUID
//! ids of the aggregates and their entities.

use crate::DomainError;
use crate::macros::{text_newtype, uuid_newtype};

const TENANT_ID_MAX: usize = 64;
const CUSTOMER_ID_MAX: usize = 128;

fn is_valid_tenant_id(value: &str) -> bool {
    (1..=TENANT_ID_MAX).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Customer ids come from the JWT `sub`, so they can be any identity provider's format; only the
/// characters that would break stream names (`/`) or logs (control characters) are refused.
fn is_valid_customer_id(value: &str) -> bool {
    (1..=CUSTOMER_ID_MAX).contains(&value.chars().count())
        && !value.chars().any(|c| c == '/' || c.is_control())
}

text_newtype!(
    /// A tenant: 1 to 64 characters of `[A-Za-z0-9_-]`. Always taken from the caller's token.
    ///
    /// ```
    /// use commerce_domain::TenantId;
    /// assert!(TenantId::new("acme-eu_1").is_ok());
    /// assert!(TenantId::new("acme/eu").is_err());
    /// ```
    TenantId,
    is_valid_tenant_id,
    DomainError::InvalidTenantId
);

text_newtype!(
    /// A customer: the JWT `sub`, 1 to 128 characters, no `/` and no control characters.
    ///
    /// ```
    /// use commerce_domain::CustomerId;
    /// assert!(CustomerId::new("auth0|5f7c8ec7").is_ok());
    /// assert!(CustomerId::new("").is_err());
    /// ```
    CustomerId,
    is_valid_customer_id,
    DomainError::InvalidCustomerId
);

uuid_newtype!(
    /// An order.
    OrderId,
    "order_id"
);
uuid_newtype!(
    /// A catalog product.
    ProductId,
    "product_id"
);
uuid_newtype!(
    /// A group-buying campaign.
    CampaignId,
    "campaign_id"
);
uuid_newtype!(
    /// A payment (one payment intent; an order may have several).
    PaymentId,
    "payment_id"
);
uuid_newtype!(
    /// A shipment.
    ShipmentId,
    "shipment_id"
);
uuid_newtype!(
    /// A stock reservation inside an inventory stream.
    ReservationId,
    "reservation_id"
);
uuid_newtype!(
    /// A participant of a campaign (one customer's join).
    ParticipantId,
    "participant_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_accepts_the_allowed_alphabet_up_to_64_chars() {
        // given / when / then
        assert!(TenantId::new("a").is_ok());
        assert!(TenantId::new("Acme_EU-01").is_ok());
        assert!(TenantId::new("x".repeat(64)).is_ok());
    }

    #[test]
    fn tenant_id_rejects_empty_long_and_foreign_characters() {
        for bad in ["", "acme eu", "acme/eu", "acme.eu", "é", &"x".repeat(65)] {
            assert_eq!(
                TenantId::new(bad),
                Err(DomainError::InvalidTenantId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn customer_id_accepts_provider_subjects() {
        for good in ["auth0|abc", "user@example.com", "Zoë", &"c".repeat(128)] {
            assert!(CustomerId::new(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn customer_id_rejects_slashes_controls_and_length() {
        for bad in ["", "a/b", "a\nb", "a\u{0}b", &"c".repeat(129)] {
            assert_eq!(
                CustomerId::new(bad),
                Err(DomainError::InvalidCustomerId),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn text_ids_serialise_as_plain_strings_and_validate_on_the_way_in() {
        // given
        let tenant = TenantId::new("acme").expect("valid");
        // when
        let json = serde_json::to_string(&tenant).expect("serialises");
        // then
        assert_eq!(json, "\"acme\"");
        assert_eq!(
            serde_json::from_str::<TenantId>(&json).expect("parses"),
            tenant
        );
        assert!(serde_json::from_str::<TenantId>("\"a/b\"").is_err());
    }

    #[test]
    fn new_uuid_ids_are_version_7_and_distinct() {
        // when
        let (a, b) = (OrderId::new(), OrderId::new());
        // then
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_ne!(a, b);
    }

    #[test]
    fn uuid_ids_round_trip_through_display_and_serde() {
        // given
        let id = PaymentId::new();
        // when
        let parsed: PaymentId = id.to_string().parse().expect("parses");
        let json = serde_json::to_string(&id).expect("serialises");
        // then
        assert_eq!(parsed, id);
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(
            serde_json::from_str::<PaymentId>(&json).expect("parses"),
            id
        );
    }

    #[test]
    fn uuid_id_parse_error_names_the_field() {
        // when
        let err = "nope".parse::<CampaignId>().expect_err("not a uuid");
        // then
        assert_eq!(err.field(), "campaign_id");
        assert_eq!(err.to_string(), "campaign_id must be a UUID");
    }
}
