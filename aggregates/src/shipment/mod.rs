//! The Shipment aggregate: one carrier label for an order (or one of its fulfilments), then
//! transit and delivery.
//!
//! Lifecycle: `label_created → shipped → delivered`, or `label_created → canceled` (a label can
//! only be voided before the parcel leaves). Repeating a transition that already happened
//! (`MarkShipped` twice, `Cancel` of a canceled label) is a no-op with no event; going backwards
//! is refused.
//!
//! Layout: [`ShipmentCommand`] in `commands.rs`, the folded state [`Shipment`] with its `apply` in
//! `state.rs`, the command handler here.

mod commands;
mod state;
#[cfg(test)]
mod tests;

use commerce_contracts::events::{
    ShipmentCanceled, ShipmentDelivered, ShipmentEvent, ShipmentShipped, ShippingLabelCreated,
};
use commerce_domain::ShipmentId;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

use crate::{CommandError, guard};

pub use commands::{CreateLabel, ShipmentCommand};
pub use state::{Shipment, ShipmentStatus};

/// The stream key of a shipment (the executor prefixes the tenant).
#[must_use]
pub fn stream_key(shipment_id: &ShipmentId) -> String {
    shipment_id.to_string()
}

impl Aggregate for Shipment {
    const TYPE: &'static str = "shipment";
    type Command = ShipmentCommand;
    type Event = ShipmentEvent;
    type Error = CommandError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = self.decide(command)?;
        guard::write_all(self, sink, events).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.fold(event);
    }
}

impl Shipment {
    fn decide(&self, command: ShipmentCommand) -> Result<Vec<ShipmentEvent>, CommandError> {
        match command {
            ShipmentCommand::CreateLabel(create) => self.create_label(create),
            ShipmentCommand::MarkShipped { at } => {
                let status = self.existing()?;
                match status {
                    ShipmentStatus::LabelCreated => {
                        Ok(vec![ShipmentEvent::Shipped(ShipmentShipped { at })])
                    }
                    ShipmentStatus::Shipped | ShipmentStatus::Delivered => Ok(vec![]),
                    ShipmentStatus::Canceled => Err(CommandError::invalid_state(
                        "ship shipment",
                        status.as_str(),
                    )),
                }
            }
            ShipmentCommand::MarkDelivered { at } => {
                let status = self.existing()?;
                match status {
                    ShipmentStatus::Shipped => {
                        Ok(vec![ShipmentEvent::Delivered(ShipmentDelivered { at })])
                    }
                    ShipmentStatus::Delivered => Ok(vec![]),
                    ShipmentStatus::LabelCreated | ShipmentStatus::Canceled => Err(
                        CommandError::invalid_state("deliver shipment", status.as_str()),
                    ),
                }
            }
            ShipmentCommand::Cancel { reason, at } => {
                let status = self.existing()?;
                match status {
                    ShipmentStatus::LabelCreated => {
                        Ok(vec![ShipmentEvent::Canceled(ShipmentCanceled {
                            reason,
                            at,
                        })])
                    }
                    ShipmentStatus::Canceled => Ok(vec![]),
                    ShipmentStatus::Shipped | ShipmentStatus::Delivered => Err(
                        CommandError::invalid_state("cancel shipment", status.as_str()),
                    ),
                }
            }
        }
    }

    fn create_label(&self, create: CreateLabel) -> Result<Vec<ShipmentEvent>, CommandError> {
        guard::not_created(self.status().is_some(), "shipment", create.shipment_id)?;
        for (field, value) in [
            ("carrier", &create.carrier),
            ("service", &create.service),
            ("tracking_number", &create.tracking_number),
            ("label_url", &create.label_url),
        ] {
            if value.trim().is_empty() {
                return Err(CommandError::invalid(field, "must not be empty"));
            }
        }
        Ok(vec![ShipmentEvent::LabelCreated(ShippingLabelCreated {
            shipment_id: create.shipment_id.as_uuid(),
            order_id: create.order_id.as_uuid(),
            fulfillment_id: create.fulfillment_id,
            carrier: create.carrier,
            service: create.service,
            tracking_number: create.tracking_number,
            label_url: create.label_url,
            created_at: create.at,
        })])
    }

    fn existing(&self) -> Result<ShipmentStatus, CommandError> {
        guard::created(self.status(), "shipment")
    }
}
