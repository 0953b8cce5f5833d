//! The `commerce` binary as an operator sees it: bad configuration ends with one line naming the
//! setting (never a panic), and `serve` answers `/health` and stops cleanly on SIGTERM.
//!
//! The tests that need real services read `DATABASE_URL` / `KAFKA_BROKERS` (`./scripts/test.sh`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use commerce_devstack::testkit::{database_url, kafka_brokers};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

/// `commerce serve` with exactly the given settings (nothing inherited from the test's environment).
fn commerce_serve(settings: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_commerce"));
    command.arg("serve");
    for name in [
        "DATABASE_URL",
        "KAFKA_BROKERS",
        "COMMERCE_HTTP_ADDR",
        "COMMERCE_JWT_SECRET",
    ] {
        command.env_remove(name);
    }
    command.env("RUST_LOG", "off");
    command.envs(settings.iter().copied());
    command
}

/// Runs it and returns its single stderr line, asserting a non-zero exit and no panic.
fn fails_with_one_line(settings: &[(&str, &str)]) -> String {
    let Output { status, stderr, .. } = commerce_serve(settings).output().expect("the binary runs");
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!status.success(), "expected a failure, stderr: {stderr}");
    assert_eq!(
        status.code(),
        Some(1),
        "an error exit, not a panic (101): {stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    stderr.trim_end().to_owned()
}

#[test]
fn a_missing_secret_is_named() {
    let line = fails_with_one_line(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres"),
        ("KAFKA_BROKERS", "127.0.0.1:1"),
    ]);
    assert_eq!(line, "error: COMMERCE_JWT_SECRET is not set");
}

#[test]
fn a_malformed_broker_address_is_named() {
    let line = fails_with_one_line(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres"),
        ("KAFKA_BROKERS", "not a broker"),
        ("COMMERCE_JWT_SECRET", SECRET),
    ]);
    assert!(
        line.starts_with("error: KAFKA_BROKERS is invalid"),
        "{line}"
    );
}

#[test]
fn an_unreachable_database_is_named() {
    let line = fails_with_one_line(&[
        (
            "DATABASE_URL",
            "postgres://postgres:hunter2-password@127.0.0.1:1/postgres",
        ),
        ("KAFKA_BROKERS", "127.0.0.1:1"),
        ("COMMERCE_JWT_SECRET", SECRET),
    ]);
    assert!(
        line.starts_with("error: cannot connect to the database in DATABASE_URL"),
        "{line}"
    );
    assert!(
        !line.contains("hunter2"),
        "the password never shows: {line}"
    );
}

#[test]
fn an_unreachable_broker_is_named() {
    let database = database_url().expect("DATABASE_URL is set");
    let line = fails_with_one_line(&[
        ("DATABASE_URL", &database),
        ("KAFKA_BROKERS", "127.0.0.1:1"),
        ("COMMERCE_JWT_SECRET", SECRET),
    ]);
    assert!(
        line.starts_with("error: cannot reach the Kafka brokers in KAFKA_BROKERS"),
        "{line}"
    );
}

/// A `GET` over a plain socket; `None` while nothing listens yet.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_health(server: &mut Child, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = server.try_wait().expect("child status readable") {
            panic!("commerce serve exited early with {status}");
        }
        if let Some(response) = http_get(port, "/health") {
            return response;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("commerce serve never answered /health");
}

#[test]
fn serve_answers_health_and_stops_on_sigterm() {
    // Given a server on the real services
    let port = free_port();
    let (database, brokers) = (
        database_url().expect("DATABASE_URL"),
        kafka_brokers().expect("KAFKA_BROKERS"),
    );
    let addr = format!("127.0.0.1:{port}");
    let mut server = commerce_serve(&[
        ("DATABASE_URL", &database),
        ("KAFKA_BROKERS", &brokers),
        ("COMMERCE_JWT_SECRET", SECRET),
        ("COMMERCE_HTTP_ADDR", &addr),
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("the binary starts");

    // When a client asks for /health
    let response = wait_for_health(&mut server, port);

    // Then it answers 200 {"status":"ok"}
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");

    // And SIGTERM ends it cleanly
    let pid = Pid::from_raw(i32::try_from(server.id()).expect("pid fits i32"));
    kill(pid, Signal::SIGTERM).expect("signal delivered");
    let output = server.wait_with_output().expect("the server exits");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
