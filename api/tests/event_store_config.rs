//! `COMMERCE_EVENT_STORE` as an operator meets it: every unusable selection ends the
//! `commerce` binary at start with one line naming the setting and what is supported, and
//! never shows a password. Which lines apply depends on the binary's `kurrentdb` feature; the
//! last test (feature on) drives `commerce relay` into its KurrentDB path on the real
//! PostgreSQL and broker.

use std::process::{Command, Output};

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";
const KURRENTDB: &str = "kurrentdb://admin:changeit@127.0.0.1:1?tls=false";

/// `commerce <subcommand>` with exactly the given settings.
fn commerce(subcommand: &str, settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commerce"));
    command.arg(subcommand);
    for name in [
        "DATABASE_URL",
        "KAFKA_BROKERS",
        "COMMERCE_HTTP_ADDR",
        "COMMERCE_JWT_SECRET",
        "COMMERCE_EVENT_STORE",
        "COMMERCE_TOPIC_PREFIX",
    ] {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "off");
    command.envs(settings.iter().copied());
    command
}

/// Runs it and returns its single stderr line, asserting an error exit (not a panic).
fn fails_with_one_line(subcommand: &str, settings: &[(&str, &str)]) -> String {
    let Output { status, stderr, .. } = commerce(subcommand, settings)
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert_eq!(status.code(), Some(1), "an error exit: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    let line = stderr.trim_end().to_owned();
    assert!(!line.contains("changeit"), "no password: {line}");
    line
}

/// What `serve` needs besides the event store (unreachable: the check comes first).
fn serve_settings(store: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres"),
        ("KAFKA_BROKERS", "127.0.0.1:1"),
        ("COMMERCE_JWT_SECRET", SECRET),
        ("COMMERCE_EVENT_STORE", store),
    ]
}

#[test]
fn given_an_unknown_event_store_then_the_setting_is_named() {
    let line = fails_with_one_line("serve", &serve_settings("mysql://root:changeit@db"));
    assert!(
        line.starts_with(
            "error: COMMERCE_EVENT_STORE=\"mysql://root:***@db\" is not an event store"
        ),
        "{line}"
    );
}

#[cfg(not(feature = "kurrentdb"))]
#[test]
fn given_kurrentdb_without_the_feature_then_every_command_says_it_was_not_built_in() {
    for subcommand in ["serve", "relay", "workflows", "migrate"] {
        let line = fails_with_one_line(subcommand, &serve_settings(KURRENTDB));
        assert!(
            line.starts_with("error: COMMERCE_EVENT_STORE=kurrentdb://admin:***@127.0.0.1:1"),
            "{subcommand}: {line}"
        );
        assert!(
            line.contains("built without the kurrentdb feature; supported: postgres"),
            "{subcommand}: {line}"
        );
    }
}

#[cfg(feature = "kurrentdb")]
#[test]
fn given_kurrentdb_then_the_command_path_refuses_it_and_names_what_is_supported() {
    for subcommand in ["serve", "all", "workflows", "dev"] {
        let line = fails_with_one_line(subcommand, &serve_settings(KURRENTDB));
        assert!(
            line.starts_with("error: COMMERCE_EVENT_STORE=kurrentdb://admin:***@127.0.0.1:1"),
            "{subcommand}: {line}"
        );
        assert!(
            line.contains(&format!("`commerce {subcommand}` runs on PostgreSQL only")),
            "{subcommand}: {line}"
        );
        assert!(
            line.contains("on KurrentDB only relay, project, migrate, token and tenant"),
            "{subcommand}: {line}"
        );
    }
}

#[cfg(feature = "kurrentdb")]
#[test]
fn given_kurrentdb_when_the_relay_starts_then_it_probes_the_server_and_names_the_setting() {
    use commerce_devstack::testkit::{TestDatabase, kafka_brokers, unique_topic};

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let database = runtime
        .block_on(TestDatabase::create())
        .expect("a test database (DATABASE_URL)");
    let brokers = kafka_brokers().expect("KAFKA_BROKERS is set");
    let prefix = format!("{}.", unique_topic("kdb-relay"));
    let line = fails_with_one_line(
        "relay",
        &[
            ("DATABASE_URL", database.url()),
            ("KAFKA_BROKERS", &brokers),
            ("COMMERCE_EVENT_STORE", KURRENTDB),
            ("COMMERCE_TOPIC_PREFIX", &prefix),
        ],
    );
    assert!(
        line.starts_with("error: COMMERCE_EVENT_STORE=kurrentdb://admin:***@127.0.0.1:1"),
        "nothing listens on port 1, and the line says which setting: {line}"
    );
}
