//! The global-order cursor of KurrentDB: a position in `$all`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A position in KurrentDB's `$all` (commit, then prepare position of the log record).
///
/// Its text form `"{commit}:{prepare}"` is what readers persist. [`KurrentPosition::START`]
/// is before the first event.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct KurrentPosition {
    pub commit: u64,
    pub prepare: u64,
}

impl KurrentPosition {
    pub const START: Self = Self {
        commit: 0,
        prepare: 0,
    };
}

impl From<kurrentdb::Position> for KurrentPosition {
    fn from(position: kurrentdb::Position) -> Self {
        Self {
            commit: position.commit,
            prepare: position.prepare,
        }
    }
}

impl From<KurrentPosition> for kurrentdb::Position {
    fn from(position: KurrentPosition) -> Self {
        Self {
            commit: position.commit,
            prepare: position.prepare,
        }
    }
}

impl fmt::Display for KurrentPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.commit, self.prepare)
    }
}

/// A position string that is not `"{u64}:{u64}"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid KurrentDB position {0:?}: expected \"commit:prepare\"")]
pub struct PositionError(String);

impl FromStr for KurrentPosition {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || PositionError(s.to_owned());
        let (commit, prepare) = s.split_once(':').ok_or_else(invalid)?;
        Ok(Self {
            commit: commit.parse().map_err(|_| invalid())?,
            prepare: prepare.parse().map_err(|_| invalid())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_position_when_printed_and_parsed_then_it_round_trips() {
        let position = KurrentPosition {
            commit: u64::MAX,
            prepare: 7,
        };
        assert_eq!(position.to_string().parse(), Ok(position));
        assert!("7".parse::<KurrentPosition>().is_err());
        assert!("-1:2".parse::<KurrentPosition>().is_err());
    }

    #[test]
    fn positions_order_by_commit_then_prepare() {
        let early = KurrentPosition {
            commit: 10,
            prepare: 99,
        };
        let late = KurrentPosition {
            commit: 11,
            prepare: 0,
        };
        assert!(KurrentPosition::START < early && early < late);
    }
}
