//! Cargo started from a program that cargo itself runs (`cargo run`, `cargo test`): the
//! benchmark building the engine, the fault suite building its binary, devstack installing Tansu.

use std::ffi::OsStr;
use std::process::Command;

/// A `cargo` command (the one that ran this program, when it did) without the variables cargo
/// set for this program's own package. Build scripts that watch them (ring's watches
/// `CARGO_PKG_NAME` and `CARGO_MANIFEST_DIR`) would otherwise see them change between this build
/// and a plain one, and rebuild, with all that depends on them, every time.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        if set_for_the_running_package(&name) {
            command.env_remove(name);
        }
    }
    command
}

/// Whether cargo sets `name` for the package it runs or tests (and so not for a plain build).
fn set_for_the_running_package(name: &OsStr) -> bool {
    name.to_str().is_some_and(|name| {
        name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || matches!(
                name,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_package_s_variables_are_dropped_and_the_build_s_settings_kept() {
        for dropped in [
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ] {
            assert!(
                set_for_the_running_package(OsStr::new(dropped)),
                "{dropped}"
            );
        }
        for kept in [
            "CARGO_TARGET_DIR",
            "CARGO_HOME",
            "CARGO_INCREMENTAL",
            "CARGO",
            "PATH",
        ] {
            assert!(!set_for_the_running_package(OsStr::new(kept)), "{kept}");
        }
    }

    #[test]
    fn given_this_test_run_by_cargo_when_a_cargo_command_is_made_then_its_package_is_unset() {
        let command = cargo();
        let removed: Vec<_> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_owned())
            .collect();
        assert!(
            removed.iter().any(|name| name == "CARGO_PKG_NAME"),
            "{removed:?}"
        );
        assert!(
            removed.iter().any(|name| name == "CARGO_MANIFEST_DIR"),
            "{removed:?}"
        );
    }
}
