//! Both local services together: what `devstack up/down/status` and `commerce dev` use.

use std::fmt::Write as _;

use crate::layout::Layout;
use crate::postgres::LocalPostgres;
use crate::tansu::LocalTansu;
use crate::{DATABASE_URL, DevstackError, KAFKA_BROKERS, env_setting};

/// A running PostgreSQL and a running Kafka-protocol broker.
#[derive(Debug)]
pub struct LocalServices {
    postgres: LocalPostgres,
    tansu: LocalTansu,
}

impl LocalServices {
    /// Starts (or reuses, or takes from the environment) both services, installing what is missing.
    pub fn start(layout: &Layout) -> Result<Self, DevstackError> {
        Self::start_with(
            layout,
            env_setting(DATABASE_URL),
            env_setting(KAFKA_BROKERS),
        )
    }

    /// Uses the servers given, and starts (or reuses) local ones for those not given.
    pub fn start_with(
        layout: &Layout,
        database_url: Option<String>,
        kafka_brokers: Option<String>,
    ) -> Result<Self, DevstackError> {
        let postgres = LocalPostgres::start_with(layout, database_url)?;
        let tansu = LocalTansu::start_with(layout, kafka_brokers)?;
        Ok(Self { postgres, tansu })
    }

    /// The PostgreSQL connection URL.
    pub fn database_url(&self) -> &str {
        self.postgres.url()
    }

    /// The Kafka bootstrap servers.
    pub fn kafka_brokers(&self) -> &str {
        self.tansu.brokers()
    }

    /// Shell lines that point a process at these services.
    pub fn env_exports(&self) -> String {
        let mut exports = String::new();
        for (name, value) in [
            (DATABASE_URL, self.database_url()),
            (KAFKA_BROKERS, self.kafka_brokers()),
        ] {
            // Both values are URLs or host:port lists; quoting keeps `?`/`&` literal for the shell.
            let _ = writeln!(exports, "export {name}='{value}'");
        }
        exports
    }

    /// Writes [`Self::env_exports`] to the layout's env file (`.local/devstack.env`).
    pub fn write_env_file(&self, layout: &Layout) -> Result<(), DevstackError> {
        let path = layout.env_file();
        std::fs::create_dir_all(layout.local_dir())
            .map_err(DevstackError::io("create", layout.local_dir()))?;
        std::fs::write(&path, self.env_exports()).map_err(DevstackError::io("write", path))
    }

    /// Leaves both services running after this process exits.
    pub fn detach(self) {
        self.postgres.detach();
        self.tansu.detach();
    }

    /// Stops the services this handle started; reused and external ones keep running.
    pub fn stop(self) -> Result<(), DevstackError> {
        self.tansu.stop();
        self.postgres.stop()
    }
}

/// Which of the project's local services are running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The private cluster's URL, when it runs.
    pub database_url: Option<String>,
    /// The broker's bootstrap servers, when it runs.
    pub kafka_brokers: Option<String>,
}

impl ServiceStatus {
    /// Whether both services run.
    pub fn all_running(&self) -> bool {
        self.database_url.is_some() && self.kafka_brokers.is_some()
    }
}

/// Looks at the project's local services without starting anything.
pub fn status(layout: &Layout) -> ServiceStatus {
    ServiceStatus {
        database_url: LocalPostgres::running_url(layout),
        kafka_brokers: LocalTansu::running_brokers(layout),
    }
}

/// Stops the project's local services, whoever started them, and removes the env file.
/// Returns whether anything was running.
pub fn stop_detached(layout: &Layout) -> Result<bool, DevstackError> {
    let broker = LocalTansu::stop_detached(layout);
    let cluster = LocalPostgres::stop_detached(layout)?;
    // Absent already is fine: the file must simply not point at stopped services.
    let _ = std::fs::remove_file(layout.env_file());
    Ok(broker || cluster)
}
