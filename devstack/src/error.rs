//! The errors of the local-services layer, each one line long and naming what failed.

use std::path::PathBuf;

/// Why a local service could not be installed, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DevstackError {
    /// A program is missing and installing it failed or is impossible here.
    #[error("{program} is not installed and could not be installed: {reason}")]
    Install {
        /// The missing program.
        program: &'static str,
        /// What went wrong, with the manual step to take.
        reason: String,
    },
    /// An external command exited unsuccessfully.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, for the operator to retry by hand.
        command: String,
        /// Its exit status and last line of error output.
        detail: String,
    },
    /// A service was started but never became ready.
    #[error("{service} did not become ready within {seconds} s: {detail} (log: {})", log.display())]
    NotReady {
        /// The service.
        service: &'static str,
        /// How long we waited.
        seconds: u64,
        /// The last observed problem.
        detail: String,
        /// Where the service writes its log.
        log: PathBuf,
    },
    /// A server named by the environment does not answer.
    #[error(
        "{setting} names {value}, but nothing answers at {addresses}: start that server, or unset {setting} to use the project's own {service}"
    )]
    Unreachable {
        /// The service the setting names.
        service: &'static str,
        /// The environment variable.
        setting: &'static str,
        /// Its value.
        value: String,
        /// The addresses tried.
        addresses: String,
    },
    /// A file-system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What we were doing.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl DevstackError {
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
