//! [`Money`]: an amount in integer minor units of one [`Currency`], with checked arithmetic that
//! refuses mixed currencies and reports overflow instead of wrapping. No floats anywhere, not even
//! for display or parsing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{Currency, DomainError, Quantity};

/// Why a money operation has no result.
///
/// ### Handling
/// `CurrencyMismatch` is a caller error when it comes from input (e.g. a refund in another
/// currency than the payment: 422) and a bug when it comes from the engine's own state.
/// `Overflow` means an amount beyond ±9.2 × 10^18 minor units: reject the request (422).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MoneyError {
    /// The two operands are in different currencies.
    #[error("currency mismatch: expected {expected}, got {found}")]
    CurrencyMismatch {
        /// The currency of the left operand.
        expected: Currency,
        /// The currency of the right operand.
        found: Currency,
    },
    /// The result does not fit in `i64` minor units.
    #[error("amount out of range")]
    Overflow,
}

/// A factor a [`Money`] amount can be multiplied by: a `u32` or a [`Quantity`].
///
/// Implemented for exactly one integer type so that literals (`price.checked_mul(3)`) infer.
pub trait MoneyFactor: Copy {
    /// The factor as a `u32`.
    fn to_u32(self) -> u32;
}

impl MoneyFactor for u32 {
    fn to_u32(self) -> u32 {
        self
    }
}

impl MoneyFactor for Quantity {
    fn to_u32(self) -> u32 {
        self.get()
    }
}

