//! Writing an engine snapshot in bounded memory, however large the state.
//!
//! A flash sale's campaign is tens of megabytes of JSON. Bound as a statement parameter, sqlx
//! holds it twice at once: in the parameter buffer (grown by doubling while serde writes) and
//! in the `Bind` message built from it. A heap profile of a 95,000-participant settlement
//! (2026-11-29) found 90 MB of the engine's 205 MB heap peak there. So the state is serialised
//! on a blocking thread into chunks of [`CHUNK`] bytes, which a `COPY … FROM STDIN` sends to
//! PostgreSQL as they fill; at most [`CHUNKS_AHEAD`] chunks wait for the socket.
//!
//! One transaction per write, holding a lock on the stream's snapshot (writers of one
//! stream, in this process or another, take turns): a stored snapshot that is older (or of
//! another state version) is deleted, then the row is copied in. A newer stored snapshot is
//! kept and nothing is serialised: a snapshot never moves backwards.

use std::io::{self, Write};
use std::sync::Arc;

use cqrs_es::Aggregate;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::mpsc;

use crate::error::{StoreError, sequence_to_db};
use crate::store::PgEventStore;
use crate::stream::StreamId;

/// Bytes of COPY data per message sent.
const CHUNK: usize = 256 * 1024;

/// Chunks serialised ahead of the socket.
const CHUNKS_AHEAD: usize = 2;

/// Serialises the writers of one stream's snapshot: a transaction-level advisory lock in the
/// two-key space (which single-key locks never share), "snap" in ASCII and the stream's hash.
const LOCK_STREAM: &str = "SELECT pg_advisory_xact_lock(1936613744, hashtext($1 || '/' || $2))";

/// Deletes an older snapshot of the stream and says whether a newer one stays (the outer
/// query sees the table as it was before the `DELETE`).
const CLEAR_OLDER: &str = "\
    WITH older AS ( \
        DELETE FROM aggregate_snapshots \
        WHERE aggregate_type = $1 AND aggregate_id = $2 \
          AND (last_sequence < $3 OR state_version <> $4) \
        RETURNING 1) \
    SELECT EXISTS ( \
        SELECT 1 FROM aggregate_snapshots \
        WHERE aggregate_type = $1 AND aggregate_id = $2 \
          AND last_sequence >= $3 AND state_version = $4) AS newer_kept";

const COPY_ROW: &str = "COPY aggregate_snapshots \
    (aggregate_type, aggregate_id, last_sequence, state_version, payload) FROM STDIN";

impl PgEventStore {
    /// Records `aggregate` as the state at `version`. Never moves a snapshot backwards.
    pub(crate) async fn write_snapshot<A: Aggregate + 'static>(
        &self,
        stream: &StreamId,
        aggregate: Arc<A>,
        version: u64,
        state_version: &str,
    ) -> Result<(), StoreError> {
        let row = SnapshotRow {
            aggregate_type: A::TYPE.to_owned(),
            aggregate_id: stream.aggregate_id().to_owned(),
            last_sequence: sequence_to_db(version)?,
            state_version: state_version.to_owned(),
        };
        let mut connection = self.pool().acquire().await?;
        let mut transaction = connection.begin().await?;
        sqlx::query(LOCK_STREAM)
            .bind(&row.aggregate_type)
            .bind(&row.aggregate_id)
            .execute(&mut *transaction)
            .await?;
        let newer_kept: bool = sqlx::query(CLEAR_OLDER)
            .bind(&row.aggregate_type)
            .bind(&row.aggregate_id)
            .bind(row.last_sequence)
            .bind(&row.state_version)
            .fetch_one(&mut *transaction)
            .await?
            .try_get("newer_kept")?;
        if newer_kept {
            transaction.rollback().await?;
            return Ok(());
        }
        copy_row(&mut transaction, row, aggregate).await?;
        transaction.commit().await?;
        Ok(())
    }
}

/// The columns of a snapshot row but its payload.
struct SnapshotRow {
    aggregate_type: String,
    aggregate_id: String,
    last_sequence: i64,
    state_version: String,
}

