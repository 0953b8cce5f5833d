//! The engine under test: built with cargo, launched as child processes of this one, reached
//! over HTTP with tokens this process signs, and watched through `/proc` for its memory.
//!
//! `commerce all` runs every component in one process; while a build lacks it, each component
//! subcommand it has (`serve`, `relay`, `project`, `workflows`) runs as its own process and the
//! memory figures are their sum.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use commerce_devstack::Layout;
use jsonwebtoken::{EncodingKey, Header};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::plan::Profile;

/// The tenant every request of the run acts for.
pub const TENANT: &str = "bench";
/// How long the engine may take to answer `/health` after launch.
const START_WITHIN: Duration = Duration::from_secs(60);
/// How long a component may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Where the workspace and its build output are.
#[derive(Debug, Clone)]
pub struct Binaries {
    root: PathBuf,
    target: PathBuf,
    profile: Profile,
}

impl Binaries {
    /// The binaries of `profile`, in the target folder this program was built into.
    pub fn locate(profile: Profile) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locate commerce-bench")?;
        let target = exe
            .parent()
            .and_then(Path::parent)
            .context("commerce-bench is not inside a cargo target folder")?
            .to_path_buf();
        Ok(Self {
            root: Layout::of_this_project().root().to_path_buf(),
            target,
            profile,
        })
    }

    /// `cargo build` of the `commerce` binary and the relay example in the chosen profile.
    pub async fn build(&self) -> anyhow::Result<()> {
        let mut command = Command::from(commerce_devstack::cargo());
        command
            .current_dir(&self.root)
            .env("CARGO_TARGET_DIR", &self.target)
            .args(["build", "-p", "commerce-api", "--bin", "commerce"])
            .args(["-p", "commerce-relay", "--example", "relay_bench"]);
        if self.profile == Profile::Release {
            command.arg("--release");
        }
        eprintln!("building commerce and relay_bench ({:?})...", self.profile);
        let status = command.status().await.context("run cargo build")?;
        if !status.success() {
            bail!("cargo build failed ({status})");
        }
        Ok(())
    }

    /// The `commerce` binary.
    pub fn commerce(&self) -> PathBuf {
        self.target.join(self.profile.dir()).join("commerce")
    }

    /// The relay's throughput example.
    pub fn relay_bench(&self) -> PathBuf {
        self.target
            .join(self.profile.dir())
            .join("examples")
            .join("relay_bench")
    }
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    components: Vec<Component>,
    base_url: String,
    secret: String,
    /// `all`, or the component subcommands launched instead.
    pub layout: Vec<String>,
}

#[derive(Debug)]
struct Component {
    name: String,
    child: Child,
}

/// The environment every `commerce` process of the run gets.
struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    fn apply(&self, command: &mut Command) {
        command.env_clear();
        for key in ["PATH", "HOME"] {
            if let Ok(value) = std::env::var(key) {
                command.env(key, value);
            }
        }
        for (key, value) in &self.vars {
            command.env(key, value);
        }
    }
}

impl Engine {
    /// Migrates the database, registers the tenant and launches the engine; returns once it
    /// answers `/health`. It runs `all` (or every component subcommand the binary has) unless
    /// `requested` names components: then `serve` and those, each its own process. Component
    /// logs go to `<logs>/engine-<component>.log`. `settings` come last, so they override the
    /// bench's own variables.
    pub async fn start(
        binaries: &Binaries,
        database_url: &str,
        brokers: &str,
        logs: &Path,
        requested: &[String],
        settings: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let bin = binaries.commerce();
        let port = free_port()?;
        let secret = format!(
            "bench-{}-{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let own = [
            ("DATABASE_URL", database_url.to_owned()),
            ("KAFKA_BROKERS", brokers.to_owned()),
            ("COMMERCE_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("COMMERCE_JWT_SECRET", secret.clone()),
            ("COMMERCE_AUDIT_KEY", audit_key().to_owned()),
            // The per-tenant rate limit would otherwise be what is measured.
            ("COMMERCE_RATE_LIMIT_PER_SECOND", "1000000".to_owned()),
            ("COMMERCE_RATE_LIMIT_BURST", "1000000".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ];
        let environment = Environment {
            vars: own
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .chain(settings.iter().cloned())
                .collect(),
        };
        run_once(&bin, &environment, &["migrate"]).await?;
        run_once(&bin, &environment, &["tenant", "add", TENANT]).await?;
        let layout = if requested.is_empty() {
            available_components(&bin, &environment).await?
        } else {
            chosen_components(requested)
        };
        std::fs::create_dir_all(logs)?;
        let mut launched = Vec::new();
        for name in &layout {
            let log = std::fs::File::create(logs.join(format!("engine-{name}.log")))?;
            let mut command = Command::new(&bin);
            environment.apply(&mut command);
            command
                .arg(name)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            let child = command
                .spawn()
                .with_context(|| format!("launch commerce {name}"))?;
            launched.push(Component {
                name: name.clone(),
                child,
            });
        }
        let engine = Self {
            components: launched,
            base_url: format!("http://127.0.0.1:{port}"),
            secret,
            layout,
        };
        engine.wait_healthy().await?;
        Ok(engine)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            let ready = client.get(self.url("/health")).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the engine did not answer /health within {START_WITHIN:?} (see its logs)")
    }

    /// The absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A bearer token of the run's tenant for `sub` with `role`, valid for a day.
    pub fn token(&self, sub: &str, role: &str) -> anyhow::Result<String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            sub: &'a str,
            tenant: &'a str,
            roles: [&'a str; 1],
            exp: i64,
        }
        let claims = Claims {
            sub,
            tenant: TENANT,
            roles: [role],
            exp: chrono::Utc::now().timestamp() + 24 * 3600,
        };
        Ok(jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(self.secret.as_bytes()),
        )?)
    }

