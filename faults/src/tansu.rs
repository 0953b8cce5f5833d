//! A Tansu broker of the suite's own (SQLite storage in a temporary folder) that it may kill
//! with SIGKILL and restart on the same port and data.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use commerce_devstack::ensure_tansu;
use uuid::Uuid;

use crate::FaultError;
use crate::process::free_port;

const READY_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct PrivateTansu {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    keep: bool,
}

impl PrivateTansu {
    pub fn start() -> Result<Self, FaultError> {
        let dir =
            std::env::temp_dir().join(format!("commerce-faults-tansu-{}", Uuid::new_v4().simple()));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(FaultError::io("create", &data))?;
        let mut broker = Self {
            dir,
            port: free_port()?,
            child: None,
            keep: false,
        };
        broker.restart()?;
        Ok(broker)
    }

    /// Bootstrap servers, as `KAFKA_BROKERS` expects them.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the broker (again) and waits until its port accepts connections.
    pub fn restart(&mut self) -> Result<(), FaultError> {
        let binary = ensure_tansu()?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.dir.join("tansu.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(FaultError::io("open", &log_path))?;
        let log_err = log.try_clone().map_err(FaultError::io("open", &log_path))?;
        let mut command = Command::new(binary.path());
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            // Tansu 0.6.0 resolves the storage path against its working folder: keep it relative.
            .args(["--storage-engine", "sqlite://data/tansu.db"])
            .current_dir(&self.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(FaultError::io("spawn", binary.path()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(FaultError::Timeout {
                    what: "the private Tansu".into(),
                    seconds: READY_WITHIN.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Leaves the broker's folder (SQLite storage and log) behind when dropped, as evidence of a
    /// case that failed; returns where it is.
    pub fn keep(&mut self) -> &std::path::Path {
        self.keep = true;
        &self.dir
    }

    /// F1: SIGKILL, no chance to flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.kill();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
