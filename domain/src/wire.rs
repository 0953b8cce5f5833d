//! Conversions between the domain values and the wire types of `commerce-contracts`.
//!
//! The contracts carry plain data (`String`, `Uuid`, `u32`, and a `Money` whose currency is a
//! string) so readers never reject an event over a rule change. Entering the domain goes through
//! `TryFrom` and re-validates; leaving it is infallible. Ids, SKUs, tenants and quantities convert
//! with the `From`/`TryFrom` impls on their own types (`Uuid`, `String`, `u32`).

use crate::{Currency, DomainError, Money};

impl From<Money> for commerce_contracts::Money {
    fn from(money: Money) -> Self {
        Self {
            amount_minor: money.amount_minor(),
            currency: money.currency().code().to_owned(),
        }
    }
}

impl From<&Money> for commerce_contracts::Money {
    fn from(money: &Money) -> Self {
        Self::from(*money)
    }
}

impl TryFrom<&commerce_contracts::Money> for Money {
    type Error = DomainError;

    fn try_from(wire: &commerce_contracts::Money) -> Result<Self, Self::Error> {
        Ok(Self::new(
            wire.amount_minor,
            Currency::from_code(&wire.currency)?,
        ))
    }
}

impl TryFrom<commerce_contracts::Money> for Money {
    type Error = DomainError;

    fn try_from(wire: commerce_contracts::Money) -> Result<Self, Self::Error> {
        Self::try_from(&wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_through_the_wire_type() {
        // given
        let money = Money::new(1999, Currency::Kwd);
        // when
        let wire = commerce_contracts::Money::from(money);
        // then
        assert_eq!(wire.amount_minor, 1999);
        assert_eq!(wire.currency, "KWD");
        assert_eq!(Money::try_from(&wire), Ok(money));
    }

    #[test]
    fn wire_money_with_an_unknown_currency_is_refused() {
        let wire = commerce_contracts::Money {
            amount_minor: 1,
            currency: "XYZ".to_owned(),
        };
        assert_eq!(
            Money::try_from(wire),
            Err(DomainError::UnknownCurrency {
                code: "XYZ".to_owned()
            })
        );
    }

    #[test]
    fn both_money_types_serialise_identically() {
        let money = Money::new(-250, Currency::Jpy);
        assert_eq!(
            serde_json::to_value(money).expect("serialises"),
            serde_json::to_value(commerce_contracts::Money::from(&money)).expect("serialises")
        );
    }
}
