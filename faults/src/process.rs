//! Small process helpers: running a command to completion, free ports, root detection.

use std::net::TcpListener;
use std::process::Command;

use crate::FaultError;

/// Runs `command` to completion; a non-zero exit is an error carrying its stderr.
pub(crate) fn run(command: &mut Command) -> Result<std::process::Output, FaultError> {
    let described = format!("{command:?}");
    let output = command.output().map_err(|error| FaultError::Command {
        command: described.clone(),
        detail: error.to_string(),
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(FaultError::Command {
            command: described,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> Result<u16, FaultError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(FaultError::io("bind", "127.0.0.1:0"))
}

pub(crate) fn is_root() -> bool {
    // The effective uid is in /proc on Linux; no libc call needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}
