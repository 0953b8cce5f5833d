//! Given/when/then tests of every Shipment command and rejection.

use commerce_contracts::events::{
    ShipmentCanceled, ShipmentDelivered, ShipmentEvent, ShipmentShipped, ShippingLabelCreated,
};
use commerce_domain::{OrderId, ShipmentId};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::{CreateLabel, Shipment, ShipmentCommand, ShipmentStatus};
use crate::CommandError;
use crate::testkit::{at_minute as t, fold};

type Framework = TestFramework<Shipment>;

fn ids() -> (ShipmentId, OrderId) {
    (
        ShipmentId::from_uuid(Uuid::from_u128(1)),
        OrderId::from_uuid(Uuid::from_u128(2)),
    )
}

fn create() -> CreateLabel {
    let (shipment_id, order_id) = ids();
    CreateLabel {
        shipment_id,
        order_id,
        fulfillment_id: Some(Uuid::from_u128(3)),
        carrier: "dhl".to_owned(),
        service: "express".to_owned(),
        tracking_number: "TRK1".to_owned(),
        label_url: "https://labels.example/1.pdf".to_owned(),
        at: t(0),
    }
}

fn created() -> ShipmentEvent {
    let (shipment_id, order_id) = ids();
    ShipmentEvent::LabelCreated(ShippingLabelCreated {
        shipment_id: shipment_id.as_uuid(),
        order_id: order_id.as_uuid(),
        fulfillment_id: Some(Uuid::from_u128(3)),
        carrier: "dhl".to_owned(),
        service: "express".to_owned(),
        tracking_number: "TRK1".to_owned(),
        label_url: "https://labels.example/1.pdf".to_owned(),
        created_at: t(0),
    })
}

fn shipped() -> ShipmentEvent {
    ShipmentEvent::Shipped(ShipmentShipped { at: t(1) })
}

fn delivered() -> ShipmentEvent {
    ShipmentEvent::Delivered(ShipmentDelivered { at: t(2) })
}

fn canceled() -> ShipmentEvent {
    ShipmentEvent::Canceled(ShipmentCanceled {
        reason: "order canceled".to_owned(),
        at: t(1),
    })
}

fn cancel() -> ShipmentCommand {
    ShipmentCommand::Cancel {
        reason: "order canceled".to_owned(),
        at: t(1),
    }
}

#[test]
fn create_label_creates_the_shipment() {
    Framework::with(())
        .given_no_previous_events()
        .when(ShipmentCommand::CreateLabel(create()))
        .then_expect_events(vec![created()]);
}

#[test]
fn create_label_twice_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(ShipmentCommand::CreateLabel(create()))
        .then_expect_error(CommandError::AlreadyExists(format!("shipment {}", ids().0)));
}

#[test]
fn create_label_without_tracking_number_is_refused() {
    let mut command = create();
    command.tracking_number = " ".to_owned();
    Framework::with(())
        .given_no_previous_events()
        .when(ShipmentCommand::CreateLabel(command))
        .then_expect_error(CommandError::invalid(
            "tracking_number",
            "must not be empty",
        ));
}

#[test]
fn mark_shipped_ships_a_labelled_parcel() {
    Framework::with(())
        .given(vec![created()])
        .when(ShipmentCommand::MarkShipped { at: t(1) })
        .then_expect_events(vec![shipped()]);
}

#[test]
fn mark_shipped_again_is_a_no_op() {
    Framework::with(())
        .given(vec![created(), shipped()])
        .when(ShipmentCommand::MarkShipped { at: t(5) })
        .then_expect_events(vec![]);
}

#[test]
fn mark_shipped_of_an_unknown_shipment_is_not_found() {
    Framework::with(())
        .given_no_previous_events()
        .when(ShipmentCommand::MarkShipped { at: t(1) })
        .then_expect_error(CommandError::NotFound("shipment".to_owned()));
}

#[test]
fn mark_shipped_after_cancel_is_refused() {
    Framework::with(())
        .given(vec![created(), canceled()])
        .when(ShipmentCommand::MarkShipped { at: t(2) })
        .then_expect_error(CommandError::invalid_state("ship shipment", "canceled"));
}

#[test]
fn mark_delivered_delivers_a_shipped_parcel() {
    Framework::with(())
        .given(vec![created(), shipped()])
        .when(ShipmentCommand::MarkDelivered { at: t(2) })
        .then_expect_events(vec![delivered()]);
}

#[test]
fn mark_delivered_again_is_a_no_op() {
    Framework::with(())
        .given(vec![created(), shipped(), delivered()])
        .when(ShipmentCommand::MarkDelivered { at: t(3) })
        .then_expect_events(vec![]);
}

#[test]
fn mark_delivered_before_shipping_is_refused() {
    Framework::with(())
        .given(vec![created()])
        .when(ShipmentCommand::MarkDelivered { at: t(2) })
        .then_expect_error(CommandError::invalid_state(
            "deliver shipment",
            "label_created",
        ));
}

#[test]
fn mark_delivered_of_an_unknown_shipment_is_not_found() {
    Framework::with(())
        .given_no_previous_events()
        .when(ShipmentCommand::MarkDelivered { at: t(2) })
        .then_expect_error(CommandError::NotFound("shipment".to_owned()));
}

#[test]
fn cancel_voids_an_unshipped_label() {
    Framework::with(())
        .given(vec![created()])
        .when(cancel())
        .then_expect_events(vec![canceled()]);
}

#[test]
fn cancel_again_is_a_no_op() {
    Framework::with(())
        .given(vec![created(), canceled()])
        .when(cancel())
        .then_expect_events(vec![]);
}

#[test]
fn cancel_after_shipping_is_refused() {
    Framework::with(())
        .given(vec![created(), shipped()])
        .when(cancel())
        .then_expect_error(CommandError::invalid_state("cancel shipment", "shipped"));
}

#[test]
fn cancel_of_an_unknown_shipment_is_not_found() {
    Framework::with(())
        .given_no_previous_events()
        .when(cancel())
        .then_expect_error(CommandError::NotFound("shipment".to_owned()));
}

#[test]
fn fold_exposes_the_label_and_status() {
    // given, when
    let shipment: Shipment = fold([created(), shipped(), delivered()]);
    // then
    assert_eq!(shipment.status(), Some(ShipmentStatus::Delivered));
    assert_eq!(
        shipment.status().map(ShipmentStatus::as_str),
        Some("delivered")
    );
    assert_eq!(shipment.order_id(), Some(ids().1));
    assert_eq!(shipment.tracking_number(), "TRK1");
    assert_eq!(shipment.carrier(), "dhl");
}
