//! Export → offline verify round trip; a modified export line is detected.

mod common;

use commerce_eventstore::AuditKey;
use commerce_replay::{DamageKind, ExportOptions, export, verify_export};
use common::{add, fresh_store, seal_all, splice_histories, stream};

/// The export of tenant t1, and how many checkpoints the store holds: usually one, two when a
/// transaction open elsewhere on the server (another test's) held the first seal's horizon back.
async fn exported() -> (String, u64) {
    let (_db, store) = fresh_store().await;
    add(&store, &stream("t1", "a"), &[1, 2, 3]).await;
    add(&store, &stream("t2", "secret"), &[9]).await;
    seal_all(&store).await;
    add(&store, &stream("t1", "b"), &[4]).await;
    let sealed: i64 = sqlx::query_scalar("SELECT count(*) FROM log_checkpoints")
        .fetch_one(store.pool())
        .await
        .expect("checkpoints");
    let sealed = u64::try_from(sealed).expect("a count");
    assert!(sealed >= 1, "the log was sealed");
    let mut out = Vec::new();
    let options = ExportOptions {
        tenant: "t1".into(),
        from: None,
        to: None,
    };
    let summary = export(store.pool(), &AuditKey::development(), &options, &mut out)
        .await
        .expect("export");
    assert_eq!((summary.events, summary.checkpoints), (4, sealed));
    (String::from_utf8(out).expect("utf-8"), sealed)
}

#[tokio::test]
async fn given_an_export_when_verified_offline_then_it_is_clean_and_holds_only_the_tenant() {
    let (file, sealed) = exported().await;
    assert!(
        !file.contains("t2/secret"),
        "another tenant's stream leaked"
    );
    let report = verify_export(&AuditKey::development(), file.as_bytes()).expect("verify");
    assert!(report.is_clean(), "{:#?}", report.damage);
    assert_eq!(
        (report.events, report.streams, report.checkpoints),
        (4, 2, sealed)
    );
}

