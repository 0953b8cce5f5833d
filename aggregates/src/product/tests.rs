//! Given/when/then tests of every product command and rejection, and of the v1 → v2 upcaster.

use commerce_contracts::events::*;
use commerce_domain::{Currency, Money, ProductId, Sku};
use commerce_eventstore::SerializedEvent;
use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::testkit::{at_minute as t, eur};

type Given = TestFramework<Product>;

fn id() -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(5))
}

fn create(name: &str, price: Money) -> ProductCommand {
    ProductCommand::Create {
        product_id: id(),
        sku: Sku::new("TEE-RED").expect("valid"),
        name: name.into(),
        description: Some("A red tee".into()),
        price,
        at: t(0),
    }
}

fn created() -> ProductEvent {
    ProductEvent::Created(ProductCreated {
        product_id: id().as_uuid(),
        sku: "TEE-RED".into(),
        name: "Red tee".into(),
        description: Some("A red tee".into()),
        price: eur(1999).into(),
        created_at: t(0),
    })
}

fn discontinued() -> ProductEvent {
    ProductEvent::Discontinued(ProductDiscontinued { at: t(5) })
}

#[test]
fn create_adds_the_product() {
    Given::with(())
        .given_no_previous_events()
        .when(create("Red tee", eur(1999)))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_on_an_existing_sku_is_refused() {
    Given::with(())
        .given(vec![created()])
        .when(create("Red tee", eur(1999)))
        .then_expect_error(CommandError::AlreadyExists("product TEE-RED".into()));
}

#[test]
fn create_with_a_bad_name_or_price_is_refused() {
    let name_error = CommandError::invalid("name", "must be 1 to 200 characters");
    for name in [String::new(), "  ".into(), "n".repeat(201)] {
        Given::with(())
            .given_no_previous_events()
            .when(create(&name, eur(1)))
            .then_expect_error(name_error.clone());
    }
    Given::with(())
        .given_no_previous_events()
        .when(create(&"é".repeat(200), eur(1)))
        .inspect_result()
        .expect("200 characters are allowed, whatever their byte length");
    for price in [eur(0), eur(-5)] {
        Given::with(())
            .given_no_previous_events()
            .when(create("Red tee", price))
            .then_expect_error(CommandError::invalid("price", "must be greater than zero"));
    }
    Given::with(())
        .given_no_previous_events()
        .when(ProductCommand::Create {
            product_id: id(),
            sku: Sku::new("TEE-RED").expect("valid"),
            name: "Red tee".into(),
            description: Some("d".repeat(DESCRIPTION_MAX_CHARS + 1)),
            price: eur(1),
            at: t(0),
        })
        .then_expect_error(CommandError::invalid(
            "description",
            "must be at most 5000 characters",
        ));
}

#[test]
fn change_details_renames() {
    Given::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeDetails {
            name: "Scarlet tee".into(),
            description: None,
            at: t(1),
        })
        .then_expect_events(vec![ProductEvent::DetailsChanged(ProductDetailsChanged {
            name: "Scarlet tee".into(),
            description: None,
            at: t(1),
        })]);
}