/// An amount of money: `i64` minor units (cents for EUR, yen for JPY, fils for KWD) of a currency.
///
/// Serialised as `{"amount_minor": 1999, "currency": "EUR"}`; displayed as `19.99 EUR`. The
/// amount may be negative (deltas, adjustments); whether it may be in a given place is the
/// caller's rule (payment amounts, for one, must not be).
///
/// ```
/// use commerce_domain::{Currency, Money, MoneyError};
/// let price = Money::new(1999, Currency::Eur);
/// let total = price.checked_mul(3)?.checked_add(&Money::new(500, Currency::Eur))?;
/// assert_eq!(total.to_string(), "64.97 EUR");
/// assert!(matches!(
///     total.checked_add(&Money::new(1, Currency::Usd)),
///     Err(MoneyError::CurrencyMismatch { .. })
/// ));
/// # Ok::<(), MoneyError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount of `amount_minor` minor units of `currency`.
    #[must_use]
    pub const fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Nothing, in `currency`.
    #[must_use]
    pub const fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// The amount in minor units.
    #[must_use]
    pub const fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    /// The currency.
    #[must_use]
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is above zero.
    #[must_use]
    pub const fn is_positive(&self) -> bool {
        self.amount_minor > 0
    }

    /// Whether the amount is zero.
    #[must_use]
    pub const fn is_zero(&self) -> bool {
        self.amount_minor == 0
    }

    /// Whether the amount is below zero.
    #[must_use]
    pub const fn is_negative(&self) -> bool {
        self.amount_minor < 0
    }

    /// `self + other`.
    ///
    /// # Errors
    /// [`MoneyError::CurrencyMismatch`] when the currencies differ, [`MoneyError::Overflow`]
    /// when the sum leaves `i64`.
    pub fn checked_add(&self, other: &Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|amount| Self::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self - other`.
    ///
    /// # Errors
    /// As [`Money::checked_add`].
    pub fn checked_sub(&self, other: &Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        self.amount_minor
            .checked_sub(other.amount_minor)
            .map(|amount| Self::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// `self × factor`, e.g. a unit price times a line's [`Quantity`].
    ///
    /// # Errors
    /// [`MoneyError::Overflow`] when the product leaves `i64`.
    pub fn checked_mul(&self, factor: impl MoneyFactor) -> Result<Self, MoneyError> {
        self.amount_minor
            .checked_mul(i64::from(factor.to_u32()))
            .map(|amount| Self::new(amount, self.currency))
            .ok_or(MoneyError::Overflow)
    }

    /// The sum of `amounts`, all in `currency`; [`Money::zero`] for none.
    ///
    /// # Errors
    /// As [`Money::checked_add`], at the first offending amount.
    pub fn checked_sum<'a>(
        currency: Currency,
        amounts: impl IntoIterator<Item = &'a Self>,
    ) -> Result<Self, MoneyError> {
        amounts
            .into_iter()
            .try_fold(Self::zero(currency), |sum, amount| sum.checked_add(amount))
    }

    fn same_currency(&self, other: &Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                expected: self.currency,
                found: other.currency,
            })
        }
    }
}

impl fmt::Display for Money {
    /// `19.99 EUR`, `-0.05 USD`, `1999 JPY`, `1.999 KWD`: the major units, a point and exactly
    /// `exponent` decimals, then the code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.is_negative() { "-" } else { "" };
        // unsigned_abs: i64::MIN has no positive i64 counterpart.
        let magnitude = self.amount_minor.unsigned_abs();
        let exponent = self.currency.exponent();
        if exponent == 0 {
            return write!(f, "{sign}{magnitude} {}", self.currency);
        }
        let per_major = 10_u64.pow(u32::from(exponent));
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            magnitude / per_major,
            magnitude % per_major,
            self.currency,
            width = usize::from(exponent)
        )
    }
}

impl FromStr for Money {
    type Err = DomainError;

    /// Parses the [`Display`](fmt::Display) form: an optional `-`, digits, and exactly the
    /// currency's number of decimals after a `.` (none for zero-decimal currencies), a space and
    /// the code. Anything looser would need a rounding rule, and rounding is not parsing's job.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (amount, code) = s.split_once(' ').ok_or(DomainError::InvalidMoney)?;
        let currency = Currency::from_code(code)?;
        let (negative, unsigned) = match amount.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, amount),
        };
        let exponent = usize::from(currency.exponent());
        let (major, minor) = if exponent == 0 {
            (unsigned, "")
        } else {
            unsigned.split_once('.').ok_or(DomainError::InvalidMoney)?
        };
        let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if major.is_empty() || minor.len() != exponent || !all_digits(major) || !all_digits(minor) {
            return Err(DomainError::InvalidMoney);
        }
        // The digit string is concatenated so one i64 parse does the range check.
        let digits = format!("{}{major}{minor}", if negative { "-" } else { "" });
        let amount_minor = digits
            .parse::<i64>()
            .map_err(|_| DomainError::InvalidMoney)?;
        Ok(Self::new(amount_minor, currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(minor, Currency::Eur)
    }

    #[test]
    fn display_uses_the_currency_exponent() {
        assert_eq!(eur(1999).to_string(), "19.99 EUR");
        assert_eq!(eur(5).to_string(), "0.05 EUR");
        assert_eq!(eur(-5).to_string(), "-0.05 EUR");
        assert_eq!(eur(0).to_string(), "0.00 EUR");
        assert_eq!(Money::new(1999, Currency::Jpy).to_string(), "1999 JPY");
        assert_eq!(Money::new(1999, Currency::Kwd).to_string(), "1.999 KWD");
        assert_eq!(Money::new(7, Currency::Clf).to_string(), "0.0007 CLF");
        assert_eq!(
            Money::new(i64::MIN, Currency::Usd).to_string(),
            "-92233720368547758.08 USD"
        );
    }

    #[test]
    fn parse_accepts_exactly_the_display_form() {
        assert_eq!("19.99 EUR".parse(), Ok(eur(1999)));
        assert_eq!("-0.05 EUR".parse(), Ok(eur(-5)));
        assert_eq!("1999 JPY".parse(), Ok(Money::new(1999, Currency::Jpy)));
        for bad in [
            "19.9 EUR",
            "19.999 EUR",
            "19 EUR",
            ".99 EUR",
            "+1.00 EUR",
            "1.00EUR",
            "1.00 eur",
            "19.99 JPY",
            "1,00 EUR",
            "",
            "92233720368547758.08 USD",
        ] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "-92233720368547758.08 USD".parse(),
            Ok(Money::new(i64::MIN, Currency::Usd))
        );
    }

    #[test]
    fn serde_shape_is_amount_minor_and_currency_code() {
        // given
        let money = eur(1999);
        // when
        let json = serde_json::to_value(money).expect("serialises");
        // then
        assert_eq!(
            json,
            serde_json::json!({"amount_minor": 1999, "currency": "EUR"})
        );
        assert_eq!(
            serde_json::from_value::<Money>(json).expect("parses"),
            money
        );
    }

    #[test]
    fn serde_refuses_fractional_amounts_and_unknown_currencies() {
        for bad in [
            r#"{"amount_minor": 19.99, "currency": "EUR"}"#,
            r#"{"amount_minor": 1999, "currency": "EURO"}"#,
            r#"{"amount_minor": 1999}"#,
        ] {
            assert!(serde_json::from_str::<Money>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arithmetic_refuses_mismatched_currencies() {
        // given
        let usd = Money::new(1, Currency::Usd);
        // when / then
        let mismatch = MoneyError::CurrencyMismatch {
            expected: Currency::Eur,
            found: Currency::Usd,
        };
        assert_eq!(eur(1).checked_add(&usd), Err(mismatch));
        assert_eq!(eur(1).checked_sub(&usd), Err(mismatch));
        assert_eq!(
            mismatch.to_string(),
            "currency mismatch: expected EUR, got USD"
        );
    }

    #[test]
    fn arithmetic_reports_overflow() {
        assert_eq!(
            eur(i64::MAX).checked_add(&eur(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            eur(i64::MIN).checked_sub(&eur(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(eur(i64::MAX).checked_mul(2), Err(MoneyError::Overflow));
    }

    #[test]
    fn multiply_by_a_quantity() {
        let quantity = Quantity::new(3).expect("in range");
        assert_eq!(eur(1999).checked_mul(quantity), Ok(eur(5997)));
    }

    #[test]
    fn sum_of_lines() {
        assert_eq!(
            Money::checked_sum(Currency::Eur, &[eur(1), eur(2), eur(3)]),
            Ok(eur(6))
        );
        assert_eq!(Money::checked_sum(Currency::Eur, &[]), Ok(eur(0)));
        assert!(Money::checked_sum(Currency::Eur, &[Money::new(1, Currency::Usd)]).is_err());
    }

    #[test]
    fn sign_predicates() {
        assert!(eur(1).is_positive() && !eur(1).is_zero() && !eur(1).is_negative());
        assert!(eur(0).is_zero() && !eur(0).is_positive() && !eur(0).is_negative());
        assert!(eur(-1).is_negative());
    }
}
