//! Shipment events: a carrier label for an order's fulfilment, then transit and delivery.
//! Names keep the seed's `shipping.` prefix (`shipping.label.created`).

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

super::event_set! {
    /// Everything that can happen to a shipment.
    pub enum ShipmentEvent for "shipment" {
        LabelCreated(ShippingLabelCreated) = "shipping.label.created", version 1;
        Shipped(ShipmentShipped) = "shipping.shipped", version 1;
        Delivered(ShipmentDelivered) = "shipping.delivered", version 1;
        Canceled(ShipmentCanceled) = "shipping.canceled", version 1;
    }
}

/// The carrier issued a label and a tracking number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShippingLabelCreated {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub fulfillment_id: Option<Uuid>,
    pub carrier: String,
    pub service: String,
    pub tracking_number: String,
    pub label_url: String,
    pub created_at: DateTime<Utc>,
}

/// The parcel was handed to the carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentShipped {
    pub at: DateTime<Utc>,
}

/// The carrier delivered the parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentDelivered {
    pub at: DateTime<Utc>,
}

/// The label was voided before shipping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentCanceled {
    pub reason: String,
    pub at: DateTime<Utc>,
}
