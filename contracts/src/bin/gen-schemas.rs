//! Regenerates `contracts/schemas/` from the code:
//! `cargo run -p commerce-contracts --bin gen-schemas [DIR]` (DIR defaults to the crate's
//! `schemas/` folder). Commit the result; the drift test fails until the files match the code.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas"),
        PathBuf::from,
    );
    match commerce_contracts::schema::write_all(&dir) {
        Ok(written) => {
            println!("wrote {} schema files to {}", written.len(), dir.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot write schemas to {}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}
