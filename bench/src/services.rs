//! The services a run needs: a PostgreSQL server with a fresh database of the run's own, and a
//! private Tansu broker (fresh topics, so projections never see another run's events).

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use commerce_devstack::{Layout, LocalPostgres, LocalTansu, scratch_database_name};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// Everything a run started or created; [`Services::stop`] undoes it.
#[derive(Debug)]
pub struct Services {
    postgres: LocalPostgres,
    broker: LocalTansu,
    server_url: String,
    database: String,
    database_url: String,
    broker_dir: PathBuf,
}

impl Services {
    /// Starts (or reuses) PostgreSQL, starts a private broker in a temporary folder, creates
    /// the run's database.
    pub async fn start() -> anyhow::Result<Self> {
        let existing = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty());
        let broker_dir =
            std::env::temp_dir().join(format!("commerce-bench-{}", std::process::id()));
        std::fs::create_dir_all(&broker_dir).context("create the broker's folder")?;
        let layout = Layout::new(&broker_dir);
        let (postgres, broker) = tokio::task::spawn_blocking(move || {
            let postgres = LocalPostgres::start_with(&Layout::of_this_project(), existing)?;
            let broker = LocalTansu::start_with(&layout, None)?;
            anyhow::Ok((postgres, broker))
        })
        .await??;
        let server_url = postgres.url().to_owned();
        // A scratch name: the private cluster drops the database on its next start if this
        // run is killed before it drops it itself.
        let database = scratch_database_name("bench");
        let mut admin = PgConnection::connect(&server_url)
            .await
            .context("connect to PostgreSQL")?;
        // The name is made of hex digits above: quoting is enough.
        admin
            .execute(format!("CREATE DATABASE \"{database}\"").as_str())
            .await
            .context("create the bench database")?;
        admin.close().await?;
        let database_url = with_database(&server_url, &database);
        Ok(Self {
            postgres,
            broker,
            server_url,
            database,
            database_url,
            broker_dir,
        })
    }

    /// The URL of the run's database.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The URL of the server (its default database), for tools that create their own.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The private broker's bootstrap servers.
    pub fn brokers(&self) -> &str {
        self.broker.brokers()
    }

    /// A pool on the run's database.
    pub async fn pool(&self, connections: u32) -> anyhow::Result<PgPool> {
        let options = PgConnectOptions::from_str(&self.database_url)?;
        Ok(PgPoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await?)
    }

    /// Drops the run's database and stops what was started here.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&self.server_url).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database).as_str())
            .await
            .context("drop the bench database")?;
        admin.close().await?;
        let (postgres, broker) = (self.postgres, self.broker);
        tokio::task::spawn_blocking(move || {
            broker.stop();
            postgres.stop()
        })
        .await??;
        // Best effort: the broker's SQLite files are scratch data.
        let _ = std::fs::remove_dir_all(&self.broker_dir);
        Ok(())
    }
}

/// `url` with its database (the path) replaced by `database`, user, host and parameters kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |at| at + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    let mut result = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_server_url_when_the_database_is_replaced_then_the_rest_is_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "b_1"),
            "postgres://u:p@h:5432/b_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "b_2"), "postgres://h:1/b_2");
    }
}
