//! Finding the `commerce` binary the suite runs as child processes.
//!
//! `CARGO_BIN_EXE_*` only names binaries of the test's own package, so the suite asks cargo to
//! build `commerce-api`'s binary (a no-op when `cargo test --workspace` already built it) and
//! takes it from the target folder (`CARGO_TARGET_DIR`, or the workspace's `target/`).
//! `COMMERCE_BIN` names a prebuilt binary instead.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::FaultError;

/// Environment variable naming a prebuilt `commerce` binary (skips the build).
pub const BIN_ENV: &str = "COMMERCE_BIN";

/// The `commerce` binary, built once per test process.
pub fn commerce_binary() -> Result<PathBuf, FaultError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| locate_or_build().map_err(|error| error.to_string()))
        .clone()
        .map_err(|detail| FaultError::Command {
            command: "cargo build -p commerce-api --bin commerce".into(),
            detail,
        })
}

fn locate_or_build() -> Result<PathBuf, FaultError> {
    if let Some(path) = std::env::var_os(BIN_ENV).map(PathBuf::from) {
        return Ok(path);
    }
    let workspace = workspace_root();
    let mut command = commerce_devstack::cargo();
    command
        .args([
            "build",
            "--quiet",
            "-p",
            "commerce-api",
            "--bin",
            "commerce",
        ])
        .current_dir(&workspace);
    let output = command.output().map_err(|error| FaultError::Command {
        command: "cargo build".into(),
        detail: error.to_string(),
    })?;
    if !output.status.success() {
        return Err(FaultError::Command {
            command: "cargo build -p commerce-api --bin commerce".into(),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| workspace.join("target"), |dir| absolute(&workspace, dir));
    let binary = target.join("debug").join("commerce");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(FaultError::Unexpected(format!(
            "no binary at {} after the build",
            binary.display()
        )))
    }
}

/// The workspace this crate belongs to.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

fn absolute(base: &Path, dir: PathBuf) -> PathBuf {
    if dir.is_absolute() {
        dir
    } else {
        base.join(dir)
    }
}
