//! Finding the service binaries, and installing them when they are missing.
//!
//! PostgreSQL comes from the machine (`apt-get install postgresql` on Debian); Tansu is built with
//! `cargo install`, pinned to the release that builds with the workspace's Rust and has the SQLite
//! storage engine compiled in.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DevstackError;
use crate::process::{is_executable, is_root, run, which};

/// The Tansu release and features the project relies on.
const TANSU_INSTALL: [&str; 5] = [
    "install",
    "tansu@0.6.0",
    "--locked",
    "--features",
    "dynostore,libsql",
];

/// The folder holding `initdb`, `pg_ctl` and `postgres` of one PostgreSQL installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresBinaries {
    bin_dir: PathBuf,
}

impl PostgresBinaries {
    /// The path of one of the installation's programs (`initdb`, `pg_ctl`, `psql`, ...), or the
    /// one on `PATH` when the installation's folder lacks it.
    pub fn program(&self, name: &str) -> PathBuf {
        let own = self.bin_dir.join(name);
        if is_executable(&own) {
            own
        } else {
            which(name).unwrap_or(own)
        }
    }

    fn at(bin_dir: PathBuf) -> Option<Self> {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|program| is_executable(&bin_dir.join(program)))
            .then_some(Self { bin_dir })
    }

    /// The installation found on this machine, if any.
    pub(crate) fn installed() -> Option<Self> {
        which("pg_ctl")
            // Follow links (`/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl`) to the
            // installation's own folder, which also holds `psql`.
            .and_then(|pg_ctl| pg_ctl.canonicalize().ok())
            .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
            .and_then(Self::at)
            .or_else(Self::newest_debian_install)
    }

    /// Debian keeps the server programs off `PATH`, in `/usr/lib/postgresql/<major>/bin`.
    fn newest_debian_install() -> Option<Self> {
        let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let major = entry.file_name().to_str()?.parse().ok()?;
                Some((major, entry.path().join("bin")))
            })
            .collect();
        majors.sort();
        majors.into_iter().rev().find_map(|(_, bin)| Self::at(bin))
    }
}

/// The `tansu` executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TansuBinary {
    path: PathBuf,
}

impl TansuBinary {
    /// Where the executable is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The executable found on this machine, if any.
    pub(crate) fn installed() -> Option<Self> {
        let cargo_bin = cargo_home().map(|home| home.join("bin").join("tansu"));
        which("tansu")
            .or(cargo_bin.filter(|path| is_executable(path)))
            .map(|path| Self { path })
    }
}

/// Finds PostgreSQL's server programs, installing the `postgresql` package on Debian when absent.
pub fn ensure_postgres() -> Result<PostgresBinaries, DevstackError> {
    if let Some(found) = PostgresBinaries::installed() {
        return Ok(found);
    }
    let install_error = |reason: String| DevstackError::Install {
        program: "PostgreSQL",
        reason,
    };
    if !Path::new("/etc/debian_version").exists() {
        return Err(install_error(
            "this is not Debian; install PostgreSQL 15+ (initdb, pg_ctl) or set DATABASE_URL"
                .into(),
        ));
    }
    eprintln!("devstack: PostgreSQL is missing, installing the Debian package `postgresql`");
    let privileged = |program: &str| {
        let mut command = if is_root() {
            Command::new(program)
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("-n").arg(program);
            sudo
        };
        command.env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run(privileged("apt-get").arg("update").arg("-q")).map_err(|e| install_error(e.to_string()))?;
    run(privileged("apt-get").args(["install", "-y", "-q", "postgresql"]))
        .map_err(|e| install_error(e.to_string()))?;
    PostgresBinaries::installed()
        .ok_or_else(|| install_error("the package installed no initdb/pg_ctl".into()))
}

/// Finds `tansu` on `PATH` or in `~/.cargo/bin`, building it with `cargo install` when absent.
pub fn ensure_tansu() -> Result<TansuBinary, DevstackError> {
    if let Some(found) = TansuBinary::installed() {
        return Ok(found);
    }
    eprintln!(
        "devstack: Tansu is missing, running `cargo {}` (about 13 minutes on 2 cores, once)",
        TANSU_INSTALL.join(" ")
    );
    let status = crate::cargo()
        .args(TANSU_INSTALL)
        // Build in cargo's own temporary folder, not in the project's shared target folder.
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .map_err(|source| DevstackError::Install {
            program: "tansu",
            reason: format!("cannot run cargo: {source}"),
        })?;
    if !status.success() {
        return Err(DevstackError::Install {
            program: "tansu",
            reason: format!("`cargo {}` exited with {status}", TANSU_INSTALL.join(" ")),
        });
    }
    TansuBinary::installed().ok_or_else(|| DevstackError::Install {
        program: "tansu",
        reason: "cargo install succeeded but no tansu binary is on PATH or in ~/.cargo/bin".into(),
    })
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}
