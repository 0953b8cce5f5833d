//! Deterministic ids: everything a process manager creates (reservations, payments, shipments)
//! gets an id derived from what it is for, so a re-run after a crash names the same thing
//! instead of creating a twin.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A stable UUID (RFC 9562 version 8, custom) for the given parts.
pub(crate) fn derived(parts: &[&str]) -> Uuid {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The shipment of an order: one per order, so checkout and compensation name the same one.
pub(crate) fn order_shipment(order_id: Uuid) -> commerce_domain::ShipmentId {
    commerce_domain::ShipmentId::from_uuid(derived(&["shipment", &order_id.to_string()]))
}

/// Lower-case hex of the SHA-256 of `text` (provider references, tracking numbers).
pub(crate) fn digest_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_same_parts_when_derived_twice_then_the_ids_are_equal() {
        assert_eq!(derived(&["order", "1"]), derived(&["order", "1"]));
        assert_eq!(derived(&["order", "1"]).get_version_num(), 8);
    }

    #[test]
    fn given_parts_that_concatenate_alike_when_derived_then_the_ids_differ() {
        assert_ne!(derived(&["ab", "c"]), derived(&["a", "bc"]));
    }
}
