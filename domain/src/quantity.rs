//! Counts: [`Quantity`], the strictly positive amount a customer orders, joins or reserves, and
//! [`StockCount`], a non-negative stock level whose arithmetic can never wrap or go below zero.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// A strictly positive count of items for one order line, campaign join or reservation:
/// `1..=1_000_000`. The upper bound keeps `quantity × price` and stock sums far from overflow and
/// turns absurd requests into a 422 instead of a lock on a hot stock level.
///
/// ```
/// use commerce_domain::Quantity;
/// assert_eq!(Quantity::new(3).map(Quantity::get), Ok(3));
/// assert!(Quantity::new(0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    /// The largest accepted quantity.
    pub const MAX: u32 = 1_000_000;

    /// One item.
    pub const ONE: Self = Self(1);

    /// Validates a quantity.
    ///
    /// # Errors
    /// [`DomainError::InvalidQuantity`] for 0 or more than [`Quantity::MAX`].
    pub fn new(value: u32) -> Result<Self, DomainError> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(DomainError::InvalidQuantity {
                value: u64::from(value),
            })
        }
    }

    /// The count.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The sum, or `None` when it would exceed [`Quantity::MAX`].
    #[must_use]
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0
            .checked_add(other.0)
            .and_then(|sum| Self::new(sum).ok())
    }
}

impl TryFrom<u64> for Quantity {
    type Error = DomainError;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        u32::try_from(value)
            .map_err(|_| DomainError::InvalidQuantity { value })
            .and_then(Self::new)
    }
}

impl TryFrom<u32> for Quantity {
    type Error = DomainError;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(quantity: Quantity) -> Self {
        quantity.0
    }
}

impl From<Quantity> for u64 {
    fn from(quantity: Quantity) -> Self {
        u64::from(quantity.0)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// An amount that can be added to or taken from a [`StockCount`]: a raw `u64` or a [`Quantity`].
///
/// Implemented for exactly one integer type so that literals (`stock.checked_add(5)`) infer.
pub trait StockDelta: Copy {
    /// The amount as a `u64`.
    fn to_u64(self) -> u64;
}

impl StockDelta for u64 {
    fn to_u64(self) -> u64 {
        self
    }
}

impl StockDelta for Quantity {
    fn to_u64(self) -> u64 {
        u64::from(self.0)
    }
}

impl StockDelta for StockCount {
    fn to_u64(self) -> u64 {
        self.0
    }
}

/// A non-negative stock level (on hand, reserved, available). `u64` cannot be negative; the
/// checked operations make sure it never wraps either.
///
/// ```
/// use commerce_domain::{Quantity, StockCount};
/// let on_hand = StockCount::new(5);
/// assert_eq!(on_hand.checked_sub(Quantity::new(2)?), Some(StockCount::new(3)));
/// assert_eq!(on_hand.checked_sub(6), None);
/// # Ok::<(), commerce_domain::DomainError>(())
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct StockCount(u64);

impl StockCount {
    /// No stock.
    pub const ZERO: Self = Self(0);

    /// Wraps a count.
    #[must_use]
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The count.
    #[must_use]
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Whether the count is zero.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The sum, or `None` on `u64` overflow.
    #[must_use]
    pub fn checked_add(self, delta: impl StockDelta) -> Option<Self> {
        self.0.checked_add(delta.to_u64()).map(Self)
    }

    /// The difference, or `None` when `delta` exceeds the count (stock never goes below zero).
    #[must_use]
    pub fn checked_sub(self, delta: impl StockDelta) -> Option<Self> {
        self.0.checked_sub(delta.to_u64()).map(Self)
    }
}

impl From<u64> for StockCount {
    fn from(value: u64) -> Self {
        Self(value)
    }
}

impl From<Quantity> for StockCount {
    fn from(quantity: Quantity) -> Self {
        Self(u64::from(quantity.0))
    }
}

impl From<StockCount> for u64 {
    fn from(count: StockCount) -> Self {
        count.0
    }
}

impl fmt::Display for StockCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_bounds_are_one_and_a_million() {
        assert_eq!(
            Quantity::new(0),
            Err(DomainError::InvalidQuantity { value: 0 })
        );
        assert!(Quantity::new(1).is_ok());
        assert!(Quantity::new(1_000_000).is_ok());
        assert_eq!(
            Quantity::new(1_000_001),
            Err(DomainError::InvalidQuantity { value: 1_000_001 })
        );
    }

    #[test]
    fn quantity_checked_add_refuses_to_leave_the_range() {
        // given
        let big = Quantity::new(999_999).expect("in range");
        // when / then
        assert_eq!(
            big.checked_add(Quantity::ONE),
            Quantity::new(1_000_000).ok()
        );
        assert_eq!(big.checked_add(Quantity::new(2).expect("in range")), None);
    }

    #[test]
    fn quantity_serde_is_a_plain_number_validated_on_the_way_in() {
        let q = Quantity::new(7).expect("in range");
        assert_eq!(serde_json::to_string(&q).expect("serialises"), "7");
        assert_eq!(serde_json::from_str::<Quantity>("7").expect("parses"), q);
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Quantity>("-1").is_err());
        assert!(serde_json::from_str::<Quantity>("4294967297").is_err());
    }

    #[test]
    fn stock_count_never_underflows_or_wraps() {
        // given
        let stock = StockCount::new(2);
        // when / then
        assert_eq!(stock.checked_sub(2), Some(StockCount::ZERO));
        assert_eq!(stock.checked_sub(3), None);
        assert_eq!(StockCount::new(u64::MAX).checked_add(Quantity::ONE), None);
        assert_eq!(
            stock.checked_add(StockCount::new(3)),
            Some(StockCount::new(5))
        );
    }
}