/// Streams one row through `COPY`, serialising `aggregate` as the socket takes it.
async fn copy_row<A: Aggregate + 'static>(
    connection: &mut PgConnection,
    row: SnapshotRow,
    aggregate: Arc<A>,
) -> Result<(), sqlx::Error> {
    let (chunks, mut sent) = mpsc::channel(CHUNKS_AHEAD);
    let mut copy = connection.copy_in_raw(COPY_ROW).await?;
    // Dropping the receiver (a failed send below) ends the encoder at its next chunk.
    let encoder = tokio::task::spawn_blocking(move || encode_row(&row, aggregate.as_ref(), chunks));
    while let Some(chunk) = sent.recv().await {
        copy.send(chunk).await?;
    }
    let encoded = encoder
        .await
        .map_err(|join| sqlx::Error::Encode(Box::new(join)))
        .and_then(|written| written.map_err(|error| sqlx::Error::Encode(Box::new(error))));
    match encoded {
        Ok(()) => copy.finish().await.map(drop),
        Err(error) => {
            copy.abort("the snapshot could not be serialised").await?;
            Err(error)
        }
    }
}

/// One line of COPY text: the columns tab-separated, the payload as JSON, then a newline.
fn encode_row<A: Aggregate>(
    row: &SnapshotRow,
    aggregate: &A,
    chunks: mpsc::Sender<Vec<u8>>,
) -> io::Result<()> {
    let mut out = CopyText::new(chunks);
    out.write_all(row.aggregate_type.as_bytes())?;
    out.separator(b'\t')?;
    out.write_all(row.aggregate_id.as_bytes())?;
    out.separator(b'\t')?;
    out.write_all(row.last_sequence.to_string().as_bytes())?;
    out.separator(b'\t')?;
    out.write_all(row.state_version.as_bytes())?;
    out.separator(b'\t')?;
    serde_json::to_writer(&mut out, aggregate)?;
    out.separator(b'\n')?;
    out.flush()
}

/// Escapes what it is given for a column of `COPY`'s text format and hands the result on
/// in chunks; only [`CopyText::separator`] writes unescaped.
struct CopyText {
    chunk: Vec<u8>,
    chunks: mpsc::Sender<Vec<u8>>,
}

impl CopyText {
    fn new(chunks: mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            chunk: Vec::with_capacity(CHUNK),
            chunks,
        }
    }

    fn separator(&mut self, byte: u8) -> io::Result<()> {
        self.chunk.push(byte);
        self.send_full()
    }

    fn send_full(&mut self) -> io::Result<()> {
        if self.chunk.len() >= CHUNK {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the snapshot's COPY ended"))
    }
}

/// The escape of a byte that `COPY`'s text format gives a meaning (column and row
/// separators, and the escape character itself).
fn escaped(byte: u8) -> Option<&'static [u8]> {
    match byte {
        b'\\' => Some(b"\\\\"),
        b'\t' => Some(b"\\t"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        _ => None,
    }
}

impl Write for CopyText {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while let Some((at, escape)) = (rest.iter().enumerate())
            .find_map(|(at, &byte)| escaped(byte).map(|escape| (at, escape)))
        {
            self.chunk.extend_from_slice(&rest[..at]);
            self.chunk.extend_from_slice(escape);
            rest = &rest[at + 1..];
        }
        self.chunk.extend_from_slice(rest);
        self.send_full()?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use commerce_devstack::testkit::TestDatabase;
    use cqrs_es::DomainEvent;
    use cqrs_es::event_sink::EventSink;
    use serde::{Deserialize, Serialize};

    use super::*;

