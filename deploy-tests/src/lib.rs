//! Reads the deployment files at the workspace root (`docker-compose.yml`, `.env.example`,
//! `Dockerfile`) into plain Rust values, so tests can check what the stack promises: which
//! services exist, how they start, what each engine component is configured with, and that
//! no secret is written into the compose file.
//!
//! The compose file is parsed as YAML (the docker engine is not available on the CI
//! machines); its `<<` merge keys are resolved like compose resolves them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;

/// A deployment file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum DeployFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid compose file: {source}")]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
}

/// The parts of a compose file the checks look at.
#[derive(Debug, Deserialize)]
pub struct Compose {
    pub services: BTreeMap<String, Service>,
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<Value>>,
}

/// One compose service.
#[derive(Debug, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    pub build: Option<Build>,
    pub command: Option<Value>,
    #[serde(default)]
    pub environment: BTreeMap<String, Option<Value>>,
    #[serde(default)]
    pub depends_on: BTreeMap<String, Dependency>,
    pub healthcheck: Option<Healthcheck>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    pub container_name: Option<String>,
    pub restart: Option<String>,
    /// Profiles that enable the service (none: always started).
    #[serde(default)]
    pub profiles: Vec<String>,
}

/// A `build:` section (the long form).
#[derive(Debug, Deserialize)]
pub struct Build {
    pub context: String,
    #[serde(default)]
    pub args: BTreeMap<String, Option<Value>>,
}

/// One `depends_on` entry (the long form, with its condition).
#[derive(Debug, Deserialize)]
pub struct Dependency {
    pub condition: String,
}

/// A `healthcheck:` section.
#[derive(Debug, Deserialize)]
pub struct Healthcheck {
    pub test: Vec<String>,
}

impl Service {
    /// The command as one string (list items joined by spaces).
    pub fn command_line(&self) -> String {
        match &self.command {
            Some(Value::Sequence(items)) => {
                items.iter().map(scalar_text).collect::<Vec<_>>().join(" ")
            }
            Some(value) => scalar_text(value),
            None => String::new(),
        }
    }

    /// An environment value as text (`None` when absent or null).
    pub fn env(&self, name: &str) -> Option<String> {
        self.environment
            .get(name)
            .and_then(Option::as_ref)
            .map(scalar_text)
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        other => serde_norway::to_string(other).unwrap_or_default(),
    }
}

/// The workspace root (where the deployment files live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Reads a file of the workspace root.
pub fn read_root_file(name: &str) -> Result<String, DeployFileError> {
    let path = workspace_root().join(name);
    std::fs::read_to_string(&path).map_err(|source| DeployFileError::Read { path, source })
}

/// Parses compose YAML, resolving `<<` merge keys.
pub fn parse_compose(text: &str) -> Result<Compose, serde_norway::Error> {
    let mut value: Value = serde_norway::from_str(text)?;
    value.apply_merge()?;
    serde_norway::from_value(value)
}

/// Reads and parses the workspace's `docker-compose.yml`.
pub fn load_compose() -> Result<Compose, DeployFileError> {
    let text = read_root_file("docker-compose.yml")?;
    parse_compose(&text).map_err(|source| DeployFileError::Yaml {
        path: workspace_root().join("docker-compose.yml"),
        source,
    })
}

/// The variables a compose text interpolates (`${NAME}`, `${NAME:-default}`,
/// `${NAME:?error}`); `$$` is an escaped dollar, not a variable.
pub fn interpolated_variables(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            rest = escaped;
            continue;
        }
        if let Some(inner) = after.strip_prefix('{') {
            let name: String = inner
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
        rest = after;
    }
    names
}

/// The variables an env file defines (`NAME=value` lines; comments and blanks skipped).
pub fn env_file_variables(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_compose_text_when_scanned_then_every_interpolation_form_is_found() {
        let text =
            "a: ${ONE}\nb: ${TWO:-x}\nc: ${THREE:?set it}\nd: $$NOT_A_VAR\ne: \"$${ESCAPED}\"";
        let names: Vec<String> = interpolated_variables(text).into_iter().collect();
        assert_eq!(names, ["ONE", "THREE", "TWO"]);
    }

    #[test]
    fn given_merge_keys_when_parsed_then_they_are_resolved() {
        let compose = parse_compose(
            "x-base: &base\n  image: app\n  environment: &env\n    A: \"1\"\nservices:\n  s:\n    <<: *base\n    environment:\n      <<: *env\n      B: \"2\"\n",
        )
        .expect("valid compose");
        let service = &compose.services["s"];
        assert_eq!(service.image.as_deref(), Some("app"));
        assert_eq!(service.env("A").as_deref(), Some("1"));
        assert_eq!(service.env("B").as_deref(), Some("2"));
    }

    #[test]
    fn given_an_env_file_when_read_then_comments_are_skipped() {
        let vars = env_file_variables("# c\nA=1\n\nB = two\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("1"));
        assert_eq!(vars.get("B").map(String::as_str), Some("two"));
        assert_eq!(vars.len(), 2);
    }
}
