//! A PostgreSQL cluster of the suite's own, in a temporary folder, that it may crash at will
//! (`pg_ctl stop -m immediate`: no checkpoint, WAL replay at the next start) without touching
//! the shared development cluster other engineers use.
//!
//! `initdb` refuses to run as root, so under root every program runs as `postgres` on a folder
//! that user owns (the same rule as `commerce-devstack`).

use std::path::PathBuf;
use std::process::Command;

use commerce_devstack::{PostgresBinaries, ensure_postgres};
use uuid::Uuid;

use crate::FaultError;
use crate::process::{free_port, is_root, run};

const SERVICE_USER: &str = "postgres";

/// Durability of commits: the engine's guarantee holds with `On`; `Off` documents the loss window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncCommit {
    On,
    Off,
}

/// A private cluster; dropped = crashed and deleted.
#[derive(Debug)]
pub struct PrivatePostgres {
    binaries: PostgresBinaries,
    base: PathBuf,
    port: u16,
    running: bool,
    keep: bool,
}

impl PrivatePostgres {
    /// Creates and starts a cluster on a free port.
    pub fn start(sync: SyncCommit) -> Result<Self, FaultError> {
        let binaries = ensure_postgres()?;
        let base =
            std::env::temp_dir().join(format!("commerce-faults-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&base).map_err(FaultError::io("create", &base))?;
        if is_root() {
            run(Command::new("chown").arg(SERVICE_USER).arg(&base))?;
        }
        let mut cluster = Self {
            binaries,
            base,
            port: free_port()?,
            running: false,
            keep: false,
        };
        cluster.init(sync)?;
        cluster.boot()?;
        Ok(cluster)
    }

    /// Leaves the cluster's folder behind when dropped (stopped), as evidence of a case that
    /// failed; returns its data directory (`pg_ctl start -D` it to look inside).
    pub fn keep(&mut self) -> PathBuf {
        self.keep = true;
        self.data_dir()
    }

    /// A URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SERVICE_USER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// F3: stops the server the way a power cut would (`pg_ctl stop -m immediate`: no
    /// shutdown checkpoint, WAL replay at the next start).
    pub fn crash(&mut self) -> Result<(), FaultError> {
        run(self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "30"]))?;
        self.running = false;
        Ok(())
    }

    /// Starts the server again after [`PrivatePostgres::crash`] (crash recovery first).
    pub fn restart(&mut self) -> Result<(), FaultError> {
        self.boot()
    }

    fn data_dir(&self) -> PathBuf {
        self.base.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let program = self.binaries.program(program);
        let mut command = if is_root() {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", SERVICE_USER, "--"]).arg(program);
            runuser
        } else {
            Command::new(program)
        };
        command.current_dir(&self.base);
        command
    }

    fn init(&self, sync: SyncCommit) -> Result<(), FaultError> {
        let data = self.data_dir();
        run(self.command("initdb").arg("-D").arg(&data).args([
            "-U",
            SERVICE_USER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-instructions",
            "--no-sync",
        ]))?;
        let conf = data.join("postgresql.conf");
        let mut contents = std::fs::read_to_string(&conf).map_err(FaultError::io("read", &conf))?;
        let synchronous_commit = match sync {
            SyncCommit::On => "on",
            SyncCommit::Off => "off",
        };
        contents.push_str(&format!(
            "\n# commerce-faults private cluster\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\nmax_connections = 200\nfsync = on\n\
             full_page_writes = on\nsynchronous_commit = {synchronous_commit}\n"
        ));
        std::fs::write(&conf, contents).map_err(FaultError::io("write", &conf))
    }

    fn boot(&mut self) -> Result<(), FaultError> {
        let mut command = self.command("pg_ctl");
        command
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.base.join("postgres.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!("-p {}", self.port));
        // Its own process group: a Ctrl-C in the test's terminal must not reach it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        run(&mut command)?;
        self.running = true;
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self.crash();
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}