    /// The process ids of the engine's components.
    pub fn pids(&self) -> Vec<u32> {
        self.components
            .iter()
            .filter_map(|component| component.child.id())
            .collect()
    }

    /// Stops every component: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for component in &self.components {
            if let Some(pid) = component.child.id().and_then(|id| i32::try_from(id).ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        for component in &mut self.components {
            if tokio::time::timeout(STOP_GRACE, component.child.wait())
                .await
                .is_err()
            {
                eprintln!("commerce {} did not stop in time: killed", component.name);
                component.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// The audit key the engine chains events with, and the verifier checks them with.
pub fn audit_key() -> &'static str {
    "commerce-bench-audit-key-0123456789abcdef"
}

/// Runs a one-shot `commerce` subcommand and fails with its output when it fails.
async fn run_once(bin: &Path, environment: &Environment, args: &[&str]) -> anyhow::Result<()> {
    let mut command = Command::new(bin);
    environment.apply(&mut command);
    let output = command
        .args(args)
        .output()
        .await
        .with_context(|| format!("run {}", bin.display()))?;
    if !output.status.success() {
        bail!(
            "commerce {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `all` when the binary has it, else every component subcommand it has, `serve` first.
async fn available_components(
    bin: &Path,
    environment: &Environment,
) -> anyhow::Result<Vec<String>> {
    let mut command = Command::new(bin);
    environment.apply(&mut command);
    let help = command.arg("--help").output().await?;
    let text = String::from_utf8_lossy(&help.stdout);
    Ok(choose_components(&subcommands(&text)))
}

/// The subcommand names of a clap `--help` text (the indented first words under `Commands:`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// `serve` and the `requested` components, once each, `serve` first.
fn chosen_components(requested: &[String]) -> Vec<String> {
    let mut layout = vec!["serve".to_owned()];
    for name in requested {
        if !layout.contains(name) {
            layout.push(name.clone());
        }
    }
    layout
}

fn choose_components(available: &[String]) -> Vec<String> {
    if available.iter().any(|name| name == "all") {
        return vec!["all".to_owned()];
    }
    ["serve", "relay", "project", "workflows"]
        .into_iter()
        .filter(|name| available.iter().any(|have| have == name))
        .map(str::to_owned)
        .collect()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Resident memory of one process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Current resident set (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set since start or the last [`reset_peak`] (VmHWM).
    pub peak_kib: u64,
}

impl std::ops::Add for Memory {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            rss_kib: self.rss_kib.saturating_add(other.rss_kib),
            peak_kib: self.peak_kib.saturating_add(other.peak_kib),
        }
    }
}

/// The summed memory of `pids` (a process that is gone counts as zero).
pub fn memory(pids: &[u32]) -> Memory {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .map(|status| parse_status(&status))
        .fold(Memory::default(), |sum, one| sum + one)
}

/// Resets the peak (VmHWM) of `pids` to their current RSS (`clear_refs` value 5).
pub fn reset_peak(pids: &[u32]) {
    for pid in pids {
        // Best effort: without the right to write it, peaks are since the process started.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
}

fn parse_status(status: &str) -> Memory {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELP: &str = "FusionCommerce\n\nUsage: commerce [OPTIONS] <COMMAND>\n\nCommands:\n  serve      Serve the HTTP API\n  dev        Run locally\n  relay      Relay\n  workflows  Process managers\n  help       Print this message\n\nOptions:\n  --log <LOG>\n";

    #[test]
    fn given_a_help_text_when_parsed_then_the_subcommands_are_listed() {
        assert_eq!(
            subcommands(HELP),
            ["serve", "dev", "relay", "workflows", "help"]
        );
    }

    #[test]
    fn given_no_all_command_then_each_component_runs_alone() {
        assert_eq!(
            choose_components(&subcommands(HELP)),
            ["serve", "relay", "workflows"]
        );
        let with_all = ["serve".to_owned(), "all".to_owned()];
        assert_eq!(choose_components(&with_all), ["all"]);
    }

    #[test]
    fn given_chosen_components_then_serve_runs_first_and_each_once() {
        let requested = ["relay", "serve", "relay", "project"].map(str::to_owned);
        assert_eq!(chosen_components(&requested), ["serve", "relay", "project"]);
        assert_eq!(chosen_components(&[]), ["serve"]);
    }

    #[test]
    fn given_a_proc_status_when_parsed_then_rss_and_peak_are_read() {
        let status = "Name:\tcommerce\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(
            parse_status(status),
            Memory {
                rss_kib: 102_400,
                peak_kib: 204_800
            }
        );
    }

    #[test]
    fn the_memory_of_this_process_is_readable() {
        let mine = memory(&[std::process::id()]);
        assert!(mine.rss_kib > 0 && mine.peak_kib >= mine.rss_kib);
    }
}
