//! The folded state of a shipment and the read-only view the API and sagas use.

use chrono::{DateTime, Utc};
use commerce_contracts::events::ShipmentEvent;
use commerce_domain::{OrderId, ShipmentId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a shipment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    LabelCreated,
    Shipped,
    Delivered,
    Canceled,
}

impl ShipmentStatus {
    /// The status string of the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LabelCreated => "label_created",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Canceled => "canceled",
        }
    }
}

/// A shipment, folded from its events. `status` is `None` until the label exists.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    status: Option<ShipmentStatus>,
    shipment_id: Option<ShipmentId>,
    order_id: Option<OrderId>,
    fulfillment_id: Option<Uuid>,
    carrier: String,
    service: String,
    tracking_number: String,
    label_url: String,
    created_at: Option<DateTime<Utc>>,
    shipped_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
}

impl Shipment {
    /// The lifecycle state; `None` before the label is created.
    #[must_use]
    pub const fn status(&self) -> Option<ShipmentStatus> {
        self.status
    }

    /// The order this shipment delivers.
    #[must_use]
    pub const fn order_id(&self) -> Option<OrderId> {
        self.order_id
    }

    /// The order fulfilment carried, if the order was fulfilled in parts.
    #[must_use]
    pub const fn fulfillment_id(&self) -> Option<Uuid> {
        self.fulfillment_id
    }

    /// The carrier's name.
    #[must_use]
    pub fn carrier(&self) -> &str {
        &self.carrier
    }

    /// The carrier's tracking number.
    #[must_use]
    pub fn tracking_number(&self) -> &str {
        &self.tracking_number
    }

    /// Where the label can be downloaded.
    #[must_use]
    pub fn label_url(&self) -> &str {
        &self.label_url
    }

    pub(super) fn fold(&mut self, event: ShipmentEvent) {
        match event {
            ShipmentEvent::LabelCreated(created) => {
                self.status = Some(ShipmentStatus::LabelCreated);
                self.shipment_id = Some(ShipmentId::from_uuid(created.shipment_id));
                self.order_id = Some(OrderId::from_uuid(created.order_id));
                self.fulfillment_id = created.fulfillment_id;
                self.carrier = created.carrier;
                self.service = created.service;
                self.tracking_number = created.tracking_number;
                self.label_url = created.label_url;
                self.created_at = Some(created.created_at);
            }
            ShipmentEvent::Shipped(shipped) => {
                self.status = Some(ShipmentStatus::Shipped);
                self.shipped_at = Some(shipped.at);
            }
            ShipmentEvent::Delivered(delivered) => {
                self.status = Some(ShipmentStatus::Delivered);
                self.delivered_at = Some(delivered.at);
            }
            ShipmentEvent::Canceled(_) => self.status = Some(ShipmentStatus::Canceled),
        }
    }
}
