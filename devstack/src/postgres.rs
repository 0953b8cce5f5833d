//! A private PostgreSQL cluster for development and tests.
//!
//! The cluster lives in `<project>/.local/pg/data`, is created once with `initdb` and reused
//! afterwards, listens on 127.0.0.1 only (a free port chosen at each start, trust authentication
//! on loopback: it is a private development cluster), and keeps `fsync` on so that performance
//! figures measured against it mean something. `initdb` refuses to run as root, so under root
//! every PostgreSQL program runs as the `postgres` user on folders that user owns.

use std::path::{Path, PathBuf};
use std::process::Command;

use uuid::Uuid;

use crate::given::{ensure_answers, postgres_addresses};
use crate::install::{PostgresBinaries, ensure_postgres};
use crate::layout::Layout;
use crate::process::{describe, free_port, is_root, run};
use crate::{DATABASE_URL, DevstackError, env_setting};

/// The OS user that owns the cluster when we run as root.
const SERVICE_USER: &str = "postgres";
/// Appended to `postgresql.conf` right after `initdb`.
const SETTINGS: &str = "
# --- FusionCommerce private development cluster (written by devstack) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
# Every integration test opens its own database and pool, and they run in parallel.
max_connections = 300
fsync = on
synchronous_commit = on
full_page_writes = on
";
/// Prefix of the throwaway databases ([`scratch_database_name`]).
const TEST_DATABASE_PREFIX: &str = "test_";

/// A new name for a throwaway database (a test's, a benchmark run's): `test_`, `label`
/// (ASCII letters and digits only) and a random UUID's hex digits. The private cluster drops
/// every database so named when it starts, so one left behind by a run that was killed does
/// not stay for good; a server named by `DATABASE_URL` is never cleaned.
///
/// # Panics
/// When `label` holds anything but ASCII letters and digits (a programming error).
pub fn scratch_database_name(label: &str) -> String {
    assert!(
        label.bytes().all(|byte| byte.is_ascii_alphanumeric()),
        "a scratch database label is letters and digits: {label:?}"
    );
    format!("{TEST_DATABASE_PREFIX}{label}{}", Uuid::new_v4().simple())
}

/// A PostgreSQL server to use: one we started, one already running in this project, or the
/// external one named by `DATABASE_URL`.
#[derive(Debug)]
pub struct LocalPostgres {
    url: String,
    /// Set only when this handle started the server and must stop it.
    started: Option<Cluster>,
}

impl LocalPostgres {
    /// Uses `DATABASE_URL` when set; otherwise installs PostgreSQL if needed and starts (or reuses)
    /// the project's private cluster.
    pub fn start(layout: &Layout) -> Result<Self, DevstackError> {
        Self::start_with(layout, env_setting(DATABASE_URL))
    }

    /// Uses `existing` when given, otherwise starts (or reuses) the project's private cluster.
    pub fn start_with(layout: &Layout, existing: Option<String>) -> Result<Self, DevstackError> {
        if let Some(url) = existing {
            ensure_answers("PostgreSQL", DATABASE_URL, &url, &postgres_addresses(&url))?;
            return Ok(Self { url, started: None });
        }
        let cluster = Cluster::prepare(layout, ensure_postgres()?)?;
        if let Some(port) = cluster.running_port() {
            tracing::info!(port, "reusing the running private PostgreSQL cluster");
            return Ok(Self {
                url: Cluster::url(port),
                started: None,
            });
        }
        let port = free_port()?;
        cluster.start(port)?;
        cluster.drop_leftover_test_databases(port);
        Ok(Self {
            url: Cluster::url(port),
            started: Some(cluster),
        })
    }

    /// The connection URL (`postgres://...`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether this handle started the server (and so stops it when dropped).
    pub fn started_here(&self) -> bool {
        self.started.is_some()
    }

    /// Leaves the server running after this handle is gone (`devstack up`).
    pub fn detach(mut self) {
        self.started = None;
    }

    /// Stops the server if this handle started it.
    pub fn stop(mut self) -> Result<(), DevstackError> {
        self.started.take().map_or(Ok(()), |cluster| cluster.stop())
    }