#[test]
fn change_details_unchanged_appends_nothing() {
    Given::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangeDetails {
            name: "Red tee".into(),
            description: Some("A red tee".into()),
            at: t(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn change_price_records_the_previous_price() {
    Given::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangePrice {
            price: eur(2499),
            at: t(1),
        })
        .then_expect_events(vec![ProductEvent::PriceChanged(ProductPriceChanged {
            price: eur(2499).into(),
            previous: eur(1999).into(),
            at: t(1),
        })]);
}

#[test]
fn change_price_rejections_and_no_op() {
    Given::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangePrice {
            price: Money::new(2499, Currency::Usd),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid(
            "price.currency",
            "the product is priced in EUR",
        ));
    Given::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangePrice {
            price: eur(0),
            at: t(1),
        })
        .then_expect_error(CommandError::invalid("price", "must be greater than zero"));
    Given::with(())
        .given(vec![created()])
        .when(ProductCommand::ChangePrice {
            price: eur(1999),
            at: t(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn discontinue_once_then_no_op() {
    Given::with(())
        .given(vec![created()])
        .when(ProductCommand::Discontinue { at: t(5) })
        .then_expect_events(vec![discontinued()]);
    Given::with(())
        .given(vec![created(), discontinued()])
        .when(ProductCommand::Discontinue { at: t(6) })
        .then_expect_events(vec![]);
}

#[test]
fn a_discontinued_product_cannot_change() {
    Given::with(())
        .given(vec![created(), discontinued()])
        .when(ProductCommand::ChangePrice {
            price: eur(1),
            at: t(6),
        })
        .then_expect_error(CommandError::invalid_state(
            "change product",
            "discontinued",
        ));
}

#[test]
fn commands_on_a_missing_product_are_not_found() {
    for command in [
        ProductCommand::ChangeDetails {
            name: "x".into(),
            description: None,
            at: t(1),
        },
        ProductCommand::ChangePrice {
            price: eur(1),
            at: t(1),
        },
        ProductCommand::Discontinue { at: t(1) },
    ] {
        Given::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(CommandError::NotFound("product".into()));
    }
}

#[test]
fn the_fold_exposes_the_current_product() {
    let mut product = Product::default();
    assert_eq!(product.status(), None);
    product.apply(created());
    product.apply(ProductEvent::PriceChanged(ProductPriceChanged {
        price: eur(2499).into(),
        previous: eur(1999).into(),
        at: t(1),
    }));
    assert_eq!(product.id(), Some(id()));
    assert_eq!(product.sku(), "TEE-RED");
    assert_eq!(product.name(), "Red tee");
    assert_eq!(product.price(), Some(eur(2499)));
    assert_eq!(product.status(), Some("active"));
    product.apply(discontinued());
    assert_eq!(product.status(), Some("discontinued"));
    assert_eq!(stream_key(&Sku::new("TEE-RED").expect("valid")), "TEE-RED");
}

// --- Schema evolution -------------------------------------------------------------------------

fn stored_v1() -> SerializedEvent {
    SerializedEvent::new(
        "acme/TEE-RED".into(),
        1,
        "product".into(),
        "product.created".into(),
        "1".into(),
        json!({
            "event_type": "product.created",
            "product_id": id().as_uuid(),
            "sku": "TEE-RED",
            "name": "Red tee",
            "description": "A red tee",
            "price_minor": 1999,
            "currency": "EUR",
            "created_at": t(0),
        }),
        json!({}),
    )
}

#[test]
fn a_stored_v1_created_event_is_read_as_v2_and_folds_into_the_same_product() {
    // given
    let registry = upcasters();
    // when
    let upcast = registry.upcast(stored_v1());
    let event: ProductEvent =
        serde_json::from_value(upcast.payload).expect("the upcast payload is a v2 event");
    // then
    assert_eq!(upcast.event_version, "2.0.0");
    assert_eq!(event, created());
    let (mut from_v1, mut from_v2) = (Product::default(), Product::default());
    from_v1.apply(event);
    from_v2.apply(created());
    assert_eq!(from_v1, from_v2);
}

#[test]
fn a_v2_created_event_is_left_alone() {
    let current = SerializedEvent {
        event_version: "2".into(),
        payload: serde_json::to_value(created()).expect("serialises"),
        ..stored_v1()
    };
    assert_eq!(upcasters().upcast(current.clone()), current);
}

#[test]
fn the_v1_rewrite_keeps_unrelated_payloads_intact() {
    assert_eq!(created_v1_to_v2(json!({"a": 1})), json!({"a": 1}));
    assert_eq!(
        created_v1_to_v2(json!({"price_minor": 5})),
        json!({"price_minor": 5})
    );
    assert_eq!(created_v1_to_v2(json!(3)), json!(3));
}