    /// State of any size and content; its commands and events are never used here.
    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Text {
        lines: Vec<String>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Written;

    impl DomainEvent for Written {
        fn event_type(&self) -> String {
            "text.written".to_owned()
        }

        fn event_version(&self) -> String {
            "1".to_owned()
        }
    }

    impl Aggregate for Text {
        const TYPE: &'static str = "Text";
        type Command = ();
        type Event = Written;
        type Error = std::convert::Infallible;
        type Services = ();

        async fn handle(
            &mut self,
            (): (),
            (): &(),
            _: &EventSink<Self>,
        ) -> Result<(), Self::Error> {
            Ok(())
        }

        fn apply(&mut self, _: Written) {}
    }

    fn text(lines: &[&str]) -> Arc<Text> {
        Arc::new(Text {
            lines: lines.iter().map(|line| (*line).to_owned()).collect(),
        })
    }

    async fn store() -> (TestDatabase, PgEventStore) {
        let db = TestDatabase::create().await.expect("test database");
        crate::migrate(db.pool()).await.expect("schema");
        let store = PgEventStore::new(db.pool().clone());
        (db, store)
    }

    async fn stored(store: &PgEventStore, state_version: &str) -> Option<(u64, Text)> {
        let stream = StreamId::new("t", "text-1").expect("stream");
        let loaded = store.read_snapshot::<Text>(&stream, state_version).await;
        loaded
            .expect("read")
            .map(|loaded| (loaded.version, loaded.aggregate))
    }

    #[tokio::test]
    async fn given_a_snapshot_when_an_older_one_is_written_then_the_newer_stays() {
        let (_db, store) = store().await;
        let stream = StreamId::new("t", "text-1").expect("stream");
        for (version, line) in [(5, "five"), (9, "nine"), (7, "seven")] {
            let state = text(&[line]);
            store
                .write_snapshot(&stream, state, version, "1")
                .await
                .expect("written");
        }
        assert_eq!(
            stored(&store, "1").await,
            Some((9, (*text(&["nine"])).clone()))
        );
        // Another state shape replaces it whatever its version.
        store
            .write_snapshot(&stream, text(&["three"]), 3, "2")
            .await
            .expect("written");
        assert_eq!(
            stored(&store, "2").await,
            Some((3, (*text(&["three"])).clone()))
        );
        assert_eq!(stored(&store, "1").await, None);
    }

    #[tokio::test]
    async fn a_large_snapshot_with_copy_separators_in_it_reads_back_equal() {
        let (_db, store) = store().await;
        let stream = StreamId::new("t", "text-1").expect("stream");
        let special = [
            "tab\there",
            "new\nline\r\n",
            "back\\slash \\. \"quoted\"",
            "é ✓ \u{1}",
        ];
        let lines: Vec<String> = (0..100_000)
            .map(|n| format!("{} {n}", special[n % special.len()]))
            .collect();
        let state = Arc::new(Text { lines });
        store
            .write_snapshot(&stream, Arc::clone(&state), 42, "1")
            .await
            .expect("written");
        assert_eq!(stored(&store, "1").await, Some((42, (*state).clone())));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_of_one_stream_leave_the_newest() {
        let (_db, store) = store().await;
        let stream = StreamId::new("t", "text-1").expect("stream");
        let writes = (1..=16_u64).map(|version| {
            let store = store.clone();
            let stream = stream.clone();
            tokio::spawn(async move {
                let state = text(&[&version.to_string()]);
                store.write_snapshot(&stream, state, version, "1").await
            })
        });
        for write in futures::future::join_all(writes).await {
            write.expect("joined").expect("written");
        }
        assert_eq!(
            stored(&store, "1").await,
            Some((16, (*text(&["16"])).clone()))
        );
    }

    fn text_of(write: impl FnOnce(&mut CopyText) -> io::Result<()>) -> Vec<u8> {
        let (chunks, mut sent) = mpsc::channel(usize::MAX >> 4);
        let mut out = CopyText::new(chunks);
        write(&mut out).expect("written");
        out.flush().expect("flushed");
        drop(out);
        let mut text = Vec::new();
        while let Ok(chunk) = sent.try_recv() {
            assert!(chunk.len() < CHUNK + 64 * 1024, "chunks stay bounded");
            text.extend(chunk);
        }
        text
    }

    #[test]
    fn copy_text_escapes_separators_and_backslashes_only() {
        let text = text_of(|out| {
            out.write_all(b"a\tb\nc\rd\\e\"f")?;
            out.separator(b'\n')
        });
        assert_eq!(text, b"a\\tb\\nc\\rd\\\\e\"f\n");
    }

    #[test]
    fn a_large_value_is_sent_in_bounded_chunks_that_add_up_to_it() {
        let value: Vec<String> = (0..200_000).map(|n| format!("p\\{n}\t")).collect();
        let text = text_of(|out| serde_json::to_writer(&mut *out, &value).map_err(io::Error::from));
        let json = serde_json::to_vec(&value).expect("serialises");
        let expected: Vec<u8> = json
            .iter()
            .flat_map(|&byte| escaped(byte).map_or_else(|| vec![byte], <[u8]>::to_vec))
            .collect();
        assert!(text.len() > 4 * CHUNK);
        assert_eq!(text, expected);
    }
}
