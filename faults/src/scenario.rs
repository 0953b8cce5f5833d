//! One fault case from start to verdict: private PostgreSQL and Tansu, the engine's processes,
//! a concurrent workload, faults injected at seeded random moments, quiescence, the oracle.

use std::fmt;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::engine::{Component, Engine, EngineSettings};
use crate::kafka::{aggregate_topics, produce_copies, read_all};
use crate::oracle::{Findings, check};
use crate::postgres::{PrivatePostgres, SyncCommit};
use crate::quiesce::backlog;
use crate::rng::Rng;
use crate::tansu::PrivateTansu;
use crate::workload::{TENANT, Workload, WorkloadStats};
use crate::{FaultError, binary};

/// What is injected during a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: the baseline.
    None,
    /// SIGKILL the relay process.
    KillRelay,
    /// SIGKILL a projection worker (two run: the survivor takes its partitions over).
    KillProjections,
    /// SIGKILL the workflow process.
    KillWorkflows,
    /// SIGKILL the API process (commands in flight get no answer).
    KillApi,
    /// SIGKILL the broker, restart it 2–4 s later.
    KillBroker,
    /// `pg_ctl stop -m immediate`, restart 1 s later.
    CrashPostgres,
    /// Republish everything (relay cursor reset) and re-produce 10 % of the records in
    /// reverse order (duplicated and out-of-order delivery).
    Duplicates,
    /// Any of the above, chosen at random each time (the soak).
    Mixed,
}

impl Fault {
    const MIXED: [Self; 7] = [
        Self::KillRelay,
        Self::KillProjections,
        Self::KillWorkflows,
        Self::KillApi,
        Self::KillBroker,
        Self::CrashPostgres,
        Self::Duplicates,
    ];
}

/// The size and shape of a case.
#[derive(Debug, Clone)]
pub struct CaseConfig {
    pub fault: Fault,
    /// Commands in total (across clients); the run also ends at `duration`.
    pub operations: u64,
    pub duration: Duration,
    pub clients: usize,
    pub skus: usize,
    pub seed: u64,
    pub sync: SyncCommit,
    /// Pause between two injections, in milliseconds (random within).
    pub every_ms: (u64, u64),
}

impl CaseConfig {
    /// A CI-sized case: up to 800 commands in at most 10 s of load (about 4 s on a 2-core
    /// machine), with a fault every 0.5–1.2 s, so several faults land mid-load; the whole case
    /// takes 40–70 s there (RELIABILITY.md).
    pub fn quick(fault: Fault) -> Self {
        Self {
            fault,
            operations: 800,
            duration: Duration::from_secs(10),
            clients: 4,
            skus: 6,
            seed: Rng::seed_from_env(),
            sync: SyncCommit::On,
            every_ms: (500, 1_200),
        }
    }
}

/// What a case did and found.
#[derive(Debug)]
pub struct Report {
    pub fault: Fault,
    pub seed: u64,
    pub injected: u64,
    pub stats: WorkloadStats,
    pub kills: String,
    pub restarts: String,
    pub load: Duration,
    pub quiescence: Duration,
    pub findings: Findings,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        let r = &self.findings;
        write!(
            f,
            "fault {:?} seed {}: {} injections ({}; restarts {}) over {:.1} s of load, quiescent after {:.1} s\n  \
             commands: {} attempted, {} acknowledged, refused {:?}, 5xx {:?}, {} without answer, {} retries, {} unknown outcome\n  \
             events {}, kafka records {} ({} duplicate copies), acks checked {}\n  \
             lost acks {}, unpublished {}, misordered {}, read-model differences {}, double charges {}, oversold {}, \
             leaked reservations {}, stuck orders {}, open dead letters {}, workflow dead letters {}\n  orders by status {:?}{}",
            self.fault,
            self.seed,
            self.injected,
            self.kills,
            self.restarts,
            self.load.as_secs_f64(),
            self.quiescence.as_secs_f64(),
            s.attempted,
            s.acknowledged,
            s.refused,
            s.server_errors,
            s.transport_errors,
            s.retries,
            s.unknown_outcome,
            r.events,
            r.kafka_records,
            r.kafka_duplicates,
            r.acks_checked,
            r.lost_acks.len(),
            r.unpublished.len(),
            r.kafka_misordered.len(),
            r.read_model_differences.len(),
            r.double_charges.len(),
            r.oversold.len(),
            r.leaked_reservations.len(),
            r.stuck_orders.len(),
            r.open_dead_letters,
            r.workflow_dead_letters.len(),
            r.orders_by_status,
            r.unsettled
                .as_ref()
                .map_or_else(String::new, |why| format!("\n  NOT QUIESCENT: {why}")),
        )
    }
}

