//! Property tests of the value types: money arithmetic laws within range, overflow and currency
//! mismatches always reported (never a panic or a wrapped value), and every text or JSON form
//! round-tripping.

use commerce_domain::{
    Currency, CustomerId, Money, MoneyError, OrderId, Quantity, Sku, StockCount, TenantId,
};
use proptest::prelude::*;

fn currency() -> impl Strategy<Value = Currency> {
    proptest::sample::select(Currency::ALL)
}

/// Amounts small enough that sums of three never overflow, so the algebraic laws can be checked.
fn small_amount() -> impl Strategy<Value = i64> {
    -(i64::MAX / 4)..=(i64::MAX / 4)
}

fn money() -> impl Strategy<Value = Money> {
    (any::<i64>(), currency()).prop_map(|(amount, currency)| Money::new(amount, currency))
}

proptest! {
    #[test]
    fn addition_is_commutative_and_associative(
        a in small_amount(), b in small_amount(), c in small_amount(), currency in currency()
    ) {
        let (a, b, c) = (Money::new(a, currency), Money::new(b, currency), Money::new(c, currency));
        prop_assert_eq!(a.checked_add(&b), b.checked_add(&a));
        let left = a.checked_add(&b).and_then(|ab| ab.checked_add(&c));
        let right = b.checked_add(&c).and_then(|bc| a.checked_add(&bc));
        prop_assert_eq!(left, right);
        prop_assert!(left.is_ok());
    }

    #[test]
    fn subtraction_undoes_addition(a in small_amount(), b in small_amount(), currency in currency()) {
        let (a, b) = (Money::new(a, currency), Money::new(b, currency));
        let back = a.checked_add(&b).and_then(|sum| sum.checked_sub(&b));
        prop_assert_eq!(back, Ok(a));
        // a - b - c == a - (b + c)
        let zero = Money::zero(currency);
        prop_assert_eq!(zero.checked_sub(&a).and_then(|d| d.checked_sub(&b)),
                        a.checked_add(&b).and_then(|s| zero.checked_sub(&s)));
    }

    #[test]
    fn add_and_sub_match_wide_arithmetic_or_report_overflow(a in any::<i64>(), b in any::<i64>(), currency in currency()) {
        let (ma, mb) = (Money::new(a, currency), Money::new(b, currency));
        for (result, exact) in [
            (ma.checked_add(&mb), i128::from(a) + i128::from(b)),
            (ma.checked_sub(&mb), i128::from(a) - i128::from(b)),
        ] {
            match i64::try_from(exact) {
                Ok(expected) => prop_assert_eq!(result, Ok(Money::new(expected, currency))),
                Err(_) => prop_assert_eq!(result, Err(MoneyError::Overflow)),
            }
        }
    }

    #[test]
    fn mul_matches_wide_arithmetic_or_reports_overflow(a in any::<i64>(), factor in any::<u32>(), currency in currency()) {
        let result = Money::new(a, currency).checked_mul(factor);
        match i64::try_from(i128::from(a) * i128::from(factor)) {
            Ok(expected) => prop_assert_eq!(result, Ok(Money::new(expected, currency))),
            Err(_) => prop_assert_eq!(result, Err(MoneyError::Overflow)),
        }
    }

    #[test]
    fn mul_equals_repeated_addition(a in small_amount(), factor in 0_u32..50, currency in currency()) {
        let unit = Money::new(a / 64, currency);
        let repeated = (0..factor).try_fold(Money::zero(currency), |sum, _| sum.checked_add(&unit));
        prop_assert_eq!(unit.checked_mul(factor), repeated);
    }

    #[test]
    fn mismatched_currencies_are_always_refused(a in money(), b in money()) {
        prop_assume!(a.currency() != b.currency());
        let mismatch = MoneyError::CurrencyMismatch { expected: a.currency(), found: b.currency() };
        prop_assert_eq!(a.checked_add(&b), Err(mismatch));
        prop_assert_eq!(a.checked_sub(&b), Err(mismatch));
    }

    #[test]
    fn money_display_parse_round_trip(m in money()) {
        prop_assert_eq!(m.to_string().parse::<Money>(), Ok(m));
    }

    #[test]
    fn money_serde_round_trip(m in money()) {
        let json = serde_json::to_string(&m).expect("serialises");
        prop_assert_eq!(serde_json::from_str::<Money>(&json).expect("parses"), m);
    }

    #[test]
    fn currency_round_trips(c in currency()) {
        prop_assert_eq!(c.code().parse::<Currency>(), Ok(c));
        let json = serde_json::to_string(&c).expect("serialises");
        prop_assert_eq!(serde_json::from_str::<Currency>(&json).expect("parses"), c);
    }

    #[test]
    fn quantity_accepts_exactly_its_range(value in any::<u32>()) {
        let accepted = Quantity::new(value).is_ok();
        prop_assert_eq!(accepted, (1..=1_000_000).contains(&value));
    }

    #[test]
    fn quantity_sum_stays_in_range(a in 1_u32..=1_000_000, b in 1_u32..=1_000_000) {
        let (qa, qb) = (Quantity::new(a).expect("in range"), Quantity::new(b).expect("in range"));
        let sum = qa.checked_add(qb);
        prop_assert_eq!(sum.map(Quantity::get), (a + b <= 1_000_000).then_some(a + b));
    }

    #[test]
    fn stock_count_is_checked_both_ways(a in any::<u64>(), b in any::<u64>()) {
        let stock = StockCount::new(a);
        prop_assert_eq!(stock.checked_add(b).map(StockCount::get), a.checked_add(b));
        prop_assert_eq!(stock.checked_sub(b).map(StockCount::get), a.checked_sub(b));
    }

    #[test]
    fn text_ids_round_trip(tenant in "[A-Za-z0-9_-]{1,64}", sku in "[A-Za-z0-9._-]{1,64}", customer in "[^/\\p{Cc}]{1,128}") {
        let tenant_id: TenantId = tenant.parse().expect("valid tenant");
        prop_assert_eq!(tenant_id.to_string(), tenant);
        let sku_value: Sku = sku.parse().expect("valid sku");
        prop_assert_eq!(serde_json::from_str::<Sku>(&serde_json::to_string(&sku_value).expect("serialises")).expect("parses"), sku_value);
        let customer_id: CustomerId = customer.parse().expect("valid customer");
        prop_assert_eq!(customer_id.as_str(), customer.as_str());
    }

    #[test]
    fn uuid_ids_round_trip(bytes in any::<[u8; 16]>()) {
        let id = OrderId::from_uuid(uuid::Uuid::from_bytes(bytes));
        prop_assert_eq!(id.to_string().parse::<OrderId>(), Ok(id));
        let json = serde_json::to_string(&id).expect("serialises");
        prop_assert_eq!(serde_json::from_str::<OrderId>(&json).expect("parses"), id);
    }
}
