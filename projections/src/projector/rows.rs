//! Whole read-model rows read and written a batch at a time, for the set-based path
//! ([`super::batch`]): one statement per table and batch, whatever the number of rows.
//!
//! Rows travel as one JSON array bound as a single parameter and unpacked by
//! `jsonb_populate_recordset(NULL::<table>, $1)`, which types every field by the table's own
//! columns (in the schema the search path names, so the shadow's during a rebuild). The row
//! structs therefore name their fields exactly as the columns are named, and serialise their
//! timestamps with [`micros`] / [`micros_opt`].

use chrono::{DateTime, SubsecRound, Utc};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::error::ProjectionError;

/// One read-model table: its name, primary key and the columns a row writes (generated columns
/// left out). All are fixed identifiers of the DDL, never input.
pub(super) struct Table {
    pub name: &'static str,
    pub key: &'static [&'static str],
    pub columns: &'static [&'static str],
}

impl Table {
    /// The rows whose `by` columns (the key or a prefix of it) equal those of one of `keys`
    /// (objects holding at least those fields).
    pub async fn fetch<R: DeserializeOwned + Send + Unpin + 'static>(
        &self,
        conn: &mut PgConnection,
        by: &[&str],
        keys: &[serde_json::Value],
    ) -> Result<Vec<R>, ProjectionError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let name = self.name;
        let k = qualified("k", by);
        let matches = by
            .iter()
            .map(|column| format!("t.{column} = k.{column}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        // One index probe per key, whatever the table's size. As `IN (…)` the planner, which
        // guesses 100 keys and may have no statistics yet for a table that grew during a
        // burst, chose a hash join over a scan of the whole table: a batch's lookups then cost
        // as much as the table is long (30–150 ms at 95,000 campaign participants).
        // `OFFSET 0` keeps the lateral subquery from being merged into such a join.
        let rows: Vec<Json<R>> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t) \
             FROM (SELECT DISTINCT {k} FROM jsonb_populate_recordset(NULL::{name}, $1) k) k \
             CROSS JOIN LATERAL (SELECT * FROM {name} t WHERE {matches} OFFSET 0) t"
        ))
        .bind(Json(keys))
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows.into_iter().map(|Json(row)| row).collect())
    }

    /// Inserts `rows`, replacing every non-key column of those that exist.
    pub async fn upsert<R: Serialize + Sync>(
        &self,
        conn: &mut PgConnection,
        rows: &[R],
    ) -> Result<(), ProjectionError> {
        let set: Vec<String> = self
            .columns
            .iter()
            .filter(|column| !self.key.contains(column))
            .map(|column| format!("{column} = EXCLUDED.{column}"))
            .collect();
        self.write(conn, rows, &self.on_conflict(&set)).await
    }

    /// Inserts `rows`, adding the `summed` columns of those whose key exists to the stored values.
    pub async fn add<R: Serialize + Sync>(
        &self,
        conn: &mut PgConnection,
        rows: &[R],
        summed: &[&str],
    ) -> Result<(), ProjectionError> {
        let set: Vec<String> = summed
            .iter()
            .map(|column| format!("{column} = s.{column} + EXCLUDED.{column}"))
            .collect();
        self.write(conn, rows, &self.on_conflict(&set)).await
    }

    /// The clause that turns an insert on an existing key into the `set` assignments.
    fn on_conflict(&self, set: &[String]) -> String {
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            self.key.join(", "),
            set.join(", ")
        )
    }

    /// Inserts `rows` (append-only tables).
    pub async fn insert<R: Serialize + Sync>(
        &self,
        conn: &mut PgConnection,
        rows: &[R],
    ) -> Result<(), ProjectionError> {
        self.write(conn, rows, "").await
    }

    async fn write<R: Serialize + Sync>(
        &self,
        conn: &mut PgConnection,
        rows: &[R],
        conflict: &str,
    ) -> Result<(), ProjectionError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (name, columns) = (self.name, self.columns.join(", "));
        sqlx::query(&format!(
            "INSERT INTO {name} AS s ({columns})
             SELECT {columns} FROM jsonb_populate_recordset(NULL::{name}, $1) {conflict}"
        ))
        .bind(Json(rows))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

fn qualified(alias: &str, columns: &[&str]) -> String {
    columns
        .iter()
        .map(|column| format!("{alias}.{column}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A timestamp as the per-event path stores it: sqlx cuts a bound value to whole microseconds,
/// where PostgreSQL would round the text of a finer one; so the JSON carries it already cut.
pub(super) fn micros<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    at.trunc_subsecs(6).serialize(serializer)
}

/// [`micros`] for a nullable timestamp.
#[allow(clippy::ref_option)] // the signature serde's `serialize_with` calls
pub(super) fn micros_opt<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    at.map(|at| at.trunc_subsecs(6)).serialize(serializer)
}
