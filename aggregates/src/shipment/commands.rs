//! What can be asked of a shipment.

use chrono::{DateTime, Utc};
use commerce_domain::{OrderId, ShipmentId};
use uuid::Uuid;

/// The commands of the Shipment aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum ShipmentCommand {
    /// The carrier issued a label: creates the shipment.
    CreateLabel(CreateLabel),
    /// The parcel was handed to the carrier.
    MarkShipped { at: DateTime<Utc> },
    /// The carrier delivered the parcel.
    MarkDelivered { at: DateTime<Utc> },
    /// Void the label; only before the parcel is shipped.
    Cancel { reason: String, at: DateTime<Utc> },
}

/// A label issued by a carrier for an order's fulfilment.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateLabel {
    pub shipment_id: ShipmentId,
    pub order_id: OrderId,
    /// The order's fulfilment this parcel carries, when the order was fulfilled in parts.
    pub fulfillment_id: Option<Uuid>,
    pub carrier: String,
    pub service: String,
    pub tracking_number: String,
    pub label_url: String,
    pub at: DateTime<Utc>,
}
