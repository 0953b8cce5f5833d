//! A local Tansu broker (Kafka protocol) for development and tests.
//!
//! Tansu 0.6.0 runs with its SQLite storage engine in `<project>/.local/tansu/` (durable across
//! restarts; the `memory://` engine of 0.6.0 can skip records inside a batch). It resolves even an
//! absolute storage path against its working folder, so it runs *in* that folder with a relative
//! path. It listens and advertises on 127.0.0.1 (librdkafka may resolve `localhost` to `::1`).
//! A pidfile and a port file let a later process find, reuse or stop a detached broker.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::given::{broker_addresses, ensure_answers};
use crate::install::{TansuBinary, ensure_tansu};
use crate::layout::Layout;
use crate::process::{POLL, free_port, is_alive, port_accepts, runs_program, terminate};
use crate::{DevstackError, KAFKA_BROKERS, env_setting};

/// Best effort: without the indexes the broker works, only slower and busier.
fn index_storage(dir: &Path) {
    if let Err(problem) = crate::tansu_index::index_tansu_storage(dir) {
        tracing::warn!(%problem, "Tansu fetches will slow down as record headers and topics accumulate");
    }
}

/// The SQLite file, relative to the broker's working folder (`sqlite://<folder>/<file>`).
const STORAGE: &str = "sqlite://data/tansu.db";
const READY_WITHIN: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A Kafka-protocol cluster to use: a broker we started, one already running for this project,
/// or the external cluster named by `KAFKA_BROKERS`.
#[derive(Debug)]
pub struct LocalTansu {
    brokers: String,
    /// Set only when this handle started the broker and must stop it.
    started: Option<Broker>,
}

impl LocalTansu {
    /// Uses `KAFKA_BROKERS` when set; otherwise installs Tansu if needed and starts (or reuses)
    /// the project's broker.
    pub fn start(layout: &Layout) -> Result<Self, DevstackError> {
        Self::start_with(layout, env_setting(KAFKA_BROKERS))
    }

    /// Uses `existing` bootstrap servers when given, otherwise starts (or reuses) the project's broker.
    pub fn start_with(layout: &Layout, existing: Option<String>) -> Result<Self, DevstackError> {
        if let Some(brokers) = existing {
            ensure_answers(
                "Tansu",
                KAFKA_BROKERS,
                &brokers,
                &broker_addresses(&brokers),
            )?;
            return Ok(Self {
                brokers,
                started: None,
            });
        }
        let binary = ensure_tansu()?;
        let files = Files::of(layout);
        if let Some(port) = files.running_port() {
            tracing::info!(port, "reusing the running Tansu broker");
            index_storage(&files.dir);
            return Ok(Self {
                brokers: brokers(port),
                started: None,
            });
        }
        let broker = Broker::spawn(&binary, files)?;
        index_storage(&broker.files.dir);
        Ok(Self {
            brokers: brokers(broker.port),
            started: Some(broker),
        })
    }

    /// The bootstrap servers (`host:port`), as `KAFKA_BROKERS` expects them.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Whether this handle started the broker (and so stops it when dropped).
    pub fn started_here(&self) -> bool {
        self.started.is_some()
    }

    /// Leaves the broker running after this handle is gone (`devstack up`).
    pub fn detach(mut self) {
        // Dropping a std `Child` neither kills nor waits: the broker lives on.
        self.started = None;
    }

    /// Stops the broker if this handle started it.
    pub fn stop(mut self) {
        if let Some(broker) = self.started.take() {
            broker.stop();
        }
    }

    /// Stops the project's broker if it is running, whoever started it. Returns whether it was.
    pub fn stop_detached(layout: &Layout) -> bool {
        let files = Files::of(layout);
        match files.running_pid() {
            Some(pid) => {
                tracing::info!(pid, "stopping the Tansu broker");
                terminate(pid, STOP_GRACE);
                files.forget();
                true
            }
            None => false,
        }
    }

    /// The bootstrap servers of the project's broker if it is running.
    pub fn running_brokers(layout: &Layout) -> Option<String> {
        Files::of(layout).running_port().map(brokers)
    }
}

