//! Fails when the JSON Schemas checked in under `contracts/schemas/` differ from the ones the code
//! generates. Regenerate with `cargo run -p commerce-contracts --bin gen-schemas` or
//! `UPDATE_SCHEMAS=1 cargo test -p commerce-contracts --test schema_drift`, review, and commit.

use std::path::PathBuf;

use commerce_contracts::schema;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn checked_in_schemas_match_the_code() {
    let dir = schemas_dir();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        schema::write_all(&dir).expect("schemas are writable");
    }
    let drifts = schema::check_all(&dir).expect("schemas folder is readable");
    let report: Vec<String> = drifts
        .iter()
        .map(|drift| format!("  contracts/schemas/{drift}"))
        .collect();
    assert!(
        drifts.is_empty(),
        "the published JSON Schemas drifted from the code:\n{}\nIf the change is intended, run \
         `cargo run -p commerce-contracts --bin gen-schemas` (or `UPDATE_SCHEMAS=1 cargo test -p \
         commerce-contracts --test schema_drift`) and commit contracts/schemas/. A changed event \
         payload usually needs a new event_version and an upcaster, not just new schemas.",
        report.join("\n")
    );
}
