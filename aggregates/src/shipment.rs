//! shipment aggregate (being written).
