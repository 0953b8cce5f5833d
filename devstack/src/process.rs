//! Small helpers around child processes, ports and signals shared by both services.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::DevstackError;

/// How often readiness and exit are polled.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Asks the kernel for a port nobody listens on. Another process could take it before our
/// service binds it; the window is short and a failed start says so.
pub(crate) fn free_port() -> Result<u16, DevstackError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(DevstackError::io("bind a free port on", "127.0.0.1"))?;
    let addr = listener
        .local_addr()
        .map_err(DevstackError::io("read the free port of", "127.0.0.1"))?;
    Ok(addr.port())
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub(crate) fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Runs a command to completion; a non-zero exit becomes an error carrying its last output line.
pub(crate) fn run(command: &mut Command) -> Result<Output, DevstackError> {
    let output = command.output().map_err(|source| DevstackError::Command {
        command: describe(command),
        detail: source.to_string(),
    })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(DevstackError::Command {
            command: describe(command),
            detail: format!("{}: {}", output.status, last_line(&output)),
        })
    }
}

/// The command line as a human would type it.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn last_line(output: &Output) -> String {
    [&output.stderr, &output.stdout]
        .iter()
        .flat_map(|bytes| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .rfind(|line| !line.is_empty())
        .unwrap_or_else(|| "no output".to_owned())
}

/// Whether the current process runs as root (PostgreSQL then runs as the `postgres` user).
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Finds `program` on `PATH`.
pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether a process with this id exists.
pub(crate) fn is_alive(pid: u32) -> bool {
    to_pid(pid).is_some_and(|pid| kill(pid, None).is_ok())
}

/// Whether process `pid` runs `program` (guards against a recycled pid in a stale pidfile).
pub(crate) fn runs_program(pid: u32, program: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|byte| *byte == 0)
            .next()
            .is_some_and(|argv0| String::from_utf8_lossy(argv0).ends_with(program))
    })
}

/// Sends SIGTERM, waits up to `grace` for the process to go, then sends SIGKILL.
pub(crate) fn terminate(pid: u32, grace: Duration) {
    let Some(target) = to_pid(pid) else { return };
    if kill(target, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_alive(pid) || is_zombie(pid) {
            return;
        }
        thread::sleep(POLL);
    }
    tracing::warn!(pid, "process ignored SIGTERM, killing it");
    // It may exit between the check and the signal; either way it is gone afterwards.
    let _ = kill(target, Signal::SIGKILL);
}

/// A child of ours that exited but was not reaped yet still "exists" for `kill(pid, 0)`.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|pid| *pid > 0)
        .map(Pid::from_raw)
}
