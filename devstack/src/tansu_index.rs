//! A workaround for two Tansu 0.6.0 storage defects: tables its hottest queries scan whole.
//!
//! Headers. Tansu's SQLite schema keys records by `(topition, offset_id)` but gives the `header`
//! table no index at all, and its fetch path looks up the headers of every fetched record with one query
//! each (`header_fetch.sql`): every lookup scans every header the broker ever stored. The
//! engine also serialises all storage requests (produce, fetch, metadata) through one task, so
//! once a few hundred thousand headers exist (the relay sets four per message), a consumer
//! reading 200 records/s keeps that task busy for seconds each second and produce requests
//! wait behind it: measured with the relay's bench, commit-to-Kafka p50 9.4 s / p99 19.5 s
//! with 176,000 header rows, p50 165 ms / p99 221 ms once this index existed (one lookup went
//! from about 20 ms to 0.14 ms).
//!
//! Watermarks. The `watermark` table (one row per partition of every topic) has no index on
//! `topition`, and every fetch reads each fetched partition's watermarks with a scan of it
//! (`watermark_select.sql`; produce and list-offsets requests scan it too). A projection worker
//! polls its 36 partitions about 40 times a second (`fetch.wait.max.ms` 25), so an idle engine
//! kept the broker's CPU busy: measured on a broker holding 6,302 partitions, 98 % of a core,
//! 51 % with this index.
//!
//! Production brokers (Kafka, Redpanda) are not affected. The indexes are created after the broker built its schema, with whichever SQLite client the
//! machine has: `python3` (its standard `sqlite3` module) or the `sqlite3` shell.

use std::path::Path;
use std::process::Command;

/// The broker's SQLite file inside its working folder (see `STORAGE` in `tansu`).
const DATABASE: &str = "data/tansu.db";
const CREATE_INDEXES: &str = "CREATE INDEX IF NOT EXISTS header_topition_offset ON header (topition, offset_id); \
     CREATE INDEX IF NOT EXISTS watermark_topition ON watermark (topition);";

/// Creates the missing `header (topition, offset_id)` and `watermark (topition)` indexes in the
/// SQLite database of the Tansu broker running in `broker_dir` (idempotent; waits up to 30 s for
/// the database lock).
///
/// # Errors
/// No SQLite client could create it; the broker still works, only slower as headers pile up.
pub fn index_tansu_storage(broker_dir: &Path) -> Result<(), String> {
    let database = broker_dir.join(DATABASE);
    let script = format!(
        "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=30)\nc.executescript({CREATE_INDEXES:?})\nc.commit()"
    );
    let mut python = Command::new("python3");
    python.arg("-c").arg(script).arg(&database);
    let mut shell = Command::new("sqlite3");
    shell
        .args(["-cmd", ".timeout 30000"])
        .arg(&database)
        .arg(CREATE_INDEXES);
    let mut problems = Vec::new();
    for mut client in [python, shell] {
        match client.output() {
            Ok(output) if output.status.success() => return Ok(()),
            Ok(output) => problems.push(format!(
                "{}: {}",
                client.get_program().to_string_lossy(),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(error) => {
                problems.push(format!(
                    "{}: {error}",
                    client.get_program().to_string_lossy()
                ));
            }
        }
    }
    Err(format!(
        "indexing Tansu's storage in {} failed ({})",
        database.display(),
        problems.join("; ")
    ))
}
