//! Export of one tenant's events as JSON Lines, with their chain hashes and the checkpoints,
//! and the offline check of such a file (no database; the audit key is needed).
//!
//! Line 1 is a header (`kind: "header"`), then every event of the tenant exactly as stored
//! (`kind: "event"`, stream by stream in sequence order), then every checkpoint
//! (`kind: "checkpoint"`) with the tenant's sealed heads and the digests of the other
//! tenants' heads (which the seal covers; other tenants' streams are not disclosed), and last
//! the file's seal (`kind: "seal"`): an HMAC under the audit key of every line before it.
//!
//! Offline, [`verify_export`] checks the file's seal, every event's chain hash and links, the
//! checkpoint seals, and (for an export without `--from`) that no stream ends before its
//! sealed head. The file's seal is what makes the header trustworthy: without it, setting
//! `from` would turn a file that lost the first events of its streams into a clean partial
//! export, and dropping whole streams that no checkpoint sealed yet would go unseen.
//! The log-wide cumulative hash spans all tenants, so only a database verification checks it.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use chrono::{DateTime, Utc};
use commerce_eventstore::{AuditKey, Hash, RunningMac};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::chained::{CHAINED_COLUMNS, ChainedEvent, StreamRef, hex_hash};
use crate::checkpoint::{Checkpoint, head_key, load_checkpoints};
use crate::error::ReplayError;
use crate::verify::{
    Damage, DamageKind, Digests, SealedHeads, VerifyReport, check_checkpoints, check_sealed_tail,
    check_stream,
};

/// Version 2 added the file's seal; a version 1 file verifies with its seal missing.
const FORMAT: &str = "commerce-export/2";
/// Domain tag of the file's seal.
const SEAL_TAG: &[u8] = b"commerce.export.v2";
const BATCH: i64 = 1_000;

/// What to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    pub tenant: String,
    /// Only events recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events (and checkpoints) recorded at or before this time.
    pub to: Option<DateTime<Utc>>,
}

/// One line of an export file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportLine {
    Header {
        format: String,
        tenant: String,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        exported_at: DateTime<Utc>,
    },
    Event(ChainedEvent),
    Checkpoint(Checkpoint),
    /// The last line: HMAC-SHA256 under the audit key of [`SEAL_TAG`] and every line before
    /// it, each with its newline.
    Seal {
        #[serde(with = "hex_hash::required")]
        mac: Hash,
    },
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportSummary {
    pub events: u64,
    pub checkpoints: u64,
}

/// Writes the tenant's events and the checkpoints to `out` as JSON Lines, sealed with `key`.
pub async fn export(
    pool: &PgPool,
    key: &AuditKey,
    options: &ExportOptions,
    out: &mut impl Write,
) -> Result<ExportSummary, ReplayError> {
    let mut out = SealingWriter {
        out,
        mac: key.running_mac(SEAL_TAG),
        line: Vec::new(),
    };
    out.write(&ExportLine::Header {
        format: FORMAT.into(),
        tenant: options.tenant.clone(),
        from: options.from,
        to: options.to,
        exported_at: Utc::now(),
    })?;
    let sql = format!(
        "SELECT {CHAINED_COLUMNS} FROM events \
         WHERE left(aggregate_id, length($1) + 1) = $1 || '/' \
           AND ($2::timestamptz IS NULL OR recorded_at >= $2) \
           AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
           AND (aggregate_type, aggregate_id, sequence) > ($4, $5, $6) \
         ORDER BY aggregate_type, aggregate_id, sequence LIMIT $7"
    );
    let mut summary = ExportSummary {
        events: 0,
        checkpoints: 0,
    };
    // The checkpoints first: one sealed while the events are read would name heads past what
    // was read, and the file would fail its own check as truncated. Events sealed by the
    // checkpoints read now committed before them, so the reads below see them all.
    let checkpoints = load_checkpoints(pool).await?;
    let mut after = (String::new(), String::new(), 0_i64);
    loop {
        let rows = sqlx::query(&sql)
            .bind(&options.tenant)
            .bind(options.from)
            .bind(options.to)
            .bind(&after.0)
            .bind(&after.1)
            .bind(after.2)
            .bind(BATCH)
            .fetch_all(pool)
            .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let event = ChainedEvent::from_row(row)?;
            after = (
                event.aggregate_type.clone(),
                event.aggregate_id.clone(),
                i64::try_from(event.sequence).unwrap_or(i64::MAX),
            );
            out.write(&ExportLine::Event(event))?;
            summary.events += 1;
        }
    }
    for checkpoint in checkpoints {
        if options.to.is_some_and(|to| checkpoint.created_at > to) {
            continue;
        }
        out.write(&ExportLine::Checkpoint(
            checkpoint.for_tenant(&options.tenant),
        ))?;
        summary.checkpoints += 1;
    }
    out.seal()?;
    Ok(summary)
}

