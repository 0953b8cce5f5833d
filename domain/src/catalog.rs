//! Catalog and stock-location identifiers chosen by operators: SKUs and location ids.

use crate::DomainError;
use crate::macros::text_newtype;

const CODE_MAX: usize = 64;
const DEFAULT_LOCATION: &str = "default";

/// SKUs and location ids end up in stream names (`{tenant}/inventory/{sku}/{location}`) and URLs,
/// hence the small alphabet without `/`.
fn is_valid_code(value: &str) -> bool {
    (1..=CODE_MAX).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

text_newtype!(
    /// A stock-keeping unit: 1 to 64 characters of `[A-Za-z0-9._-]`.
    ///
    /// ```
    /// use commerce_domain::Sku;
    /// assert!(Sku::new("TSHIRT-RED.XL").is_ok());
    /// assert!(Sku::new("tshirt/red").is_err());
    /// ```
    Sku,
    is_valid_code,
    DomainError::InvalidSku
);

text_newtype!(
    /// A stock location (warehouse, store): 1 to 64 characters of `[A-Za-z0-9._-]`.
    LocationId,
    is_valid_code,
    DomainError::InvalidLocationId
);

impl LocationId {
    /// The location used when a request names none: `"default"`.
    #[must_use]
    pub fn default_location() -> Self {
        Self(DEFAULT_LOCATION.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_accepts_dots_dashes_underscores() {
        assert!(Sku::new("A.b_c-9").is_ok());
        assert!(Sku::new("s".repeat(64)).is_ok());
    }

    #[test]
    fn sku_rejects_slash_space_empty_and_long() {
        for bad in ["", "a/b", "a b", "ä", &"s".repeat(65)] {
            assert_eq!(Sku::new(bad), Err(DomainError::InvalidSku), "{bad:?}");
        }
    }

    #[test]
    fn default_location_is_named_default_and_valid() {
        // when
        let location = LocationId::default_location();
        // then
        assert_eq!(location.as_str(), "default");
        assert_eq!(LocationId::new("default"), Ok(location));
    }

    #[test]
    fn invalid_location_reports_the_location_field() {
        let err = LocationId::new("a/b").expect_err("slash refused");
        assert_eq!(err.field(), "location");
    }
}
