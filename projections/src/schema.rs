//! Database layout of the read side: the `rm_meta` bookkeeping (sqlx migrations) and the read-model
//! schema, created from one DDL file into `rm` or, during a rebuild, into `rm_shadow`.
//!
//! The read models are disposable: they are derived from the event store. A change of the DDL
//! bumps [`READ_MODEL_VERSION`] and is rolled out with a rebuild, not with an in-place migration.

use sqlx::{PgConnection, PgPool};

use crate::error::ProjectionError;

/// Version of `sql/read_models.sql`; recorded in `rm_meta.read_model_version` for the live schema.
pub const READ_MODEL_VERSION: i32 = 1;

/// Advisory lock guarding the live schema: every projecting transaction holds it shared, the
/// rebuild's swap (and the first creation) holds it exclusively, so a swap never interleaves with
/// a worker's write.
pub(crate) const SWAP_LOCK_KEY: i64 = 0x636f_6d6d_7270_726a; // "commrprj"

const READ_MODEL_DDL: &str = include_str!("sql/read_models.sql");

/// A schema the read models live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadModelSchema {
    /// `rm`: what queries read and workers write.
    Live,
    /// `rm_shadow`: where a rebuild builds the replacement.
    Shadow,
}

impl ReadModelSchema {
    /// The schema's SQL name (a fixed identifier, safe to splice into statements).
    pub fn name(self) -> &'static str {
        match self {
            Self::Live => "rm",
            Self::Shadow => "rm_shadow",
        }
    }
}

/// Applies the `rm_meta` migrations and creates the live read models when they do not exist yet.
///
/// Other crates keep their own migrations in the same database, so versions unknown here are ignored.
pub async fn migrate(pool: &PgPool) -> Result<(), ProjectionError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator.run(pool).await?;
    let mut tx = pool.begin().await?;
    // Serialise concurrent first starts (several workers booting together).
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SWAP_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'rm')")
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        create_schema(&mut tx, ReadModelSchema::Live).await?;
        sqlx::query(
            "INSERT INTO rm_meta.read_model_version (version) VALUES ($1)
             ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version, built_at = now()",
        )
        .bind(READ_MODEL_VERSION)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Creates `schema` (dropping any leftover of that name) with every read-model table, empty.
pub(crate) async fn create_schema(
    conn: &mut PgConnection,
    schema: ReadModelSchema,
) -> Result<(), ProjectionError> {
    let name = schema.name();
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}; SET LOCAL search_path TO {name};"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::raw_sql(READ_MODEL_DDL).execute(&mut *conn).await?;
    sqlx::raw_sql("SET LOCAL search_path TO DEFAULT")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