    /// Stops the project's private cluster if it is running, whoever started it.
    /// Returns whether it was running.
    pub fn stop_detached(layout: &Layout) -> Result<bool, DevstackError> {
        let Some(binaries) = PostgresBinaries::installed() else {
            return Ok(false);
        };
        let cluster = Cluster::locate(layout, binaries);
        if cluster.running_port().is_none() {
            return Ok(false);
        }
        cluster.stop().map(|()| true)
    }

    /// The URL of the project's private cluster if it is running.
    pub fn running_url(layout: &Layout) -> Option<String> {
        let cluster = Cluster::locate(layout, PostgresBinaries::installed()?);
        cluster.running_port().map(Cluster::url)
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if let Some(cluster) = self.started.take()
            && let Err(error) = cluster.stop()
        {
            tracing::warn!(%error, "could not stop the private PostgreSQL cluster");
        }
    }
}

/// The on-disk cluster and the programs that drive it.
#[derive(Debug)]
struct Cluster {
    binaries: PostgresBinaries,
    base: PathBuf,
    as_service_user: bool,
}

impl Cluster {
    fn url(port: u16) -> String {
        format!("postgres://{SERVICE_USER}@127.0.0.1:{port}/postgres")
    }

    /// Where the cluster of this project lives, without touching the disk.
    fn locate(layout: &Layout, binaries: PostgresBinaries) -> Self {
        let as_service_user = is_root();
        let preferred = layout.postgres_dir();
        let base = if as_service_user && !service_user_can_reach(&preferred) {
            fallback_dir(layout)
        } else {
            preferred
        };
        Self {
            binaries,
            base,
            as_service_user,
        }
    }

    /// Creates the folders (owned by the service user under root) and the cluster, once.
    fn prepare(layout: &Layout, binaries: PostgresBinaries) -> Result<Self, DevstackError> {
        let preferred = layout.postgres_dir();
        std::fs::create_dir_all(&preferred).map_err(DevstackError::io("create", &preferred))?;
        if is_root() {
            run(Command::new("chown").arg(SERVICE_USER).arg(&preferred))?;
        }
        let cluster = Self::locate(layout, binaries);
        if cluster.base != preferred {
            tracing::warn!(
                folder = %cluster.base.display(),
                "the postgres user cannot reach the project folder; the cluster lives outside it"
            );
            std::fs::create_dir_all(&cluster.base)
                .map_err(DevstackError::io("create", &cluster.base))?;
            run(Command::new("chown").arg(SERVICE_USER).arg(&cluster.base))?;
        }
        if !cluster.data_dir().join("PG_VERSION").is_file() {
            cluster.init()?;
        }
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.base.join("postgres.log")
    }

    /// A command running `program` of the installation as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let program = self.binaries.program(program);
        let mut command = if self.as_service_user {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", SERVICE_USER, "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        // The service user may not be allowed into our current folder.
        command.current_dir(&self.base);
        command
    }

    fn init(&self) -> Result<(), DevstackError> {
        let data = self.data_dir();
        if data.exists() {
            // A previous initdb was interrupted: start again from nothing.
            std::fs::remove_dir_all(&data).map_err(DevstackError::io("remove", &data))?;
        }
        eprintln!(
            "devstack: creating the private PostgreSQL cluster in {}",
            data.display()
        );
        run(self.command("initdb").arg("-D").arg(&data).args([
            "-U",
            SERVICE_USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-instructions",
        ]))?;
        let conf = data.join("postgresql.conf");
        let mut contents =
            std::fs::read_to_string(&conf).map_err(DevstackError::io("read", &conf))?;
        contents.push_str(SETTINGS);
        std::fs::write(&conf, contents).map_err(DevstackError::io("write", &conf))
    }

