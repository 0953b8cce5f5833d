//! Servers named by the environment (`DATABASE_URL`, `KAFKA_BROKERS`) instead of started here.
//!
//! They are used as given, but only once something answers at one of their addresses: a
//! shell that still exports the URLs of services stopped since (`source .local/devstack.env`,
//! then `devstack down`) would otherwise make `devstack up` report services that are not
//! there, and every test fail later with "connection refused".

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::DevstackError;

/// How long one address may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// PostgreSQL's port when a URL names none.
const POSTGRES_PORT: u16 = 5432;

/// Fails with [`DevstackError::Unreachable`] unless one of `addresses` accepts a TCP
/// connection. No address (a form not understood here, such as a Unix socket) is not
/// checked.
pub(crate) fn ensure_answers(
    service: &'static str,
    setting: &'static str,
    value: &str,
    addresses: &[String],
) -> Result<(), DevstackError> {
    if addresses.is_empty() || addresses.iter().any(|address| answers(address)) {
        return Ok(());
    }
    Err(DevstackError::Unreachable {
        service,
        setting,
        value: value.to_owned(),
        addresses: addresses.join(", "),
    })
}

fn answers(address: &str) -> bool {
    address.to_socket_addrs().is_ok_and(|mut resolved| {
        resolved.any(|socket| TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT).is_ok())
    })
}

/// The `host:port` addresses of a `postgres://` URL: its hosts (several, comma-separated, in a
/// multi-host URL), 5432 where no port is given. Empty when the URL names no TCP host (a Unix
/// socket, a `host=` parameter, a form other than a URL).
pub(crate) fn postgres_addresses(url: &str) -> Vec<String> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Vec::new();
    };
    let (authority, parameters) = match rest.find(['/', '?']) {
        Some(end) => rest.split_at(end),
        None => (rest, ""),
    };
    if parameters.contains("host=") {
        return Vec::new();
    }
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| with_port(host, POSTGRES_PORT))
        .collect()
}

/// The `host:port` addresses of a `KAFKA_BROKERS` list (an optional `scheme://` per entry is
/// dropped).
pub(crate) fn broker_addresses(brokers: &str) -> Vec<String> {
    brokers
        .split(',')
        .map(|broker| {
            let broker = broker.trim();
            broker
                .split_once("://")
                .map_or(broker, |(_, address)| address)
        })
        .filter(|broker| !broker.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `host` with `default` appended unless it carries a port (`[v6]:port` or `name:port`).
fn with_port(host: &str, default: u16) -> String {
    let has_port = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.contains("]:"),
        None => host.contains(':'),
    };
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:{default}")
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;
    use crate::process::free_port;

    #[test]
    fn given_postgres_urls_when_parsed_then_each_names_its_tcp_hosts() {
        let cases: [(&str, &[&str]); 8] = [
            (
                "postgres://postgres@127.0.0.1:36003/postgres",
                &["127.0.0.1:36003"],
            ),
            (
                "postgresql://user:secret@db.example:6543/shop?sslmode=require",
                &["db.example:6543"],
            ),
            ("postgres://db.example/shop", &["db.example:5432"]),
            ("postgres://u@[::1]:5433/x", &["[::1]:5433"]),
            ("postgres://u@[::1]/x", &["[::1]:5432"]),
            ("postgres://u@a:1,b/x", &["a:1", "b:5432"]),
            ("postgres:///shop?host=/var/run/postgresql", &[]),
            ("host=localhost dbname=shop", &[]),
        ];
        for (url, expected) in cases {
            assert_eq!(postgres_addresses(url), expected, "{url}");
        }
    }

    #[test]
    fn given_a_broker_list_when_parsed_then_each_entry_is_an_address() {
        assert_eq!(
            broker_addresses("127.0.0.1:9092, PLAINTEXT://kafka:9093,"),
            ["127.0.0.1:9092", "kafka:9093"]
        );
    }

    #[test]
    fn given_a_server_that_listens_when_checked_then_it_is_used() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("address").port();
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        ensure_answers(
            "PostgreSQL",
            "DATABASE_URL",
            &url,
            &postgres_addresses(&url),
        )
        .expect("a listening server is used");
    }

    #[test]
    fn given_a_stale_url_when_checked_then_the_error_names_the_setting_and_the_way_out() {
        let port = free_port().expect("free port");
        let brokers = format!("127.0.0.1:{port}");
        let error = ensure_answers(
            "Tansu",
            "KAFKA_BROKERS",
            &brokers,
            &broker_addresses(&brokers),
        )
        .expect_err("nothing listens there");
        let message = error.to_string();
        assert!(
            message.contains("KAFKA_BROKERS")
                && message.contains(&brokers)
                && message.contains("unset KAFKA_BROKERS"),
            "{message}"
        );
    }
}