impl Drop for LocalTansu {
    fn drop(&mut self) {
        if let Some(broker) = self.started.take() {
            broker.stop();
        }
    }
}

fn brokers(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The broker's folder and the files in it.
#[derive(Debug)]
struct Files {
    dir: PathBuf,
}

impl Files {
    fn of(layout: &Layout) -> Self {
        Self {
            dir: layout.tansu_dir(),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("tansu.pid")
    }

    fn port_file(&self) -> PathBuf {
        self.dir.join("tansu.port")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }

    fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// The pid in the pidfile, if that process is alive and still a tansu.
    fn running_pid(&self) -> Option<u32> {
        Self::read_number(&self.pid_file())
            .filter(|pid| is_alive(*pid) && runs_program(*pid, "tansu"))
    }

    /// The port of a live broker that accepts connections.
    fn running_port(&self) -> Option<u16> {
        self.running_pid()?;
        Self::read_number(&self.port_file()).filter(|port| port_accepts(*port))
    }

    fn record(&self, pid: u32, port: u16) -> Result<(), DevstackError> {
        for (path, value) in [
            (self.pid_file(), pid.to_string()),
            (self.port_file(), port.to_string()),
        ] {
            std::fs::write(&path, value).map_err(DevstackError::io("write", path))?;
        }
        Ok(())
    }

    fn forget(&self) {
        for path in [self.pid_file(), self.port_file()] {
            // Already absent is fine: the point is that no stale pid survives.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A broker process this program started.
#[derive(Debug)]
struct Broker {
    pid: u32,
    port: u16,
    /// Our child handle, kept to reap the process; `None` once detached.
    child: Option<Child>,
    files: Files,
}

impl Broker {
    fn spawn(binary: &TansuBinary, files: Files) -> Result<Self, DevstackError> {
        let data = files.dir.join("data");
        std::fs::create_dir_all(&data).map_err(DevstackError::io("create", &data))?;
        let log_path = files.log_file();
        let log = open_log(&log_path)?;
        let log_err = log
            .try_clone()
            .map_err(DevstackError::io("open", &log_path))?;
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(binary.path());
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", STORAGE])
            .current_dir(&files.dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // A new process group: Ctrl-C in the terminal must not reach the broker directly.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        tracing::info!(port, "starting the Tansu broker");
        let child = command.spawn().map_err(|source| DevstackError::Command {
            command: crate::process::describe(&command),
            detail: source.to_string(),
        })?;
        let mut broker = Self {
            pid: child.id(),
            port,
            child: Some(child),
            files,
        };
        broker.files.record(broker.pid, port)?;
        if let Err(detail) = broker.wait_until_ready() {
            broker.stop();
            return Err(DevstackError::NotReady {
                service: "Tansu",
                seconds: READY_WITHIN.as_secs(),
                detail,
                log: log_path,
            });
        }
        Ok(broker)
    }

    /// Ready means: the port accepts connections and the broker answers a metadata request.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut last_problem = "the port never accepted connections".to_owned();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("the broker exited with {status}"));
            }
            if port_accepts(self.port) {
                match answers_metadata(&brokers(self.port)) {
                    Ok(()) => return Ok(()),
                    Err(problem) => last_problem = problem,
                }
            }
            thread::sleep(POLL);
        }
        Err(last_problem)
    }

    fn stop(mut self) {
        tracing::info!(pid = self.pid, "stopping the Tansu broker");
        terminate(self.pid, STOP_GRACE);
        if let Some(child) = self.child.as_mut() {
            // Reap it so no zombie remains while we keep running.
            let _ = child.wait();
        }
        self.files.forget();
    }
}

fn open_log(path: &Path) -> Result<File, DevstackError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(DevstackError::io("open", path))
}

/// One metadata round trip with librdkafka, the client every component uses.
fn answers_metadata(brokers: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|error| error.to_string())?;
    consumer
        .fetch_metadata(None, Duration::from_secs(3))
        .map(drop)
        .map_err(|error| format!("metadata request failed: {error}"))
}
