//! The engine as child processes of the suite: `commerce serve`, `relay`, `project` and
//! `workflows`, each started from the real binary with its configuration in the environment,
//! each killable with SIGKILL and restarted by a small supervisor (as an orchestrator would:
//! a component that exits is started again, and the restart is counted).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::FaultError;
use crate::process::{free_port, run};

/// One kind of engine process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Api,
    Relay,
    Projections,
    Workflows,
}

impl Component {
    pub const ALL: [Self; 4] = [Self::Api, Self::Relay, Self::Projections, Self::Workflows];

    fn subcommand(self) -> &'static str {
        match self {
            Self::Api => "serve",
            Self::Relay => "relay",
            Self::Projections => "project",
            Self::Workflows => "workflows",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Relay => "relay",
            Self::Projections => "projections",
            Self::Workflows => "workflows",
        }
    }
}

/// What every process of one engine shares.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub database_url: String,
    pub brokers: String,
    /// Put before every topic name: isolates this engine on a shared broker.
    pub topic_prefix: String,
    pub jwt_secret: String,
    /// Folder for the processes' logs.
    pub log_dir: PathBuf,
}

#[derive(Debug)]
struct Running {
    component: Component,
    child: Child,
    /// False once the suite stopped it on purpose (it is not restarted then).
    supervised: bool,
}

/// The running processes of one engine.
#[derive(Debug)]
pub struct Engine {
    binary: PathBuf,
    settings: EngineSettings,
    http_port: u16,
    processes: Vec<Running>,
    /// Unplanned exits the supervisor restarted, per component.
    restarts: BTreeMap<Component, u32>,
    /// SIGKILLs the suite sent, per component.
    kills: BTreeMap<Component, u32>,
}

impl Engine {
    /// Migrates the database, registers `tenants`, and starts nothing yet.
    pub fn prepare(
        binary: &Path,
        settings: EngineSettings,
        tenants: &[&str],
    ) -> Result<Self, FaultError> {
        std::fs::create_dir_all(&settings.log_dir)
            .map_err(FaultError::io("create", &settings.log_dir))?;
        let engine = Self {
            binary: binary.to_path_buf(),
            settings,
            http_port: free_port()?,
            processes: Vec::new(),
            restarts: BTreeMap::new(),
            kills: BTreeMap::new(),
        };
        engine.once(&["migrate"])?;
        for tenant in tenants {
            engine.once(&["tenant", "add", tenant])?;
        }
        Ok(engine)
    }

    /// The API's base URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A token minted by `commerce token`.
    pub fn token(&self, tenant: &str, role: &str, sub: &str) -> Result<String, FaultError> {
        let output = self.once(&[
            "token",
            "--tenant",
            tenant,
            "--role",
            role,
            "--sub",
            sub,
            "--ttl-secs",
            "86400",
        ])?;
        Ok(output.trim().to_owned())
    }

    /// Runs a one-shot subcommand and returns its standard output.
    pub fn once(&self, args: &[&str]) -> Result<String, FaultError> {
        let mut command = self.command();
        command.args(args);
        let output = run(&mut command)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts one more process of `component`.
    pub fn spawn(&mut self, component: Component) -> Result<(), FaultError> {
        let log_path = self
            .settings
            .log_dir
            .join(format!("{}.log", component.name()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(FaultError::io("open", &log_path))?;
        let log_err = log.try_clone().map_err(FaultError::io("open", &log_path))?;
        let mut command = self.command();
        command
            .arg(component.subcommand())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(FaultError::io("spawn", &self.binary))?;
        self.processes.push(Running {
            component,
            child,
            supervised: true,
        });
        Ok(())
    }

    /// Starts one process of every component and waits until the API answers `/health`.
    pub async fn start_all(&mut self) -> Result<(), FaultError> {
        for component in Component::ALL {
            self.spawn(component)?;
        }
        self.wait_healthy(Duration::from_secs(60)).await
    }

    /// Waits until `/health` answers 200.
    pub async fn wait_healthy(&self, within: Duration) -> Result<(), FaultError> {
        let client = reqwest::Client::new();
        let url = format!("{}/health", self.base_url());
        let deadline = Instant::now() + within;
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(FaultError::Timeout {
                    what: "the API's /health".into(),
                    seconds: within.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL to the oldest running process of `component`; it is restarted by
    /// [`Engine::supervise`] like any crashed process. Returns whether one was running.
    pub fn kill(&mut self, component: Component) -> bool {
        let Some(running) = self
            .processes
            .iter_mut()
            .find(|running| running.component == component && running.supervised)
        else {
            return false;
        };
        let _ = running.child.kill();
        let _ = running.child.wait();
        *self.kills.entry(component).or_default() += 1;
        true
    }

    /// Restarts every process that exited; returns how many were restarted.
    pub fn supervise(&mut self) -> Result<u32, FaultError> {
        let mut exited = Vec::new();
        self.processes.retain_mut(|running| {
            let gone = running.supervised && matches!(running.child.try_wait(), Ok(Some(_)));
            if gone {
                exited.push(running.component);
            }
            !gone
        });
        for component in &exited {
            self.spawn(*component)?;
            *self.restarts.entry(*component).or_default() += 1;
        }
        Ok(u32::try_from(exited.len()).unwrap_or(u32::MAX))
    }

    /// Stops every process with SIGTERM (graceful), SIGKILL after a grace period.
    pub fn stop_all(&mut self) {
        for running in &mut self.processes {
            running.supervised = false;
            let _ = Command::new("kill")
                .args(["-TERM", &running.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for running in &mut self.processes {
            while matches!(running.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
        self.processes.clear();
    }

    /// SIGKILLs the suite sent, per component.
    pub fn kills(&self) -> &BTreeMap<Component, u32> {
        &self.kills
    }

    /// Restarts after unplanned or injected exits, per component.
    pub fn restarts(&self) -> &BTreeMap<Component, u32> {
        &self.restarts
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        let settings = &self.settings;
        command
            .env("DATABASE_URL", &settings.database_url)
            .env("KAFKA_BROKERS", &settings.brokers)
            .env("COMMERCE_JWT_SECRET", &settings.jwt_secret)
            .env(
                "COMMERCE_HTTP_ADDR",
                format!("127.0.0.1:{}", self.http_port),
            )
            .env("COMMERCE_TOPIC_PREFIX", &settings.topic_prefix)
            .env(
                "COMMERCE_PROJECTION_GROUP",
                format!("{}projections", settings.topic_prefix),
            )
            // The workload is one tenant bursting on purpose: rate limits are another test's.
            .env("COMMERCE_RATE_LIMIT_PER_SECOND", "100000")
            .env("COMMERCE_RATE_LIMIT_BURST", "100000")
            // `FAULTS_RUST_LOG` (e.g. `warn,librdkafka=debug` with `COMMERCE_KAFKA_DEBUG`) when
            // a case needs more than warnings from the processes.
            .env(
                "RUST_LOG",
                std::env::var("FAULTS_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .current_dir(&settings.log_dir);
        command
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for running in &mut self.processes {
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}
