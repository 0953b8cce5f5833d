//! Which event store a deployment uses: `COMMERCE_EVENT_STORE=postgres` (the default) or
//! `COMMERCE_EVENT_STORE=kurrentdb://host:2113?tls=false` (a KurrentDB connection string,
//! also accepted with the legacy `esdb://` scheme). The binary builds the KurrentDB backend
//! only with its `kurrentdb` feature.

use std::fmt;
use std::str::FromStr;

/// The environment variable that selects the event store.
pub const EVENT_STORE_ENV: &str = "COMMERCE_EVENT_STORE";

/// The configured event store.
#[derive(Clone, PartialEq, Eq)]
pub enum EventStoreSelection {
    /// The PostgreSQL store named by `DATABASE_URL`.
    Postgres,
    /// A KurrentDB server; the connection string as given (it may carry credentials).
    KurrentDb { connection_string: String },
}

/// A `COMMERCE_EVENT_STORE` value that names no known store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{EVENT_STORE_ENV}={0:?} is not an event store: expected \"postgres\" or a \
     \"kurrentdb://host:port?tls=false\" connection string"
)]
pub struct SelectionError(String);

impl EventStoreSelection {
    /// Reads [`EVENT_STORE_ENV`]; unset or empty means PostgreSQL.
    pub fn from_env() -> Result<Self, SelectionError> {
        match std::env::var(EVENT_STORE_ENV) {
            Ok(value) if !value.trim().is_empty() => value.parse(),
            _ => Ok(Self::Postgres),
        }
    }
}

impl FromStr for EventStoreSelection {
    type Err = SelectionError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        if value.eq_ignore_ascii_case("postgres") || value.eq_ignore_ascii_case("postgresql") {
            return Ok(Self::Postgres);
        }
        match value.split_once("://") {
            Some((scheme, rest))
                if !rest.is_empty()
                    && ["kurrentdb", "kurrentdb+discover", "esdb", "esdb+discover"]
                        .iter()
                        .any(|known| scheme.eq_ignore_ascii_case(known)) =>
            {
                Ok(Self::KurrentDb {
                    connection_string: value.to_owned(),
                })
            }
            _ => Err(SelectionError(redact(value))),
        }
    }
}

/// Shows the store without the password of a connection string.
impl fmt::Display for EventStoreSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postgres => f.write_str("postgres"),
            Self::KurrentDb { connection_string } => f.write_str(&redact(connection_string)),
        }
    }
}

impl fmt::Debug for EventStoreSelection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventStoreSelection({self})")
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
fn redact(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return value.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_postgres_or_nothing_when_parsed_then_postgres_is_selected() {
        assert_eq!("postgres".parse(), Ok(EventStoreSelection::Postgres));
        assert_eq!(" PostgreSQL ".parse(), Ok(EventStoreSelection::Postgres));
    }

    #[test]
    fn given_a_kurrentdb_connection_string_when_parsed_then_it_is_kept_verbatim() {
        let url = "kurrentdb://admin:changeit@localhost:2113?tls=false";
        assert_eq!(
            url.parse(),
            Ok(EventStoreSelection::KurrentDb {
                connection_string: url.to_owned()
            })
        );
        assert!(
            "esdb+discover://cluster:2113"
                .parse::<EventStoreSelection>()
                .is_ok()
        );
    }

    #[test]
    fn given_an_unknown_value_when_parsed_then_the_error_names_the_setting() {
        let error = "mysql://root:pw@db"
            .parse::<EventStoreSelection>()
            .expect_err("unknown store");
        let message = error.to_string();
        assert!(message.contains(EVENT_STORE_ENV));
        assert!(
            !message.contains("pw"),
            "secrets stay out of errors: {message}"
        );
        assert!("kurrentdb://".parse::<EventStoreSelection>().is_err());
    }

    #[test]
    fn given_credentials_when_displayed_then_the_password_is_hidden() {
        let selection: EventStoreSelection = "kurrentdb://admin:changeit@kdb:2113?tls=false"
            .parse()
            .expect("valid");
        assert_eq!(
            selection.to_string(),
            "kurrentdb://admin:***@kdb:2113?tls=false"
        );
        assert!(!format!("{selection:?}").contains("changeit"));
    }
}
