//! The fault suite: one case per fault of the reliability matrix (F1 broker, F2 projection
//! worker, F3 PostgreSQL, F4/F5 duplicated and reordered records, process kills of the relay,
//! the workflows and the API), each against the whole engine as child processes, each ending
//! with the oracle's verdict: nothing acknowledged lost, everything published, read models
//! equal to the fold of the store, no double charge, oversell or leaked reservation.
//!
//! Cases take a lock file so that they run one at a time even under nextest (each starts a
//! PostgreSQL, a broker and five engine processes: two cores do not fit two of them).
//! `FAULTS_SEED=<n>` replays a case; `FAULTS_SOAK_SECS=<n>` runs the soak (see RELIABILITY.md).
//! `scripts/test.sh` runs this binary on its own after the rest of the workspace (the cases
//! want the two cores); the `synchronous_commit=off` measurement is `#[ignore]`d and runs with
//! `COMMERCE_FAULTS=1 ./scripts/test.sh`.

use std::fs::File;
use std::time::Duration;

use commerce_faults::{CaseConfig, Fault, Report, SyncCommit, run_case};

/// Serialises the cases of this suite across test processes.
fn exclusive() -> File {
    let path = std::env::temp_dir().join("commerce-faults.lock");
    let file = File::create(&path).expect("lock file");
    file.lock().expect("exclusive lock");
    file
}

async fn case(config: CaseConfig) -> Report {
    let _lock = exclusive();
    run_case(config).await.expect("the case ran to its verdict")
}

fn assert_clean(report: &Report) {
    let findings = &report.findings;
    assert!(
        findings.clean(),
        "seed {}: unsettled {:?}\nstreams behind {:?}\nprojection offsets short {:?}\nlost acks {:?}\nunpublished {:?}\nmisordered {:?}\nread models {:#?}\ndouble charges {:?}\n\
         oversold {:?}\nleaked {:?}\nstuck {:?}\nworkflow dead letters {:?}",
        report.seed,
        findings.unsettled,
        findings.behind_streams,
        findings.projection_offsets,
        findings.lost_acks,
        findings.unpublished.iter().take(20).collect::<Vec<_>>(),
        findings.kafka_misordered,
        findings
            .read_model_differences
            .iter()
            .take(30)
            .collect::<Vec<_>>(),
        findings.double_charges,
        findings.oversold,
        findings.leaked_reservations,
        findings.stuck_orders,
        findings.workflow_dead_letters,
    );
    assert!(
        report.stats.acknowledged > 0,
        "the workload got nothing acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_no_fault_when_the_workload_runs_then_the_oracle_agrees() {
    let report = case(CaseConfig::quick(Fault::None)).await;
    assert_clean(&report);
    assert_eq!(
        report.findings.kafka_duplicates, 0,
        "no fault, no republication"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_the_relay_killed_at_random_points_then_nothing_is_lost() {
    let report = case(CaseConfig::quick(Fault::KillRelay)).await;
    assert!(report.injected > 0);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_projection_worker_killed_at_random_points_then_read_models_equal_the_fold() {
    let report = case(CaseConfig::quick(Fault::KillProjections)).await;
    assert!(report.injected > 0);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_the_workflows_killed_at_random_points_then_no_saga_is_left_half_way() {
    let report = case(CaseConfig::quick(Fault::KillWorkflows)).await;
    assert!(report.injected > 0);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_the_api_killed_mid_request_then_every_acknowledged_command_is_stored() {
    let report = case(CaseConfig::quick(Fault::KillApi)).await;
    assert!(report.injected > 0);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_the_broker_killed_and_restarted_then_every_event_reaches_kafka() {
    let report = case(CaseConfig::quick(Fault::KillBroker)).await;
    assert!(report.injected > 0);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_postgres_crashed_with_immediate_stop_then_acknowledged_commands_survive() {
    let report = case(CaseConfig::quick(Fault::CrashPostgres)).await;
    assert!(report.injected > 0);
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_duplicated_and_reordered_records_then_read_models_are_unchanged() {
    let report = case(CaseConfig::quick(Fault::Duplicates)).await;
    assert!(report.injected > 0);
    assert!(
        report.findings.kafka_duplicates > 0,
        "copies were delivered"
    );
    assert_clean(&report);
}

/// Documents the non-guarantee of `synchronous_commit=off`: a crash may lose commits that
/// were acknowledged (up to about 3 × wal_writer_delay). Reported, not asserted; alone:
/// `cargo test -p commerce-faults --test faults -- --ignored synchronous_commit_off`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measures a non-guarantee (reported, not asserted) and takes a minute; runs with COMMERCE_FAULTS=1 ./scripts/test.sh (the README's test command with that variable set)"]
async fn synchronous_commit_off_loss_window() {
    let mut config = CaseConfig::quick(Fault::CrashPostgres);
    config.sync = SyncCommit::Off;
    let report = case(config).await;
    eprintln!(
        "synchronous_commit=off: {} acknowledged commands lost after {} crashes",
        report.findings.lost_acks.len(),
        report.injected
    );
}

/// The soak: every fault at random for `FAULTS_SOAK_SECS` seconds of load (skipped without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    let Some(seconds) = std::env::var("FAULTS_SOAK_SECS")
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
    else {
        eprintln!("skipped: set FAULTS_SOAK_SECS to run the soak");
        return;
    };
    let mut config = CaseConfig::quick(Fault::Mixed);
    config.duration = Duration::from_secs(seconds);
    config.operations = u64::MAX;
    let report = case(config).await;
    assert_clean(&report);
}
