//! Why a fault run could not be carried out (distinct from what it found: see [`crate::Findings`]).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("replay: {0}")]
    Replay(#[from] commerce_replay::ReplayError),
    #[error("local services: {0}")]
    Devstack(#[from] commerce_devstack::DevstackError),
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl FaultError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
