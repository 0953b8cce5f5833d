//! `commerce replay …`: the auditor tooling of `commerce_replay` on the command line.
//!
//! Each subcommand is a thin wrapper: connect (DATABASE_URL), call the library, print a table
//! or JSON on stdout (progress on stderr). A damaged log or read models that disagree with the
//! event store end the process with a non-zero exit code, after the findings are printed.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use commerce_aggregates::order::Order;
use commerce_aggregates::product;
use commerce_eventstore::{AuditKey, PgEventStore, StreamId};
use commerce_projections::{ReadModel, Rebuild};
use commerce_replay::{
    ExportOptions, ProjectionDifference, ReplayError, Upto, VerifyReport, progress_line,
};
use sqlx::PgPool;

use crate::config::{ConfigArgs, ConfigError};
use crate::connect::ConnectError;

/// What to replay or check.
#[derive(Debug, Clone, Subcommand)]
pub enum ReplayCommand {
    /// Print an order's events with its state after each, to the end, a sequence or a moment.
    Order {
        /// The order id.
        id: String,
        /// The tenant the order belongs to; found among the registered tenants when omitted.
        #[arg(long)]
        tenant: Option<String>,
        /// Replay the events recorded at or before this moment (RFC 3339).
        #[arg(long, conflicts_with = "to_seq")]
        as_of: Option<DateTime<Utc>>,
        /// Replay up to and including this sequence.
        #[arg(long)]
        to_seq: Option<u64>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Verify the integrity of the event log (chain hashes, checkpoints) in DATABASE_URL, or of
    /// an export file offline; needs the engine's COMMERCE_AUDIT_KEY. Exits non-zero on damage.
    Verify {
        /// An export file (`commerce replay export`) to check instead of the database.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export one tenant's events and the checkpoints as JSON Lines (stdout or --out), the
    /// file sealed with COMMERCE_AUDIT_KEY so that `verify --file` detects any change to it.
    Export {
        /// The tenant to export.
        #[arg(long)]
        tenant: String,
        /// Only events recorded at or after this moment (RFC 3339).
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// Only events recorded at or before this moment (RFC 3339).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rebuild a read model (products, inventory, orders, campaigns, payments, shipments) or
    /// `all` from the event store and swap it in; progress on stderr.
    Rebuild {
        /// The read model, or `all`.
        read_model: String,
    },
    /// List where the read models disagree with the event store; exits non-zero when any.
    VerifyProjections {
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Why a replay command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayCliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error("cannot use {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "unknown read model `{0}`: use all, products, inventory, orders, campaigns, payments or shipments"
    )]
    UnknownReadModel(String),
    #[error("the event log is damaged: {0} problem(s) found")]
    Damaged(usize),
    #[error("the read models disagree with the event store in {0} place(s)")]
    Differences(usize),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    #[error("no registered tenant has an order {0}")]
    UnknownOrder(String),
    #[error("order {id} exists in several tenants ({tenants}): pass --tenant")]
    AmbiguousOrder { id: String, tenants: String },
    #[error("cannot look the order's tenant up: {0}")]
    Lookup(#[source] sqlx::Error),
}

/// Runs `command`; `config` gives DATABASE_URL to the commands that read the database.
pub async fn run(command: ReplayCommand, config: &ConfigArgs) -> Result<(), ReplayCliError> {
    match command {
        ReplayCommand::Order {
            id,
            tenant,
            as_of,
            to_seq,
            json,
        } => {
            let upto = match (as_of, to_seq) {
                (Some(moment), _) => Upto::Time(moment),
                (None, Some(sequence)) => Upto::Sequence(sequence),
                (None, None) => Upto::End,
            };
            let store = store(config).await?;
            let tenant = match tenant {
                Some(tenant) => tenant,
                None => tenant_of_order(store.pool(), &id).await?,
            };
            let stream = StreamId::new(tenant, id).map_err(ReplayError::from)?;
            let history = commerce_replay::history::<Order>(&store, &stream, upto).await?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &history).map_err(ReplayError::from)?;
                writeln!(out)?;
            } else {
                write!(out, "{}", history.to_table())?;
            }
            Ok(())
        }
        ReplayCommand::Verify { file, json } => {
            let key = AuditKey::from_env();
            let report = match file {
                Some(path) => {
                    let input = File::open(&path).map_err(|source| ReplayCliError::File {
                        path: path.clone(),
                        source,
                    })?;
                    commerce_replay::verify_export(&key, BufReader::new(input))?
                }
                None => commerce_replay::verify_database(&database(config).await?, &key).await?,
            };
            print_report(&report, json)?;
            if report.is_clean() {
                Ok(())
            } else {
                Err(ReplayCliError::Damaged(report.damage.len()))
            }
        }
        ReplayCommand::Export {
            tenant,
            from,
            to,
            out,
        } => {
            let pool = database(config).await?;
            let mut writer: Box<dyn Write + Send> = match &out {
                Some(path) => Box::new(BufWriter::new(File::create(path).map_err(|source| {
                    ReplayCliError::File {
                        path: path.clone(),
                        source,
                    }
                })?)),
                None => Box::new(BufWriter::new(std::io::stdout())),
            };
            let options = ExportOptions { tenant, from, to };
            let key = AuditKey::from_env();
            let summary = commerce_replay::export(&pool, &key, &options, &mut writer).await?;
            eprintln!(
                "exported {} event(s) and {} checkpoint(s)",
                summary.events, summary.checkpoints
            );
            Ok(())
        }
        ReplayCommand::Rebuild { read_model } => {
            let what = match read_model.as_str() {
                "all" => Rebuild::All,
                name => Rebuild::One(
                    ReadModel::from_name(name)
                        .ok_or_else(|| ReplayCliError::UnknownReadModel(name.to_owned()))?,
                ),
            };
            let store = store(config).await?;
            commerce_projections::migrate(store.pool())
                .await
                .map_err(ReplayError::from)?;
            let summary = commerce_replay::rebuild_read_models(&store, what, |progress| {
                eprintln!("{}", progress_line(progress));
            })
            .await?;
            println!(
                "rebuilt {read_model} from {} event(s) in {:.1} s",
                summary.events,
                summary.elapsed.as_secs_f64()
            );
            Ok(())
        }
        ReplayCommand::VerifyProjections { json } => {
            let store = store(config).await?;
            let differences = commerce_replay::verify_projections(&store).await?;
            print_differences(&differences, json)?;
            if differences.is_empty() {
                Ok(())
            } else {
                Err(ReplayCliError::Differences(differences.len()))
            }
        }
    }
}

/// A pool on DATABASE_URL.
async fn database(config: &ConfigArgs) -> Result<PgPool, ReplayCliError> {
    let url = config
        .database_url
        .as_deref()
        .filter(|url| !url.trim().is_empty())
        .ok_or(ConfigError::Missing("DATABASE_URL"))?;
    Ok(PgPool::connect(url).await.map_err(ConnectError::Database)?)
}

/// The tenant whose order stream `id` is: one index probe per registered tenant.
async fn tenant_of_order(pool: &PgPool, id: &str) -> Result<String, ReplayCliError> {
    let tenants: Vec<String> = sqlx::query_scalar(
        "SELECT t.tenant_id FROM tenants t \
         WHERE EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'order' \
                         AND e.aggregate_id = t.tenant_id || '/' || $1 AND e.sequence = 1) \
         ORDER BY t.tenant_id LIMIT 5",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(ReplayCliError::Lookup)?;
    match <[String; 1]>::try_from(tenants) {
        Ok([tenant]) => Ok(tenant),
        Err(tenants) if tenants.is_empty() => Err(ReplayCliError::UnknownOrder(id.to_owned())),
        Err(tenants) => Err(ReplayCliError::AmbiguousOrder {
            id: id.to_owned(),
            tenants: tenants.join(", "),
        }),
    }
}

/// The event store on DATABASE_URL, with the engine's upcasters and audit key.
async fn store(config: &ConfigArgs) -> Result<PgEventStore, ReplayCliError> {
    Ok(PgEventStore::new(database(config).await?).with_upcasters(product::upcasters()))
}

fn print_report(report: &VerifyReport, json: bool) -> Result<(), ReplayCliError> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report).map_err(ReplayError::from)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "verified {} event(s) in {} stream(s) and {} checkpoint(s): {}",
        report.events,
        report.streams,
        report.checkpoints,
        if report.is_clean() {
            "clean"
        } else {
            "DAMAGED"
        }
    )?;
    for damage in &report.damage {
        writeln!(out, "  {damage}")?;
    }
    Ok(())
}

fn print_differences(
    differences: &[ProjectionDifference],
    json: bool,
) -> Result<(), ReplayCliError> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, differences).map_err(ReplayError::from)?;
        writeln!(out)?;
        return Ok(());
    }
    if differences.is_empty() {
        writeln!(out, "the read models agree with the event store")?;
    }
    let shown = |value: &Option<String>| value.clone().unwrap_or_else(|| "(none)".to_owned());
    for difference in differences {
        writeln!(
            out,
            "{} {} {} {}: read model {}, event store {}",
            difference.tenant_id,
            difference.aggregate_type,
            difference.aggregate_id,
            difference.field,
            shown(&difference.read_model),
            shown(&difference.event_store),
        )?;
    }
    Ok(())
}