    /// The port of the running server, read from `postmaster.pid` once `pg_ctl status` agrees.
    fn running_port(&self) -> Option<u16> {
        let data = self.data_dir();
        let running = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&data)
            .output()
            .is_ok_and(|output| output.status.success());
        if !running {
            return None;
        }
        // postmaster.pid: pid, data folder, start time, port, ...
        std::fs::read_to_string(data.join("postmaster.pid"))
            .ok()?
            .lines()
            .nth(3)?
            .trim()
            .parse()
            .ok()
    }

    fn start(&self, port: u16) -> Result<(), DevstackError> {
        let mut command = self.command("pg_ctl");
        command
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {port}"));
        // A new process group: Ctrl-C in the terminal must not reach the server directly; it is
        // stopped in order by whoever started it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        tracing::info!(port, "starting the private PostgreSQL cluster");
        run(&mut command).map_err(|error| DevstackError::NotReady {
            service: "PostgreSQL",
            seconds: 60,
            detail: error.to_string(),
            log: self.log_file(),
        })?;
        Ok(())
    }

    fn stop(self) -> Result<(), DevstackError> {
        tracing::info!("stopping the private PostgreSQL cluster");
        run(self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60"]))
        .map(drop)
    }

    /// Databases left by earlier test runs, dropped when the server starts (nobody uses them then).
    fn drop_leftover_test_databases(&self, port: u16) {
        let psql = |sql: &str| {
            let mut command = Command::new(self.binaries.program("psql"));
            command
                .args([
                    "-X",
                    "-A",
                    "-t",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    SERVICE_USER,
                    "-d",
                    "postgres",
                    "-p",
                ])
                .arg(port.to_string())
                .arg("-c")
                .arg(sql);
            command
        };
        let listing = format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, '{TEST_DATABASE_PREFIX}')"
        );
        let names = match run(&mut psql(&listing)) {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(error) => {
                tracing::warn!(%error, "could not list leftover test databases");
                return;
            }
        };
        for name in names
            .lines()
            .map(str::trim)
            .filter(|name| is_test_database_name(name))
        {
            let mut drop_it = psql(&format!("DROP DATABASE IF EXISTS \"{name}\""));
            if let Err(error) = run(&mut drop_it) {
                tracing::warn!(%error, command = describe(&drop_it), "could not drop a test database");
            }
        }
    }
}

/// Only names [`scratch_database_name`] generates are ever dropped.
fn is_test_database_name(name: &str) -> bool {
    name.strip_prefix(TEST_DATABASE_PREFIX).is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|byte| byte.is_ascii_alphanumeric())
    })
}

/// Whether the service user can write into `dir` (a project under `/root` is out of its reach).
fn service_user_can_reach(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", SERVICE_USER, "--", "test", "-w"])
        .arg(dir)
        .current_dir("/")
        .status()
        .is_ok_and(|status| status.success())
}

/// A folder the service user can own, stable for a given project path.
fn fallback_dir(layout: &Layout) -> PathBuf {
    // FNV-1a: a stable, dependency-free name derived from the project path.
    let hash = layout
        .root()
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    PathBuf::from(format!("/var/tmp/fusioncommerce-{hash:016x}/pg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_test_database_names_are_dropped() {
        assert!(is_test_database_name("test_0f3a9c"));
        assert!(!is_test_database_name("test_"));
        assert!(!is_test_database_name("postgres"));
        assert!(!is_test_database_name("test_x\"; DROP"));
    }

    #[test]
    fn given_a_label_when_naming_a_scratch_database_then_the_cluster_start_drops_it() {
        for label in ["", "bench"] {
            let name = scratch_database_name(label);
            assert!(name.starts_with(&format!("test_{label}")), "{name}");
            assert!(is_test_database_name(&name), "{name}");
        }
        assert_ne!(
            scratch_database_name("bench"),
            scratch_database_name("bench")
        );
    }

    #[test]
    #[should_panic(expected = "letters and digits")]
    fn given_a_label_with_punctuation_when_naming_a_scratch_database_then_it_is_refused() {
        scratch_database_name("bench\"; DROP");
    }

    #[test]
    fn the_fallback_folder_is_stable_per_project() {
        let a = fallback_dir(&Layout::new("/root/project"));
        assert_eq!(a, fallback_dir(&Layout::new("/root/project")));
        assert_ne!(a, fallback_dir(&Layout::new("/root/other")));
    }
}
