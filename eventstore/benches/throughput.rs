//! Throughput of the command path against plain INSERT commits, same server, same run.
//!
//! Prints (does not assert) commands per second on distinct aggregates at 1, 8 and 32
//! concurrent writers, beside single-row INSERT commits into the same PostgreSQL at the same
//! concurrency; the ratio is the figure of merit. Needs `DATABASE_URL`; creates its own
//! database there. The four workloads of one concurrency level run interleaved, in
//! `ROUNDS` rounds of `BENCH_SECONDS` each (default 2), so that disk contention from other
//! processes on the machine hits them alike. The last column puts back, for comparison, the
//! `NOTIFY` trigger that ran inside every append transaction before wake-ups left the commit
//! path (migration `20260101000900`).
//!
//! Run: `cargo bench -p commerce-eventstore --bench throughput`
//! (add `--profile dev` to reuse the test build).

// The test fixture aggregate; the benchmark uses only its `Add` command.
#[allow(dead_code)]
#[path = "../tests/common/counter.rs"]
mod counter;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commerce_devstack::testkit::TestDatabase;
use commerce_eventstore::{
    CommandContext, CommandExecutor, EventMetadata, PgEventStore, StreamId, migrate,
};
use counter::{Counter, CounterCommand};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const WRITERS: [usize; 3] = [1, 8, 32];
const ROUNDS: u32 = 3;

#[derive(Clone, Copy)]
enum Workload {
    /// Each writer keeps commanding its own aggregate (the cached path).
    EngineWarm,
    /// Every command goes to a new aggregate (cold load: snapshot and event reads, then append).
    EngineCold,
    /// `INSERT INTO plain ...` in autocommit: one row, one commit.
    PlainInsert,
}

#[tokio::main]
async fn main() {
    let window = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(2),
    );
    let db = TestDatabase::create()
        .await
        .expect("a database on the server in DATABASE_URL");
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .connect(db.url())
        .await
        .expect("connect");
    migrate(&pool).await.expect("migrate");
    sqlx::query("CREATE TABLE plain (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL)")
        .execute(&pool)
        .await
        .expect("baseline table");
    // The trigger the engine had before wake-ups left the commit path, kept here (disabled
    // outside its column) so one run compares both.
    for statement in [
        "CREATE FUNCTION bench_notify_in_commit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_notify('commerce_events', ''); RETURN NULL; END; $$",
        "CREATE TRIGGER bench_notify_in_commit AFTER INSERT ON events \
         FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_in_commit()",
        "ALTER TABLE events DISABLE TRIGGER bench_notify_in_commit",
    ] {
        sqlx::query(statement)
            .execute(&pool)
            .await
            .expect("the old notify trigger");
    }
    let store = PgEventStore::new(pool.clone());
    let executor = CommandExecutor::<Counter>::new(store, ());

    println!(
        "{ROUNDS} interleaved rounds of {window:?} per cell; commands/s (engine) vs commits/s (plain INSERT)"
    );
    println!(
        "writers | plain INSERT/s | engine warm cmd/s (ratio) | engine cold cmd/s (ratio) | warm, old NOTIFY-in-commit trigger (ratio)"
    );
    for writers in WRITERS {
        let (mut plain, mut warm, mut cold, mut in_commit) = (0, 0, 0, 0);
        for _ in 0..ROUNDS {
            plain += run(&pool, &executor, Workload::PlainInsert, writers, window).await;
            warm += run(&pool, &executor, Workload::EngineWarm, writers, window).await;
            cold += run(&pool, &executor, Workload::EngineCold, writers, window).await;
            set_notify_trigger(&pool, true).await;
            in_commit += run(&pool, &executor, Workload::EngineWarm, writers, window).await;
            set_notify_trigger(&pool, false).await;
        }
        let rounds = u64::from(ROUNDS);
        let (plain, warm, cold, in_commit) = (
            plain / rounds,
            warm / rounds,
            cold / rounds,
            in_commit / rounds,
        );
        println!(
            "{writers:>7} | {plain:>14} | {warm:>11} ({:>3}%) | {cold:>11} ({:>3}%) | {in_commit:>11} ({:>3}%)",
            percent(warm, plain),
            percent(cold, plain),
            percent(in_commit, plain),
        );
    }
}

async fn set_notify_trigger(pool: &PgPool, enabled: bool) {
    let verb = if enabled { "ENABLE" } else { "DISABLE" };
    sqlx::query(&format!(
        "ALTER TABLE events {verb} TRIGGER bench_notify_in_commit"
    ))
    .execute(pool)
    .await
    .expect("toggle the notify trigger");
}

fn percent(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0)
}

/// Operations per second completed by `writers` tasks during `window`.
async fn run(
    pool: &PgPool,
    executor: &CommandExecutor<Counter>,
    workload: Workload,
    writers: usize,
    window: Duration,
) -> u64 {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run_id = RUN.fetch_add(1, Ordering::Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (pool, executor) = (pool.clone(), executor.clone());
            let (stop, done) = (Arc::clone(&stop), Arc::clone(&done));
            tokio::spawn(async move {
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = match workload {
                        Workload::EngineCold => format!("r{run_id}-w{writer}-n{n}"),
                        _ => format!("r{run_id}-w{writer}"),
                    };
                    match workload {
                        Workload::PlainInsert => {
                            sqlx::query("INSERT INTO plain (payload) VALUES ($1)")
                                .bind(serde_json::json!({"Added": {"amount": 1}}))
                                .execute(&pool)
                                .await
                                .expect("insert");
                        }
                        Workload::EngineWarm | Workload::EngineCold => {
                            let stream = StreamId::new("bench", key).expect("valid stream");
                            let context = CommandContext::new(EventMetadata::new("bench", "bench"));
                            executor
                                .execute(stream, CounterCommand::Add(1), context)
                                .await
                                .expect("command");
                        }
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("writer task");
    }
    let elapsed = started.elapsed().as_micros().max(1);
    let count = u128::from(done.load(Ordering::Relaxed));
    u64::try_from(count * 1_000_000 / elapsed).unwrap_or(u64::MAX)
}