/// Runs one case to its verdict.
pub async fn run_case(config: CaseConfig) -> Result<Report, FaultError> {
    eprintln!(
        "faults: case {:?} with seed {} (FAULTS_SEED={} replays it)",
        config.fault, config.seed, config.seed
    );
    let case_started = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut postgres = tokio::task::spawn_blocking(move || PrivatePostgres::start(config.sync))
        .await
        .map_err(|error| FaultError::Unexpected(error.to_string()))??;
    let mut tansu = PrivateTansu::start()?;
    let database_url = postgres.url("postgres");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&database_url)
        .await?;
    let prefix = format!("f{}.", &Uuid::new_v4().simple().to_string()[..8]);
    let log_dir =
        std::env::temp_dir().join(format!("commerce-faults-logs-{}", Uuid::new_v4().simple()));
    let settings = EngineSettings {
        database_url,
        brokers: tansu.brokers(),
        topic_prefix: prefix.clone(),
        jwt_secret: "faults-suite-secret-faults-suite-secret".into(),
        log_dir: log_dir.clone(),
    };
    let binary = tokio::task::spawn_blocking(binary::commerce_binary)
        .await
        .map_err(|error| FaultError::Unexpected(error.to_string()))??;
    eprintln!(
        "faults: binary ready after {:.1} s",
        case_started.elapsed().as_secs_f64()
    );
    let mut engine = Engine::prepare(&binary, settings, &[TENANT])?;
    let operator = engine.token(TENANT, "operator", "ops")?;
    let customers = (0..8)
        .map(|n| engine.token(TENANT, "customer", &format!("customer-{n}")))
        .collect::<Result<Vec<_>, _>>()?;
    engine.start_all().await?;
    if matches!(config.fault, Fault::KillProjections | Fault::Mixed) {
        engine.spawn(Component::Projections)?;
    }
    eprintln!(
        "faults: engine up after {:.1} s",
        case_started.elapsed().as_secs_f64()
    );
    let mut setup = Workload::new(engine.base_url(), operator.clone(), customers.clone())?;
    setup.setup(config.skus, &mut rng).await?;

    let started = Instant::now();
    let deadline = started + config.duration;
    let per_client = config.operations.div_ceil(config.clients.max(1) as u64);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..config.clients.max(1) {
        let mut workload = Workload::new(engine.base_url(), operator.clone(), customers.clone())?;
        workload.adopt(&setup);
        let mut client_rng = Rng::new(rng.next_u64());
        clients.spawn(async move {
            workload.run(&mut client_rng, per_client, deadline).await;
            workload
        });
    }
    let expected = config.clients.max(1);
    let mut finished = Vec::with_capacity(expected);
    let mut injected = 0;
    let mut next = Instant::now()
        + Duration::from_millis(rng.between(config.every_ms.0 / 2, config.every_ms.1 / 2));
    while finished.len() < expected {
        while let Some(joined) = clients.try_join_next() {
            finished.push(joined.map_err(|error| FaultError::Unexpected(error.to_string()))?);
        }
        engine.supervise()?;
        if config.fault != Fault::None && Instant::now() >= next && Instant::now() < deadline {
            let fault = match config.fault {
                Fault::Mixed => *rng.pick(&Fault::MIXED).unwrap_or(&Fault::KillRelay),
                other => other,
            };
            inject(
                fault,
                &mut rng,
                &mut engine,
                &mut tansu,
                &mut postgres,
                &pool,
                &prefix,
            )
            .await?;
            injected += 1;
            next = Instant::now()
                + Duration::from_millis(rng.between(config.every_ms.0, config.every_ms.1));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut stats = setup.stats.clone();
    let mut acks = std::mem::take(&mut setup.acks);
    for workload in finished {
        merge(&mut stats, &workload.stats);
        acks.extend(workload.acks);
    }
    let load = started.elapsed();

    eprintln!("faults: load done after {:.1} s", load.as_secs_f64());
    let quiet_since = Instant::now();
    // A case that never settles is still checked: the verdict says what was left behind.
    let unsettled = quiesce(&pool, &mut engine, QUIESCENCE).await.err();
    let quiescence = quiet_since.elapsed();
    let kills = format!("{:?}", engine.kills());
    let restarts = format!("{:?}", engine.restarts());
    engine.stop_all();
    eprintln!("faults: quiescent after {:.1} s", quiescence.as_secs_f64());
    let mut findings = check(&pool, &tansu.brokers(), &aggregate_topics(&prefix), &acks).await?;
    findings.unsettled = unsettled.map(|error| error.to_string());
    pool.close().await;
    eprintln!(
        "faults: checked after {:.1} s in all",
        case_started.elapsed().as_secs_f64()
    );
    let report = Report {
        fault: config.fault,
        seed: config.seed,
        injected,
        stats,
        kills,
        restarts,
        load,
        quiescence,
        findings,
    };
    eprintln!("{report}");
    if report.findings.clean() {
        let _ = std::fs::remove_dir_all(&log_dir);
    } else {
        eprintln!("faults: process logs kept in {}", log_dir.display());
        eprintln!(
            "faults: broker storage kept in {}, PostgreSQL data in {}",
            tansu.keep().display(),
            postgres.keep().display()
        );
    }
    Ok(report)
}

fn merge(total: &mut WorkloadStats, part: &WorkloadStats) {
    total.attempted += part.attempted;
    total.acknowledged += part.acknowledged;
    total.transport_errors += part.transport_errors;
    total.unknown_outcome += part.unknown_outcome;
    total.retries += part.retries;
    for (status, count) in &part.refused {
        *total.refused.entry(*status).or_default() += count;
    }
    for (status, count) in &part.server_errors {
        *total.server_errors.entry(*status).or_default() += count;
    }
}

/// How long the engine may take to settle after the load. Generous: a loaded 2-core CI machine
/// runs five debug-build processes, PostgreSQL and the broker at once.
const QUIESCENCE: Duration = Duration::from_secs(150);

/// Supervises the processes until the backlog is settled and stable.
async fn quiesce(pool: &PgPool, engine: &mut Engine, within: Duration) -> Result<(), FaultError> {
    let started = Instant::now();
    let mut previous = None;
    let mut last = String::new();
    while started.elapsed() < within {
        engine.supervise()?;
        match backlog(pool).await {
            Ok(now) => {
                if now.is_settled() && previous.as_ref() == Some(&now) {
                    return Ok(());
                }
                last = format!("{now:?}");
                previous = Some(now);
            }
            Err(error) => {
                last = error.to_string();
                previous = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(750)).await;
    }
    Err(FaultError::Timeout {
        what: format!("quiescence (last reading: {last})"),
        seconds: within.as_secs(),
    })
}

async fn inject(
    fault: Fault,
    rng: &mut Rng,
    engine: &mut Engine,
    tansu: &mut PrivateTansu,
    postgres: &mut PrivatePostgres,
    pool: &PgPool,
    prefix: &str,
) -> Result<(), FaultError> {
    let component = match fault {
        Fault::KillRelay => Some(Component::Relay),
        Fault::KillProjections => Some(Component::Projections),
        Fault::KillWorkflows => Some(Component::Workflows),
        Fault::KillApi => Some(Component::Api),
        _ => None,
    };
    if let Some(component) = component {
        engine.kill(component);
        // Down for a moment, as an orchestrator's restart delay would leave it.
        tokio::time::sleep(Duration::from_millis(rng.between(100, 1_500))).await;
        engine.supervise()?;
        if component == Component::Api {
            engine.wait_healthy(Duration::from_secs(30)).await?;
        }
        return Ok(());
    }
    match fault {
        Fault::KillBroker => {
            tansu.kill();
            tokio::time::sleep(Duration::from_millis(rng.between(2_000, 4_000))).await;
            tansu.restart()?;
        }
        Fault::CrashPostgres => {
            postgres.crash()?;
            tokio::time::sleep(Duration::from_millis(rng.between(500, 1_500))).await;
            postgres.restart()?;
        }
        Fault::Duplicates => duplicate(rng, engine, tansu, pool, prefix).await?,
        _ => {}
    }
    Ok(())
}

/// F4/F5: the relay republishes the whole log (its cursor is reset while it is down), and a
/// random tenth of the records already on the topics is produced again in reverse order.
async fn duplicate(
    rng: &mut Rng,
    engine: &mut Engine,
    tansu: &PrivateTansu,
    pool: &PgPool,
    prefix: &str,
) -> Result<(), FaultError> {
    // Copies need originals: an injection that lands before the relay's first publish (a
    // slow start on a busy machine) would republish nothing twice and prove nothing.
    let published_by = Instant::now() + Duration::from_secs(30);
    loop {
        let published: Option<i64> = sqlx::query_scalar("SELECT max(position) FROM relay_cursor")
            .fetch_one(pool)
            .await?;
        if published.is_some_and(|position| position > 0) || Instant::now() >= published_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    engine.kill(Component::Relay);
    sqlx::query("UPDATE relay_cursor SET transaction_id = '0'::xid8, position = 0")
        .execute(pool)
        .await?;
    engine.supervise()?;
    let brokers = tansu.brokers();
    let topics = aggregate_topics(prefix);
    let records =
        tokio::task::spawn_blocking(move || read_all(&brokers, &topics, Duration::from_secs(30)))
            .await
            .map_err(|error| FaultError::Unexpected(error.to_string()))??;
    let mut chosen: Vec<_> = records.into_iter().filter(|_| rng.chance(10)).collect();
    chosen.reverse();
    let brokers = tansu.brokers();
    tokio::task::spawn_blocking(move || produce_copies(&brokers, &chosen))
        .await
        .map_err(|error| FaultError::Unexpected(error.to_string()))??;
    Ok(())
}