/// Writes the lines of an export, feeding each to the file's seal.
struct SealingWriter<'a, W> {
    out: &'a mut W,
    mac: RunningMac,
    /// The line being written, reused.
    line: Vec<u8>,
}

impl<W: Write> SealingWriter<'_, W> {
    fn write(&mut self, line: &ExportLine) -> Result<(), ReplayError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, line)?;
        self.line.push(b'\n');
        self.mac.update(&self.line);
        self.out.write_all(&self.line)?;
        Ok(())
    }

    /// Writes the seal line and flushes.
    fn seal(self) -> Result<(), ReplayError> {
        let seal = ExportLine::Seal {
            mac: self.mac.finish(),
        };
        serde_json::to_writer(&mut *self.out, &seal)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(())
    }
}

/// Checks an export file offline.
pub fn verify_export(key: &AuditKey, input: impl BufRead) -> Result<VerifyReport, ReplayError> {
    let mut header = None;
    let mut streams: BTreeMap<StreamRef, Vec<ChainedEvent>> = BTreeMap::new();
    let mut checkpoints = Vec::new();
    let mut mac = key.running_mac(SEAL_TAG);
    let mut seal = None;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if seal.is_some() {
            return Err(ReplayError::Export {
                line: index + 1,
                reason: "a line after the seal".into(),
            });
        }
        let parsed: ExportLine =
            serde_json::from_str(&line).map_err(|error| ReplayError::Export {
                line: index + 1,
                reason: error.to_string(),
            })?;
        if !matches!(parsed, ExportLine::Seal { .. }) {
            mac.update(line.as_bytes());
            mac.update(b"\n");
        }
        match parsed {
            ExportLine::Header { .. } if header.is_some() => {
                return Err(ReplayError::Export {
                    line: index + 1,
                    reason: "a second header line".into(),
                });
            }
            ExportLine::Header { tenant, from, .. } => header = Some((tenant, from)),
            ExportLine::Event(event) => streams.entry(event.stream()).or_default().push(event),
            ExportLine::Checkpoint(checkpoint) => checkpoints.push(checkpoint),
            ExportLine::Seal { mac } => seal = Some(mac),
        }
    }
    let (tenant, from) = header.ok_or_else(|| ReplayError::Export {
        line: 1,
        reason: "no header line".into(),
    })?;
    let mut report = VerifyReport {
        checkpoints: checkpoints.len() as u64,
        ..VerifyReport::default()
    };
    let file_damage = match seal {
        Some(seal) if seal == mac.finish() => None,
        Some(_) => Some((
            DamageKind::Altered,
            "the file does not match its seal: it was changed after the export",
        )),
        None => Some((
            DamageKind::Truncated,
            "the file has no seal: it was cut short, or exported before commerce-export/2",
        )),
    };
    if let Some((kind, detail)) = file_damage {
        report.damage.push(Damage {
            stream: "export".into(),
            sequence: 0,
            kind,
            detail: detail.into(),
        });
    }
    // The seal covers every tenant's digest, and a digest only the heads can be checked
    // against: a checkpoint whose sealed digest names the tenant must carry its heads, or
    // removing them would let the file drop the sealed events unseen.
    for checkpoint in &checkpoints {
        if checkpoint.tenant_digests.contains_key(&tenant)
            && !checkpoint.heads.contains_key(&tenant)
        {
            report.damage.push(Damage {
                stream: "log_checkpoints".into(),
                sequence: checkpoint.checkpoint_no,
                kind: DamageKind::Altered,
                detail: format!("the heads of tenant {tenant} are missing"),
            });
        }
    }
    let mut sealed = SealedHeads::default();
    check_checkpoints(
        key,
        &mut checkpoints,
        Digests::Given,
        &mut report.damage,
        |stream, sequence, hash| sealed.entry(stream).or_default().insert(sequence, hash),
    );
    for (stream, events) in &mut streams {
        events.sort_unstable_by_key(|event| event.sequence);
        report.events += events.len() as u64;
        report.streams += 1;
        if stream.tenant() != tenant {
            report.damage.push(crate::verify::Damage {
                stream: stream.to_string(),
                sequence: events.first().map_or(0, |event| event.sequence),
                kind: crate::verify::DamageKind::Inserted,
                detail: format!("the stream does not belong to tenant {tenant}"),
            });
        }
        let heads = sealed.remove(&head_key(&stream.aggregate_type, &stream.aggregate_id));
        let heads = heads.filter(|_| from.is_none());
        check_stream(
            key,
            stream,
            events,
            heads.as_ref(),
            from.is_some(),
            &mut report.damage,
        );
    }
    if from.is_none() {
        for (name, heads) in sealed {
            check_sealed_tail(&name, 0, Some(&heads), &mut report.damage);
        }
    }
    Ok(report)
}
