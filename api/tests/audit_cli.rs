//! Black-box: `commerce replay verify` exit codes on a real database: 0 on a clean log,
//! non-zero with the damage printed once an event is forged behind the engine's back, and a
//! one-line error naming the setting when DATABASE_URL is missing; `replay export` writes a
//! sealed file that `replay verify --file` accepts until it is edited.

use std::process::{Command, Output};

use commerce_devstack::testkit::TestDatabase;

fn replay_verify(database_url: Option<&str>) -> Output {
    replay(&["verify"], database_url)
}

fn replay(args: &[&str], database_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commerce"));
    command
        .arg("replay")
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("COMMERCE_AUDIT_KEY");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("the binary runs")
}

/// A database of its own with the event store's schema (dropped with the handle).
async fn migrated_store() -> TestDatabase {
    let db = TestDatabase::create()
        .await
        .expect("a test database (is DATABASE_URL set?)");
    commerce_eventstore::migrate(db.pool())
        .await
        .expect("event store migrations");
    db
}

#[tokio::test]
async fn given_a_log_when_verified_then_the_exit_code_says_whether_it_is_clean() {
    // Given an empty, migrated event store
    let db = migrated_store().await;

    // When it is verified, then it is clean: exit code 0
    let clean = replay_verify(Some(db.url()));
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert!(
        clean.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(stdout.contains("clean"), "{stdout}");

    // Given an event forged by someone with database rights but without the audit key
    let mut tx = db.pool().begin().await.expect("begin");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("bypass the append-only triggers");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) \
         VALUES ('order', 'acme/forged', 1, 'order.created', '1', '{}', '{}')",
    )
    .execute(&mut *tx)
    .await
    .expect("forged");
    tx.commit().await.expect("commit");

    // When it is verified, then the exit code is non-zero and the stream is named
    let damaged = replay_verify(Some(db.url()));
    assert!(!damaged.status.success());
    let stdout = String::from_utf8_lossy(&damaged.stdout);
    assert!(stdout.contains("order acme/forged"), "{stdout}");
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert!(stderr.contains("damaged"), "{stderr}");
}

#[test]
fn given_no_database_url_when_verifying_then_one_line_names_the_setting() {
    let output = replay_verify(None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("DATABASE_URL is not set"), "{stderr}");
}

#[tokio::test]
async fn given_an_export_when_verified_offline_then_only_the_untouched_file_is_clean() {
    let db = migrated_store().await;
    let path = std::env::temp_dir().join(format!("export-{}.jsonl", uuid::Uuid::new_v4()));
    let file = path.to_str().expect("a UTF-8 path");

    let exported = replay(
        &["export", "--tenant", "acme", "--out", file],
        Some(db.url()),
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let verify_file = || replay(&["verify", "--file", file], None);
    let clean = verify_file();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    // Dating the export later would make a full export pass as a partial one.
    let text = std::fs::read_to_string(&path).expect("the export");
    let dated = text.replace("\"from\":null", "\"from\":\"2000-01-01T00:00:00Z\"");
    assert_ne!(dated, text);
    std::fs::write(&path, dated).expect("edit the export");
    let edited = verify_file();
    std::fs::remove_file(&path).expect("remove the export");
    assert!(!edited.status.success());
    let stdout = String::from_utf8_lossy(&edited.stdout);
    assert!(stdout.contains("export"), "{stdout}");
}
