//! The error of invalid domain values.
//!
//! Every variant names the offending field ([`DomainError::field`]) and carries a message written
//! for an API client: the HTTP layer turns it into one entry of a 422 `errors` list as is.

use thiserror::Error;

/// A value that breaks the rules of its domain type.
///
/// ### Handling
/// These are caller mistakes: report them as validation failures (422) with
/// [`DomainError::field`] as the field name and the `Display` text as the message. Retrying the
/// same input can never succeed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// A tenant id that is empty, too long, or holds characters outside `[A-Za-z0-9_-]`.
    #[error("tenant id must be 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'")]
    InvalidTenantId,
    /// A customer id that is empty, too long, or holds a `/` or a control character.
    #[error("customer id must be 1 to 128 characters with no '/' and no control characters")]
    InvalidCustomerId,
    /// A string that is not a UUID, for an id of the given kind.
    #[error("{kind} must be a UUID")]
    InvalidUuid {
        /// The id's field name, e.g. `order_id`.
        kind: &'static str,
    },
    /// A SKU that is empty, too long, or holds characters outside `[A-Za-z0-9._-]`.
    #[error("sku must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")]
    InvalidSku,
    /// A location id that is empty, too long, or holds characters outside `[A-Za-z0-9._-]`.
    #[error("location must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")]
    InvalidLocationId,
    /// A quantity outside `1..=1_000_000`.
    #[error("quantity must be between 1 and 1000000, got {value}")]
    InvalidQuantity {
        /// The rejected value.
        value: u64,
    },
    /// A currency code that is not an active ISO 4217 code with a minor unit.
    #[error("currency must be an ISO 4217 code such as EUR or USD, got {code:?}")]
    UnknownCurrency {
        /// The rejected code, truncated to a few characters so echoing it stays cheap.
        code: String,
    },
    /// A money text that is not `<amount> <CODE>` with exactly the currency's decimals.
    #[error("amount must be written as e.g. \"19.99 EUR\" with the currency's number of decimals")]
    InvalidMoney,
}

impl DomainError {
    /// The `snake_case` field name this error is about, for an API error's `errors` entry.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            Self::InvalidTenantId => "tenant_id",
            Self::InvalidCustomerId => "customer_id",
            Self::InvalidUuid { kind } => kind,
            Self::InvalidSku => "sku",
            Self::InvalidLocationId => "location",
            Self::InvalidQuantity { .. } => "quantity",
            Self::UnknownCurrency { .. } => "currency",
            Self::InvalidMoney => "amount",
        }
    }
}