#[tokio::test]
async fn given_a_modified_export_line_when_verified_then_it_is_detected() {
    let (file, _) = exported().await;
    let tampered: String = file
        .lines()
        .map(|line| {
            if line.contains("\"aggregate_id\":\"t1/a\"") && line.contains("\"sequence\":2") {
                line.replacen("\"amount\":2", "\"amount\":2000", 1)
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(tampered, file.trim_end());
    let report = verify_export(&AuditKey::development(), tampered.as_bytes()).expect("verify");
    assert!(
        report.damage.iter().any(|d| d.stream == "Counter t1/a"
            && d.sequence == 2
            && d.kind == DamageKind::Altered),
        "{:#?}",
        report.damage
    );
}

#[tokio::test]
async fn given_an_export_missing_a_sealed_line_when_verified_then_it_is_truncated() {
    let (file, _) = exported().await;
    let cut: String = file
        .lines()
        .filter(|line| {
            !(line.contains("\"aggregate_id\":\"t1/a\"") && line.contains("\"sequence\":3"))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let report = verify_export(&AuditKey::development(), cut.as_bytes()).expect("verify");
    assert!(
        report.damage.iter().any(|d| d.stream == "Counter t1/a"
            && d.sequence == 3
            && d.kind == DamageKind::Truncated),
        "{:#?}",
        report.damage
    );
}

#[tokio::test]
async fn given_an_export_whose_checkpoints_lost_the_tenants_heads_when_verified_then_it_is_altered()
{
    let (file, _) = exported().await;
    // An attacker empties the heads of every checkpoint (the seal covers only the digests)
    // and then drops a sealed event, which no head would be left to miss
    let tampered: String = file
        .lines()
        .filter(|line| {
            !(line.contains("\"aggregate_id\":\"t1/a\"") && line.contains("\"sequence\":3"))
        })
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            if value["kind"] == "checkpoint" {
                value["heads"] = serde_json::json!({});
            }
            value.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let report = verify_export(&AuditKey::development(), tampered.as_bytes()).expect("verify");
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.stream == "log_checkpoints" && d.kind == DamageKind::Altered),
        "{:#?}",
        report.damage
    );
}

#[tokio::test]
async fn given_an_export_with_a_second_header_when_verified_then_it_is_refused() {
    let (file, _) = exported().await;
    let header = file.lines().next().expect("a header line");
    // Before the seal line, where a line may stand.
    let (lines, seal) = file
        .trim_end()
        .rsplit_once('\n')
        .expect("lines, then the seal");
    let second = header.replace("\"from\":null", "\"from\":\"2000-01-01T00:00:00Z\"");
    let doubled = format!("{lines}\n{second}\n{seal}\n");
    let refused = verify_export(&AuditKey::development(), doubled.as_bytes());
    assert!(
        matches!(
            &refused,
            Err(commerce_replay::ReplayError::Export { reason, .. })
                if reason == "a second header line"
        ),
        "{refused:?}"
    );
}

/// Histories spliced in the store (a backup's events 4–5 after the live store's 3) are named
/// in the export's offline check too.
#[tokio::test]
async fn given_an_export_of_spliced_histories_when_verified_then_the_break_is_named() {
    let (_db, store) = fresh_store().await;
    splice_histories(&store).await;
    let options = ExportOptions {
        tenant: "t1".into(),
        from: None,
        to: None,
    };
    let mut out = Vec::new();
    export(store.pool(), &AuditKey::development(), &options, &mut out)
        .await
        .expect("export");

    let report = verify_export(&AuditKey::development(), out.as_slice()).expect("verify");
    let found: Vec<_> = report
        .damage
        .iter()
        .map(|d| (d.stream.as_str(), d.sequence, d.kind))
        .collect();
    assert_eq!(found, [("Counter t1/a", 4, DamageKind::Spliced)]);
}

/// The lines of `file` with `edit` applied to each, joined as an export writes them.
fn edited(file: &str, edit: impl Fn(&str) -> Option<String>) -> String {
    file.lines()
        .filter_map(edit)
        .map(|line| line + "\n")
        .collect()
}

fn assert_file_damage(report: &commerce_replay::VerifyReport, kind: DamageKind) {
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.stream == "export" && d.kind == kind),
        "expected {kind:?} of the file, got {:#?}",
        report.damage
    );
}

/// Without the file's seal, an attacker who drops a stream's first events and sets `from` in
/// the header has a clean partial export: each remaining event links to one not in the file.
#[tokio::test]
async fn given_an_export_cut_at_its_start_and_dated_when_verified_then_the_seal_breaks() {
    let (file, _) = exported().await;
    let tampered = edited(&file, |line| {
        if line.contains("\"aggregate_id\":\"t1/a\"") && line.contains("\"sequence\":1") {
            return None;
        }
        Some(line.replace("\"from\":null", "\"from\":\"2000-01-01T00:00:00Z\""))
    });
    let report = verify_export(&AuditKey::development(), tampered.as_bytes()).expect("verify");
    assert_eq!(
        report
            .damage
            .iter()
            .map(|d| (d.stream.as_str(), d.kind))
            .collect::<Vec<_>>(),
        [("export", DamageKind::Altered)],
        "{:#?}",
        report.damage
    );
}

/// A file cut short loses its seal line; a whole stream written after the last checkpoint can
/// go with it, which nothing else would notice.
#[tokio::test]
async fn given_an_export_without_its_seal_when_verified_then_it_is_truncated() {
    let (file, _) = exported().await;
    let cut = edited(&file, |line| {
        let unwanted =
            line.contains("\"kind\":\"seal\"") || line.contains("\"aggregate_id\":\"t1/b\"");
        (!unwanted).then(|| line.to_owned())
    });
    let report = verify_export(&AuditKey::development(), cut.as_bytes()).expect("verify");
    assert_file_damage(&report, DamageKind::Truncated);
    assert_eq!(report.damage.len(), 1, "{:#?}", report.damage);
}

#[tokio::test]
async fn given_an_export_with_a_line_after_its_seal_when_verified_then_it_is_refused() {
    let (file, _) = exported().await;
    let event = file
        .lines()
        .find(|line| line.contains("\"kind\":\"event\""))
        .expect("an event line");
    let appended = format!("{file}{event}\n");
    let refused = verify_export(&AuditKey::development(), appended.as_bytes());
    assert!(
        matches!(refused, Err(commerce_replay::ReplayError::Export { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn given_an_export_checked_with_another_key_when_verified_then_the_seal_breaks() {
    let (file, _) = exported().await;
    let report = verify_export(&AuditKey::new("another"), file.as_bytes()).expect("verify");
    assert_file_damage(&report, DamageKind::Altered);
}
