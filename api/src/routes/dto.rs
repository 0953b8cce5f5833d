//! Wire shapes shared by several endpoints, and their validation into domain values.

use commerce_domain::{Currency, Money};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::ApiError;

/// An amount in integer minor units of an ISO 4217 currency (never a float).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    /// Integer amount in the currency's minor unit (cents for EUR).
    pub amount_minor: i64,
    /// ISO 4217 alphabetic code, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
}

impl MoneyDto {
    /// The domain amount; `field` names it in a 422. Zero and negative amounts are refused:
    /// every amount a client sends is a price or a payment.
    pub fn positive(&self, field: &str) -> Result<Money, ApiError> {
        let currency = currency(&format!("{field}.currency"), &self.currency)?;
        if self.amount_minor <= 0 {
            return Err(ApiError::invalid(
                format!("{field}.amount_minor"),
                "must be greater than zero",
            ));
        }
        Ok(Money::new(self.amount_minor, currency))
    }
}

impl From<&commerce_contracts::Money> for MoneyDto {
    fn from(money: &commerce_contracts::Money) -> Self {
        Self {
            amount_minor: money.amount_minor,
            currency: money.currency.clone(),
        }
    }
}

/// An ISO 4217 currency; `field` names it in a 422.
pub fn currency(field: &str, code: &str) -> Result<Currency, ApiError> {
    Currency::from_code(code).map_err(|error| ApiError::invalid(field, error.to_string()))
}
